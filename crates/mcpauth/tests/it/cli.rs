//! `mcpauth login | token | status | logout | tools | call | discover`, end to end.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use mcpauth_testkit::{Knobs, TestServer};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

use crate::common::{LIMIT, closed_address, mcpauth, succeed};

pub(crate) struct Output {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

pub(crate) async fn run(home: &Path, args: &[&str]) -> Output {
    let out = tokio::time::timeout(
        LIMIT,
        mcpauth(home).args(args).stdin(Stdio::null()).output(),
    )
    .await
    .expect("mcpauth did not finish")
    .unwrap();
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Starts `mcpauth` with piped stdio and waits until it prints the authorization URL.
async fn start_login(home: &Path, args: &[&str]) -> (Child, String) {
    let (child, url, _rest) = start_login_logged(home, args).await;
    (child, url)
}

/// [`start_login`], also returning the rest of its stderr (complete when it has exited).
async fn start_login_logged(
    home: &Path,
    args: &[&str],
) -> (Child, String, tokio::task::JoinHandle<String>) {
    let mut child = mcpauth(home)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = String::new();
    let url = tokio::time::timeout(LIMIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            seen.push_str(&line);
            seen.push('\n');
            let t = line.trim();
            if t.starts_with("http") && t.contains("/authorize?") {
                return t.to_owned();
            }
        }
        panic!("mcpauth printed no authorization URL:\n{seen}");
    })
    .await
    .expect("no authorization URL");
    // Keep draining stderr so the child never blocks on a full pipe.
    let rest = tokio::spawn(async move {
        let mut rest = String::new();
        while let Ok(Some(line)) = lines.next_line().await {
            rest.push_str(&line);
            rest.push('\n');
        }
        rest
    });
    (child, url, rest)
}

/// The "browser": GETs the authorization URL and returns where the server redirects.
async fn authorize(url: &str) -> String {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = http.get(url).send().await.unwrap();
    assert_eq!(
        resp.status(),
        302,
        "authorization endpoint did not redirect"
    );
    resp.headers()["location"].to_str().unwrap().to_owned()
}

/// The browser follows the redirect to the loopback listener; returns the page's status.
async fn follow(location: &str) -> u16 {
    reqwest::get(location).await.unwrap().status().as_u16()
}

