//! Workload identity end to end (SEP-1933, SPEC W1-W2): `mcpauth token --workload-token-file`
//! against `mcpauth serve` whose settings file trusts the test OpenID provider of
//! mcpauth-testkit for workload tokens (`[[trusted_issuers]]`, a subject pattern, a claim rule,
//! scopes). A token the rule allows gets an access token for the workload; a replayed one, and
//! one the rule does not allow, are refused with exit code 4 and nothing stored.

use std::sync::{Arc, OnceLock};

use mcpauth_testkit::{IdpUser, OidcProvider};
use serde_json::{Value, json};

use crate::common::{add, claims_of, mcpauth};
use crate::serve::{spawn_serve, start_resource};

#[tokio::test]
async fn w2_our_client_gets_a_token_for_a_trusted_workload_and_nothing_else() {
    let home = tempfile::tempdir().unwrap();
    let ci = OidcProvider::start(IdpUser {
        sub: "unused".into(),
        email: "unused@example.com".into(),
        extra: json!({}),
    })
    .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let resource = format!("http://127.0.0.1:{port}/mcp");
    let settings = home.path().join("serve.toml");
    std::fs::write(
        &settings,
        format!(
            r#"
            bind = "127.0.0.1:0"
            database = "sqlite://{db}?mode=rwc"
            resources = ["{resource}"]
            scopes = ["mcp:tools", "mcp:admin"]

            [[trusted_issuers]]
            name = "ci"
            issuer = "{issuer}"
            kind = "workload"
            subject = "repo:acme/tools:*"
            claims = ["environment=prod"]
            scopes = ["mcp:tools"]
            "#,
            db = home.path().join("as.db").display(),
            issuer = ci.issuer,
        ),
    )
    .unwrap();
    let mut serve = mcpauth(home.path());
    serve.args(["serve", "--settings", settings.to_str().unwrap()]);
    let (mut serve, issuer) = spawn_serve(serve).await;
    let cell = Arc::new(OnceLock::new());
    cell.set(issuer.clone()).unwrap();
    start_resource(listener, cell).await;

    let now = mcpauth_core::dpop::unix_now();
    let token_file = home.path().join("workload.jwt");
    let mint = |sub: &str, env: &str, jti: &str| {
        ci.mint(
            Some("JWT"),
            &json!({"sub": sub, "aud": issuer, "environment": env, "jti": jti,
                    "iat": now, "exp": now + 600}),
        )
    };
    let token = |args: Vec<String>| {
        let mut cmd = mcpauth(home.path());
        cmd.args(&args);
        async move { cmd.output().await.unwrap() }
    };
    let args = || {
        vec![
            "--json".to_owned(),
            "token".into(),
            resource.clone(),
            "--workload-token-file".into(),
            token_file.display().to_string(),
        ]
    };
    std::fs::write(
        &token_file,
        mint("repo:acme/tools:ref:refs/heads/main", "prod", "j1"),
    )
    .unwrap();
    let out = token(args()).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body: Value = serde_json::from_slice(&out.stdout).unwrap();
    let at = claims_of(body["access_token"].as_str().unwrap());
    assert_eq!(at["sub"], "ci:repo:acme/tools:ref:refs/heads/main");
    assert_eq!(
        (at["client_id"].as_str(), at["aud"].as_str()),
        (Some("ci"), Some(resource.as_str()))
    );
    assert_eq!(at["scope"], "mcp:tools");

    // A fresh home: nothing cached, so each of these goes to the server with its token.
    for (what, jwt) in [
        (
            "replayed jti",
            mint("repo:acme/tools:ref:refs/heads/main", "prod", "j1"),
        ),
        (
            "claim rule",
            mint("repo:acme/tools:ref:refs/heads/main", "dev", "j2"),
        ),
        ("subject", mint("repo:evil/tools:ref:x", "prod", "j3")),
    ] {
        let fresh = tempfile::tempdir().unwrap();
        std::fs::write(&token_file, &jwt).unwrap();
        let out = mcpauth(fresh.path()).args(args()).output().await.unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{what}: {stderr}");
        assert!(stderr.contains("invalid_grant"), "{what}: {stderr}");
        assert!(out.stdout.is_empty(), "{what}");
        assert!(
            !stderr.contains(&jwt),
            "{what}: the workload token is never printed"
        );
    }
    serve.kill().await.unwrap();
}

/// The gateway's embedded server takes `[[trusted_issuers]]` from its settings file too: a CI
/// job calls a tool through `mcpauth gateway --demo` with only its workload token.
#[tokio::test]
async fn w2_a_workload_calls_a_tool_through_the_gateway() {
    let home = tempfile::tempdir().unwrap();
    let ci = OidcProvider::start(IdpUser {
        sub: "unused".into(),
        email: "unused@example.com".into(),
        extra: json!({}),
    })
    .await;
    let settings = home.path().join("gateway.toml");
    std::fs::write(
        &settings,
        format!(
            r#"
            [[trusted_issuers]]
            name = "ci"
            issuer = "{}"
            kind = "workload"
            scopes = ["mcp"]
            "#,
            ci.issuer
        ),
    )
    .unwrap();
    let (mut gateway, banner, demo) =
        crate::gateway::start_demo_with(home.path(), &["--settings", settings.to_str().unwrap()])
            .await;
    assert!(
        banner
            .iter()
            .any(|l| l.contains("trusts:") && l.contains(&ci.issuer)),
        "{banner:?}"
    );
    let now = mcpauth_core::dpop::unix_now();
    let token_file = home.path().join("workload.jwt");
    let jwt = ci.mint(
        None,
        &json!({"sub": "job-7", "aud": demo.issuer, "jti": "gw-1", "iat": now, "exp": now + 600}),
    );
    std::fs::write(&token_file, jwt).unwrap();
    let file = ["--workload-token-file", token_file.to_str().unwrap()];
    assert_eq!(add(home.path(), &demo.url, 3, 4, &file).await, "7");
    gateway.kill().await.unwrap();
}
