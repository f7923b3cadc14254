//! The device authorization grant (RFC 8628, SPEC V1-V2) over HTTP: the device authorization
//! endpoint, the verification page with its CSRF check, sign-in and the consent page with the
//! remote-phishing warning, and the polls (`authorization_pending`, `slow_down` with a growing
//! interval, `access_denied`, `expired_token`, one exchange only).

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// A server whose device clients poll every second (the test waits that long between polls).
async fn start(db: &Db, ttl: u64) -> TestServer {
    let ts = TestServer::start(db, |c| {
        c.device_interval = Duration::from_secs(1);
        c.device_code_ttl = Duration::from_secs(ttl);
    })
    .await;
    ts.add_user().await;
    ts
}

/// A public client registered for the device grant (and refresh), as `mcpauth login --device`
/// registers itself.
async fn device_client(ts: &TestServer) -> String {
    let resp = http()
        .post(ts.url("/register"))
        .json(&json!({
            "client_name": "Device CLI",
            "token_endpoint_auth_method": "none",
            "grant_types": [DEVICE_GRANT, "refresh_token"],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let body: Value = resp.json().await.unwrap();
    body["client_id"].as_str().unwrap().to_owned()
}

async fn start_device(ts: &TestServer, client_id: &str) -> Value {
    let resp = http()
        .post(ts.url("/device_authorization"))
        .form(&[
            ("client_id", client_id),
            ("scope", "mcp:read"),
            ("resource", RESOURCE),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    resp.json().await.unwrap()
}

async fn poll(ts: &TestServer, client_id: &str, device_code: &str) -> (u16, Value) {
    token_request(
        ts,
        &[
            ("grant_type", DEVICE_GRANT),
            ("device_code", device_code),
            ("client_id", client_id),
        ],
    )
    .await
}

/// Waits out the polling interval (1 s, with margin).
async fn interval() {
    tokio::time::sleep(Duration::from_millis(1100)).await;
}

/// The verification page: its session cookie and HTML.
async fn open_device_page(ts: &TestServer, query: &str) -> (String, String) {
    let resp = http()
        .get(ts.url(&format!("/device{query}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-frame-options"], "DENY");
    let cookie = cookie_from(&resp).expect("a session cookie for the form's CSRF token");
    (cookie, resp.text().await.unwrap())
}

async fn enter_code(ts: &TestServer, cookie: &str, csrf: &str, code: &str) -> reqwest::Response {
    http()
        .post(ts.url("/device"))
        .header("cookie", cookie)
        .form(&[("csrf", csrf), ("user_code", code)])
        .send()
        .await
        .unwrap()
}

/// Enters `user_code` on the page, signs in, and returns the session cookie and consent page.
async fn to_consent(ts: &TestServer, user_code: &str) -> (String, String) {
    let (cookie, html) = open_device_page(ts, "").await;
    let resp = enter_code(ts, &cookie, &hidden(&html, "csrf"), user_code).await;
    assert_eq!(resp.status(), 200, "the login page");
    let login = resp.text().await.unwrap();
    let resp = post_login(ts, &cookie, &login, USER, PASSWORD).await;
    assert_eq!(resp.status(), 200, "the consent page");
    let cookie = cookie_from(&resp).expect("a new session after sign-in");
    (cookie, resp.text().await.unwrap())
}

both_backends! {
    /// V1: the metadata advertises the endpoint and the grant (RFC 8628 §4).
    async fn v1_metadata_advertises_the_device_grant(db) {
        let ts = start(db, 600).await;
        let meta: Value = http()
            .get(ts.url("/.well-known/oauth-authorization-server"))
            .send().await.unwrap().json().await.unwrap();
        assert_eq!(meta["device_authorization_endpoint"], ts.url("/device_authorization"));
        assert!(meta["grant_types_supported"].as_array().unwrap().contains(&json!(DEVICE_GRANT)));
    }

    /// V1-V2 end to end: codes, pending polls, the page (filled in from
    /// verification_uri_complete), sign-in, the phishing warning, allow, the tokens once, a
    /// refresh.
    async fn v1_the_device_flow_issues_tokens_once(db) {
        let ts = start(db, 600).await;
        let client_id = device_client(&ts).await;
        let d = start_device(&ts, &client_id).await;
        let user_code = d["user_code"].as_str().unwrap();
        assert!(regex_like_user_code(user_code), "{user_code}");
        assert_eq!(d["verification_uri"], ts.url("/device"));
        assert_eq!(d["verification_uri_complete"], format!("{}?user_code={user_code}", ts.url("/device")));
        assert_eq!((d["expires_in"].as_i64(), d["interval"].as_i64()), (Some(600), Some(1)));
        let device_code = d["device_code"].as_str().unwrap();
        let (status, body) = poll(&ts, &client_id, device_code).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("authorization_pending")), "{body}");

        let complete = d["verification_uri_complete"].as_str().unwrap();
        let query = &complete[complete.find('?').unwrap()..];
        let (_, page) = open_device_page(&ts, query).await;
        assert!(page.contains(&format!("value=\"{user_code}\"")), "the code is filled in");
        let (cookie, consent) = to_consent(&ts, &user_code.to_lowercase().replace('-', " ")).await;
        assert!(consent.contains("Only allow a device you have in front of you"), "{consent}");
        assert!(consent.contains(user_code), "the warning names the code");
        assert!(!consent.contains("you will be sent to"), "nothing is redirected");
        let resp = post_consent(&ts, &cookie, &consent, "allow").await;
        assert_eq!(resp.status(), 200);
        assert!(resp.text().await.unwrap().contains("Device connected"));

        interval().await;
        let (status, tokens) = poll(&ts, &client_id, device_code).await;
        assert_eq!(status, 200, "{tokens}");
        assert_eq!(tokens["token_type"], "Bearer");
        assert_eq!(tokens["scope"], "mcp:read");
        let at = claims(tokens["access_token"].as_str().unwrap());
        assert_eq!(at["aud"], RESOURCE);
        assert_eq!(at["client_id"], client_id);
        interval().await;
        let (status, body) = poll(&ts, &client_id, device_code).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
        let (status, body) = token_request(&ts, &[
            ("grant_type", "refresh_token"),
            ("client_id", &client_id),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
        ]).await;
        assert_eq!(status, 200, "{body}");
        // The code was answered: entering it again finds nothing.
        let (cookie, html) = open_device_page(&ts, "").await;
        let resp = enter_code(&ts, &cookie, &hidden(&html, "csrf"), user_code).await;
        assert_eq!(resp.status(), 400);
        assert!(resp.text().await.unwrap().contains("That code is not valid"));
    }

    /// `mcpauth clients add --grant-type urn:…:device_code` makes a client for the grant; a
    /// grant type nobody knows is refused.
    async fn v1_an_added_client_may_use_the_device_grant(db) {
        use mcpauth_authserver::AuthMethod;
        use mcpauth_authserver::admin::{self, NewClient};
        let ts = start(db, 600).await;
        let mut c = NewClient::new(AuthMethod::None);
        c.grant_types = vec![DEVICE_GRANT.into()];
        let created = admin::add_client(ts.store(), c).await.unwrap();
        let d = start_device(&ts, &created.info.client_id).await;
        assert!(d["device_code"].is_string());
        let mut c = NewClient::new(AuthMethod::None);
        c.grant_types = vec!["urn:example:unknown".into()];
        let refused = admin::add_client(ts.store(), c).await.unwrap_err();
        assert!(refused.to_string().contains("not supported"), "{refused}");
    }

    /// RFC 8628 §3.5: polling faster than the interval is slow_down, and the interval grows by
    /// 5 s each time (a poll a second later is still too soon).
    async fn v2_polling_too_fast_slows_down_with_a_growing_interval(db) {
        let ts = start(db, 600).await;
        let client_id = device_client(&ts).await;
        let d = start_device(&ts, &client_id).await;
        let device_code = d["device_code"].as_str().unwrap();
        let (_, body) = poll(&ts, &client_id, device_code).await;
        assert_eq!(body["error"], "authorization_pending");
        let (status, body) = poll(&ts, &client_id, device_code).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("slow_down")), "{body}");
        interval().await;
        let (_, body) = poll(&ts, &client_id, device_code).await;
        assert_eq!(body["error"], "slow_down", "the interval is now 6 s, not 1 s");
    }

    /// RFC 8628 §3.5: a denied request is access_denied for the device; the page says so.
    async fn v2_a_denied_request_is_access_denied(db) {
        let ts = start(db, 600).await;
        let client_id = device_client(&ts).await;
        let d = start_device(&ts, &client_id).await;
        let (cookie, consent) = to_consent(&ts, d["user_code"].as_str().unwrap()).await;
        let resp = post_consent(&ts, &cookie, &consent, "deny").await;
        assert_eq!(resp.status(), 200);
        assert!(resp.text().await.unwrap().contains("Device not connected"));
        let (status, body) = poll(&ts, &client_id, d["device_code"].as_str().unwrap()).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("access_denied")), "{body}");
    }

    /// Each device authorization is a pending row until it expires: past the per-IP limit a
    /// request is 429 temporarily_unavailable with no code (nothing stored), requests refused
    /// for another reason do not count, and the codes given before still poll as pending.
    async fn v1_device_authorizations_per_address_are_limited(db) {
        let ts = TestServer::start(db, |c| {
            c.device_interval = Duration::from_secs(1);
            c.rate_limits.device_per_ip = Some(mcpauth_authserver::RateLimit::new(3, 1));
        })
        .await;
        let client_id = device_client(&ts).await;
        let browser_client = ts.register_public_client(&[REDIRECT]).await;
        let device = |client: String| {
            http().post(ts.url("/device_authorization")).form(&[("client_id", client)]).send()
        };
        let first = start_device(&ts, &client_id).await;
        start_device(&ts, &client_id).await;
        for _ in 0..3 {
            let refused = device(browser_client.clone()).await.unwrap();
            assert_eq!(refused.status(), 400, "unauthorized_client, not counted");
        }
        start_device(&ts, &client_id).await;
        let limited = device(client_id.clone()).await.unwrap();
        assert_eq!(limited.status(), 429);
        let body: Value = limited.json().await.unwrap();
        assert_eq!(body["error"], "temporarily_unavailable", "{body}");
        assert!(body.get("device_code").is_none() && body.get("user_code").is_none(), "{body}");
        let (status, body) = poll(&ts, &client_id, first["device_code"].as_str().unwrap()).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("authorization_pending")), "{body}");
    }

    /// RFC 8628 §3.5: an expired code is expired_token; its user code is no longer accepted.
    async fn v2_an_expired_code_is_expired_token(db) {
        let ts = start(db, 0).await;
        let client_id = device_client(&ts).await;
        let d = start_device(&ts, &client_id).await;
        let (status, body) = poll(&ts, &client_id, d["device_code"].as_str().unwrap()).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("expired_token")), "{body}");
        let (cookie, html) = open_device_page(&ts, "").await;
        let resp = enter_code(&ts, &cookie, &hidden(&html, "csrf"), d["user_code"].as_str().unwrap()).await;
        assert_eq!(resp.status(), 400);
    }

    /// Bad input on both sides, each a clear refusal that changes nothing: a wrong or
    /// malformed user code, a form without its CSRF token or cookie, another client's device
    /// code, an unknown device code, a client not registered for the grant.
    async fn v2_bad_input_is_refused(db) {
        let ts = start(db, 600).await;
        let client_id = device_client(&ts).await;
        let d = start_device(&ts, &client_id).await;
        let user_code = d["user_code"].as_str().unwrap();
        let (cookie, html) = open_device_page(&ts, "?user_code=%3Cscript%3E").await;
        assert!(!html.contains("<script>"), "a bad code is not echoed");
        let csrf = hidden(&html, "csrf");
        for wrong in ["BBBB-BBBB", "nonsense", ""] {
            let resp = enter_code(&ts, &cookie, &csrf, wrong).await;
            assert_eq!(resp.status(), 400, "{wrong}");
            assert!(resp.text().await.unwrap().contains("That code is not valid"));
        }
        let resp = enter_code(&ts, &cookie, "forged", user_code).await;
        assert_eq!(resp.status(), 403);
        let resp = http().post(ts.url("/device")).form(&[("csrf", csrf.as_str()), ("user_code", user_code)])
            .send().await.unwrap();
        assert_eq!(resp.status(), 403, "no cookie");

        let other = device_client(&ts).await;
        let (status, body) = poll(&ts, &other, d["device_code"].as_str().unwrap()).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
        let (status, body) = poll(&ts, &client_id, "unknown").await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");

        let browser_client = ts.register_public_client(&[REDIRECT]).await;
        let resp = http().post(ts.url("/device_authorization"))
            .form(&[("client_id", browser_client.as_str())]).send().await.unwrap();
        assert_eq!(resp.status(), 400);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "unauthorized_client", "{body}");

        // After all that, the code still works for its user.
        let (cookie, consent) = to_consent(&ts, user_code).await;
        assert_eq!(post_consent(&ts, &cookie, &consent, "allow").await.status(), 200);
        interval().await;
        let (status, body) = poll(&ts, &client_id, d["device_code"].as_str().unwrap()).await;
        assert_eq!(status, 200, "{body}");
    }
}

/// `XXXX-XXXX` from the consonant alphabet (RFC 8628 §6.1).
fn regex_like_user_code(code: &str) -> bool {
    let b = code.as_bytes();
    b.len() == 9
        && b[4] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || b"BCDFGHJKLMNPQRSTVWXZ".contains(c))
}