async fn finish(child: Child) -> Output {
    let out = tokio::time::timeout(LIMIT, child.wait_with_output())
        .await
        .expect("mcpauth did not finish")
        .unwrap();
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn json(out: &Output) -> Value {
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", out.stdout))
}

async fn login_loopback(home: &Path, server: &TestServer) {
    let url = server.mcp_url();
    let (child, auth_url) = start_login(home, &["login", &url, "--no-browser"]).await;
    let location = authorize(&auth_url).await;
    assert!(location.starts_with("http://127.0.0.1:"), "{location}");
    assert_eq!(follow(&location).await, 200);
    let out = finish(child).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[tokio::test]
async fn login_token_status_logout_through_the_loopback_listener() {
    let server = TestServer::start(Knobs::default()).await;
    let home = tempfile::tempdir().unwrap();
    let url = server.mcp_url();
    login_loopback(home.path(), &server).await;

    let token = run(home.path(), &["token", &url]).await;
    assert_eq!(token.code, 0, "{}", token.stderr);
    let token = token.stdout.trim().to_owned();
    assert!(token.starts_with("at-"), "{token}");
    let header = run(home.path(), &["token", &url, "--header"]).await;
    assert_eq!(
        header.stdout.trim(),
        format!("Authorization: Bearer {token}")
    );

    let status = run(home.path(), &["status", "--json"]).await;
    assert_eq!(status.code, 0);
    assert!(
        !status.stdout.contains(&token),
        "status must never print a token"
    );
    let list = json(&status);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["resource"], url);
    assert_eq!(list[0]["issuer"], server.base);
    assert_eq!(list[0]["refresh_token"], true);

    let table = run(home.path(), &["status"]).await;
    assert!(table.stdout.starts_with("SERVER"), "{}", table.stdout);

    let tools = run(home.path(), &["tools", &url]).await;
    assert_eq!(tools.code, 0, "{}", tools.stderr);
    assert_eq!(json(&tools)["tools"][0]["name"], "echo");
    let call = run(home.path(), &["call", &url, "echo", r#"{"x": 1}"#]).await;
    assert_eq!(call.code, 0, "{}", call.stderr);
    assert_eq!(json(&call)["content"][0]["text"], r#"{"x":1}"#);

    let logout = run(home.path(), &["logout", &url]).await;
    assert_eq!(logout.code, 0, "{}", logout.stderr);
    assert!(
        logout
            .stderr
            .contains("revoked the refresh_token and the access_token"),
        "{}",
        logout.stderr
    );
    // RFC 7009: the authorization server saw both revocations.
    server.seen(|c| {
        assert_eq!(c.revocations.len(), 2);
        assert!(c.revocations.contains(&token));
    });
    assert_eq!(
        json(&run(home.path(), &["status", "--json"]).await),
        serde_json::json!([])
    );
    // And a token now needs a login: exit code 2 with a hint.
    let again = run(home.path(), &["token", &url]).await;
    assert_eq!(again.code, 2, "{}", again.stderr);
    assert!(again.stderr.contains("mcpauth login"), "{}", again.stderr);
}

#[tokio::test]
async fn login_through_paste() {
    let server = TestServer::start(Knobs::default()).await;
    let home = tempfile::tempdir().unwrap();
    let (mut child, auth_url) = start_login(
        home.path(),
        &["login", &server.mcp_url(), "--paste", "--json"],
    )
    .await;
    let location = authorize(&auth_url).await;
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(format!("{location}\n").as_bytes())
        .await
        .unwrap();
    drop(stdin);
    let out = finish(child).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(json(&out)[0]["issuer"], server.base);
    assert_eq!(server.seen(|c| c.code_exchanges), 1);
}

#[tokio::test]
async fn c29_wrong_state_on_the_callback_is_refused() {
    let server = TestServer::start(Knobs::default()).await;
    let home = tempfile::tempdir().unwrap();
    let (child, auth_url) =
        start_login(home.path(), &["login", &server.mcp_url(), "--no-browser"]).await;
    let location = authorize(&auth_url).await;
    let mut forged = url::Url::parse(&location).unwrap();
    let pairs: Vec<(String, String)> = forged
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "state" {
                "forged".into()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    forged.query_pairs_mut().clear().extend_pairs(pairs);
    assert_eq!(follow(forged.as_str()).await, 400);
    let out = finish(child).await;
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_eq!(server.seen(|c| c.code_exchanges), 0);
}

#[tokio::test]
async fn a_callback_with_access_denied_exits_4() {
    let server = TestServer::start(Knobs {
        deny: true,
        ..Default::default()
    })
    .await;
    let home = tempfile::tempdir().unwrap();
    let (child, auth_url) =
        start_login(home.path(), &["login", &server.mcp_url(), "--no-browser"]).await;
    let location = authorize(&auth_url).await;
    assert_eq!(follow(&location).await, 200);
    let out = finish(child).await;
    assert_eq!(out.code, 4, "{}", out.stderr);
}

/// An `access_denied` answer to an authorization request without `scope` (as Entra ID, Okta
/// and Google give): still exit 4, and the message says no scope was sent and how to send one.
#[tokio::test]
async fn access_denied_without_a_scope_names_the_fix() {
    let server = TestServer::start(Knobs {
        deny: true,
        ..Default::default()
    })
    .await;
    let home = tempfile::tempdir().unwrap();
    let (child, auth_url, stderr) = start_login_logged(
        home.path(),
        &["login", &server.mcp_url(), "--no-browser", "--scope", ""],
    )
    .await;
    let location = authorize(&auth_url).await;
    assert_eq!(follow(&location).await, 200);
    let out = finish(child).await;
    let stderr = stderr.await.unwrap();
    assert_eq!(out.code, 4, "{stderr}");
    assert!(
        stderr.contains("carried no scope") && stderr.contains("--scope"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_busy_pinned_port_names_the_fix() {
    let server = TestServer::start(Knobs::default()).await;
    let home = tempfile::tempdir().unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let out = run(
        home.path(),
        &["login", &server.mcp_url(), "--no-browser", "--port", &port],
    )
    .await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!("the callback port {port}")),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("--port 0"), "{}", out.stderr);
}

#[tokio::test]
async fn a_config_entry_without_url_is_a_clear_error() {
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("mcp.json");
    std::fs::write(
        &config,
        r#"{"mcpServers": {"broken": {"oauth": {"server_url": "http://127.0.0.1:1"}}}}"#,
    )
    .unwrap();
    let out = run(
        home.path(),
        &["login", "--config", config.to_str().unwrap(), "broken"],
    )
    .await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains(r#"the server "broken" in the config file has no "url""#),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn an_unreadable_secret_file_is_a_clear_error() {
    let server = TestServer::start(Knobs::default()).await;
    let home = tempfile::tempdir().unwrap();
    let missing = home.path().join("no-such-secret");
    let out = run(
        home.path(),
        &[
            "login",
            &server.mcp_url(),
            "--client-credentials",
            "--client-id",
            "robot",
            "--client-secret-file",
            missing.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("cannot read the client secret file"),
        "{}",
        out.stderr
    );
    assert_eq!(server.seen(|c| c.client_credentials), 0);
}

#[tokio::test]
async fn c27_an_insecure_token_file_is_refused() {
    let server = TestServer::start(Knobs::default()).await;
    let home = tempfile::tempdir().unwrap();
    login_loopback(home.path(), &server).await;
    let tokens = home.path().join("tokens");
    let file = std::fs::read_dir(&tokens)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run(home.path(), &["status"]).await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("chmod 600"), "{}", out.stderr);
}

#[tokio::test]
async fn client_credentials_from_the_environment() {
    let server = TestServer::start(Knobs::default()).await;
    server.add_client("robot", Some("s3cret"));
    let home = tempfile::tempdir().unwrap();
    succeed(
        mcpauth(home.path())
            .args(["token", &server.mcp_url(), "--login"])
            .env("MCP_CLIENT_ID", "robot")
            .env("MCP_CLIENT_SECRET", "s3cret"),
    )
    .await;
    assert_eq!(
        server.seen(|c| (c.client_credentials, c.authorizations)),
        (1, 0)
    );
}

#[tokio::test]
async fn the_mcpo_config_example_works() {
    let server = TestServer::start(Knobs::default()).await;
    let home = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // The README's mcpo example, with this test's server and a free callback port.
    let config = home.path().join("mcpo.json");
    std::fs::write(
        &config,
        format!(
            r#"{{"mcpServers": {{"legacy-oauth-server": {{
                "type": "streamable-http",
                "url": "{url}",
                "oauth": {{
                    "server_url": "{base}",
                    "storage_type": "file",
                    "client_metadata": {{
                        "client_name": "My MCPO Client",
                        "redirect_uris": ["http://localhost:{port}/callback"],
                        "grant_types": ["authorization_code", "refresh_token"],
                        "response_types": ["code"]
                    }}
                }}
            }}}}}}"#,
            url = server.mcp_url(),
            base = server.base,
        ),
    )
    .unwrap();
    let (child, auth_url) = start_login(
        home.path(),
        &[
            "login",
            "--config",
            config.to_str().unwrap(),
            "legacy-oauth-server",
            "--no-browser",
        ],
    )
    .await;
    let location = authorize(&auth_url).await;
    assert!(
        location.starts_with(&format!("http://localhost:{port}/callback?")),
        "{location}"
    );
    assert_eq!(follow(&location).await, 200);
    let out = finish(child).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let token = run(
        home.path(),
        &[
            "token",
            "--config",
            config.to_str().unwrap(),
            "legacy-oauth-server",
        ],
    )
    .await;
    assert_eq!(token.code, 0, "{}", token.stderr);
}

#[tokio::test]
async fn discover_reports_every_url() {
    let server = TestServer::start(Knobs::default()).await;
    let home = tempfile::tempdir().unwrap();
    let out = run(home.path(), &["discover", &server.mcp_url(), "--json"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let report = json(&out);
    assert_eq!(report["ok"], true);
    assert_eq!(report["result"]["issuer"], server.base);
    let urls: Vec<&str> = report["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["url"].as_str().unwrap())
        .collect();
    assert!(
        urls.iter()
            .any(|u| u.ends_with("/.well-known/oauth-protected-resource/mcp")),
        "{urls:?}"
    );
    let text = run(home.path(), &["discover", &server.mcp_url()]).await;
    assert!(
        text.stdout.contains("PKCE S256:              yes"),
        "{}",
        text.stdout
    );
}

/// Security finding 5: `discover` shows what a server's metadata says escaped (here an endpoint
/// that retitles the terminal and forges a line); `--json` keeps it exact.
#[tokio::test]
async fn sec5_discover_escapes_the_servers_text() {
    let server = TestServer::start(Knobs::default()).await;
    let hostile = format!(
        "{}/revoke\x1b]0;pwned\x07\nPKCE S256:              yes",
        server.base
    );
    let metadata = serde_json::json!({
        "issuer": server.base,
        "authorization_endpoint": format!("{}/authorize", server.base),
        "token_endpoint": format!("{}/token", server.base),
        "revocation_endpoint": hostile,
        "code_challenge_methods_supported": ["plain"],
    });
    server.set(|k| k.metadata_body = Some(metadata.to_string()));
    let home = tempfile::tempdir().unwrap();
    let out = run(home.path(), &["discover", &server.mcp_url()]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stdout.contains(['\x1b', '\x07']), "{:?}", out.stdout);
    assert!(
        out.stdout.contains(&format!(
            "revocation_endpoint:    {}/revoke\\x1b]0;pwned\\x07\\nPKCE S256:",
            server.base
        )),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("\nPKCE S256:              NO"),
        "{}",
        out.stdout
    );
    assert!(
        !out.stdout.contains("\nPKCE S256:              yes"),
        "a forged line: {}",
        out.stdout
    );
    let out = run(home.path(), &["discover", &server.mcp_url(), "--json"]).await;
    assert_eq!(
        json(&out)["result"]["authorization_server_metadata"]["revocation_endpoint"],
        hostile
    );
}

/// Security finding 9: the `client_id` a hostile authorization server registers (escape
/// sequences and a line break that would forge a line) reaches the terminal escaped in `login`
/// and `status`; `status --json` keeps it exact.
#[tokio::test]
async fn sec9_login_and_status_escape_a_servers_client_id() {
    use tokio::io::AsyncReadExt;
    let hostile = "client\x1b[2J\x1b]0;pwned\x07\nLogged in to https://bank.example";
    let escaped = "client\\x1b[2J\\x1b]0;pwned\\x07\\nLogged in to https://bank.example";
    let server = TestServer::start(Knobs {
        registered_client_id: Some(hostile.into()),
        ..Default::default()
    })
    .await;
    let home = tempfile::tempdir().unwrap();
    let mut child = mcpauth(home.path())
        .args(["login", &server.mcp_url(), "--no-browser"])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let seen = read_until(&mut stderr, |s| {
        s.contains("/authorize?") && s.ends_with('\n')
    })
    .await;
    let auth_url = seen
        .lines()
        .map(str::trim)
        .find(|l| l.contains("/authorize?"))
        .unwrap()
        .to_owned();
    assert_eq!(follow(&authorize(&auth_url).await).await, 200);
    let mut rest = String::new();
    tokio::time::timeout(LIMIT, stderr.read_to_string(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert!(child.wait().await.unwrap().success(), "{rest}");
    assert!(!rest.contains(['\x1b', '\x07']), "{rest:?}");
    let logged_in: Vec<&str> = rest
        .lines()
        .filter(|l| l.starts_with("Logged in to"))
        .collect();
    assert_eq!(logged_in.len(), 1, "a forged line: {rest:?}");
    assert!(
        logged_in[0].contains(&format!("client {escaped},")),
        "{rest:?}"
    );

    let status = run(home.path(), &["status"]).await;
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert!(
        !status.stdout.contains(['\x1b', '\x07']),
        "{:?}",
        status.stdout
    );
    assert_eq!(status.stdout.lines().count(), 2, "{:?}", status.stdout);
    assert!(status.stdout.contains(escaped), "{:?}", status.stdout);
    let list = json(&run(home.path(), &["status", "--json"]).await);
    assert_eq!(list[0]["client_id"], hostile);
}

/// Security finding 9: `mcpauth token` prints only a plain RFC 6750 §2.1 b64token. A hostile
/// server's access token with an escape sequence (OSC 52 writes the clipboard) is refused with
/// exit code 3, naming the server, and never shown, whatever the output format.
#[tokio::test]
async fn sec9_token_refuses_an_access_token_that_is_not_a_b64token() {
    let server = TestServer::start(Knobs {
        access_token: Some("at\x1b]52;c;cm0gLXJmIH4=\x07".into()),
        ..Default::default()
    })
    .await;
    let home = tempfile::tempdir().unwrap();
    login_loopback(home.path(), &server).await;
    let url = server.mcp_url();
    for extra in [None, Some("--header"), Some("--json")] {
        let mut args = vec!["token", url.as_str()];
        args.extend(extra);
        let out = run(home.path(), &args).await;
        assert_eq!(out.code, 3, "{extra:?}: {}", out.stderr);
        assert_eq!(out.stdout, "", "{extra:?}");
        assert!(
            out.stderr.contains(&url) && out.stderr.contains(&server.base),
            "{extra:?}: {}",
            out.stderr
        );
        assert!(out.stderr.contains("b64token"), "{}", out.stderr);
        assert!(
            !out.stderr.contains("cm0gLXJmIH4") && !out.stderr.contains('\x1b'),
            "{extra:?}: {:?}",
            out.stderr
        );
    }
}

/// Issue "clear errors": a server nothing answers at is reported as unreachable at the first
/// request, its URL once, with exit code 1 (a failure, README "exit codes"); not as a failed
/// request to the 2025-03-26 fallback `/register` with the same text twice.
#[tokio::test]
async fn an_unreachable_server_is_reported_as_unreachable() {
    let home = tempfile::tempdir().unwrap();
    let url = format!("http://{}/mcp", closed_address());
    for args in [
        &["login", url.as_str(), "--no-browser"][..],
        &["token", url.as_str(), "--login"],
        &["discover", url.as_str()],
    ] {
        let out = run(home.path(), args).await;
        assert_eq!(out.code, 1, "{args:?}: {}", out.stderr);
        assert!(
            out.stderr
                .contains(&format!("cannot reach {url}: connection refused")),
            "{args:?}: {}",
            out.stderr
        );
        assert_eq!(out.stderr.matches(&url).count(), 1, "{}", out.stderr);
        assert!(!out.stderr.contains("/register"), "{}", out.stderr);
    }
}

#[tokio::test]
async fn usage_errors_exit_64_and_help_documents_exit_codes() {
    let home = tempfile::tempdir().unwrap();
    let out = run(home.path(), &["token"]).await;
    assert_eq!(out.code, 64, "{}", out.stderr);
    let help = run(home.path(), &["--help"]).await;
    assert_eq!(help.code, 0);
    assert!(
        help.stdout.contains("Exit codes:") && help.stdout.contains("a login is needed"),
        "{}",
        help.stdout
    );
}

/// Reads `reader` until `done` holds for what was read (bounded by `LIMIT`).
async fn read_until(
    reader: &mut (impl tokio::io::AsyncRead + Unpin),
    done: impl Fn(&str) -> bool,
) -> String {
    use tokio::io::AsyncReadExt;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(LIMIT, async {
        while !done(&String::from_utf8_lossy(&seen)) {
            let n = reader.read(&mut buf).await.unwrap();
            assert!(n > 0, "output ended: {}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out; saw: {}", String::from_utf8_lossy(&seen)));
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test]
async fn the_spinner_shows_on_a_terminal_and_not_on_a_pipe() {
    let server = TestServer::start(Knobs::default()).await;
    let home = tempfile::tempdir().unwrap();
    let login = format!(
        "{} login {} --no-browser",
        env!("CARGO_BIN_EXE_mcpauth"),
        server.mcp_url()
    );

    // On a terminal (a pty from util-linux `script`): the URL, the paste prompt and the spinner.
    let mut tty = Command::new("script")
        .args(["-qfec", &login, "/dev/null"])
        .env("MCPAUTH_HOME", home.path())
        .env_remove("MCP_CLIENT_ID")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let frames = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];
    let seen = read_until(tty.stdout.as_mut().unwrap(), |s| {
        s.contains("/authorize?") && frames.iter().filter(|f| s.contains(*f)).count() >= 2
    })
    .await;
    assert!(seen.contains("paste the address"), "{seen}");
    assert!(
        seen.contains("\x1b[2K"),
        "the spinner redraws its line: {seen}"
    );
    tty.kill().await.unwrap();

    // On a pipe: the URL still (it is the only way to log in headless), but no spinner and no
    // terminal escape codes. (Another home: the killed login above would be taken over here.)
    let home = tempfile::tempdir().unwrap();
    let mut pipe = mcpauth(home.path())
        .args(["login", &server.mcp_url(), "--no-browser"])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = pipe.stderr.as_mut().unwrap();
    let mut seen = read_until(stderr, |s| s.contains("/authorize?")).await;
    // A spinner would draw within 100 ms; give it ten times that to show up if it were there.
    if let Ok(more) =
        tokio::time::timeout(Duration::from_secs(1), read_until(stderr, |_| false)).await
    {
        seen.push_str(&more);
    }
    pipe.kill().await.unwrap();
    assert!(
        !frames.iter().any(|f| seen.contains(f)),
        "spinner on a pipe: {seen}"
    );
    assert!(!seen.contains('\x1b'), "escape codes on a pipe: {seen}");
}

#[tokio::test]
async fn login_through_the_device_code_grant() {
    let server = TestServer::start(Knobs::default()).await;
    let home = tempfile::tempdir().unwrap();
    let mut child = mcpauth(home.path())
        .args(["login", &server.mcp_url(), "--device", "--no-browser"])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let seen = read_until(&mut stderr, |s| {
        s.contains("user_code=") && s.ends_with('\n')
    })
    .await;
    let complete = seen
        .lines()
        .map(str::trim)
        .find(|l| l.contains("/device?user_code="))
        .unwrap()
        .to_owned();
    assert!(seen.contains("enter the code"), "{seen}");
    // The "user" approves on another device.
    assert_eq!(reqwest::get(&complete).await.unwrap().status(), 200);
    tokio::spawn(async move { read_until(&mut stderr, |_| false).await });
    let status = tokio::time::timeout(LIMIT, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    let list = json(&run(home.path(), &["status", "--json"]).await);
    assert_eq!(list[0]["refresh_token"], true);
    assert_eq!(server.seen(|c| c.authorizations), 0);
}

#[tokio::test]
async fn protocol_parameters_cannot_be_overridden() {
    let server = TestServer::start(Knobs::default()).await;
    let home = tempfile::tempdir().unwrap();
    for param in [
        "state=x",
        "code_challenge_method=plain",
        "redirect_uri=https://evil.example/",
    ] {
        let out = run(
            home.path(),
            &["login", &server.mcp_url(), "--authorize-param", param],
        )
        .await;
        assert_eq!(out.code, 1, "{param}: {}", out.stderr);
        assert!(out.stderr.contains("is refused"), "{param}: {}", out.stderr);
    }
    server.seen(|c| assert_eq!((c.registrations, c.authorizations), (0, 0)));
}

#[tokio::test]
async fn c27_keyring_store_falls_back_to_files_with_a_warning_when_no_keyring_runs() {
    let home = tempfile::tempdir().unwrap();
    // No session bus here, so no Secret Service: the keyring store must fall back, say so, and work.
    let out = tokio::time::timeout(
        LIMIT,
        mcpauth(home.path())
            .args(["--store", "keyring", "status", "--json"])
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .env("XDG_RUNTIME_DIR", home.path())
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("falling back to the file store"),
        "{stderr}"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
}
