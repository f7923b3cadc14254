//! The audit log (`--audit-log FILE`, issue 16 part 3): a scripted session against a gateway
//! with its embedded authorization server and the admin commands, all appending to one file.
//! Every event type appears with its fields, every line is JSON with an RFC 3339 timestamp,
//! the file is 0600, and no secret of the session (password, client secret, access and refresh
//! tokens) appears anywhere in it.

use serde_json::{Value, json};

use crate::common::{browser_login, files_containing, hidden, http, start_login_with, stop};
use crate::gateway::{banner_value, start_gateway_at};
use crate::serve::{PASSWORD, run};

/// POSTs a form to `url`; (status, JSON body).
async fn post_form(url: &str, form: &[(&str, &str)], basic: Option<(&str, &str)>) -> (u16, Value) {
    let mut req = http().post(url).form(form);
    if let Some((id, secret)) = basic {
        req = req.basic_auth(id, Some(secret));
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn audit_log_records_each_security_event_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let log = home.join("audit.log");
    let log_arg = log.to_str().unwrap();
    let database = format!("sqlite://{}?mode=rwc", home.join("gw.db").display());
    let db = ["--database", database.as_str(), "--audit-log", log_arg];
    let admin = |args: &[&'static str]| -> Vec<String> {
        args.iter().chain(&db).map(|a| a.to_string()).collect()
    };

    let (code, _, err) = run(
        home,
        &admin(&["users", "add", "alice"]),
        &format!("{PASSWORD}\n"),
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run(
        home,
        &admin(&[
            "--json",
            "clients",
            "add",
            "--id",
            "robot",
            "--grant-type",
            "client_credentials",
        ]),
        "",
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let robot_secret = serde_json::from_str::<Value>(&out).unwrap()["client_secret"]
        .as_str()
        .unwrap()
        .to_owned();

    let server = home.join("server.py");
    std::fs::write(&server, crate::gateway_stdio::PY_SERVER).unwrap();
    let bind = crate::common::closed_address().to_string();
    let args = [
        db[0],
        db[1],
        db[2],
        db[3],
        "--",
        "python3",
        server.to_str().unwrap(),
    ];
    let (mut gateway, banner) = start_gateway_at(home, &bind, &args, &[]).await;
    let url = banner_value(&banner, "MCP server:");
    let issuer = url.trim_end_matches("/mcp").to_owned();

    // A wrong password, then the login (registration, sign-in, consent, code grant).
    let (mut login, auth_url) = start_login_with(home, &url, &issuer, &["--no-dpop"]).await;
    let page = http().get(&auth_url).send().await.unwrap();
    let cookie = crate::common::cookie(&page);
    let html = page.text().await.unwrap();
    let wrong = http()
        .post(format!("{issuer}/authorize/login"))
        .header("cookie", &cookie)
        .form(&[
            ("request_id", hidden(&html, "request_id").as_str()),
            ("csrf", hidden(&html, "csrf").as_str()),
            ("username", "alice"),
            ("password", "not the password"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    browser_login(&issuer, &auth_url, "alice", PASSWORD).await;
    assert!(login.wait().await.unwrap().success());

    // The stored tokens: a refresh (rotation), a reuse of the old refresh token, a revocation.
    let record_file = &files_containing(home, "\"refresh_token\"")[0];
    let record: Value = serde_json::from_slice(&std::fs::read(record_file).unwrap()).unwrap();
    let (access, refresh, client_id) = (
        record["access_token"].as_str().unwrap().to_owned(),
        record["refresh_token"].as_str().unwrap().to_owned(),
        record["client_id"].as_str().unwrap().to_owned(),
    );
    let token_url = format!("{issuer}/token");
    let refresh_with = |rt: String| {
        let (token_url, client_id) = (token_url.clone(), client_id.clone());
        async move {
            let form = [
                ("grant_type", "refresh_token"),
                ("refresh_token", rt.as_str()),
                ("client_id", client_id.as_str()),
            ];
            post_form(&token_url, &form, None).await
        }
    };
    let (status, rotated) = refresh_with(refresh.clone()).await;
    assert_eq!(status, 200, "{rotated}");
    let new_refresh = rotated["refresh_token"].as_str().unwrap().to_owned();
    let new_access = rotated["access_token"].as_str().unwrap().to_owned();
    // The successor used, the old token again is a reuse (RFC 9700 §4.14.2).
    let (status, newer) = refresh_with(new_refresh.clone()).await;
    assert_eq!(status, 200, "{newer}");
    let (status, reused) = refresh_with(refresh.clone()).await;
    assert_eq!(status, 400, "{reused}");

    // Client credentials and a revocation of its access token; a refused token at the gateway.
    let cc = [
        ("grant_type", "client_credentials"),
        ("resource", url.as_str()),
    ];
    let (status, robot) = post_form(&token_url, &cc, Some(("robot", &robot_secret))).await;
    assert_eq!(status, 200, "{robot}");
    let robot_token = robot["access_token"].as_str().unwrap().to_owned();
    let (status, _) = post_form(
        &format!("{issuer}/revoke"),
        &[("token", robot_token.as_str())],
        Some(("robot", &robot_secret)),
    )
    .await;
    assert_eq!(status, 200);
    let refused = http()
        .post(&url)
        .bearer_auth("not-a-token")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    // A graceful stop writes out the last lines (a crash may lose up to 50 ms of them).
    stop(&mut gateway).await;

    // Administration.
    let (code, out, err) = run(home, &admin(&["--json", "grants", "list"]), "").await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with('['), "{out}");
    let (code, _, err) = run(home, &admin(&["keys", "rotate"]), "").await;
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(home, &admin(&["clients", "remove", "robot"]), "").await;
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(home, &admin(&["users", "remove", "alice"]), "").await;
    assert_eq!(code, 0, "{err}");

    let text = std::fs::read_to_string(&log).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&log).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    for secret in [
        PASSWORD,
        "not the password",
        robot_secret.as_str(),
        access.as_str(),
        refresh.as_str(),
        new_access.as_str(),
        new_refresh.as_str(),
        robot_token.as_str(),
    ] {
        assert!(!text.contains(secret), "a secret in the audit log: {text}");
    }
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for e in &events {
        let ts = e["timestamp"].as_str().unwrap_or_default();
        assert!(
            ts.len() >= 20 && ts.as_bytes()[10] == b'T' && (ts.ends_with('Z') || ts.contains('+')),
            "an RFC 3339 timestamp: {e}"
        );
        assert_eq!(e["target"], "mcpauth::audit", "{e}");
    }
    let find =
        |name: &str| -> Vec<&Value> { events.iter().filter(|e| e["event"] == name).collect() };
    let one = |name: &str| -> &Value {
        find(name)
            .first()
            .copied()
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    };
    assert_eq!(one("user.added")["username"], "alice");
    assert_eq!(one("client.added")["client_id"], "robot");
    assert_eq!(one("client.registered")["client_id"], client_id.as_str());
    let failed = one("signin.failed");
    assert_eq!(
        (&failed["method"], &failed["known_user"]),
        (&json!("password"), &json!(true))
    );
    let signed_in = one("signin.succeeded");
    assert_eq!(signed_in["username"], "alice");
    assert_eq!(signed_in["ip"], "127.0.0.1");
    assert_eq!(one("consent.granted")["client_id"], client_id.as_str());
    let grant_types: Vec<&str> = find("token.issued")
        .iter()
        .filter_map(|e| e["grant_type"].as_str())
        .collect();
    assert!(
        grant_types.contains(&"authorization_code") && grant_types.contains(&"client_credentials"),
        "{grant_types:?}"
    );
    assert_eq!(one("token.refreshed")["client_id"], client_id.as_str());
    assert_eq!(
        one("refresh.reuse_detected")["client_id"],
        client_id.as_str()
    );
    assert_eq!(one("token.revoked")["token"], "access_token");
    let refused = one("access.refused");
    assert_eq!(
        (&refused["status"], &refused["error"]),
        (&json!(401), &json!("invalid_token"))
    );
    assert!(one("key.rotated")["kid"].is_string());
    assert_eq!(one("client.removed")["client_id"], "robot");
    assert_eq!(one("user.removed")["username"], "alice");
}
