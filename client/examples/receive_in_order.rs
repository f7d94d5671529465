//! Receive in order: every update for this device exactly once and in `useq` order, across
//! reconnects and gaps, acknowledged as it is handled (so the server's "delivered" ticks
//! move).
//!
//! ```sh
//! cargo run -p courier-client --example receive_in_order -- bob 'bob password'
//! ```
//!
//! The server is `COURIER_URL` (default `http://127.0.0.1:8080`). An app keeps the last
//! handled `useq` with its data and starts from it next time; this example starts from 0, so
//! it first replays what the server still holds for the new device (nothing), then waits.

use courier_client::protocol::UpdateBody;
use courier_client::{Api, Client, ClientError, ClientOptions, Event};

#[tokio::main]
async fn main() -> Result<(), ClientError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [user, password] = args.as_slice() else {
        eprintln!("usage: receive_in_order USER PASSWORD");
        std::process::exit(2);
    };
    let server = std::env::var("COURIER_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let session = Api::new(server)
        .log_in(user, password, "receive example", "cli")
        .await?;
    // Ordered mode: the client syncs after connecting and whenever a push skips a useq.
    let options = ClientOptions::tcp(&session).ordered_from(0);
    let (client, mut events) = Client::connect(options).await?;
    println!("waiting for messages to {user} (Ctrl-C to stop)");
    while let Some(event) = events.recv().await {
        match event {
            Event::Update(update) => {
                match &update.body {
                    UpdateBody::Message { msg, .. } => {
                        println!("#{} {}: {:?}", update.useq, msg.sender, msg.content)
                    }
                    other => println!("#{} {other:?}", update.useq),
                }
                // Handled: the server may count it delivered.
                client.ack(update.useq).await?;
            }
            Event::CursorExpired { floor } => {
                println!("away too long: reload conversations; updates continue after {floor}")
            }
            Event::Connected => println!("connected"),
            Event::Disconnected(why) => println!("disconnected ({why}); reconnecting"),
            _ => {}
        }
    }
    Ok(())
}
