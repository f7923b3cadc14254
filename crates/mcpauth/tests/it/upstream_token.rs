//! `mcpauth gateway --upstream-token HEADER` (issue 12 part 3, SPEC F8): the upstream MCP server
//! gets the signed-in user's identity provider token, renewed by the gateway, never the MCP
//! client's token; a grant without one is refused; the provider ending the session ends ours.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use axum::routing::any;
use mcpauth_testkit::{IdpFault, IdpUser, OidcProvider};
use serde_json::{Value, json};

use crate::common::{LIMIT, cookie, hidden, mcpauth};
use crate::federation::{REDIRECT, authorize_for, no_redirects};
use crate::gateway::{banner_value, start_gateway};
use crate::gateway_external::add_client;
use crate::gateway_stdio::PY_SERVER;

/// An upstream MCP server that records the headers of every request.
async fn recording_upstream() -> (String, Arc<Mutex<Vec<HeaderMap>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    let app = axum::Router::new().route(
        "/mcp",
        any(move |h: HeaderMap, body: String| {
            let s = Arc::clone(&s);
            async move {
                s.lock().unwrap().push(h);
                let id = serde_json::from_str::<Value>(&body).unwrap_or(json!({}))["id"].clone();
                axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": {}}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

async fn idp() -> OidcProvider {
    OidcProvider::start(IdpUser {
        sub: "u1".into(),
        email: "ada@example.com".into(),
        extra: json!({}),
    })
    .await
}

/// The `--idp-*` flags for `idp`, its secret written into `home`.
fn idp_args(home: &Path, idp: &OidcProvider) -> Vec<String> {
    let secret = home.join("idp-secret");
    std::fs::write(&secret, &idp.client_secret).unwrap();
    [
        "--idp-issuer",
        &idp.issuer,
        "--idp-client-id",
        &idp.client_id,
        "--idp-client-secret-file",
        secret.to_str().unwrap(),
        "--idp-allow-any",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// A browser signs in at the provider through the gateway's embedded server and a new client
/// redeems the code for `resource`: the client id and the token response.
async fn federated_sign_in(issuer: &str, resource: &str) -> (String, Value) {
    let http = no_redirects();
    let verifier = mcpauth_core::pkce::new_verifier().unwrap();
    let challenge = mcpauth_core::pkce::challenge_s256(&verifier);
    let (client_id, resp) =
        authorize_for(&http, issuer, &challenge, &[("resource", resource)]).await;
    assert_eq!(resp.status(), 302, "providers only: straight to it");
    let browser = cookie(&resp);
    let mut next = resp.headers()["location"].to_str().unwrap().to_owned();
    // /idp/start → the provider → our callback.
    for _ in 0..2 {
        let resp = http
            .get(&next)
            .header("cookie", &browser)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 302, "{}", resp.text().await.unwrap());
        next = resp.headers()["location"].to_str().unwrap().to_owned();
    }
    let resp = http
        .get(&next)
        .header("cookie", &browser)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let session = cookie(&resp);
    let html = resp.text().await.unwrap();
    let resp = http
        .post(format!("{issuer}/authorize/consent"))
        .header("cookie", &session)
        .form(&[
            ("request_id", hidden(&html, "request_id").as_str()),
            ("csrf", hidden(&html, "csrf").as_str()),
            ("decision", "allow"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let back = url::Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
    let code = back
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let body: Value = http
        .post(format!("{issuer}/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier.expose()),
            ("client_id", &client_id),
            ("resource", resource),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(body["access_token"].is_string(), "{body}");
    (client_id, body)
}

async fn call(url: &str, token: &str) -> (u16, Value) {
    let resp = no_redirects()
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The flags of a gateway in front of `upstream` that passes the provider token in `header`,
/// with its database and `idp` in `home`, providers only.
fn gateway_args(home: &Path, idp: &OidcProvider, upstream: &str, header: &str) -> Vec<String> {
    let database = format!("sqlite://{}?mode=rwc", home.join("gw.db").display());
    let mut args: Vec<String> = [
        "--upstream",
        upstream,
        "--upstream-token",
        header,
        "--database",
        &database,
        "--no-password-login",
    ]
    .map(str::to_owned)
    .to_vec();
    args.extend(idp_args(home, idp));
    args
}

async fn refresh(issuer: &str, tokens: &Value, client_id: &str) -> (u16, Value) {
    let resp = no_redirects()
        .post(format!("{issuer}/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
            ("client_id", client_id),
        ])
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

/// F8: the upstream gets the user's provider token in the configured header, never the MCP
/// client's token; the vault key is created beside the database, private (F5).
#[tokio::test]
async fn f8_the_upstream_gets_the_users_provider_token_and_never_the_clients() {
    let idp = idp().await;
    let (upstream, seen) = recording_upstream().await;
    let home = tempfile::tempdir().unwrap();
    let args = gateway_args(home.path(), &idp, &upstream, "X-Idp-Token");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (mut gateway, banner) = start_gateway(home.path(), &args, &[]).await;
    let url = banner_value(&banner, "MCP server:");
    let issuer = url.trim_end_matches("/mcp").to_owned();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let key_file = home.path().join("gw.db.vault-key");
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            mode, 0o600,
            "F5: the vault key beside the database, private"
        );
    }
    let (_, tokens) = federated_sign_in(&issuer, &url).await;
    let access = tokens["access_token"].as_str().unwrap();
    for _ in 0..2 {
        let (status, body) = call(&url, access).await;
        assert_eq!(status, 200, "{body}");
    }
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    assert_eq!(seen.len(), 2);
    for h in seen.iter() {
        assert_eq!(h["x-idp-token"], "at-u1", "the provider's token");
        assert!(
            h.get("authorization").is_none(),
            "S5: no Authorization at all"
        );
        for (name, v) in h {
            assert!(
                !v.to_str().unwrap_or_default().contains(access),
                "the MCP client's token leaked in {name}"
            );
        }
    }
    assert_eq!(idp.refreshes(), 0, "a fresh provider token is not renewed");
    let _ = gateway.kill().await;
}

/// F3, F4, F8: a provider token about to expire is renewed by the gateway (`Authorization:
/// Bearer` carries the new one); when the provider then ends the session, the very next
/// request is refused (401), the grant is revoked (our refresh fails with invalid_grant), and
/// the upstream sees nothing more.
#[tokio::test]
async fn f3_the_provider_ending_the_session_ends_it_at_the_gateway_at_once() {
    let idp = idp().await;
    idp.set_access_ttl(30);
    let (upstream, seen) = recording_upstream().await;
    let home = tempfile::tempdir().unwrap();
    let args = gateway_args(home.path(), &idp, &upstream, "Authorization");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (mut gateway, banner) = start_gateway(home.path(), &args, &[]).await;
    let url = banner_value(&banner, "MCP server:");
    let issuer = url.trim_end_matches("/mcp").to_owned();
    let (client_id, tokens) = federated_sign_in(&issuer, &url).await;
    let access = tokens["access_token"].as_str().unwrap();
    let (status, body) = call(&url, access).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(idp.refreshes(), 1, "due within a minute: renewed first");
    assert_eq!(seen.lock().unwrap()[0]["authorization"], "Bearer at-u1-r1");

    idp.set_fault(IdpFault::RefreshRevoked);
    for _ in 0..2 {
        let (status, body) = call(&url, access).await;
        assert_eq!(status, 401, "{body}");
    }
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "nothing more reached the upstream"
    );
    let (status, err) = refresh(&issuer, &tokens, &client_id).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("invalid_grant")),
        "{err}"
    );

    // A provider that is down changes nothing: 503 at the gateway and our refresh, and once
    // it is back, everything works again with the same tokens.
    idp.set_fault(IdpFault::None);
    let (client_id, tokens) = federated_sign_in(&issuer, &url).await;
    let access = tokens["access_token"].as_str().unwrap();
    idp.set_fault(IdpFault::TokenUnavailable);
    let (status, body) = call(&url, access).await;
    assert_eq!(status, 503, "{body}");
    let (status, err) = refresh(&issuer, &tokens, &client_id).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (503, Some("temporarily_unavailable"))
    );
    idp.set_fault(IdpFault::None);
    let (status, body) = call(&url, access).await;
    assert_eq!(status, 200, "{body}");
    let _ = gateway.kill().await;
}

/// Issue 12 part 3: `--identity-header` carries a JWT the upstream verifies with the
/// gateway's JWK set (`{issuer}/jwks`): typed `mcp-identity+jwt`, `iss` the issuer, `aud` the
/// upstream URL, `sub` the access token's, `email` and `name` from the provider, 60 s. One
/// signed by another key with the same `kid`, or checked for another audience, fails.
#[tokio::test]
async fn identity_header_verifies_with_the_gateways_jwks_and_a_forgery_does_not() {
    use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Validation, decode};
    let idp = idp().await;
    let (upstream, seen) = recording_upstream().await;
    let home = tempfile::tempdir().unwrap();
    let mut args = gateway_args(home.path(), &idp, &upstream, "X-Idp-Token");
    args.extend(["--identity-header".to_owned(), "X-Mcp-Identity".to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (mut gateway, banner) = start_gateway(home.path(), &args, &[]).await;
    let url = banner_value(&banner, "MCP server:");
    let issuer = url.trim_end_matches("/mcp").to_owned();
    let (_, tokens) = federated_sign_in(&issuer, &url).await;
    let access = tokens["access_token"].as_str().unwrap();
    let (status, body) = call(&url, access).await;
    assert_eq!(status, 200, "{body}");
    let jwt = seen.lock().unwrap()[0]["x-mcp-identity"]
        .to_str()
        .unwrap()
        .to_owned();

    let jwks: jsonwebtoken::jwk::JwkSet = reqwest::get(format!("{issuer}/jwks"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let header = jsonwebtoken::decode_header(&jwt).unwrap();
    assert_eq!(header.typ.as_deref(), Some("mcp-identity+jwt"));
    let kid = header.kid.clone().unwrap();
    let key = DecodingKey::from_jwk(jwks.find(&kid).unwrap()).unwrap();
    let validation = |aud: &str| {
        let mut v = Validation::new(Algorithm::ES256);
        v.set_audience(&[aud]);
        v.set_issuer(&[&issuer]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v
    };
    let claims: Value = decode(&jwt, &key, &validation(&upstream)).unwrap().claims;
    let access_claims: Value = jsonwebtoken::dangerous::insecure_decode(access)
        .unwrap()
        .claims;
    assert_eq!(claims["sub"], access_claims["sub"]);
    assert_eq!(claims["email"], "ada@example.com");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        60
    );
    assert!(claims["jti"].is_string());
    assert!(decode::<Value>(&jwt, &key, &validation("http://other.example/mcp")).is_err());

    // A forgery: the same claims, header and kid, signed by another P-256 key.
    let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let forged = jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_ec_der(&other.serialize_der()),
    )
    .unwrap();
    assert!(decode::<Value>(&forged, &key, &validation(&upstream)).is_err());
    let _ = gateway.kill().await;
}

/// Issue 12 part 3, stdio: `--upstream-token-env NAME` gives each session's process the
/// user's provider token in NAME, and `--identity-header` a signed assertion (`aud`
/// `stdio:COMMAND`) in MCPAUTH_IDENTITY; the MCP client's token is in neither nor anywhere in
/// the environment. A grant without a provider token starts no process (403).
#[tokio::test]
async fn f8_a_stdio_process_gets_the_provider_token_and_identity_in_its_environment() {
    let idp = idp().await;
    let home = tempfile::tempdir().unwrap();
    let server = home.path().join("server.py");
    std::fs::write(&server, PY_SERVER).unwrap();
    let database = format!("sqlite://{}?mode=rwc", home.path().join("gw.db").display());
    let mut args: Vec<String> = [
        "--database",
        &database,
        "--upstream-token-env",
        "IDP_TOKEN",
        "--identity-header",
        "X-Mcp-Identity",
        "--no-password-login",
    ]
    .map(str::to_owned)
    .to_vec();
    args.extend(idp_args(home.path(), &idp));
    args.extend(["--".into(), "python3".into(), server.display().to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (mut gateway, banner) = start_gateway(home.path(), &args, &[]).await;
    let url = banner_value(&banner, "MCP server:");
    let issuer = url.trim_end_matches("/mcp").to_owned();
    let (_, tokens) = federated_sign_in(&issuer, &url).await;
    let access = tokens["access_token"].as_str().unwrap();
    let post = |session: Option<&str>, body: Value| {
        let mut r = no_redirects()
            .post(&url)
            .bearer_auth(access)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        if let Some(s) = session {
            r = r.header("mcp-session-id", s);
        }
        r.body(body.to_string()).send()
    };
    let init = post(
        None,
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25"}}),
    )
    .await
    .unwrap();
    assert_eq!(init.status(), 200);
    let session = init.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let answer: Value = post(
        Some(&session),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "env", "arguments": {}}}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let env: std::collections::HashMap<String, String> =
        serde_json::from_str(answer["result"]["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(env["IDP_TOKEN"], "at-u1");
    let identity: Value = jsonwebtoken::dangerous::insecure_decode(&env["MCPAUTH_IDENTITY"])
        .unwrap()
        .claims;
    assert_eq!(identity["aud"], "stdio:python3");
    assert_eq!(identity["iss"], issuer.as_str());
    assert_eq!(identity["email"], "ada@example.com");
    for (name, value) in &env {
        assert!(
            !value.contains(access),
            "the MCP client's token leaked in {name}"
        );
    }

    // A client credentials token has no provider token: no process starts.
    let secret = add_client(home.path(), &database, &["--id", "bot"]).await;
    let bot: Value = no_redirects()
        .post(format!("{issuer}/token"))
        .basic_auth("bot", Some(&secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let resp = no_redirects()
        .post(&url)
        .bearer_auth(bot["access_token"].as_str().unwrap())
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let _ = gateway.kill().await;
}

/// F8: a token whose grant has no provider token (here a client credentials token) is refused
/// with 403 and a clear JSON-RPC error, never forwarded without it.
#[tokio::test]
async fn f8_a_grant_without_a_provider_token_gets_403() {
    let idp = idp().await;
    let (upstream, seen) = recording_upstream().await;
    let home = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}?mode=rwc", home.path().join("gw.db").display());
    let secret = add_client(home.path(), &database, &["--id", "bot"]).await;
    let mut args = vec![
        "--upstream".to_owned(),
        upstream,
        "--upstream-token".into(),
        "Authorization".into(),
        "--database".into(),
        database,
    ];
    args.extend(idp_args(home.path(), &idp));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (mut gateway, banner) = start_gateway(home.path(), &args, &[]).await;
    let url = banner_value(&banner, "MCP server:");
    let issuer = url.trim_end_matches("/mcp").to_owned();
    let body: Value = no_redirects()
        .post(format!("{issuer}/token"))
        .basic_auth("bot", Some(&secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (status, err) = call(&url, body["access_token"].as_str().unwrap()).await;
    assert_eq!(status, 403, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("identity provider"),
        "{err}"
    );
    assert!(seen.lock().unwrap().is_empty(), "nothing was forwarded");
    let _ = gateway.kill().await;
}

/// --upstream-token without the embedded server, without a provider, or with a stdio upstream
/// stops the gateway at start with a clear message.
#[tokio::test]
async fn f8_upstream_token_is_refused_where_it_cannot_work() {
    let idp = idp().await;
    let home = tempfile::tempdir().unwrap();
    let idp_flags = idp_args(home.path(), &idp);
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--upstream".into(), "http://127.0.0.1:9/mcp".into()],
            "needs an identity provider",
        ),
        (
            [
                vec!["--upstream".into(), "http://127.0.0.1:9/mcp".into()],
                vec!["--issuer".into(), "https://as.example".into()],
            ]
            .concat(),
            "needs the embedded authorization server",
        ),
        (
            [
                idp_flags.clone(),
                vec!["--".into(), "python3".into(), "server.py".into()],
            ]
            .concat(),
            "for a stdio server use --upstream-token-env",
        ),
        (
            [
                idp_flags.clone(),
                vec!["--upstream".into(), "http://127.0.0.1:9/mcp".into()],
            ]
            .concat(),
            "not a valid header name",
        ),
    ];
    for (i, (extra, says)) in cases.into_iter().enumerate() {
        let header = if says.contains("header name") {
            "Bad Header"
        } else {
            "X-Token"
        };
        let database = format!(
            "sqlite://{}?mode=rwc",
            home.path().join(format!("{i}.db")).display()
        );
        let mut cmd = mcpauth(home.path());
        cmd.args(["gateway", "--bind", "127.0.0.1:0", "--database", &database])
            .args(["--upstream-token", header]);
        // `--` must come last.
        let (before, after): (Vec<_>, Vec<_>) = match extra.iter().position(|a| a == "--") {
            Some(p) => (extra[..p].to_vec(), extra[p..].to_vec()),
            None => (extra.clone(), Vec::new()),
        };
        let out = cmd.args(&before).args(&after).stdin(Stdio::null()).output();
        let out = tokio::time::timeout(LIMIT, out).await.unwrap().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{says}: {stderr}");
        assert!(stderr.contains(says), "expected {says:?} in {stderr}");
    }
}
