//! Reconnect without losing or doubling a message: the client reconnects by itself (with
//! backoff and jitter) when the connection drops; a send that failed is retried with the same
//! `cmid`, which the server stores once, so a message whose answer was lost with the
//! connection is not sent twice.
//!
//! ```sh
//! cargo run -p courier-client --example reconnect -- alice 'alice password' bob
//! ```
//!
//! It sends a numbered message every two seconds; stop and start the server (or the network)
//! meanwhile and watch every number arrive once. The server is `COURIER_URL` (default
//! `http://127.0.0.1:8080`).

use courier_client::{text_req, Api, Client, ClientError, ClientOptions, Event};
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), ClientError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [user, password, to] = args.as_slice() else {
        eprintln!("usage: reconnect USER PASSWORD TO");
        std::process::exit(2);
    };
    let server = std::env::var("COURIER_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let api = Api::new(server);
    let session = api
        .log_in(user, password, "reconnect example", "cli")
        .await?;
    let peer = api.users(&session.token, &[to], &[]).await?;
    let Some(peer) = peer.first() else {
        eprintln!("no user named {to}");
        std::process::exit(1);
    };
    let conv = api.create_direct(&session.token, &peer.user).await?.id;
    let (client, mut events) =
        Client::connect(ClientOptions::tcp(&session).ordered_from(0)).await?;
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                Event::Connected => println!("(connected)"),
                Event::Disconnected(why) => println!("(connection lost: {why}; reconnecting)"),
                _ => {}
            }
        }
    });
    for n in 1.. {
        // One cmid per message, kept across its retries.
        let req = text_req(
            &conv,
            &format!("{}-{n}", session.device),
            &format!("message {n}"),
        );
        loop {
            match client.send(&req).await {
                Ok(sent) => {
                    println!("message {n} stored as #{}", sent.seq);
                    break;
                }
                Err(e) => {
                    println!("message {n} not confirmed ({e}); trying again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    Ok(())
}
