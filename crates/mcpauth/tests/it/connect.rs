//! `mcpauth connect`: a transparent, authenticated stdio <-> Streamable HTTP relay.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use mcpauth_testkit::{Knobs, TestServer};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};

use crate::common::{LIMIT, closed_address};

pub(crate) struct Proxy {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr: Option<Lines<BufReader<ChildStderr>>>,
}

impl Proxy {
    pub(crate) fn start(home: &Path, args: &[&str], envs: &[(&str, &str)]) -> Proxy {
        Self::spawn(home, args, envs, Stdio::null())
    }

    pub(crate) fn spawn(home: &Path, args: &[&str], envs: &[(&str, &str)], stderr: Stdio) -> Proxy {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mcpauth"))
            .arg("connect")
            .args(args)
            .env("MCPAUTH_HOME", home)
            .env_remove("MCP_CLIENT_ID")
            .env("RUST_LOG", "warn")
            .envs(envs.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let stderr = child.stderr.take().map(|e| BufReader::new(e).lines());
        Proxy {
            child,
            stdin,
            stdout,
            stderr,
        }
    }

    /// Reads this proxy's stderr until a line contains `needle`; returns that line.
    pub(crate) async fn stderr_until(&mut self, needle: &str) -> String {
        let lines = self.stderr.as_mut().expect("stderr is piped");
        tokio::time::timeout(LIMIT, async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if line.contains(needle) {
                    return line;
                }
            }
            panic!("stderr ended before {needle:?}");
        })
        .await
        .expect("timed out waiting on stderr")
    }

    pub(crate) async fn send(&mut self, message: Value) {
        self.stdin
            .write_all(format!("{message}\n").as_bytes())
            .await
            .unwrap();
    }

    /// The next line on stdout, which must be JSON.
    pub(crate) async fn recv(&mut self) -> Value {
        let line = tokio::time::timeout(LIMIT, self.stdout.next_line())
            .await
            .expect("no answer")
            .unwrap()
            .expect("stdout closed");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON on stdout ({e}): {line}"))
    }

    pub(crate) async fn request(&mut self, id: Value, method: &str, params: Value) -> Value {
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await;
        let answer = self.recv().await;
        assert_eq!(answer["id"], id, "{answer}");
        answer
    }

    pub(crate) async fn initialize(&mut self) {
        let init = self
            .request(json!(1), "initialize", json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}))
            .await;
        assert_eq!(init["result"]["protocolVersion"], "2025-11-25");
        self.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
    }

    /// Closes stdin and returns the exit status and anything left on stdout.
    pub(crate) async fn finish(mut self) -> (bool, Vec<String>) {
        drop(self.stdin);
        let mut rest = Vec::new();
        let exited = tokio::time::timeout(LIMIT, async {
            while let Ok(Some(l)) = self.stdout.next_line().await {
                rest.push(l);
            }
            self.child.wait().await.unwrap()
        })
        .await
        .expect("mcpauth connect did not exit after its stdin closed");
        (exited.success(), rest)
    }
}

/// A test server with `knobs`, a fresh home, and `mcpauth connect --authorize-headless ARGS` to it.
pub(crate) async fn headless(
    knobs: Knobs,
    args: &[&str],
) -> (TestServer, tempfile::TempDir, Proxy) {
    let server = TestServer::start(knobs).await;
    let home = tempfile::tempdir().unwrap();
    let url = server.mcp_url();
    let mut all = vec![url.as_str(), "--authorize-headless"];
    all.extend_from_slice(args);
    let p = Proxy::start(home.path(), &all, &[]);
    (server, home, p)
}

