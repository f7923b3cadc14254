//! Two OS processes sharing one file store and one rotating refresh token: exactly one refresh
//! reaches the server and both end with the same new token (DESIGN "Storage is durable and
//! private"; MCP SPEC C27).

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use mcpauth_client::authorize::Headless;
use mcpauth_client::http::{HttpOptions, OAuthHttp};
use mcpauth_client::session::{Grant, Session, SessionConfig};
use mcpauth_client::store::{FileStore, TokenStore};

use mcpauth_testkit::{Knobs, TestServer};

/// Set in the environment of the child processes; names the store directory.
const CHILD_DIR: &str = "MCPAUTH_TEST_REFRESH_CHILD_DIR";
/// The MCP server URL for the children.
const CHILD_SERVER: &str = "MCPAUTH_TEST_REFRESH_CHILD_SERVER";

fn session(server_url: &str, dir: &str, interactive: bool) -> Session {
    let http = OAuthHttp::new(HttpOptions::default()).unwrap();
    let grant = Grant::AuthorizationCode(Arc::new(Headless::new(
        http.clone(),
        "http://127.0.0.1:53682/callback",
    )));
    let mut config = SessionConfig::new(server_url, grant);
    config.interactive = interactive;
    Session::new(config, http, Arc::new(FileStore::new(dir)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c27_two_processes_spend_a_rotating_refresh_token_once() {
    let server = TestServer::start(Knobs {
        // Slow refreshes: the second process arrives while the first one is refreshing.
        refresh_delay: Duration::from_millis(400),
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let dir_s = dir.path().to_str().unwrap().to_owned();
    session(&server.mcp_url(), &dir_s, true)
        .access_token()
        .await
        .unwrap();
    // Expire the stored access token so that both children must refresh.
    let store = FileStore::new(dir.path());
    let mut record = store.list_tokens().unwrap().remove(0);
    record.expires_at = Some(1);
    store.save_tokens(&record).unwrap();

    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..2)
        .map(|_| {
            tokio::process::Command::new(&exe)
                .args([
                    "--exact",
                    "processes::refresh_child_helper",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_DIR, &dir_s)
                .env(CHILD_SERVER, server.mcp_url())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut tokens = Vec::new();
    for child in children {
        let out = child.wait_with_output().await.unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "child failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // libtest prints the test name on the same line, so look for the marker anywhere.
        let token = stdout
            .split("TOKEN=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("the child printed no token: {stdout}"))
            .to_owned();
        tokens.push(token);
    }
    assert_eq!(
        tokens[0], tokens[1],
        "both processes must end with the one new token"
    );
    assert_ne!(tokens[0], record.access_token.expose());
    assert_eq!(server.seen(|c| (c.refreshes, c.refused_refreshes)), (1, 0));
    let stored = store.list_tokens().unwrap().remove(0);
    assert_eq!(stored.access_token.expose(), tokens[0]);
}

/// Runs only as a child of the test above, which selects it with `--ignored` and sets its
/// environment variables; ignored in every other run, so that it is never reported as a test
/// that passed.
#[tokio::test]
#[ignore = "a child process of c27_two_processes_spend_a_rotating_refresh_token_once, which runs it"]
async fn refresh_child_helper() {
    let (Ok(dir), Ok(server)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_SERVER)) else {
        panic!(
            "run by c27_two_processes_spend_a_rotating_refresh_token_once only (it sets the variables)"
        );
    };
    let token = session(&server, &dir, false).access_token().await.unwrap();
    println!("TOKEN={}", token.expose());
}
