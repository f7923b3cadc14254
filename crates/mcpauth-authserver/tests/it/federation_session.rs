//! Session binding and the upstream token vault (SPEC F2-F5): a federated grant keeps the
//! provider's tokens sealed at rest, renews them before honouring our refresh, and ends when
//! the provider refuses the renewal; a provider that is down changes nothing.

use mcpauth_authserver::VaultError;
use mcpauth_testkit::IdpFault;

use crate::federation::{Fed, domain, federated_tokens, start_with, to_callback};
use crate::federation_support::{get_callback, location};
use crate::support::{
    Db, REDIRECT, TestServer, authorization, both_backends, claims, code_flow_tokens,
    exchange_code, http, introspect, location_params, post_consent, token_request,
};

/// Our refresh of `body`'s refresh token: (status, answer).
async fn refresh(f: &Fed, body: &serde_json::Value) -> (u16, serde_json::Value) {
    token_request(
        &f.ts,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", body["refresh_token"].as_str().unwrap()),
            ("client_id", &f.client_id),
        ],
    )
    .await
}

fn jti(body: &serde_json::Value) -> String {
    claims(body["access_token"].as_str().unwrap())["jti"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn upstream_rows(db_url: &str) -> Vec<String> {
    let pool = sqlx::AnyPool::connect(db_url).await.unwrap();
    let rows: Vec<String> = sqlx::query_scalar("SELECT sealed FROM upstream_grants")
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    rows
}

async fn fed(db: Option<&Db>) -> Fed {
    start_with(db, domain("example.com"), |_| {}).await
}

both_backends! {
    /// F2, F5: the grant keeps the provider's tokens, sealed (no token in the database's
    /// text); the vault hands out the sign-in's access token while it is fresh, without a
    /// renewal.
    async fn f5_upstream_tokens_are_stored_sealed_and_handed_out(db) {
        let f = fed(Some(db)).await;
        let body = federated_tokens(&f).await;
        let rows = upstream_rows(&db.url).await;
        assert_eq!(rows.len(), 1);
        // Whole values, not prefixes: the sealed text is base64url, where "at-" may occur.
        assert!(
            !rows[0].contains("at-user-123") && !rows[0].contains("refresh_token"),
            "sealed: {}",
            rows[0]
        );
        let access = f.ts.server.upstream_token(&jti(&body)).await.unwrap();
        assert_eq!(access.access_token(), "at-user-123");
        assert_eq!(access.provider, "corp");
        assert_eq!(access.subject, "user-123");
        assert_eq!(f.idp.refreshes(), 0);
        assert_eq!(format!("{access:?}"), "UpstreamAccess { .. }");
    }
}

/// F4: an upstream access token within a minute of expiry is renewed before our refresh is
/// honoured, and the rotated upstream tokens are kept (the next renewal uses the new refresh
/// token, which the provider would refuse otherwise).
#[tokio::test]
async fn f4_our_refresh_renews_a_due_upstream_token() {
    let f = fed(None).await;
    f.idp.set_access_ttl(30);
    let body = federated_tokens(&f).await;
    let (status, next) = refresh(&f, &body).await;
    assert_eq!(status, 200, "{next}");
    assert_eq!(f.idp.refreshes(), 1);
    let (status, third) = refresh(&f, &next).await;
    assert_eq!(status, 200, "{third}");
    assert_eq!(
        f.idp.refreshes(),
        2,
        "the rotated upstream refresh token was stored"
    );
    let access = f.ts.server.upstream_token(&jti(&third)).await.unwrap();
    assert_eq!(access.access_token(), f.idp.last_access_token());
    assert_eq!(access.access_token(), "at-user-123-r3");
}

both_backends! {
    /// F3: the provider refusing the renewal with invalid_grant revokes the whole grant at
    /// once: our refresh fails with a clear description, introspection says inactive, the
    /// in-memory mirror (the embedded gateway's check) refuses the access token, and the
    /// upstream tokens are deleted.
    async fn f3_upstream_invalid_grant_ends_our_grant(db) {
        let f = fed(Some(db)).await;
        f.idp.set_access_ttl(30);
        let rs = f.ts.add_resource_server(&[crate::support::RESOURCE]).await;
        let body = federated_tokens(&f).await;
        let access = body["access_token"].as_str().unwrap();
        assert_eq!(introspect(&f.ts, &rs, access).await["active"], true);
        f.idp.set_fault(IdpFault::RefreshRevoked);
        let (status, err) = refresh(&f, &body).await;
        assert_eq!(status, 400, "{err}");
        assert_eq!(err["error"], "invalid_grant");
        assert!(
            err["error_description"].as_str().unwrap().contains("identity provider ended the session"),
            "{err}"
        );
        assert!(f.ts.server.access_token_revoked(&jti(&body)));
        assert_eq!(introspect(&f.ts, &rs, access).await["active"], false);
        assert!(upstream_rows(&db.url).await.is_empty(), "deleted with the family");
        assert!(matches!(
            f.ts.server.upstream_token(&jti(&body)).await,
            Err(VaultError::Ended)
        ));
        // The provider recovering does not bring the grant back.
        f.idp.set_fault(IdpFault::None);
        let (status, err) = refresh(&f, &body).await;
        assert_eq!((status, err["error"].as_str()), (400, Some("invalid_grant")));
    }
}

/// F4: a provider that answers 503, or is down altogether, makes our refresh answer 503
/// temporarily_unavailable and changes nothing: the same refresh token works once the provider
/// is back, and the access token stays valid meanwhile.
#[tokio::test]
async fn f4_an_unreachable_provider_revokes_nothing() {
    let f = fed(None).await;
    f.idp.set_access_ttl(30);
    let body = federated_tokens(&f).await;
    f.idp.set_fault(IdpFault::TokenUnavailable);
    for _ in 0..2 {
        let (status, err) = refresh(&f, &body).await;
        assert_eq!(status, 503, "{err}");
        assert_eq!(err["error"], "temporarily_unavailable");
        assert!(!f.ts.server.access_token_revoked(&jti(&body)));
    }
    assert!(matches!(
        f.ts.server.upstream_token(&jti(&body)).await,
        Err(VaultError::Unavailable(_))
    ));
    f.idp.set_fault(IdpFault::None);
    let (status, next) = refresh(&f, &body).await;
    assert_eq!(status, 200, "nothing was lost: {next}");
    f.idp.stop().await;
    let (status, err) = refresh(&f, &next).await;
    assert_eq!(status, 503, "{err}");
    assert!(!f.ts.server.access_token_revoked(&jti(&next)));
}

/// F8: a password user's grant has no upstream token, and our refresh is unaffected.
#[tokio::test]
async fn f8_a_password_users_grant_has_no_upstream_token() {
    let f = fed(None).await;
    f.ts.add_user().await;
    let body = code_flow_tokens(&f.ts, &f.client_id).await;
    assert!(matches!(
        f.ts.server.upstream_token(&jti(&body)).await,
        Err(VaultError::NoUpstreamGrant)
    ));
    let (status, next) = refresh(&f, &body).await;
    assert_eq!(status, 200, "{next}");
    assert!(matches!(
        f.ts.server.upstream_token("no-family").await,
        Err(VaultError::NoUpstreamGrant)
    ));
}

/// F2: a browser still signed in through a provider that starts another authorization goes
/// back through the provider (its own session makes that silent), so the new grant keeps
/// upstream tokens of its own instead of none.
#[tokio::test]
async fn f2_a_second_grant_in_a_federated_session_has_its_own_upstream_tokens() {
    let f = fed(None).await;
    let at = to_callback(&f).await;
    let (_, html, cookie) = get_callback(&at.callback, Some(&at.cookie)).await;
    let cookie = cookie.unwrap();
    let resp = post_consent(&f.ts, &cookie, &html, "allow").await;
    let code = location_params(&resp)["code"].clone();
    let first = exchange_code(&f.ts, &f.client_id, &code, &at.verifier).await;
    assert_eq!(f.idp.tokens_issued(), 1);

    let a = authorization(&f.ts, &f.client_id, REDIRECT, &[]);
    let resp = http()
        .get(&a.url)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        302,
        "straight to the provider, not our consent page"
    );
    let start = location(&resp);
    assert!(start.contains("/idp/start?"), "{start}");
    let resp = http()
        .get(&start)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    let back = http().get(location(&resp)).send().await.unwrap();
    let (status, html, cookie) = get_callback(&location(&back), Some(&cookie)).await;
    assert_eq!(status, 200, "{html}");
    let resp = post_consent(&f.ts, &cookie.unwrap(), &html, "allow").await;
    let code = location_params(&resp)["code"].clone();
    let second = exchange_code(&f.ts, &f.client_id, &code, &a.verifier).await;
    assert_eq!(
        f.idp.tokens_issued(),
        2,
        "a sign-in of its own at the provider"
    );
    for body in [&first, &second] {
        let access = f.ts.server.upstream_token(&jti(body)).await.unwrap();
        assert_eq!(access.subject, "user-123");
    }
}

/// F2, OIDC Core §3.1.2.6: `prompt=none` cannot go through the provider, so a federated
/// session answers `login_required` rather than a grant without upstream tokens.
#[tokio::test]
async fn f2_prompt_none_in_a_federated_session_is_login_required() {
    let f = fed(None).await;
    let at = to_callback(&f).await;
    let (_, html, cookie) = get_callback(&at.callback, Some(&at.cookie)).await;
    let cookie = cookie.unwrap();
    post_consent(&f.ts, &cookie, &html, "allow").await;
    let a = authorization(&f.ts, &f.client_id, REDIRECT, &[("prompt", "none")]);
    let resp = http()
        .get(&a.url)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(location_params(&resp)["error"], "login_required");
}

/// F2: once the provider that signed a user in is no longer configured, that user's session
/// does not stand in for a sign-in: the login page, not our consent page.
#[tokio::test]
async fn f2_a_session_of_a_provider_no_longer_configured_signs_in_again() {
    let f = fed(None).await;
    let at = to_callback(&f).await;
    let (_, html, cookie) = get_callback(&at.callback, Some(&at.cookie)).await;
    let cookie = cookie.unwrap();
    post_consent(&f.ts, &cookie, &html, "allow").await;
    let without = TestServer::start(f._db.as_ref().unwrap(), |_| {}).await;
    let a = authorization(&without, &f.client_id, REDIRECT, &[]);
    let resp = http()
        .get(&a.url)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let html = resp.text().await.unwrap();
    assert!(html.contains("name=\"password\""), "the login page: {html}");
    assert!(!html.contains("name=\"decision\""), "{html}");
}
