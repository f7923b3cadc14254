//! `mcpauth gateway`: OAuth in front of an MCP server, with the embedded authorization server.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

use crate::common::{
    LIMIT, add, browser_login, claims_of, http, mcpauth, start_login, start_login_with, succeed,
};
use crate::gateway_stdio::PY_SERVER;

/// Starts a gateway; returns it and the banner lines (MCP URL first).
pub(crate) async fn start_gateway(
    home: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
) -> (Child, Vec<String>) {
    start_gateway_at(home, "127.0.0.1:0", args, envs).await
}

/// [`start_gateway`] listening at `bind`.
pub(crate) async fn start_gateway_at(
    home: &Path,
    bind: &str,
    args: &[&str],
    envs: &[(&str, &str)],
) -> (Child, Vec<String>) {
    let mut child = mcpauth(home)
        .envs(envs.iter().copied())
        .arg("gateway")
        .args(["--bind", bind])
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut banner = Vec::new();
    tokio::time::timeout(LIMIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let stop = line.contains("Press Ctrl-C");
            banner.push(line);
            if stop {
                return;
            }
        }
        panic!("the gateway stopped early: {banner:?}");
    })
    .await
    .unwrap();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, banner)
}

pub(crate) fn banner_value(banner: &[String], label: &str) -> String {
    banner
        .iter()
        .find_map(|l| l.trim().strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label} in {banner:?}"))
        .trim()
        .to_owned()
}

/// `--demo` never writes its demo user into a real database: a `--database` beside it is not
/// used, and the banner says so.
#[tokio::test]
async fn the_demo_says_it_does_not_use_the_database_given() {
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("real.db");
    let database = format!("sqlite://{}?mode=rwc", file.display());
    let (mut gateway, banner) =
        start_gateway(home.path(), &["--demo", "--database", &database], &[]).await;
    assert!(
        banner
            .iter()
            .any(|l| l.contains("--demo") && l.contains("not used")),
        "{banner:?}"
    );
    assert!(!file.exists(), "the demo wrote into {}", file.display());
    gateway.kill().await.unwrap();
}

/// A `gateway --demo`: the gateway, its MCP URL, the embedded issuer and the demo password.
pub(crate) async fn start_demo(home: &Path) -> (Child, String, String, String) {
    let (gateway, _, demo) = start_demo_with(home, &[]).await;
    (gateway, demo.url, demo.issuer, demo.password)
}

/// What a `gateway --demo` banner says.
pub(crate) struct Demo {
    pub url: String,
    pub issuer: String,
    pub password: String,
}

/// A `gateway --demo` with more flags: the gateway, its banner and what it says.
pub(crate) async fn start_demo_with(home: &Path, flags: &[&str]) -> (Child, Vec<String>, Demo) {
    let args: Vec<&str> = std::iter::once("--demo")
        .chain(flags.iter().copied())
        .collect();
    let (gateway, banner) = start_gateway(home, &args, &[]).await;
    let url = banner_value(&banner, "MCP server:");
    let password = banner_value(&banner, "demo login:")
        .split("password ")
        .nth(1)
        .unwrap()
        .to_owned();
    let issuer = url.trim_end_matches("/mcp").to_owned();
    (
        gateway,
        banner,
        Demo {
            url,
            issuer,
            password,
        },
    )
}

#[tokio::test]
async fn the_demo_works_end_to_end_with_login_and_a_tool_call() {
    let home = tempfile::tempdir().unwrap();
    let (mut gateway, url, issuer, password) = start_demo(home.path()).await;

    // S2/S6: no token, a 401 pointing at the protected resource metadata.
    let resp = http()
        .post(&url)
        .body("{}")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(
        resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("resource_metadata=")
    );

    // mcpauth login through the embedded authorization server's pages, as the demo user.
    let (mut login, auth_url) = start_login(home.path(), &url, &issuer).await;
    browser_login(&issuer, &auth_url, "demo", &password).await;
    assert!(
        tokio::time::timeout(LIMIT, login.wait())
            .await
            .unwrap()
            .unwrap()
            .success()
    );

    assert_eq!(add(home.path(), &url, 2, 3, &[]).await, "5");
    gateway.kill().await.unwrap();
}

