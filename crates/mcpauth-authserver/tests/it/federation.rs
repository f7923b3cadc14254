//! Federation (SPEC F1-F8): signing in through an upstream OpenID Connect provider (the
//! testkit's real one on 127.0.0.1), the ID token checks (F6, OIDC Core §3.1.3.7), the
//! allow-list, and the upstream login's binding to state, browser and time (S14).

use mcpauth_authserver::federation::{AllowRules, ClaimRule, IdentityProvider};
use mcpauth_authserver::{Config, admin};
use mcpauth_core::ClientSecret;
use mcpauth_testkit::{IdpFault, IdpUser, OidcProvider};
use serde_json::json;

use crate::federation_support::{
    AtCallback, browse_to_callback, button, get_callback, location, refused, upstream_logins,
    with_param,
};
use crate::support::{
    Db, REDIRECT, TestServer, authorization, both_backends, claims, cookie_from, exchange_code,
    http, location_params, open_login, post_consent, post_login,
};

const SUB: &str = "user-123";
const EMAIL: &str = "ada@example.com";

/// A server with the testkit provider `corp`, and a registered public client.
pub(crate) struct Fed {
    pub ts: TestServer,
    pub idp: OidcProvider,
    pub client_id: String,
    pub _db: Option<Db>,
}

fn provider(idp: &OidcProvider, allow: AllowRules) -> IdentityProvider {
    let mut p = IdentityProvider::new(
        "corp",
        idp.issuer.clone(),
        idp.client_id.clone(),
        ClientSecret::new(idp.client_secret.clone()),
    );
    p.display_name = "Corp SSO".into();
    p.allow = allow;
    p
}

pub(crate) fn domain(d: &str) -> AllowRules {
    AllowRules {
        domains: vec![d.into()],
        ..AllowRules::default()
    }
}

/// Starts [`Fed`] on `db` (or a new SQLite database).
pub(crate) async fn start_with(
    db: Option<&Db>,
    allow: AllowRules,
    adjust: impl FnOnce(&mut Config),
) -> Fed {
    let idp = OidcProvider::start(IdpUser {
        sub: SUB.into(),
        email: EMAIL.into(),
        extra: json!({"groups": ["staff"]}),
    })
    .await;
    let own = db.is_none().then(Db::sqlite);
    let db = db.or(own.as_ref()).unwrap();
    let p = provider(&idp, allow);
    let ts = TestServer::start(db, |c| {
        c.identity_providers = vec![p];
        adjust(c);
    })
    .await;
    let client_id = ts.register_public_client(&[REDIRECT]).await;
    Fed {
        ts,
        idp,
        client_id,
        _db: own,
    }
}

async fn start(allow: AllowRules) -> Fed {
    start_with(None, allow, |_| {}).await
}

pub(crate) async fn to_callback(f: &Fed) -> AtCallback {
    browse_to_callback(&f.ts, &f.client_id, "corp", &f.idp.issuer).await
}

/// A whole federated sign-in (provider, our consent, code exchange): the token response.
pub(crate) async fn federated_tokens(f: &Fed) -> serde_json::Value {
    let at = to_callback(f).await;
    let (status, html, cookie) = get_callback(&at.callback, Some(&at.cookie)).await;
    assert_eq!(status, 200, "{html}");
    let resp = post_consent(&f.ts, &cookie.unwrap(), &html, "allow").await;
    assert_eq!(resp.status(), 303);
    let code = location_params(&resp)["code"].clone();
    exchange_code(&f.ts, &f.client_id, &code, &at.verifier).await
}

both_backends! {
    /// F1-F7: login page button → provider → callback → our consent page → code → token whose
    /// `sub` is the federated user `corp:SUB`; a second sign-in finds the same user.
    async fn f7_federated_sign_in_end_to_end(db) {
        let f = start_with(Some(db), domain("example.com"), |_| {}).await;
        for round in 0..2 {
            let at = to_callback(&f).await;
            let (status, html, new_cookie) = get_callback(&at.callback, Some(&at.cookie)).await;
            assert_eq!(status, 200, "{html}");
            assert!(html.contains("name=\"decision\""), "our consent page (F7): {html}");
            assert!(html.contains(&format!("corp:{SUB}")), "{html}");
            let cookie = new_cookie.expect("a new session cookie (no fixation)");
            assert_ne!(cookie, at.cookie);
            let resp = post_consent(&f.ts, &cookie, &html, "allow").await;
            assert_eq!(resp.status(), 303);
            let code = location_params(&resp)["code"].clone();
            let body = exchange_code(&f.ts, &f.client_id, &code, &at.verifier).await;
            let users = admin::list_users(f.ts.store()).await.unwrap();
            let user = users.iter().find(|u| u.username == format!("corp:{SUB}")).unwrap();
            assert_eq!(users.len(), 1, "round {round}: one federated user");
            assert_eq!(claims(body["access_token"].as_str().unwrap())["sub"], user.id.as_str());
        }
    }
}

