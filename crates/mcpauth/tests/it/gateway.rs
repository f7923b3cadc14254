//! `mcpauth gateway`: OAuth in front of an MCP server, with the embedded authorization server.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

use crate::common::{LIMIT, browser_login, http, mcpauth, start_login};

/// Starts a gateway; returns it and the banner lines (MCP URL first).
pub(crate) async fn start_gateway(
    home: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
) -> (Child, Vec<String>) {
    let mut child = mcpauth(home)
        .envs(envs.iter().copied())
        .arg("gateway")
        .args(["--bind", "127.0.0.1:0"])
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

/// A `gateway --demo`: the gateway, its MCP URL, the embedded issuer and the demo password.
async fn start_demo(home: &Path) -> (Child, String, String, String) {
    let (gateway, banner) = start_gateway(home, &["--demo"], &[]).await;
    let url = banner_value(&banner, "MCP server:");
    let password = banner_value(&banner, "demo login:")
        .split("password ")
        .nth(1)
        .unwrap()
        .to_owned();
    let issuer = url.trim_end_matches("/mcp").to_owned();
    (gateway, url, issuer, password)
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

    let out = tokio::time::timeout(
        LIMIT,
        mcpauth(home.path())
            .args(["call", &url, "add", r#"{"a": 2, "b": 3}"#])
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["content"][0]["text"], "5");
    gateway.kill().await.unwrap();
}

/// What the test upstream saw.
#[derive(Default)]
struct Seen {
    authorization: Vec<Option<String>>,
    upstream_key: Vec<Option<String>>,
}

type Release = Arc<tokio::sync::Notify>;

async fn upstream(
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
fn async_stream(
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

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<bytes::Bytes, std::io::Error>>,
) -> impl futures_core::Stream<Item = Result<bytes::Bytes, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

async fn client_token(issuer: &str, id: &str, secret: &str) -> String {
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
async fn add_clients(home: &Path, clients: &[&str]) -> (Vec<String>, String) {
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

/// A stdio MCP server whose tools answer with its process id (`pid`) or its environment
/// (`env`), exit without answering (`exit`), create the file `mark` and then hang (`sleep`),
/// or send progress (to the call's `progressToken`) and a log message, ask the client for a
/// sampling, and answer with the sampled text (`sample`), or the log level last set (`level`),
/// or the answer to the `roots/list` request it sends when told the roots changed (`roots`), or
/// wait for the next request, log a message and answer that request and then its own (`hold`),
/// or say its tool list changed (`change`), or wait for a cancellation and answer with the
/// request id it names (`cancellable`).
pub(crate) const PY_SERVER: &str = r#"
import json, os, sys, time
level = roots = None
queue = []
def send(m):
    print(json.dumps(dict(m, jsonrpc="2.0")), flush=True)
def ask(request):
    send(request)
    while True:
        line = sys.stdin.readline()
        answer = json.loads(line)
        if answer.get("id") == request["id"] and "method" not in answer:
            return answer
        queue.append(line)
while True:
    line = queue.pop(0) if queue else sys.stdin.readline()
    if not line:
        break
    m = json.loads(line)
    if "id" not in m:
        if m.get("method") == "notifications/roots/list_changed":
            roots = ask({"id": "r-1", "method": "roots/list"})
        continue
    method = m.get("method")
    if method == "initialize":
        r = {"protocolVersion": m["params"].get("protocolVersion", "2025-11-25"), "capabilities": {"tools": {"listChanged": True}, "logging": {}},
             "serverInfo": {"name": "py", "version": "0"}}
    elif method == "logging/setLevel":
        level = m["params"]["level"]
        r = {}
    elif method == "tools/list":
        r = {"tools": [{"name": "pid", "inputSchema": {"type": "object", "properties": {
            "region": {"type": "string", "x-mcp-header": "Region"}}}}]}
    elif method == "tools/call":
        name = m["params"]["name"]
        if name == "exit":
            os._exit(3)
        if name == "sleep":
            open(m["params"]["arguments"]["mark"], "w").close()
            time.sleep(600)
        if name == "cancellable":
            cancel = json.loads(sys.stdin.readline())
            send({"id": m["id"], "result": {"content": [{"type": "text", "text": json.dumps(cancel["params"]["requestId"])}]}})
            continue
        if name == "change":
            send({"method": "notifications/tools/list_changed"})
        if name == "hold":
            other = json.loads(sys.stdin.readline())
            send({"method": "notifications/message", "params": {"level": "info", "data": "both"}})
            send({"id": other["id"], "result": {"content": [{"type": "text", "text": "other"}]}})
        if name == "sample":
            token = m["params"]["_meta"]["progressToken"]
            send({"method": "notifications/progress", "params": {"progressToken": token, "progress": 1}})
            send({"method": "notifications/message", "params": {"level": "info", "data": "sampling"}})
            answer = ask({"id": "s-1", "method": "sampling/createMessage", "params": {"messages": [], "maxTokens": 9}})
            text = answer["result"]["content"]["text"]
        elif name == "level":
            text = str(level)
        elif name == "roots":
            text = json.dumps(roots)
        else:
            text = json.dumps(dict(os.environ)) if name == "env" else str(os.getpid())
        r = {"content": [{"type": "text", "text": text}]}
    else:
        r = {}
    send({"id": m["id"], "result": r})
"#;

fn alive(pid: &str) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

async fn gone(pid: &str) {
    tokio::time::timeout(LIMIT, async {
        while alive(pid) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("process {pid} was not reaped"));
}

/// The processes whose parent is `parent`.
fn children(parent: u32) -> Vec<String> {
    let parent = parent.to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let pid = e.ok()?.file_name().into_string().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let ppid = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?;
            (ppid == parent).then_some(pid)
        })
        .collect()
}

/// A gateway serving [`PY_SERVER`] over stdio (`-- python3 server.py`) with the embedded
/// authorization server, and a client credentials token for each of its clients.
struct StdioGateway {
    process: Child,
    url: String,
    tokens: Vec<String>,
    home: tempfile::TempDir,
}

impl StdioGateway {
    /// Starts it with `flags`, a settings file holding `settings`, and `envs` in its
    /// environment; registers `clients` and gets their tokens.
    async fn start(
        clients: &[&str],
        flags: &[&str],
        settings: &str,
        envs: &[(&str, &str)],
    ) -> Self {
        let home = tempfile::tempdir().unwrap();
        let database = format!("sqlite://{}?mode=rwc", home.path().join("gw.db").display());
        let server = home.path().join("server.py");
        std::fs::write(&server, PY_SERVER).unwrap();
        let settings_file = home.path().join("gateway.toml");
        std::fs::write(&settings_file, settings).unwrap();
        let mut secrets = Vec::new();
        for id in clients {
            let out = mcpauth(home.path())
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
        let mut args = vec![
            "--database",
            &database,
            "--settings",
            settings_file.to_str().unwrap(),
        ];
        args.extend_from_slice(flags);
        args.extend(["--", "python3", server.to_str().unwrap()]);
        let (process, banner) = start_gateway(home.path(), &args, envs).await;
        let url = banner_value(&banner, "MCP server:");
        let issuer = url.trim_end_matches("/mcp").to_owned();
        let mut tokens = Vec::new();
        for (id, secret) in clients.iter().zip(&secrets) {
            tokens.push(client_token(&issuer, id, secret).await);
        }
        Self {
            process,
            url,
            tokens,
            home,
        }
    }

    /// A JSON-RPC POST as the `user`th client, in `session` if given.
    fn post(&self, user: usize, session: Option<&str>, body: Value) -> reqwest::RequestBuilder {
        let mut r = http()
            .post(&self.url)
            .bearer_auth(&self.tokens[user])
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body.to_string());
        if let Some(s) = session {
            r = r.header("mcp-session-id", s);
        }
        r
    }

    /// `initialize` (id 1) without a session.
    async fn initialize(&self, user: usize) -> reqwest::Response {
        let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25"}});
        self.post(user, None, init).send().await.unwrap()
    }

    /// `tools/call` (id 2) of `tool` with `arguments` in `session`.
    async fn call(
        &self,
        user: usize,
        session: &str,
        tool: &str,
        arguments: Value,
    ) -> reqwest::Response {
        let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": tool, "arguments": arguments}});
        self.post(user, Some(session), call).send().await.unwrap()
    }

    /// Opens a session as the `user`th client; its id and its process id.
    async fn open(&self, user: usize) -> (String, String) {
        let r = self.initialize(user).await;
        assert_eq!(r.status(), 200);
        let session = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
        let answer: Value = r.json().await.unwrap();
        assert_eq!(answer["result"]["serverInfo"]["name"], "py");
        let pid: Value = self
            .call(user, &session, "pid", json!({}))
            .await
            .json()
            .await
            .unwrap();
        let pid = pid["result"]["content"][0]["text"].as_str().unwrap();
        (session, pid.to_owned())
    }

    /// DELETE of `session` as the `user`th client.
    async fn delete(&self, user: usize, session: &str) -> reqwest::Response {
        http()
            .delete(&self.url)
            .bearer_auth(&self.tokens[user])
            .header("mcp-session-id", session)
            .send()
            .await
            .unwrap()
    }

    /// The stdio server processes it runs now.
    fn children(&self) -> Vec<String> {
        children(self.process.id().unwrap())
    }
}

#[tokio::test]
async fn s12_a_stdio_server_gets_one_process_per_session_bound_to_its_user() {
    let mut gw = StdioGateway::start(&["alice-bot", "bob-bot"], &[], "", &[]).await;
    let (alice_session, alice_pid) = gw.open(0).await;
    let (_bob_session, bob_pid) = gw.open(1).await;
    assert_ne!(alice_pid, bob_pid, "one process per session");
    assert!(alive(&alice_pid) && alive(&bob_pid));

    // S12: bob cannot use alice's session.
    let stolen = gw.call(1, &alice_session, "pid", json!({})).await;
    assert_eq!(stolen.status(), 403);

    // DELETE ends the session and its process.
    assert_eq!(gw.delete(0, &alice_session).await.status(), 204);
    gone(&alice_pid).await;
    assert_eq!(
        gw.call(0, &alice_session, "pid", json!({})).await.status(),
        404
    );

    // Stopping the gateway stops the remaining children.
    let pid = gw.process.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(
        tokio::time::timeout(LIMIT, gw.process.wait())
            .await
            .unwrap()
            .unwrap()
            .success()
    );
    gone(&bob_pid).await;
}

/// The next event of an SSE response (`buffer` holds what was read beyond it), or `None` at
/// its end.
async fn next_event(response: &mut reqwest::Response, buffer: &mut String) -> Option<Value> {
    loop {
        if let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            let data = event.lines().find_map(|l| l.strip_prefix("data: "))?;
            return Some(serde_json::from_str(data).unwrap());
        }
        let chunk = tokio::time::timeout(LIMIT, response.chunk())
            .await
            .expect("the stream stalled")
            .unwrap()?;
        buffer.push_str(&String::from_utf8_lossy(&chunk));
    }
}

/// Issue 13: with no GET stream open, what a stdio server sends while answering a call —
/// progress for the call's `progressToken`, a log message, a sampling request — goes on the
/// call's POST SSE stream (Streamable HTTP §Sending Messages to the Server: related messages
/// on the request's stream), the client's answer to the sampling request, POSTed, reaches
/// the server, and the call's result comes last on the same stream.
#[tokio::test]
async fn issue13_shttp_messages_related_to_a_stdio_call_go_on_its_post_stream() {
    let gw = StdioGateway::start(&["alice-bot"], &[], "", &[]).await;
    let (session, _) = gw.open(0).await;
    let call = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "sample", "arguments": {}, "_meta": {"progressToken": "p-7"}}});
    let mut stream = tokio::time::timeout(LIMIT, gw.post(0, Some(&session), call).send())
        .await
        .expect("the call's stream did not start")
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let mut buffer = String::new();
    let progress = next_event(&mut stream, &mut buffer).await.unwrap();
    assert_eq!(progress["method"], "notifications/progress");
    assert_eq!(progress["params"]["progressToken"], "p-7");
    let log = next_event(&mut stream, &mut buffer).await.unwrap();
    assert_eq!(log["method"], "notifications/message");
    let sampling = next_event(&mut stream, &mut buffer).await.unwrap();
    assert_eq!(sampling["method"], "sampling/createMessage");
    let answer = json!({"jsonrpc": "2.0", "id": sampling["id"], "result": {"role": "assistant", "model": "m", "content": {"type": "text", "text": "sampled"}}});
    let accepted = gw.post(0, Some(&session), answer).send().await.unwrap();
    assert_eq!(accepted.status(), 202);
    let result = next_event(&mut stream, &mut buffer).await.unwrap();
    assert_eq!(result["id"], 7);
    assert_eq!(result["result"]["content"][0]["text"], "sampled");
    assert!(
        next_event(&mut stream, &mut buffer).await.is_none(),
        "the result is the last event"
    );
}

/// Issue 13: a message sent while several requests are in flight goes on the most recent
/// one's stream (the rule of `Pending::related`; Streamable HTTP §Sending Messages to the
/// Server).
#[tokio::test]
async fn issue13_shttp_with_several_calls_in_flight_messages_go_to_the_most_recent() {
    let gw = Arc::new(StdioGateway::start(&["alice-bot"], &[], "", &[]).await);
    let (session, _) = gw.open(0).await;
    let (g, s) = (Arc::clone(&gw), session.clone());
    let first = tokio::spawn(async move { g.call(0, &s, "hold", json!({})).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "pid", "arguments": {}}});
    let mut stream = tokio::time::timeout(LIMIT, gw.post(0, Some(&session), second).send())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let mut buffer = String::new();
    let log = next_event(&mut stream, &mut buffer).await.unwrap();
    assert_eq!(log["params"]["data"], "both");
    let answer = next_event(&mut stream, &mut buffer).await.unwrap();
    assert_eq!(answer["id"], 3);
    let first = tokio::time::timeout(LIMIT, first).await.unwrap().unwrap();
    assert_eq!(first.headers()["content-type"], "application/json");
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["id"], 2);
}

