//! The relay of `mcpauth connect`: newline-delimited JSON-RPC on stdio to MCP Streamable HTTP
//! (MCP "Transports", 2025-03-26 and later), authenticated by an [`AuthenticatedClient`].
//!
//! Messages pass through unchanged: each stdin line is POSTed as it is, each server message is
//! written to stdout as the server sent it (re-serialized compactly only if it spans lines), so
//! unknown methods, fields and `_meta` survive both ways. Nothing but JSON-RPC goes to stdout.
//! When the client and the server speak different eras of MCP (a 2025-11-25 client, a 2026-07-28
//! stateless server, or the reverse) the relay bridges them ([`eras`]); every message from the
//! server goes through [`Relay::deliver`], where those translations happen.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mcpauth_client::ClientError;
use mcpauth_client::authed::AuthenticatedClient;
use mcpauth_client::sse::SseParser;

use crate::cli::{Protocol, Transport};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap};
use serde_json::{Value, json};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

pub(crate) mod bridge;
mod eras;

use mcpauth_core::mcp_headers::{self, ToolHeaders};

/// Largest message accepted from the local client.
const MAX_LINE: usize = 16 * 1024 * 1024;

/// Shared state of one relayed MCP session.
#[derive(Debug, Default)]
struct SessionState {
    /// `Mcp-Session-Id` issued by the server on `initialize`.
    session_id: Mutex<Option<String>>,
    /// The protocol version negotiated by `initialize` (sent as `MCP-Protocol-Version`).
    protocol_version: Mutex<Option<String>>,
    /// Whether the GET stream for server-initiated messages has been started.
    listening: AtomicBool,
    /// Which transport the server speaks, once known.
    wire: tokio::sync::Mutex<Wire>,
    /// The client's `initialize` request, replayed by `--reinit`.
    initialize: Mutex<Option<String>>,
    /// Serializes re-initializations.
    reinit_lock: tokio::sync::Mutex<()>,
    /// Background stream readers (GET listener, HTTP+SSE stream), stopped when stdin ends: a
    /// server may keep them open after the session ends (it MAY answer DELETE with 405).
    streams: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// `x-mcp-header` parameters of the tools seen (2026-07-28 wire).
    tools: ToolHeaders,
    /// Requests in flight on the HTTP+SSE transport, whose answers come on the shared stream.
    legacy_inflight: Mutex<HashMap<String, Ctx>>,
    /// Answers to requests the relay itself sent, by JSON-RPC id.
    waiters: Mutex<HashMap<String, oneshot::Sender<Value>>>,
    /// Translation between the client's and the server's era.
    eras: eras::EraState,
    /// Whether the server speaks 2026-07-28, where closing a request's stream cancels it.
    modern_server: AtomicBool,
    /// Requests being relayed, by id: sending stops one (dropping its HTTP exchange); the flag
    /// marks `subscriptions/listen` streams, which end only that way.
    inflight: Mutex<HashMap<String, (oneshot::Sender<()>, bool)>>,
}

/// What a server message answers: the client request it came with (none for the GET stream).
#[derive(Clone, Debug, Default)]
struct Ctx {
    /// The request's method.
    method: Option<String>,
    /// The request's JSON-RPC id.
    id: Option<Value>,
    /// Whether the request asked for log messages (2026-07-28 `_meta` `logLevel`).
    log: bool,
}

impl Ctx {
    fn of(message: &Value) -> Self {
        let method = message
            .get("method")
            .and_then(Value::as_str)
            .map(str::to_owned);
        Self {
            id: message.get("id").cloned().filter(|_| method.is_some()),
            method,
            log: false,
        }
    }
}

/// The key of a JSON-RPC id in the relay's maps.
fn id_key(id: &Value) -> String {
    id.to_string()
}

