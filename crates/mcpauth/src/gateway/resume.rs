//! Resumable SSE answers of stdio sessions (Streamable HTTP 2025-11-25 §Resumability and
//! Redelivery, SEP-1699). Every event of a request's SSE stream gets an id `S-N` (stream `S` of
//! the session, event `N`), unique in the session; the stream opens with a priming event (an id,
//! `retry` and empty data) so that a client whose connection drops can resume at once. The
//! request keeps running when the connection drops: its events are kept (bounded) and a GET
//! with `Last-Event-ID: S-N` gets those after `N`, then the rest as they come — never another
//! stream's (§Resumability: no replay across streams). An ended stream is kept [`KEEP_ENDED`]
//! for a late reconnection.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use axum::body::{Body, Bytes};
use futures_util::StreamExt;
use tokio::sync::mpsc;

/// The reconnection delay the priming event asks for, in milliseconds.
pub(super) const RETRY_MS: u64 = 1000;
/// How long an ended stream's events stay for a reconnection.
const KEEP_ENDED: Duration = Duration::from_secs(60);
/// Most bytes of events kept per stream (the oldest go first).
const MAX_STREAM_BYTES: usize = 256 * 1024;
/// Most streams kept per session (ended ones go first, oldest first).
const MAX_STREAMS: usize = 16;

/// The streams of one session.
#[derive(Default)]
pub(super) struct Streams {
    next: AtomicU64,
    logs: Mutex<HashMap<u64, Arc<Mutex<Log>>>>,
}

#[derive(Default)]
struct Log {
    /// Events after the priming one: (N, the event's bytes).
    events: VecDeque<(u64, Bytes)>,
    bytes: usize,
    sent: u64,
    /// The connection the events go to now, if any.
    live: Option<mpsc::Sender<Bytes>>,
    done: bool,
}

/// One request's stream: [`Stream::send`] its messages, [`Stream::end`] after the last.
pub(super) struct Stream {
    id: u64,
    log: Arc<Mutex<Log>>,
    streams: Weak<Streams>,
}

impl Streams {
    /// A new stream and the body of its first connection (which starts with the priming
    /// event).
    pub(super) fn open(self: &Arc<Self>) -> (Stream, Body) {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = mpsc::channel(64);
        let log = Arc::new(Mutex::new(Log {
            live: Some(tx),
            ..Log::default()
        }));
        {
            let mut logs = self.logs.lock().unwrap();
            if logs.len() >= MAX_STREAMS {
                let oldest_ended = logs
                    .iter()
                    .filter(|(_, l)| l.lock().unwrap().done)
                    .map(|(k, _)| *k)
                    .min();
                if let Some(k) = oldest_ended.or_else(|| logs.keys().min().copied()) {
                    logs.remove(&k);
                }
            }
            logs.insert(id, Arc::clone(&log));
        }
        let priming = Bytes::from(format!("id: {id}-0\nretry: {RETRY_MS}\ndata: \n\n"));
        let body = body(vec![priming], Some(rx));
        let stream = Stream {
            id,
            log,
            streams: Arc::downgrade(self),
        };
        (stream, body)
    }

    /// The body for a reconnection with `Last-Event-ID: last`: the events of that stream after
    /// it, then the rest as they come. `None`: no stream of this session has that id.
    pub(super) fn resume(&self, last: &str) -> Option<Body> {
        let (stream, seen) = last.split_once('-')?;
        let (stream, seen): (u64, u64) = (stream.parse().ok()?, seen.parse().ok()?);
        let log = self.logs.lock().unwrap().get(&stream).cloned()?;
        let mut log = log.lock().unwrap();
        if seen > log.sent {
            return None;
        }
        let replay = log
            .events
            .iter()
            .filter(|(n, _)| *n > seen)
            .map(|(_, e)| e.clone())
            .collect();
        let rx = if log.done {
            None
        } else {
            let (tx, rx) = mpsc::channel(64);
            // The earlier connection, if still open, gets nothing more.
            log.live = Some(tx);
            Some(rx)
        };
        Some(body(replay, rx))
    }
}

impl Stream {
    /// Sends `line` (one JSON-RPC message) as the stream's next event, and keeps it.
    pub(super) async fn send(&self, line: &str) {
        let live = {
            let mut log = self.log.lock().unwrap();
            log.sent += 1;
            let event = Bytes::from(format!(
                "id: {}-{}\nevent: message\ndata: {line}\n\n",
                self.id, log.sent
            ));
            log.bytes += event.len();
            let n = log.sent;
            log.events.push_back((n, event.clone()));
            while log.bytes > MAX_STREAM_BYTES && log.events.len() > 1 {
                if let Some((_, old)) = log.events.pop_front() {
                    log.bytes -= old.len();
                }
            }
            log.live.clone().map(|tx| (tx, event))
        };
        if let Some((tx, event)) = live
            && tx.send(event).await.is_err()
        {
            // The connection went away: the events wait for a reconnection.
            let mut log = self.log.lock().unwrap();
            if log.live.as_ref().is_some_and(|l| l.same_channel(&tx)) {
                log.live = None;
            }
        }
    }

    /// After the last event: the connection ends, and the events stay [`KEEP_ENDED`].
    pub(super) fn end(self) {
        {
            let mut log = self.log.lock().unwrap();
            log.done = true;
            log.live = None;
        }
        let (id, streams) = (self.id, self.streams);
        tokio::spawn(async move {
            tokio::time::sleep(KEEP_ENDED).await;
            if let Some(streams) = streams.upgrade() {
                streams.logs.lock().unwrap().remove(&id);
            }
        });
    }
}

/// `first` events, then what `rx` brings.
fn body(first: Vec<Bytes>, rx: Option<mpsc::Receiver<Bytes>>) -> Body {
    let first = futures_util::stream::iter(first);
    let rest = futures_util::stream::unfold(rx, |rx| async move {
        let mut rx = rx?;
        let event = rx.recv().await?;
        Some((event, Some(rx)))
    });
    Body::from_stream(first.chain(rest).map(Ok::<_, Infallible>))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn text(body: Body) -> String {
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn sep1699_events_have_ids_and_a_reconnection_gets_those_after_its_last() {
        let streams = Arc::new(Streams::default());
        let (stream, first) = streams.open();
        drop(first); // the connection drops at once
        stream.send("{\"a\":1}").await;
        stream.send("{\"a\":2}").await;
        assert!(streams.resume("1-5").is_none(), "an id not sent yet");
        assert!(streams.resume("2-0").is_none(), "another stream");
        assert!(streams.resume("x").is_none());
        let again = streams.resume("1-1").unwrap();
        stream.send("{\"a\":3}").await;
        stream.end();
        assert_eq!(
            text(again).await,
            "id: 1-2\nevent: message\ndata: {\"a\":2}\n\nid: 1-3\nevent: message\ndata: {\"a\":3}\n\n"
        );
        // Ended: a reconnection gets the rest and the body ends.
        let late = streams.resume("1-2").unwrap();
        assert_eq!(
            text(late).await,
            "id: 1-3\nevent: message\ndata: {\"a\":3}\n\n"
        );
    }

    #[tokio::test]
    async fn sep1699_the_first_connection_starts_with_the_priming_event() {
        let streams = Arc::new(Streams::default());
        let (stream, body) = streams.open();
        stream.send("{}").await;
        stream.end();
        assert_eq!(
            text(body).await,
            format!(
                "id: 1-0\nretry: {RETRY_MS}\ndata: \n\nid: 1-1\nevent: message\ndata: {{}}\n\n"
            )
        );
    }
}
