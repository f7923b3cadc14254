//! One-shot MCP requests over Streamable HTTP, authenticated by an [`AuthenticatedClient`]: the
//! stateful 2025-11-25 wire (`initialize` handshake, SSE or JSON answers, `Mcp-Session-Id`) and
//! the stateless 2026-07-28 wire (no handshake; `MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`
//! headers and `_meta` on every request). For scripts, smoke tests and the conformance driver;
//! the long-lived proxy is `mcpauth connect`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::ClientError;
use crate::authed::AuthenticatedClient;
use crate::sse::SseParser;
use mcpauth_core::mcp_headers::{self, ToolHeaders};
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde_json::{Value, json};

/// The stateless protocol revision.
pub use mcpauth_core::mcp_headers::STATELESS;

fn mcp_error(method: &str, detail: impl Into<String>) -> ClientError {
    ClientError::Mcp {
        method: method.to_owned(),
        detail: detail.into(),
    }
}

/// An MCP client on one server URL.
#[derive(Debug)]
pub struct Mcp {
    client: AuthenticatedClient,
    url: String,
    /// The protocol version requested (stateful) or used (stateless).
    version: String,
    /// The version negotiated by `initialize` (stateful wire).
    negotiated: Mutex<Option<String>>,
    session_id: Mutex<Option<String>>,
    next_id: AtomicU64,
    /// The `x-mcp-header` parameters of the tools listed (stateless wire).
    tools: ToolHeaders,
}

impl Mcp {
    /// A client speaking `version`.
    pub fn new(client: AuthenticatedClient, url: String, version: String) -> Self {
        Self {
            client,
            url,
            version,
            negotiated: Mutex::new(None),
            session_id: Mutex::new(None),
            next_id: AtomicU64::new(1),
            tools: ToolHeaders::default(),
        }
    }

    /// Whether this is the stateless 2026-07-28 wire.
    pub fn stateless(&self) -> bool {
        self.version.as_str() >= STATELESS
    }

    fn client_info() -> Value {
        json!({"name": "mcpauth-conformance-client", "version": env!("CARGO_PKG_VERSION")})
    }

    /// Stateful wire: `initialize` then `notifications/initialized`. No-op when stateless.
    pub async fn initialize(&self) -> Result<(), ClientError> {
        if self.stateless() {
            return Ok(());
        }
        let result = self
            .request(
                "initialize",
                json!({
                    "protocolVersion": self.version,
                    "capabilities": {},
                    "clientInfo": Self::client_info(),
                }),
            )
            .await?;
        let version = result["protocolVersion"]
            .as_str()
            .ok_or_else(|| mcp_error("initialize", "the result has no protocolVersion"))?;
        *self.negotiated.lock().unwrap() = Some(version.to_owned());
        self.notify("notifications/initialized").await
    }

    fn with_meta(&self, mut params: Value) -> Value {
        if self.stateless() {
            params["_meta"] = json!({
                "io.modelcontextprotocol/protocolVersion": self.version,
                "io.modelcontextprotocol/clientCapabilities": {},
                "io.modelcontextprotocol/clientInfo": Self::client_info(),
            });
        }
        params
    }

    fn headers(&self, message: &Value) -> Vec<(String, String)> {
        let mut h = vec![
            (
                CONTENT_TYPE.as_str().to_owned(),
                "application/json".to_owned(),
            ),
            (
                ACCEPT.as_str().to_owned(),
                "application/json, text/event-stream".to_owned(),
            ),
        ];
        if self.stateless() {
            // MCP-Protocol-Version, Mcp-Method, Mcp-Name and Mcp-Param-*, encoded as the
            // 2026-07-28 Streamable HTTP §Request Metadata and §Value Encoding require.
            h.extend(mcp_headers::request_headers(message, &self.tools));
        } else if let Some(v) = self.negotiated.lock().unwrap().clone() {
            h.push(("mcp-protocol-version".to_owned(), v));
        }
        if let Some(id) = self.session_id.lock().unwrap().clone() {
            h.push(("mcp-session-id".to_owned(), id));
        }
        h
    }

    async fn post(&self, method: &str, message: &Value) -> Result<reqwest::Response, ClientError> {
        let headers = self.headers(message);
        let body = message.to_string();
        let response = self
            .client
            .send(|http| {
                let mut r = http.post(&self.url).body(body.clone());
                for (k, v) in &headers {
                    r = r.header(k, v);
                }
                r
            })
            .await?;
        if let Some(id) = response
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
        {
            *self.session_id.lock().unwrap() = Some(id.to_owned());
        }
        if !response.status().is_success() {
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            return Err(mcp_error(
                method,
                format!(
                    "HTTP {status}: {}",
                    text.chars().take(300).collect::<String>()
                ),
            ));
        }
        Ok(response)
    }

    /// Sends a notification (no answer expected beyond 202).
    pub async fn notify(&self, method: &str) -> Result<(), ClientError> {
        let params = self.with_meta(json!({}));
        let message = json!({"jsonrpc": "2.0", "method": method, "params": params});
        self.post(method, &message).await.map(drop)
    }

    /// Sends a request and returns its `result`.
    pub async fn request(&self, method: &str, params: Value) -> Result<Value, ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let params = self.with_meta(params);
        let message = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let mut response = self.post(method, &message).await?;
        let is_sse = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let message = if is_sse {
            let mut parser = SseParser::default();
            let mut pending = Vec::new();
            loop {
                if let Some(m) = response_to(&mut pending, id) {
                    break m;
                }
                match response
                    .chunk()
                    .await
                    .map_err(|e| mcp_error(method, e.to_string()))?
                {
                    Some(chunk) => pending.extend(
                        parser
                            .push(&chunk)
                            .map_err(|e| mcp_error(method, e.to_string()))?
                            .into_iter()
                            .filter_map(|e| serde_json::from_str::<Value>(&e.data).ok()),
                    ),
                    None => {
                        return Err(mcp_error(
                            method,
                            "the event stream ended without a response",
                        ));
                    }
                }
            }
        } else {
            response
                .json::<Value>()
                .await
                .map_err(|e| mcp_error(method, format!("the answer is not JSON: {e}")))?
        };
        if let Some(error) = message.get("error") {
            return Err(mcp_error(method, format!("JSON-RPC error {error}")));
        }
        let mut result = message["result"].clone();
        if self.stateless() && method == "tools/list" {
            // Mcp-Param-* of later calls; a tool with an invalid x-mcp-header is left out, as
            // clients MUST (Streamable HTTP §Schema Extension).
            for left_out in self.tools.learn(&mut result) {
                tracing::warn!(tool = %left_out.tool, "leaving out a tool with an invalid definition: {}", left_out.reason);
            }
        }
        Ok(result)
    }
}

/// Takes the response to request `id` out of `messages` (server requests and notifications on the
/// same stream are skipped).
fn response_to(messages: &mut Vec<Value>, id: u64) -> Option<Value> {
    messages
        .iter()
        .position(|m| m["id"] == id && (m.get("result").is_some() || m.get("error").is_some()))
        .map(|i| messages.swap_remove(i))
}
