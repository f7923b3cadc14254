//! Connection limits (security review finding 2, slowloris): head and body deadlines, the idle
//! timeout, the connection cap, and long-lived streams exempt from the idle timeout. Each test
//! waits at most 10 s for what must happen after 1 s; before the limits existed, every one of
//! them waited forever.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::routing::get;
use http_body::Frame;
use mcpauth_authserver::{ConnectionLimits, serve_router};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Sleep, sleep, timeout};

use crate::support::{Db, StopOnDrop, TestServer, http};

/// How long a test waits for something that must happen about a second after it starts.
const PATIENCE: Duration = Duration::from_secs(10);

/// Limits of one second each, so that the tests see them act.
fn short(max_connections: usize) -> ConnectionLimits {
    ConnectionLimits {
        header_read_timeout: Duration::from_secs(1),
        body_read_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(1),
        max_connections,
    }
}

async fn server(max_connections: usize) -> (TestServer, Db) {
    let db = Db::sqlite();
    let ts = TestServer::start(&db, |c| c.connections = short(max_connections)).await;
    (ts, db)
}

fn addr(ts: &TestServer) -> String {
    ts.base.trim_start_matches("http://").to_owned()
}

/// Reads until the server closes the connection; what it sent, or `None` if it kept the
/// connection open past [`PATIENCE`].
async fn read_until_closed(stream: &mut TcpStream) -> Option<String> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    timeout(PATIENCE, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .ok()?;
    Some(String::from_utf8_lossy(&seen).into_owned())
}

/// Sends a request head on `wr`, one header line every 300 ms: never a complete head.
fn trickle(mut wr: tokio::net::tcp::OwnedWriteHalf) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let _ = wr.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await;
        for i in 0.. {
            sleep(Duration::from_millis(300)).await;
            if wr
                .write_all(format!("X-{i}: y\r\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
        }
    })
}

/// Reads a half until the server closes it, like [`read_until_closed`].
async fn read_half_until_closed(half: &mut tokio::net::tcp::OwnedReadHalf) -> Option<usize> {
    let mut buf = [0u8; 4096];
    let mut total = 0;
    timeout(PATIENCE, async {
        loop {
            match half.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    })
    .await
    .ok()?;
    Some(total)
}

#[tokio::test]
async fn sec2_slow_headers_are_cut_off_and_others_are_served() {
    let (ts, _db) = server(64).await;
    let mut slow = Vec::new();
    for _ in 0..5 {
        let (rd, wr) = TcpStream::connect(addr(&ts)).await.unwrap().into_split();
        slow.push((rd, trickle(wr)));
    }
    // Meanwhile a well-behaved client is served.
    let ok = http().get(ts.url("/healthz")).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    for (mut rd, trickle) in slow {
        assert!(
            read_half_until_closed(&mut rd).await.is_some(),
            "a connection trickling headers stayed open past the 1 s header timeout"
        );
        trickle.abort();
    }
}

#[tokio::test]
async fn sec2_partial_body_is_answered_and_closed() {
    let (ts, _db) = server(64).await;
    let mut stream = TcpStream::connect(addr(&ts)).await.unwrap();
    stream
        .write_all(
            b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
              Content-Length: 100\r\n\r\ngrant",
        )
        .await
        .unwrap();
    let answer = read_until_closed(&mut stream)
        .await
        .expect("a body that never completes was not answered within the body timeout");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    // The server still serves others.
    assert_eq!(
        http()
            .get(ts.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn sec2_idle_keep_alive_connection_is_closed() {
    let (ts, _db) = server(64).await;
    let mut stream = TcpStream::connect(addr(&ts)).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut stream)
        .await
        .expect("an idle keep-alive connection stayed open past the 1 s idle timeout");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("ok"), "{answer}");
}

#[tokio::test]
async fn sec2_connection_cap_holds_further_clients_until_one_closes() {
    let (ts, _db) = server(2).await;
    let first = TcpStream::connect(addr(&ts)).await.unwrap();
    let mut second = TcpStream::connect(addr(&ts)).await.unwrap();
    // Both slots are taken once the server answers on the second connection.
    second
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let n = timeout(PATIENCE, second.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    assert!(
        client.get(ts.url("/healthz")).send().await.is_err(),
        "a third connection was served while two were open and the cap is two"
    );
    drop(first);
    let served = timeout(PATIENCE, async {
        loop {
            if let Ok(r) = client.get(ts.url("/healthz")).send().await {
                return r.status();
            }
        }
    })
    .await
    .expect("no slot came free after a connection closed");
    assert_eq!(served, 200);
}

/// A response body that sends `left` chunks, one every `every`.
struct Ticks {
    left: u32,
    every: Duration,
    next: Pin<Box<Sleep>>,
}

impl http_body::Body for Ticks {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        if self.next.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.left -= 1;
        let every = self.every;
        self.next = Box::pin(sleep(every));
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"data: tick\n\n")))))
    }
}