/// `--access-token-ttl` sets how long the embedded server's access tokens live; a call after
/// one ran out refreshes it (RFC 6749 §6) without a new login.
#[tokio::test]
async fn a6_the_gateways_access_token_ttl_sets_token_lifetime_and_calls_refresh_after_it() {
    let home = tempfile::tempdir().unwrap();
    let (mut gateway, _, demo) = start_demo_with(home.path(), &["--access-token-ttl", "2"]).await;
    let (mut login, auth_url) = start_login(home.path(), &demo.url, &demo.issuer).await;
    browser_login(&demo.issuer, &auth_url, "demo", &demo.password).await;
    assert!(login.wait().await.unwrap().success());
    let out = succeed(mcpauth(home.path()).args(["token", &demo.url])).await;
    let claims = claims_of(String::from_utf8(out.stdout).unwrap().trim());
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        2
    );
    // Without a terminal a new login is impossible (exit 2): the call must refresh.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(add(home.path(), &demo.url, 2, 3, &[]).await, "5");
    gateway.kill().await.unwrap();
}

/// `--access-token-ttl` is about the embedded server: with an external issuer it is an error
/// that says where to set it, and 0 is refused, as a flag and in the settings file.
#[tokio::test]
async fn a6_the_gateways_access_token_ttl_refuses_an_external_issuer_and_zero() {
    let home = tempfile::tempdir().unwrap();
    let settings = home.path().join("gateway.toml");
    std::fs::write(&settings, "access_token_ttl = 0\n").unwrap();
    for (args, says) in [
        (
            vec!["--settings", settings.to_str().unwrap()],
            "--access-token-ttl must be at least 1 second",
        ),
        (
            vec![
                "--access-token-ttl",
                "60",
                "--issuer",
                "https://idp.example.com",
            ],
            "embedded authorization server",
        ),
        (vec!["--access-token-ttl", "0"], "--access-token-ttl"),
    ] {
        let out = tokio::time::timeout(
            LIMIT,
            mcpauth(home.path())
                .args([
                    "gateway",
                    "--bind",
                    "127.0.0.1:0",
                    "--upstream",
                    "http://127.0.0.1:9/mcp",
                ])
                .args(&args)
                .output(),
        )
        .await
        .unwrap()
        .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(says),
            "{args:?}: {err}"
        );
    }
}

/// What the test upstream saw.
#[derive(Default)]
pub(crate) struct Seen {
    authorization: Vec<Option<String>>,
    upstream_key: Vec<Option<String>>,
}

type Release = Arc<tokio::sync::Notify>;

pub(crate) async fn upstream(
    seen: Arc<Mutex<Seen>>,
    release: Release,
    headers: HeaderMap,
    body: String,
) -> Response {
    {
        let mut s = seen.lock().unwrap();
        s.authorization.push(
            headers
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_owned()),
        );
        s.upstream_key.push(
            headers
                .get("x-upstream-key")
                .map(|v| v.to_str().unwrap().to_owned()),
        );
    }
    let request: Value = serde_json::from_str(&body).unwrap_or(json!({}));
    let id = request["id"].clone();
    match request["method"].as_str().unwrap_or_default() {
        "initialize" => (
            [("mcp-session-id", "session-1")],
            axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": {"protocolVersion": "2025-11-25", "capabilities": {}, "serverInfo": {"name": "up", "version": "0"}}})),
        )
            .into_response(),
        "slow/stream" => {
            // One event now; the second only after the test saw the first through the gateway.
            let first = format!("data: {}\n\n", json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"n": 1}}));
            let last = format!("data: {}\n\n", json!({"jsonrpc": "2.0", "id": id, "result": {"done": true}}));
            let stream = async_stream(first, release, last);
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(Body::from_stream(stream))
                .unwrap()
        }
        _ => axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": {}})).into_response(),
    }
}

