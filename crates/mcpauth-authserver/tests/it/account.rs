//! The connected-apps page (`/account`) over HTTP: sign-in for no client, the list of the user's
//! grants (name, redirect host, scopes, dates), removal with its CSRF check, and what removal
//! does: the refresh token and the access token are refused at once, consent is asked again, and
//! another user's grant cannot be removed.

use serde_json::Value;

use crate::support::*;

/// Signs in through `/account`: the session cookie and the page.
async fn open_account(ts: &TestServer) -> (String, String) {
    let (cookie, login) = open_login(&ts.url("/account")).await;
    assert!(
        login.contains("applications connected to your account"),
        "{login}"
    );
    let resp = post_login(ts, &cookie, &login, USER, PASSWORD).await;
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()["location"], ts.url("/account"));
    let cookie = cookie_from(&resp).expect("a signed-in session");
    let page = account_page(ts, &cookie).await;
    (cookie, page)
}

async fn account_page(ts: &TestServer, cookie: &str) -> String {
    let resp = http()
        .get(ts.url("/account"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-frame-options"], "DENY");
    resp.text().await.unwrap()
}

async fn remove(ts: &TestServer, cookie: &str, csrf: &str, grant: &str) -> reqwest::Response {
    http()
        .post(ts.url("/account/revoke"))
        .header("cookie", cookie)
        .form(&[("csrf", csrf), ("grant", grant)])
        .send()
        .await
        .unwrap()
}

both_backends! {
    async fn account_lists_and_removes_connected_apps(db) {
        let ts = TestServer::start(db, |_| {}).await;
        ts.add_user().await;
        let (_, empty) = open_account(&ts).await;
        assert!(empty.contains("No application holds access"), "{empty}");

        let client_id = ts.register_public_client(&[REDIRECT]).await;
        let tokens = code_flow_tokens(&ts, &client_id).await;
        let (cookie, page) = open_account(&ts).await;
        assert!(page.contains("Test Client"), "{page}");
        assert!(page.contains("127.0.0.1"), "the redirect host: {page}");
        assert!(page.contains("mcp:read") && page.contains("mcp:write"), "{page}");
        assert!(page.contains(" UTC"), "dates: {page}");
        let grant = hidden(&page, "grant");
        let csrf = hidden(&page, "csrf");

        // CSRF: without the token, or without the session, nothing is removed.
        assert_eq!(remove(&ts, &cookie, "forged", &grant).await.status(), 403);
        let resp = http().post(ts.url("/account/revoke")).form(&[("csrf", csrf.as_str()), ("grant", grant.as_str())])
            .send().await.unwrap();
        assert_eq!(resp.status(), 403);
        assert!(account_page(&ts, &cookie).await.contains("Test Client"));

        let resp = remove(&ts, &cookie, &csrf, &grant).await;
        assert_eq!(resp.status(), 303);
        assert!(account_page(&ts, &cookie).await.contains("No application holds access"));
        let (status, body) = token_request(&ts, &[
            ("grant_type", "refresh_token"),
            ("client_id", &client_id),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
        ]).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
        let jti = claims(tokens["access_token"].as_str().unwrap())["jti"].as_str().unwrap().to_owned();
        assert!(ts.server.access_token_revoked(&jti), "the access token is refused at once");
        // Removing it again: not found.
        assert_eq!(remove(&ts, &cookie, &csrf, &grant).await.status(), 404);
        // Signing out ends the session: the account page asks to sign in again.
        let resp = http().post(ts.url("/account/signout")).header("cookie", &cookie)
            .form(&[("csrf", csrf.as_str())]).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert!(resp.text().await.unwrap().contains("Signed out"));
        let resp = http().get(ts.url("/account")).header("cookie", &cookie).send().await.unwrap();
        assert!(resp.text().await.unwrap().contains("applications connected to your account"));
    }

    /// A user cannot remove someone else's grant, even knowing its id.
    async fn account_cannot_remove_another_users_grant(db) {
        let ts = TestServer::start(db, |_| {}).await;
        ts.add_user().await;
        let client_id = ts.register_public_client(&[REDIRECT]).await;
        let _tokens: Value = code_flow_tokens(&ts, &client_id).await;
        let (_, page) = open_account(&ts).await;
        let grant = hidden(&page, "grant");
        mcpauth_authserver::admin::add_user(
            ts.store(), "mallory", "another long password",
            mcpauth_authserver::PasswordParams::insecure_for_tests(),
        ).await.unwrap();
        let (cookie, login) = open_login(&ts.url("/account")).await;
        let resp = post_login(&ts, &cookie, &login, "mallory", "another long password").await;
        let cookie = cookie_from(&resp).unwrap();
        let page = account_page(&ts, &cookie).await;
        assert!(page.contains("No application holds access"));
        let csrf = hidden(&page, "csrf");
        assert_eq!(remove(&ts, &cookie, &csrf, &grant).await.status(), 404);
        let grants = mcpauth_authserver::admin::list_grants(ts.store(), Some(USER)).await.unwrap();
        assert_eq!(grants.len(), 1, "alice's grant is untouched");
    }
}
