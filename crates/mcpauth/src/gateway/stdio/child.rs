//! One child process of a session and the requests waiting on it: where each line it writes
//! goes (an answer, a message related to a request in flight, or the GET stream).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::ANSWER_TIMEOUT;
use super::call::next;
use crate::gateway::resume::Streams;
use crate::relay::bridge::{self, Filter};

/// A message from the child for a request waiting on it.
pub(super) enum Out {
    /// A notification or server request related to the request.
    Related(String),
    /// The request's answer: the last message.
    Answer(String),
}

/// A request waiting for the child's answer.
pub(super) struct Waiter {
    pub(super) tx: mpsc::Sender<Out>,
    /// The request's `_meta.progressToken` (as JSON text), if any.
    pub(super) progress: Option<String>,
    /// Whether the client accepts an SSE answer, which may carry related messages first.
    pub(super) streams: bool,
    /// When it was sent, in the session's order.
    pub(super) order: u64,
    /// The client's id of a 2026-07-28 request (the child knows the gateway's).
    pub(super) client: Option<Value>,
}

/// The requests waiting for a child's answers, by id (as JSON text).
#[derive(Default)]
pub(super) struct Pending {
    /// Set once the child has ended: no one may wait any more.
    pub(super) closed: bool,
    pub(super) sent: u64,
    pub(super) waiters: HashMap<String, Waiter>,
}

impl Pending {
    /// The stream a notification or server request from the child belongs on. A stdio
    /// server does not say which request a message relates to, so the gateway decides as the
    /// MCP SDKs do when they tag messages: progress goes to the request whose
    /// `_meta.progressToken` it names (MCP basic/utilities/progress), and any other message to
    /// the request in flight, the most recent one when several are (Streamable HTTP §Sending
    /// Messages to the Server: related messages SHOULD go on the request's SSE stream). `None`:
    /// no such request (it goes to the GET stream).
    pub(super) fn related(&self, message: &Value) -> Option<mpsc::Sender<Out>> {
        let mut open = self
            .waiters
            .values()
            .filter(|w| w.streams && !w.tx.is_closed());
        if message["method"] == "notifications/progress" {
            let token = message["params"]["progressToken"].to_string();
            return open
                .find(|w| w.progress.as_deref() == Some(token.as_str()))
                .map(|w| w.tx.clone());
        }
        open.max_by_key(|w| w.order).map(|w| w.tx.clone())
    }
}

/// When a session was last used, and how many requests use it now.
pub(super) struct Activity {
    pub(super) last: Instant,
    pub(super) busy: usize,
}

/// One child process and what is waiting on it.
pub(super) struct Child {
    pub(super) owner: (String, String),
    pub(super) stdin: mpsc::Sender<String>,
    pub(super) pending: Mutex<Pending>,
    /// The GET stream of the messages related to no request in flight, if one is open.
    pub(super) listener: Mutex<Option<mpsc::Sender<String>>>,
    /// The `subscriptions/listen` streams of 2026-07-28 clients: request id, filter, stream.
    pub(super) subscriptions: Mutex<Vec<(Value, Filter, mpsc::Sender<String>)>>,
    pub(super) kill: Mutex<Option<oneshot::Sender<()>>>,
    pub(super) activity: Mutex<Activity>,
    /// The session's resumable SSE answers.
    pub(super) streams: Arc<Streams>,
}

impl Child {
    /// Fails every waiting request at once (its reply sender is dropped) and refuses new ones;
    /// ends the GET stream.
    pub(super) fn close(&self) {
        let waiters = {
            let mut pending = self.pending.lock().unwrap();
            pending.closed = true;
            std::mem::take(&mut pending.waiters)
        };
        drop(waiters);
        self.listener.lock().unwrap().take();
        self.subscriptions.lock().unwrap().clear();
    }

