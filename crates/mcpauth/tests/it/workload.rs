//! Workload identity federation in the CLI (SEP-1933, SPEC W1): `--workload-token-file`,
//! `--workload-token-command` and the config file's `workload_token_*` keys, for `login`, `token`
//! and `connect`, against the test authorization server on 127.0.0.1.

use std::path::Path;
use std::process::Stdio;

use mcpauth_testkit::{Knobs, TestServer};
use serde_json::json;

use crate::cli::{Output, run};
use crate::common::{LIMIT, mcpauth};
use crate::connect::Proxy;

const JWT_1: &str = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJjaS1qb2ItMSJ9.c2lnbmF0dXJlLW9uZQ";
const JWT_2: &str = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJjaS1qb2ItMiJ9.c2lnbmF0dXJlLXR3bw";

fn trusting(tokens: &[&str]) -> Knobs {
    Knobs {
        workload_tokens: tokens.iter().map(|t| (*t).to_owned()).collect(),
        ..Default::default()
    }
}

/// `mcpauth ARGS` with debug logging, so that the test sees everything it logs.
async fn run_logged(home: &Path, args: &[&str]) -> Output {
    let out = tokio::time::timeout(
        LIMIT,
        mcpauth(home)
            .args(args)
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .output(),
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

#[tokio::test]
async fn w1_login_and_token_read_the_rotated_file_each_time_and_never_log_it() {
    // Access tokens inside the refresh margin: every command needs a new one.
    let server = TestServer::start(Knobs {
        expires_in: 30,
        ..trusting(&[JWT_1, JWT_2])
    })
    .await;
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("projected-token");
    std::fs::write(&file, format!("{JWT_1}\n")).unwrap();
    let url = server.mcp_url();
    let file_arg = file.to_str().unwrap();
    let login = run_logged(
        home.path(),
        &[
            "login",
            &url,
            "--workload-token-file",
            file_arg,
            "--scope",
            "mcp:read",
        ],
    )
    .await;
    assert_eq!(login.code, 0, "{}", login.stderr);
    assert!(login.stderr.contains("Logged in"), "{}", login.stderr);
    std::fs::write(&file, JWT_2).unwrap();
    let token = run_logged(
        home.path(),
        &["token", &url, "--workload-token-file", file_arg],
    )
    .await;
    assert_eq!(token.code, 0, "{}", token.stderr);
    assert!(token.stdout.trim().starts_with("at-"), "{}", token.stdout);
    server.seen(|c| {
        assert_eq!(c.workload_assertions, [JWT_1, JWT_2]);
        assert_eq!(c.last_token_form["resource"], url);
        assert!(!c.last_token_form.contains_key("client_id"));
        assert_eq!((c.registrations, c.authorizations), (0, 0));
    });
    for out in [&login, &token] {
        for secret in [JWT_1, JWT_2, "c2lnbmF0dXJl"] {
            assert!(!out.stderr.contains(secret), "logged: {}", out.stderr);
            assert!(!out.stdout.contains(secret), "printed: {}", out.stdout);
        }
    }
}

#[tokio::test]
async fn w1_a_refused_token_is_the_servers_error_escaped_sent_once_and_nothing_stored() {
    let server = TestServer::start(Knobs {
        workload_refusal: "audience \u{1b}]0;pwned\u{7}mismatch".into(),
        ..trusting(&[JWT_2])
    })
    .await;
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("token");
    std::fs::write(&file, JWT_1).unwrap();
    let out = run(
        home.path(),
        &[
            "token",
            &server.mcp_url(),
            "--workload-token-file",
            file.to_str().unwrap(),
        ],
    )
    .await;
    // Exit 4: the authorization server denied access.
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("refused the workload identity token: invalid_grant"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("mismatch"), "{}", out.stderr);
    assert!(!out.stderr.contains('\u{1b}') && !out.stderr.contains('\u{7}'));
    assert!(!out.stderr.contains(JWT_1));
    server.seen(|c| {
        assert_eq!(c.workload_assertions, [JWT_1]);
        assert_eq!((c.client_credentials, c.authorizations), (0, 0));
    });
    let status = run(home.path(), &["--json", "status"]).await;
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert_eq!(status.stdout.trim(), "[]", "nothing stored");
}

#[tokio::test]
async fn w1_a_failing_or_empty_token_source_is_a_clear_error_before_any_request() {
    let server = TestServer::start(trusting(&[JWT_1])).await;
    let home = tempfile::tempdir().unwrap();
    let url = server.mcp_url();
    let failing = run(
        home.path(),
        &[
            "token",
            &url,
            "--workload-token-command",
            "echo denied >&2; exit 7",
        ],
    )
    .await;
    assert_eq!(failing.code, 1);
    assert!(
        failing.stderr.contains("workload token command")
            && failing.stderr.contains("exit status: 7"),
        "{}",
        failing.stderr
    );
    let empty = home.path().join("empty");
    std::fs::write(&empty, "").unwrap();
    let out = run(
        home.path(),
        &[
            "token",
            &url,
            "--workload-token-file",
            empty.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("is empty"), "{}", out.stderr);
    server.seen(|c| assert!(c.workload_assertions.is_empty()));
}

#[tokio::test]
async fn w1_a_client_secret_with_a_workload_token_is_refused() {
    let server = TestServer::start(trusting(&[JWT_1])).await;
    let home = tempfile::tempdir().unwrap();
    let secret = home.path().join("secret");
    std::fs::write(&secret, "s3cret").unwrap();
    let out = run(
        home.path(),
        &[
            "token",
            &server.mcp_url(),
            "--workload-token-command",
            &format!("echo {JWT_1}"),
            "--client-id",
            "robot",
            "--client-secret-file",
            secret.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("SPEC W1"), "{}", out.stderr);
    server.seen(|c| assert!(c.workload_assertions.is_empty()));
}

#[tokio::test]
async fn w1_connect_takes_the_workload_command_from_the_config_file() {
    let server = TestServer::start(trusting(&[JWT_1])).await;
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("mcp.json");
    let entry = json!({"mcpServers": {"ci": {
        "url": server.mcp_url(),
        "oauth": {"workload_token_command": format!("echo {JWT_1}"), "scope": "mcp:read"},
    }}});
    std::fs::write(&config, entry.to_string()).unwrap();
    let mut proxy = Proxy::start(
        home.path(),
        &["--config", config.to_str().unwrap(), "ci"],
        &[],
    );
    let answer = proxy.request(json!(1), "initialize", json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}})).await;
    assert!(answer.get("result").is_some(), "{answer}");
    let (ok, rest) = proxy.finish().await;
    assert!(ok && rest.is_empty(), "{rest:?}");
    server.seen(|c| {
        assert_eq!(c.workload_assertions, [JWT_1]);
        assert_eq!(c.last_token_form["scope"], "mcp:read");
        assert_eq!((c.registrations, c.authorizations), (0, 0));
    });
}
