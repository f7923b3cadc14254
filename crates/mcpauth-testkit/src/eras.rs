//! The two eras of MCP on the test endpoint, for the bridge of `mcpauth connect`:
//!
//! - `Era::Modern`: a stateless 2026-07-28-only server. It validates the request headers against
//!   the body (`MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`, `Mcp-Param-*`; 400 with -32020),
//!   refuses `initialize` and other versions with -32022 naming its version, answers
//!   `server/discover`, asks for input with `input_required` (tool `ask`), and streams
//!   `subscriptions/listen`.
//! - `Era::Legacy` (with the `sessions` knob): `initialize` sessions, a server-initiated
//!   `elicitation/create` on the response stream of tool `ask`, and a GET stream of notifications.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::TestServer;

/// Which MCP revisions the endpoint speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Era {
    /// `initialize` and sessions (2025-11-25 and earlier).
    #[default]
    Legacy,
    /// Stateless 2026-07-28 only.
    Modern,
}

const MODERN: &str = "2026-07-28";

/// A message received, with the request's `mcp-*` headers.
pub type Received = (Vec<(String, String)>, Value);

/// An open notification stream: modern ones carry their subscription id and filter.
type Stream = (Option<(Value, Value)>, mpsc::Sender<String>);

/// What the endpoint keeps for the era tests.
#[derive(Debug, Default)]
pub(crate) struct EraLog {
    /// Every MCP message received, with the request's `mcp-*` headers.
    pub messages: Mutex<Vec<Received>>,
    /// Open notification streams (modern listen streams with their filter and id; legacy GET
    /// streams with no filter).
    streams: Mutex<Vec<Stream>>,
    /// Server requests waiting for the client's answer, by id.
    waiting: Mutex<HashMap<String, oneshot::Sender<Value>>>,
    next: Mutex<u64>,
}

impl TestServer {
    /// Every MCP message the endpoint received (either era), with its `mcp-*` request headers.
    pub fn mcp_messages(&self) -> Vec<Received> {
        self.eras.messages.lock().unwrap().clone()
    }

    /// Sends a notification on every open stream that wants it (modern streams check their
    /// filter and tag it with the subscription id; legacy GET streams get everything).
    pub fn notify(&self, notification: Value) {
        let mut streams = self.eras.streams.lock().unwrap();
        streams.retain(|(_, tx)| !tx.is_closed());
        for (sub, tx) in streams.iter() {
            let message = match sub {
                None => notification.clone(),
                Some((id, filter)) if wants(filter, &notification) => {
                    let mut n = notification.clone();
                    n["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"] = id.clone();
                    n
                }
                Some(_) => continue,
            };
            let _ = tx.try_send(message.to_string());
        }
    }

    /// How many notification streams are open.
    pub fn open_streams(&self) -> usize {
        let mut streams = self.eras.streams.lock().unwrap();
        streams.retain(|(_, tx)| !tx.is_closed());
        streams.len()
    }
}

fn wants(filter: &Value, n: &Value) -> bool {
    match n["method"].as_str() {
        Some("notifications/tools/list_changed") => filter["toolsListChanged"] == true,
        Some("notifications/prompts/list_changed") => filter["promptsListChanged"] == true,
        Some("notifications/resources/list_changed") => filter["resourcesListChanged"] == true,
        Some("notifications/resources/updated") => filter["resourceSubscriptions"]
            .as_array()
            .is_some_and(|a| a.contains(&n["params"]["uri"])),
        _ => false,
    }
}

/// Notes a message of the legacy session endpoint.
pub(crate) fn record(s: &TestServer, headers: &HeaderMap, body: &str) {
    if let Ok(message) = serde_json::from_str::<Value>(body) {
        log(s, headers, &message);
    }
}

fn log(s: &TestServer, headers: &HeaderMap, message: &Value) {
    let mcp: Vec<(String, String)> = headers
        .iter()
        .filter(|(k, _)| k.as_str().starts_with("mcp-"))
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("?").to_owned()))
        .collect();
    s.eras.messages.lock().unwrap().push((mcp, message.clone()));
}

fn rpc_error(status: StatusCode, id: &Value, code: i64, message: &str, data: Value) -> Response {
    let mut error = json!({"code": code, "message": message});
    if !data.is_null() {
        error["data"] = data;
    }
    (
        status,
        axum::Json(json!({"jsonrpc": "2.0", "id": id, "error": error})),
    )
        .into_response()
}

fn ok(id: &Value, result: Value) -> Response {
    axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response()
}

