//! The Origin/Host guard in front of the protected app (MCP SPEC S11).

use mcpauth_resource::{JwtVerifier, ScopePolicy};
use serde_json::Value;

use crate::support::*;

async fn app() -> (As, App) {
    let pending = Pending::new().await;
    let auth = As::start(&[&pending.resource]).await;
    let verifier = JwtVerifier::builder()
        .issuer(&auth.issuer)
        .audience(&pending.resource)
        .build()
        .unwrap();
    let app = pending.serve(verifier, &[&auth.issuer], ScopePolicy::new());
    (auth, app)
}

fn assert_idless_jsonrpc_error(body: &Value) {
    assert_eq!(body["jsonrpc"], "2.0");
    assert_eq!(body["error"]["code"], -32600);
    assert!(body["error"]["message"].is_string());
    assert!(body.get("id").is_none(), "no id member at all: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s11_evil_origin_gets_403_with_an_idless_jsonrpc_error() {
    let (auth, app) = app().await;
    let client = auth.client().await;
    let token = auth.token(&client, &app.resource, "mcp").await;
    for origin in ["https://evil.example", "null", "http://127.0.0.1:1"] {
        let resp = http()
            .post(&app.resource)
            .header("origin", origin)
            .bearer_auth(&token)
            .json(&initialize())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "{origin}");
        assert_eq!(resp.headers()["content-type"], "application/json");
        assert_idless_jsonrpc_error(&resp.json().await.unwrap());
    }
    // Same origin, and no Origin at all (non-browser clients), pass.
    for origin in [Some(app.url.clone()), None] {
        let mut req = http()
            .post(&app.resource)
            .bearer_auth(&token)
            .json(&initialize());
        if let Some(o) = &origin {
            req = req.header("origin", o);
        }
        assert_eq!(req.send().await.unwrap().status(), 200, "{origin:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s11_bad_host_on_a_loopback_bind_is_refused() {
    let (_auth, app) = app().await;
    let port = app.url.rsplit(':').next().unwrap().to_owned();
    // DNS rebinding: the browser thinks it talks to evil.example, which resolves to 127.0.0.1.
    let resp = http()
        .post(&app.resource)
        .header("host", format!("evil.example:{port}"))
        .json(&initialize())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_idless_jsonrpc_error(&resp.json().await.unwrap());
    // The PRM route is guarded too; localhost at the right port is fine.
    let resp = http()
        .get(app.prm.metadata_url())
        .header("host", format!("localhost:{port}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}