#[tokio::test]
async fn f7_a_federated_user_cannot_sign_in_with_a_password() {
    let f = start(domain("example.com")).await;
    let at = to_callback(&f).await;
    assert_eq!(get_callback(&at.callback, Some(&at.cookie)).await.0, 200);
    let a = authorization(&f.ts, &f.client_id, REDIRECT, &[]);
    let (cookie, html) = open_login(&a.url).await;
    for password in ["!", "", "anything at all"] {
        let resp = post_login(&f.ts, &cookie, &html, &format!("corp:{SUB}"), password).await;
        assert_eq!(resp.status(), 401);
        assert!(
            resp.text()
                .await
                .unwrap()
                .contains("Wrong username or password")
        );
    }
}

#[tokio::test]
async fn f3_only_providers_and_one_provider_goes_straight_to_it() {
    let f = start_with(None, domain("example.com"), |c| c.password_login = false).await;
    let a = authorization(&f.ts, &f.client_id, REDIRECT, &[]);
    let resp = http().get(&a.url).send().await.unwrap();
    assert_eq!(resp.status(), 302);
    assert!(
        location(&resp).contains("/idp/start?"),
        "{}",
        location(&resp)
    );
    assert!(cookie_from(&resp).is_some());
    // And the password form is refused.
    let resp = http()
        .post(f.ts.url("/authorize/login"))
        .form(&[("username", "x"), ("password", "y")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
}

#[tokio::test]
async fn f3_the_login_page_keeps_the_password_form_beside_the_button() {
    let f = start(domain("example.com")).await;
    let a = authorization(&f.ts, &f.client_id, REDIRECT, &[]);
    let (_, html) = open_login(&a.url).await;
    assert!(html.contains("Sign in with <bdi>Corp SSO</bdi>"), "{html}");
    assert!(html.contains("name=\"password\""), "{html}");
}

#[tokio::test]
async fn s14_callback_with_unknown_or_missing_state_is_refused() {
    let f = start(domain("example.com")).await;
    let at = to_callback(&f).await;
    let mut url = url::Url::parse(&at.callback).unwrap();
    let pairs: Vec<(String, String)> = url
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
    url.query_pairs_mut().clear().extend_pairs(&pairs);
    refused(
        &get_callback(url.as_str(), Some(&at.cookie)).await,
        400,
        "expired or was already used",
    );
    let pairs: Vec<_> = pairs.into_iter().filter(|(k, _)| k != "state").collect();
    url.query_pairs_mut().clear().extend_pairs(&pairs);
    refused(
        &get_callback(url.as_str(), Some(&at.cookie)).await,
        403,
        "no state",
    );
    assert_eq!(f.idp.tokens_issued(), 0);
}

#[tokio::test]
async fn s14_an_expired_upstream_login_is_refused() {
    let f = start(domain("example.com")).await;
    let at = to_callback(&f).await;
    let url = &f._db.as_ref().unwrap().url;
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    let n = sqlx::query("UPDATE upstream_logins SET expires_at = 1")
        .execute(&pool)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(n, 1);
    pool.close().await;
    refused(
        &get_callback(&at.callback, Some(&at.cookie)).await,
        400,
        "expired",
    );
    assert_eq!(f.idp.tokens_issued(), 0);
}

/// The stored upstream login holds the state's hash and the nonce and PKCE verifier sealed
/// under the state: the database alone cannot complete a sign-in.
#[tokio::test]
async fn s14_the_database_holds_no_state_nonce_or_verifier_in_clear() {
    let f = start(domain("example.com")).await;
    let at = to_callback(&f).await;
    let sent = |name: &str| {
        url::Url::parse(&at.at_idp)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == name)
            .unwrap()
            .1
            .into_owned()
    };
    let pool = sqlx::AnyPool::connect(&f._db.as_ref().unwrap().url)
        .await
        .unwrap();
    let row: (String, String, String) =
        sqlx::query_as("SELECT state_hash, nonce, pkce_verifier FROM upstream_logins")
            .fetch_one(&pool)
            .await
            .unwrap();
    pool.close().await;
    let stored = format!("{row:?}");
    assert!(!stored.contains(&sent("state")), "{stored}");
    assert!(!stored.contains(&sent("nonce")), "{stored}");
    assert_ne!(row.2.len(), 43, "not a bare verifier");
    assert_eq!(get_callback(&at.callback, Some(&at.cookie)).await.0, 200);
}

#[tokio::test]
async fn s14_a_replayed_callback_is_refused() {
    let f = start(domain("example.com")).await;
    let at = to_callback(&f).await;
    assert_eq!(get_callback(&at.callback, Some(&at.cookie)).await.0, 200);
    refused(
        &get_callback(&at.callback, Some(&at.cookie)).await,
        400,
        "already used",
    );
    assert_eq!(f.idp.tokens_issued(), 1);
}

#[tokio::test]
async fn s14_a_callback_in_another_browser_is_refused() {
    let f = start(domain("example.com")).await;
    let at = to_callback(&f).await;
    refused(
        &get_callback(&at.callback, None).await,
        403,
        "another browser",
    );
    let at = to_callback(&f).await;
    let other = format!("mcpauth_session={}", "A".repeat(43));
    refused(
        &get_callback(&at.callback, Some(&other)).await,
        403,
        "another browser",
    );
    assert_eq!(f.idp.tokens_issued(), 0);
}

async fn id_token_refused(fault: IdpFault, says: &str) {
    let f = start(domain("example.com")).await;
    f.idp.set_fault(fault);
    let at = to_callback(&f).await;
    refused(
        &get_callback(&at.callback, Some(&at.cookie)).await,
        502,
        says,
    );
    assert!(admin::list_users(f.ts.store()).await.unwrap().is_empty());
}

#[tokio::test]
async fn f6_id_token_for_another_audience_is_refused() {
    id_token_refused(IdpFault::OtherAudience, "another client").await;
}

#[tokio::test]
async fn f6_id_token_from_another_issuer_is_refused() {
    id_token_refused(IdpFault::OtherIssuer, "another issuer").await;
}

#[tokio::test]
async fn f6_id_token_with_a_bad_signature_is_refused() {
    id_token_refused(IdpFault::BadSignature, "bad signature").await;
}

#[tokio::test]
async fn f6_expired_id_token_is_refused() {
    id_token_refused(IdpFault::Expired, "expired").await;
}

#[tokio::test]
async fn f6_id_token_with_another_nonce_is_refused() {
    id_token_refused(IdpFault::WrongNonce, "nonce").await;
}

#[tokio::test]
async fn f6_hs256_id_token_is_refused_even_when_advertised() {
    id_token_refused(IdpFault::Hs256, "symmetric").await;
}

#[tokio::test]
async fn f6_id_token_for_several_audiences_without_our_azp_is_refused() {
    id_token_refused(IdpFault::SeveralAudiences, "azp").await;
}

#[tokio::test]
async fn f6_userinfo_for_another_sub_is_refused() {
    id_token_refused(IdpFault::UserinfoOtherSub, "its sub is not the ID token").await;
}

#[tokio::test]
async fn f6_callback_iss_of_another_issuer_is_refused_rfc9207() {
    let f = start(domain("example.com")).await;
    let at = to_callback(&f).await;
    let forged = with_param(&at.callback, "iss", Some("https://evil.example"));
    refused(
        &get_callback(&forged, Some(&at.cookie)).await,
        403,
        "another issuer",
    );
    assert_eq!(f.idp.tokens_issued(), 0);
}

#[tokio::test]
async fn f6_callback_without_iss_is_refused_when_the_provider_advertises_it_rfc9207() {
    let f = start(domain("example.com")).await;
    let at = to_callback(&f).await;
    let stripped = with_param(&at.callback, "iss", None);
    refused(
        &get_callback(&stripped, Some(&at.cookie)).await,
        403,
        "has no iss",
    );
    assert_eq!(f.idp.tokens_issued(), 0);
}

/// A rotated key is fetched on its unknown `kid`; another unknown `kid` right after is refused
/// without a fetch (rate limit).
#[tokio::test]
async fn f6_jwks_is_refetched_once_on_an_unknown_kid() {
    let f = start(domain("example.com")).await;
    let at = to_callback(&f).await;
    assert_eq!(get_callback(&at.callback, Some(&at.cookie)).await.0, 200);
    f.idp.rotate_key();
    let at = to_callback(&f).await;
    let got = get_callback(&at.callback, Some(&at.cookie)).await;
    assert_eq!(got.0, 200, "{}", got.1);
    f.idp.rotate_key();
    let at = to_callback(&f).await;
    refused(
        &get_callback(&at.callback, Some(&at.cookie)).await,
        502,
        "unknown key",
    );
}

#[tokio::test]
async fn f6_client_secret_post_when_the_provider_supports_only_that() {
    let f = start(domain("example.com")).await;
    f.idp.set_fault(IdpFault::SecretPostOnly);
    let at = to_callback(&f).await;
    let got = get_callback(&at.callback, Some(&at.cookie)).await;
    assert_eq!(got.0, 200, "{}", got.1);
    assert_eq!(f.idp.tokens_issued(), 1);
}

#[tokio::test]
async fn f6_email_from_userinfo_when_the_id_token_has_none() {
    let f = start(domain("example.com")).await;
    f.idp.set_fault(IdpFault::EmailOnlyInUserinfo);
    let at = to_callback(&f).await;
    let (status, html, _) = get_callback(&at.callback, Some(&at.cookie)).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("name=\"decision\""), "{html}");
}

