//! The layer's answers: challenges, scopes, malformed headers, body limits.

use mcpauth_resource::{JwtVerifier, ScopePolicy};
use serde_json::{Value, json};

use crate::support::*;

/// An app protected by the real authorization server with `policy`, and a client of it.
async fn setup(policy: ScopePolicy) -> (As, App, (String, String)) {
    let pending = Pending::new().await;
    let auth = As::start(&[&pending.resource]).await;
    let verifier = JwtVerifier::builder()
        .issuer(&auth.issuer)
        .audience(&pending.resource)
        .build()
        .unwrap();
    let app = pending.serve(verifier, &[&auth.issuer], policy);
    let client = auth.client().await;
    (auth, app, client)
}

fn files_policy() -> ScopePolicy {
    ScopePolicy::new()
        .require(["mcp"])
        .method("tools/list", ["tools:read"])
        .tool("write_file", ["files:write", "files:admin"])
        .tool("read_file", ["files:read"])
        .implies("files:write", "files:read")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_s3_no_token_gets_401_with_resource_metadata_and_scope_and_no_error() {
    let (_auth, app, _) = setup(files_policy()).await;
    let resp = app.call(None, &tool_call("write_file")).await;
    assert_eq!(resp.status(), 401);
    let c = challenge(&resp);
    assert_eq!(
        c.param("error"),
        None,
        "RFC 6750 §3.1: no error without credentials"
    );
    assert_eq!(c.param("scope"), Some("mcp"));
    let prm_url = c.param("resource_metadata").unwrap().to_owned();
    assert_eq!(prm_url, app.prm.metadata_url());
    // The advertised URL serves the document.
    let doc: Value = http()
        .get(&prm_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["resource"], app.resource);
    // A non-Bearer scheme is treated as no credentials.
    let resp = http()
        .post(&app.resource)
        .header("authorization", "Basic dXNlcjpwYXNz")
        .json(&initialize())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(challenge(&resp).param("error"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s4_garbage_token_is_invalid_token() {
    let (_auth, app, _) = setup(files_policy()).await;
    let resp = app.call(Some("not-a-jwt"), &initialize()).await;
    assert_eq!(resp.status(), 401);
    let c = challenge(&resp);
    assert_eq!(c.param("error"), Some("invalid_token"));
    assert!(c.param("error_description").is_some());
    assert_eq!(c.param("resource_metadata"), Some(app.prm.metadata_url()));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "invalid_token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s7_missing_scope_gets_one_403_with_the_full_scope_set() {
    let (auth, app, client) = setup(files_policy()).await;
    let token = auth.token(&client, &app.resource, "mcp files:write").await;
    // Base scope only: initialize passes.
    assert_eq!(app.call(Some(&token), &initialize()).await.status(), 200);
    // write_file needs files:write AND files:admin; the token has only the first.
    let resp = app.call(Some(&token), &tool_call("write_file")).await;
    assert_eq!(resp.status(), 403);
    let c = challenge(&resp);
    assert_eq!(c.param("error"), Some("insufficient_scope"));
    assert_eq!(
        c.param("scope"),
        Some("mcp files:write files:admin"),
        "every scope the operation needs, in one challenge"
    );
    assert_eq!(c.param("resource_metadata"), Some(app.prm.metadata_url()));
    // Per method: tools/list needs tools:read.
    let list = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"});
    let resp = app.call(Some(&token), &list).await;
    assert_eq!(resp.status(), 403);
    assert_eq!(challenge(&resp).param("scope"), Some("mcp tools:read"));
    // A token without the base scope is refused even for initialize.
    let bare = auth.token(&client, &app.resource, "files:read").await;
    let resp = app.call(Some(&bare), &initialize()).await;
    assert_eq!(resp.status(), 403);
    assert_eq!(challenge(&resp).param("scope"), Some("mcp"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_scope_hierarchy_is_honoured() {
    let (auth, app, client) = setup(files_policy()).await;
    let writer = auth.token(&client, &app.resource, "mcp files:write").await;
    // read_file needs files:read, which files:write implies.
    let resp = app.call(Some(&writer), &tool_call("read_file")).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["id"], 2, "the handler got the body the layer read");
    // The reverse does not hold.
    let reader = auth.token(&client, &app.resource, "mcp files:read").await;
    let resp = app.call(Some(&reader), &tool_call("write_file")).await;
    assert_eq!(resp.status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s6_malformed_authorization_header_is_400() {
    let (auth, app, client) = setup(files_policy()).await;
    let token = auth.token(&client, &app.resource, "mcp").await;
    let cases: Vec<Vec<String>> = vec![
        vec![format!("Bearer {token} {token}")],
        vec![format!("Bearer {token}"), format!("Bearer {token}")],
        vec![token.clone()],
        vec![format!("Token {token}")],
        vec!["Bearer".into()],
    ];
    for headers in cases {
        let mut req = http().post(&app.resource).json(&initialize());
        for h in &headers {
            req = req.header("authorization", h);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 400, "{headers:?}");
        assert_eq!(challenge(&resp).param("error"), Some("invalid_request"));
    }
    // C23 / RFC 6750 §2.3: a token in the query string is refused, even with a good header.
    let resp = http()
        .post(format!("{}?access_token={token}", app.resource))
        .bearer_auth(&token)
        .json(&initialize())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(challenge(&resp).param("error"), Some("invalid_request"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_body_is_413_when_the_policy_reads_it() {
    let (auth, app, client) = setup(files_policy()).await;
    let token = auth.token(&client, &app.resource, "mcp").await;
    let big = json!({"jsonrpc": "2.0", "id": 1, "method": "x", "params": {"pad": "a".repeat(1024 * 1024 + 1)}});
    let resp = app.call(Some(&token), &big).await;
    assert_eq!(resp.status(), 413);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32600);
    // Without a token it is refused before the body is read.
    assert_eq!(app.call(None, &big).await.status(), 401);
}