    /// Sends the gateway's own `request` and waits for its result.
    pub(super) async fn ask(&self, request: &Value) -> Result<Value, &'static str> {
        let id = &request["id"];
        let (tx, mut rx) = mpsc::channel::<Out>(1);
        {
            let mut pending = self.pending.lock().unwrap();
            if pending.closed {
                return Err("the stdio MCP server has exited");
            }
            pending.sent += 1;
            let waiter = Waiter {
                tx,
                progress: None,
                streams: false,
                order: pending.sent,
                client: None,
            };
            pending.waiters.insert(id.to_string(), waiter);
        }
        if self.stdin.send(request.to_string()).await.is_err() {
            return Err("the stdio MCP server has exited");
        }
        match next(self, id, &mut rx, Instant::now() + ANSWER_TIMEOUT).await {
            Ok(Out::Answer(line)) => {
                let answer: Value = serde_json::from_str(&line).unwrap_or_default();
                match answer.get("result") {
                    Some(result) if result.is_object() => Ok(result.clone()),
                    _ => Err("the stdio MCP server refused the request"),
                }
            }
            // Related messages go only to requests that take a stream, which this is not.
            Ok(Out::Related(_)) => Err("the stdio MCP server did not answer"),
            Err((_, why)) => Err(why),
        }
    }

    /// Counts a request as using the session until the guard is dropped.
    pub(super) fn busy(self: &Arc<Self>) -> Busy {
        let mut a = self.activity.lock().unwrap();
        a.busy += 1;
        a.last = Instant::now();
        Busy(Arc::clone(self))
    }

    /// Resolves once the session has had no request for `timeout`.
    pub(super) async fn idle(&self, timeout: Duration) {
        loop {
            let wake = {
                let a = self.activity.lock().unwrap();
                if a.busy > 0 {
                    Instant::now() + timeout
                } else if a.last.elapsed() >= timeout {
                    return;
                } else {
                    a.last + timeout
                }
            };
            tokio::time::sleep_until(wake).await;
        }
    }
}

/// A request using a session: the session cannot idle out meanwhile.
pub(super) struct Busy(Arc<Child>);

impl Drop for Busy {
    fn drop(&mut self) {
        let mut a = self.0.activity.lock().unwrap();
        a.busy -= 1;
        a.last = Instant::now();
    }
}

/// Routes one line from the child: an answer to its waiting request, a message related to a
/// waiting request on that request's stream ([`Pending::related`]), else to the GET stream;
/// without one, a server request is refused at once and anything else dropped.
pub(super) async fn deliver(child: &Child, line: String) {
    let Ok(message) = serde_json::from_str::<Value>(&line) else {
        tracing::warn!("the stdio MCP server wrote something that is not JSON-RPC; dropped");
        return;
    };
    let is_answer = message.get("method").is_none()
        && (message.get("result").is_some() || message.get("error").is_some());
    let subscribed: Vec<(String, mpsc::Sender<String>)> = {
        let mut subscriptions = child.subscriptions.lock().unwrap();
        subscriptions.retain(|(_, _, tx)| !tx.is_closed());
        subscriptions
            .iter()
            .filter(|(_, filter, _)| filter.wants(&message))
            .map(|(id, _, tx)| {
                (
                    bridge::tag_subscription(&message, id).to_string(),
                    tx.clone(),
                )
            })
            .collect()
    };
    if !subscribed.is_empty() {
        // MCP 2026-07-28 "Subscriptions": what a subscription asked for goes there only.
        for (tagged, tx) in subscribed {
            let _ = tx.send(tagged).await;
        }
        return;
    }
    let waiter = {
        let mut pending = child.pending.lock().unwrap();
        if is_answer {
            pending
                .waiters
                .remove(&message["id"].to_string())
                .map(|w| (w.tx, Out::Answer(line.clone())))
        } else {
            pending
                .related(&message)
                .map(|tx| (tx, Out::Related(line.clone())))
        }
    };
    if let Some((tx, out)) = waiter {
        // The request's client may have gone: then its messages go nowhere, as they would
        // have on its stream.
        let _ = tx.send(out).await;
        return;
    }
    let listener = child.listener.lock().unwrap().clone();
    match listener {
        Some(tx) => {
            let _ = tx.send(line).await;
        }
        None if message.get("method").is_some() && message.get("id").is_some() => {
            // A server request no client can see: an error now, or the server waits forever.
            let refusal = json!({"jsonrpc": "2.0", "id": message["id"], "error": {"code": -32601,
                "message": "no MCP client stream is open to take this request (no request in flight, no GET stream)"}});
            let _ = child.stdin.send(refusal.to_string()).await;
        }
        None => tracing::debug!("a server message arrived with no GET stream open; dropped"),
    }
}