#[tokio::test]
async fn relays_requests_and_unknown_fields_both_ways_byte_for_byte_in_meaning() {
    let (server, _home, mut p) = headless(Knobs::default(), &[]).await;
    p.initialize().await;
    let tools = p.request(json!(2), "tools/list", json!({})).await;
    assert_eq!(tools["result"]["tools"][0]["name"], "echo");

    // Golden: an unknown method with unknown fields, `_meta` and non-ASCII goes out unchanged,
    // and the server's unknown fields come back unchanged.
    let sent = json!({
        "jsonrpc": "2.0", "id": "x-1", "method": "echo/request",
        "params": {"_meta": {"progressToken": 7, "vendor/k": [1, {"z": null}]}, "unknownField": "é😀"},
        "extraTopLevel": true
    });
    p.send(sent.clone()).await;
    let answer = p.recv().await;
    assert_eq!(answer["result"]["request"], sent);
    assert_eq!(
        answer["result"]["serverOnly"],
        json!({"_meta": {"x": [1, null]}})
    );

    let (ok, rest) = p.finish().await;
    assert!(ok, "connect must exit 0 when the client closes stdin");
    assert!(rest.is_empty(), "nothing but answers on stdout: {rest:?}");
    server.seen(|c| assert_eq!((c.authorizations, c.code_exchanges), (1, 1)));
}

#[tokio::test]
async fn a_401_mid_session_is_refreshed_and_replayed_unseen_by_the_client() {
    let (server, _home, mut p) = headless(Knobs::default(), &[]).await;
    p.initialize().await;
    server.revoke_access_tokens();
    let tools = p.request(json!(2), "tools/list", json!({})).await;
    assert!(tools.get("error").is_none(), "{tools}");
    server.seen(|c| assert_eq!((c.authorizations, c.refreshes), (1, 1)));
    assert!(p.finish().await.0);
}

#[tokio::test]
async fn a_failed_request_becomes_a_json_rpc_error_for_that_id() {
    let server = TestServer::start(Knobs::default()).await;
    let home = tempfile::tempdir().unwrap();
    // A static Authorization header: no OAuth, and the server refuses the token.
    let mut p = Proxy::start(
        home.path(),
        &[
            &server.mcp_url(),
            "--header",
            "Authorization: Bearer ${TEST_STATIC_TOKEN}",
        ],
        &[("TEST_STATIC_TOKEN", "not-a-valid-token")],
    );
    let answer = p.request(json!(5), "tools/list", json!({})).await;
    assert_eq!(answer["error"]["code"], -32000, "{answer}");
    assert!(
        answer["error"]["message"].as_str().unwrap().contains("401"),
        "{answer}"
    );
    server.seen(|c| {
        assert_eq!(
            c.authorizations, 0,
            "a given Authorization header disables OAuth"
        )
    });
    assert!(p.finish().await.0);
}

/// Issue "clear errors": when the server cannot be reached, the client's request gets a JSON-RPC
/// error saying so, with the same reason `mcpauth login` gives.
#[tokio::test]
async fn an_unreachable_server_is_a_json_rpc_error_saying_so() {
    let home = tempfile::tempdir().unwrap();
    let url = format!("http://{}/mcp", closed_address());
    let mut p = Proxy::start(home.path(), &[&url], &[]);
    let answer = p.request(json!(7), "tools/list", json!({})).await;
    assert_eq!(answer["error"]["code"], -32000, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("cannot reach {url}: connection refused")),
        "{answer}"
    );
    assert_eq!(message.matches(&url).count(), 1, "{answer}");
    assert!(p.finish().await.0);
}

#[tokio::test]
async fn print_config_gives_an_mcp_servers_entry() {
    let out = Command::new(env!("CARGO_BIN_EXE_mcpauth"))
        .args([
            "connect",
            "--print-config",
            "remote",
            "https://mcp.example.com/mcp",
        ])
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["mcpServers"]["remote"]["args"],
        json!(["connect", "https://mcp.example.com/mcp"])
    );
    assert!(
        v["mcpServers"]["remote"]["command"]
            .as_str()
            .unwrap()
            .ends_with("mcpauth")
    );
}

