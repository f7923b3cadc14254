//! DPoP in the CLI (RFC 9449, SPEC D1-D3): `mcpauth login` against the gateway's embedded
//! authorization server (which advertises ES256 proofs) binds the tokens to a key; `call` works
//! with the gateway requiring DPoP; `status` shows the token type; `token --header` alone is
//! refused and `token --header --method M --url U` prints a working Authorization + DPoP pair.
//! Against `mcpauth serve` with short-lived access tokens: refresh with the same key, and a
//! refused proof on refresh means a new login.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mcpauth_core::dpop::DpopKey;
use serde_json::{Value, json};

use crate::common::{LIMIT, browser_login, dpop_initialize, mcpauth, start_login};
use crate::gateway::{Demo, banner_value, start_demo_with};
use crate::serve::{PASSWORD, serve_for_resource};

async fn run(home: &std::path::Path, args: &[&str]) -> std::process::Output {
    tokio::time::timeout(LIMIT, mcpauth(home).args(args).output())
        .await
        .unwrap()
        .unwrap()
}

/// A `gateway --demo` with `flags`, and `mcpauth login` to it as the demo user: the gateway,
/// its banner, its MCP URL and the authorization URL the login used.
async fn demo_login(
    home: &std::path::Path,
    flags: &[&str],
) -> (tokio::process::Child, Vec<String>, String, String) {
    let (gateway, banner, demo) = start_demo_with(home, flags).await;
    let Demo {
        url,
        issuer,
        password,
    } = demo;
    let (mut login, auth_url) = start_login(home, &url, &issuer).await;
    browser_login(&issuer, &auth_url, "demo", &password).await;
    assert!(login.wait().await.unwrap().success());
    (gateway, banner, url, auth_url)
}

