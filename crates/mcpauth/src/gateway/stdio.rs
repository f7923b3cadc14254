//! `mcpauth gateway -- COMMAND ARGS…`: a stdio MCP server served over Streamable HTTP. Every MCP
//! session gets its own child process, bound to the principal that opened it (MCP SPEC S12);
//! children are killed when their session is deleted, when the gateway stops, and reaped when
//! they exit. Stdio itself carries no OAuth (MCP SPEC §0): the gateway is the boundary.

use std::collections::HashMap;
use std::convert::Infallible;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use mcpauth_resource::principal;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};

/// How long a request may wait for the child's answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(300);
/// Largest request body accepted.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// One child process and what is waiting on it.
struct Child {
    owner: (String, String),
    stdin: mpsc::Sender<String>,
    pending: Mutex<HashMap<String, oneshot::Sender<String>>>,
    /// The GET stream of server-initiated messages, if one is open.
    listener: Mutex<Option<mpsc::Sender<String>>>,
    kill: Mutex<Option<oneshot::Sender<()>>>,
}

/// The command and the live sessions.
pub struct StdioUpstream {
    command: Vec<String>,
    sessions: Mutex<HashMap<String, Arc<Child>>>,
}

impl std::fmt::Debug for StdioUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdioUpstream")
            .field("command", &self.command)
            .finish_non_exhaustive()
    }
}

fn error(status: StatusCode, id: Option<&Value>, message: &str) -> Response {
    let mut body = json!({"jsonrpc": "2.0", "error": {"code": -32600, "message": message}});
    if let Some(id) = id {
        body["id"] = id.clone();
    }
    (status, axum::Json(body)).into_response()
}

impl StdioUpstream {
    /// Serves `command` (program and arguments).
    pub fn new(command: Vec<String>) -> Self {
        Self {
            command,
            sessions: Mutex::default(),
        }
    }

    /// Starts a child for a new session owned by `owner`.
    fn spawn(self: &Arc<Self>, owner: (String, String)) -> std::io::Result<(String, Arc<Child>)> {
        let (program, args) = self
            .command
            .split_first()
            .ok_or_else(|| std::io::Error::other("no command"))?;
        let mut process = tokio::process::Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let mut child_stdin = process
            .stdin
            .take()
            .ok_or_else(|| std::io::Error::other("no stdin"))?;
        let stdout = process
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("no stdout"))?;
        let id = mcpauth_core::random_urlsafe(24).map_err(std::io::Error::other)?;
        let (stdin_tx, mut stdin_rx) = mpsc::channel::<String>(64);
        let (kill_tx, kill_rx) = oneshot::channel();
        let child = Arc::new(Child {
            owner,
            stdin: stdin_tx,
            pending: Mutex::default(),
            listener: Mutex::new(None),
            kill: Mutex::new(Some(kill_tx)),
        });
        tokio::spawn(async move {
            while let Some(line) = stdin_rx.recv().await {
                if child_stdin.write_all(line.as_bytes()).await.is_err()
                    || child_stdin.write_all(b"\n").await.is_err()
                    || child_stdin.flush().await.is_err()
                {
                    break;
                }
            }
        });
        let (me, session, reader_child) = (Arc::clone(self), id.clone(), Arc::clone(&child));
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            let read = async {
                while let Ok(Some(line)) = lines.next_line().await {
                    deliver(&reader_child, line).await;
                }
            };
            tokio::select! {
                _ = read => {}
                _ = kill_rx => {}
            }
            let _ = process.kill().await;
            let _ = process.wait().await;
            me.sessions.lock().unwrap().remove(&session);
            tracing::info!(session = %session, "stdio MCP server process ended");
        });
        self.sessions
            .lock()
            .unwrap()
            .insert(id.clone(), Arc::clone(&child));
        Ok((id, child))
    }
}

/// Routes one line from the child: an answer to its waiting request, else to the GET stream.
async fn deliver(child: &Child, line: String) {
    let Ok(message) = serde_json::from_str::<Value>(&line) else {
        tracing::warn!("the stdio MCP server wrote something that is not JSON-RPC; dropped");
        return;
    };
    let is_answer = message.get("method").is_none()
        && (message.get("result").is_some() || message.get("error").is_some());
    if is_answer
        && let Some(waiter) = child
            .pending
            .lock()
            .unwrap()
            .remove(&message["id"].to_string())
    {
        let _ = waiter.send(line);
        return;
    }
    let listener = child.listener.lock().unwrap().clone();
    match listener {
        Some(tx) => {
            let _ = tx.send(line).await;
        }
        None => tracing::debug!("a server message arrived with no GET stream open; dropped"),
    }
}

