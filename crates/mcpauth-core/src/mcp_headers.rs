//! HTTP headers of the stateless 2026-07-28 wire (MCP "Transports", Streamable HTTP §Request
//! Metadata, SEP-2243): `MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`, and `Mcp-Param-{Name}`
//! for tool parameters marked `x-mcp-header`, with the `=?base64?…?=` sentinel for values that
//! are not plain ASCII (§Value Encoding). Sans-I/O: the one implementation that the client
//! library (`mcpauth_client::mcp`) and the relay of `mcpauth connect` both send.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

/// The first stateless revision: no `initialize`; the version travels in each message's `_meta`.
pub const STATELESS: &str = "2026-07-28";

/// The `_meta` key carrying a request's protocol version.
pub const VERSION_KEY: &str = "io.modelcontextprotocol/protocolVersion";

/// The modern protocol version a message declares in `params._meta`, if any.
pub fn declared_version(message: &Value) -> Option<&str> {
    message["params"]["_meta"][VERSION_KEY]
        .as_str()
        .filter(|v| *v >= STATELESS)
}

/// A header value as sent: plain when it is visible ASCII (or inner spaces/tabs) without leading
/// or trailing whitespace, else `=?base64?…?=` of its UTF-8 (Streamable HTTP §Value Encoding);
/// plain values that look like the sentinel are encoded too.
pub fn header_value(value: &str) -> String {
    let visible = value
        .bytes()
        .all(|b| (0x20..=0x7e).contains(&b) || b == b'\t');
    let padded = value.starts_with([' ', '\t']) || value.ends_with([' ', '\t']);
    let sentinel = value.starts_with("=?base64?") && value.ends_with("?=");
    let plain = visible && !padded && !sentinel;
    if plain {
        value.to_owned()
    } else {
        format!("=?base64?{}?=", STANDARD.encode(value))
    }
}

/// A received header value as the text it stands for: the `=?base64?…?=` sentinel decoded (its
/// payload canonical base64 of UTF-8), any other value as it is (Streamable HTTP §Value
/// Encoding). `None` for a sentinel that does not decode, which then matches nothing.
pub fn decode_header_value(value: &str) -> Option<String> {
    let Some(payload) = value
        .strip_prefix("=?base64?")
        .and_then(|rest| rest.strip_suffix("?="))
    else {
        return Some(value.to_owned());
    };
    let bytes = STANDARD.decode(payload).ok()?;
    // Only the canonical spelling: the one `header_value` sends.
    if STANDARD.encode(&bytes) != payload {
        return None;
    }
    String::from_utf8(bytes).ok()
}

/// The `x-mcp-header` parameters of each tool seen in `tools/list`: header name and the chain of
/// `properties` keys leading to the parameter.
#[derive(Debug, Default)]
pub struct ToolHeaders {
    by_tool: Mutex<HashMap<String, Vec<Annotation>>>,
}

/// A tool that [`ToolHeaders::learn`] left out of a `tools/list` result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftOut {
    /// The tool's name.
    pub tool: String,
    /// Why its definition is invalid (Streamable HTTP §Schema Extension).
    pub reason: String,
}

/// One `x-mcp-header` annotation: the header name and the property path of the parameter.
type Annotation = (String, Vec<String>);

