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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::bail;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use mcpauth_resource::principal;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::resume::Streams;
use super::session_env::SessionEnv;
use crate::cli::GatewayArgs;
use crate::relay::bridge::{self, ClientProfile, Filter, LEGACY_LATEST};
use mcpauth_core::mcp_headers::{self, STATELESS, ToolHeaders};

/// Most bytes gathered into one write to a stdio server's stdin.
const STDIN_BATCH_BYTES: usize = 64 * 1024;
/// How long a request may wait for the child's answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a child that exited still has to close its stdout: what it wrote before exiting is
/// delivered, unless a process it started holds the pipe open.
const EXIT_DRAIN: Duration = Duration::from_millis(500);
/// Largest request body accepted.
const MAX_BODY: usize = 4 * 1024 * 1024;
/// Sessions one user may hold at once, unless told otherwise.
const DEFAULT_MAX_SESSIONS_PER_USER: usize = 8;
/// Sessions all users together may hold at once, unless told otherwise.
const DEFAULT_MAX_SESSIONS: usize = 64;
/// Seconds a session may go without a request before it ends, unless told otherwise.
const DEFAULT_SESSION_IDLE_TIMEOUT: u64 = 600;
/// The gateway's environment variables a child gets (MCP SPEC C33): what programs need to find
/// programs, their home and temporary directory, their user, locale, terminal and time zone,
/// and on Windows the system's directories. Nothing else, in particular none of the gateway's
/// secrets or settings (MCPAUTH_*); more with `--upstream-env`.
const ENV_ALLOWED: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "LC_MESSAGES",
    "TERM",
    "TZ",
    "TMPDIR",
    "TMP",
    "TEMP",
    "SYSTEMROOT",
    "SYSTEMDRIVE",
    "WINDIR",
    "COMSPEC",
    "PATHEXT",
    "USERPROFILE",
    "APPDATA",
    "LOCALAPPDATA",
    "PROGRAMDATA",
    "PROGRAMFILES",
];

/// Limits and environment of the children. Not `Debug`: `--upstream-env` values may be
/// secrets.
pub struct Options {
    /// Sessions one user (issuer and subject) may hold at once.
    pub max_sessions_per_user: usize,
    /// Sessions all users together may hold at once.
    pub max_sessions: usize,
    /// How long a session may go without a request before it ends.
    pub idle_timeout: Duration,
    /// The children's whole environment.
    pub env: Vec<(String, OsString)>,
}

impl Options {
    /// The options from the gateway's flags (already completed from its settings file): the
    /// defaults, the allow-listed part of this process's environment, and `--upstream-env`.
    pub fn from_args(args: &GatewayArgs) -> anyhow::Result<Self> {
        let mut env: Vec<(String, OsString)> = ENV_ALLOWED
            .iter()
            .filter_map(|name| Some(((*name).to_owned(), std::env::var_os(name)?)))
            .collect();
        for spec in &args.upstream_env {
            let (name, value) = match spec.split_once('=') {
                Some((name, value)) => (name, Some(OsString::from(value))),
                None => (spec.as_str(), std::env::var_os(spec)),
            };
            if name.is_empty() || name.contains('\0') {
                bail!("--upstream-env takes NAME or NAME=VALUE, not {spec:?}");
            }
            let Some(value) = value else {
                tracing::warn!(%name, "--upstream-env {name}: not set in the gateway's environment; not passed on");
                continue;
            };
            env.retain(|(n, _)| n != name);
            env.push((name.to_owned(), value));
        }
        Ok(Self {
            max_sessions_per_user: args
                .max_sessions_per_user
                .unwrap_or(DEFAULT_MAX_SESSIONS_PER_USER)
                .max(1),
            max_sessions: args.max_sessions.unwrap_or(DEFAULT_MAX_SESSIONS).max(1),
            idle_timeout: Duration::from_secs(
                args.session_idle_timeout
                    .unwrap_or(DEFAULT_SESSION_IDLE_TIMEOUT)
                    .max(1),
            ),
            env,
        })
    }
}

/// A message from the child for a request waiting on it.
enum Out {
    /// A notification or server request related to the request.
    Related(String),
    /// The request's answer: the last message.
    Answer(String),
}

/// A request waiting for the child's answer.
struct Waiter {
    tx: mpsc::Sender<Out>,
    /// The request's `_meta.progressToken` (as JSON text), if any.
    progress: Option<String>,
    /// Whether the client accepts an SSE answer, which may carry related messages first.
    streams: bool,
    /// When it was sent, in the session's order.
    order: u64,
    /// The client's id of a 2026-07-28 request (the child knows the gateway's).
    client: Option<Value>,
}

/// The requests waiting for a child's answers, by id (as JSON text).
#[derive(Default)]
struct Pending {
    /// Set once the child has ended: no one may wait any more.
    closed: bool,
    sent: u64,
    waiters: HashMap<String, Waiter>,
}

