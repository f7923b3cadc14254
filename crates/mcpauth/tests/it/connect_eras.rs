//! `mcpauth connect --protocol`: a legacy (2025-11-25) client on a stateless 2026-07-28 server,
//! and a 2026-07-28 client on a legacy server (MCP 2026-07-28 "Versioning" §Backward
//! Compatibility), against the test endpoint in each era.

use std::time::Duration;

use mcpauth_testkit::{Era, Knobs, Received, TestServer};
use serde_json::{Value, json};

use crate::common::LIMIT;
use crate::connect::{Proxy, headless};

const MODERN: &str = "2026-07-28";

fn meta(extra: Value) -> Value {
    let mut m = json!({
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}},
        "io.modelcontextprotocol/clientInfo": {"name": "modern-client", "version": "1"},
    });
    if let Some(o) = extra.as_object() {
        for (k, v) in o {
            m[k] = v.clone();
        }
    }
    m
}

/// The messages the server received with this method.
fn received(server: &TestServer, method: &str) -> Vec<Received> {
    server
        .mcp_messages()
        .into_iter()
        .filter(|(_, m)| m["method"] == method)
        .collect()
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

impl Proxy {
    /// Reads stdout until a message matches, skipping others.
    async fn recv_matching(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        tokio::time::timeout(LIMIT, async {
            loop {
                let m = self.recv().await;
                if pred(&m) {
                    return m;
                }
            }
        })
        .await
        .expect("no matching message")
    }
}

/// Waits until `check` holds (the server side of a stream is set up asynchronously).
async fn until(check: impl Fn() -> bool) {
    tokio::time::timeout(LIMIT, async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("condition never held");
}

#[tokio::test]
async fn versioning_a_2025_11_25_client_reaches_a_stateless_2026_07_28_server() {
    let (server, _home, mut p) = headless(
        Knobs {
            era: Era::Modern,
            ..Default::default()
        },
        &[],
    )
    .await;
    // initialize is refused with -32022 (a modern-only server), so the bridge asks
    // server/discover and answers initialize from it, in the client's version.
    let init = p
        .request(
            json!(1),
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {"elicitation": {}},
                "clientInfo": {"name": "legacy-client", "version": "3"}}),
        )
        .await;
    let r = &init["result"];
    assert_eq!(r["protocolVersion"], "2025-06-18", "{init}");
    assert_eq!(r["serverInfo"]["name"], "testkit-modern");
    assert_eq!(r["instructions"], "a test server");
    assert_eq!(r["capabilities"]["tools"]["listChanged"], true);
    let (headers, discover) = received(&server, "server/discover").remove(0);
    assert_eq!(header(&headers, "mcp-method"), Some("server/discover"));
    let m = &discover["params"]["_meta"];
    assert_eq!(
        m["io.modelcontextprotocol/clientInfo"]["name"],
        "legacy-client"
    );
    assert_eq!(
        m["io.modelcontextprotocol/clientCapabilities"],
        json!({"elicitation": {}})
    );

    // notifications/initialized stays here; the list-change stream opens instead.
    p.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .await;
    until(|| server.open_streams() == 1).await;
    let (_, listen) = received(&server, "subscriptions/listen").remove(0);
    assert_eq!(
        listen["params"]["notifications"],
        json!({"toolsListChanged": true, "resourcesListChanged": true})
    );

    // ping and logging/setLevel no longer exist on the server: the bridge answers them.
    let pong = p.request(json!(2), "ping", json!({})).await;
    assert_eq!(pong["result"], json!({}));
    let level = p
        .request(json!(3), "logging/setLevel", json!({"level": "debug"}))
        .await;
    assert_eq!(level["result"], json!({}));

    // Tools with an invalid x-mcp-header are left out (Streamable HTTP §Schema Extension).
    let tools = p.request(json!(4), "tools/list", json!({})).await;
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["echo", "ask", "sql"], "{tools}");

    // Per-request _meta added (the client's own keys kept), x-mcp-header mirrored, base64 when
    // the value is not plain ASCII; the server checks the headers against the body.
    let echo = p
        .request(
            json!(5),
            "tools/call",
            json!({"name": "echo", "arguments": {"a": 1}, "_meta": {"progressToken": "p1"}}),
        )
        .await;
    assert!(echo.get("result").is_some(), "{echo}");
    let (headers, call) = received(&server, "tools/call").remove(0);
    assert_eq!(header(&headers, "mcp-name"), Some("echo"));
    assert_eq!(header(&headers, "mcp-protocol-version"), Some(MODERN));
    let m = &call["params"]["_meta"];
    assert_eq!(m["progressToken"], "p1");
    assert_eq!(m["io.modelcontextprotocol/protocolVersion"], MODERN);
    assert_eq!(m["io.modelcontextprotocol/logLevel"], "debug");
    let sql = p
        .request(
            json!(6),
            "tools/call",
            json!({"name": "sql", "arguments": {"region": "Zürich", "query": "q"}}),
        )
        .await;
    assert_eq!(
        sql["result"]["content"][0]["text"], "ran in \"Zürich\"",
        "{sql}"
    );
    let (headers, _) = received(&server, "tools/call").remove(1);
    assert_eq!(
        header(&headers, "mcp-param-region"),
        Some("=?base64?WsO8cmljaA==?=")
    );

    // input_required becomes an elicitation/create request to the client, then the retry.
    p.send(json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": "ask", "arguments": {}}}))
        .await;
    let ask = p.recv().await;
    assert_eq!(ask["method"], "elicitation/create", "{ask}");
    assert_eq!(ask["params"]["message"], "Your name?");
    p.send(json!({"jsonrpc": "2.0", "id": ask["id"],
        "result": {"action": "accept", "content": {"name": "Ada"}}}))
        .await;
    let done = p.recv().await;
    assert_eq!(done["id"], 7, "{done}");
    assert_eq!(done["result"]["content"][0]["text"], "hello \"Ada\"");
    let calls = received(&server, "tools/call");
    let (retry_id, first_id) = (&calls[3].1["id"], &calls[2].1["id"]);
    assert_ne!(retry_id, first_id, "MRTR: the retry is a new request");
    assert_eq!(calls[3].1["params"]["requestState"], "asked-once");

    // Server notifications on the listen stream reach the client.
    server.notify(json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}));
    let n = p
        .recv_matching(|m| m["method"] == "notifications/tools/list_changed")
        .await;
    assert!(n.get("id").is_none());

    // resources/subscribe reopens the stream with the URI.
    let sub = p
        .request(json!(8), "resources/subscribe", json!({"uri": "file:///a"}))
        .await;
    assert_eq!(sub["result"], json!({}));
    until(|| {
        received(&server, "subscriptions/listen")
            .iter()
            .any(|(_, l)| {
                l["params"]["notifications"]["resourceSubscriptions"] == json!(["file:///a"])
            })
    })
    .await;
    until(|| server.open_streams() == 1).await;
    server.notify(
        json!({"jsonrpc": "2.0", "method": "notifications/resources/updated",
        "params": {"uri": "file:///a"}}),
    );
    let updated = p
        .recv_matching(|m| m["method"] == "notifications/resources/updated")
        .await;
    assert_eq!(updated["params"]["uri"], "file:///a");

    assert!(received(&server, "notifications/initialized").is_empty());
    assert!(received(&server, "ping").is_empty());
    let (ok, rest) = p.finish().await;
    assert!(ok);
    assert!(
        rest.iter()
            .all(|l| serde_json::from_str::<Value>(l).is_ok()),
        "{rest:?}"
    );
}