/// Why an `x-mcp-header` annotation makes a tool definition invalid (Streamable HTTP §Schema
/// Extension), or the annotations found.
fn annotations(schema: &Value) -> Result<Vec<Annotation>, String> {
    let mut found = Vec::new();
    walk(schema, &mut Vec::new(), true, &mut found)?;
    let mut seen = std::collections::HashSet::new();
    for (name, _) in &found {
        if !seen.insert(name.to_ascii_lowercase()) {
            return Err(format!(
                "x-mcp-header {name:?} is used twice (case-insensitively)"
            ));
        }
    }
    Ok(found)
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

fn walk(
    schema: &Value,
    path: &mut Vec<String>,
    reachable: bool,
    found: &mut Vec<Annotation>,
) -> Result<(), String> {
    let Some(object) = schema.as_object() else {
        if let Some(items) = schema.as_array() {
            for item in items {
                walk(item, path, false, found)?;
            }
        }
        return Ok(());
    };
    if let Some(header) = object.get("x-mcp-header") {
        let name = header
            .as_str()
            .ok_or("x-mcp-header is not a string".to_owned())?;
        if name.is_empty() || !name.chars().all(is_tchar) {
            return Err(format!("x-mcp-header {name:?} is not an HTTP field name"));
        }
        if !reachable || path.is_empty() {
            return Err(format!(
                "x-mcp-header {name:?} is not on a parameter reachable through properties only"
            ));
        }
        let primitive = matches!(
            object.get("type").and_then(Value::as_str),
            Some("string" | "integer" | "boolean")
        );
        if !primitive {
            return Err(format!(
                "x-mcp-header {name:?} is on a parameter that is not a string, integer or boolean"
            ));
        }
        found.push((name.to_owned(), path.clone()));
    }
    for (key, value) in object {
        if key == "properties" {
            if let Some(props) = value.as_object() {
                for (prop, sub) in props {
                    path.push(prop.clone());
                    walk(sub, path, reachable, found)?;
                    path.pop();
                }
            }
        } else if key != "x-mcp-header" && (value.is_object() || value.is_array()) {
            walk(value, path, false, found)?;
        }
    }
    Ok(())
}

impl ToolHeaders {
    /// Records the annotations of a `tools/list` result and removes the tools whose annotations
    /// are invalid (clients MUST exclude them). Returns the tools removed: the result changed
    /// when there are any.
    pub fn learn(&self, result: &mut Value) -> Vec<LeftOut> {
        let mut left_out = Vec::new();
        let Some(tools) = result["tools"].as_array_mut() else {
            return left_out;
        };
        let mut map = self.by_tool.lock().unwrap_or_else(PoisonError::into_inner);
        tools.retain(|tool| {
            let name = tool["name"].as_str().unwrap_or_default().to_owned();
            match annotations(&tool["inputSchema"]) {
                Ok(found) => {
                    if found.is_empty() {
                        map.remove(&name);
                    } else {
                        map.insert(name, found);
                    }
                    true
                }
                Err(reason) => {
                    map.remove(&name);
                    left_out.push(LeftOut { tool: name, reason });
                    false
                }
            }
        });
        left_out
    }

    /// `Mcp-Param-{Name}` headers of a `tools/call` request; a parameter absent or `null` in the
    /// arguments has no header.
    fn params(&self, message: &Value) -> Vec<(String, String)> {
        let Some(tool) = message["params"]["name"].as_str() else {
            return Vec::new();
        };
        let map = self.by_tool.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(found) = map.get(tool) else {
            return Vec::new();
        };
        let mut headers = Vec::new();
        for (name, path) in found {
            let mut value = &message["params"]["arguments"];
            for key in path {
                value = &value[key.as_str()];
            }
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Bool(b) => b.to_string(),
                Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
                _ => continue,
            };
            headers.push((format!("mcp-param-{name}"), header_value(&text)));
        }
        headers
    }
}

