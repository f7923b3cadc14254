//! The built-in demo MCP server of `mcpauth gateway --demo`: three tools (`echo`, `add`, `time`)
//! over Streamable HTTP with JSON answers, so a fresh machine has something to log in to.

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

const VERSIONS: &[&str] = &["2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26"];

fn tools() -> Value {
    json!([
        {"name": "echo", "description": "Returns its text argument.",
         "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}},
        {"name": "add", "description": "Adds two numbers.",
         "inputSchema": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]}},
        {"name": "time", "description": "The server's time, in seconds since the Unix epoch.",
         "inputSchema": {"type": "object"}}
    ])
}

fn text(s: String) -> Value {
    json!({"content": [{"type": "text", "text": s}]})
}

fn call(params: &Value) -> Result<Value, (i64, String)> {
    let args = &params["arguments"];
    match params["name"].as_str().unwrap_or_default() {
        "echo" => Ok(text(args["text"].as_str().unwrap_or_default().to_owned())),
        "add" => match (args["a"].as_f64(), args["b"].as_f64()) {
            (Some(a), Some(b)) => Ok(text((a + b).to_string())),
            _ => Err((-32602, "add needs numbers a and b".into())),
        },
        "time" => Ok(text(mcpauth_client::store::now_unix().to_string())),
        other => Err((-32602, format!("unknown tool {other:?}"))),
    }
}

/// Answers one JSON-RPC message (a notification gets 202).
pub async fn handle(body: Bytes) -> Response {
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        let e = json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32700, "message": "parse error"}});
        return (StatusCode::BAD_REQUEST, axum::Json(e)).into_response();
    };
    let Some(id) = request.get("id").cloned() else {
        return StatusCode::ACCEPTED.into_response();
    };
    let params = &request["params"];
    let result = match request["method"].as_str().unwrap_or_default() {
        "initialize" => {
            let asked = params["protocolVersion"].as_str().unwrap_or_default();
            let version = VERSIONS
                .iter()
                .find(|v| **v == asked)
                .copied()
                .unwrap_or("2025-11-25");
            Ok(json!({
                "protocolVersion": version,
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "mcpauth-demo", "version": env!("CARGO_PKG_VERSION")},
                "instructions": "A demo server behind mcpauth gateway: try the add tool.",
            }))
        }
        "ping" => Ok(json!({})),
        "tools/list" => Ok(json!({"tools": tools()})),
        "tools/call" => call(params),
        other => Err((-32601, format!("method {other:?} not found"))),
    };
    let answer = match result {
        Ok(r) => json!({"jsonrpc": "2.0", "id": id, "result": r}),
        Err((code, message)) => {
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
        }
    };
    axum::Json(answer).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_answer() {
        assert_eq!(
            call(&json!({"name": "add", "arguments": {"a": 2, "b": 3.5}})).unwrap()["content"][0]["text"],
            "5.5"
        );
        assert_eq!(
            call(&json!({"name": "echo", "arguments": {"text": "hi"}})).unwrap()["content"][0]["text"],
            "hi"
        );
        assert!(call(&json!({"name": "add", "arguments": {"a": "x"}})).is_err());
        assert!(call(&json!({"name": "rm"})).is_err());
    }
}
