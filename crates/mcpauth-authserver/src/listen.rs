//! Serving a router with limits on what one connection may hold: a deadline for the request
//! head and for the request body, an idle timeout between requests, and a cap on open
//! connections (security review finding 2, slowloris). `mcpauth serve` and `mcpauth gateway`
//! both serve through [`serve_router`].
//!
//! A connection is idle while no request is in flight; a response body that is still streaming
//! (an SSE stream) counts as in flight, so long-lived streams are never cut by the idle timeout.
//! The head deadline runs from the first byte of a request head (from the connection's start for
//! the first one), so a keep-alive connection waits the idle timeout between requests, not the
//! shorter head deadline (hyper's own header timeout would count that wait too).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::serve::Listener;
use http_body::{Frame, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::time::{Instant, Sleep, sleep, sleep_until};
use tower::ServiceExt;

/// How long connections may take and how many may be open at once. The defaults suit a
/// server on the internet; every field can be changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// The whole request head (request line and headers) must arrive within this time of its
    /// first byte (of the connection's start for the first request), or the connection is
    /// closed. Default 10 s.
    pub header_read_timeout: Duration,
    /// The whole request body must arrive within this time of the head, or the request fails
    /// (HTTP 400) and the connection is closed. Default 30 s.
    pub body_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed. Responses that are
    /// still streaming (SSE) are in flight. Default 60 s.
    pub idle_timeout: Duration,
    /// At most this many connections are open at once; further clients wait in the listen
    /// backlog until one closes. Default 1024.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
        }
    }
}

/// How long a connection asked to close (idle, or the server stopping) may take to finish
/// before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// How long the server waits for open connections (e.g. SSE streams) when it stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `shutdown` completes, within `limits`. Each request
/// carries the peer's [`ConnectInfo<SocketAddr>`] (for per-IP rate limits). After `shutdown`,
/// no new connection is accepted, idle ones close at once and the others get
/// 10 s to finish.
pub async fn serve_router<L>(
    mut listener: L,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: Listener<Addr = SocketAddr>,
{
    let max = limits.max_connections.max(1);
    let slots = Arc::new(Semaphore::new(max));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.map_err(std::io::Error::other)?,
            () = &mut shutdown => break,
        };
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let app = app.clone();
        let stop = stop_rx.clone();
        tokio::spawn(async move {
            serve_connection(io, peer, app, limits, stop).await;
            drop(permit);
        });
    }
    let _ = stop_tx.send(true);
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, slots.acquire_many(all)).await;
    Ok(())
}

/// One connection: HTTP/1.1 (or HTTP/2) with the head deadline, the body deadline on every request, and
/// the idle watchdog.
async fn serve_connection<I>(
    io: I,
    peer: SocketAddr,
    app: Router,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let busy = Busy::begin(activity.clone());
            let mut req = req.map(|b| Body::new(DeadlineBody::new(b, limits.body_read_timeout)));
            req.extensions_mut().insert(ConnectInfo(peer));
            let app = app.clone();
            async move {
                let response = app.oneshot(req).await?;
                Ok::<_, std::convert::Infallible>(response.map(|b| {
                    Body::new(BusyBody {
                        inner: b,
                        _busy: busy,
                    })
                }))
            }
        })
    };
    // HTTP/1.1, or HTTP/2 when TLS negotiated it (ALPN `h2`). The head deadline is ours (see
    // the module text), so hyper's is off.
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None);
    builder.http2().timer(TokioTimer::new());
    let io = Watched {
        inner: io,
        activity: activity.clone(),
        first_read: true,
    };
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut closing: Option<Instant> = None;
    loop {
        let wake = match closing {
            Some(deadline) => deadline,
            None => activity.next_check(&limits),
        };
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            () = sleep_until(wake) => {
                if closing.is_some() {
                    tracing::debug!(%peer, "connection did not close in time; dropped");
                    return;
                }
                // Like a head that never ends: dropped without grace (slowloris).
                if activity.head_overdue(limits.header_read_timeout) {
                    tracing::debug!(%peer, "request head not received in time; connection dropped");
                    return;
                }
                if activity.is_idle_since(limits.idle_timeout) {
                    tracing::debug!(%peer, "idle connection closed");
                    conn.as_mut().graceful_shutdown();
                    closing = Some(Instant::now() + CLOSE_GRACE);
                }
            }
            () = activity.head_began.notified(), if closing.is_none() => {}
            _ = stop.changed(), if closing.is_none() => {
                conn.as_mut().graceful_shutdown();
                closing = Some(Instant::now() + SHUTDOWN_GRACE);
            }
        }
    }
}

