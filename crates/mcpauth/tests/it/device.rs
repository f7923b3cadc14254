//! `mcpauth login --device` (RFC 8628, SPEC V1-V2) against the gateway's embedded
//! authorization server: the CLI prints the verification address and the code, the user (this
//! test, over HTTP) opens the address with the code filled in, signs in and allows on the
//! consent page with its remote-phishing warning; the CLI's polls then get the tokens and
//! `mcpauth call` works. A denial ends the login with a clear error.

use std::process::Stdio;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

use crate::common::{LIMIT, add, cookie, decide, hidden, http, mcpauth, sign_in};
use crate::gateway::start_demo_with;

/// `mcpauth login URL --device`: the running login and the `verification_uri_complete` it
/// printed.
async fn start_device_login(home: &std::path::Path, url: &str) -> (Child, String) {
    spawn_login(home, &["login", url, "--device", "--no-browser"]).await
}

/// `mcpauth ARGS` (a login that prints a device code), on a machine without a browser: the
/// login and the `verification_uri_complete` it printed.
async fn spawn_login(home: &std::path::Path, args: &[&str]) -> (Child, String) {
    let mut login = mcpauth(home)
        .args(args)
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .env_remove("BROWSER")
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(login.stderr.take().unwrap()).lines();
    let complete = tokio::time::timeout(LIMIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("/device?user_code=") {
                return line.trim().to_owned();
            }
        }
        panic!("mcpauth login --device printed no verification address");
    })
    .await
    .unwrap();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (login, complete)
}

/// The user on another device: opens `complete`, submits the code, signs in; returns the
/// session cookie and the consent page.
async fn approve_page(issuer: &str, complete: &str, password: &str) -> (String, String) {
    let page = http().get(complete).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let session = cookie(&page);
    let html = page.text().await.unwrap();
    let code = hidden(&html, "user_code");
    assert!(complete.ends_with(&code), "the code is filled in");
    let resp = http()
        .post(format!("{issuer}/device"))
        .header("cookie", &session)
        .form(&[
            ("csrf", hidden(&html, "csrf").as_str()),
            ("user_code", &code),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "the login page");
    let login = resp.text().await.unwrap();
    let (session, consent) = sign_in(issuer, &session, &login, "demo", password).await;
    assert!(consent.contains(&code), "the warning names the code");
    assert!(consent.contains("Only allow a device you have in front of you"));
    (session, consent)
}

#[tokio::test]
async fn v1_login_device_then_call() {
    let home = tempfile::tempdir().unwrap();
    let (mut gateway, _, demo) = start_demo_with(home.path(), &[]).await;
    let (mut login, complete) = start_device_login(home.path(), &demo.url).await;
    assert!(complete.starts_with(&format!("{}/device?user_code=", demo.issuer)));
    let (session, consent) = approve_page(&demo.issuer, &complete, &demo.password).await;
    let resp = decide(&demo.issuer, &session, &consent, "allow").await;
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().contains("Device connected"));
    let status = tokio::time::timeout(LIMIT, login.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());

    assert_eq!(add(home.path(), &demo.url, 20, 22, &[]).await, "42");
    gateway.kill().await.unwrap();
}

#[tokio::test]
async fn v2_a_denied_device_login_fails_clearly() {
    let home = tempfile::tempdir().unwrap();
    let (mut gateway, _, demo) = start_demo_with(home.path(), &[]).await;
    let (login, complete) = start_device_login(home.path(), &demo.url).await;
    let (session, consent) = approve_page(&demo.issuer, &complete, &demo.password).await;
    let resp = decide(&demo.issuer, &session, &consent, "deny").await;
    assert!(resp.text().await.unwrap().contains("Device not connected"));
    let out = tokio::time::timeout(LIMIT, login.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(!out.status.success());
    let status = mcpauth(home.path())
        .args(["--json", "status"])
        .output()
        .await
        .unwrap();
    let list: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(
        list.as_array().map(Vec::len),
        Some(0),
        "nothing stored: {list}"
    );
    gateway.kill().await.unwrap();
}

/// SPEC V1: no browser (no DISPLAY, WAYLAND_DISPLAY or BROWSER) and no terminal on stdin, and the
/// server offers the device grant: `mcpauth login` uses it by itself.
#[tokio::test]
async fn v1_without_a_browser_or_terminal_login_picks_the_device_grant() {
    let home = tempfile::tempdir().unwrap();
    let (mut gateway, _, demo) = start_demo_with(home.path(), &[]).await;
    let (mut login, complete) = spawn_login(home.path(), &["login", &demo.url]).await;
    let (session, consent) = approve_page(&demo.issuer, &complete, &demo.password).await;
    let resp = decide(&demo.issuer, &session, &consent, "allow").await;
    assert_eq!(resp.status(), 200);
    let status = tokio::time::timeout(LIMIT, login.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    gateway.kill().await.unwrap();
}

/// V1 against `mcpauth serve` (in front of a resource that names it): `login --device`, the
/// page over HTTP as a local user, then `mcpauth token` answers from the stored grant.
#[tokio::test]
async fn v1_login_device_against_serve() {
    let home = tempfile::tempdir().unwrap();
    let (mut serve, issuer, resource) = crate::serve::serve_for_resource(home.path(), &[]).await;

    let (mut login, complete) = start_device_login(home.path(), &resource).await;
    let page = http().get(&complete).send().await.unwrap();
    let session = cookie(&page);
    let html = page.text().await.unwrap();
    let resp = http()
        .post(format!("{issuer}/device"))
        .header("cookie", &session)
        .form(&[
            ("csrf", hidden(&html, "csrf")),
            ("user_code", hidden(&html, "user_code")),
        ])
        .send()
        .await
        .unwrap();
    let login_page = resp.text().await.unwrap();
    let (session, consent) = sign_in(
        &issuer,
        &session,
        &login_page,
        "alice",
        crate::serve::PASSWORD,
    )
    .await;
    assert_eq!(
        decide(&issuer, &session, &consent, "allow").await.status(),
        200
    );
    assert!(
        tokio::time::timeout(LIMIT, login.wait())
            .await
            .unwrap()
            .unwrap()
            .success()
    );
    let out = mcpauth(home.path())
        .args(["token", &resource])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ey"));
    serve.kill().await.unwrap();
}
