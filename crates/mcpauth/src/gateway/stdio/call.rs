//! A request sent to the child, answered as JSON or as a (resumable) SSE stream, and
//! 2026-07-28 requests parked until their client retries with answers (`requestState`).

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::child::{Busy, Child, Out};
use super::{ANSWER_TIMEOUT, StdioUpstream, error, error_message};
use crate::relay::bridge::{self};
use mcpauth_core::mcp_headers::ToolHeaders;

/// A request waiting for the child's answer, on behalf of its client.
pub(super) struct Call {
    pub(super) up: Arc<StdioUpstream>,
    pub(super) owner: (String, String),
    pub(super) child: Arc<Child>,
    /// The session stays busy while the request waits.
    pub(super) _busy: Busy,
    pub(super) rx: mpsc::Receiver<Out>,
    /// The request's id as the child knows it.
    pub(super) wire_id: Value,
    pub(super) reply: Reply,
    pub(super) deadline: Instant,
}

impl Call {
    /// The next message for the client and whether it is the last, or why none will come.
    pub(super) async fn next(&mut self) -> Result<(String, bool), (StatusCode, &'static str)> {
        loop {
            let line = match next(&self.child, &self.wire_id, &mut self.rx, self.deadline).await? {
                Out::Answer(line) => return Ok((self.reply.answer(line), true)),
                Out::Related(line) => line,
            };
            let message: Value = serde_json::from_str(&line).unwrap_or_default();
            // MCP 2026-07-28: log messages only for a request that asked (`_meta` logLevel).
            if !self.reply.logs && message["method"] == "notifications/message" {
                continue;
            }
            return Ok(match self.park(&message) {
                Some(interim) => (interim, true),
                None => (line, false),
            });
        }
    }

    /// For a 2026-07-28 client, which takes no server requests, a server request in the
    /// middle of its request: the request is parked and answered with an `input_required`
    /// result whose retry carries the client's answer (MCP 2026-07-28 "Multi Round-Trip
    /// Requests", bridged as `mcpauth connect` does). `None`: not such a message.
    fn park(&mut self, request: &Value) -> Option<String> {
        let modern = self.reply.modern.clone()?;
        let server_id = request
            .get("id")
            .filter(|_| request.get("method").is_some())?;
        let state = mcpauth_core::random_urlsafe(24).ok()?;
        let key = format!(
            "input-{}",
            server_id
                .as_str()
                .map_or_else(|| server_id.to_string(), str::to_owned)
        );
        let interim = json!({"jsonrpc": "2.0", "id": self.reply.id,
            "result": bridge::input_required(&key, request, &state)});
        let parked = Parked {
            owner: self.owner.clone(),
            child: Arc::clone(&self.child),
            wire_id: self.wire_id.clone(),
            modern,
            logs: self.reply.logs,
            // What the child sends for the request meanwhile waits there for the retry.
            rx: std::mem::replace(&mut self.rx, mpsc::channel(1).1),
            server_id: server_id.clone(),
            key,
        };
        let mut all = self.up.parked.lock().unwrap();
        all.retain(|_, p| !p.child.pending.lock().unwrap().closed);
        all.insert(state, parked);
        Some(interim.to_string())
    }
}

/// A 2026-07-28 request waiting for its client's retry with the answer to a server request.
pub(super) struct Parked {
    pub(super) owner: (String, String),
    pub(super) child: Arc<Child>,
    pub(super) wire_id: Value,
    pub(super) modern: (String, Arc<ToolHeaders>),
    pub(super) logs: bool,
    pub(super) rx: mpsc::Receiver<Out>,
    /// The server request's id and its key in `inputRequests`.
    pub(super) server_id: Value,
    pub(super) key: String,
}

/// The retry of a parked request (MCP 2026-07-28 "Multi Round-Trip Requests"): the answer in
/// `inputResponses` goes to the child's waiting request, and the request's next message (its
/// answer, or another server request) to this retry.
pub(super) async fn resume(
    up: Arc<StdioUpstream>,
    owner: (String, String),
    state: &str,
    message: &Value,
    client_id: Option<Value>,
) -> Response {
    let parked = {
        let mut all = up.parked.lock().unwrap();
        // S12: only the user whose request it is may resume it.
        match all.get(state) {
            Some(p) if p.owner == owner => all.remove(state),
            _ => None,
        }
    };
    let Some(parked) = parked else {
        return error(
            StatusCode::BAD_REQUEST,
            client_id.as_ref(),
            "unknown requestState: the request it belongs to is no longer waiting",
        );
    };
    let answer = match message["params"]["inputResponses"].get(&parked.key) {
        Some(result) => json!({"jsonrpc": "2.0", "id": parked.server_id, "result": result}),
        None => json!({"jsonrpc": "2.0", "id": parked.server_id,
            "error": {"code": -32603, "message": "the MCP client gave no answer"}}),
    };
    if parked.child.stdin.send(answer.to_string()).await.is_err() {
        return error(
            StatusCode::BAD_GATEWAY,
            client_id.as_ref(),
            "the stdio MCP server has exited",
        );
    }
    let call = Call {
        up,
        owner,
        _busy: parked.child.busy(),
        child: parked.child,
        rx: parked.rx,
        wire_id: parked.wire_id,
        reply: Reply {
            id: client_id,
            modern: Some(parked.modern),
            logs: parked.logs,
        },
        deadline: Instant::now() + ANSWER_TIMEOUT,
    };
    respond(call, None).await
}

