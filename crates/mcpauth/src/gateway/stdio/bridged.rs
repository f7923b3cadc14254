//! 2026-07-28 requests without a session, bridged to a legacy stdio server per user (MCP
//! 2026-07-28 "Versioning" §Backward Compatibility), and their `subscriptions/listen` streams.

use std::ffi::OsString;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::call::resume;
use super::child::Child;
use super::{StdioUpstream, futures_stream};
use crate::relay::bridge::{self, ClientProfile, Filter};
use mcpauth_core::mcp_headers::{self, STATELESS, ToolHeaders};

/// A 2026-07-28 request to the bridged process of its user.
pub(super) struct Bridged {
    pub(super) child: Arc<Child>,
    /// The request as the legacy server gets it.
    pub(super) message: Value,
    pub(super) method: String,
    /// The `x-mcp-header` parameters of the user's tools.
    pub(super) tools: Arc<ToolHeaders>,
}

/// A 2026-07-28 request without a session (MCP 2026-07-28 "Versioning" §Backward
/// Compatibility, bridged as `mcpauth connect` does): its user's process and the request as
/// that legacy server needs it, or the response when the gateway answers it itself. A process
/// it starts for `owner` gets `extra_env`.
pub(super) async fn bridged(
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
pub(super) fn listen(
    child: &Arc<Child>,
    init: &Value,
    id: Option<Value>,
    params: &Value,
) -> Response {
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
