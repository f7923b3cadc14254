//! `mcpauth gateway -- COMMAND`: a stdio MCP server behind the gateway, one process per session.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::process::Child;

use crate::common::{LIMIT, http, mcpauth};
use crate::gateway::*;

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
level = roots = caps = None
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
        caps = m["params"].get("capabilities")
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
        elif name == "caps":
            text = json.dumps(caps)
        else:
            text = json.dumps(dict(os.environ)) if name == "env" else str(os.getpid())
        r = {"content": [{"type": "text", "text": text}]}
    elif method == "ping":
        r = {}
    else:
        send({"id": m["id"], "error": {"code": -32601, "message": "Method not found"}})
        continue
    send({"id": m["id"], "result": r})
"#;

pub(crate) fn alive(pid: &str) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

pub(crate) async fn gone(pid: &str) {
    tokio::time::timeout(LIMIT, async {
        while alive(pid) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("process {pid} was not reaped"));
}

/// The processes whose parent is `parent`.
pub(crate) fn children(parent: u32) -> Vec<String> {
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
pub(crate) struct StdioGateway {
    process: Child,
    url: String,
    tokens: Vec<String>,
    home: tempfile::TempDir,
}

impl StdioGateway {
    /// Starts it with `flags`, a settings file holding `settings`, and `envs` in its
    /// environment; registers `clients` and gets their tokens.
    pub(crate) async fn start(
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
    pub(crate) fn post(
        &self,
        user: usize,
        session: Option<&str>,
        body: Value,
    ) -> reqwest::RequestBuilder {
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
    pub(crate) async fn initialize(&self, user: usize) -> reqwest::Response {
        let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25"}});
        self.post(user, None, init).send().await.unwrap()
    }

    /// `tools/call` (id 2) of `tool` with `arguments` in `session`.
    pub(crate) async fn call(
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
    pub(crate) async fn open(&self, user: usize) -> (String, String) {
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

    /// A GET (SSE) of `session` as the `user`th client.
    pub(crate) fn get(&self, user: usize, session: &str) -> reqwest::RequestBuilder {
        http()
            .get(&self.url)
            .bearer_auth(&self.tokens[user])
            .header("accept", "text/event-stream")
            .header("mcp-session-id", session)
    }

    /// DELETE of `session` as the `user`th client.
    pub(crate) async fn delete(&self, user: usize, session: &str) -> reqwest::Response {
        http()
            .delete(&self.url)
            .bearer_auth(&self.tokens[user])
            .header("mcp-session-id", session)
            .send()
            .await
            .unwrap()
    }

    /// The stdio server processes it runs now.
    pub(crate) fn children(&self) -> Vec<String> {
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
pub(crate) async fn next_event(
    response: &mut reqwest::Response,
    buffer: &mut String,
) -> Option<Value> {
    loop {
        if let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            let data = event.lines().find_map(|l| l.strip_prefix("data: "))?;
            if data.is_empty() {
                // The priming event of a resumable stream (SEP-1699): an id, no message.
                continue;
            }
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

/// The id of the next SSE event of `response` (`id:` line), skipping nothing.
async fn next_event_id(response: &mut reqwest::Response, buffer: &mut String) -> (String, String) {
    loop {
        if let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            let id = event
                .lines()
                .find_map(|l| l.strip_prefix("id: "))
                .unwrap_or_default();
            let data = event
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .unwrap_or_default();
            return (id.to_owned(), data.to_owned());
        }
        let chunk = tokio::time::timeout(LIMIT, response.chunk())
            .await
            .expect("the stream stalled")
            .unwrap()
            .expect("the stream ended");
        buffer.push_str(&String::from_utf8_lossy(&chunk));
    }
}

/// Streamable HTTP 2025-11-25 §Resumability and Redelivery (SEP-1699): a call's SSE stream
/// starts with a priming event (id, `retry`, no data) and gives every event an id; when the
/// connection drops mid-call the call runs on, and a GET with `Last-Event-ID` gets the events
/// after it (replayed), then the answer. An unknown id is a 400, not a silent hang.
#[tokio::test]
async fn sep1699_a_dropped_call_stream_resumes_with_last_event_id() {
    let gw = StdioGateway::start(&["alice-bot"], &[], "", &[]).await;
    let (session, _) = gw.open(0).await;
    let call = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "sample", "arguments": {}, "_meta": {"progressToken": "p-7"}}});
    let mut stream = gw.post(0, Some(&session), call).send().await.unwrap();
    let mut buffer = String::new();
    let (priming, data) = next_event_id(&mut stream, &mut buffer).await;
    assert!(
        priming.ends_with("-0") && data.is_empty(),
        "{priming:?} {data:?}"
    );
    let (progress_id, progress) = next_event_id(&mut stream, &mut buffer).await;
    assert!(progress.contains("notifications/progress"), "{progress}");
    let (_, log) = next_event_id(&mut stream, &mut buffer).await;
    assert!(log.contains("notifications/message"), "{log}");
    let (_, sampling) = next_event_id(&mut stream, &mut buffer).await;
    let sampling: Value = serde_json::from_str(&sampling).unwrap();
    assert_eq!(sampling["method"], "sampling/createMessage");
    drop(stream);
    // The call waits for the sampling answer; the client answers, then reconnects from the
    // progress event: the log message and the sampling request again, then the answer.
    let answer = json!({"jsonrpc": "2.0", "id": sampling["id"], "result": {"role": "assistant", "model": "m", "content": {"type": "text", "text": "sampled"}}});
    assert_eq!(
        gw.post(0, Some(&session), answer)
            .send()
            .await
            .unwrap()
            .status(),
        202
    );
    let resumed = gw
        .get(0, &session)
        .header("last-event-id", &progress_id)
        .send()
        .await
        .unwrap();
    assert_eq!(resumed.status(), 200);
    assert_eq!(resumed.headers()["content-type"], "text/event-stream");
    let mut resumed = resumed;
    let mut buffer = String::new();
    let replayed = next_event(&mut resumed, &mut buffer).await.unwrap();
    assert_eq!(replayed["method"], "notifications/message");
    let replayed = next_event(&mut resumed, &mut buffer).await.unwrap();
    assert_eq!(replayed["method"], "sampling/createMessage");
    let result = next_event(&mut resumed, &mut buffer).await.unwrap();
    assert_eq!(result["id"], 7);
    assert_eq!(result["result"]["content"][0]["text"], "sampled");
    assert!(
        next_event(&mut resumed, &mut buffer).await.is_none(),
        "the answer is the last event"
    );
    let unknown = gw
        .get(0, &session)
        .header("last-event-id", "999-1")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 400);
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
