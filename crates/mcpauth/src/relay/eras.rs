//! Bridging the eras of MCP in `mcpauth connect` (`--protocol auto|legacy|native`; MCP 2026-07-28
//! "Versioning" §Backward Compatibility). The first message of the local client and, with
//! `auto`, the server's answer to it decide the mode:
//!
//! - **through**: both speak the same era; messages pass as they are.
//! - **up**: a legacy client (`initialize`, 2025-11-25 or earlier) and a 2026-07-28 server.
//!   `initialize` becomes `server/discover`, every request gets the per-request `_meta`, `ping`
//!   and `logging/setLevel` are answered here, `resources/subscribe` and list changes become a
//!   `subscriptions/listen` stream, and an `input_required` result becomes requests to the client
//!   followed by the retry (multi round-trip requests).
//! - **down**: a 2026-07-28 client and a legacy server. The bridge runs the `initialize`
//!   handshake itself, answers `server/discover` from it, strips the per-request `_meta`, turns
//!   `subscriptions/listen` into the GET stream (plus `resources/subscribe`), and turns a
//!   server-initiated request in the middle of a call into an `input_required` result whose
//!   retry carries the answer back to the waiting server.
//!
//! With `auto`, a legacy client's `initialize` goes to the server first (dual-era servers answer
//! it: nothing to bridge); a recognized modern error means a modern-only server (bridge up). A
//! modern client's first request goes as it is; a 400/404/405 without a recognized modern error
//! means a legacy server (bridge down), per Streamable HTTP §Backward Compatibility.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mcpauth_core::mcp_headers::{self, STATELESS};
use serde_json::{Map, Value, json};
use tokio::sync::{OnceCell, mpsc, oneshot};
use tokio::task::JoinHandle;

use super::bridge::{self, ClientProfile, Filter};
use super::{Ctx, Relay, Wire, id_key};
use crate::cli::Protocol;

/// How messages are translated in this session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    /// Same era on both sides: messages pass as they are.
    Through,
    /// A legacy client, a 2026-07-28 server.
    Up,
    /// A 2026-07-28 client, a legacy server.
    Down,
}

/// Requests that may answer `input_required` (2026-07-28 "Multi Round-Trip Requests").
const MRTR_METHODS: [&str; 3] = ["tools/call", "prompts/get", "resources/read"];

/// Rounds of input a bridged request may take before it is given up.
const MAX_ROUNDS: usize = 10;

/// A server-initiated request of a legacy server, waiting for the client's retry.
#[derive(Debug)]
struct Pending {
    /// The server's JSON-RPC id for its request.
    server_id: Value,
    /// The key of the request in `inputRequests`.
    key: String,
    /// The client request whose stream carried it.
    origin: String,
}

/// The bridge's state for one relayed session.
#[derive(Debug, Default)]
pub(super) struct EraState {
    /// The mode, decided by the first message (waiters queue here meanwhile).
    mode: tokio::sync::Mutex<Option<Mode>>,
    /// The same, readable without waiting.
    decided: Mutex<Option<Mode>>,
    next_id: AtomicU64,
    /// Answers awaited from the client, by the id of the bridge's request.
    client_waiters: Mutex<HashMap<String, oneshot::Sender<Value>>>,
    /// Up: the legacy client, as its `initialize` described it.
    profile: Mutex<Option<ClientProfile>>,
    /// Up: the server's capabilities from `server/discover`.
    capabilities: Mutex<Value>,
    /// Up: resource URIs the legacy client subscribed to.
    uris: Mutex<BTreeSet<String>>,
    /// Up: the `subscriptions/listen` stream (its request id and task).
    listen: Mutex<Option<(String, JoinHandle<()>)>>,
    /// Down: the legacy server's `initialize` result.
    init: OnceCell<Value>,
    /// Down: open subscriptions by the id of their `subscriptions/listen` request.
    subscriptions: Mutex<HashMap<String, (Value, Filter)>>,
    /// Down: server requests waiting for the client's retry, by `requestState`.
    pending: Mutex<HashMap<String, Pending>>,
    /// Down: the client's retry id standing for an original request that needed input.
    aliases: Mutex<HashMap<String, Value>>,
    /// Down: the log level last set on the legacy server.
    log_level: Mutex<Option<String>>,
}

type Boxed = Pin<Box<dyn Future<Output = ()> + Send>>;