/// The transport in use for this session.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
enum Wire {
    /// Not chosen yet.
    #[default]
    Undecided,
    /// Streamable HTTP (2025-03-26 and later).
    Streamable,
    /// HTTP+SSE (2024-11-05): messages are POSTed to this endpoint, answers come on the stream.
    Legacy(String),
}

/// How requests are sent: with OAuth, or as they are (the user gave an `Authorization` header).
#[derive(Clone, Debug)]
pub enum Sender {
    /// Tokens from the session, with the 401/403 loop.
    OAuth(AuthenticatedClient),
    /// No OAuth: the headers the user gave are the credentials.
    Plain(reqwest::Client),
}

impl Sender {
    fn http(&self) -> &reqwest::Client {
        match self {
            Sender::OAuth(c) => c.http(),
            Sender::Plain(c) => c,
        }
    }

    async fn send<F>(&self, build: F) -> Result<reqwest::Response, ClientError>
    where
        F: Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    {
        match self {
            Sender::OAuth(c) => c.send(build).await,
            Sender::Plain(c) => build(c)
                .send()
                .await
                .map_err(|error| ClientError::request_failed("MCP request", error)),
        }
    }
}

/// One relay from a local stdio client to one remote MCP server.
#[derive(Clone, Debug)]
pub struct Relay {
    client: Sender,
    url: String,
    headers: HeaderMap,
    ignore_tools: Arc<Vec<String>>,
    transport: Transport,
    protocol: Protocol,
    reinit: bool,
    state: Arc<SessionState>,
}

/// `*` matches any run of characters, `?` any one character.
fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// What a server message needs before going to stdout: `None` for anything that is not JSON.
fn to_line(data: &str) -> Option<String> {
    let data = data.trim();
    if data.is_empty() {
        return None;
    }
    if !data.contains('\n') {
        // Only JSON goes to stdout (the client reads JSON-RPC there): validate without building.
        return serde_json::from_str::<serde::de::IgnoredAny>(data)
            .is_ok()
            .then(|| data.to_owned());
    }
    // A message spread over lines would break newline-delimited framing: re-serialize it.
    serde_json::from_str::<Value>(data)
        .ok()
        .map(|v| v.to_string())
}

/// A JSON-RPC error answering request `id`, for failures the server never answered.
fn error_line(id: &Value, message: String) -> String {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32000, "message": message}}).to_string()
}

impl Relay {
    /// A relay to `url`; `headers` are added to every request (`--header`).
    pub fn new(
        client: Sender,
        url: String,
        headers: HeaderMap,
        ignore_tools: Vec<String>,
        transport: Transport,
        protocol: Protocol,
        reinit: bool,
    ) -> Self {
        Self {
            client,
            url,
            headers,
            ignore_tools: Arc::new(ignore_tools),
            transport,
            protocol,
            reinit,
            state: Arc::default(),
        }
    }

    /// Starts a new MCP session after the server lost `stale` (HTTP 404): replays the client's
    /// `initialize` and `notifications/initialized` (MCP Transports §Session Management: the
    /// client MUST start a new session). The answers stay here: the client is initialized.
    async fn reinitialize(&self, stale: &str, tx: &mpsc::Sender<String>) -> Result<(), String> {
        let _one_at_a_time = self.state.reinit_lock.lock().await;
        if self.state.session_id.lock().unwrap().as_deref() != Some(stale) {
            return Ok(()); // another request already did it
        }
        let init = self
            .state
            .initialize
            .lock()
            .unwrap()
            .clone()
            .ok_or("the server lost the session and there is no initialize to replay")?;
        // The stale id stays in place until the new one is known; initialize goes without one.
        let response = self
            .client
            .send(|_| {
                self.client
                    .http()
                    .post(&self.url)
                    .headers(self.headers.clone())
                    .header(CONTENT_TYPE, "application/json")
                    .header(ACCEPT, "application/json, text/event-stream")
                    .body(init.clone())
            })
            .await
            .map_err(|e| describe(&e))?;
        if !response.status().is_success() {
            return Err(format!(
                "starting a new MCP session failed: HTTP {}",
                response.status().as_u16()
            ));
        }
        let new_id = response
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        drop(response.bytes().await);
        *self.state.session_id.lock().unwrap() = new_id;
        let initialized =
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string();
        self.client
            .send(|_| {
                self.request(reqwest::Method::POST)
                    .header(CONTENT_TYPE, "application/json")
                    .header(ACCEPT, "application/json, text/event-stream")
                    .body(initialized.clone())
            })
            .await
            .map_err(|e| describe(&e))?;
        if self.state.listening.swap(false, Ordering::SeqCst) {
            self.start_listening(tx.clone());
        }
        tracing::warn!("the server lost the MCP session (HTTP 404); started a new one (--reinit)");
        Ok(())
    }