/// Issue 13: a server request related to no request in flight, with no GET stream open to
/// carry it, gets an error at once (the server would otherwise wait for an answer forever).
#[tokio::test]
async fn issue13_shttp_a_server_request_with_no_stream_to_take_it_fails_at_once() {
    let gw = StdioGateway::start(&["alice-bot"], &[], "", &[]).await;
    let (session, _) = gw.open(0).await;
    let changed = json!({"jsonrpc": "2.0", "method": "notifications/roots/list_changed"});
    let accepted = gw.post(0, Some(&session), changed).send().await.unwrap();
    assert_eq!(accepted.status(), 202);
    // Time for the server's request to arrive while no call is in flight (else it belongs to
    // the call).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let roots: Value = tokio::time::timeout(LIMIT, gw.call(0, &session, "roots", json!({})))
        .await
        .expect("the server still waits for its roots/list answer")
        .json()
        .await
        .unwrap();
    let answer: Value =
        serde_json::from_str(roots["result"]["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(answer["id"], "r-1");
    assert_eq!(answer["error"]["code"], -32601);
}

/// Issue 13 defect C (MCP 2026-07-28 "Versioning" §Backward Compatibility, as `mcpauth connect`
/// bridges): a 2026-07-28 client uses a stdio server without `initialize` or a session. The
/// gateway initializes one process per user itself, answers `server/discover` from its
/// `InitializeResult`, takes the per-request `_meta` out, and completes the results
/// (`resultType`, SEP-2322), the client's ids kept.
#[tokio::test]
async fn issue13_a_2026_07_28_client_uses_a_stdio_server_without_a_session() {
    let gw = StdioGateway::start(&["alice-bot", "bob-bot"], &[], "", &[]).await;
    let stateless = |user: usize, id: u64, method: &str, params: Value| {
        let mut params = params;
        let meta = json!({
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "modern", "version": "0"},
            "io.modelcontextprotocol/logLevel": "debug",
        });
        for (key, value) in meta.as_object().unwrap() {
            if params["_meta"].get(key).is_none() {
                params["_meta"][key] = value.clone();
            }
        }
        let name = params["name"].as_str().map(str::to_owned);
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let mut request = gw
            .post(user, None, body)
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", method);
        if let Some(name) = name {
            request = request.header("mcp-name", name);
        }
        request.send()
    };
    let discover = stateless(0, 1, "server/discover", json!({})).await.unwrap();
    assert_eq!(discover.status(), 200);
    assert!(discover.headers().get("mcp-session-id").is_none());
    let discover: Value = discover.json().await.unwrap();
    assert_eq!(discover["id"], 1);
    assert_eq!(
        discover["result"]["supportedVersions"],
        json!(["2026-07-28"])
    );
    assert!(discover["result"]["capabilities"]["tools"].is_object());
    assert_eq!(
        discover["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "py"
    );
    let mut pids = Vec::new();
    for (user, id) in [(0, 2), (0, 3), (1, 4)] {
        let call = stateless(
            user,
            id,
            "tools/call",
            json!({"name": "pid", "arguments": {}}),
        )
        .await
        .unwrap();
        assert_eq!(call.status(), 200);
        assert!(call.headers().get("mcp-session-id").is_none());
        let call: Value = call.json().await.unwrap();
        assert_eq!(call["id"], id);
        assert_eq!(call["result"]["resultType"], "complete");
        pids.push(
            call["result"]["content"][0]["text"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(pids[0], pids[1], "one process per user");
    // SEP-2243 (Streamable HTTP §Standard MCP Request Headers): the headers must match the body.
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28"});
    for (method, name) in [("tools/list", "pid"), ("tools/call", "env")] {
        let call = json!({"jsonrpc": "2.0", "id": 12, "method": "tools/call",
            "params": {"name": "pid", "arguments": {}, "_meta": meta}});
        let refused = gw
            .post(0, None, call)
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", method)
            .header("mcp-name", name)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 400);
        let refused: Value = refused.json().await.unwrap();
        assert_eq!(refused["error"]["code"], -32020, "HeaderMismatch");
    }
    // Once `tools/list` told it, `x-mcp-header` parameters must be mirrored too (§Custom
    // Headers).
    let list: Value = stateless(0, 13, "tools/list", json!({}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["result"]["tools"][0]["name"], "pid");
    let in_eu = json!({"name": "pid", "arguments": {"region": "eu"}});
    let unmirrored = stateless(0, 14, "tools/call", in_eu.clone()).await.unwrap();
    assert_eq!(unmirrored.status(), 400);
    let mut call = in_eu;
    call["_meta"] = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28"});
    let mirrored = gw
        .post(
            0,
            None,
            json!({"jsonrpc": "2.0", "id": 15, "method": "tools/call", "params": call}),
        )
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "pid")
        .header("mcp-param-region", "eu")
        .send()
        .await
        .unwrap();
    assert_eq!(mirrored.status(), 200);
    let level: Value = stateless(
        0,
        5,
        "tools/call",
        json!({"name": "level", "arguments": {}}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(
        level["result"]["content"][0]["text"], "debug",
        "the _meta log level became logging/setLevel"
    );
    assert_ne!(pids[0], pids[2], "S12: not shared between users");
    assert_eq!(gw.children().len(), 2);

    // MCP 2026-07-28 "Multi Round-Trip Requests": the server's sampling request in the middle
    // of a call ends the call's stream with an `input_required` result; the retry carries the
    // answer back to the waiting server and gets the call's result.
    let call = json!({"name": "sample", "arguments": {}, "_meta": {"progressToken": "p-6"}});
    let mut stream = stateless(0, 6, "tools/call", call.clone()).await.unwrap();
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let mut buffer = String::new();
    let mut events = Vec::new();
    while let Some(event) = next_event(&mut stream, &mut buffer).await {
        events.push(event);
    }
    let methods: Vec<&Value> = events.iter().map(|e| &e["method"]).collect();
    assert_eq!(
        methods,
        [
            &json!("notifications/progress"),
            &json!("notifications/message"),
            &Value::Null
        ]
    );
    let last = events.pop().unwrap();
    assert_eq!(last["id"], 6);
    let interim = &last["result"];
    assert_eq!(interim["resultType"], "input_required");
    let (key, request) = interim["inputRequests"]
        .as_object()
        .unwrap()
        .iter()
        .next()
        .unwrap();
    assert_eq!(request["method"], "sampling/createMessage");
    let mut retry = call;
    retry["requestState"] = interim["requestState"].clone();
    retry["inputResponses"] = json!({key: {"role": "assistant", "model": "m", "content": {"type": "text", "text": "sampled"}}});
    // S12: the requestState is alice's; bob cannot resume her call.
    let stolen = stateless(1, 7, "tools/call", retry.clone()).await.unwrap();
    assert_eq!(stolen.status(), 400);
    let done = stateless(0, 8, "tools/call", retry).await.unwrap();
    assert_eq!(done.status(), 200);
    let done: Value = done.json().await.unwrap();
    assert_eq!(done["id"], 8);
    assert_eq!(done["result"]["content"][0]["text"], "sampled");

    // 2026-07-28 "Subscriptions": `subscriptions/listen` opens a stream that is acknowledged and
    // gets the list changes asked for, tagged with its id; they go nowhere else.
    let listen = json!({"notifications": {"toolsListChanged": true, "promptsListChanged": true}});
    let mut subscription = stateless(0, 10, "subscriptions/listen", listen)
        .await
        .unwrap();
    assert_eq!(subscription.headers()["content-type"], "text/event-stream");
    let mut buffer = String::new();
    let ack = next_event(&mut subscription, &mut buffer).await.unwrap();
    assert_eq!(ack["method"], "notifications/subscriptions/acknowledged");
    assert_eq!(
        ack["params"]["notifications"],
        json!({"toolsListChanged": true}),
        "the server cannot tell prompt list changes"
    );
    let change = stateless(
        0,
        11,
        "tools/call",
        json!({"name": "change", "arguments": {}}),
    )
    .await
    .unwrap();
    assert_eq!(change.headers()["content-type"], "application/json");
    let changed = next_event(&mut subscription, &mut buffer).await.unwrap();
    assert_eq!(changed["method"], "notifications/tools/list_changed");
    assert_eq!(
        changed["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        10
    );
    // "Subscriptions" §Cancellation: notifications/cancelled naming it ends the stream.
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 10,
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}});
    let cancelled = gw
        .post(0, None, cancel)
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "notifications/cancelled")
        .send()
        .await
        .unwrap();
    assert_eq!(cancelled.status(), 202);
    assert!(next_event(&mut subscription, &mut buffer).await.is_none());

    // notifications/cancelled names the request by the client's id; the server knows it by
    // the gateway's.
    let cancellable = stateless(
        0,
        16,
        "tools/call",
        json!({"name": "cancellable", "arguments": {}}),
    );
    let cancellable = tokio::spawn(cancellable);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 16,
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}});
    let cancelled = gw
        .post(0, None, cancel)
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "notifications/cancelled")
        .send()
        .await
        .unwrap();
    assert_eq!(cancelled.status(), 202);
    let named: Value = tokio::time::timeout(LIMIT, cancellable)
        .await
        .unwrap()
        .unwrap()
        .unwrap()
        .json()
        .await
        .unwrap();
    let named = named["result"]["content"][0]["text"].as_str().unwrap();
    assert!(named.starts_with("\"mcpauth-"), "{named}");

    // 2026-07-28: log messages reach only a request whose `_meta` asked for them (logLevel).
    let quiet = json!({"name": "sample", "arguments": {},
        "_meta": {"progressToken": "p-9", "io.modelcontextprotocol/logLevel": null}});
    let mut stream = stateless(0, 9, "tools/call", quiet).await.unwrap();
    let mut buffer = String::new();
    let progress = next_event(&mut stream, &mut buffer).await.unwrap();
    assert_eq!(progress["params"]["progressToken"], "p-9");
    let interim = next_event(&mut stream, &mut buffer).await.unwrap();
    assert_eq!(interim["result"]["resultType"], "input_required");
}

