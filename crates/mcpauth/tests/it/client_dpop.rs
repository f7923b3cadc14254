//! DPoP in the CLI (RFC 9449, SPEC D1-D3): `mcpauth login` against the gateway's embedded
//! authorization server (which advertises ES256 proofs) binds the tokens to a key; `call` works
//! with the gateway requiring DPoP; `status` shows the token type; `token --header` alone is
//! refused and `token --header --method M --url U` prints a working Authorization + DPoP pair.

use serde_json::{Value, json};

use crate::common::{LIMIT, browser_login, http, mcpauth, start_login};
use crate::gateway::{banner_value, start_gateway};

async fn run(home: &std::path::Path, args: &[&str]) -> std::process::Output {
    tokio::time::timeout(LIMIT, mcpauth(home).args(args).output())
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn d1_d3_login_call_status_and_token_header_with_a_bound_token() {
    let home = tempfile::tempdir().unwrap();
    let (mut gateway, banner) =
        start_gateway(home.path(), &["--demo", "--dpop", "require"], &[]).await;
    let url = banner_value(&banner, "MCP server:");
    let password = banner_value(&banner, "demo login:")
        .split("password ")
        .nth(1)
        .unwrap()
        .to_owned();
    let issuer = url.trim_end_matches("/mcp").to_owned();
    let (mut login, auth_url) = start_login(home.path(), &url, &issuer).await;
    browser_login(&issuer, &auth_url, "demo", &password).await;
    assert!(login.wait().await.unwrap().success());

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

    let pair = run(
        home.path(),
        &["token", &url, "--header", "--method", "POST", "--url", &url],
    )
    .await;
    assert!(
        pair.status.success(),
        "{}",
        String::from_utf8_lossy(&pair.stderr)
    );
    let text = String::from_utf8(pair.stdout).unwrap();
    let lines: Vec<(&str, &str)> = text.lines().map(|l| l.split_once(": ").unwrap()).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0].0, "Authorization");
    assert!(lines[0].1.starts_with("DPoP "));
    assert_eq!(lines[1].0, "DPoP");
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"}}});
    let send = |proof: &str| {
        http()
            .post(&url)
            .header("authorization", lines[0].1)
            .header("dpop", proof.to_owned())
            .header("accept", "application/json, text/event-stream")
            .json(&initialize)
            .send()
    };
    assert_eq!(send(lines[1].1).await.unwrap().status(), 200);
    // The proof was for that one request: a replay is refused (RFC 9449 §11.1).
    assert_eq!(send(lines[1].1).await.unwrap().status(), 401);

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