#[tokio::test]
async fn versioning_a_2026_07_28_client_reaches_a_legacy_server() {
    let (server, _home, mut p) = headless(
        Knobs {
            sessions: true,
            get_stream: true,
            ..Default::default()
        },
        &[],
    )
    .await;
    // The first modern request gets a 404 without a modern error: a legacy server. The bridge
    // runs initialize with the client's capabilities and info, and answers server/discover.
    let discover = p
        .request(
            json!(1),
            "server/discover",
            json!({"_meta": meta(json!({}))}),
        )
        .await;
    let r = &discover["result"];
    assert_eq!(r["supportedVersions"], json!([MODERN]), "{discover}");
    assert_eq!(r["resultType"], "complete");
    assert_eq!(
        r["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "mcpauth-testkit"
    );
    assert_eq!(r["capabilities"]["tools"]["listChanged"], true);
    let (_, init) = received(&server, "initialize").remove(0);
    assert_eq!(init["params"]["protocolVersion"], "2025-11-25");
    assert_eq!(init["params"]["capabilities"], json!({"elicitation": {}}));
    assert_eq!(init["params"]["clientInfo"]["name"], "modern-client");
    assert_eq!(received(&server, "notifications/initialized").len(), 1);

    // Requests lose the per-request _meta and travel in the session; results become complete
    // 2026-07-28 results.
    let tools = p
        .request(
            json!(2),
            "tools/list",
            json!({"_meta": meta(json!({"progressToken": 9}))}),
        )
        .await;
    assert_eq!(tools["result"]["tools"][0]["name"], "echo");
    assert_eq!(tools["result"]["resultType"], "complete");
    assert_eq!(tools["result"]["ttlMs"], 0);
    assert_eq!(tools["result"]["cacheScope"], "private");
    let (headers, list) = received(&server, "tools/list").remove(0);
    assert_eq!(list["params"]["_meta"], json!({"progressToken": 9}));
    assert!(header(&headers, "mcp-session-id").is_some());
    assert_eq!(header(&headers, "mcp-protocol-version"), Some("2025-11-25"));

    // A server-initiated elicitation/create mid-call becomes input_required; the retry carries
    // the answer to the waiting server and gets the call's result.
    let first = p
        .request(
            json!(3),
            "tools/call",
            json!({"name": "ask", "arguments": {}, "_meta": meta(json!({}))}),
        )
        .await;
    let r = &first["result"];
    assert_eq!(r["resultType"], "input_required", "{first}");
    let (key, input) = r["inputRequests"]
        .as_object()
        .unwrap()
        .iter()
        .next()
        .unwrap();
    assert_eq!(input["method"], "elicitation/create");
    assert_eq!(input["params"]["message"], "Your name?");
    let state = r["requestState"].as_str().unwrap().to_owned();
    let done = p
        .request(
            json!(4),
            "tools/call",
            json!({"name": "ask", "arguments": {}, "requestState": state,
                "inputResponses": {key.as_str(): {"action": "accept", "content": {"name": "Ada"}}},
                "_meta": meta(json!({}))}),
        )
        .await;
    assert_eq!(
        done["result"]["content"][0]["text"], "hello \"Ada\"",
        "{done}"
    );
    assert_eq!(
        received(&server, "tools/call").len(),
        1,
        "the retry is not a new call"
    );
    let stale = p
        .request(
            json!(5),
            "tools/call",
            json!({"name": "ask", "requestState": state, "_meta": meta(json!({}))}),
        )
        .await;
    assert!(
        stale["error"]["message"]
            .as_str()
            .unwrap()
            .contains("requestState"),
        "a spent requestState is refused: {stale}"
    );

    // subscriptions/listen: acknowledged with what the server can do; the GET stream's
    // notifications come tagged with the subscription id; others are not sent.
    p.send(
        json!({"jsonrpc": "2.0", "id": 20, "method": "subscriptions/listen", "params": {
        "_meta": meta(json!({})),
        "notifications": {"toolsListChanged": true, "promptsListChanged": true}}}),
    )
    .await;
    let ack = p.recv().await;
    assert_eq!(
        ack["method"], "notifications/subscriptions/acknowledged",
        "{ack}"
    );
    assert_eq!(
        ack["params"]["notifications"],
        json!({"toolsListChanged": true})
    );
    assert_eq!(
        ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        20
    );
    until(|| server.open_streams() == 1).await;
    server.notify(json!({"jsonrpc": "2.0", "method": "notifications/prompts/list_changed"}));
    server.notify(json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}));
    let n = p.recv().await;
    assert_eq!(n["method"], "notifications/tools/list_changed", "{n}");
    assert_eq!(
        n["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        20
    );

    // _meta logLevel becomes logging/setLevel; an unknown modern version is refused with the
    // versions the bridge speaks.
    p.request(
        json!(6),
        "tools/list",
        json!({"_meta": meta(json!({"io.modelcontextprotocol/logLevel": "debug"}))}),
    )
    .await;
    let (_, set) = received(&server, "logging/setLevel").remove(0);
    assert_eq!(set["params"]["level"], "debug");
    let future = p
        .request(
            json!(7),
            "tools/list",
            json!({"_meta": {"io.modelcontextprotocol/protocolVersion": "2099-01-01"}}),
        )
        .await;
    assert_eq!(future["error"]["code"], -32022);
    assert_eq!(future["error"]["data"]["supported"], json!([MODERN]));
    assert!(p.finish().await.0);
}

