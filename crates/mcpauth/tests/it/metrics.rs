//! `--metrics-bind` on the gateway and on serve: a scripted session, then a scrape of the
//! Prometheus text on the separate listener finds the counters it must (requests by route and
//! status, tokens issued by grant, token checks by result) and none of the session's secrets.
//! Without the flag there is no metrics listener.

use crate::common::{add, browser_login, http, mcpauth, start_login};
use crate::gateway::{banner_value, start_demo_with};
use crate::serve::{PASSWORD, serve_for_resource};

/// The value of the sample `name{labels}` (labels exactly as rendered, sorted by the exporter),
/// or 0 when absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

async fn scrape(url: &str) -> String {
    let resp = http().get(url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    resp.text().await.unwrap()
}

#[tokio::test]
async fn metrics_count_a_gateway_session_and_leak_nothing() {
    let home = tempfile::tempdir().unwrap();
    let (mut gateway, banner, demo) =
        start_demo_with(home.path(), &["--metrics-bind", "127.0.0.1:0"]).await;
    let metrics = banner_value(&banner, "metrics:");
    assert!(
        metrics.starts_with("http://127.0.0.1:") && metrics.ends_with("/metrics"),
        "{metrics}"
    );
    let (mut login, auth_url) = start_login(home.path(), &demo.url, &demo.issuer).await;
    browser_login(&demo.issuer, &auth_url, "demo", &demo.password).await;
    assert!(login.wait().await.unwrap().success());
    for _ in 0..2 {
        assert_eq!(add(home.path(), &demo.url, 1, 2, &[]).await, "3");
    }
    let refused = http()
        .post(&demo.url)
        .header("authorization", "Bearer garbage.garbage.garbage")
        .header("accept", "application/json, text/event-stream")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let token = mcpauth(home.path())
        .args(["token", &demo.url])
        .output()
        .await
        .unwrap();
    let token = String::from_utf8(token.stdout).unwrap().trim().to_owned();

    let text = scrape(&metrics).await;
    assert!(
        sample(
            &text,
            r#"mcpauth_tokens_issued_total{grant_type="authorization_code"}"#
        ) >= 1.0,
        "{text}"
    );
    assert!(
        sample(&text, r#"mcpauth_token_verifications_total{result="ok"}"#) >= 2.0,
        "{text}"
    );
    assert!(
        sample(
            &text,
            r#"mcpauth_token_verifications_total{result="invalid"}"#
        ) >= 1.0,
        "{text}"
    );
    assert!(
        sample(
            &text,
            r#"mcpauth_http_requests_total{route="/mcp",method="POST",status="401"}"#
        ) >= 1.0,
        "{text}"
    );
    assert!(
        sample(
            &text,
            r#"mcpauth_http_requests_total{route="/token",method="POST",status="200"}"#
        ) >= 1.0,
        "{text}"
    );
    assert!(
        text.contains("mcpauth_http_request_duration_seconds_bucket{route=\"/mcp\""),
        "{text}"
    );
    assert!(
        text.contains(r#"mcpauth_audit_events_total{event="signin.succeeded"}"#),
        "{text}"
    );
    for secret in [token.as_str(), demo.password.as_str(), "garbage"] {
        assert!(!text.contains(secret), "the scrape holds a secret");
    }
    assert!(!text.contains("127.0.0.1:"), "no address in a label");
    gateway.kill().await.unwrap();
}

#[tokio::test]
async fn metrics_count_serve_refreshes_and_are_off_by_default() {
    let home = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let bind = format!("127.0.0.1:{port}");
    let (mut serve, issuer, resource) = serve_for_resource(
        home.path(),
        &["--access-token-ttl", "30", "--metrics-bind", &bind],
    )
    .await;
    let (mut login, auth_url) = start_login(home.path(), &resource, &issuer).await;
    browser_login(&issuer, &auth_url, "alice", PASSWORD).await;
    assert!(login.wait().await.unwrap().success());
    // A 30 s token is within the refresh margin: each `token` refreshes (with rotation).
    for _ in 0..2 {
        let out = mcpauth(home.path())
            .args(["token", &resource])
            .output()
            .await
            .unwrap();
        assert!(out.status.success());
    }
    let text = scrape(&format!("http://{bind}/metrics")).await;
    assert!(
        sample(
            &text,
            r#"mcpauth_tokens_issued_total{grant_type="refresh_token"}"#
        ) >= 2.0,
        "{text}"
    );
    assert!(
        sample(
            &text,
            r#"mcpauth_http_requests_total{route="/authorize",method="GET",status="200"}"#
        ) >= 1.0,
        "{text}"
    );
    assert!(!text.contains("alice") && !text.contains(PASSWORD));
    serve.kill().await.unwrap();

    // Without the flag: nothing listens for metrics.
    let other = tempfile::tempdir().unwrap();
    let (mut serve, _, _) = serve_for_resource(other.path(), &[]).await;
    assert!(
        http()
            .get(format!("http://{bind}/metrics"))
            .send()
            .await
            .is_err()
    );
    serve.kill().await.unwrap();
}

/// Bad input: an address that cannot be bound stops the gateway at start with a clear error.
#[tokio::test]
async fn metrics_bind_to_a_bad_address_is_a_clear_error() {
    let home = tempfile::tempdir().unwrap();
    let out = mcpauth(home.path())
        .args([
            "gateway",
            "--demo",
            "--bind",
            "127.0.0.1:0",
            "--metrics-bind",
            "not-an-address",
        ])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot listen for metrics on not-an-address"),
        "{err}"
    );
}