impl Pending {
    /// The stream a notification or server request from the child belongs on. A stdio
    /// server does not say which request a message relates to, so the gateway decides as the
    /// MCP SDKs do when they tag messages: progress goes to the request whose
    /// `_meta.progressToken` it names (MCP basic/utilities/progress), and any other message to
    /// the request in flight, the most recent one when several are (Streamable HTTP §Sending
    /// Messages to the Server: related messages SHOULD go on the request's SSE stream). `None`:
    /// no such request (it goes to the GET stream).
    fn related(&self, message: &Value) -> Option<mpsc::Sender<Out>> {
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
struct Activity {
    last: Instant,
    busy: usize,
}

/// One child process and what is waiting on it.
struct Child {
    owner: (String, String),
    stdin: mpsc::Sender<String>,
    pending: Mutex<Pending>,
    /// The GET stream of the messages related to no request in flight, if one is open.
    listener: Mutex<Option<mpsc::Sender<String>>>,
    /// The `subscriptions/listen` streams of 2026-07-28 clients: request id, filter, stream.
    subscriptions: Mutex<Vec<(Value, Filter, mpsc::Sender<String>)>>,
    kill: Mutex<Option<oneshot::Sender<()>>>,
    activity: Mutex<Activity>,
    /// The session's resumable SSE answers.
    streams: Arc<Streams>,
}

impl Child {
    /// Fails every waiting request at once (its reply sender is dropped) and refuses new ones;
    /// ends the GET stream.
    fn close(&self) {
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
    async fn ask(&self, request: &Value) -> Result<Value, &'static str> {
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
    fn busy(self: &Arc<Self>) -> Busy {
        let mut a = self.activity.lock().unwrap();
        a.busy += 1;
        a.last = Instant::now();
        Busy(Arc::clone(self))
    }

    /// Resolves once the session has had no request for `timeout`.
    async fn idle(&self, timeout: Duration) {
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
struct Busy(Arc<Child>);

impl Drop for Busy {
    fn drop(&mut self) {
        let mut a = self.0.activity.lock().unwrap();
        a.busy -= 1;
        a.last = Instant::now();
    }
}

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

/// Routes one line from the child: an answer to its waiting request, a message related to a
/// waiting request on that request's stream ([`Pending::related`]), else to the GET stream;
/// without one, a server request is refused at once and anything else dropped.
async fn deliver(child: &Child, line: String) {
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

/// A 2026-07-28 request to the bridged process of its user.
struct Bridged {
    child: Arc<Child>,
    /// The request as the legacy server gets it.
    message: Value,
    method: String,
    /// The `x-mcp-header` parameters of the user's tools.
    tools: Arc<ToolHeaders>,
}

/// A 2026-07-28 request without a session (MCP 2026-07-28 "Versioning" §Backward
/// Compatibility, bridged as `mcpauth connect` does): its user's process and the request as
/// that legacy server needs it, or the response when the gateway answers it itself. A process
/// it starts for `owner` gets `extra_env`.
async fn bridged(
    up: &Arc<StdioUpstream>,
    (owner, extra_env): ((String, String), &[(String, OsString)]),
    headers: &HeaderMap,
    original: &Value,
    profile: &ClientProfile,
    mut message: Value,
    client_id: Option<Value>,
) -> Result<Bridged, Response> {
    let id = client_id.as_ref().unwrap_or(&Value::Null);
    // Streamable HTTP §Protocol Version Header: a header that disagrees with `_meta` is a
    // HeaderMismatch, whichever version either names.
    if headers
        .get("mcp-protocol-version")
        .is_some_and(|v| v != profile.version.as_str())
    {
        let answer = bridge::error_answer(id, -32020, "Header mismatch: MCP-Protocol-Version");
        return Err((StatusCode::BAD_REQUEST, axum::Json(answer)).into_response());
    }
    if profile.version != STATELESS {
        let answer = bridge::unsupported_version(id, &profile.version);
        return Err((StatusCode::BAD_REQUEST, axum::Json(answer)).into_response());
    }
    let method = message["method"].as_str().unwrap_or_default().to_owned();
    if bridge::REMOVED_METHODS.contains(&method.as_str()) {
        let answer = bridge::error_answer(id, -32601, &format!("Method not found: {method}"));
        return Err((StatusCode::NOT_FOUND, axum::Json(answer)).into_response());
    }
    let (child, init, tools) = up
        .stateless(owner.clone(), profile, client_id.as_ref(), extra_env)
        .await?;
    // SEP-2243 (Streamable HTTP §Standard MCP Request Headers, §Custom Headers): what
    // its headers must say, `Mcp-Param-*` as the tools listed declared; compared decoded, as a
    // client may base64-encode any value (§Value Encoding).
    let expected = mcp_headers::request_headers(original, &tools);
    if let Some((name, _)) = expected.iter().find(|(name, value)| {
        let sent = headers
            .get(name.as_str())
            .and_then(|v| v.to_str().ok())
            .and_then(mcp_headers::decode_header_value);
        sent.is_none() || sent != mcp_headers::decode_header_value(value)
    }) {
        let answer = json!({"jsonrpc": "2.0", "id": client_id,
                "error": {"code": -32020, "message": format!("Header mismatch: {name}")}});
        return Err((StatusCode::BAD_REQUEST, axum::Json(answer)).into_response());
    }
    if let Some(state) = message["params"]["requestState"].as_str() {
        return Err(resume(Arc::clone(up), owner, state, &message, client_id).await);
    }
    if method == "subscriptions/listen" {
        return Err(listen(&child, &init, client_id, &message["params"]));
    }
    if method == "notifications/cancelled" {
        // "Subscriptions" §Cancellation: cancelling a listen request ends its stream.
        let named = &message["params"]["requestId"];
        let mut subscriptions = child.subscriptions.lock().unwrap();
        let before = subscriptions.len();
        subscriptions.retain(|(id, _, _)| id != named);
        if subscriptions.len() < before {
            return Err(StatusCode::ACCEPTED.into_response());
        }
        drop(subscriptions);
        // The child knows the request by the gateway's id (the most recent request
        // with that client id, should clients of one user reuse ids).
        let wire = child
            .pending
            .lock()
            .unwrap()
            .waiters
            .iter()
            .filter(|(_, w)| w.client.as_ref() == Some(named))
            .max_by_key(|(_, w)| w.order)
            .and_then(|(wire, _)| serde_json::from_str::<Value>(wire).ok());
        if let Some(wire) = wire {
            message["params"]["requestId"] = wire;
        }
    }
    if method == "server/discover" {
        let answer =
            json!({"jsonrpc": "2.0", "id": client_id, "result": bridge::discover_result(&init)});
        return Err(axum::Json(answer).into_response());
    }
    // The gateway's own id: requests of several clients of one user share a process.
    if client_id.is_some() {
        let n = up.wire_ids.fetch_add(1, Ordering::Relaxed);
        message["id"] = json!(format!("mcpauth-{n}"));
    }
    Ok(Bridged {
        child,
        message,
        method,
        tools,
    })
}

/// A `subscriptions/listen` stream (MCP 2026-07-28 "Subscriptions"): acknowledged with what
/// the server can tell (its `listChanged` capabilities), then the list changes asked for,
/// tagged with the request's id. Open, it keeps the session no more than the GET stream does.
fn listen(child: &Arc<Child>, init: &Value, id: Option<Value>, params: &Value) -> Response {
    // Opening the stream is activity; holding it open is not (as with the GET stream).
    drop(child.busy());
    let id = id.unwrap_or_default();
    let mut honored = Filter::from_params(params).honored(&init["capabilities"]);
    // Resource subscriptions would need resources/subscribe on the shared process.
    honored.uris.clear();
    let ack = bridge::acknowledgement(&id, &honored);
    let ack = Bytes::from(format!("event: message\ndata: {ack}\n\n"));
    let (tx, rx) = mpsc::channel::<String>(64);
    child.subscriptions.lock().unwrap().push((id, honored, tx));
    let events = futures_util::stream::iter([Ok(ack)]).chain(futures_stream(rx));
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-store")
        .body(Body::from_stream(events))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// A request waiting for the child's answer, on behalf of its client.
struct Call {
    up: Arc<StdioUpstream>,
    owner: (String, String),
    child: Arc<Child>,
    /// The session stays busy while the request waits.
    _busy: Busy,
    rx: mpsc::Receiver<Out>,
    /// The request's id as the child knows it.
    wire_id: Value,
    reply: Reply,
    deadline: Instant,
}

impl Call {
    /// The next message for the client and whether it is the last, or why none will come.
    async fn next(&mut self) -> Result<(String, bool), (StatusCode, &'static str)> {
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
struct Parked {
    owner: (String, String),
    child: Arc<Child>,
    wire_id: Value,
    modern: (String, Arc<ToolHeaders>),
    logs: bool,
    rx: mpsc::Receiver<Out>,
    /// The server request's id and its key in `inputRequests`.
    server_id: Value,
    key: String,
}

/// The retry of a parked request (MCP 2026-07-28 "Multi Round-Trip Requests"): the answer in
/// `inputResponses` goes to the child's waiting request, and the request's next message (its
/// answer, or another server request) to this retry.
async fn resume(
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
async fn respond(mut call: Call, new_session: Option<String>) -> Response {
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
fn sse(body: Body) -> Response {
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-store")
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// How the answer to a client's request is sent back.
struct Reply {
    /// The client's id of the request.
    id: Option<Value>,
    /// The method of a 2026-07-28 request (bridged to the legacy server), if it is one, and
    /// the `x-mcp-header` parameters of its user's tools.
    modern: Option<(String, Arc<ToolHeaders>)>,
    /// Whether log messages related to the request go to the client.
    logs: bool,
}

impl Reply {
    /// The child's answer as the client gets it: for a 2026-07-28 request with the client's id
    /// back (the gateway sent its own) and a complete 2026-07-28 result (SEP-2322, SEP-2549).
    fn answer(&self, line: String) -> String {
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
async fn next(
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