impl Relay {
    /// Whether messages are being translated (deliver must look at each one).
    pub(super) fn bridging(&self) -> bool {
        matches!(
            *self.state.eras.decided.lock().unwrap(),
            Some(Mode::Up | Mode::Down)
        )
    }

    fn mode_now(&self) -> Option<Mode> {
        *self.state.eras.decided.lock().unwrap()
    }

    /// An id for a request of the bridge's own, never one a client uses.
    fn internal_id(&self) -> Value {
        let n = self.state.eras.next_id.fetch_add(1, Ordering::Relaxed);
        json!(format!("mcpauth-bridge-{n}"))
    }

    async fn send_client(&self, tx: &mpsc::Sender<String>, message: Value) {
        let _ = tx.send(message.to_string()).await;
    }

    /// Takes a client's answer to a request of the bridge; false if it answers nothing known.
    pub(super) fn answer_from_client(&self, message: &Value) -> bool {
        let waiter = message.get("id").and_then(|id| {
            self.state
                .eras
                .client_waiters
                .lock()
                .unwrap()
                .remove(&id_key(id))
        });
        match waiter {
            Some(w) => {
                let _ = w.send(message.clone());
                true
            }
            None => false,
        }
    }

    /// The client closed stdin: nothing will answer the bridge's requests any more; a legacy
    /// server waiting for one is told so, and the subscription stream ends.
    pub(super) async fn client_gone(&self, tx: &mpsc::Sender<String>) {
        let eras = &self.state.eras;
        eras.client_waiters.lock().unwrap().clear();
        let pending: Vec<Pending> = eras
            .pending
            .lock()
            .unwrap()
            .drain()
            .map(|(_, p)| p)
            .collect();
        for p in pending {
            let m = json!({"jsonrpc": "2.0", "id": p.server_id,
                "error": {"code": -32603, "message": "the MCP client has gone"}});
            self.pass(m.to_string(), m, Ctx::default(), tx).await;
        }
        if let Some((key, task)) = eras.listen.lock().unwrap().take() {
            task.abort();
            self.state.waiters.lock().unwrap().remove(&key);
        }
    }

    /// Sends `message` by the mode of the session, deciding it on the first message.
    pub(super) async fn route(&self, body: String, message: Value, tx: mpsc::Sender<String>) {
        // Decided once, early: later messages need not queue on the lock.
        if let Some(mode) = self.mode_now() {
            return self.dispatch(mode, body, message, &tx).await;
        }
        let mut guard = self.state.eras.mode.lock().await;
        if let Some(mode) = *guard {
            drop(guard);
            return self.dispatch(mode, body, message, &tx).await;
        }
        let Some(method) = message["method"].as_str().map(str::to_owned) else {
            drop(guard);
            return self.pass(body, message, Ctx::default(), &tx).await;
        };
        let client_modern =
            method == "server/discover" || mcp_headers::declared_version(&message).is_some();
        let fixed = match (self.protocol, client_modern) {
            (Protocol::Native, false) => Some(Mode::Up),
            (Protocol::Legacy, true) => Some(Mode::Down),
            (Protocol::Native, true) | (Protocol::Legacy, false) => Some(Mode::Through),
            // A legacy client that skips initialize: nothing to learn from its first message.
            (Protocol::Auto, false) if method != "initialize" => Some(Mode::Through),
            (Protocol::Auto, _) => None,
        };
        if let Some(mode) = fixed {
            self.set_mode(&mut guard, mode, client_modern);
            drop(guard);
            return self.dispatch(mode, body, message, &tx).await;
        }
        let ctx = Ctx::of(&message);
        let chosen = match self.wire(&tx).await {
            Ok(w) => w,
            Err(e) => return self.fail(&ctx, &tx, e).await,
        };
        if matches!(chosen, Wire::Legacy(_)) {
            // The HTTP+SSE transport (2024-11-05) is legacy by definition.
            let mode = if client_modern {
                Mode::Down
            } else {
                Mode::Through
            };
            self.set_mode(&mut guard, mode, client_modern);
            drop(guard);
            return self.dispatch(mode, body, message, &tx).await;
        }
        if method == "initialize" {
            *self.state.initialize.lock().unwrap() = Some(body.clone());
        }
        let response = match self.post(&body, &message, &tx).await {
            Ok(r) => r,
            Err(e) => return self.fail(&ctx, &tx, e).await,
        };
        let status = response.status();
        if status.is_success() || !matches!(status.as_u16(), 400 | 404 | 405) {
            if status.is_success() {
                self.set_mode(&mut guard, Mode::Through, client_modern);
            }
            drop(guard);
            return self.answer(response, body, &ctx, &chosen, &tx).await;
        }
        let text = response.text().await.unwrap_or_default();
        let modern_error = bridge::is_modern_error(status.as_u16(), &text);
        match (client_modern, modern_error) {
            (false, true) => {
                self.set_mode(&mut guard, Mode::Up, client_modern);
                drop(guard);
                self.up_initialize(message, &tx).await;
            }
            (true, false) => {
                self.set_mode(&mut guard, Mode::Down, client_modern);
                drop(guard);
                self.down(message, &tx).await;
            }
            _ => {
                self.set_mode(&mut guard, Mode::Through, client_modern);
                drop(guard);
                self.unanswered(status, &text, body, &ctx, &chosen, &tx)
                    .await;
            }
        }
    }

