//! Accept loops. Every accepted socket gets its own task at once, so a slow or idle client
//! (one that never finishes its TLS or WebSocket handshake, or never sends CONNECT) holds only
//! its own task until its timeout, never the loop.

use crate::connection;
use crate::transport::{Socket, Transport};
use crate::Shared;
use async_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use async_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

#[derive(Clone, Copy)]
pub enum Kind {
    Tcp,
    WebSocket,
}

/// Accepts on `listener` until shutdown; with `tls`, every connection starts with a TLS
/// handshake (MQTT over TLS, or WebSocket over TLS).
pub async fn accept_loop(
    listener: TcpListener,
    kind: Kind,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
) {
    loop {
        let accepted = tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = shared.connections.clone().try_acquire_owned() else {
            debug!(%peer, "connection limit reached");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (shared, tls) = (shared.clone(), tls.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let handshakes = async {
                let socket = match tls {
                    None => Socket::Plain(stream),
                    Some(tls) => Socket::Tls(Box::new(
                        tls.accept(stream)
                            .await
                            .map_err(async_tungstenite::tungstenite::Error::Io)?,
                    )),
                };
                match (kind, socket) {
                    (Kind::Tcp, Socket::Plain(s)) => Ok(Transport::Tcp(s)),
                    (Kind::Tcp, Socket::Tls(s)) => Ok(Transport::tls(*s)),
                    (Kind::WebSocket, socket) => {
                        upgrade(socket, shared.config.max_packet_size).await
                    }
                }
            };
            let io = match timeout(shared.config.connect_timeout, handshakes).await {
                Ok(Ok(io)) => io,
                Ok(Err(e)) => {
                    debug!(%peer, error = %e, "TLS or WebSocket handshake failed");
                    return;
                }
                Err(_) => {
                    debug!(%peer, "TLS or WebSocket handshake timed out");
                    return;
                }
            };
            connection::serve(io, peer, shared).await;
        });
    }
}

/// HTTP upgrade on path `/mqtt`, echoing the `mqtt` subprotocol that MQTT clients ask for.
/// A frame or message larger than an MQTT packet may be (plus its own header) closes the
/// connection before it is buffered: tungstenite would otherwise take up to 64 MiB.
async fn upgrade(
    stream: Socket,
    max_packet: usize,
) -> Result<Transport, async_tungstenite::tungstenite::Error> {
    // The handshake callback's error type is tungstenite's, large or not.
    #[allow(clippy::result_large_err)]
    let check = |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
        if req.uri().path() != "/mqtt" {
            let mut err = ErrorResponse::new(Some("MQTT is served on /mqtt".into()));
            *err.status_mut() = StatusCode::NOT_FOUND;
            return Err(err);
        }
        let asked = req
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if let Some(proto) = asked
            .split(',')
            .map(str::trim)
            .find(|p| matches!(*p, "mqtt" | "mqttv3.1"))
        {
            if let Ok(v) = HeaderValue::from_str(proto) {
                resp.headers_mut().insert("sec-websocket-protocol", v);
            }
        }
        Ok(resp)
    };
    let config = WebSocketConfig::default()
        .max_frame_size(Some(max_packet + 16))
        .max_message_size(Some(max_packet + 16));
    let ws =
        async_tungstenite::tokio::accept_hdr_async_with_config(stream, check, Some(config)).await?;
    Ok(Transport::ws(ws))
}