/// Security finding 3 (MCP SPEC C33): one user cannot start stdio server processes without
/// end, nor can all users together; past a cap the gateway answers 429 (RFC 6585 §4) with a
/// JSON-RPC error naming the limit, and starts no process. DELETE frees the slot.
#[tokio::test]
async fn sec3_c33_stdio_sessions_are_capped_per_user_and_in_total() {
    let gw = StdioGateway::start(
        &["alice-bot", "bob-bot"],
        &["--max-sessions-per-user", "2"],
        "max_sessions = 3\n",
        &[],
    )
    .await;
    let (first, first_pid) = gw.open(0).await;
    gw.open(0).await;
    let refused = gw.initialize(0).await;
    assert_eq!(refused.status(), 429);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["id"], 1, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("--max-sessions-per-user 2"), "{message}");
    assert_eq!(gw.children().len(), 2, "no process for a refused session");

    // bob has his own allowance, but all sessions together are capped too.
    gw.open(1).await;
    let full = gw.initialize(1).await;
    assert_eq!(full.status(), 429);
    let body: Value = full.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("--max-sessions 3") && !message.contains("per-user"),
        "{message}"
    );
    assert_eq!(gw.children().len(), 3, "no process for a refused session");

    // DELETE frees a slot at once.
    assert_eq!(gw.delete(0, &first).await.status(), 204);
    gw.open(0).await;
    gone(&first_pid).await;
    assert_eq!(gw.children().len(), 3);
}

