//! The testkit's authorization server and MCP endpoint are as strict as real ones, so that a
//! client bug cannot hide behind them (review finding 14).

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mcpauth_testkit::{Knobs, TestServer};
use serde_json::Value;
use sha2::{Digest, Sha256};

const CLIENT: &str = "strict-client";
const REDIRECT: &str = "http://127.0.0.1:53682/callback";
const VERIFIER: &str = "a-verifier-that-is-long-enough-for-pkce-0123456789";

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A fresh code for [`CLIENT`], requested with [`REDIRECT`] and `resource`.
async fn code(server: &TestServer, resource: &str) -> String {
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(VERIFIER.as_bytes()));
    let url = url::Url::parse_with_params(
        &format!("{}/authorize", server.base),
        [
            ("response_type", "code"),
            ("client_id", CLIENT),
            ("redirect_uri", REDIRECT),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("state", "s"),
            ("resource", resource),
        ],
    )
    .unwrap();
    let response = no_redirects().get(url).send().await.unwrap();
    assert_eq!(response.status(), 302);
    let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    let code = location.query_pairs().find(|(k, _)| k == "code").unwrap().1;
    code.into_owned()
}

/// Redeems `code` with `redirect_uri` and `resource` (when given); the status and `error`.
async fn redeem(
    server: &TestServer,
    code: &str,
    redirect_uri: &str,
    resource: Option<&str>,
) -> (u16, Value) {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("client_id", CLIENT),
        ("code", code),
        ("code_verifier", VERIFIER),
        ("redirect_uri", redirect_uri),
    ];
    form.extend(resource.map(|r| ("resource", r)));
    let response = reqwest::Client::new()
        .post(format!("{}/token", server.base))
        .form(&form)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// A code is redeemable only with the `redirect_uri` (RFC 6749 §4.1.3) and the `resource`
/// (RFC 8707 §2.2) it was issued for.
#[tokio::test]
async fn review14_a_code_is_bound_to_its_redirect_uri_and_resource() {
    let server = TestServer::start(Knobs::default()).await;
    server.add_client(CLIENT, None);
    let resource = server.mcp_url();

    let c = code(&server, &resource).await;
    let (status, body) = redeem(&server, &c, "http://127.0.0.1:1/other", Some(&resource)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    let c = code(&server, &resource).await;
    let other = format!("{}/other", server.base);
    let (status, body) = redeem(&server, &c, REDIRECT, Some(&other)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_target"))
    );

    let c = code(&server, &resource).await;
    let (status, body) = redeem(&server, &c, REDIRECT, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_target"))
    );

    let c = code(&server, &resource).await;
    let (status, body) = redeem(&server, &c, REDIRECT, Some(&resource)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(server.seen(|c| c.code_exchanges), 1);
}

/// A token request that is not a form, or names a parameter twice, is 400 `invalid_request`
/// (RFC 6749 §3.2, §5.2); an MCP body that is not JSON is 400 with a JSON-RPC parse error.
#[tokio::test]
async fn review14_unparseable_bodies_are_refused() {
    let server = TestServer::start(Knobs::default()).await;
    server.add_client(CLIENT, None);
    let http = reqwest::Client::new();
    let token = format!("{}/token", server.base);
    let json = http
        .post(&token)
        .json(&HashMap::from([("grant_type", "client_credentials")]))
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), 400);
    assert_eq!(
        json.json::<Value>().await.unwrap()["error"],
        "invalid_request"
    );
    let twice = http
        .post(&token)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=client_credentials&client_id={CLIENT}&client_id={CLIENT}"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(twice.status(), 400);
    assert_eq!(
        twice.json::<Value>().await.unwrap()["error"],
        "invalid_request"
    );

    let granted = http
        .post(&token)
        .form(&[("grant_type", "client_credentials"), ("client_id", CLIENT)])
        .send()
        .await
        .unwrap();
    assert_eq!(granted.status(), 200);
    let access = granted.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let garbled = http
        .post(server.mcp_url())
        .bearer_auth(access)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(garbled.status(), 400);
    assert_eq!(
        garbled.json::<Value>().await.unwrap()["error"]["code"],
        -32700
    );
}