#[tokio::test]
async fn four_instances_started_together_log_in_once_and_refresh_once() {
    let server = TestServer::start(Knobs {
        refresh_delay: Duration::from_millis(300),
        ..Default::default()
    })
    .await;
    let home = tempfile::tempdir().unwrap();
    let url = server.mcp_url();
    let mut proxies: Vec<Proxy> = (0..4)
        .map(|_| Proxy::start(home.path(), &[&url, "--authorize-headless"], &[]))
        .collect();
    let init = json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}});
    for p in &mut proxies {
        p.send(json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": init}))
            .await;
    }
    for p in &mut proxies {
        let answer = p.recv().await;
        assert!(answer.get("result").is_some(), "{answer}");
    }
    // One browser flow for the four (the others waited for its tokens), one registration.
    server.seen(|c| assert_eq!((c.authorizations, c.registrations), (1, 1)));

    // The token dies everywhere at once: one refresh, no refresh token spent twice.
    server.revoke_access_tokens();
    for p in &mut proxies {
        p.send(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}))
            .await;
    }
    for p in &mut proxies {
        let answer = p.recv().await;
        assert!(
            answer.get("result").is_some(),
            "every process answers: {answer}"
        );
    }
    server.seen(|c| {
        assert_eq!(c.refreshes, 1, "one refresh for four processes");
        assert_eq!(c.refused_refreshes, 0, "no invalid_grant");
        assert_eq!(c.authorizations, 1);
    });
    for p in proxies {
        assert!(p.finish().await.0);
    }
}

#[tokio::test]
async fn the_login_of_a_killed_instance_is_finished_by_another_without_a_new_tab() {
    let server = TestServer::start(Knobs::default()).await;
    let home = tempfile::tempdir().unwrap();
    let url = server.mcp_url();
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params":
        {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}});

    let mut a = Proxy::spawn(home.path(), &[&url, "--no-browser"], &[], Stdio::piped());
    a.send(init.clone()).await;
    let auth_url = a.stderr_until("/authorize?").await.trim().to_owned();

    let mut b = Proxy::spawn(home.path(), &[&url, "--no-browser"], &[], Stdio::piped());
    b.send(init).await;
    b.stderr_until("is logging in").await;

    a.child.kill().await.unwrap();
    // B shows the same address again (no new flow, no new tab) and listens where A did.
    b.stderr_until(&auth_url).await;
    b.stderr_until("continuing the login").await;

    // The user's browser, opened by A, comes back: B receives it on A's redirect URI.
    let location = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(&auth_url)
        .send()
        .await
        .unwrap()
        .headers()["location"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(reqwest::get(&location).await.unwrap().status(), 200);
    let answer = b.recv().await;
    assert!(answer.get("result").is_some(), "{answer}");
    server.seen(|c| assert_eq!((c.authorizations, c.code_exchanges), (1, 1)));
    assert!(b.finish().await.0);
}

#[tokio::test]
async fn ignored_tools_are_hidden_and_cannot_be_called() {
    let server = TestServer::start(Knobs::default()).await;
    let home = tempfile::tempdir().unwrap();
    let log = home.path().join("connect.log");
    let mut p = Proxy::start(
        home.path(),
        &[
            &server.mcp_url(),
            "--authorize-headless",
            "--ignore-tool",
            "ec*o",
            "--log-file",
            log.to_str().unwrap(),
        ],
        &[],
    );
    p.initialize().await;
    let tools = p.request(json!(2), "tools/list", json!({})).await;
    assert_eq!(tools["result"]["tools"], json!([]), "{tools}");
    let before = server.seen(|c| c.mcp_requests);
    let call = p
        .request(
            json!(3),
            "tools/call",
            json!({"name": "echo", "arguments": {}}),
        )
        .await;
    assert!(
        call["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--ignore-tool"),
        "{call}"
    );
    assert_eq!(
        server.seen(|c| c.mcp_requests),
        before,
        "the call never reached the server"
    );
    assert!(p.finish().await.0);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("hidden by mcpauth connect"), "{logged}");
    assert!(!logged.contains("at-"), "no token in the log: {logged}");
}

#[tokio::test]
async fn falls_back_to_the_2024_11_05_http_sse_transport_on_405() {
    let (server, _home, mut p) = headless(
        Knobs {
            legacy_only: true,
            ..Default::default()
        },
        &[],
    )
    .await;
    p.initialize().await;
    let tools = p.request(json!(2), "tools/list", json!({})).await;
    assert_eq!(tools["result"]["tools"][0]["name"], "echo");
    assert!(p.finish().await.0);
    // Every message went over the legacy POST endpoint (the Streamable POSTs all got 405).
    server.seen(|c| assert_eq!(c.mcp_requests, 3));
}