#[tokio::test]
async fn versioning_modern_on_both_sides_passes_through_with_the_wire_headers() {
    let (server, _home, mut p) = headless(
        Knobs {
            era: Era::Modern,
            ..Default::default()
        },
        &[],
    )
    .await;
    let tools = p
        .request(json!(1), "tools/list", json!({"_meta": meta(json!({}))}))
        .await;
    assert_eq!(tools["result"]["tools"].as_array().unwrap().len(), 3);
    let sql = p
        .request(
            json!(2),
            "tools/call",
            json!({"name": "sql", "arguments": {"region": "eu-west-1"}, "_meta": meta(json!({}))}),
        )
        .await;
    assert_eq!(sql["result"]["content"][0]["text"], "ran in \"eu-west-1\"");
    // MRTR passes through to a modern client untouched.
    let ask = p
        .request(
            json!(3),
            "tools/call",
            json!({"name": "ask", "arguments": {}, "_meta": meta(json!({}))}),
        )
        .await;
    assert_eq!(ask["result"]["resultType"], "input_required");
    assert!(received(&server, "server/discover").is_empty());

    // subscriptions/listen is relayed as the long stream it is; the client's stdio
    // notifications/cancelled becomes closing that stream (2026-07-28 "Cancellation").
    p.send(
        json!({"jsonrpc": "2.0", "id": "sub-1", "method": "subscriptions/listen",
        "params": {"_meta": meta(json!({})), "notifications": {"toolsListChanged": true}}}),
    )
    .await;
    let ack = p.recv().await;
    assert_eq!(
        ack["method"], "notifications/subscriptions/acknowledged",
        "{ack}"
    );
    until(|| server.open_streams() == 1).await;
    server.notify(json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}));
    let n = p.recv().await;
    assert_eq!(
        n["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        "sub-1"
    );
    p.send(
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": "sub-1"}}),
    )
    .await;
    until(|| server.open_streams() == 0).await;
    assert!(received(&server, "notifications/cancelled").is_empty());

    // A stream still open when the client leaves does not keep connect alive.
    p.send(
        json!({"jsonrpc": "2.0", "id": "sub-2", "method": "subscriptions/listen",
        "params": {"_meta": meta(json!({})), "notifications": {"toolsListChanged": true}}}),
    )
    .await;
    p.recv().await;
    assert!(p.finish().await.0);
}

