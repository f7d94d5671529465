//! Upload a photo and send it: the file goes up over HTTP (the server reads its type from
//! the bytes, strips its EXIF location and makes a thumbnail and a preview), then a message
//! carries it to the conversation.
//!
//! ```sh
//! cargo run -p courier-client --example upload_photo -- alice 'alice password' bob photo.jpg
//! ```
//!
//! The server is `COURIER_URL` (default `http://127.0.0.1:8080`). Large files and flaky
//! networks want the resumable tus endpoint (`/v1/uploads`, docs/protocol.md) instead.

use courier_client::protocol::ops::SendReq;
use courier_client::{Api, Client, ClientError, ClientOptions};

#[tokio::main]
async fn main() -> Result<(), ClientError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [user, password, to, path] = args.as_slice() else {
        eprintln!("usage: upload_photo USER PASSWORD TO FILE");
        std::process::exit(2);
    };
    let bytes = std::fs::read(path).map_err(|e| ClientError::Http(format!("{path}: {e}")))?;
    let server = std::env::var("COURIER_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let api = Api::new(server);
    let session = api.log_in(user, password, "upload example", "cli").await?;
    // Recipients see the file's name, not where it was on this machine.
    let name = std::path::Path::new(path)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("photo");
    let file = api.upload(&session.token, bytes, Some(name)).await?;
    println!("stored {} as {} ({})", path, file.id, file.mime);
    let peer = api.users(&session.token, &[to], &[]).await?;
    let Some(peer) = peer.first() else {
        eprintln!("no user named {to}");
        std::process::exit(1);
    };
    let conv = api.create_direct(&session.token, &peer.user).await?;
    let (client, _events) = Client::connect(ClientOptions::tcp(&session)).await?;
    // `cmid` makes the send idempotent: a retry with the same one is stored once.
    let req: SendReq = serde_json::from_value(serde_json::json!({
        "conv": conv.id,
        "cmid": format!("photo-{}", file.id),
        "kind": "image",
        "attachments": [{ "file": file.id }],
    }))
    .map_err(|e| ClientError::Decode(e.to_string()))?;
    let sent = client.send(&req).await?;
    println!(
        "sent as message {} (#{} in {})",
        sent.msg, sent.seq, sent.conv
    );
    client.disconnect().await;
    Ok(())
}