/// Yields `first`, waits for `release`, then yields `last`.
pub(crate) fn async_stream(
    first: String,
    release: Release,
    last: String,
) -> impl futures_core::Stream<Item = Result<bytes::Bytes, std::io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    tokio::spawn(async move {
        let _ = tx.send(Ok(bytes::Bytes::from(first))).await;
        release.notified().await;
        let _ = tx.send(Ok(bytes::Bytes::from(last))).await;
    });
    tokio_stream_from(rx)
}

pub(crate) fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<bytes::Bytes, std::io::Error>>,
) -> impl futures_core::Stream<Item = Result<bytes::Bytes, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

pub(crate) async fn client_token(issuer: &str, id: &str, secret: &str) -> String {
    let body: Value = http()
        .post(format!("{issuer}/token"))
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned()
}

/// Registers `clients` in a new database under `home`; their secrets and the database URL.
pub(crate) async fn add_clients(home: &Path, clients: &[&str]) -> (Vec<String>, String) {
    let database = format!("sqlite://{}?mode=rwc", home.join("gw.db").display());
    let mut secrets = Vec::new();
    for id in clients {
        let out = mcpauth(home)
            .args([
                "clients",
                "add",
                "--id",
                id,
                "--json",
                "--database",
                &database,
            ])
            .output()
            .await
            .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        secrets.push(v["client_secret"].as_str().unwrap().to_owned());
    }
    (secrets, database)
}

#[tokio::test]
async fn s5_s12_proxy_strips_tokens_binds_sessions_and_streams_events() {
    let home = tempfile::tempdir().unwrap();
    let (secrets, database) = add_clients(home.path(), &["alice-bot", "bob-bot"]).await;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let release: Release = Arc::new(tokio::sync::Notify::new());
    let (s2, r2) = (Arc::clone(&seen), Arc::clone(&release));
    let app = axum::Router::new().route(
        "/mcp",
        any(move |h: HeaderMap, b: String| upstream(Arc::clone(&s2), Arc::clone(&r2), h, b)),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_url = format!("http://{}/mcp", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let (mut gateway, banner) = start_gateway(
        home.path(),
        &[
            "--upstream",
            &upstream_url,
            "--upstream-header",
            "X-Upstream-Key: ${TEST_UPSTREAM_KEY}",
            "--database",
            &database,
        ],
        &[("TEST_UPSTREAM_KEY", "k-123")],
    )
    .await;
    let url = banner_value(&banner, "MCP server:");
    let issuer = url.trim_end_matches("/mcp").to_owned();
    let alice = client_token(&issuer, "alice-bot", &secrets[0]).await;
    let bob = client_token(&issuer, "bob-bot", &secrets[1]).await;
    let post = |token: &str, body: Value| {
        http()
            .post(&url)
            .bearer_auth(token)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body.to_string())
    };

    let init = post(
        &alice,
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(init.status(), 200);
    assert_eq!(init.headers()["mcp-session-id"], "session-1");
    {
        let s = seen.lock().unwrap();
        assert_eq!(
            s.authorization,
            vec![None],
            "S5: the client's token never reaches the upstream"
        );
        assert_eq!(
            s.upstream_key,
            vec![Some("k-123".to_owned())],
            "--upstream-header with ${{ENV}}"
        );
    }

    // S12: bob cannot use alice's session; alice can.
    let stolen = post(
        &bob,
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
    )
    .header("mcp-session-id", "session-1")
    .send()
    .await
    .unwrap();
    assert_eq!(stolen.status(), 403);
    let own = post(
        &alice,
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"}),
    )
    .header("mcp-session-id", "session-1")
    .send()
    .await
    .unwrap();
    assert_eq!(own.status(), 200);

    // SSE passes through event by event: the first event arrives while the upstream still
    // holds the second (it releases it only when the test has seen the first).
    let mut stream = post(
        &alice,
        json!({"jsonrpc": "2.0", "id": 4, "method": "slow/stream"}),
    )
    .header("mcp-session-id", "session-1")
    .send()
    .await
    .unwrap();
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let first = tokio::time::timeout(LIMIT, stream.chunk())
        .await
        .expect("the first event was held back")
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&first).contains("notifications/progress"));
    release.notify_one();
    let mut rest = Vec::new();
    while let Some(c) = tokio::time::timeout(LIMIT, stream.chunk())
        .await
        .unwrap()
        .unwrap()
    {
        rest.extend_from_slice(&c);
    }
    assert!(String::from_utf8_lossy(&rest).contains("\"done\":true"));

    // S11: an evil Origin is refused before anything else.
    let evil = post(&alice, json!({"jsonrpc": "2.0", "id": 5, "method": "ping"}))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(evil.status(), 403);
    gateway.kill().await.unwrap();
}

