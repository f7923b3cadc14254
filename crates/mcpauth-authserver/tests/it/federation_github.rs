//! Federation through a plain OAuth 2.0 provider (the testkit's GitHub-style one on
//! 127.0.0.1): the authorization code grant with PKCE and `state` but no OIDC (RFC 6749 §4.1,
//! RFC 7636), the account from the user endpoint, e-mail addresses verified only by the emails
//! endpoint, the allow-list (SPEC F5) and the upstream login's binding (S14).

use mcpauth_authserver::admin;
use mcpauth_authserver::federation::{
    AllowRules, ClaimRule, IdentityProvider, OAuth2Endpoints, ProviderKind, TokenAuth,
};
use mcpauth_core::ClientSecret;
use mcpauth_testkit::{ClientAuth, GithubFault, GithubProvider, GithubUser};

use crate::federation_support::{
    AtCallback, browse_to_callback, get_callback, refused, upstream_logins, with_param,
};
use crate::support::{
    Db, REDIRECT, TestServer, both_backends, claims, exchange_code, location_params, post_consent,
};

const ID: u64 = 583231;
const LOGIN: &str = "octocat";
const EMAIL: &str = "octocat@example.com";

struct Gh {
    ts: TestServer,
    gh: GithubProvider,
    client_id: String,
    db_url: String,
    _own: Option<Db>,
}

fn allow_domain(d: &str) -> AllowRules {
    AllowRules {
        domains: vec![d.into()],
        ..AllowRules::default()
    }
}

fn allow_claim(rule: &str) -> AllowRules {
    AllowRules {
        claims: vec![ClaimRule::parse(rule).unwrap()],
        ..AllowRules::default()
    }
}

/// GitHub as the README configures it: the emails endpoint, `login` as the name, the scopes
/// `read:user user:email`.
fn provider(gh: &GithubProvider, allow: AllowRules) -> IdentityProvider {
    let mut e = OAuth2Endpoints::new(
        gh.authorization_endpoint(),
        gh.token_endpoint(),
        gh.user_endpoint(),
    );
    e.emails_endpoint = Some(gh.emails_endpoint());
    e.name_field = Some("login".into());
    let mut p = IdentityProvider::oauth2(
        "github",
        e,
        gh.client_id.clone(),
        ClientSecret::new(gh.client_secret.clone()),
    );
    p.display_name = "GitHub".into();
    p.scopes = vec!["read:user".into(), "user:email".into()];
    p.allow = allow;
    p
}

async fn start_with(
    db: Option<&Db>,
    allow: AllowRules,
    adjust: impl FnOnce(&mut IdentityProvider),
) -> Gh {
    let gh = GithubProvider::start(GithubUser {
        id: ID,
        login: LOGIN.into(),
        email: EMAIL.into(),
    })
    .await;
    let own = db.is_none().then(Db::sqlite);
    let db = db.or(own.as_ref()).unwrap();
    let mut p = provider(&gh, allow);
    adjust(&mut p);
    let ts = TestServer::start(db, |c| c.identity_providers = vec![p]).await;
    let client_id = ts.register_public_client(&[REDIRECT]).await;
    Gh {
        ts,
        gh,
        client_id,
        db_url: db.url.clone(),
        _own: own,
    }
}

async fn start(allow: AllowRules) -> Gh {
    start_with(None, allow, |_| {}).await
}

async fn to_callback(g: &Gh) -> AtCallback {
    browse_to_callback(
        &g.ts,
        &g.client_id,
        "github",
        &g.gh.authorization_endpoint(),
    )
    .await
}

/// Asserts that the refused sign-in left no user and no upstream login behind.
async fn nothing_stored(g: &Gh) {
    assert!(admin::list_users(g.ts.store()).await.unwrap().is_empty());
    assert_eq!(upstream_logins(&g.db_url).await, 0);
}