/// A header value with the `=?base64?…?=` sentinel decoded.
fn decoded(v: Option<&str>) -> Option<String> {
    let v = v?;
    match v
        .strip_prefix("=?base64?")
        .and_then(|r| r.strip_suffix("?="))
    {
        Some(b64) => String::from_utf8(STANDARD.decode(b64).ok()?).ok(),
        None => Some(v.to_owned()),
    }
}

fn sse(first: Vec<String>, rx: mpsc::Receiver<String>) -> Response {
    let events = first.into_iter().map(|m| format!("data: {m}\n\n"));
    let head = futures_util::stream::iter(events.map(Ok::<_, std::convert::Infallible>));
    let tail = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|m| {
            (
                Ok::<_, std::convert::Infallible>(format!("data: {m}\n\n")),
                rx,
            )
        })
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(Body::from_stream(futures_util::StreamExt::chain(
            head, tail,
        )))
        .unwrap()
}

/// The stateless 2026-07-28 endpoint.
pub(crate) fn modern(s: &TestServer, headers: &HeaderMap, body: &str) -> Response {
    let Ok(request) = serde_json::from_str::<Value>(body) else {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            &Value::Null,
            -32700,
            "parse error",
            Value::Null,
        );
    };
    log(s, headers, &request);
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let method = request["method"].as_str().unwrap_or_default();
    let params = &request["params"];
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let Some(version) = params["_meta"]["io.modelcontextprotocol/protocolVersion"].as_str() else {
        // initialize, or anything without the per-request _meta: name the version (Versioning
        // §Backward Compatibility).
        let requested = params["protocolVersion"].as_str().unwrap_or("none");
        return rpc_error(
            StatusCode::BAD_REQUEST,
            &id,
            -32022,
            "Unsupported protocol version",
            json!({"supported": [MODERN], "requested": requested}),
        );
    };
    if version != MODERN {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            &id,
            -32022,
            "Unsupported protocol version",
            json!({"supported": [MODERN], "requested": version}),
        );
    }
    let mismatch = |what: &str| {
        rpc_error(
            StatusCode::BAD_REQUEST,
            &id,
            -32020,
            &format!("Header mismatch: {what}"),
            Value::Null,
        )
    };
    if h("mcp-protocol-version") != Some(version) {
        return mismatch("MCP-Protocol-Version");
    }
    if !method.is_empty() && h("mcp-method") != Some(method) {
        return mismatch("Mcp-Method");
    }
    let name = match method {
        "tools/call" | "prompts/get" => params["name"].as_str(),
        "resources/read" => params["uri"].as_str(),
        _ => None,
    };
    if let Some(name) = name
        && decoded(h("mcp-name")).as_deref() != Some(name)
    {
        return mismatch("Mcp-Name");
    }
    if request.get("id").is_none() {
        return StatusCode::ACCEPTED.into_response();
    }
    let meta =
        json!({"io.modelcontextprotocol/serverInfo": {"name": "testkit-modern", "version": "1"}});
    match method {
        "server/discover" => ok(
            &id,
            json!({"resultType": "complete", "supportedVersions": [MODERN],
                "capabilities": {"tools": {"listChanged": true},
                    "resources": {"subscribe": true, "listChanged": true}},
                "_meta": meta, "instructions": "a test server", "ttlMs": 60000,
                "cacheScope": "public"}),
        ),
        "tools/list" => ok(
            &id,
            json!({"resultType": "complete", "ttlMs": 0, "cacheScope": "private", "tools": [
                {"name": "echo", "inputSchema": {"type": "object"}},
                {"name": "ask", "inputSchema": {"type": "object"}},
                {"name": "sql", "inputSchema": {"type": "object", "properties": {
                    "region": {"type": "string", "x-mcp-header": "Region"},
                    "query": {"type": "string"}}}},
                {"name": "broken", "inputSchema": {"type": "object", "properties": {
                    "n": {"type": "number", "x-mcp-header": "N"}}}}]}),
        ),
        "tools/call" => modern_call(&id, params, headers),
        "resources/read" => ok(
            &id,
            json!({"resultType": "complete", "ttlMs": 0, "cacheScope": "private",
                "contents": [{"uri": params["uri"], "text": "content"}]}),
        ),
        "subscriptions/listen" => {
            let filter = params["notifications"].clone();
            let (tx, rx) = mpsc::channel(16);
            s.eras
                .streams
                .lock()
                .unwrap()
                .push((Some((id.clone(), filter.clone())), tx));
            let ack = json!({"jsonrpc": "2.0", "method": "notifications/subscriptions/acknowledged",
                "params": {"_meta": {"io.modelcontextprotocol/subscriptionId": id},
                    "notifications": filter}});
            sse(vec![ack.to_string()], rx)
        }
        // ping, logging/setLevel, initialize, resources/subscribe: not in 2026-07-28.
        _ => rpc_error(
            StatusCode::NOT_FOUND,
            &id,
            -32601,
            "Method not found",
            Value::Null,
        ),
    }
}

