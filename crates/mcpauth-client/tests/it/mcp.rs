//! One-shot MCP requests of `mcpauth_client::mcp` on the stateless 2026-07-28 wire, against the
//! testkit's modern endpoint (which checks every header against the body, 400 with -32020).

use std::sync::Arc;
use std::time::Duration;

use mcpauth_client::authed::AuthenticatedClient;
use mcpauth_client::authorize::Headless;
use mcpauth_client::http::{HttpOptions, OAuthHttp};
use mcpauth_client::mcp::{Mcp, STATELESS};
use mcpauth_client::session::{Grant, Session, SessionConfig};
use mcpauth_client::store::MemoryStore;
use mcpauth_testkit::{Era, Knobs, TestServer};
use serde_json::json;

const REDIRECT: &str = "http://127.0.0.1:53682/callback";

fn http() -> OAuthHttp {
    OAuthHttp::new(HttpOptions {
        timeout: Duration::from_secs(10),
        ..Default::default()
    })
    .unwrap()
}

/// A stateless MCP client of `server`, authorized by the code flow on first use.
fn modern_client(server: &TestServer) -> Mcp {
    let grant = Grant::AuthorizationCode(Arc::new(Headless::new(http(), REDIRECT)));
    let session = Arc::new(Session::new(
        SessionConfig::new(server.mcp_url(), grant),
        http(),
        Arc::new(MemoryStore::new()),
    ));
    let client = AuthenticatedClient::new(session, reqwest::Client::new());
    Mcp::new(client, server.mcp_url(), STATELESS.to_owned())
}

/// A tool name that is not plain ASCII travels in `Mcp-Name` with the `=?base64?…?=` sentinel
/// (MCP 2026-07-28 Streamable HTTP §Value Encoding); `x-mcp-header` parameters learned from
/// `tools/list` travel in `Mcp-Param-*`.
#[tokio::test]
async fn review7_a_tools_call_sends_a_sentinel_encoded_mcp_name() {
    let server = TestServer::start(Knobs {
        era: Era::Modern,
        ..Default::default()
    })
    .await;
    let mcp = modern_client(&server);
    let result = mcp
        .request("tools/call", json!({"name": "grüßen", "arguments": {}}))
        .await
        .unwrap();
    assert_eq!(result["content"][0]["text"], "{}");
    let sent = server.mcp_messages();
    let (headers, message) = sent.last().unwrap();
    assert_eq!(message["params"]["name"], "grüßen");
    assert!(
        headers.contains(&("mcp-name".to_owned(), "=?base64?Z3LDvMOfZW4=?=".to_owned())),
        "{headers:?}"
    );

    // The invalid tool is left out; the annotated parameter is mirrored, encoded.
    let list = mcp.request("tools/list", json!({})).await.unwrap();
    let names: Vec<&str> = list["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(!names.contains(&"broken"), "{names:?}");
    let result = mcp
        .request(
            "tools/call",
            json!({"name": "sql", "arguments": {"region": "Zürich", "query": "x"}}),
        )
        .await
        .unwrap();
    assert_eq!(result["content"][0]["text"], "ran in \"Zürich\"");
}
