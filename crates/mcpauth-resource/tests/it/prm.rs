//! Protected resource metadata (RFC 9728; MCP SPEC S1-S2, S9).

use mcpauth_resource::{JwtVerifier, ResourceMetadata, ScopePolicy};
use serde_json::Value;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s1_s2_s9_prm_is_path_aware_byte_exact_and_without_offline_access() {
    let pending = Pending::new().await;
    let auth = As::start(&[&pending.resource]).await;
    let verifier = JwtVerifier::builder()
        .issuer(&auth.issuer)
        .audience(&pending.resource)
        .build()
        .unwrap();
    let app = pending.serve(verifier, &[&auth.issuer], ScopePolicy::new());
    let url = format!("{}/.well-known/oauth-protected-resource/mcp", app.url);
    assert_eq!(app.prm.metadata_url(), url);
    let resp = http().get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    assert_eq!(resp.headers()["content-type"], "application/json");
    let text = resp.text().await.unwrap();
    assert!(
        text.contains(&format!("\"resource\":\"{}\"", app.resource)),
        "resource byte-exact: {text}"
    );
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["authorization_servers"][0], auth.issuer);
    assert_eq!(
        doc["bearer_methods_supported"],
        serde_json::json!(["header"])
    );
    let scopes = doc["scopes_supported"].as_array().unwrap();
    assert!(!scopes.is_empty());
    assert!(!scopes.iter().any(|s| s == "offline_access"), "S9: {doc}");
    // No document at the root: the resource has a path.
    let root = http()
        .get(format!("{}/.well-known/oauth-protected-resource", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(root.status(), 404);
    // CORS preflight and wrong methods.
    let pre = http()
        .request(reqwest::Method::OPTIONS, &url)
        .header("origin", app.url.clone())
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(pre.status(), 204);
    let post = http().post(&url).send().await.unwrap();
    assert_eq!(post.status(), 405);
}

#[test]
fn s1_resource_kept_as_given() {
    // Not canonicalised: the string the operator configured is the identity clients compare.
    let prm = ResourceMetadata::new("https://MCP.example.com/Mcp/", ["https://as"]).unwrap();
    assert_eq!(prm.resource(), "https://MCP.example.com/Mcp/");
    assert_eq!(
        prm.metadata_path(),
        "/.well-known/oauth-protected-resource/Mcp"
    );
    let json = serde_json::to_string(prm.document()).unwrap();
    assert!(json.contains(r#""resource":"https://MCP.example.com/Mcp/""#));
}

#[test]
fn rfc9728_s2_no_scopes_means_no_scopes_supported_member() {
    // RFC 9728 §2: scopes_supported is OPTIONAL; `[]` would claim that no scope exists.
    let none: [&str; 0] = [];
    let prm = ResourceMetadata::new("https://h/mcp", ["https://as"])
        .unwrap()
        .scopes_supported(none);
    let doc = serde_json::to_value(prm.document()).unwrap();
    assert!(doc.get("scopes_supported").is_none(), "{doc}");
    // offline_access alone is left out (S9), so nothing is left to publish either.
    let only_offline = ResourceMetadata::new("https://h/mcp", ["https://as"])
        .unwrap()
        .scopes_supported(["offline_access"]);
    assert_eq!(only_offline.document().scopes_supported, None);
}