/// `POST`, `GET` and `DELETE` on the MCP endpoint.
pub async fn handle(State(up): State<Arc<StdioUpstream>>, req: Request) -> Response {
    let Some(owner) = principal(&req).map(|p| {
        let (iss, sub) = p.key();
        (iss.to_owned(), sub.to_owned())
    }) else {
        return error(StatusCode::UNAUTHORIZED, None, "not authenticated");
    };
    let session_id = req
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let existing = match &session_id {
        Some(id) => {
            let Some(child) = up.sessions.lock().unwrap().get(id).cloned() else {
                return error(
                    StatusCode::NOT_FOUND,
                    None,
                    "no such MCP session (it ended)",
                );
            };
            if child.owner != owner {
                tracing::warn!(subject = %owner.1, "refused a session opened by another principal");
                return error(
                    StatusCode::FORBIDDEN,
                    None,
                    "this MCP session belongs to another user (MCP SPEC S12)",
                );
            }
            Some(child)
        }
        None => None,
    };
    match *req.method() {
        Method::DELETE => match existing {
            Some(child) => {
                if let Some(k) = child.kill.lock().unwrap().take() {
                    let _ = k.send(());
                }
                StatusCode::NO_CONTENT.into_response()
            }
            None => error(
                StatusCode::BAD_REQUEST,
                None,
                "DELETE needs an Mcp-Session-Id",
            ),
        },
        Method::GET => match existing {
            Some(child) => {
                let (tx, rx) = mpsc::channel::<String>(64);
                *child.listener.lock().unwrap() = Some(tx);
                let events = futures_stream(rx);
                Response::builder()
                    .header("content-type", "text/event-stream")
                    .header("cache-control", "no-store")
                    .body(Body::from_stream(events))
                    .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
            }
            None => StatusCode::METHOD_NOT_ALLOWED.into_response(),
        },
        Method::POST => post(up, owner, existing, req).await,
        _ => StatusCode::METHOD_NOT_ALLOWED.into_response(),
    }
}

fn futures_stream(
    mut rx: mpsc::Receiver<String>,
) -> impl futures_util::Stream<Item = Result<Bytes, Infallible>> {
    futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx)
            .map(|o| o.map(|line| Ok(Bytes::from(format!("event: message\ndata: {line}\n\n")))))
    })
}

async fn post(
    up: Arc<StdioUpstream>,
    owner: (String, String),
    existing: Option<Arc<Child>>,
    req: Request,
) -> Response {
    let Ok(body) = axum::body::to_bytes(req.into_body(), MAX_BODY).await else {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            None,
            "the request is too large",
        );
    };
    let Ok(message) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, None, "the body is not JSON-RPC");
    };
    let line = String::from_utf8_lossy(&body).replace('\n', " ");
    let method = message.get("method").and_then(Value::as_str);
    let (child, new_session) = match existing {
        Some(c) => (c, None),
        None if method == Some("initialize") => match up.spawn(owner) {
            Ok((id, c)) => (c, Some(id)),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the stdio MCP server");
                return error(
                    StatusCode::BAD_GATEWAY,
                    message.get("id"),
                    "the stdio MCP server could not be started",
                );
            }
        },
        None => {
            return error(
                StatusCode::BAD_REQUEST,
                message.get("id"),
                "send initialize first, or an Mcp-Session-Id",
            );
        }
    };
    let id = message.get("id").filter(|_| method.is_some()).cloned();
    let waiter = id.as_ref().map(|id| {
        let (tx, rx) = oneshot::channel();
        child.pending.lock().unwrap().insert(id.to_string(), tx);
        rx
    });
    if child.stdin.send(line).await.is_err() {
        return error(
            StatusCode::BAD_GATEWAY,
            id.as_ref(),
            "the stdio MCP server has exited",
        );
    }
    let Some(waiter) = waiter else {
        return StatusCode::ACCEPTED.into_response();
    };
    let answer = match tokio::time::timeout(ANSWER_TIMEOUT, waiter).await {
        Ok(Ok(a)) => a,
        Ok(Err(_)) => {
            return error(
                StatusCode::BAD_GATEWAY,
                id.as_ref(),
                "the stdio MCP server exited before answering",
            );
        }
        Err(_) => {
            if let Some(id) = &id {
                child.pending.lock().unwrap().remove(&id.to_string());
            }
            return error(
                StatusCode::GATEWAY_TIMEOUT,
                id.as_ref(),
                "the stdio MCP server did not answer in time",
            );
        }
    };
    let mut response = Response::builder().header("content-type", "application/json");
    if let Some(session) = new_session {
        response = response.header("mcp-session-id", session);
    }
    response
        .body(Body::from(answer))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
