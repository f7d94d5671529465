//! The byte pipe under one MQTT connection: a TCP stream, a TLS stream, or binary WebSocket
//! frames (over TCP or TLS).
//!
//! A connection reads and writes at the same time (a device that stops reading must not stop
//! its own requests from being read, nor a kick from being noticed), so the transport splits
//! into a [`Reader`] and a [`Writer`] that can be awaited together. Both are cancel-safe.
//! Over TCP an idle connection holds no buffer: it waits for readiness and only then reads.
//! TLS keeps its record buffers (rustls's) for as long as the connection lives.

use async_tungstenite::tokio::TokioAdapter;
use async_tungstenite::tungstenite::{protocol::CloseFrame, Message};
use async_tungstenite::WebSocketStream;
use bytes::{Buf, BytesMut};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{Sink, StreamExt};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// What a WebSocket runs over: TCP, or TLS over TCP (`wss://`).
pub enum Socket {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Socket::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Socket::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Socket::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Plain(s) => Pin::new(s).poll_flush(cx),
            Socket::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Socket::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}

type Ws = WebSocketStream<TokioAdapter<Socket>>;
type Tls = TlsStream<TcpStream>;

pub enum Transport {
    Tcp(TcpStream),
    Tls(Box<TlsHalves>),
    Ws(Box<WsHalves>),
}

pub struct TlsHalves {
    rx: ReadHalf<Tls>,
    tx: WriteHalf<Tls>,
    /// Bytes were handed to TLS and not yet flushed.
    unflushed: bool,
}

pub struct WsHalves {
    rx: SplitStream<Ws>,
    tx: SplitSink<Ws, Message>,
    /// A frame was handed to the sink and not yet flushed.
    unflushed: bool,
}

impl Transport {
    pub fn ws(ws: Ws) -> Self {
        let (tx, rx) = ws.split();
        Transport::Ws(Box::new(WsHalves {
            rx,
            tx,
            unflushed: false,
        }))
    }

    pub fn tls(tls: Tls) -> Self {
        let (rx, tx) = tokio::io::split(tls);
        Transport::Tls(Box::new(TlsHalves {
            rx,
            tx,
            unflushed: false,
        }))
    }

    pub fn halves(&mut self) -> (Reader<'_>, Writer<'_>) {
        match self {
            Transport::Tcp(s) => (Reader::Tcp(s), Writer::Tcp(s)),
            Transport::Tls(t) => {
                let TlsHalves { rx, tx, unflushed } = &mut **t;
                (Reader::Tls(rx), Writer::Tls(tx, unflushed))
            }
            Transport::Ws(ws) => {
                let WsHalves { rx, tx, unflushed } = &mut **ws;
                (Reader::Ws(rx), Writer::Ws(tx, unflushed))
            }
        }
    }

    /// Appends what arrived to `buf`; `Ok(0)` means the peer closed.
    pub async fn read(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        self.halves().0.read(buf).await
    }

    /// Writes all of `buf`.
    pub async fn write_all(&mut self, buf: &mut BytesMut) -> io::Result<()> {
        let (_, mut w) = self.halves();
        while w.pending(buf) {
            w.write(buf).await?;
        }
        Ok(())
    }

    pub async fn close(&mut self) {
        match self {
            Transport::Tcp(s) => {
                let _ = s.shutdown().await;
            }
            Transport::Tls(t) => {
                // close_notify, then the TCP shutdown.
                let _ = t.tx.shutdown().await;
            }
            Transport::Ws(ws) => {
                use futures_util::SinkExt;
                let _ = ws.tx.send(Message::Close(None::<CloseFrame>)).await;
                let _ = ws.tx.close().await;
            }
        }
    }
}

pub enum Reader<'a> {
    Tcp(&'a TcpStream),
    Tls(&'a mut ReadHalf<Tls>),
    Ws(&'a mut SplitStream<Ws>),
}

impl Reader<'_> {
    /// Appends what arrived to `buf`; `Ok(0)` means the peer closed.
    pub async fn read(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            Reader::Tcp(s) => loop {
                s.readable().await?;
                match read_ready(s, buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    other => return other,
                }
            },
            Reader::Tls(rx) => {
                let mut chunk = [0u8; 16 * 1024];
                let n = rx.read(&mut chunk).await?;
                buf.extend_from_slice(&chunk[..n]);
                Ok(n)
            }
            Reader::Ws(rx) => loop {
                match rx.next().await {
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
}

/// Reads what is ready into a chunk on the thread's stack, then appends exactly that to `buf`:
/// a connection's buffer is never bigger than what it holds (no 4 KiB per idle device).
fn read_ready(s: &TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
    let mut chunk = [0u8; 16 * 1024];
    let n = s.try_read(&mut chunk)?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

pub enum Writer<'a> {
    Tcp(&'a TcpStream),
    Tls(&'a mut WriteHalf<Tls>, &'a mut bool),
    Ws(&'a mut SplitSink<Ws, Message>, &'a mut bool),
}

impl Writer<'_> {
    /// Whether [`Writer::write`] has anything to do.
    pub fn pending(&self, buf: &BytesMut) -> bool {
        match self {
            Writer::Tcp(_) => !buf.is_empty(),
            Writer::Tls(_, unflushed) => !buf.is_empty() || **unflushed,
            Writer::Ws(_, unflushed) => !buf.is_empty() || **unflushed,
        }
    }

    /// Writes some of `buf` (TCP) or all of it as one frame (WebSocket), consuming what was
    /// written; call while [`Writer::pending`].
    pub async fn write(&mut self, buf: &mut BytesMut) -> io::Result<()> {
        match self {
            Writer::Tcp(s) => loop {
                s.writable().await?;
                match s.try_write(buf) {
                    Ok(n) => {
                        buf.advance(n);
                        if buf.is_empty() {
                            // Give an idle connection's memory back.
                            *buf = BytesMut::new();
                        }
                        return Ok(());
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(e),
                }
            },
            Writer::Tls(tx, unflushed) => {
                if !buf.is_empty() {
                    let n = tx.write(buf).await?;
                    buf.advance(n);
                    **unflushed = true;
                    if buf.is_empty() {
                        *buf = BytesMut::new();
                    }
                }
                tx.flush().await?;
                **unflushed = false;
                Ok(())
            }
            Writer::Ws(tx, unflushed) => {
                std::future::poll_fn(|cx| {
                    let mut tx = Pin::new(&mut **tx);
                    if !buf.is_empty() {
                        std::task::ready!(tx.as_mut().poll_ready(cx)).map_err(io::Error::other)?;
                        let frame = Message::Binary(buf.split().freeze());
                        *buf = BytesMut::new();
                        tx.as_mut().start_send(frame).map_err(io::Error::other)?;
                        **unflushed = true;
                    }
                    std::task::ready!(tx.as_mut().poll_flush(cx)).map_err(io::Error::other)?;
                    **unflushed = false;
                    std::task::Poll::Ready(Ok(()))
                })
                .await
            }
        }
    }
}