    /// Chooses the transport before the first message (for `sse-first` / `sse-only`).
    async fn wire(&self, tx: &mpsc::Sender<String>) -> Result<Wire, String> {
        let mut wire = self.state.wire.lock().await;
        if *wire == Wire::Undecided {
            *wire = match self.transport {
                Transport::SseOnly => Wire::Legacy(self.open_legacy(tx).await?),
                Transport::SseFirst => match self.open_legacy(tx).await {
                    Ok(endpoint) => Wire::Legacy(endpoint),
                    Err(e) => {
                        tracing::info!("no HTTP+SSE stream ({e}); using Streamable HTTP");
                        Wire::Streamable
                    }
                },
                Transport::HttpFirst | Transport::HttpOnly => Wire::Undecided,
            };
        }
        Ok(wire.clone())
    }

    /// Opens the 2024-11-05 event stream at the server URL and waits for its `endpoint` event;
    /// its later events go to the client. The endpoint must be on the server's origin: our token
    /// is POSTed there.
    async fn open_legacy(&self, tx: &mpsc::Sender<String>) -> Result<String, String> {
        let mut response = self
            .client
            .send(|_| {
                self.client
                    .http()
                    .get(&self.url)
                    .headers(self.headers.clone())
                    .header(ACCEPT, "text/event-stream")
            })
            .await
            .map_err(|e| describe(&e))?;
        let is_sse = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !response.status().is_success() || !is_sse {
            return Err(format!(
                "the server speaks neither MCP transport (GET for HTTP+SSE answered HTTP {})",
                response.status().as_u16()
            ));
        }
        let (endpoint_tx, endpoint_rx) = oneshot::channel::<String>();
        let out = tx.clone();
        let relay = self.clone();
        let reader = tokio::spawn(async move {
            let mut parser = SseParser::default();
            let mut endpoint_tx = Some(endpoint_tx);
            while let Ok(Some(chunk)) = response.chunk().await {
                let events = match parser.push(&chunk) {
                    Ok(events) => events,
                    Err(e) => {
                        tracing::warn!(error = %e, "dropping the HTTP+SSE stream");
                        return;
                    }
                };
                for event in events {
                    if event.event.as_deref() == Some("endpoint") {
                        if let Some(etx) = endpoint_tx.take() {
                            let _ = etx.send(event.data);
                        }
                    } else if let Some(line) = to_line(&event.data) {
                        if out.is_closed() {
                            return;
                        }
                        let ctx = relay.legacy_ctx(&line);
                        relay.deliver(line, &ctx, &out).await;
                    }
                }
            }
            tracing::warn!("the server closed the HTTP+SSE stream");
        });
        self.state.streams.lock().unwrap().push(reader);
        let data = tokio::time::timeout(Duration::from_secs(10), endpoint_rx)
            .await
            .map_err(|_| "the HTTP+SSE stream sent no endpoint event".to_owned())?
            .map_err(|_| "the HTTP+SSE stream ended before its endpoint event".to_owned())?;
        let base = url::Url::parse(&self.url).map_err(|e| e.to_string())?;
        let endpoint = base
            .join(data.trim())
            .map_err(|e| format!("bad endpoint event: {e}"))?;
        if endpoint.origin() != base.origin() {
            return Err(format!(
                "the server named a message endpoint on another origin ({}); refusing to send \
                 our token there",
                endpoint.origin().ascii_serialization()
            ));
        }
        tracing::info!(endpoint = %endpoint, "using the HTTP+SSE transport (2024-11-05)");
        Ok(endpoint.to_string())
    }