    fn set_mode(&self, slot: &mut Option<Mode>, mode: Mode, client_modern: bool) {
        *slot = Some(mode);
        *self.state.eras.decided.lock().unwrap() = Some(mode);
        let modern_server = mode == Mode::Up || (mode == Mode::Through && client_modern);
        self.state
            .modern_server
            .store(modern_server, Ordering::Relaxed);
        match mode {
            Mode::Up => tracing::info!("bridging a legacy MCP client to a {STATELESS} server"),
            Mode::Down => tracing::info!("bridging a {STATELESS} MCP client to a legacy server"),
            Mode::Through => {}
        }
    }

    async fn dispatch(&self, mode: Mode, body: String, message: Value, tx: &mpsc::Sender<String>) {
        match mode {
            Mode::Through => {
                let ctx = Ctx::of(&message);
                self.pass(body, message, ctx, tx).await
            }
            Mode::Up => self.up(message, tx).await,
            Mode::Down => self.down(message, tx).await,
        }
    }

    /// Sends a request and returns the server's answer to it (which does not reach the client).
    async fn call(
        &self,
        message: Value,
        ctx: Ctx,
        tx: &mpsc::Sender<String>,
    ) -> Result<Value, String> {
        let key = id_key(&message["id"]);
        let (wtx, wrx) = oneshot::channel();
        self.state.waiters.lock().unwrap().insert(key.clone(), wtx);
        self.pass(message.to_string(), message, ctx, tx).await;
        let legacy = matches!(*self.state.wire.lock().await, Wire::Legacy(_));
        if !legacy {
            // Streamable HTTP: the answer came with the POST, or never will.
            self.state.waiters.lock().unwrap().remove(&key);
        }
        // HTTP+SSE: the answer comes on the event stream, later.
        let answer = tokio::time::timeout(Duration::from_secs(60), wrx)
            .await
            .ok()
            .and_then(Result::ok);
        self.state.waiters.lock().unwrap().remove(&key);
        answer.ok_or_else(|| "the MCP server closed the stream without answering".to_owned())
    }

    /// Answers a server's request (ping, or a refusal) without holding up delivery.
    fn answer_server(&self, message: Value, tx: &mpsc::Sender<String>) {
        let relay = self.clone();
        let tx = tx.clone();
        let task: Boxed = Box::pin(async move {
            relay
                .pass(message.to_string(), message, Ctx::default(), &tx)
                .await;
        });
        tokio::spawn(task);
    }

    /// Server messages on their way to the client, by mode; `None` drops the message.
    pub(super) async fn translate(
        &self,
        message: Value,
        line: String,
        ctx: &Ctx,
        tx: &mpsc::Sender<String>,
    ) -> Option<String> {
        match self.mode_now() {
            // The bridge asked for the stream; a legacy client has no use for its acknowledgement.
            Some(Mode::Up) if message["method"] == "notifications/subscriptions/acknowledged" => {
                None
            }
            Some(Mode::Down) => self.down_translate(message, ctx, tx).await,
            _ => Some(line),
        }
    }

    // ---- up: a legacy client, a 2026-07-28 server ----------------------------------------

