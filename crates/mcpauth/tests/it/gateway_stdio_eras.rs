//! 2026-07-28 clients on a stdio server through the gateway's bridge (issue 13 defect C).

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::LIMIT;
use crate::gateway_stdio::*;

/// Issue 13 defect C (MCP 2026-07-28 "Versioning" §Backward Compatibility, as `mcpauth connect`
/// bridges): a 2026-07-28 client uses a stdio server without `initialize` or a session. The
/// gateway initializes one process per user itself, answers `server/discover` from its
/// `InitializeResult`, takes the per-request `_meta` out, and completes the results
/// (`resultType`, SEP-2322), the client's ids kept.
#[tokio::test]
async fn issue13_a_2026_07_28_client_uses_a_stdio_server_without_a_session() {
    let gw = StdioGateway::start(&["alice-bot", "bob-bot"], &[], "", &[]).await;
    let stateless = |user: usize, id: u64, method: &str, params: Value| {
        let mut params = params;
        let meta = json!({
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "modern", "version": "0"},
            "io.modelcontextprotocol/logLevel": "debug",
        });
        for (key, value) in meta.as_object().unwrap() {
            if params["_meta"].get(key).is_none() {
                params["_meta"][key] = value.clone();
            }
        }
        let name = params["name"].as_str().map(str::to_owned);
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let mut request = gw
            .post(user, None, body)
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", method);
        if let Some(name) = name {
            request = request.header("mcp-name", name);
        }
        request.send()
    };
    let discover = stateless(0, 1, "server/discover", json!({})).await.unwrap();
    assert_eq!(discover.status(), 200);
    assert!(discover.headers().get("mcp-session-id").is_none());
    let discover: Value = discover.json().await.unwrap();
    assert_eq!(discover["id"], 1);
    assert_eq!(
        discover["result"]["supportedVersions"],
        json!(["2026-07-28"])
    );
    assert!(discover["result"]["capabilities"]["tools"].is_object());
    assert_eq!(
        discover["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "py"
    );
    let mut pids = Vec::new();
    for (user, id) in [(0, 2), (0, 3), (1, 4)] {
        let call = stateless(
            user,
            id,
            "tools/call",
            json!({"name": "pid", "arguments": {}}),
        )
        .await
        .unwrap();
        assert_eq!(call.status(), 200);
        assert!(call.headers().get("mcp-session-id").is_none());
        let call: Value = call.json().await.unwrap();
        assert_eq!(call["id"], id);
        assert_eq!(call["result"]["resultType"], "complete");
        pids.push(
            call["result"]["content"][0]["text"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(pids[0], pids[1], "one process per user");
    // SEP-2243 (Streamable HTTP §Standard MCP Request Headers): the headers must match the body.
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {}});
    for (method, name) in [("tools/list", "pid"), ("tools/call", "env")] {
        let call = json!({"jsonrpc": "2.0", "id": 12, "method": "tools/call",
            "params": {"name": "pid", "arguments": {}, "_meta": meta}});
        let refused = gw
            .post(0, None, call)
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", method)
            .header("mcp-name", name)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 400);
        let refused: Value = refused.json().await.unwrap();
        assert_eq!(refused["error"]["code"], -32020, "HeaderMismatch");
    }
    // Once `tools/list` told it, `x-mcp-header` parameters must be mirrored too (§Custom
    // Headers).
    let list: Value = stateless(0, 13, "tools/list", json!({}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["result"]["tools"][0]["name"], "pid");
    let in_eu = json!({"name": "pid", "arguments": {"region": "eu"}});
    let unmirrored = stateless(0, 14, "tools/call", in_eu.clone()).await.unwrap();
    assert_eq!(unmirrored.status(), 400);
    let mut call = in_eu;
    call["_meta"] = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {}});
    let mirrored = gw
        .post(
            0,
            None,
            json!({"jsonrpc": "2.0", "id": 15, "method": "tools/call", "params": call}),
        )
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "pid")
        .header("mcp-param-region", "eu")
        .send()
        .await
        .unwrap();
    assert_eq!(mirrored.status(), 200);
    // §Value Encoding: a client may send any value base64-encoded; the server decodes it before
    // comparing ("eu" here), and a sentinel that does not decode is a mismatch.
    for (sent, status) in [
        ("=?base64?ZXU=?=", 200),
        ("=?base64?ZXU?=", 400),
        ("=?base64?ZXM=?=", 400),
    ] {
        let mut call = json!({"name": "pid", "arguments": {"region": "eu"}});
        call["_meta"] = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {}});
        let answer = gw
            .post(
                0,
                None,
                json!({"jsonrpc": "2.0", "id": 16, "method": "tools/call", "params": call}),
            )
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "tools/call")
            .header("mcp-name", "pid")
            .header("mcp-param-region", sent)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), status, "Mcp-Param-Region: {sent}");
    }
    let level: Value = stateless(
        0,
        5,
        "tools/call",
        json!({"name": "level", "arguments": {}}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(
        level["result"]["content"][0]["text"], "debug",
        "the _meta log level became logging/setLevel"
    );
    assert_ne!(pids[0], pids[2], "S12: not shared between users");
    assert_eq!(gw.children().len(), 2);

    // MCP 2026-07-28 "Multi Round-Trip Requests": the server's sampling request in the middle
    // of a call ends the call's stream with an `input_required` result; the retry carries the
    // answer back to the waiting server and gets the call's result.
    let call = json!({"name": "sample", "arguments": {}, "_meta": {"progressToken": "p-6"}});
    let mut stream = stateless(0, 6, "tools/call", call.clone()).await.unwrap();
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let mut buffer = String::new();
    let mut events = Vec::new();
    while let Some(event) = next_event(&mut stream, &mut buffer).await {
        events.push(event);
    }
    let methods: Vec<&Value> = events.iter().map(|e| &e["method"]).collect();
    assert_eq!(
        methods,
        [
            &json!("notifications/progress"),
            &json!("notifications/message"),
            &Value::Null
        ]
    );
    let last = events.pop().unwrap();
    assert_eq!(last["id"], 6);
    let interim = &last["result"];
    assert_eq!(interim["resultType"], "input_required");
    let (key, request) = interim["inputRequests"]
        .as_object()
        .unwrap()
        .iter()
        .next()
        .unwrap();
    assert_eq!(request["method"], "sampling/createMessage");
    let mut retry = call;
    retry["requestState"] = interim["requestState"].clone();
    retry["inputResponses"] = json!({key: {"role": "assistant", "model": "m", "content": {"type": "text", "text": "sampled"}}});
    // S12: the requestState is alice's; bob cannot resume her call.
    let stolen = stateless(1, 7, "tools/call", retry.clone()).await.unwrap();
    assert_eq!(stolen.status(), 400);
    let done = stateless(0, 8, "tools/call", retry).await.unwrap();
    assert_eq!(done.status(), 200);
    let done: Value = done.json().await.unwrap();
    assert_eq!(done["id"], 8);
    assert_eq!(done["result"]["content"][0]["text"], "sampled");

    // 2026-07-28 "Subscriptions": `subscriptions/listen` opens a stream that is acknowledged and
    // gets the list changes asked for, tagged with its id; they go nowhere else.
    let listen = json!({"notifications": {"toolsListChanged": true, "promptsListChanged": true}});
    let mut subscription = stateless(0, 10, "subscriptions/listen", listen)
        .await
        .unwrap();
    assert_eq!(subscription.headers()["content-type"], "text/event-stream");
    let mut buffer = String::new();
    let ack = next_event(&mut subscription, &mut buffer).await.unwrap();
    assert_eq!(ack["method"], "notifications/subscriptions/acknowledged");
    assert_eq!(
        ack["params"]["notifications"],
        json!({"toolsListChanged": true}),
        "the server cannot tell prompt list changes"
    );
    let change = stateless(
        0,
        11,
        "tools/call",
        json!({"name": "change", "arguments": {}}),
    )
    .await
    .unwrap();
    assert_eq!(change.headers()["content-type"], "application/json");
    let changed = next_event(&mut subscription, &mut buffer).await.unwrap();
    assert_eq!(changed["method"], "notifications/tools/list_changed");
    assert_eq!(
        changed["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        10
    );
    // "Subscriptions" §Cancellation: notifications/cancelled naming it ends the stream.
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 10,
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}});
    let cancelled = gw
        .post(0, None, cancel)
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "notifications/cancelled")
        .send()
        .await
        .unwrap();
    assert_eq!(cancelled.status(), 202);
    assert!(next_event(&mut subscription, &mut buffer).await.is_none());

    // notifications/cancelled names the request by the client's id; the server knows it by
    // the gateway's.
    let cancellable = stateless(
        0,
        16,
        "tools/call",
        json!({"name": "cancellable", "arguments": {}}),
    );
    let cancellable = tokio::spawn(cancellable);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 16,
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}});
    let cancelled = gw
        .post(0, None, cancel)
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "notifications/cancelled")
        .send()
        .await
        .unwrap();
    assert_eq!(cancelled.status(), 202);
    let named: Value = tokio::time::timeout(LIMIT, cancellable)
        .await
        .unwrap()
        .unwrap()
        .unwrap()
        .json()
        .await
        .unwrap();
    let named = named["result"]["content"][0]["text"].as_str().unwrap();
    assert!(named.starts_with("\"mcpauth-"), "{named}");

    // 2026-07-28: log messages reach only a request whose `_meta` asked for them (logLevel).
    let quiet = json!({"name": "sample", "arguments": {},
        "_meta": {"progressToken": "p-9", "io.modelcontextprotocol/logLevel": null}});
    let mut stream = stateless(0, 9, "tools/call", quiet).await.unwrap();
    let mut buffer = String::new();
    let progress = next_event(&mut stream, &mut buffer).await.unwrap();
    assert_eq!(progress["params"]["progressToken"], "p-9");
    let interim = next_event(&mut stream, &mut buffer).await.unwrap();
    assert_eq!(interim["result"]["resultType"], "input_required");
}

