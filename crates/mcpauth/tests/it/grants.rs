//! `mcpauth grants list|revoke` against a running gateway's database: a user's login is listed
//! as a grant; revoking it makes the running gateway refuse its access token (the revocation
//! reaches it through the database, REVOCATION_SYNC) and it is listed no more.

use crate::common::{LIMIT, browser_login, http, start_login_with};
use crate::gateway::{banner_value, start_gateway_at};
use crate::serve::{PASSWORD, run};

#[tokio::test]
async fn grants_list_and_revoke_end_a_login_at_a_running_gateway() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let database = format!("sqlite://{}?mode=rwc", home.join("gw.db").display());
    let db = ["--database", database.as_str()];
    let (code, _, err) = run(
        home,
        &[&["users", "add", "alice"][..], &db].concat(),
        &format!("{PASSWORD}\n"),
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let server = home.join("server.py");
    std::fs::write(&server, crate::gateway_stdio::PY_SERVER).unwrap();
    let bind = crate::common::closed_address().to_string();
    let args = [db[0], db[1], "--", "python3", server.to_str().unwrap()];
    let (mut gateway, banner) = start_gateway_at(home, &bind, &args, &[]).await;
    let url = banner_value(&banner, "MCP server:");
    let issuer = url.trim_end_matches("/mcp").to_owned();

    let (mut login, auth_url) = start_login_with(home, &url, &issuer, &["--no-dpop"]).await;
    browser_login(&issuer, &auth_url, "alice", PASSWORD).await;
    assert!(login.wait().await.unwrap().success());
    let (code, token, err) = run(home, &["token", &url], "").await;
    assert_eq!(code, 0, "{err}");
    let initialize = |token: String| {
        http()
            .post(&url)
            .bearer_auth(token.trim())
            .header("accept", "application/json, text/event-stream")
            .json(
                &serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                    "clientInfo": {"name": "t", "version": "1"}}}),
            )
            .send()
    };
    assert_eq!(initialize(token.clone()).await.unwrap().status(), 200);

    let (code, out, err) = run(
        home,
        &[&["--json", "grants", "list", "--user", "alice"][..], &db].concat(),
        "",
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["username"], "alice");
    assert!(!out.contains(token.trim()), "no token in the listing");
    let id = list[0]["id"].as_str().unwrap().to_owned();

    let (code, _, err) = run(home, &[&["grants", "revoke", &id][..], &db].concat(), "").await;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("Revoked grant"), "{err}");
    // The running gateway learns it from the database (REVOCATION_SYNC, 2 s).
    tokio::time::timeout(LIMIT, async {
        while initialize(token.clone()).await.unwrap().status() != 401 {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("the gateway kept accepting the revoked grant's access token");

    let (code, out, _) = run(home, &[&["--json", "grants", "list"][..], &db].concat(), "").await;
    assert_eq!((code, out.trim()), (0, "[]"));
    let (code, _, err) = run(home, &[&["grants", "revoke", &id][..], &db].concat(), "").await;
    assert_ne!(code, 0);
    assert!(
        err.contains(&id) && err.to_lowercase().contains("no "),
        "{err}"
    );
    gateway.kill().await.unwrap();
}
