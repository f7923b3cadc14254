//! Serving a router with limits on what one connection may hold: a deadline for the request
//! head and for the request body, an idle timeout between requests, and a cap on open
//! connections (security review finding 2, slowloris). `mcpauth serve` and `mcpauth gateway`
//! both serve through [`serve_router`].
//!
//! A connection is idle while no request is in flight; a response body that is still streaming
//! (an SSE stream) counts as in flight, so long-lived streams are never cut by the idle timeout.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::serve::Listener;
use http_body::{Frame, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::sync::{Semaphore, watch};
use tokio::time::{Instant, Sleep, sleep, sleep_until};
use tower::ServiceExt;

/// How long connections may take and how many may be open at once. The defaults suit a
/// server on the internet; every field can be changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// The whole request head (request line and headers) must arrive within this time, or the
    /// connection is closed. Default 10 s.
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
    // HTTP/1.1, or HTTP/2 when TLS negotiated it (ALPN `h2`).
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut closing: Option<Instant> = None;
    loop {
        let wake = match closing {
            Some(deadline) => deadline,
            None => activity.idle_deadline(limits.idle_timeout),
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
                if activity.is_idle_since(limits.idle_timeout) {
                    tracing::debug!(%peer, "idle connection closed");
                    conn.as_mut().graceful_shutdown();
                    closing = Some(Instant::now() + CLOSE_GRACE);
                }
            }
            _ = stop.changed(), if closing.is_none() => {
                conn.as_mut().graceful_shutdown();
                closing = Some(Instant::now() + SHUTDOWN_GRACE);
            }
        }
    }
}

/// Requests in flight on one connection and when the last one ended.
struct Activity {
    in_flight: AtomicUsize,
    last_end: Mutex<Instant>,
}

impl Activity {
    fn new() -> Self {
        Activity {
            in_flight: AtomicUsize::new(0),
            last_end: Mutex::new(Instant::now()),
        }
    }

    fn last_end(&self) -> Instant {
        *self.last_end.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// When to look again: `idle` after the last request ended (or `idle` from now while one
    /// is in flight).
    fn idle_deadline(&self, idle: Duration) -> Instant {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            Instant::now() + idle
        } else {
            self.last_end() + idle
        }
    }

    fn is_idle_since(&self, idle: Duration) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0 && self.last_end().elapsed() >= idle
    }
}

/// Marks a request in flight until dropped (with the end of its response body).
struct Busy(Arc<Activity>);

impl Busy {
    fn begin(activity: Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
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