/// The headers a 2026-07-28 request carries, derived from the message itself: nothing for a
/// message that declares no modern version in `_meta`.
pub fn request_headers(message: &Value, tools: &ToolHeaders) -> Vec<(String, String)> {
    let Some(version) = declared_version(message) else {
        return Vec::new();
    };
    let mut h = vec![("mcp-protocol-version".to_owned(), version.to_owned())];
    let Some(method) = message["method"].as_str() else {
        return h;
    };
    h.push(("mcp-method".to_owned(), method.to_owned()));
    let params = &message["params"];
    let name = match method {
        "tools/call" | "prompts/get" => params["name"].as_str(),
        "resources/read" => params["uri"].as_str(),
        _ => None,
    };
    if let Some(n) = name {
        h.push(("mcp-name".to_owned(), header_value(n)));
    }
    if method == "tools/call" {
        h.extend(tools.params(message));
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shttp_value_encoding_examples() {
        assert_eq!(header_value("us-west1"), "us-west1");
        assert_eq!(
            header_value("Hello, 世界"),
            "=?base64?SGVsbG8sIOS4lueVjA==?="
        );
        assert_eq!(header_value(" padded "), "=?base64?IHBhZGRlZCA=?=");
        // Decoding is the inverse, and a client may encode any value.
        for v in [
            "eu",
            " padded ",
            "line1\nline2",
            "=?base64?literal?=",
            "Hello, 世界",
        ] {
            assert_eq!(decode_header_value(&header_value(v)).as_deref(), Some(v));
        }
        assert_eq!(
            decode_header_value("=?base64?ZXU=?=").as_deref(),
            Some("eu")
        );
        assert_eq!(
            decode_header_value("=?base64?ZXU?=").as_deref(),
            None,
            "not canonical"
        );
        assert_eq!(
            decode_header_value("=?base64?/w==?=").as_deref(),
            None,
            "not UTF-8"
        );
        assert_eq!(header_value("line1\nline2"), "=?base64?bGluZTEKbGluZTI=?=");
        assert_eq!(
            header_value("=?base64?literal?="),
            "=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?="
        );
    }

    #[test]
    fn stateless_messages_get_their_headers() {
        let tools = ToolHeaders::default();
        let m = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "t",
            "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}});
        let h = request_headers(&m, &tools);
        assert_eq!(
            h,
            vec![
                ("mcp-protocol-version".to_owned(), "2026-07-28".to_owned()),
                ("mcp-method".to_owned(), "tools/call".to_owned()),
                ("mcp-name".to_owned(), "t".to_owned())
            ]
        );
        let old = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}});
        assert!(request_headers(&old, &tools).is_empty());
    }

    #[test]
    fn shttp_x_mcp_header_parameters_are_mirrored() {
        let tools = ToolHeaders::default();
        let mut list = json!({"tools": [
            {"name": "sql", "inputSchema": {"type": "object", "properties": {
                "region": {"type": "string", "x-mcp-header": "Region"},
                "opts": {"type": "object", "properties": {
                    "dry": {"type": "boolean", "x-mcp-header": "Dry"}}},
                "limit": {"type": "integer", "x-mcp-header": "Limit"},
                "query": {"type": "string"}}}},
            {"name": "plain", "inputSchema": {"type": "object"}}]});
        assert!(tools.learn(&mut list).is_empty());
        let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
            "name": "sql", "arguments": {"region": "eu 1 ", "opts": {"dry": true}, "limit": null,
            "query": "x"},
            "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}});
        let h = request_headers(&call, &tools);
        assert!(h.contains(&(
            "mcp-param-Region".to_owned(),
            "=?base64?ZXUgMSA=?=".to_owned()
        )));
        assert!(h.contains(&("mcp-param-Dry".to_owned(), "true".to_owned())));
        assert!(
            !h.iter().any(|(k, _)| k == "mcp-param-Limit"),
            "null: no header"
        );
    }

    #[test]
    fn shttp_invalid_x_mcp_header_tools_are_left_out() {
        let tools = ToolHeaders::default();
        let mut list = json!({"tools": [
            {"name": "in-array", "inputSchema": {"type": "object", "properties": {"xs": {
                "type": "array", "items": {"type": "string", "x-mcp-header": "X"}}}}},
            {"name": "number", "inputSchema": {"type": "object", "properties": {
                "n": {"type": "number", "x-mcp-header": "N"}}}},
            {"name": "twice", "inputSchema": {"type": "object", "properties": {
                "a": {"type": "string", "x-mcp-header": "A"},
                "b": {"type": "string", "x-mcp-header": "a"}}}},
            {"name": "bad-name", "inputSchema": {"type": "object", "properties": {
                "a": {"type": "string", "x-mcp-header": "A B"}}}},
            {"name": "in-oneof", "inputSchema": {"oneOf": [{"type": "object", "properties": {
                "a": {"type": "string", "x-mcp-header": "A"}}}]}},
            {"name": "fine", "inputSchema": {"type": "object", "properties": {
                "a": {"type": "string", "x-mcp-header": "A"}}}}]});
        let left_out: Vec<String> = tools.learn(&mut list).into_iter().map(|l| l.tool).collect();
        assert_eq!(
            left_out,
            ["in-array", "number", "twice", "bad-name", "in-oneof"]
        );
        let names: Vec<&str> = list["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["fine"]);
    }
}