#[tokio::test]
async fn f4_upstream_error_redirect_shows_an_error_page() {
    let f = start(domain("example.com")).await;
    f.idp.set_fault(IdpFault::AccessDenied);
    let at = to_callback(&f).await;
    refused(
        &get_callback(&at.callback, Some(&at.cookie)).await,
        403,
        "access_denied",
    );
    assert_eq!(f.idp.tokens_issued(), 0);
}

#[tokio::test]
async fn f5_account_outside_the_allow_list_is_not_allowed() {
    let f = start(domain("other.example")).await;
    let at = to_callback(&f).await;
    refused(
        &get_callback(&at.callback, Some(&at.cookie)).await,
        403,
        "ada@example.com is not allowed",
    );
    assert!(admin::list_users(f.ts.store()).await.unwrap().is_empty());
}

#[tokio::test]
async fn f5_array_claim_rule_lets_a_group_member_in() {
    let f = start(AllowRules {
        claims: vec![ClaimRule::parse("groups=staff").unwrap()],
        ..AllowRules::default()
    })
    .await;
    let at = to_callback(&f).await;
    assert_eq!(get_callback(&at.callback, Some(&at.cookie)).await.0, 200);
}

#[tokio::test]
async fn f4_provider_down_shows_an_error_page_and_stores_nothing() {
    // A port that refuses connections: bound, then closed.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    let db = Db::sqlite();
    let mut p = IdentityProvider::new("corp", down, "c", ClientSecret::new("s"));
    p.allow.any = true;
    let ts = TestServer::start(&db, |c| c.identity_providers = vec![p]).await;
    let client_id = ts.register_public_client(&[REDIRECT]).await;
    let a = authorization(&ts, &client_id, REDIRECT, &[]);
    let (cookie, html) = open_login(&a.url).await;
    let resp = http()
        .get(button(&html, "corp"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    let html = resp.text().await.unwrap();
    assert!(html.contains("could not be reached"), "{html}");
    assert_eq!(upstream_logins(&db.url).await, 0);
    assert!(admin::list_users(ts.store()).await.unwrap().is_empty());
}

/// The provider goes down between its authorization page and our token request: a clear 502
/// page, no user, and the upstream login is used up.
#[tokio::test]
async fn f4_provider_down_at_the_token_endpoint_shows_an_error_page_and_stores_nothing() {
    let f = start(domain("example.com")).await;
    let at = to_callback(&f).await;
    f.idp.stop().await;
    refused(
        &get_callback(&at.callback, Some(&at.cookie)).await,
        502,
        "could not be reached",
    );
    assert!(admin::list_users(f.ts.store()).await.unwrap().is_empty());
    assert_eq!(upstream_logins(&f._db.as_ref().unwrap().url).await, 0);
}

#[tokio::test]
async fn f1_config_validation() {
    let mut c = Config::new("http://127.0.0.1:1");
    let mut p = IdentityProvider::new("corp", "https://idp.example", "c", ClientSecret::new("s"));
    c.identity_providers = vec![p.clone()];
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("no allow rule"), "{e}");
    p.allow.any = true;
    c.identity_providers = vec![p.clone(), p.clone()];
    assert!(
        c.validate()
            .unwrap_err()
            .to_string()
            .contains("two identity providers")
    );
    c.identity_providers = vec![p];
    assert!(c.validate().is_ok());
    c.identity_providers.clear();
    c.password_login = false;
    assert!(
        c.validate()
            .unwrap_err()
            .to_string()
            .contains("nobody could")
    );
}