#[tokio::test]
async fn versioning_protocol_native_bridges_without_trying_initialize() {
    let (server, _home, mut p) = headless(
        Knobs {
            era: Era::Modern,
            ..Default::default()
        },
        &["--protocol", "native"],
    )
    .await;
    p.initialize().await;
    let tools = p.request(json!(2), "tools/list", json!({})).await;
    assert_eq!(tools["result"]["tools"][0]["name"], "echo");
    assert!(received(&server, "initialize").is_empty());
    assert_eq!(received(&server, "server/discover").len(), 1);
    assert!(p.finish().await.0);
}

#[tokio::test]
async fn versioning_a_2026_07_28_client_reaches_a_2024_11_05_http_sse_server() {
    let (server, _home, mut p) = headless(
        Knobs {
            legacy_only: true,
            ..Default::default()
        },
        &[],
    )
    .await;
    // POST answers 405 without a modern error: legacy. The bridge's initialize falls back to
    // the HTTP+SSE transport, where every answer comes on the event stream.
    let discover = p
        .request(
            json!(1),
            "server/discover",
            json!({"_meta": meta(json!({}))}),
        )
        .await;
    assert_eq!(
        discover["result"]["supportedVersions"],
        json!([MODERN]),
        "{discover}"
    );
    let tools = p
        .request(json!(2), "tools/list", json!({"_meta": meta(json!({}))}))
        .await;
    assert_eq!(tools["result"]["tools"][0]["name"], "echo", "{tools}");
    assert_eq!(tools["result"]["resultType"], "complete");
    server.seen(|c| assert!(c.mcp_requests >= 3, "initialize, initialized, tools/list"));
    assert!(p.finish().await.0);
}