/// Security finding 3 (MCP SPEC S12: expiring handles): a session with no request for
/// --session-idle-timeout ends with its process; its id then gets 404 (MCP Streamable HTTP,
/// session management).
#[tokio::test]
async fn sec3_s12_an_idle_stdio_session_ends_with_its_process() {
    let gw = StdioGateway::start(&["alice-bot"], &["--session-idle-timeout", "2"], "", &[]).await;
    let (session, pid) = gw.open(0).await;
    gone(&pid).await;
    assert_eq!(gw.call(0, &session, "pid", json!({})).await.status(), 404);
    assert!(gw.children().is_empty());
}

/// Security finding 11 (MCP SPEC C33): a stdio server starts with a clean environment — the
/// allow-listed basics and --upstream-env, never the gateway's secrets or settings.
#[tokio::test]
async fn sec11_c33_a_stdio_server_gets_a_clean_environment() {
    let gw = StdioGateway::start(
        &["alice-bot"],
        &[
            "--upstream-env",
            "PASSED_THROUGH",
            "--upstream-env",
            "SET_HERE=a=b",
        ],
        "",
        &[
            ("MCPAUTH_CLIENT_SECRET", "not-for-children"),
            ("PASSED_THROUGH", "yes"),
            ("NOT_PASSED", "no"),
            ("LANG", "C.UTF-8"),
        ],
    )
    .await;
    let (session, _) = gw.open(0).await;
    let answer: Value = gw
        .call(0, &session, "env", json!({}))
        .await
        .json()
        .await
        .unwrap();
    let env: std::collections::HashMap<String, String> =
        serde_json::from_str(answer["result"]["content"][0]["text"].as_str().unwrap()).unwrap();
    for secret in [
        "MCPAUTH_CLIENT_SECRET",
        "MCPAUTH_HOME",
        "RUST_LOG",
        "NOT_PASSED",
    ] {
        assert!(
            !env.contains_key(secret),
            "{secret} reached the stdio server"
        );
    }
    assert!(env.contains_key("PATH"));
    assert_eq!(env.get("LANG").map(String::as_str), Some("C.UTF-8"));
    assert_eq!(env.get("PASSED_THROUGH").map(String::as_str), Some("yes"));
    assert_eq!(env.get("SET_HERE").map(String::as_str), Some("a=b"));
}