/// Streamable HTTP (2026-07-28) §Standard MCP Request Headers and §Custom Headers (SEP-2243):
/// the proxy passes `MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`, every `Mcp-Param-*`,
/// `Mcp-Session-Id` and `Last-Event-ID` to the upstream, and `Mcp-Session-Id` and
/// `MCP-Protocol-Version` back (MCP SPEC S5: still never the token).
#[tokio::test]
async fn sep2243_proxy_forwards_the_mcp_headers_both_ways() {
    let home = tempfile::tempdir().unwrap();
    let (secrets, database) = add_clients(home.path(), &["alice-bot"]).await;
    let seen = Arc::new(Mutex::new(Vec::<HeaderMap>::new()));
    let recorder = Arc::clone(&seen);
    let app = axum::Router::new().route(
        "/mcp",
        any(move |h: HeaderMap| async move {
            recorder.lock().unwrap().push(h);
            (
                [
                    ("mcp-session-id", "session-9"),
                    ("mcp-protocol-version", "2026-07-28"),
                ],
                axum::Json(json!({"jsonrpc": "2.0", "id": 1, "result": {}})),
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_url = format!("http://{}/mcp", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let (mut gateway, banner) = start_gateway(
        home.path(),
        &["--upstream", &upstream_url, "--database", &database],
        &[],
    )
    .await;
    let url = banner_value(&banner, "MCP server:");
    let issuer = url.trim_end_matches("/mcp").to_owned();
    let token = client_token(&issuer, "alice-bot", &secrets[0]).await;
    let sent = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "forecast"),
        ("mcp-param-region", "eu"),
        ("mcp-param-n", "=?base64?IDEg?="),
        ("mcp-session-id", "session-9"),
        ("last-event-id", "ev-7"),
    ];
    let mut request = http()
        .post(&url)
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    for (name, value) in sent {
        request = request.header(name, value);
    }
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "forecast", "arguments": {"region": "eu", "n": " 1 "}}});
    let response = request.body(body.to_string()).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["mcp-session-id"], "session-9");
    assert_eq!(response.headers()["mcp-protocol-version"], "2026-07-28");
    let got = seen.lock().unwrap().pop().unwrap();
    for (name, value) in sent {
        assert_eq!(
            got.get(name).and_then(|v| v.to_str().ok()),
            Some(value),
            "{name} did not reach the upstream"
        );
    }
    assert!(got.get("authorization").is_none(), "S5");
    gateway.kill().await.unwrap();
}

