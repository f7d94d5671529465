//! Serving the HTTP API's connections within limits, so that clients that open connections
//! and then dawdle cannot take the API from everyone else:
//!
//! - at most [`HttpLimits::max_connections`] at once, and [`PER_ADDRESS`] from one client
//!   address (IPv6: one /64); past the first, accepting waits for a connection to close; past
//!   the second, the new connection is closed at once;
//! - a request's head must arrive within [`HEADER_TIMEOUT`];
//! - while the server is not working on a request, a connection that moves less than
//!   [`MIN_PROGRESS`] bytes, either way, in a whole [`HttpLimits::idle_timeout`] is closed: an
//!   idle keep-alive connection, a dripping request head, a reader that stopped reading;
//! - a request body must come at [`MIN_PROGRESS`] bytes per idle timeout too (a stalled or
//!   dripping upload), else reading it fails and the connection closes. Time the server
//!   itself takes (hashing a password, a slow query) never counts against the client.
//!
//! Each request carries its peer address as axum's `ConnectInfo<SocketAddr>`. With TLS, the
//! handshake must finish within [`HEADER_TIMEOUT`] too.

use crate::shared::address_key;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use broker::{Socket, TlsAcceptor};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_service::Service;

/// Most connections from one client address at once.
pub const PER_ADDRESS: usize = 256;
/// Time a client has to send a request's head (request line and headers).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes a connection must move in each idle period to stay open.
pub const MIN_PROGRESS: u64 = 1024;
/// Time connections get to finish their requests once the server is stopping.
const DRAIN: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    pub max_connections: usize,
    pub idle_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Serves `router` on `listener` until `stop` is cancelled, then lets open connections finish
/// their requests (for up to [`DRAIN`]).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    tls: Option<TlsAcceptor>,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let per_address = Arc::new(Mutex::new(HashMap::<String, usize>::new()));
    let connections = TaskTracker::new();
    loop {
        let slot = tokio::select! {
            _ = stop.cancelled() => break,
            slot = slots.clone().acquire_owned() => slot.expect("never closed"),
        };
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(from) = Address::claim(&per_address, peer) else {
            tracing::debug!(%peer, "too many HTTP connections from one address");
            continue;
        };
        let (router, stop, tls) = (router.clone(), stop.clone(), tls.clone());
        connections.spawn(async move {
            let _held = (slot, from);
            let _ = stream.set_nodelay(true);
            let socket = match tls {
                None => Socket::Plain(stream),
                Some(tls) => match tokio::time::timeout(HEADER_TIMEOUT, tls.accept(stream)).await {
                    Ok(Ok(s)) => Socket::Tls(Box::new(s)),
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                },
            };
            connection(socket, peer, router, limits.idle_timeout, stop).await;
        });
    }
    connections.close();
    connections.wait().await;
    Ok(())
}

/// One client address's share of [`PER_ADDRESS`], given back on drop.
struct Address {
    counts: Arc<Mutex<HashMap<String, usize>>>,
    key: String,
}

impl Address {
    fn claim(counts: &Arc<Mutex<HashMap<String, usize>>>, peer: SocketAddr) -> Option<Self> {
        let key = address_key(peer.ip());
        let mut all = counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = all.entry(key.clone()).or_default();
        if *n >= PER_ADDRESS {
            return None;
        }
        *n += 1;
        Some(Self {
            counts: counts.clone(),
            key,
        })
    }
}

impl Drop for Address {
    fn drop(&mut self) {
        let mut all = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = all.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                all.remove(&self.key);
            }
        }
    }
}

async fn connection(
    stream: Socket,
    peer: SocketAddr,
    router: Router,
    idle: Duration,
    stop: CancellationToken,
) {
    let moved = Arc::new(AtomicU64::new(0));
    let busy = Arc::new(AtomicUsize::new(0));
    let io = TokioIo::new(Counted {
        inner: stream,
        moved: moved.clone(),
    });
    let service = {
        let busy = busy.clone();
        hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let mut router = router.clone();
            let working = Working::start(&busy);
            let mut req = req.map(|body| Body::new(Paced::new(body, idle)));
            req.extensions_mut().insert(ConnectInfo(peer));
            async move {
                let _working = working;
                router.call(req).await
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let mut check = tokio::time::interval_at(tokio::time::Instant::now() + idle, idle);
    let mut seen = 0;
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = check.tick() => {
                let now = moved.load(Ordering::Relaxed);
                if now - seen < MIN_PROGRESS && busy.load(Ordering::Relaxed) == 0 {
                    tracing::debug!(%peer, "HTTP connection idle or too slow; closing");
                    return;
                }
                seen = now;
            }
            _ = stop.cancelled() => {
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(DRAIN, conn.as_mut()).await;
                return;
            }
        }
    }
}

/// A request the server is working on (from its head until its response's head).
struct Working(Arc<AtomicUsize>);

impl Working {
    fn start(busy: &Arc<AtomicUsize>) -> Self {
        busy.fetch_add(1, Ordering::Relaxed);
        Self(busy.clone())
    }
}

impl Drop for Working {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A request body that must come at [`MIN_PROGRESS`] bytes per `window`, else it fails. The
/// first window starts when the handler first reads (hyper sends `100 Continue` then).
struct Paced {
    inner: Incoming,
    window: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
    started: bool,
    got: u64,
}

impl Paced {
    fn new(inner: Incoming, window: Duration) -> Self {
        Self {
            inner,
            window,
            deadline: Box::pin(tokio::time::sleep(window)),
            started: false,
            got: 0,
        }
    }

    /// At the end of a window: a new one if this one had enough.
    fn next_window(&mut self) -> Result<(), std::io::Error> {
        if self.got < MIN_PROGRESS {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "request body too slow",
            ));
        }
        self.got = 0;
        let next = tokio::time::Instant::now() + self.window;
        self.deadline.as_mut().reset(next);
        Ok(())
    }
}

impl http_body::Body for Paced {
    type Data = bytes::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        if !this.started {
            this.started = true;
            let first = tokio::time::Instant::now() + this.window;
            this.deadline.as_mut().reset(first);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.got += data.len() as u64;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(other) => Poll::Ready(other.map(|r| r.map_err(Into::into))),
            Poll::Pending => {
                while this.deadline.as_mut().poll(cx).is_ready() {
                    if let Err(e) = this.next_window() {
                        return Poll::Ready(Some(Err(e.into())));
                    }
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A socket that counts the bytes it moves, both ways.
struct Counted {
    inner: Socket,
    moved: Arc<AtomicU64>,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        self.moved.fetch_add(n, Ordering::Relaxed);
        r
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.moved.fetch_add(n as u64, Ordering::Relaxed);
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = r {
            self.moved.fetch_add(n as u64, Ordering::Relaxed);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