#[tokio::test]
async fn sec2_streaming_response_is_exempt_from_the_idle_timeout() {
    // Like the gateway's SSE streams: 6 events 400 ms apart outlast the 1 s idle timeout.
    let app = axum::Router::new().route(
        "/events",
        get(|| async {
            Body::new(Ticks {
                left: 6,
                every: Duration::from_millis(400),
                next: Box::pin(sleep(Duration::from_millis(400))),
            })
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    let (_stop, stopped) = StopOnDrop::new();
    tokio::spawn(serve_router(listener, app, short(8), stopped));
    let body = timeout(PATIENCE, async {
        http().get(&url).send().await.unwrap().text().await.unwrap()
    })
    .await
    .expect("the stream did not finish");
    assert_eq!(body.matches("data: tick").count(), 6, "{body}");
}

/// A server whose idle timeout (10 s) is longer than its header timeout (1 s).
async fn patient_server() -> (TestServer, Db) {
    let db = Db::sqlite();
    let limits = ConnectionLimits {
        idle_timeout: Duration::from_secs(10),
        ..short(64)
    };
    let ts = TestServer::start(&db, |c| c.connections = limits).await;
    (ts, db)
}

/// Reads one `/healthz` answer (`Content-Length: 2`, "ok") from `rd`.
async fn healthz_answer(rd: &mut (impl tokio::io::AsyncRead + Unpin)) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !seen.ends_with(b"ok") {
        let n = timeout(PATIENCE, rd.read(&mut buf))
            .await
            .expect("no answer")
            .unwrap();
        assert!(
            n > 0,
            "closed before answering: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&seen).into_owned()
}

/// Sends `GET /healthz` on `stream` and reads the whole answer.
async fn healthz(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    healthz_answer(stream).await
}

/// `--idle-timeout` is the wait between requests on a keep-alive connection, not
/// `--header-timeout` (which is for a head that has begun): a client may wait 2 s between
/// requests when the idle timeout is 10 s and the header timeout 1 s.
#[tokio::test]
async fn sec2_a_keep_alive_connection_waits_the_idle_timeout_not_the_header_timeout() {
    let (ts, _db) = patient_server().await;
    let mut stream = TcpStream::connect(addr(&ts)).await.unwrap();
    assert!(healthz(&mut stream).await.starts_with("HTTP/1.1 200"));
    sleep(Duration::from_secs(2)).await;
    assert!(healthz(&mut stream).await.starts_with("HTTP/1.1 200"));
}

/// A second request head that begins, after a quiet spell, and never ends is cut off after the
/// header timeout from its first byte, even though the idle timeout is longer.
#[tokio::test]
async fn sec2_a_later_head_that_trickles_is_cut_off_at_the_header_timeout() {
    let (ts, _db) = patient_server().await;
    let mut stream = TcpStream::connect(addr(&ts)).await.unwrap();
    assert!(healthz(&mut stream).await.starts_with("HTTP/1.1 200"));
    let (mut rd, wr) = stream.into_split();
    sleep(Duration::from_secs(2)).await;
    let started = tokio::time::Instant::now();
    let trickle = trickle(wr);
    assert!(read_half_until_closed(&mut rd).await.is_some());
    let waited = started.elapsed();
    trickle.abort();
    // Cut by the 1 s header timeout, not by the idle timeout 8 s later.
    assert!(waited < Duration::from_secs(5), "closed after {waited:?}");
}