both_backends! {
    /// F1-F7 with a plain OAuth 2.0 provider: button → GitHub-style authorize (PKCE S256 and
    /// state, no nonce, no `openid`) → callback → our consent → code → token for the federated
    /// user `github:ID` (the numeric id as a string); a second sign-in finds the same user. The
    /// domain rule matches the address the emails endpoint says is verified.
    async fn f7_github_style_sign_in_end_to_end(db) {
        let g = start_with(Some(db), allow_domain("example.com"), |_| {}).await;
        for round in 0..2 {
            let at = to_callback(&g).await;
            let sent: std::collections::HashMap<String, String> = url::Url::parse(&at.at_idp)
                .unwrap()
                .query_pairs()
                .into_owned()
                .collect();
            assert_eq!(sent["scope"], "read:user user:email");
            assert_eq!(sent["code_challenge_method"], "S256");
            assert!(!sent.contains_key("nonce"), "no nonce without OIDC: {sent:?}");
            let (status, html, cookie) = get_callback(&at.callback, Some(&at.cookie)).await;
            assert_eq!(status, 200, "{html}");
            assert!(html.contains("name=\"decision\""), "our consent page (F7): {html}");
            assert!(html.contains(&format!("github:{ID}")), "{html}");
            let cookie = cookie.expect("a new session cookie (no fixation)");
            let resp = post_consent(&g.ts, &cookie, &html, "allow").await;
            assert_eq!(resp.status(), 303);
            let code = location_params(&resp)["code"].clone();
            let body = exchange_code(&g.ts, &g.client_id, &code, &at.verifier).await;
            let users = admin::list_users(g.ts.store()).await.unwrap();
            assert_eq!(users.len(), 1, "round {round}: one federated user");
            assert_eq!(users[0].username, format!("github:{ID}"));
            let at = claims(body["access_token"].as_str().unwrap());
            assert_eq!(at["sub"], users[0].id.as_str());
            // F2: the grant keeps GitHub's token; it has no expiry, so it is used as it is.
            let up = g.ts.server.upstream_token(at["jti"].as_str().unwrap()).await.unwrap();
            assert!(g.gh.issued(up.access_token()), "GitHub's own token");
            assert_eq!((up.provider.as_str(), up.subject.clone()), ("github", ID.to_string()));
            assert_eq!(g.gh.tokens_issued(), round + 1, "no renewal");
        }
        assert_eq!(g.gh.last_client_auth(), Some(ClientAuth::Basic), "the default");
    }
}

#[tokio::test]
async fn f5_github_login_claim_rule() {
    let g = start(allow_claim(&format!("login={LOGIN}"))).await;
    let at = to_callback(&g).await;
    let got = get_callback(&at.callback, Some(&at.cookie)).await;
    assert_eq!(got.0, 200, "{}", got.1);
    assert!(got.1.contains("name=\"decision\""), "{}", got.1);
    // The numeric id matches a rule by its JSON text.
    let g = start(allow_claim(&format!("id={ID}"))).await;
    let at = to_callback(&g).await;
    assert_eq!(get_callback(&at.callback, Some(&at.cookie)).await.0, 200);
}

#[tokio::test]
async fn f5_github_account_outside_the_allow_list_is_not_allowed() {
    let g = start(allow_claim("login=someone-else")).await;
    let at = to_callback(&g).await;
    refused(
        &get_callback(&at.callback, Some(&at.cookie)).await,
        403,
        &format!("The GitHub account {EMAIL} is not allowed"),
    );
    nothing_stored(&g).await;
}

/// An unverified primary address does not match the domain rule, even though a verified
/// secondary (noreply) address exists; the page names the account by its login.
#[tokio::test]
async fn f5_github_unverified_email_does_not_match_the_domain_rule() {
    let g = start(allow_domain("example.com")).await;
    g.gh.set_fault(GithubFault::EmailUnverified);
    let at = to_callback(&g).await;
    refused(
        &get_callback(&at.callback, Some(&at.cookie)).await,
        403,
        &format!("The GitHub account {LOGIN} is not allowed"),
    );
    nothing_stored(&g).await;
}

/// The address `/user` shows (a public one) is not verified: without the emails endpoint the
/// domain rule matches nothing.
#[tokio::test]
async fn f5_github_email_of_the_user_endpoint_is_not_verified() {
    let g = start_with(None, allow_domain("example.com"), |p| {
        if let ProviderKind::OAuth2(e) = &mut p.kind {
            e.emails_endpoint = None;
        }
    })
    .await;
    g.gh.set_fault(GithubFault::PublicEmail);
    let at = to_callback(&g).await;
    refused(
        &get_callback(&at.callback, Some(&at.cookie)).await,
        403,
        &format!("account {EMAIL} is not allowed"),
    );
    nothing_stored(&g).await;
}

#[tokio::test]
async fn s14_github_callback_with_a_wrong_state_is_refused() {
    let g = start(allow_domain("example.com")).await;
    g.gh.set_fault(GithubFault::WrongState);
    let at = to_callback(&g).await;
    refused(
        &get_callback(&at.callback, Some(&at.cookie)).await,
        400,
        "expired or was already used",
    );
    assert_eq!(g.gh.tokens_issued(), 0);
    assert!(admin::list_users(g.ts.store()).await.unwrap().is_empty());
}

#[tokio::test]
async fn s14_github_callback_without_state_is_refused() {
    let g = start(allow_domain("example.com")).await;
    g.gh.set_fault(GithubFault::NoState);
    let at = to_callback(&g).await;
    refused(
        &get_callback(&at.callback, Some(&at.cookie)).await,
        403,
        "has no state",
    );
    assert_eq!(g.gh.tokens_issued(), 0);
    assert!(admin::list_users(g.ts.store()).await.unwrap().is_empty());
}

