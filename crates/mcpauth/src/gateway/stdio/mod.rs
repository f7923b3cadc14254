//! `mcpauth gateway -- COMMAND ARGS…`: a stdio MCP server served over Streamable HTTP. Every MCP
//! session gets its own child process, bound to the principal that opened it (MCP SPEC S12);
//! children are killed when their session is deleted or idles out and when the gateway stops,
//! and reaped when they exit. Sessions are capped per user and in total, and children start
//! with a clean environment (MCP SPEC C33). Stdio itself carries no OAuth (MCP SPEC §0): the
//! gateway is the boundary. What the server sends while answering a request (progress, log
//! messages, sampling and elicitation requests) goes on that request's SSE stream, before its
//! answer (see `Pending::related`); the rest goes on the GET stream. Those SSE answers are
//! resumable (`resume.rs`): a client whose connection drops reconnects with `Last-Event-ID`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::ffi::OsString;
use std::process::Stdio;
use std::sync::atomic::AtomicU64;
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
use tokio::time::Instant;

use super::session_env::SessionEnv;
use crate::relay::bridge::{self, ClientProfile, LEGACY_LATEST};
use mcpauth_core::mcp_headers::{STATELESS, ToolHeaders};

mod bridged;
mod call;
mod child;
mod options;

pub use options::Options;

use bridged::bridged;
use call::{Call, Parked, Reply, respond, sse};
use child::{Activity, Child, Out, Waiter, deliver};

/// Most bytes gathered into one write to a stdio server's stdin.
const STDIN_BATCH_BYTES: usize = 64 * 1024;
/// How long a request may wait for the child's answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a child that exited still has to close its stdout: what it wrote before exiting is
/// delivered, unless a process it started holds the pipe open.
const EXIT_DRAIN: Duration = Duration::from_millis(500);
/// Largest request body accepted.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// Why a new session was refused.
enum Refused {
    /// A cap on sessions is reached (the message names it).
    Limit(String),
    /// The command could not be started.
    Spawn(std::io::Error),
}

/// The command and the live sessions.
pub struct StdioUpstream {
    command: Vec<String>,
    options: Options,
    /// What each new process gets for its user (`--upstream-token-env`, `--identity-header`).
    session_env: Option<SessionEnv>,
    sessions: Mutex<HashMap<String, Arc<Child>>>,
    /// The processes for 2026-07-28 clients, which have no session: one per user and set of
    /// client capabilities (issuer, subject, capabilities as JSON).
    stateless: Mutex<HashMap<(String, String, String), StatelessSlot>>,
    /// Numbers the gateway's own ids of 2026-07-28 requests.
    wire_ids: AtomicU64,
    /// 2026-07-28 requests waiting for their client's retry, by `requestState`.
    parked: Mutex<HashMap<String, Parked>>,
}

/// A user's process for 2026-07-28 clients once started; locked while it starts.
type StatelessSlot = Arc<tokio::sync::Mutex<Option<Stateless>>>;

/// A user's process for 2026-07-28 clients: its session (in `sessions`, so capped, idling out
/// and reaped like any) and what it answered to the gateway's `initialize`.
struct Stateless {
    session: String,
    init: Value,
    /// The log level last set (`logging/setLevel`).
    log_level: Option<String>,
    /// The `x-mcp-header` parameters of the tools it listed.
    tools: Arc<ToolHeaders>,
}

impl std::fmt::Debug for StdioUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdioUpstream")
            .field("command", &self.command)
            .finish_non_exhaustive()
    }
}

/// A JSON-RPC error; its id is null when the request's is unknown (JSON-RPC 2.0 §5).
fn error_message(id: Option<&Value>, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id.cloned().unwrap_or(Value::Null), "error": {"code": -32600, "message": message}})
}

/// The answer to a request that needed a new process and could not get one.
fn refused(why: Refused, id: Option<&Value>) -> Response {
    match why {
        Refused::Limit(limit) => {
            tracing::warn!(%limit, "refused a new stdio MCP session");
            // RFC 6585 §4: too many requests (here: sessions) from this user or in all.
            error(StatusCode::TOO_MANY_REQUESTS, id, &limit)
        }
        Refused::Spawn(e) => {
            tracing::error!(error = %e, "cannot start the stdio MCP server");
            error(
                StatusCode::BAD_GATEWAY,
                id,
                "the stdio MCP server could not be started",
            )
        }
    }
}

/// A response with a JSON-RPC error.
fn error(status: StatusCode, id: Option<&Value>, message: &str) -> Response {
    (status, axum::Json(error_message(id, message))).into_response()
}