    async fn up(&self, mut message: Value, tx: &mpsc::Sender<String>) {
        let Some(method) = message["method"].as_str().map(str::to_owned) else {
            return; // an answer to nothing the bridge asked
        };
        let id = message.get("id").cloned();
        let ok = |result: Value| json!({"jsonrpc": "2.0", "id": id, "result": result});
        let params = message["params"].clone();
        match method.as_str() {
            "initialize" => return self.up_initialize(message, tx).await,
            "notifications/initialized" => return self.up_listen(tx),
            // Removed in 2026-07-28 (changelog 5): answered here for the server.
            "ping" => return self.send_client(tx, ok(json!({}))).await,
            "logging/setLevel" => {
                if let Some(p) = self.state.eras.profile.lock().unwrap().as_mut() {
                    p.log_level = params["level"].as_str().map(str::to_owned);
                }
                return self.send_client(tx, ok(json!({}))).await;
            }
            // Replaced by subscriptions/listen (changelog 4).
            "resources/subscribe" | "resources/unsubscribe" => {
                if let Some(uri) = params["uri"].as_str() {
                    let mut uris = self.state.eras.uris.lock().unwrap();
                    if method == "resources/subscribe" {
                        uris.insert(uri.to_owned());
                    } else {
                        uris.remove(uri);
                    }
                }
                self.up_listen(tx);
                return self.send_client(tx, ok(json!({}))).await;
            }
            "notifications/roots/list_changed" => return,
            _ => {}
        }
        let profile = self.up_profile();
        bridge::add_modern_meta(&mut message, &profile);
        if id.is_some() && MRTR_METHODS.contains(&method.as_str()) {
            return self.up_mrtr(message, tx).await;
        }
        let ctx = Ctx::of(&message);
        self.pass(message.to_string(), message, ctx, tx).await;
    }

    /// The legacy client's profile (a default one if it never sent `initialize`).
    fn up_profile(&self) -> ClientProfile {
        self.state
            .eras
            .profile
            .lock()
            .unwrap()
            .clone()
            .unwrap_or_else(|| bridge::profile_from_initialize(&json!({})))
    }

    /// `initialize` answered from `server/discover`.
    async fn up_initialize(&self, message: Value, tx: &mpsc::Sender<String>) {
        let ctx = Ctx::of(&message);
        let profile = bridge::profile_from_initialize(&message["params"]);
        *self.state.eras.profile.lock().unwrap() = Some(profile.clone());
        let requested = message["params"]["protocolVersion"]
            .as_str()
            .unwrap_or(bridge::LEGACY_LATEST);
        let mut discover = json!({"jsonrpc": "2.0", "id": self.internal_id(),
            "method": "server/discover", "params": {}});
        bridge::add_modern_meta(&mut discover, &profile);
        let answer = match self.call(discover.clone(), Ctx::of(&discover), tx).await {
            Ok(a) => a,
            Err(e) => return self.fail(&ctx, tx, e).await,
        };
        if let Some(versions) = bridge::supported_versions(&answer) {
            let text = format!(
                "the MCP server speaks {versions:?}; mcpauth connect bridges legacy clients to \
                 {STATELESS} only"
            );
            return self.fail(&ctx, tx, text).await;
        }
        if let Some(error) = answer.get("error") {
            return self
                .fail(&ctx, tx, format!("server/discover failed: {error}"))
                .await;
        }
        let result = &answer["result"];
        *self.state.eras.capabilities.lock().unwrap() = result["capabilities"].clone();
        let init = bridge::initialize_result(result, bridge::legacy_version_for(requested));
        self.send_client(tx, json!({"jsonrpc": "2.0", "id": ctx.id, "result": init}))
            .await;
    }