/// Issue 13 (MCP Streamable HTTP, session management: a terminated session's id gets 404): a
/// request right after DELETE is answered 404 at once, not held until the answer timeout. The
/// request is pipelined behind the DELETE on one connection (RFC 9112 §9.3), so it reaches the
/// gateway the moment the 204 is written, before the process can have been reaped.
#[tokio::test]
async fn issue13_a_deleted_stdio_session_is_gone_at_once() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gw = StdioGateway::start(&["alice-bot"], &[], "", &[]).await;
    let host = url::Url::parse(&gw.url).unwrap();
    let authority = format!("{}:{}", host.host_str().unwrap(), host.port().unwrap());
    for _ in 0..5 {
        let (session, _) = gw.open(0).await;
        let body = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "pid", "arguments": {}}}).to_string();
        let head = |method: &str| {
            format!(
                "{method} {} HTTP/1.1\r\nhost: {authority}\r\nauthorization: Bearer {}\r\nmcp-session-id: {session}\r\n",
                host.path(),
                gw.tokens[0]
            )
        };
        let requests = format!(
            "{}content-length: 0\r\n\r\n{}content-type: application/json\r\naccept: application/json, text/event-stream\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            head("DELETE"),
            head("POST"),
            body.len()
        );
        let mut tcp = tokio::net::TcpStream::connect(&authority).await.unwrap();
        tcp.write_all(requests.as_bytes()).await.unwrap();
        let mut answers = String::new();
        tokio::time::timeout(Duration::from_secs(5), tcp.read_to_string(&mut answers))
            .await
            .expect("a request right after DELETE hung")
            .unwrap();
        let statuses: Vec<&str> = answers
            .lines()
            .filter(|l| l.starts_with("HTTP/1.1 "))
            .collect();
        assert_eq!(
            statuses,
            ["HTTP/1.1 204 No Content", "HTTP/1.1 404 Not Found"],
            "{answers}"
        );
    }
}