/// The response to a request: JSON when its answer comes first, else an SSE stream of the
/// messages related to it, its answer last (Streamable HTTP §Sending Messages to the Server);
/// the session stays busy while it is open.
pub(super) async fn respond(mut call: Call, new_session: Option<String>) -> Response {
    let first = match call.next().await {
        Err((status, message)) => return error(status, call.reply.id.as_ref(), message),
        Ok((answer, true)) => {
            // A 2026-07-28 error answer carries its HTTP status (Streamable HTTP §Protocol
            // Version Header): the server's -32601 is a 404, -32021 a 400.
            let status = match &call.reply.modern {
                Some(_) => serde_json::from_str::<Value>(&answer)
                    .map_or(200, |a| bridge::answer_status(&a)),
                None => 200,
            };
            let mut response = Response::builder()
                .status(status)
                .header("content-type", "application/json");
            if let Some(session) = new_session {
                response = response.header("mcp-session-id", session);
            }
            return response
                .body(Body::from(answer))
                .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
        }
        Ok((first, false)) => first,
    };
    if call.reply.modern.is_none() {
        // A session's request: a resumable stream whose request runs on if the connection
        // drops (Streamable HTTP: a disconnection is not a cancellation).
        let (stream, body) = call.child.streams.open();
        tokio::spawn(async move {
            stream.send(&first).await;
            loop {
                match call.next().await {
                    Ok((line, last)) => {
                        stream.send(&line).await;
                        if last {
                            break;
                        }
                    }
                    Err((_, message)) => {
                        let line = error_message(call.reply.id.as_ref(), message).to_string();
                        stream.send(&line).await;
                        break;
                    }
                }
            }
            stream.end();
        });
        let mut response = sse(body);
        if let Some(session) = new_session
            && let Ok(value) = session.parse()
        {
            response.headers_mut().insert("mcp-session-id", value);
        }
        return response;
    }
    let events = futures_util::stream::unfold(
        (Some(first), call, false),
        |(first, mut call, done)| async move {
            if done {
                return None;
            }
            let (line, done) = match first {
                Some(line) => (line, false),
                None => match call.next().await {
                    Ok(next) => next,
                    Err((_, message)) => (
                        error_message(call.reply.id.as_ref(), message).to_string(),
                        true,
                    ),
                },
            };
            let event = Bytes::from(format!("event: message\ndata: {line}\n\n"));
            Some((Ok::<_, Infallible>(event), (None, call, done)))
        },
    );
    sse(Body::from_stream(events))
}

/// An SSE response with `body`.
pub(super) fn sse(body: Body) -> Response {
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-store")
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// How the answer to a client's request is sent back.
pub(super) struct Reply {
    /// The client's id of the request.
    pub(super) id: Option<Value>,
    /// The method of a 2026-07-28 request (bridged to the legacy server), if it is one, and
    /// the `x-mcp-header` parameters of its user's tools.
    pub(super) modern: Option<(String, Arc<ToolHeaders>)>,
    /// Whether log messages related to the request go to the client.
    pub(super) logs: bool,
}

impl Reply {
    /// The child's answer as the client gets it: for a 2026-07-28 request with the client's id
    /// back (the gateway sent its own) and a complete 2026-07-28 result (SEP-2322, SEP-2549).
    pub(super) fn answer(&self, line: String) -> String {
        let Some((method, tools)) = &self.modern else {
            return line;
        };
        let Ok(mut answer) = serde_json::from_str::<Value>(&line) else {
            return line;
        };
        answer["id"] = self.id.clone().unwrap_or_default();
        if answer["result"].is_object() {
            bridge::complete_result(method, &mut answer["result"]);
            if method == "tools/list" {
                // §Schema Extension: tools with invalid `x-mcp-header` annotations are left out.
                for left in tools.learn(&mut answer["result"]) {
                    tracing::warn!(tool = %left.tool, reason = %left.reason, "a tool left out of tools/list");
                }
            }
        }
        answer.to_string()
    }
}

/// The next message for request `id`, or why none will come: the child ended, or the
/// deadline passed (then the request stops waiting).
pub(super) async fn next(
    child: &Child,
    id: &Value,
    rx: &mut mpsc::Receiver<Out>,
    deadline: Instant,
) -> Result<Out, (StatusCode, &'static str)> {
    match tokio::time::timeout_at(deadline, rx.recv()).await {
        Ok(Some(out)) => Ok(out),
        Ok(None) => Err((
            StatusCode::BAD_GATEWAY,
            "the stdio MCP server exited before answering",
        )),
        Err(_) => {
            child
                .pending
                .lock()
                .unwrap()
                .waiters
                .remove(&id.to_string());
            Err((
                StatusCode::GATEWAY_TIMEOUT,
                "the stdio MCP server did not answer in time",
            ))
        }
    }
}
