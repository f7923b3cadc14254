//! One-shot MCP requests over Streamable HTTP, authenticated by an [`AuthenticatedClient`]: the
//! stateful 2025-11-25 wire (`initialize` handshake, SSE or JSON answers, `Mcp-Session-Id`) and
//! the stateless 2026-07-28 wire (no handshake; `MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`
//! headers and `_meta` on every request). For scripts, smoke tests and the conformance driver;
//! the long-lived proxy is `mcpauth connect`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::ClientError;
use crate::authed::AuthenticatedClient;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde_json::{Value, json};

/// The stateless protocol revision.
pub const STATELESS: &str = "2026-07-28";

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

    fn headers(&self, method: &str, params: &Value) -> Vec<(&'static str, String)> {
        let mut h = vec![
            (CONTENT_TYPE.as_str(), "application/json".to_owned()),
            (
                ACCEPT.as_str(),
                "application/json, text/event-stream".to_owned(),
            ),
        ];
        let version = if self.stateless() {
            Some(self.version.clone())
        } else {
            self.negotiated.lock().unwrap().clone()
        };
        if let Some(v) = version {
            h.push(("mcp-protocol-version", v));
        }
        if self.stateless() {
            h.push(("mcp-method", method.to_owned()));
            if let Some(name) = params["name"].as_str().or(params["uri"].as_str()) {
                h.push(("mcp-name", name.to_owned()));
            }
        }
        if let Some(id) = self.session_id.lock().unwrap().clone() {
            h.push(("mcp-session-id", id));
        }
        h
    }

    async fn post(
        &self,
        method: &str,
        params: &Value,
        body: String,
    ) -> Result<reqwest::Response, ClientError> {
        let headers = self.headers(method, params);
        let response = self
            .client
            .send(|http| {
                let mut r = http.post(&self.url).body(body.clone());
                for (k, v) in &headers {
                    r = r.header(*k, v);
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
        let body = json!({"jsonrpc": "2.0", "method": method, "params": params}).to_string();
        self.post(method, &params, body).await.map(drop)
    }

    /// Sends a request and returns its `result`.
    pub async fn request(&self, method: &str, params: Value) -> Result<Value, ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let params = self.with_meta(params);
        let body =
            json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string();
        let mut response = self.post(method, &params, body).await?;
        let is_sse = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let message = if is_sse {
            let mut events = SseReader::default();
            loop {
                if let Some(m) = events.next_response(id) {
                    break m;
                }
                match response
                    .chunk()
                    .await
                    .map_err(|e| mcp_error(method, e.to_string()))?
                {
                    Some(chunk) => events.push(&chunk),
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
        Ok(message["result"].clone())
    }
}

/// Incremental `text/event-stream` parsing (WHATWG HTML §9.2): `data:` lines joined per event.
#[derive(Default)]
struct SseReader {
    buffer: Vec<u8>,
    data: String,
    messages: Vec<Value>,
}

impl SseReader {
    fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
        while let Some(pos) = self.buffer.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buffer.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !self.data.is_empty() {
                    if let Ok(v) = serde_json::from_str(&self.data) {
                        self.messages.push(v);
                    }
                    self.data.clear();
                }
            } else if let Some(d) = line.strip_prefix("data:") {
                if !self.data.is_empty() {
                    self.data.push('\n');
                }
                self.data.push_str(d.strip_prefix(' ').unwrap_or(d));
            }
        }
    }

    fn next_response(&mut self, id: u64) -> Option<Value> {
        self.messages
            .iter()
            .position(|m| m["id"] == id && (m.get("result").is_some() || m.get("error").is_some()))
            .map(|i| self.messages.swap_remove(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_split_across_chunks() {
        let mut r = SseReader::default();
        r.push(b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/x\"}\n\nda");
        r.push(b"ta: {\"jsonrpc\":\"2.0\",\"id\":7,\r\ndata: \"result\":{}}\r\n\r\n");
        let m = r.next_response(7).unwrap();
        assert_eq!(m["result"], json!({}));
        assert!(r.next_response(8).is_none());
    }
}