    /// What a message on the HTTP+SSE stream answers: the request in flight with its id.
    fn legacy_ctx(&self, line: &str) -> Ctx {
        let inflight = &self.state.legacy_inflight;
        if inflight.lock().unwrap().is_empty() {
            return Ctx::default();
        }
        serde_json::from_str::<Value>(line)
            .ok()
            .filter(|m| m.get("method").is_none())
            .and_then(|m| inflight.lock().unwrap().remove(&id_key(&m["id"])))
            .unwrap_or_default()
    }

    /// POSTs one message on the 2024-11-05 transport; the answer arrives on the stream.
    async fn post_legacy(
        &self,
        endpoint: &str,
        body: String,
        ctx: &Ctx,
        tx: &mpsc::Sender<String>,
    ) {
        if let Some(id) = &ctx.id {
            self.state
                .legacy_inflight
                .lock()
                .unwrap()
                .insert(id_key(id), ctx.clone());
        }
        let result = self
            .client
            .send(|_| {
                self.client
                    .http()
                    .post(endpoint)
                    .headers(self.headers.clone())
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.clone())
            })
            .await;
        match result {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => {
                let message = format!("the MCP server answered HTTP {}", r.status().as_u16());
                self.fail(ctx, tx, message).await;
            }
            Err(e) => self.fail(ctx, tx, describe(&e)).await,
        }
    }

    fn ignored(&self, tool: &str) -> bool {
        self.ignore_tools.iter().any(|g| glob_match(g, tool))
    }

    fn request(&self, method: reqwest::Method) -> reqwest::RequestBuilder {
        let mut r = self
            .client
            .http()
            .request(method, &self.url)
            .headers(self.headers.clone());
        if let Some(id) = self.state.session_id.lock().unwrap().clone() {
            r = r.header("mcp-session-id", id);
        }
        if let Some(v) = self.state.protocol_version.lock().unwrap().clone() {
            r = r.header("mcp-protocol-version", v);
        }
        r
    }

    /// Runs until stdin ends, then ends the session (DELETE) and returns.
    pub async fn run(
        self,
        stdin: impl AsyncBufRead + Unpin,
        stdout: impl AsyncWrite + Unpin + Send + 'static,
    ) -> anyhow::Result<()> {
        let (tx, mut rx) = mpsc::channel::<String>(256);
        let writer = tokio::spawn(async move {
            let mut stdout = stdout;
            while let Some(mut line) = rx.recv().await {
                line.push('\n');
                if stdout.write_all(line.as_bytes()).await.is_err() || stdout.flush().await.is_err()
                {
                    break;
                }
            }
        });
        let mut tasks = JoinSet::new();
        let mut lines = stdin.lines();
        while let Some(line) = lines.next_line().await? {
            if line.trim().is_empty() {
                continue;
            }
            if line.len() > MAX_LINE {
                tracing::warn!(
                    bytes = line.len(),
                    "dropping an oversized message from the client"
                );
                continue;
            }
            let Ok(message) = serde_json::from_str::<Value>(&line) else {
                let _ = tx
                    .send(json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32700, "message": "parse error"}}).to_string())
                    .await;
                continue;
            };
            let relay = self.clone();
            let tx = tx.clone();
            let key = message
                .get("id")
                .filter(|_| message.get("method").is_some())
                .map(id_key);
            let (stop_tx, stop_rx) = oneshot::channel();
            if let Some(k) = &key {
                let listen = message["method"] == "subscriptions/listen";
                let mut inflight = self.state.inflight.lock().unwrap();
                inflight.insert(k.clone(), (stop_tx, listen));
            }
            tasks.spawn(async move {
                tokio::select! {
                    () = relay.forward(line, message, tx) => {}
                    _ = stop_rx, if key.is_some() => {}
                }
                if let Some(k) = key {
                    relay.state.inflight.lock().unwrap().remove(&k);
                }
            });
            // Reap finished tasks so the set does not grow without bound.
            while tasks.try_join_next().is_some() {}
        }
        self.client_gone(&tx).await;
        // Subscription streams last until cancelled: the client has gone, so they end now.
        self.state
            .inflight
            .lock()
            .unwrap()
            .retain(|_, (_, listen)| !*listen);
        while tasks.join_next().await.is_some() {}
        self.end_session().await;
        for stream in self.state.streams.lock().unwrap().drain(..) {
            stream.abort();
        }
        drop(tx);
        let _ = writer.await;
        Ok(())
    }

    /// Routes one client message: an answer to a request the relay made for the bridge, or a
    /// message for the server, translated when the eras differ.
    async fn forward(&self, body: String, message: Value, tx: mpsc::Sender<String>) {
        if message.get("method").is_none() && self.answer_from_client(&message) {
            return;
        }
        if message["method"] == "notifications/cancelled"
            && self.state.modern_server.load(Ordering::Relaxed)
        {
            // 2026-07-28 "Cancellation": on Streamable HTTP, closing the request's stream is the
            // cancellation; no notification is expected.
            let stop = self
                .state
                .inflight
                .lock()
                .unwrap()
                .remove(&id_key(&message["params"]["requestId"]));
            if let Some((stop, _)) = stop {
                let _ = stop.send(());
            }
            return;
        }
        self.route(body, message, tx).await;
    }

    /// POSTs one client message as it is and relays what comes back.
    async fn pass(&self, body: String, message: Value, ctx: Ctx, tx: &mpsc::Sender<String>) {
        let method = ctx.method.clone();
        if method.as_deref() == Some("tools/call")
            && let Some(tool) = message["params"]["name"].as_str()
            && self.ignored(tool)
        {
            let text = format!("the tool {tool:?} is hidden by mcpauth connect --ignore-tool");
            return self.fail(&ctx, tx, text).await;
        }
        let chosen = match self.wire(tx).await {
            Ok(w) => w,
            Err(e) => return self.fail(&ctx, tx, e).await,
        };
        if let Wire::Legacy(endpoint) = &chosen {
            return self.post_legacy(endpoint, body, &ctx, tx).await;
        }
        if method.as_deref() == Some("initialize") {
            *self.state.initialize.lock().unwrap() = Some(body.clone());
        }
        let response = match self.post(&body, &message, tx).await {
            Ok(r) => r,
            Err(e) => return self.fail(&ctx, tx, e).await,
        };
        self.answer(response, body, &ctx, &chosen, tx).await;
    }

    /// POSTs a message on Streamable HTTP with the headers it needs: the session's, the 2026-07-28
    /// ones derived from the message, and `--header`s; starts a new session first on a 404 when
    /// `--reinit` says so.
    async fn post(
        &self,
        body: &str,
        message: &Value,
        tx: &mpsc::Sender<String>,
    ) -> Result<reqwest::Response, String> {
        let method = message["method"].as_str();
        let wire = mcp_headers::request_headers(message, &self.state.tools);
        let mut reinitialized = false;
        loop {
            // The session this attempt goes out with (a 404 means that one is gone).
            let sent_with = self.state.session_id.lock().unwrap().clone();
            let response = self
                .client
                .send(|_| {
                    let mut r = self
                        .request(reqwest::Method::POST)
                        .header(CONTENT_TYPE, "application/json")
                        .header(ACCEPT, "application/json, text/event-stream");
                    for (k, v) in &wire {
                        r = r.header(k.as_str(), v.as_str());
                    }
                    r.body(body.to_owned())
                })
                .await
                .map_err(|e| describe(&e))?;
            if response.status() == StatusCode::NOT_FOUND
                && self.reinit
                && !reinitialized
                && method != Some("initialize")
                && let Some(stale) = sent_with
            {
                self.reinitialize(&stale, tx).await?;
                reinitialized = true;
                continue;
            }
            if method == Some("initialize")
                && let Some(sid) = response
                    .headers()
                    .get("mcp-session-id")
                    .and_then(|v| v.to_str().ok())
            {
                *self.state.session_id.lock().unwrap() = Some(sid.to_owned());
            }
            return Ok(response);
        }
    }

    /// Relays the server's answer to one POST.
    async fn answer(
        &self,
        response: reqwest::Response,
        body: String,
        ctx: &Ctx,
        chosen: &Wire,
        tx: &mpsc::Sender<String>,
    ) {
        let method = ctx.method.as_deref();
        let status = response.status();
        if status == StatusCode::ACCEPTED {
            if method == Some("notifications/initialized") {
                self.start_listening(tx.clone());
            }
            return;
        }
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return self.unanswered(status, &text, body, ctx, chosen, tx).await;
        }
        self.relay_body(response, ctx, tx).await;
    }

    /// An error status: the 2024-11-05 fallback when `initialize` meets 404/405, else an error
    /// for the client.
    async fn unanswered(
        &self,
        status: StatusCode,
        text: &str,
        body: String,
        ctx: &Ctx,
        chosen: &Wire,
        tx: &mpsc::Sender<String>,
    ) {
        if matches!(status.as_u16(), 404 | 405)
            && ctx.method.as_deref() == Some("initialize")
            && self.transport == Transport::HttpFirst
            && *chosen == Wire::Undecided
        {
            // MCP Transports §Backwards Compatibility: a 2024-11-05 server.
            let mut wire = self.state.wire.lock().await;
            return match self.open_legacy(tx).await {
                Ok(endpoint) => {
                    *wire = Wire::Legacy(endpoint.clone());
                    drop(wire);
                    self.post_legacy(&endpoint, body, ctx, tx).await
                }
                Err(e) => self.fail(ctx, tx, e).await,
            };
        }
        self.refused(status, text, ctx, tx).await
    }

    /// Tells the client why the server refused a message: its JSON-RPC error when it sent one,
    /// else the HTTP status.
    async fn refused(&self, status: StatusCode, text: &str, ctx: &Ctx, tx: &mpsc::Sender<String>) {
        if let Ok(v) = serde_json::from_str::<Value>(text)
            && v.get("error").is_some()
            && let Some(id) = &ctx.id
        {
            let mut v = v;
            v["id"] = id.clone();
            return self.deliver(v.to_string(), ctx, tx).await;
        }
        let excerpt: String = text.chars().filter(|c| !c.is_control()).take(200).collect();
        let message = if status == StatusCode::NOT_FOUND
            && self.state.session_id.lock().unwrap().is_some()
        {
            "the server ended the MCP session (HTTP 404); reconnect, or use --reinit to start a new \
                 one automatically"
                    .to_owned()
        } else {
            format!(
                "the MCP server answered HTTP {}: {excerpt}",
                status.as_u16()
            )
        };
        self.fail(ctx, tx, message).await
    }

    /// Relays a successful answer body, JSON or SSE.
    async fn relay_body(&self, response: reqwest::Response, ctx: &Ctx, tx: &mpsc::Sender<String>) {
        let is_sse = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if is_sse {
            self.relay_stream(response, ctx, tx).await;
        } else {
            match response.text().await {
                Ok(text) => self.relay_json(&text, ctx, tx).await,
                Err(e) => {
                    self.fail(ctx, tx, format!("reading the answer failed: {e}"))
                        .await
                }
            }
        }
    }

    /// Answers the client's request with a JSON-RPC error (notifications get none).
    async fn fail(&self, ctx: &Ctx, tx: &mpsc::Sender<String>, message: String) {
        tracing::warn!("{message}");
        if let Some(id) = &ctx.id {
            self.deliver(error_line(id, message), ctx, tx).await;
        }
    }

    /// Notes the negotiated version from an `initialize` result.
    fn observe(&self, message: &Value) {
        if let Some(version) = message["result"]["protocolVersion"].as_str() {
            *self.state.protocol_version.lock().unwrap() = Some(version.to_owned());
        }
    }

    async fn relay_json(&self, text: &str, ctx: &Ctx, tx: &mpsc::Sender<String>) {
        // A JSON-RPC batch answer is an array; every element goes out as its own line.
        let lines: Vec<String> = match serde_json::from_str::<Value>(text) {
            Ok(Value::Array(items)) => items.iter().map(Value::to_string).collect(),
            _ => to_line(text).into_iter().collect(),
        };
        for line in lines {
            self.deliver(line, ctx, tx).await;
        }
    }

    /// Relays an SSE answer event by event, as the events arrive.
    async fn relay_stream(
        &self,
        mut response: reqwest::Response,
        ctx: &Ctx,
        tx: &mpsc::Sender<String>,
    ) {
        let mut parser = SseParser::default();
        while let Ok(Some(chunk)) = response.chunk().await {
            let events = match parser.push(&chunk) {
                Ok(events) => events,
                Err(e) => {
                    tracing::warn!(error = %e, "dropping the server's answer stream");
                    return;
                }
            };
            for event in events {
                if let Some(line) = to_line(&event.data) {
                    self.deliver(line, ctx, tx).await;
                }
            }
        }
    }

    /// Every server message goes to the client through here: answers to the relay's own requests
    /// are taken out, `initialize` results noted, `tools/list` answers checked (`x-mcp-header`,
    /// `--ignore-tool`), and the bridge translates when the eras differ.
    async fn deliver(&self, line: String, ctx: &Ctx, tx: &mpsc::Sender<String>) {
        let method = ctx.method.as_deref();
        let inspect = matches!(method, Some("initialize" | "tools/list"))
            || !self.state.waiters.lock().unwrap().is_empty()
            || self.bridging();
        if !inspect {
            let _ = tx.send(line).await;
            return;
        }
        let Ok(mut message) = serde_json::from_str::<Value>(&line) else {
            let _ = tx.send(line).await;
            return;
        };
        let is_response = message.get("method").is_none();
        if is_response && method == Some("initialize") {
            self.observe(&message);
        }
        if is_response {
            let waiter = message
                .get("id")
                .and_then(|id| self.state.waiters.lock().unwrap().remove(&id_key(id)));
            if let Some(w) = waiter {
                let _ = w.send(message);
                return;
            }
        }
        let mut changed = false;
        if is_response && method == Some("tools/list") && message["result"]["tools"].is_array() {
            // x-mcp-header exists on the 2026-07-28 wire only (Streamable HTTP §Custom Headers).
            if self.state.modern_server.load(Ordering::Relaxed) {
                for left_out in self.state.tools.learn(&mut message["result"]) {
                    tracing::warn!(tool = %left_out.tool, "leaving out a tool with an invalid definition: {}", left_out.reason);
                    changed = true;
                }
            }
            if let Some(tools) = message["result"]["tools"].as_array_mut()
                && !self.ignore_tools.is_empty()
            {
                let before = tools.len();
                tools.retain(|t| !t["name"].as_str().is_some_and(|n| self.ignored(n)));
                changed |= tools.len() != before;
            }
        }
        let line = if changed { message.to_string() } else { line };
        if let Some(out) = self.translate(message, line, ctx, tx).await {
            let _ = tx.send(out).await;
        }
    }

    /// Opens the GET stream for server-initiated messages once, resuming with `Last-Event-ID`
    /// after a drop and waiting the server's `retry` between attempts.
    fn start_listening(&self, tx: mpsc::Sender<String>) {
        if self.state.listening.swap(true, Ordering::SeqCst) {
            return;
        }
        let relay = self.clone();
        let listener = tokio::spawn(async move {
            let mut last_id: Option<String> = None;
            let mut retry = Duration::from_secs(1);
            loop {
                let result = relay
                    .client
                    .send(|_| {
                        let mut r = relay
                            .request(reqwest::Method::GET)
                            .header(ACCEPT, "text/event-stream");
                        if let Some(id) = &last_id {
                            r = r.header("last-event-id", id);
                        }
                        r
                    })
                    .await;
                let mut response = match result {
                    Ok(r) if r.status().is_success() => r,
                    // 405: the server offers no GET stream (MCP Transports §Listening).
                    Ok(r) if matches!(r.status().as_u16(), 404 | 405) => return,
                    Ok(r) => {
                        tracing::debug!(status = r.status().as_u16(), "GET stream refused");
                        return;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "GET stream failed");
                        return;
                    }
                };
                let mut parser = SseParser::default();
                while let Ok(Some(chunk)) = response.chunk().await {
                    let events = match parser.push(&chunk) {
                        Ok(events) => events,
                        Err(e) => {
                            tracing::warn!(error = %e, "dropping the GET stream; reconnecting");
                            break;
                        }
                    };
                    for event in events {
                        if let Some(id) = event.id {
                            last_id = Some(id);
                        }
                        if let Some(ms) = event.retry {
                            // Within bounds: review finding 5.
                            retry = mcpauth_client::sse::retry_delay(ms);
                        }
                        if event.event.as_deref().is_some_and(|e| e != "message") {
                            continue;
                        }
                        if let Some(line) = to_line(&event.data) {
                            if tx.is_closed() {
                                return;
                            }
                            relay.deliver(line, &Ctx::default(), &tx).await;
                        }
                    }
                }
                if tx.is_closed() {
                    return;
                }
                tokio::time::sleep(retry).await;
            }
        });
        self.state.streams.lock().unwrap().push(listener);
    }

    /// Ends the session with DELETE (MCP Transports §Session Management); 405 is fine.
    async fn end_session(&self) {
        if self.state.session_id.lock().unwrap().is_none() {
            return;
        }
        let delete = self.client.send(|_| self.request(reqwest::Method::DELETE));
        match tokio::time::timeout(Duration::from_secs(5), delete).await {
            Ok(Ok(r)) => tracing::debug!(status = r.status().as_u16(), "session ended"),
            Ok(Err(e)) => tracing::debug!(error = %e, "ending the session failed"),
            Err(_) => tracing::debug!("ending the session timed out"),
        }
    }
}

/// A one-line description of a failure for the local client (no secrets: errors never hold them).
fn describe(e: &ClientError) -> String {
    format!("mcpauth connect: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("delete_*", "delete_repo"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a?c", "abc"));
        assert!(glob_match("*_admin_*", "x_admin_y"));
        assert!(!glob_match("delete_*", "undelete_repo"));
        assert!(!glob_match("a?c", "ac"));
    }

    #[test]
    fn lines_keep_bytes_unless_multiline() {
        let raw = r#"{"jsonrpc":"2.0","id":1,"result":{"z":1,"a":{"_meta":{"x":[1,2]}}}}"#;
        assert_eq!(to_line(raw).unwrap(), raw);
        let pretty = "{\n  \"jsonrpc\": \"2.0\",\n  \"id\": 1\n}";
        let line = to_line(pretty).unwrap();
        assert!(!line.contains('\n'));
        assert_eq!(serde_json::from_str::<Value>(&line).unwrap()["id"], 1);
        assert!(to_line("  ").is_none());
        assert!(
            to_line("/messages?session=1").is_none(),
            "only JSON reaches stdout"
        );
    }
}