impl StdioUpstream {
    /// Serves `command` (program and arguments) with `options`.
    pub fn new(command: Vec<String>, options: Options, session_env: Option<SessionEnv>) -> Self {
        Self {
            command,
            options,
            session_env,
            sessions: Mutex::default(),
            stateless: Mutex::default(),
            wire_ids: AtomicU64::default(),
            parked: Mutex::default(),
        }
    }

    /// Starts a child for a new session owned by `owner`, unless a cap is reached (MCP SPEC
    /// C33). The caps are checked and the session added under one lock, so concurrent
    /// `initialize` requests cannot overshoot them.
    fn spawn(
        self: &Arc<Self>,
        owner: (String, String),
        extra_env: &[(String, OsString)],
    ) -> Result<(String, Arc<Child>), Refused> {
        let mut sessions = self.sessions.lock().unwrap();
        let o = &self.options;
        if sessions.values().filter(|c| c.owner == owner).count() >= o.max_sessions_per_user {
            return Err(Refused::Limit(format!(
                "too many MCP sessions for this user: at most {} at once (--max-sessions-per-user {}); end one with DELETE or let it idle out",
                o.max_sessions_per_user, o.max_sessions_per_user
            )));
        }
        if sessions.len() >= o.max_sessions {
            return Err(Refused::Limit(format!(
                "the gateway holds as many MCP sessions as it allows (--max-sessions {}); try again later",
                o.max_sessions
            )));
        }
        let (program, args) = self
            .command
            .split_first()
            .ok_or_else(|| Refused::Spawn(std::io::Error::other("no command")))?;
        let mut process = tokio::process::Command::new(program)
            .args(args)
            .env_clear()
            .envs(o.env.iter().map(|(k, v)| (k, v)))
            .envs(extra_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(Refused::Spawn)?;
        crate::metrics::stdio_processes(1.0);
        let (Some(mut child_stdin), Some(stdout)) = (process.stdin.take(), process.stdout.take())
        else {
            return Err(Refused::Spawn(std::io::Error::other("no stdin or stdout")));
        };
        let id = mcpauth_core::random_urlsafe(24)
            .map_err(|e| Refused::Spawn(std::io::Error::other(e)))?;
        let (stdin_tx, mut stdin_rx) = mpsc::channel::<String>(64);
        let (kill_tx, kill_rx) = oneshot::channel();
        let child = Arc::new(Child {
            owner,
            stdin: stdin_tx,
            pending: Mutex::default(),
            listener: Mutex::new(None),
            subscriptions: Mutex::default(),
            kill: Mutex::new(Some(kill_tx)),
            activity: Mutex::new(Activity {
                last: Instant::now(),
                busy: 0,
            }),
            streams: Arc::default(),
        });
        tokio::spawn(async move {
            // One write for each message and the ones queued behind it (not one for the line
            // and one for its newline): the server wakes once per batch (bench/gateway.sh).
            let mut buf = Vec::new();
            while let Some(line) = stdin_rx.recv().await {
                buf.clear();
                buf.extend_from_slice(line.as_bytes());
                buf.push(b'\n');
                while buf.len() < STDIN_BATCH_BYTES {
                    let Ok(next) = stdin_rx.try_recv() else {
                        break;
                    };
                    buf.extend_from_slice(next.as_bytes());
                    buf.push(b'\n');
                }
                if child_stdin.write_all(&buf).await.is_err() || child_stdin.flush().await.is_err()
                {
                    break;
                }
            }
        });
        let (me, session, reader_child) = (Arc::clone(self), id.clone(), Arc::clone(&child));
        let idle_timeout = o.idle_timeout;
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            let read = async {
                while let Ok(Some(line)) = lines.next_line().await {
                    deliver(&reader_child, line).await;
                }
            };
            tokio::pin!(read);
            let (why, exited) = tokio::select! {
                () = &mut read => ("its stdout closed", false),
                _ = kill_rx => ("its session was deleted", false),
                () = reader_child.idle(idle_timeout) => ("its session was idle", false),
                _ = process.wait() => ("it exited", true),
            };
            if exited {
                let _ = tokio::time::timeout(EXIT_DRAIN, &mut read).await;
            }
            // MCP Streamable HTTP, session management: from now on the session's id gets 404,
            // and whoever waits for an answer gets an error now, not at the answer timeout.
            me.sessions.lock().unwrap().remove(&session);
            reader_child.close();
            let _ = process.kill().await;
            crate::metrics::stdio_processes(-1.0);
            tracing::info!(session = %session, "stdio MCP server process ended: {why}");
        });
        sessions.insert(id.clone(), Arc::clone(&child));
        Ok((id, child))
    }

    /// The `owner`'s process for 2026-07-28 clients and its `InitializeResult`: started and
    /// initialized with `profile` (the first request's client capabilities and info) the first
    /// time, and again after it ended (MCP 2026-07-28 "Versioning" §Backward Compatibility: the
    /// gateway speaks the legacy handshake for the client, as `mcpauth connect` does).
    async fn stateless(
        self: &Arc<Self>,
        owner: (String, String),
        profile: &ClientProfile,
        id: Option<&Value>,
        extra_env: &[(String, OsString)],
    ) -> Result<(Arc<Child>, Value, Arc<ToolHeaders>), Response> {
        // A legacy server learns the client's capabilities once, at `initialize`, and acts on
        // them (2025-11-25 "Lifecycle" §Capability Negotiation): each set a 2026-07-28 request
        // declares gets a process initialized with it.
        let key = (
            owner.0.clone(),
            owner.1.clone(),
            profile.capabilities.to_string(),
        );
        let slot = Arc::clone(self.stateless.lock().unwrap().entry(key).or_default());
        let mut slot = slot.lock().await;
        let alive = slot
            .as_ref()
            .and_then(|s| self.sessions.lock().unwrap().get(&s.session).cloned());
        let child = match alive {
            Some(child) => child,
            None => {
                let (session, child) = self.spawn(owner, extra_env).map_err(|r| refused(r, id))?;
                let initialize = json!({"jsonrpc": "2.0", "id": "mcpauth-initialize", "method": "initialize",
                    "params": {"protocolVersion": LEGACY_LATEST, "capabilities": profile.capabilities, "clientInfo": profile.info}});
                let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
                let init = match child.ask(&initialize).await {
                    Ok(init) if child.stdin.send(initialized.to_string()).await.is_ok() => init,
                    failed => {
                        self.end(&session);
                        let why = failed.err().unwrap_or("the stdio MCP server has exited");
                        tracing::warn!(%why, "the stdio MCP server did not initialize");
                        return Err(error(StatusCode::BAD_GATEWAY, id, why));
                    }
                };
                *slot = Some(Stateless {
                    session,
                    init,
                    log_level: None,
                    tools: Arc::default(),
                });
                child
            }
        };
        let s = slot.as_mut().expect("set above");
        // The `_meta` log level of 2026-07-28 is the legacy `logging/setLevel`.
        if profile.log_level.is_some()
            && profile.log_level != s.log_level
            && s.init["capabilities"]["logging"].is_object()
        {
            let set = json!({"jsonrpc": "2.0", "id": "mcpauth-log-level", "method": "logging/setLevel",
                "params": {"level": profile.log_level}});
            if let Err(why) = child.ask(&set).await {
                return Err(error(StatusCode::BAD_GATEWAY, id, why));
            }
            s.log_level.clone_from(&profile.log_level);
        }
        Ok((child, s.init.clone(), Arc::clone(&s.tools)))
    }

    /// Ends a session at once: it leaves the map before its process is told to stop, so a
    /// request after DELETE gets 404 (MCP Streamable HTTP, session management).
    fn end(&self, session: &str) {
        let child = self.sessions.lock().unwrap().remove(session);
        if let Some(k) = child.and_then(|c| c.kill.lock().unwrap().take()) {
            let _ = k.send(());
        }
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
        Method::DELETE => match (existing, &session_id) {
            (Some(_), Some(id)) => {
                up.end(id);
                StatusCode::NO_CONTENT.into_response()
            }
            _ => error(
                StatusCode::BAD_REQUEST,
                None,
                "DELETE needs an Mcp-Session-Id",
            ),
        },
        Method::GET => match existing {
            Some(child) if req.headers().contains_key("last-event-id") => {
                drop(child.busy());
                let last = req.headers()["last-event-id"].to_str().unwrap_or_default();
                match child.streams.resume(last) {
                    Some(body) => sse(body),
                    None => error(
                        StatusCode::BAD_REQUEST,
                        None,
                        "Last-Event-ID names no stream of this session (or it ended more than a minute ago)",
                    ),
                }
            }
            Some(child) => {
                // Opening the stream is activity; holding it open is not (it would keep an
                // abandoned session alive).
                drop(child.busy());
                let (tx, rx) = mpsc::channel::<String>(64);
                *child.listener.lock().unwrap() = Some(tx);
                sse(Body::from_stream(futures_stream(rx)))
            }
            None => StatusCode::METHOD_NOT_ALLOWED.into_response(),
        },
        Method::POST => {
            let extra_env = match (&existing, &up.session_env) {
                (None, Some(env)) => {
                    match env.values(super::proxy::access_jti(&req), &owner.1).await {
                        Ok(v) => v,
                        Err(refused) => return refused,
                    }
                }
                _ => Vec::new(),
            };
            post(up, owner, existing, req, extra_env).await
        }
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

/// A POST; `extra_env` is the environment of a process it starts ([`SessionEnv`]).
async fn post(
    up: Arc<StdioUpstream>,
    owner: (String, String),
    existing: Option<Arc<Child>>,
    req: Request,
    extra_env: Vec<(String, OsString)>,
) -> Response {
    let headers = req.headers().clone();
    let accepts_sse = headers
        .get_all(axum::http::header::ACCEPT)
        .iter()
        .any(|v| v.to_str().is_ok_and(|v| v.contains("text/event-stream")));
    let Ok(body) = axum::body::to_bytes(req.into_body(), MAX_BODY).await else {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            None,
            "the request is too large",
        );
    };
    let Ok(mut message) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, None, "the body is not JSON-RPC");
    };
    let mut line = String::from_utf8_lossy(&body).replace('\n', " ");
    let method = message
        .get("method")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let client_id = message.get("id").filter(|_| method.is_some()).cloned();
    // Without a session, a request declaring its version in `_meta`, or 2026-07-28 or later in
    // its MCP-Protocol-Version header, is 2026-07-28's (MCP 2026-07-28 "Versioning" §Backward
    // Compatibility); its `_meta` must then say who the client is (§Request Metadata).
    let original = existing.is_none().then(|| message.clone());
    let profile = match &existing {
        Some(_) => None,
        None => bridge::take_modern_meta(&mut message),
    };
    let modern_header = headers
        .get("mcp-protocol-version")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v >= STATELESS);
    if let (Some(original), Some(id)) = (&original, &client_id)
        && (profile.is_some() || modern_header)
        && let Some(key) = bridge::missing_meta(original)
    {
        let answer =
            bridge::error_answer(id, -32602, &format!("Invalid params: _meta has no {key}"));
        return (StatusCode::BAD_REQUEST, axum::Json(answer)).into_response();
    }
    let mut modern = None;
    let mut logs = false;
    let (child, new_session) = match (existing, profile, original) {
        (Some(c), _, _) => (c, None),
        (None, Some(profile), Some(original)) => {
            let b = match bridged(
                &up,
                (owner.clone(), &extra_env),
                &headers,
                &original,
                &profile,
                message,
                client_id.clone(),
            )
            .await
            {
                Ok(b) => b,
                Err(response) => return response,
            };
            message = b.message;
            line = message.to_string();
            modern = Some((b.method, b.tools));
            logs = profile.log_level.is_some();
            (b.child, None)
        }
        (None, _, _) if method.as_deref() == Some("initialize") => {
            match up.spawn(owner.clone(), &extra_env) {
                Ok((id, c)) => (c, Some(id)),
                Err(why) => return refused(why, client_id.as_ref()),
            }
        }
        (None, _, _) => {
            return error(
                StatusCode::BAD_REQUEST,
                client_id.as_ref(),
                "send initialize first, or an Mcp-Session-Id",
            );
        }
    };
    let busy = child.busy();
    let id = message.get("id").filter(|_| method.is_some()).cloned();
    let reply = Reply {
        id: client_id,
        logs: modern.is_none() || logs,
        modern,
    };
    let (tx, rx) = mpsc::channel::<Out>(64);
    {
        let mut pending = child.pending.lock().unwrap();
        if pending.closed {
            return match new_session {
                Some(_) => error(
                    StatusCode::BAD_GATEWAY,
                    reply.id.as_ref(),
                    "the stdio MCP server has exited",
                ),
                // The session ended between its lookup and now.
                None => error(
                    StatusCode::NOT_FOUND,
                    reply.id.as_ref(),
                    "no such MCP session (it ended)",
                ),
            };
        }
        if let Some(id) = &id {
            pending.sent += 1;
            let waiter = Waiter {
                tx,
                progress: message["params"]["_meta"]
                    .get("progressToken")
                    .map(Value::to_string),
                streams: accepts_sse,
                order: pending.sent,
                client: reply.modern.as_ref().and(reply.id.clone()),
            };
            pending.waiters.insert(id.to_string(), waiter);
        }
    }
    if child.stdin.send(line).await.is_err() {
        return error(
            StatusCode::BAD_GATEWAY,
            reply.id.as_ref(),
            "the stdio MCP server has exited",
        );
    }
    let Some(id) = id else {
        // A notification, or the client's answer to a server request: passed on.
        return StatusCode::ACCEPTED.into_response();
    };
    let call = Call {
        up,
        owner,
        child,
        _busy: busy,
        rx,
        wire_id: id,
        reply,
        deadline: Instant::now() + ANSWER_TIMEOUT,
    };
    respond(call, new_session).await
}