#[tokio::test]
async fn s14_github_replayed_callback_is_refused() {
    let g = start(allow_domain("example.com")).await;
    let at = to_callback(&g).await;
    assert_eq!(get_callback(&at.callback, Some(&at.cookie)).await.0, 200);
    refused(
        &get_callback(&at.callback, Some(&at.cookie)).await,
        400,
        "already used",
    );
    assert_eq!(g.gh.tokens_issued(), 1);
}

#[tokio::test]
async fn f4_github_error_redirect_shows_an_error_page() {
    let g = start(allow_domain("example.com")).await;
    g.gh.set_fault(GithubFault::AccessDenied);
    let at = to_callback(&g).await;
    refused(
        &get_callback(&at.callback, Some(&at.cookie)).await,
        403,
        "GitHub did not sign you in (access_denied)",
    );
    assert_eq!(g.gh.tokens_issued(), 0);
    nothing_stored(&g).await;
}

/// The provider goes down between its authorization page and our token request.
#[tokio::test]
async fn f4_github_down_at_the_token_endpoint_shows_an_error_page_and_stores_nothing() {
    let g = start(allow_domain("example.com")).await;
    let at = to_callback(&g).await;
    g.gh.stop().await;
    refused(
        &get_callback(&at.callback, Some(&at.cookie)).await,
        502,
        "Signing in with GitHub failed: the identity provider could not be reached",
    );
    nothing_stored(&g).await;
}

/// GitHub answers a refused code with 200 and an `error` member: still a refusal.
#[tokio::test]
async fn f6_github_error_in_a_200_token_answer_is_refused() {
    let g = start_with(None, allow_domain("example.com"), |p| {
        p.client_secret = ClientSecret::new("not-the-secret");
    })
    .await;
    let at = to_callback(&g).await;
    refused(
        &get_callback(&at.callback, Some(&at.cookie)).await,
        502,
        "incorrect_client_credentials",
    );
    nothing_stored(&g).await;
}

#[tokio::test]
async fn f6_github_client_secret_post_when_configured() {
    let g = start_with(None, allow_domain("example.com"), |p| {
        if let ProviderKind::OAuth2(e) = &mut p.kind {
            e.token_auth = TokenAuth::Post;
        }
    })
    .await;
    let at = to_callback(&g).await;
    assert_eq!(get_callback(&at.callback, Some(&at.cookie)).await.0, 200);
    assert_eq!(g.gh.last_client_auth(), Some(ClientAuth::Post));
}

/// A forged `code` (the state is ours) is refused by the provider; nothing is stored.
#[tokio::test]
async fn f6_github_forged_code_is_refused() {
    let g = start(allow_domain("example.com")).await;
    let at = to_callback(&g).await;
    let forged = with_param(&at.callback, "code", Some("forged"));
    refused(
        &get_callback(&forged, Some(&at.cookie)).await,
        502,
        "bad_verification_code",
    );
    nothing_stored(&g).await;
}

/// The account name comes from the provider: the "not allowed" page escapes it.
#[tokio::test]
async fn f5_github_account_name_is_escaped_on_the_not_allowed_page() {
    let gh = GithubProvider::start(GithubUser {
        id: ID,
        login: "<script>alert(1)</script>".into(),
        email: EMAIL.into(),
    })
    .await;
    let db = Db::sqlite();
    let p = provider(&gh, allow_claim("login=octocat"));
    let ts = TestServer::start(&db, |c| c.identity_providers = vec![p]).await;
    let client_id = ts.register_public_client(&[REDIRECT]).await;
    gh.set_fault(GithubFault::EmailUnverified);
    let at = browse_to_callback(&ts, &client_id, "github", &gh.authorization_endpoint()).await;
    let got = get_callback(&at.callback, Some(&at.cookie)).await;
    refused(&got, 403, "is not allowed");
    assert!(!got.1.contains("<script>alert"), "{}", got.1);
    assert!(
        got.1.contains("&lt;script&gt;") || got.1.contains("&#60;script&#62;"),
        "{}",
        got.1
    );
}

/// The user endpoint's answer is read up to a size limit.
#[tokio::test]
async fn f6_github_oversized_user_answer_is_refused() {
    let g = start(allow_domain("example.com")).await;
    g.gh.set_fault(GithubFault::HugeUser);
    let at = to_callback(&g).await;
    refused(
        &get_callback(&at.callback, Some(&at.cookie)).await,
        502,
        "the response is larger than",
    );
    nothing_stored(&g).await;
}
