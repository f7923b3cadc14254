//! The MCP handler every transport of the bench server shares.

use serde_json::{Value, json};

/// The JSON-RPC answer to `req` (a method-not-found error for anything but `initialize`,
/// `tools/list` and `tools/call`).
pub fn answer(req: &Value) -> Value {
    let id = req.get("id").cloned().unwrap_or(Value::Null);
    let result = match req["method"].as_str().unwrap_or_default() {
        "initialize" => json!({
            "protocolVersion": "2025-11-25",
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "mcpauth-bench", "version": "0.0.0"},
        }),
        "tools/list" => json!({"tools": [
            {"name": "echo", "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}}},
        ]}),
        "tools/call" => json!({"content": [{"type": "text",
            "text": req["params"]["arguments"]["text"].as_str().unwrap_or_default()}]}),
        _ => {
            return json!({"jsonrpc": "2.0", "id": id,
                "error": {"code": -32601, "message": "method not found"}});
        }
    };
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}