/// Requests in flight on one connection, when the last one ended, and when the head of the next
/// one began.
struct Activity {
    in_flight: AtomicUsize,
    last_end: Mutex<Instant>,
    /// When the first byte of a request head arrived (the connection's start for the first
    /// head); `None` while a request is in flight or none has begun since.
    head_since: Mutex<Option<Instant>>,
    /// Whether heads are watched: HTTP/1 only (an HTTP/2 connection has frames, such as pings,
    /// between requests; it has the idle timeout).
    heads: AtomicBool,
    /// Wakes the watchdog when a head begins, so that its deadline counts from then.
    head_began: Notify,
}

impl Activity {
    fn new() -> Self {
        let now = Instant::now();
        Activity {
            in_flight: AtomicUsize::new(0),
            last_end: Mutex::new(now),
            head_since: Mutex::new(Some(now)),
            heads: AtomicBool::new(true),
            head_began: Notify::new(),
        }
    }

    fn last_end(&self) -> Instant {
        *self.last_end.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn head_since(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.head_since.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes arrived: with no request in flight, they begin a head.
    fn read_some(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0 && self.heads.load(Ordering::Acquire) {
            let mut since = self.head_since();
            if since.is_none() {
                *since = Some(Instant::now());
                self.head_began.notify_one();
            }
        }
    }

    /// The connection speaks HTTP/2: no head deadline between requests.
    fn http2(&self) {
        self.heads.store(false, Ordering::Release);
        self.head_since().take();
    }

    /// The head that began, if one did and no request is in flight.
    fn pending_head(&self) -> Option<Instant> {
        let since = *self.head_since();
        since.filter(|_| self.in_flight.load(Ordering::Acquire) == 0)
    }

    /// When to look again: `idle` after the last request ended (or `idle` from now while one
    /// is in flight), or sooner when a head is due.
    fn next_check(&self, limits: &ConnectionLimits) -> Instant {
        let idle = if self.in_flight.load(Ordering::Acquire) > 0 {
            Instant::now() + limits.idle_timeout
        } else {
            self.last_end() + limits.idle_timeout
        };
        match self.pending_head() {
            Some(since) => idle.min(since + limits.header_read_timeout),
            None => idle,
        }
    }

    /// A head began more than `limit` ago and its request has not started.
    fn head_overdue(&self, limit: Duration) -> bool {
        self.pending_head()
            .is_some_and(|since| since.elapsed() >= limit)
    }

    fn is_idle_since(&self, idle: Duration) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0 && self.last_end().elapsed() >= idle
    }
}

/// The connection's I/O, telling its [`Activity`] when bytes arrive.
struct Watched<I> {
    inner: I,
    activity: Arc<Activity>,
    first_read: bool,
}

/// The start of the HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

impl<I: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Watched<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let got = &buf.filled()[before..];
        if matches!(polled, Poll::Ready(Ok(()))) && !got.is_empty() {
            if std::mem::take(&mut self.first_read) {
                let n = got.len().min(H2_PREFACE.len());
                if got[..n] == H2_PREFACE[..n] {
                    self.activity.http2();
                }
            }
            self.activity.read_some();
        }
        polled
    }
}

impl<I: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Watched<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Marks a request in flight until dropped (with the end of its response body).
struct Busy(Arc<Activity>);

impl Busy {
    fn begin(activity: Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        activity.head_since().take();
        Busy(activity)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        *self.0.last_end.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request in flight until it is finished or dropped.
struct BusyBody {
    inner: Body,
    _busy: Busy,
}

impl http_body::Body for BusyBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The request body did not arrive within the body deadline.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
struct BodyTimeout(Duration);

/// A request body that fails once its deadline has passed.
struct DeadlineBody {
    inner: hyper::body::Incoming,
    limit: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl DeadlineBody {
    fn new(inner: hyper::body::Incoming, limit: Duration) -> Self {
        DeadlineBody {
            inner,
            limit,
            deadline: Box::pin(sleep(limit)),
        }
    }
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout(self.limit))))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