/// Issue 13: a call in flight when the stdio server exits, or is killed because its session is
/// deleted, gets its JSON-RPC error at once, not after the answer timeout.
#[tokio::test]
async fn issue13_a_call_in_flight_fails_at_once_when_the_stdio_server_ends() {
    let gw = StdioGateway::start(&["alice-bot"], &[], "", &[]).await;
    let (session, pid) = gw.open(0).await;
    let exited = tokio::time::timeout(
        Duration::from_secs(5),
        gw.call(0, &session, "exit", json!({})),
    )
    .await
    .expect("a call was held after its server exited");
    assert_eq!(exited.status(), 502);
    let body: Value = exited.json().await.unwrap();
    assert_eq!(body["id"], 2, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("exited"),
        "{body}"
    );
    gone(&pid).await;
    assert_eq!(gw.call(0, &session, "pid", json!({})).await.status(), 404);

    // The process is killed (its session deleted) while it works on a call.
    let (session, pid) = gw.open(0).await;
    let mark = gw.home.path().join("sleeping");
    let call = gw
        .post(
            0,
            Some(&session),
            json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "sleep", "arguments": {"mark": mark}}}),
        )
        .send();
    let call = tokio::spawn(call);
    tokio::time::timeout(LIMIT, async {
        while !mark.exists() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the call never reached the server");
    assert_eq!(gw.delete(0, &session).await.status(), 204);
    let answer = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .expect("a call was held after its server was killed")
        .unwrap()
        .unwrap();
    assert_eq!(answer.status(), 502);
    gone(&pid).await;
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
async fn initialize_with(url: &str, token: &str) -> u16 {
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
    let (mut login, auth_url) = start_login(home.path(), &url, &issuer).await;
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

/// An API identifier in `aud`, as Okta and Auth0 issue (Entra's `api://…` identifiers are
/// tested in mcpauth-resource: `mcpauth serve` only issues tokens for http(s) resources).
const API: &str = "https://api.example.com";

/// `mcpauth serve` as the external identity provider: resources [`API`] (an Okta- or
/// Auth0-style API identifier) and another API; a client `robot` (client credentials) and,
/// with `introspector`, a resource server `gw` that may introspect `https://api.example.com` tokens. Returns
/// the server, its issuer and the secrets of `robot` and `gw`.
async fn external_idp(home: &Path, introspector: bool) -> (Child, String, String, String) {
    let database = format!("sqlite://{}?mode=rwc", home.join("idp.db").display());
    let robot = add_client(home, &database, &["--id", "robot"]).await;
    let gw = if introspector {
        add_client(home, &database, &["--id", "gw", "--introspection", API]).await
    } else {
        String::new()
    };
    let mut serve = mcpauth(home);
    serve.args(["serve", "--bind", "127.0.0.1:0", "--database", &database]);
    serve.args(["--resource", API, "--resource", "https://other.example/api"]);
    let (child, issuer) = crate::serve::spawn_serve(serve).await;
    (child, issuer, robot, gw)
}

/// `mcpauth clients add ARGS` at `database`; the new client's secret.
async fn add_client(home: &Path, database: &str, args: &[&str]) -> String {
    let out = mcpauth(home)
        .args(["clients", "add", "--json", "--database", database])
        .args(args)
        .output()
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    v["client_secret"].as_str().unwrap().to_owned()
}

/// A client-credentials access token of `robot` for `resource` (RFC 8707), scope `mcp`.
async fn token_for(issuer: &str, robot: &str, resource: &str) -> String {
    let body: Value = http()
        .post(format!("{issuer}/token"))
        .basic_auth("robot", Some(robot))
        .form(&[
            ("grant_type", "client_credentials"),
            ("resource", resource),
            ("scope", "mcp"),
        ])
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

/// MCP SPEC S5 with an external issuer whose tokens name an API identifier: `--audience
/// https://api.example.com` accepts them, a token for another API of the same issuer is refused
/// with 401; without `--scope` the gateway warns that many identity providers need one, and
/// its PRM has no `scopes_supported` (RFC 9728 §2: optional; `[]` would say "no scopes").
#[tokio::test]
async fn s5_external_issuer_with_an_api_audience_accepts_only_its_tokens() {
    let home = tempfile::tempdir().unwrap();
    let (_idp, issuer, robot, _) = external_idp(home.path(), false).await;
    let (mut gateway, banner) = start_gateway(
        home.path(),
        &["--demo", "--issuer", &issuer, "--audience", API],
        &[],
    )
    .await;
    let url = banner_value(&banner, "MCP server:");
    assert!(
        banner
            .iter()
            .any(|l| l.contains("without a scope") && l.contains("--scope")),
        "{banner:?}"
    );
    let ours = token_for(&issuer, &robot, API).await;
    assert_eq!(initialize_with(&url, &ours).await, 200);
    let theirs = token_for(&issuer, &robot, "https://other.example/api").await;
    assert_eq!(initialize_with(&url, &theirs).await, 401);
    let prm_url = format!(
        "{}/.well-known/oauth-protected-resource/mcp",
        url.trim_end_matches("/mcp")
    );
    let prm: Value = http()
        .get(&prm_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(prm["authorization_servers"], json!([issuer]));
    assert!(prm.get("scopes_supported").is_none(), "{prm}");
    gateway.kill().await.unwrap();
}

/// RFC 9728 §2 `authorization_servers`: with `--issuer` and `--introspection-url` together the
/// PRM names the given issuer (not the introspection URL's origin) and introspection validates
/// the tokens (RFC 7662, `aud` from `--audience`). With `--introspection-url` alone the guessed
/// issuer comes with a warning.
#[tokio::test]
async fn rfc9728_issuer_with_introspection_is_published_and_tokens_are_introspected() {
    let home = tempfile::tempdir().unwrap();
    let (_idp, issuer, robot, gw) = external_idp(home.path(), true).await;
    let introspection = format!("{issuer}/introspect");
    let given = format!("{issuer}/realms/x");
    let args = [
        "--demo",
        "--introspection-url",
        &introspection,
        "--introspection-client-id",
        "gw",
        "--audience",
        API,
        "--scope",
        "mcp",
    ];
    let env = [("MCPAUTH_CLIENT_SECRET", gw.as_str())];
    let with_issuer = [&args[..], &["--issuer", &given]].concat();
    let (mut gateway, banner) = start_gateway(home.path(), &with_issuer, &env).await;
    let url = banner_value(&banner, "MCP server:");
    let prm_url = format!(
        "{}/.well-known/oauth-protected-resource/mcp",
        url.trim_end_matches("/mcp")
    );
    let prm: Value = http()
        .get(&prm_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(prm["authorization_servers"], json!([given]), "{prm}");
    assert!(!banner.iter().any(|l| l.contains("guessed")), "{banner:?}");
    // `mcpauth serve` names itself in `iss`, not the given issuer: refused (RFC 7662 §2.2).
    let token = token_for(&issuer, &robot, API).await;
    assert_eq!(initialize_with(&url, &token).await, 401);
    gateway.kill().await.unwrap();

    let with_real_issuer = [&args[..], &["--issuer", &issuer]].concat();
    let (mut gateway, banner) = start_gateway(home.path(), &with_real_issuer, &env).await;
    let url = banner_value(&banner, "MCP server:");
    let prm_url = format!(
        "{}/.well-known/oauth-protected-resource/mcp",
        url.trim_end_matches("/mcp")
    );
    let prm: Value = http()
        .get(&prm_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(prm["authorization_servers"], json!([issuer]));
    assert_eq!(prm["scopes_supported"], json!(["mcp"]));
    let token = token_for(&issuer, &robot, API).await;
    assert_eq!(initialize_with(&url, &token).await, 200);
    let theirs = token_for(&issuer, &robot, "https://other.example/api").await;
    assert_eq!(initialize_with(&url, &theirs).await, 401);
    gateway.kill().await.unwrap();

    let (mut gateway, banner) = start_gateway(home.path(), &args, &env).await;
    assert!(
        banner
            .iter()
            .any(|l| l.contains("guessed") && l.contains("--issuer")),
        "{banner:?}"
    );
    gateway.kill().await.unwrap();
}

/// The settings file carries an external issuer's settings (`issuer`, `audiences`, `scopes`),
/// and the flags about an external issuer's tokens are refused without one, naming the flag.
#[tokio::test]
async fn external_issuer_settings_from_the_file_and_misplaced_flags() {
    let home = tempfile::tempdir().unwrap();
    let (_idp, issuer, robot, _) = external_idp(home.path(), false).await;
    let settings = home.path().join("gateway.toml");
    std::fs::write(
        &settings,
        format!("issuer = \"{issuer}\"\naudiences = [\"{API}\"]\nscopes = [\"mcp\"]\n"),
    )
    .unwrap();
    let settings = settings.to_str().unwrap();
    let (mut gateway, banner) =
        start_gateway(home.path(), &["--demo", "--settings", settings], &[]).await;
    let url = banner_value(&banner, "MCP server:");
    assert_eq!(banner_value(&banner, "token audience:"), API);
    assert!(
        !banner.iter().any(|l| l.contains("without a scope")),
        "{banner:?}"
    );
    let token = token_for(&issuer, &robot, API).await;
    assert_eq!(initialize_with(&url, &token).await, 200);
    gateway.kill().await.unwrap();

    for flags in [
        &["--audience", API][..],
        &["--jwks-uri", "http://127.0.0.1:9/jwks"],
        &["--accept-issuer-trailing-slash"],
        &["--accept-plain-jwt"],
    ] {
        let out = mcpauth(home.path())
            .args(["gateway", "--demo", "--bind", "127.0.0.1:0"])
            .args(flags)
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{flags:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(flags[0]) && err.contains("--issuer"), "{err}");
    }
}

/// The gateway fetches an external issuer's keys at start-up: a wrong or unreachable issuer is
/// a warning at once (not only a 503 at the first request); the JWT flags are refused with
/// introspection, which never sees a JWT header.
#[tokio::test]
async fn an_unreachable_issuer_is_a_startup_warning_and_jwt_flags_need_jwt_validation() {
    let home = tempfile::tempdir().unwrap();
    let issuer = format!("http://{}", crate::common::closed_address());
    let (mut gateway, banner) =
        start_gateway(home.path(), &["--demo", "--issuer", &issuer], &[]).await;
    assert!(
        banner
            .iter()
            .any(|l| l.contains("cannot fetch the signing keys") && l.contains(&issuer)),
        "{banner:?}"
    );
    gateway.kill().await.unwrap();

    let (_idp, issuer, _, _) = external_idp(home.path(), false).await;
    let (mut gateway, banner) =
        start_gateway(home.path(), &["--demo", "--issuer", &issuer], &[]).await;
    assert!(
        !banner.iter().any(|l| l.contains("cannot fetch")),
        "{banner:?}"
    );
    gateway.kill().await.unwrap();

    let out = mcpauth(home.path())
        .args([
            "gateway",
            "--demo",
            "--bind",
            "127.0.0.1:0",
            "--issuer",
            &issuer,
        ])
        .args(["--introspection-url", &format!("{issuer}/introspect")])
        .args(["--introspection-client-id", "gw", "--accept-plain-jwt"])
        .env("MCPAUTH_CLIENT_SECRET", "s")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--accept-plain-jwt") && err.contains("introspect"),
        "{err}"
    );
}

/// SPEC D5 at the gateway: `--dpop require` refuses a bearer token of the external issuer with
/// a `DPoP` challenge naming the proof algorithms (RFC 9449 §7.1), and is refused at start-up
/// with the embedded server, which issues bearer tokens.
#[tokio::test]
async fn d5_gateway_dpop_require_refuses_bearer_tokens() {
    let home = tempfile::tempdir().unwrap();
    let (_idp, issuer, robot, _) = external_idp(home.path(), false).await;
    let (mut gateway, banner) = start_gateway(
        home.path(),
        &[
            "--demo",
            "--issuer",
            &issuer,
            "--audience",
            API,
            "--dpop",
            "require",
        ],
        &[],
    )
    .await;
    let url = banner_value(&banner, "MCP server:");
    let token = token_for(&issuer, &robot, API).await;
    let resp = http()
        .post(&url)
        .bearer_auth(&token)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let challenge = resp.headers()["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.starts_with("DPoP ")
            && challenge.contains("algs=")
            && challenge.contains("invalid_token"),
        "{challenge}"
    );
    gateway.kill().await.unwrap();

    let out = mcpauth(home.path())
        .args([
            "gateway",
            "--demo",
            "--bind",
            "127.0.0.1:0",
            "--dpop",
            "require",
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--dpop require") && err.contains("--issuer"),
        "{err}"
    );
}
