//! Helpers shared by the test modules: the binary, HTTP without redirects, and a scripted
//! "browser" that logs in and consents through the authorization server's pages.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Bounds "this should happen" so a broken build fails instead of hanging.
pub const LIMIT: Duration = Duration::from_secs(60);

/// `mcpauth` with a private home and none of the caller's credentials or settings.
pub fn mcpauth(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mcpauth"));
    c.env("MCPAUTH_HOME", home)
        .env_remove("MCP_CLIENT_ID")
        .env_remove("MCP_CLIENT_SECRET")
        .env_remove("MCPAUTH_CLIENT_SECRET")
        .env_remove("MCPAUTH_STORE")
        .env_remove("MCPAUTH_DATABASE_URL")
        .env_remove("MCPAUTH_AUDIT_LOG")
        .env("RUST_LOG", "warn")
        .kill_on_drop(true);
    c
}

/// Stops a server with SIGTERM, which must end it cleanly (exit 0) within [`LIMIT`].
pub async fn stop(server: &mut Child) {
    let pid = server.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let status = tokio::time::timeout(LIMIT, server.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(
        status.success(),
        "the server did not stop cleanly: {status}"
    );
}

/// Runs `command` (within [`LIMIT`]), which must succeed; its output.
pub async fn succeed(command: &mut Command) -> std::process::Output {
    let out = tokio::time::timeout(LIMIT, command.output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The claims of a JWT, read without verification.
pub fn claims_of(jwt: &str) -> serde_json::Value {
    use base64::Engine;
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(jwt.split('.').nth(1).unwrap())
        .unwrap();
    serde_json::from_slice(&payload).unwrap()
}

/// An address on 127.0.0.1 where nothing listens (a port just given back).
pub fn closed_address() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// An HTTP client that does not follow redirects.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The value of a hidden form field.
pub fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} field in {html}"))
        + marker.len();
    html[start..][..html[start..].find('"').unwrap()].to_owned()
}

/// The session cookie a response sets.
pub fn cookie(resp: &reqwest::Response) -> String {
    resp.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

/// Starts `mcpauth login URL --no-browser` and returns it with the authorization URL it prints.
pub async fn start_login(home: &Path, resource: &str, issuer: &str) -> (Child, String) {
    start_login_with(home, resource, issuer, &[]).await
}

/// [`start_login`] with `extra` options.
pub async fn start_login_with(
    home: &Path,
    resource: &str,
    issuer: &str,
    extra: &[&str],
) -> (Child, String) {
    let mut login = mcpauth(home)
        .args(["login", resource, "--no-browser"])
        .args(extra)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(login.stderr.take().unwrap()).lines();
    let prefix = format!("{issuer}/authorize?");
    let url = tokio::time::timeout(LIMIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.trim().starts_with(&prefix) {
                return line.trim().to_owned();
            }
        }
        panic!("mcpauth login printed no authorization URL");
    })
    .await
    .unwrap();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (login, url)
}

/// The user's browser: opens the authorization URL, logs in, allows, and follows the redirect
/// back to the CLI's loopback listener.
pub async fn browser_login(issuer: &str, authorization_url: &str, user: &str, password: &str) {
    let page = http().get(authorization_url).send().await.unwrap();
    assert_eq!(page.status(), 200, "login page");
    let session = cookie(&page);
    let html = page.text().await.unwrap();
    let (session, html) = sign_in(issuer, &session, &html, user, password).await;
    assert!(
        html.contains("127.0.0.1"),
        "A10: the consent page shows the redirect host"
    );
    let resp = decide(issuer, &session, &html, "allow").await;
    assert_eq!(resp.status(), 303);
    let back = resp.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(reqwest::get(&back).await.unwrap().status(), 200);
}

/// Posts the login form `login_html` with the browser's `session` cookie: the new session
/// cookie and the consent page.
pub async fn sign_in(
    issuer: &str,
    session: &str,
    login_html: &str,
    user: &str,
    password: &str,
) -> (String, String) {
    let resp = http()
        .post(format!("{issuer}/authorize/login"))
        .header("cookie", session)
        .form(&[
            ("request_id", hidden(login_html, "request_id").as_str()),
            ("csrf", hidden(login_html, "csrf").as_str()),
            ("username", user),
            ("password", password),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "consent page");
    let session = cookie(&resp);
    (session, resp.text().await.unwrap())
}

/// Posts the consent form `consent_html` with `decision` (`allow` or `deny`).
pub async fn decide(
    issuer: &str,
    session: &str,
    consent_html: &str,
    decision: &str,
) -> reqwest::Response {
    http()
        .post(format!("{issuer}/authorize/consent"))
        .header("cookie", session)
        .form(&[
            ("request_id", hidden(consent_html, "request_id").as_str()),
            ("csrf", hidden(consent_html, "csrf").as_str()),
            ("decision", decision),
        ])
        .send()
        .await
        .unwrap()
}

/// `mcpauth call URL add {"a": A, "b": B} EXTRA…` in `home`, which must succeed: the sum the
/// tool answered (the demo's and the test servers' `add`).
pub async fn add(home: &Path, url: &str, a: i64, b: i64, extra: &[&str]) -> String {
    let out = succeed(
        mcpauth(home)
            .args(["call", url, "add", &format!(r#"{{"a": {a}, "b": {b}}}"#)])
            .args(extra),
    )
    .await;
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    result["content"][0]["text"].as_str().unwrap().to_owned()
}

/// The files under `dir` whose text contains `needle` (e.g. the token records holding a key).
pub fn files_containing(dir: &Path, needle: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if std::fs::read_to_string(&path).is_ok_and(|t| t.contains(needle)) {
                out.push(path);
            }
        }
    }
    out
}

/// An `initialize` POST to `url` with the DPoP-bound `token` and `proof`.
pub async fn dpop_initialize(url: &str, token: &str, proof: String) -> reqwest::Response {
    http()
        .post(url)
        .header("authorization", format!("DPoP {token}"))
        .header("dpop", proof)
        .header("accept", "application/json, text/event-stream")
        .json(
            &serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"}}}),
        )
        .send()
        .await
        .unwrap()
}