#[tokio::test]
async fn d1_d3_login_call_status_and_token_header_with_a_bound_token() {
    let home = tempfile::tempdir().unwrap();
    let (mut gateway, _, url, _) = demo_login(home.path(), &["--dpop", "require"]).await;

    let call = run(home.path(), &["call", &url, "add", r#"{"a": 2, "b": 3}"#]).await;
    let stderr = String::from_utf8_lossy(&call.stderr);
    assert!(call.status.success(), "{stderr}");
    let result: Value = serde_json::from_slice(&call.stdout).unwrap();
    assert_eq!(result["content"][0]["text"], "5");

    let status = run(home.path(), &["--json", "status"]).await;
    let list: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(list[0]["token_type"], "DPoP", "{list}");
    let table = run(home.path(), &["status"]).await;
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(
        table.starts_with("SERVER") && table.contains("TYPE"),
        "{table}"
    );
    assert!(table.contains(" DPoP "), "{table}");

    // One line cannot be a complete credential: refused with a usage exit code.
    let alone = run(home.path(), &["token", &url, "--header"]).await;
    assert_eq!(alone.status.code(), Some(64));
    let err = String::from_utf8_lossy(&alone.stderr);
    assert!(err.contains("--method") && err.contains("--url"), "{err}");
    assert!(alone.stdout.is_empty());

    let (token, proof) = header_pair(home.path(), &url, &[]).await;
    assert_eq!(
        dpop_initialize(&url, &token, proof.clone()).await.status(),
        200
    );
    // The proof was for that one request: a replay is refused (RFC 9449 §11.1).
    assert_eq!(dpop_initialize(&url, &token, proof).await.status(), 401);

    // A proof for a URL that cannot be a target is a clear error.
    let bad = run(
        home.path(),
        &[
            "token",
            &url,
            "--header",
            "--method",
            "POST",
            "--url",
            "not a url",
        ],
    )
    .await;
    assert!(!bad.status.success());
    assert!(bad.stdout.is_empty());
    gateway.kill().await.unwrap();
}

/// D7 end to end: with `gateway --dpop-nonce`, the embedded server's /token (RFC 9449 §8) and
/// the MCP endpoint (§9) both want their nonce; `mcpauth login` binds the code to its key
/// (dpop_jkt, §10), takes each server's nonce from the use_dpop_nonce answers and retries, and
/// `call` works.
#[tokio::test]
async fn d7_login_and_call_through_nonce_challenges() {
    let home = tempfile::tempdir().unwrap();
    let (mut gateway, banner, url, auth_url) =
        demo_login(home.path(), &["--dpop", "require", "--dpop-nonce"]).await;
    assert!(
        banner_value(&banner, "DPoP nonces:").starts_with("required"),
        "{banner:?}"
    );
    let key_param = url::Url::parse(&auth_url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "dpop_jkt")
        .map(|(_, v)| v.into_owned())
        .expect("the authorization request carries dpop_jkt");
    let call = run(home.path(), &["call", &url, "add", r#"{"a": 4, "b": 5}"#]).await;
    assert!(
        call.status.success(),
        "{}",
        String::from_utf8_lossy(&call.stderr)
    );
    let result: Value = serde_json::from_slice(&call.stdout).unwrap();
    assert_eq!(result["content"][0]["text"], "9");
    let token = run(home.path(), &["token", &url]).await;
    let token = String::from_utf8(token.stdout).unwrap();
    assert_eq!(
        jkt(token.trim()),
        key_param,
        "the token is bound to the dpop_jkt key"
    );
    gateway.kill().await.unwrap();
}

/// The DPoP token and the proof `mcpauth token --header` prints for POST to `url`
/// (with `extra` flags).
async fn header_pair(home: &std::path::Path, url: &str, extra: &[&str]) -> (String, String) {
    let mut args = vec!["token", url, "--header", "--method", "POST", "--url", url];
    args.extend_from_slice(extra);
    let pair = run(home, &args).await;
    assert!(
        pair.status.success(),
        "{}",
        String::from_utf8_lossy(&pair.stderr)
    );
    let text = String::from_utf8(pair.stdout).unwrap();
    let lines: Vec<(&str, &str)> = text.lines().map(|l| l.split_once(": ").unwrap()).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0].0, "Authorization");
    let token = lines[0].1.strip_prefix("DPoP ").expect("a DPoP token");
    assert_eq!(lines[1].0, "DPoP");
    (token.to_owned(), lines[1].1.to_owned())
}

/// D7, RFC 9449 §9 for scripts: against a gateway that wants nonces, the proof `token --header`
/// prints without a nonce is refused with `use_dpop_nonce` and a `DPoP-Nonce`; with `--nonce`
/// set to that value the request goes through. A value that cannot be a nonce, or `--nonce`
/// without `--method`/`--url`, is a usage error with nothing printed.
#[tokio::test]
async fn d7_token_header_takes_the_nonce_the_resource_handed_out() {
    let home = tempfile::tempdir().unwrap();
    let (mut gateway, _, url, _) =
        demo_login(home.path(), &["--dpop", "require", "--dpop-nonce"]).await;

    let (token, proof) = header_pair(home.path(), &url, &[]).await;
    let refused = dpop_initialize(&url, &token, proof).await;
    assert_eq!(refused.status(), 401);
    let challenge = refused.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.contains("use_dpop_nonce"), "{challenge}");
    let nonce = refused.headers()["dpop-nonce"].to_str().unwrap().to_owned();

    let (token, proof) = header_pair(home.path(), &url, &["--nonce", &nonce]).await;
    assert_eq!(dpop_initialize(&url, &token, proof).await.status(), 200);

    for bad in [
        vec![
            "token", &url, "--header", "--method", "POST", "--url", &url, "--nonce", "a b",
        ],
        vec![
            "token", &url, "--header", "--method", "POST", "--url", &url, "--nonce", "",
        ],
        vec!["token", &url, "--header", "--nonce", &nonce],
    ] {
        let out = run(home.path(), &bad).await;
        assert_eq!(out.status.code(), Some(64), "{bad:?}");
        assert!(out.stdout.is_empty(), "{bad:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("nonce"), "{err}");
    }
    gateway.kill().await.unwrap();
}

/// The `cnf.jkt` of a JWT access token (RFC 9449 §6.1).
fn jkt(token: &str) -> String {
    let claims = URL_SAFE_NO_PAD
        .decode(token.split('.').nth(1).unwrap())
        .unwrap();
    let claims: Value = serde_json::from_slice(&claims).unwrap();
    claims["cnf"]["jkt"].as_str().unwrap().to_owned()
}

/// The token files under `home` that hold a DPoP key.
fn key_files(home: &std::path::Path) -> Vec<std::path::PathBuf> {
    crate::common::files_containing(home, "\"dpop_key\"")
}

/// SPEC D3: an access token shorter-lived than the refresh margin is refreshed on every
/// `mcpauth token`; the refresh of the public client's bound grant is proved with the same key
/// (the new token has the same `cnf.jkt`). With another key in the store, the server refuses
/// the proof (`invalid_dpop_proof`): the refresh token is dropped and a new login is needed.
#[tokio::test]
async fn d3_refresh_uses_the_same_key_and_a_refused_proof_means_a_new_login() {
    let home = tempfile::tempdir().unwrap();
    let (mut serve, issuer, resource) =
        serve_for_resource(home.path(), &["--access-token-ttl", "30"]).await;

    let (mut login, auth_url) = start_login(home.path(), &resource, &issuer).await;
    browser_login(&issuer, &auth_url, "alice", PASSWORD).await;
    assert!(login.wait().await.unwrap().success());

    let token = |home: std::path::PathBuf, resource: String| async move {
        let out = run(&home, &["--json", "token", &resource]).await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let first = token(home.path().to_path_buf(), resource.clone()).await;
    let second = token(home.path().to_path_buf(), resource.clone()).await;
    assert_eq!(
        (&first["token_type"], &second["token_type"]),
        (&json!("DPoP"), &json!("DPoP"))
    );
    let (a, b) = (
        first["access_token"].as_str().unwrap(),
        second["access_token"].as_str().unwrap(),
    );
    assert_ne!(a, b, "the 30 s token was refreshed");
    assert_eq!(jkt(a), jkt(b), "refreshed with the same key");

    // Another key in the stored record: the server refuses the refresh's proof.
    let files = key_files(home.path());
    assert_eq!(files.len(), 1);
    let mut record: Value = serde_json::from_slice(&std::fs::read(&files[0]).unwrap()).unwrap();
    let other = DpopKey::generate().unwrap();
    record["dpop_key"] = json!(URL_SAFE_NO_PAD.encode(other.to_pkcs8().unwrap()));
    std::fs::write(&files[0], record.to_string()).unwrap();
    let refused = run(home.path(), &["token", &resource]).await;
    assert_eq!(
        refused.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let status = run(home.path(), &["--json", "status"]).await;
    let list: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(list[0]["refresh_token"], false, "{list}");
    serve.kill().await.unwrap();
}