/// Security finding 3 (MCP SPEC C33): one user cannot start stdio server processes without
/// end, nor can all users together; past a cap the gateway answers 429 (RFC 6585 §4) with a
/// JSON-RPC error naming the limit, and starts no process. DELETE frees the slot.
/// MCP 2026-07-28 Streamable HTTP §Protocol Version Header and the request `_meta`, for requests
/// the gateway bridges onto a stdio server: a request its header declares 2026-07-28 must carry
/// the version and the client's capabilities in `_meta` (else 400, -32602); a header that
/// disagrees with `_meta` is a HeaderMismatch (400, -32020) whatever the version; a method the
/// server does not implement, or one 2026-07-28 removed, is 404 with -32601. The legacy process
/// learns the capabilities each request declares at its `initialize`.
#[tokio::test]
async fn issue13_a_bridged_2026_07_28_request_is_validated_and_its_errors_carry_their_status() {
    let gw = StdioGateway::start(&["alice-bot"], &[], "", &[]).await;
    let full = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "modern", "version": "0"},
    });
    let send = |id: u64, method: &str, params: Value| {
        let name = params["name"].as_str().unwrap_or_default().to_owned();
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let request = gw
            .post(0, None, body)
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", method);
        match name.as_str() {
            "" => request,
            _ => request.header("mcp-name", name),
        }
        .send()
    };
    let answer = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        (status, body["error"]["code"].clone(), body["id"].clone())
    };
    let mut no_caps = full.clone();
    no_caps
        .as_object_mut()
        .unwrap()
        .remove("io.modelcontextprotocol/clientCapabilities");
    let mut no_version = full.clone();
    no_version
        .as_object_mut()
        .unwrap()
        .remove("io.modelcontextprotocol/protocolVersion");
    for (id, params) in [
        (101, json!({})),
        (102, json!({"_meta": no_version})),
        (104, json!({"_meta": no_caps})),
    ] {
        let got = answer(send(id, "server/discover", params).await.unwrap()).await;
        assert_eq!(got, (400, json!(-32602), json!(id)), "invalid _meta {id}");
    }
    let mut other_version = full.clone();
    other_version["io.modelcontextprotocol/protocolVersion"] = json!("v999.0.0");
    let got = answer(
        send(105, "server/discover", json!({"_meta": other_version}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        got,
        (400, json!(-32020), json!(105)),
        "HeaderMismatch first"
    );
    let got = answer(
        send(106, "nothing/here", json!({"_meta": full}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(got, (404, json!(-32601), json!(106)), "the server's -32601");
    for (id, removed) in [
        (107, "initialize"),
        (108, "ping"),
        (109, "logging/setLevel"),
        (110, "resources/subscribe"),
        (111, "resources/unsubscribe"),
    ] {
        let got = answer(send(id, removed, json!({"_meta": full})).await.unwrap()).await;
        assert_eq!(got, (404, json!(-32601), json!(id)), "{removed} is gone");
    }
    // The capabilities each request declares are those its legacy process was initialized with.
    for caps in [json!({}), json!({"sampling": {}}), json!({})] {
        let mut meta = full.clone();
        meta["io.modelcontextprotocol/clientCapabilities"] = caps.clone();
        let call = send(
            112,
            "tools/call",
            json!({"name": "caps", "arguments": {}, "_meta": meta}),
        );
        let call: Value = call.await.unwrap().json().await.unwrap();
        let text = call["result"]["content"][0]["text"].as_str().unwrap();
        assert_eq!(serde_json::from_str::<Value>(text).unwrap(), caps);
    }
}
