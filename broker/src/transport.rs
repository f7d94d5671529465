//! The byte pipe under one MQTT connection: a TCP stream, or binary WebSocket frames.

use async_tungstenite::tokio::TokioAdapter;
use async_tungstenite::tungstenite::{protocol::CloseFrame, Message};
use async_tungstenite::WebSocketStream;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use std::io;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub enum Transport {
    Tcp(TcpStream),
    Ws(Box<WebSocketStream<TokioAdapter<TcpStream>>>),
}

impl Transport {
    /// Appends what arrived to `buf`; `Ok(0)` means the peer closed.
    pub async fn read(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => {
                buf.reserve(4096);
                s.read_buf(buf).await
            }
            Transport::Ws(ws) => loop {
                match ws.next().await {
                    None | Some(Ok(Message::Close(_))) => return Ok(0),
                    Some(Ok(Message::Binary(data))) if !data.is_empty() => {
                        buf.extend_from_slice(&data);
                        return Ok(data.len());
                    }
                    Some(Ok(Message::Text(_))) => {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "MQTT over WebSocket must use binary frames",
                        ))
                    }
                    Some(Ok(_)) => continue, // ping, pong, empty frames
                    Some(Err(e)) => return Err(io::Error::other(e)),
                }
            },
        }
    }

    pub async fn write(&mut self, data: Bytes) -> io::Result<()> {
        match self {
            Transport::Tcp(s) => s.write_all(&data).await,
            Transport::Ws(ws) => ws
                .send(Message::Binary(data))
                .await
                .map_err(io::Error::other),
        }
    }

    pub async fn close(&mut self) {
        match self {
            Transport::Tcp(s) => {
                let _ = s.shutdown().await;
            }
            Transport::Ws(ws) => {
                let _ = ws.close(None::<CloseFrame>).await;
            }
        }
    }
}
