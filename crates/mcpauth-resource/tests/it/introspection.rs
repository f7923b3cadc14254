//! RFC 7662 introspection against the real authorization server's `/introspect`, through a
//! counting proxy.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use mcpauth_core::ClientSecret;
use mcpauth_resource::{IntrospectionVerifier, ResourceError, ScopePolicy, TokenVerifier};
use serde_json::Value;

use crate::support::*;

/// A proxy to `target` that counts the requests it forwards.
async fn counting_proxy(target: String) -> (String, Arc<AtomicUsize>, Shutdown) {
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let app = Router::new().route(
        "/introspect",
        post(move |headers: HeaderMap, body: Bytes| {
            let (c, target) = (c.clone(), target.clone());
            async move {
                c.fetch_add(1, Ordering::SeqCst);
                let resp = http()
                    .post(target)
                    .header("authorization", headers["authorization"].clone())
                    .header("content-type", headers["content-type"].clone())
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
                (
                    status,
                    [("content-type", "application/json")],
                    resp.bytes().await.unwrap(),
                )
            }
        }),
    );
    let (listener, addr) = bind().await;
    (
        format!("http://{addr}/introspect"),
        count,
        spawn(listener, app),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s4_introspection_verifier_checks_audience_and_caches() {
    let pending = Pending::new().await;
    let other = "http://127.0.0.1:1/other";
    let auth = As::start(&[&pending.resource, other]).await;
    // A resource server for both, so that the verifier's own audience check (not the
    // authorization server's) is what refuses the other resource's token.
    let rs_client = auth.resource_server(&[&pending.resource, other]).await;
    let (endpoint, count, _proxy) = counting_proxy(format!("{}/introspect", auth.issuer)).await;
    let verifier = IntrospectionVerifier::new(
        endpoint,
        &rs_client.0,
        ClientSecret::new(rs_client.1.clone()),
        [pending.resource.clone()],
    )
    .unwrap()
    .issuers([auth.issuer.clone()]);
    let verifier = Arc::new(verifier);
    let app = pending.serve(
        verifier.clone(),
        &[&auth.issuer],
        ScopePolicy::new().require(["mcp"]),
    );

    let user = auth.client().await;
    let token = auth.token(&user, &app.resource, "mcp").await;
    for _ in 0..3 {
        let resp = app.call(Some(&token), &initialize()).await;
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["result"]["subject"], user.0);
    }
    assert_eq!(
        count.load(Ordering::SeqCst),
        1,
        "one introspection, then the cache"
    );

    let inactive = verifier.verify("no-such-token").await.unwrap_err();
    assert!(matches!(inactive, ResourceError::Inactive), "{inactive}");
    let foreign = auth.token(&user, other, "mcp").await;
    let e = verifier.verify(&foreign).await.unwrap_err();
    assert!(matches!(e, ResourceError::WrongAudience), "{e}");
    assert_eq!(count.load(Ordering::SeqCst), 3);

    // Wrong client credentials: the server refuses us, which is our problem, not the token's.
    let bad = IntrospectionVerifier::new(
        format!("{}/introspect", auth.issuer),
        &rs_client.0,
        ClientSecret::new("wrong"),
        [app.resource.clone()],
    )
    .unwrap();
    let e = bad.verify(&token).await.unwrap_err();
    assert!(matches!(e, ResourceError::Unavailable { .. }), "{e}");
}
