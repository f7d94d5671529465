//! Send a message: log in as a new device, open the direct conversation with another user,
//! send a text and print the server's answer (its place in the conversation).
//!
//! ```sh
//! cargo run -p courier-client --example send -- alice 'alice password' bob 'hello, bob'
//! ```
//!
//! The server is `COURIER_URL` (default `http://127.0.0.1:8080`). Each run logs in as a new
//! device; a real app logs in once and keeps its [`Session`](courier_client::protocol::http::Session).

use courier_client::{Api, Client, ClientError, ClientOptions};

#[tokio::main]
async fn main() -> Result<(), ClientError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [user, password, to, text] = args.as_slice() else {
        eprintln!("usage: send USER PASSWORD TO TEXT");
        std::process::exit(2);
    };
    let server = std::env::var("COURIER_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let api = Api::new(server);
    let session = api.log_in(user, password, "send example", "cli").await?;
    let peer = api.users(&session.token, &[to], &[]).await?;
    let Some(peer) = peer.first() else {
        eprintln!("no user named {to}");
        std::process::exit(1);
    };
    let conv = api.create_direct(&session.token, &peer.user).await?;
    // MQTT over TLS when the server offers it, else plain TCP.
    let options = ClientOptions::tls(&session).unwrap_or_else(|| ClientOptions::tcp(&session));
    let (client, _events) = Client::connect(options).await?;
    // The server answers once the message is stored and in every member's update log.
    let sent = client.send_text(&conv.id, text).await?;
    println!("message {} is #{} in {}", sent.msg, sent.seq, sent.conv);
    client.disconnect().await;
    Ok(())
}