#[tokio::test]
async fn s7_tool_scopes_from_the_settings_file_are_enforced_in_one_challenge() {
    let home = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}?mode=rwc", home.path().join("gw.db").display());
    let server = home.path().join("server.py");
    std::fs::write(&server, PY_SERVER).unwrap();
    let settings = home.path().join("gateway.toml");
    std::fs::write(
        &settings,
        format!(
            "command = [\"python3\", \"{}\"]\n\n[tool_scopes]\npid = [\"proc:read\", \"proc:list\"]\n",
            server.display()
        ),
    )
    .unwrap();
    let out = mcpauth(home.path())
        .args([
            "clients",
            "add",
            "--id",
            "bot",
            "--json",
            "--database",
            &database,
        ])
        .output()
        .await
        .unwrap();
    let secret = serde_json::from_slice::<Value>(&out.stdout).unwrap()["client_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let (mut gateway, banner) = start_gateway(
        home.path(),
        &[
            "--settings",
            settings.to_str().unwrap(),
            "--database",
            &database,
        ],
        &[],
    )
    .await;
    assert!(
        banner.iter().any(|l| l.contains("stdio: python3")),
        "{banner:?}"
    );
    let url = banner_value(&banner, "MCP server:");
    let issuer = url.trim_end_matches("/mcp").to_owned();
    let token = |scope: &'static str| {
        let (issuer, secret) = (issuer.clone(), secret.clone());
        async move {
            let mut form = vec![("grant_type", "client_credentials")];
            if !scope.is_empty() {
                form.push(("scope", scope));
            }
            let body: Value = http()
                .post(format!("{issuer}/token"))
                .basic_auth("bot", Some(secret))
                .form(&form)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            body["access_token"]
                .as_str()
                .unwrap_or_else(|| panic!("{body}"))
                .to_owned()
        }
    };
    let rpc = |token: &str, session: Option<&str>, body: Value| {
        let mut r = http()
            .post(&url)
            .bearer_auth(token)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body.to_string());
        if let Some(s) = session {
            r = r.header("mcp-session-id", s);
        }
        r
    };
    let plain = token("").await;
    let init = rpc(&plain, None, json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(init.status(), 200);
    let session = init.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "pid", "arguments": {}}});
    let refused = rpc(&plain, Some(&session), call.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let challenges: Vec<&str> = refused
        .headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(challenges.len(), 1, "one challenge (S7)");
    assert!(
        challenges[0].contains("insufficient_scope")
            && challenges[0].contains("proc:read proc:list"),
        "{challenges:?}"
    );
    let scoped = token("proc:read proc:list").await;
    let ok = rpc(&scoped, Some(&session), call).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    gateway.kill().await.unwrap();
}

#[tokio::test]
async fn a_bad_settings_file_is_a_clear_error() {
    let home = tempfile::tempdir().unwrap();
    let settings = home.path().join("gateway.toml");
    std::fs::write(
        &settings,
        "upstream = \"http://127.0.0.1:9/mcp\"\nscopez = [\"typo\"]\n",
    )
    .unwrap();
    let out = tokio::time::timeout(
        LIMIT,
        mcpauth(home.path())
            .args([
                "gateway",
                "--bind",
                "127.0.0.1:0",
                "--settings",
                settings.to_str().unwrap(),
            ])
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a valid gateway settings file") && err.contains("scopez"),
        "{err}"
    );
}

/// A JSON-RPC `initialize` to the gateway with `token`; the HTTP status.
pub(crate) async fn initialize_with(url: &str, token: &str) -> u16 {
    http()
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"}}})
            .to_string(),
        )
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Security finding 1 (RFC 7009 §2): after `mcpauth logout` revoked the grant at the embedded
/// authorization server, the gateway refuses its access token at once, although the JWT has
/// not expired and the verifier caches verified tokens.
#[tokio::test]
async fn sec1_a_revoked_token_is_refused_at_once_by_the_embedded_gateway() {
    let home = tempfile::tempdir().unwrap();
    let (mut gateway, url, issuer, password) = start_demo(home.path()).await;
    // A Bearer token, presented by hand below (a DPoP-bound one needs a proof per request).
    let (mut login, auth_url) = start_login_with(home.path(), &url, &issuer, &["--no-dpop"]).await;
    browser_login(&issuer, &auth_url, "demo", &password).await;
    assert!(login.wait().await.unwrap().success());
    let token = mcpauth(home.path())
        .args(["token", &url])
        .output()
        .await
        .unwrap();
    assert!(token.status.success());
    let token = String::from_utf8(token.stdout).unwrap().trim().to_owned();
    assert_eq!(initialize_with(&url, &token).await, 200);

    let logout = mcpauth(home.path())
        .args(["logout", &url])
        .output()
        .await
        .unwrap();
    assert!(
        logout.status.success(),
        "{}",
        String::from_utf8_lossy(&logout.stderr)
    );
    assert_eq!(
        initialize_with(&url, &token).await,
        401,
        "a revoked access token was accepted"
    );
    gateway.kill().await.unwrap();
}
