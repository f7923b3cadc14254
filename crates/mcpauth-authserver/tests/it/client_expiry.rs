//! Dynamically registered clients expire (review finding 8): `Config::dynamic_client_ttl` after
//! registration or their last use at the token endpoint, reported as `client_secret_expires_at`
//! (RFC 7591 §3.2.1); expired ones are unknown and purged. Pre-registered clients stay.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mcpauth_authserver::admin;
use serde_json::{Value, json};

use crate::support::*;

const DAY: i64 = 24 * 3600;
const DEFAULT_TTL: i64 = 90 * DAY;

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Registers a `client_secret_basic` client over `/register`; returns its id, secret and the
/// whole response.
async fn register_secret_client(ts: &TestServer) -> (String, String, Value) {
    let resp = http()
        .post(ts.url("/register"))
        .json(&json!({
            "redirect_uris": [REDIRECT],
            "token_endpoint_auth_method": "client_secret_basic",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let body: Value = resp.json().await.unwrap();
    let id = body["client_id"].as_str().unwrap().to_owned();
    let secret = body["client_secret"].as_str().unwrap().to_owned();
    (id, secret, body)
}

/// A code exchange with a code that does not exist, authenticated with Basic credentials: a
/// known client gets `invalid_grant`, an unknown one `invalid_client`.
async fn bogus_code_basic(ts: &TestServer, id: &str, secret: &str) -> (u16, String) {
    let resp = http()
        .post(ts.url("/token"))
        .basic_auth(id, Some(secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", "no-such-code"),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &"v".repeat(43)),
        ])
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    (
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
    )
}

/// The same for a public client (identified by `client_id`).
async fn bogus_code_public(ts: &TestServer, id: &str) -> (u16, String) {
    let (status, body) = token_request(
        ts,
        &[
            ("grant_type", "authorization_code"),
            ("code", "no-such-code"),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &"v".repeat(43)),
            ("client_id", id),
        ],
    )
    .await;
    (
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
    )
}

/// The stored `expires_at` of a client, read beside the server.
async fn stored_expiry(db: &Db, client_id: &str) -> Option<i64> {
    let pool = sqlx::AnyPool::connect(&db.url).await.unwrap();
    let expiry = sqlx::query_scalar("SELECT expires_at FROM clients WHERE client_id = $1")
        .bind(client_id)
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    expiry
}

/// Sets the stored `expires_at` of a client, as if it had been registered or used earlier.
async fn set_stored_expiry(db: &Db, client_id: &str, expires_at: i64) {
    let pool = sqlx::AnyPool::connect(&db.url).await.unwrap();
    sqlx::query("UPDATE clients SET expires_at = $1 WHERE client_id = $2")
        .bind(expires_at)
        .bind(client_id)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}

async fn listed(ts: &TestServer, client_id: &str) -> bool {
    admin::list_clients(ts.store())
        .await
        .unwrap()
        .iter()
        .any(|c| c.client_id == client_id)
}

both_backends! {
    /// RFC 7591 §3.2.1: a client given a secret learns when it expires, which is when its
    /// registration does (default TTL: 90 days).
    async fn review8_registration_response_carries_the_client_expiry(db) {
        let ts = TestServer::start(db, |_| {}).await;
        let before = unix_now();
        let (id, _, body) = register_secret_client(&ts).await;
        let after = unix_now();
        let expires = body["client_secret_expires_at"].as_i64().unwrap();
        assert!(
            (before + DEFAULT_TTL..=after + DEFAULT_TTL).contains(&expires),
            "client_secret_expires_at {expires} is not now + 90 days"
        );
        assert_eq!(stored_expiry(db, &id).await, Some(expires));
        // A public client has no secret, hence no client_secret_expires_at; its row expires too.
        let public = ts.register_public_client(&[REDIRECT]).await;
        let stored = stored_expiry(db, &public).await.unwrap();
        assert!((before + DEFAULT_TTL..=unix_now() + DEFAULT_TTL).contains(&stored));
    }

    /// Once its TTL has passed, a dynamic client is unknown at /token (invalid_client) and at
    /// /authorize (the error page), and purging removes it; a pre-registered client stays.
    async fn review8_an_expired_dynamic_client_is_unknown_and_purged(db) {
        let ts = TestServer::start(db, |c| c.dynamic_client_ttl = Some(Duration::from_secs(1))).await;
        let (static_id, static_secret) = ts.add_secret_client().await;
        let before = unix_now();
        let (id, secret, body) = register_secret_client(&ts).await;
        let expires = body["client_secret_expires_at"].as_i64().unwrap();
        assert!((before + 1..=unix_now() + 1).contains(&expires), "{body}");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (status, error) = bogus_code_basic(&ts, &id, &secret).await;
            if error == "invalid_client" {
                assert_eq!(status, 401);
                break;
            }
            assert_eq!(error, "invalid_grant", "a live client is known");
            assert!(Instant::now() < deadline, "the client did not expire within 10 s");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let resp = http()
            .get(authorization(&ts, &id, REDIRECT, &[]).url)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400);
        assert!(resp.text().await.unwrap().contains("not registered here"));
        // The pre-registered client is as known as ever.
        assert_eq!(
            bogus_code_basic(&ts, &static_id, &static_secret).await,
            (400, "invalid_grant".into())
        );
        assert!(listed(&ts, &id).await, "expired but not yet purged");
        ts.store().purge_expired().await.unwrap();
        assert!(!listed(&ts, &id).await, "purged");
        assert!(listed(&ts, &static_id).await, "pre-registered clients are never purged");
        assert_eq!(stored_expiry(db, &static_id).await, None);
    }

    /// Using a client at /token moves its expiry to now + TTL, but only once the expiry was set
    /// more than a day ago: the token endpoint writes at most once a day per client.
    async fn review8_using_a_dynamic_client_at_token_slides_its_expiry(db) {
        let ts = TestServer::start(db, |_| {}).await;
        ts.add_user().await;
        let id = ts.register_public_client(&[REDIRECT]).await;
        // As if registered 90 days ago: a minute left.
        set_stored_expiry(db, &id, unix_now() + 60).await;
        let before = unix_now();
        assert_eq!(bogus_code_public(&ts, &id).await, (400, "invalid_grant".into()));
        let slid = stored_expiry(db, &id).await.unwrap();
        assert!(
            (before + DEFAULT_TTL..=unix_now() + DEFAULT_TTL).contains(&slid),
            "used: expires {slid}, not now + 90 days"
        );
        // Set an hour ago: using the client again writes nothing.
        let recent = unix_now() + DEFAULT_TTL - 3600;
        set_stored_expiry(db, &id, recent).await;
        code_flow_tokens(&ts, &id).await;
        assert_eq!(bogus_code_public(&ts, &id).await, (400, "invalid_grant".into()));
        assert_eq!(stored_expiry(db, &id).await, Some(recent));
        // Set two days ago: the next use (once any cached copy of the client is stale) slides it.
        let old = unix_now() + DEFAULT_TTL - 2 * DAY;
        set_stored_expiry(db, &id, old).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while stored_expiry(db, &id).await == Some(old) {
            assert!(Instant::now() < deadline, "the expiry did not slide within 10 s");
            assert_eq!(bogus_code_public(&ts, &id).await, (400, "invalid_grant".into()));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(stored_expiry(db, &id).await.unwrap() >= before + DEFAULT_TTL);
    }

    /// Without a TTL, registrations never expire: client_secret_expires_at is 0 (RFC 7591
    /// §3.2.1) and purging keeps them.
    async fn review8_without_a_ttl_dynamic_clients_never_expire(db) {
        let ts = TestServer::start(db, |c| c.dynamic_client_ttl = None).await;
        let (id, secret, body) = register_secret_client(&ts).await;
        assert_eq!(body["client_secret_expires_at"], 0);
        assert_eq!(stored_expiry(db, &id).await, None);
        assert_eq!(bogus_code_basic(&ts, &id, &secret).await, (400, "invalid_grant".into()));
        assert_eq!(stored_expiry(db, &id).await, None, "use sets no expiry");
        ts.store().purge_expired().await.unwrap();
        assert!(listed(&ts, &id).await);
        assert_eq!(bogus_code_basic(&ts, &id, &secret).await, (400, "invalid_grant".into()));
    }
}