    /// (Re)opens the `subscriptions/listen` stream a legacy client's list-change notifications
    /// and resource subscriptions need (2026-07-28 "Subscriptions"); reopened after a drop.
    fn up_listen(&self, tx: &mpsc::Sender<String>) {
        let eras = &self.state.eras;
        let filter = Filter::for_legacy_client(
            &eras.capabilities.lock().unwrap(),
            &eras.uris.lock().unwrap(),
        );
        if let Some((key, task)) = eras.listen.lock().unwrap().take() {
            task.abort();
            self.state.waiters.lock().unwrap().remove(&key);
        }
        if filter.is_empty() {
            return;
        }
        let mut request = json!({"jsonrpc": "2.0", "id": self.internal_id(),
            "method": "subscriptions/listen", "params": {"notifications": filter.to_json()}});
        bridge::add_modern_meta(&mut request, &self.up_profile());
        let key = id_key(&request["id"]);
        let relay = self.clone();
        let tx = tx.clone();
        let task = tokio::spawn(async move {
            loop {
                let _ = relay.call(request.clone(), Ctx::of(&request), &tx).await;
                if tx.is_closed() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        *eras.listen.lock().unwrap() = Some((key, task));
    }

    /// A request that may need input: each `input_required` round becomes requests to the
    /// client, then the retry (MRTR §Client Requirements); the client sees one answer.
    async fn up_mrtr(&self, original: Value, tx: &mpsc::Sender<String>) {
        let ctx = Ctx::of(&original);
        let mut attempt = original.clone();
        for _ in 0..MAX_ROUNDS {
            let answer = match self.call(attempt.clone(), Ctx::of(&attempt), tx).await {
                Ok(a) => a,
                Err(e) => return self.fail(&ctx, tx, e).await,
            };
            let interim = &answer["result"];
            if !bridge::is_input_required(interim) {
                let mut answer = answer;
                answer["id"] = original["id"].clone();
                return self.send_client(tx, answer).await;
            }
            let mut responses = Map::new();
            if let Some(requests) = interim["inputRequests"].as_object() {
                for (key, request) in requests {
                    match self.ask_client(request, tx).await {
                        Ok(result) => {
                            responses.insert(key.clone(), result);
                        }
                        Err(e) => return self.fail(&ctx, tx, e).await,
                    }
                }
            }
            attempt = bridge::mrtr_retry(&original, self.internal_id(), interim, responses);
        }
        let text = format!("the MCP server still asked for input after {MAX_ROUNDS} rounds");
        self.fail(&ctx, tx, text).await
    }

    /// Sends a server's input request to the legacy client as a server-initiated request and
    /// waits for its answer.
    async fn ask_client(
        &self,
        request: &Value,
        tx: &mpsc::Sender<String>,
    ) -> Result<Value, String> {
        let id = self.internal_id();
        let (wtx, wrx) = oneshot::channel();
        self.state
            .eras
            .client_waiters
            .lock()
            .unwrap()
            .insert(id_key(&id), wtx);
        let mut m = json!({"jsonrpc": "2.0", "id": id, "method": request["method"]});
        if let Some(params) = request.get("params") {
            m["params"] = params.clone();
        }
        self.send_client(tx, m).await;
        let reply = wrx
            .await
            .map_err(|_| "the MCP client has gone".to_owned())?;
        if let Some(error) = reply.get("error") {
            return Err(format!(
                "the MCP client refused {}: {error}",
                request["method"]
            ));
        }
        Ok(reply["result"].clone())
    }

    // ---- down: a 2026-07-28 client, a legacy server ----------------------------------------

    async fn down(&self, message: Value, tx: &mpsc::Sender<String>) {
        let Some(method) = message["method"].as_str().map(str::to_owned) else {
            return; // a modern client answers no server requests
        };
        let ctx = Ctx::of(&message);
        let mut m = message;
        let profile = bridge::take_modern_meta(&mut m);
        if let Some(p) = &profile
            && p.version != STATELESS
        {
            if let Some(id) = &ctx.id {
                self.send_client(tx, bridge::unsupported_version(id, &p.version))
                    .await;
            }
            return;
        }
        let init = match self.down_init(profile.as_ref(), tx).await {
            Ok(i) => i,
            Err(e) => return self.fail(&ctx, tx, e).await,
        };
        match method.as_str() {
            "server/discover" => {
                let answer = json!({"jsonrpc": "2.0", "id": ctx.id,
                    "result": bridge::discover_result(&init)});
                return self.send_client(tx, answer).await;
            }
            "subscriptions/listen" => return self.down_listen(&ctx, &m["params"], &init, tx).await,
            "notifications/cancelled"
                if self.down_unsubscribe(&m["params"]["requestId"], tx).await =>
            {
                return;
            }
            _ => {}
        }
        if let Some(state) = m["params"]["requestState"].as_str().map(str::to_owned) {
            return self.down_resume(&state, &m, &ctx, tx).await;
        }
        let level = profile.and_then(|p| p.log_level);
        if let Some(level) = &level {
            self.down_log_level(level, &init, tx).await;
        }
        let ctx = Ctx {
            log: level.is_some(),
            ..ctx
        };
        self.pass(m.to_string(), m, ctx, tx).await;
    }

    /// The legacy session, opened once: `initialize` with the client's capabilities and info
    /// from its first request's `_meta`, then `notifications/initialized`.
    async fn down_init(
        &self,
        profile: Option<&ClientProfile>,
        tx: &mpsc::Sender<String>,
    ) -> Result<Value, String> {
        self.state
            .eras
            .init
            .get_or_try_init(|| async {
                let profile = profile
                    .cloned()
                    .unwrap_or_else(|| bridge::profile_from_initialize(&json!({})));
                let init = json!({"jsonrpc": "2.0", "id": self.internal_id(), "method": "initialize",
                    "params": {"protocolVersion": bridge::LEGACY_LATEST,
                        "capabilities": profile.capabilities, "clientInfo": profile.info}});
                let answer = self.call(init.clone(), Ctx::of(&init), tx).await?;
                if let Some(error) = answer.get("error") {
                    return Err(format!("the legacy MCP server refused initialize: {error}"));
                }
                let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
                self.pass(note.to_string(), note.clone(), Ctx::of(&note), tx)
                    .await;
                Ok(answer["result"].clone())
            })
            .await
            .cloned()
    }

    /// A request of the bridge's own to the legacy server.
    async fn down_call(
        &self,
        method: &str,
        params: Value,
        tx: &mpsc::Sender<String>,
    ) -> Result<Value, String> {
        let m =
            json!({"jsonrpc": "2.0", "id": self.internal_id(), "method": method, "params": params});
        let answer = self.call(m.clone(), Ctx::of(&m), tx).await?;
        match answer.get("error") {
            Some(e) => Err(format!("{method} failed: {e}")),
            None => Ok(answer["result"].clone()),
        }
    }

    /// `subscriptions/listen`: the GET stream already carries the legacy server's notifications;
    /// this subscription gets those its filter wants, after the acknowledgement.
    async fn down_listen(
        &self,
        ctx: &Ctx,
        params: &Value,
        init: &Value,
        tx: &mpsc::Sender<String>,
    ) {
        let Some(id) = ctx.id.clone() else {
            return;
        };
        let honored = Filter::from_params(params).honored(&init["capabilities"]);
        let known = self.subscribed_uris();
        self.down_each_uri("resources/subscribe", honored.uris.difference(&known), tx)
            .await;
        self.send_client(tx, bridge::acknowledgement(&id, &honored))
            .await;
        self.state
            .eras
            .subscriptions
            .lock()
            .unwrap()
            .insert(id_key(&id), (id, honored));
    }

    /// The resource URIs the open subscriptions want updates of.
    fn subscribed_uris(&self) -> BTreeSet<String> {
        let subscriptions = self.state.eras.subscriptions.lock().unwrap();
        subscriptions
            .values()
            .flat_map(|(_, f)| f.uris.iter().cloned())
            .collect()
    }

    /// `resources/subscribe` or `resources/unsubscribe` for each URI (failures are logged: the
    /// subscription still gets what the server does send).
    async fn down_each_uri(
        &self,
        method: &str,
        uris: impl Iterator<Item = &String>,
        tx: &mpsc::Sender<String>,
    ) {
        for uri in uris {
            if let Err(e) = self.down_call(method, json!({"uri": uri}), tx).await {
                tracing::warn!("{e}");
            }
        }
    }

    /// Ends the subscription a `notifications/cancelled` names; false if it names none.
    async fn down_unsubscribe(&self, request_id: &Value, tx: &mpsc::Sender<String>) -> bool {
        let subscriptions = &self.state.eras.subscriptions;
        let Some((_, filter)) = subscriptions.lock().unwrap().remove(&id_key(request_id)) else {
            return false;
        };
        let still = self.subscribed_uris();
        self.down_each_uri("resources/unsubscribe", filter.uris.difference(&still), tx)
            .await;
        true
    }

    /// A request's `_meta` `logLevel` becomes `logging/setLevel` when it changes.
    async fn down_log_level(&self, level: &str, init: &Value, tx: &mpsc::Sender<String>) {
        if !init["capabilities"]["logging"].is_object()
            || self.state.eras.log_level.lock().unwrap().as_deref() == Some(level)
        {
            return;
        }
        match self
            .down_call("logging/setLevel", json!({"level": level}), tx)
            .await
        {
            Ok(_) => *self.state.eras.log_level.lock().unwrap() = Some(level.to_owned()),
            Err(e) => tracing::warn!("{e}"),
        }
    }

    /// The retry of a request that needed input: the answer goes to the server's waiting
    /// request, and the original call's eventual answer goes to this retry's id.
    async fn down_resume(&self, state: &str, m: &Value, ctx: &Ctx, tx: &mpsc::Sender<String>) {
        let Some(pending) = self.state.eras.pending.lock().unwrap().remove(state) else {
            let text = "unknown requestState: the request it belongs to is no longer waiting";
            return self.fail(ctx, tx, text.to_owned()).await;
        };
        if let Some(id) = &ctx.id {
            self.state
                .eras
                .aliases
                .lock()
                .unwrap()
                .insert(pending.origin.clone(), id.clone());
        }
        let answer = match m["params"]["inputResponses"].get(&pending.key) {
            Some(result) => json!({"jsonrpc": "2.0", "id": pending.server_id, "result": result}),
            None => json!({"jsonrpc": "2.0", "id": pending.server_id,
                "error": {"code": -32603, "message": "the MCP client gave no answer"}}),
        };
        self.pass(answer.to_string(), answer, Ctx::default(), tx)
            .await;
    }

    /// A legacy server's message for a modern client.
    async fn down_translate(
        &self,
        message: Value,
        ctx: &Ctx,
        tx: &mpsc::Sender<String>,
    ) -> Option<String> {
        let eras = &self.state.eras;
        let method = message.get("method").and_then(Value::as_str);
        let id = message.get("id").cloned();
        match (method, id) {
            (None, Some(id)) => {
                let key = id_key(&id);
                if eras
                    .pending
                    .lock()
                    .unwrap()
                    .values()
                    .any(|p| p.origin == key)
                {
                    tracing::warn!("the legacy server answered a request still waiting for input");
                    return None;
                }
                let mut m = message;
                if let Some(alias) = eras.aliases.lock().unwrap().remove(&key) {
                    m["id"] = alias;
                }
                if m["result"].is_object() {
                    bridge::complete_result(
                        ctx.method.as_deref().unwrap_or_default(),
                        &mut m["result"],
                    );
                }
                Some(m.to_string())
            }
            (None, None) => None,
            (Some("ping"), Some(id)) => {
                self.answer_server(json!({"jsonrpc": "2.0", "id": id, "result": {}}), tx);
                None
            }
            (Some(_), Some(server_id)) => {
                let origin = ctx.id.as_ref().map(id_key);
                let busy = origin.as_ref().is_some_and(|o| {
                    eras.pending
                        .lock()
                        .unwrap()
                        .values()
                        .any(|p| &p.origin == o)
                });
                let Some(origin) = origin.filter(|_| !busy) else {
                    // Outside a request (or a second one at once) there is no result to carry it.
                    self.answer_server(
                        json!({"jsonrpc": "2.0", "id": server_id, "error": {"code": -32601,
                            "message": "the 2026-07-28 client behind mcpauth connect takes requests only as input to a request"}}),
                        tx,
                    );
                    return None;
                };
                let state = mcpauth_core::random_urlsafe(24).ok()?;
                let key = format!("input-{}", id_key(&server_id));
                let client_id = eras
                    .aliases
                    .lock()
                    .unwrap()
                    .get(&origin)
                    .cloned()
                    .or_else(|| ctx.id.clone());
                let result = bridge::input_required(&key, &message, &state);
                eras.pending.lock().unwrap().insert(
                    state,
                    Pending {
                        server_id,
                        key,
                        origin,
                    },
                );
                Some(json!({"jsonrpc": "2.0", "id": client_id, "result": result}).to_string())
            }
            (Some(m), None) => {
                if ctx.method.is_some() {
                    // On a request's stream: progress and the like belong to it; log messages
                    // only if that request asked for them (2026-07-28 changelog 5).
                    return (m != "notifications/message" || ctx.log).then(|| message.to_string());
                }
                let tagged: Vec<Value> = eras
                    .subscriptions
                    .lock()
                    .unwrap()
                    .values()
                    .filter(|(_, f)| f.wants(&message))
                    .map(|(id, _)| bridge::tag_subscription(&message, id))
                    .collect();
                for n in tagged {
                    self.send_client(tx, n).await;
                }
                None
            }
        }
    }
}