fn modern_call(id: &Value, params: &Value, headers: &HeaderMap) -> Response {
    let args = &params["arguments"];
    let text =
        |t: String| json!({"resultType": "complete", "content": [{"type": "text", "text": t}]});
    match params["name"].as_str() {
        Some("sql") => {
            let header = decoded(
                headers
                    .get("mcp-param-region")
                    .and_then(|v| v.to_str().ok()),
            );
            if header.as_deref() != args["region"].as_str() {
                return rpc_error(
                    StatusCode::BAD_REQUEST,
                    id,
                    -32020,
                    "Header mismatch: Mcp-Param-Region",
                    Value::Null,
                );
            }
            ok(id, text(format!("ran in {}", args["region"])))
        }
        Some("ask") => {
            let answer = &params["inputResponses"]["name"];
            if params["requestState"] == "asked-once" && answer["action"] == "accept" {
                return ok(id, text(format!("hello {}", answer["content"]["name"])));
            }
            ok(
                id,
                json!({"resultType": "input_required", "requestState": "asked-once",
                    "inputRequests": {"name": {"method": "elicitation/create", "params": {
                        "mode": "form", "message": "Your name?",
                        "requestedSchema": {"type": "object",
                            "properties": {"name": {"type": "string"}}}}}}}),
            )
        }
        _ => ok(id, text(args.to_string())),
    }
}

/// The legacy endpoint's extras (with the `sessions` knob): the answer to a client's response,
/// tool `ask` (an `elicitation/create` on its response stream, then the result), and
/// `logging/setLevel` / `resources/subscribe`. `None`: the plain test endpoint answers.
pub(crate) async fn legacy(s: &TestServer, body: &str) -> Option<Response> {
    let request = serde_json::from_str::<Value>(body).ok()?;
    let id = request.get("id").cloned()?;
    let Some(method) = request["method"].as_str() else {
        let waiter = s.eras.waiting.lock().unwrap().remove(&id.to_string());
        if let Some(w) = waiter {
            let _ = w.send(request.clone());
        }
        return Some(StatusCode::ACCEPTED.into_response());
    };
    match (method, request["params"]["name"].as_str()) {
        ("tools/call", Some("ask")) => {
            let server_id = {
                let mut n = s.eras.next.lock().unwrap();
                *n += 1;
                format!("srv-{n}")
            };
            let (wtx, wrx) = oneshot::channel();
            s.eras
                .waiting
                .lock()
                .unwrap()
                .insert(json!(server_id).to_string(), wtx);
            let ask = json!({"jsonrpc": "2.0", "id": server_id, "method": "elicitation/create",
                "params": {"message": "Your name?", "requestedSchema": {"type": "object",
                    "properties": {"name": {"type": "string"}}}}});
            let (tx, rx) = mpsc::channel(4);
            tokio::spawn(async move {
                let answer = tokio::time::timeout(Duration::from_secs(30), wrx).await;
                let text = match answer {
                    Ok(Ok(a)) if a["result"]["action"] == "accept" => {
                        format!("hello {}", a["result"]["content"]["name"])
                    }
                    Ok(Ok(a)) => format!("no name: {a}"),
                    _ => "no answer".to_owned(),
                };
                let result = json!({"jsonrpc": "2.0", "id": id,
                    "result": {"content": [{"type": "text", "text": text}]}});
                let _ = tx.send(result.to_string()).await;
            });
            Some(sse(vec![ask.to_string()], rx))
        }
        ("logging/setLevel" | "resources/subscribe" | "resources/unsubscribe", _) => {
            Some(ok(&id, json!({})))
        }
        _ => None,
    }
}

/// The legacy GET stream of a session: every notification sent with [`TestServer::notify`].
pub(crate) fn legacy_stream(s: &TestServer) -> Response {
    let (tx, rx) = mpsc::channel(16);
    s.eras.streams.lock().unwrap().push((None, tx));
    sse(Vec::new(), rx)
}