#[tokio::test]
async fn a_legacy_endpoint_on_another_origin_is_refused() {
    let server = TestServer::start(Knobs {
        legacy_only: true,
        legacy_endpoint_origin: Some("http://127.0.0.1:9".into()),
        ..Default::default()
    })
    .await;
    let home = tempfile::tempdir().unwrap();
    let mut p = Proxy::start(
        home.path(),
        &[
            &server.mcp_url(),
            "--authorize-headless",
            "--transport",
            "sse-only",
        ],
        &[],
    );
    let answer = p
        .request(json!(1), "initialize", json!({"protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}))
        .await;
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("another origin"),
        "{answer}"
    );
    server.seen(|c| assert_eq!(c.mcp_requests, 0, "nothing was POSTed anywhere"));
    assert!(p.finish().await.0);
}

#[tokio::test]
async fn exits_when_stdin_closes_even_if_the_server_keeps_its_stream_open() {
    // The server may answer DELETE with 405 and keep the GET stream open (MCP Transports
    // §Session Management); the local client still expects the proxy to exit (Lifecycle
    // §Shutdown).
    let (_server, _home, mut p) = headless(
        Knobs {
            endless_get_stream: true,
            ..Default::default()
        },
        &[],
    )
    .await;
    p.initialize().await;
    let tools = p.request(json!(2), "tools/list", json!({})).await;
    assert!(tools.get("result").is_some());
    assert!(p.finish().await.0, "connect must exit on EOF");
}

#[tokio::test]
async fn reinit_starts_a_new_session_after_the_server_restarts() {
    let server = TestServer::start(Knobs {
        sessions: true,
        ..Default::default()
    })
    .await;
    let home = tempfile::tempdir().unwrap();
    // Without --reinit: a clear error for the request, pointing at the flag.
    let mut p = Proxy::start(
        home.path(),
        &[&server.mcp_url(), "--authorize-headless"],
        &[],
    );
    p.initialize().await;
    server.restart();
    let lost = p.request(json!(2), "tools/list", json!({})).await;
    assert!(
        lost["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--reinit"),
        "{lost}"
    );
    assert!(p.finish().await.0);

    // With --reinit: the session is re-established and the request answered.
    let mut p = Proxy::start(
        home.path(),
        &[&server.mcp_url(), "--authorize-headless", "--reinit"],
        &[],
    );
    p.initialize().await;
    server.restart();
    let tools = p.request(json!(2), "tools/list", json!({})).await;
    assert_eq!(tools["result"]["tools"][0]["name"], "echo", "{tools}");
    let again = p.request(json!(3), "tools/list", json!({})).await;
    assert!(
        again.get("result").is_some(),
        "the new session keeps working: {again}"
    );
    assert!(p.finish().await.0);
}

#[tokio::test]
async fn c26_a_403_step_up_mid_session_is_invisible_to_the_client() {
    let (server, _home, mut p) = headless(
        Knobs {
            required_scopes: vec!["mcp:read".into()],
            ..Default::default()
        },
        &[],
    )
    .await;
    p.initialize().await;
    // The server now wants more: one 403 insufficient_scope, a new authorization with the union
    // of the scopes (C26), and the request replayed — the client only sees its answer.
    server.set(|k| k.required_scopes = vec!["mcp:read".into(), "mcp:admin".into()]);
    let tools = p.request(json!(2), "tools/list", json!({})).await;
    assert!(tools.get("result").is_some(), "{tools}");
    server.seen(|c| {
        assert_eq!(c.authorizations, 2);
        let scope = mcpauth_core::ScopeSet::parse(&c.last_authorize["scope"]);
        assert!(
            scope.contains("mcp:read") && scope.contains("mcp:admin"),
            "{scope}"
        );
    });
    assert!(p.finish().await.0);
}
