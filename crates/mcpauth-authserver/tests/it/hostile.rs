//! Hostile request bodies before authentication (code review findings): the server answers
//! them with a clear error and stays responsive for other clients.

use std::time::Duration;

use mcpauth_authserver::{IpNet, PasswordParams, RateLimit, RateLimits};

use crate::support::{
    Db, PASSWORD, REDIRECT, TestServer, USER, authorization, hidden, http, open_login, post_login,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review1_a_body_of_distinct_parameters_is_refused_and_others_are_served() {
    let db = Db::sqlite();
    let ts = TestServer::start(&db, |_| {}).await;
    // ~11,000 distinct short keys in 64 KiB: quadratic parsing took 117 ms of CPU per request.
    let mut body = String::new();
    let mut i = 0u32;
    while body.len() < 64 * 1024 - 16 {
        body.push_str(&format!("{i:x}=&"));
        i += 1;
    }
    let hostile: Vec<_> = (0..8)
        .map(|_| {
            let (url, body) = (ts.url("/token"), body.clone());
            tokio::spawn(async move {
                http()
                    .post(url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body)
                    .send()
                    .await
                    .unwrap()
            })
        })
        .collect();
    assert_eq!(
        http()
            .get(ts.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    for h in hostile {
        let resp = h.await.unwrap();
        assert_eq!(resp.status(), 400);
        let err: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(err["error"], "invalid_request");
        assert!(
            err["error_description"]
                .as_str()
                .unwrap()
                .contains("more than 64 parameters"),
            "{err}"
        );
    }
}

/// Review finding 3: password checks (argon2id, each holding `memory_kib`) are bounded. With one
/// check at a time, a slow hash and a short wait, concurrent wrong-password logins beyond the
/// limit get the login page with 503 "too many sign-ins at once"; the server stays responsive
/// meanwhile and signs the user in afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review3_concurrent_password_checks_are_bounded() {
    let db = Db::sqlite();
    let ts = TestServer::start(&db, |c| {
        c.max_concurrent_password_checks = 1;
        c.password_check_wait = Duration::from_millis(100);
        // The dummy hash checked for unknown users: slow enough to outlast the wait.
        c.password_params = PasswordParams {
            memory_kib: 16 * 1024,
            iterations: 24,
            parallelism: 1,
        };
    })
    .await;
    ts.add_user().await;
    let client = ts.register_public_client(&[REDIRECT]).await;
    let (cookie, html) = open_login(&authorization(&ts, &client, REDIRECT, &[]).url).await;
    let logins: Vec<_> = (0..8)
        .map(|i| {
            let (url, cookie) = (ts.url("/authorize/login"), cookie.clone());
            let form = [
                ("request_id", hidden(&html, "request_id")),
                ("csrf", hidden(&html, "csrf")),
                ("username", format!("mallory{i}")),
                ("password", "guess".to_owned()),
            ];
            tokio::spawn(async move {
                let resp = http()
                    .post(url)
                    .header("cookie", cookie)
                    .form(&form)
                    .send()
                    .await
                    .unwrap();
                (resp.status().as_u16(), resp.text().await.unwrap())
            })
        })
        .collect();
    let health = tokio::time::timeout(
        Duration::from_secs(10),
        http().get(ts.url("/healthz")).send(),
    )
    .await
    .expect("/healthz answers while passwords are checked")
    .unwrap();
    assert_eq!(health.status(), 200);
    let mut busy = 0;
    for login in logins {
        let (status, page) = login.await.unwrap();
        match status {
            503 => {
                busy += 1;
                assert!(page.contains("Too many sign-ins at once"), "{page}");
                assert!(page.contains("name=\"password\""), "the login page: {page}");
            }
            401 => assert!(page.contains("Wrong username or password"), "{page}"),
            other => panic!("status {other}: {page}"),
        }
    }
    assert!(
        busy > 0,
        "no login was refused with one password check at a time"
    );
    let resp = post_login(&ts, &cookie, &html, USER, PASSWORD).await;
    assert_eq!(resp.status(), 200, "signed in once the checks are done");
}

/// Status of a `/token` request carrying `headers` (each request takes a token from the per-IP
/// bucket before anything else).
async fn token_status(ts: &TestServer, headers: &[(&str, &str)]) -> u16 {
    let mut req = http()
        .post(ts.url("/token"))
        .form(&[("grant_type", "client_credentials")]);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap().status().as_u16()
}

/// Two `/token` requests per IP address, then 429.
fn two_per_ip(c: &mut mcpauth_authserver::Config) {
    c.rate_limits = RateLimits {
        token_per_ip: Some(RateLimit::new(2, 1)),
        ..RateLimits::none()
    };
}

/// Review finding 4: behind a trusted reverse proxy (the TCP peer is in `trusted_proxies`) the
/// client is the right-most untrusted address of `X-Forwarded-For` (or RFC 7239 §5.2
/// `Forwarded: for=`), so users behind it get buckets of their own; what a client prepends
/// itself does not change its bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review4_clients_behind_a_trusted_proxy_get_their_own_rate_limit_buckets() {
    let db = Db::sqlite();
    let ts = TestServer::start(&db, |c| {
        two_per_ip(c);
        c.trusted_proxies = vec![IpNet::parse("127.0.0.0/8").unwrap()];
    })
    .await;
    let a = [("x-forwarded-for", "203.0.113.1")];
    assert_ne!(token_status(&ts, &a).await, 429);
    assert_ne!(token_status(&ts, &a).await, 429);
    assert_eq!(
        token_status(&ts, &a).await,
        429,
        "client A's bucket is empty"
    );
    // A prepends addresses of its choice; the proxy appended the one it saw.
    let spoofed = [("x-forwarded-for", "198.51.100.7, 203.0.113.1")];
    assert_eq!(token_status(&ts, &spoofed).await, 429, "still client A");
    // B, seen through two trusted hops.
    let b = [("x-forwarded-for", "203.0.113.2, 127.0.0.9")];
    assert_ne!(
        token_status(&ts, &b).await,
        429,
        "client B has a bucket of its own"
    );
    let c = [("forwarded", "for=\"[2001:db8::c]:4711\";proto=https")];
    assert_ne!(token_status(&ts, &c).await, 429);
    assert_ne!(token_status(&ts, &c).await, 429);
    assert_eq!(
        token_status(&ts, &c).await,
        429,
        "client C's bucket is empty"
    );
}

/// Review finding 4: without trusted proxies `X-Forwarded-For` and `Forwarded` are ignored: a
/// client naming a new address in each request still shares the bucket of its TCP peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review4_forwarding_headers_of_an_untrusted_peer_are_ignored() {
    let db = Db::sqlite();
    let ts = TestServer::start(&db, two_per_ip).await;
    assert_ne!(
        token_status(&ts, &[("x-forwarded-for", "203.0.113.1")]).await,
        429
    );
    assert_ne!(
        token_status(&ts, &[("x-forwarded-for", "203.0.113.2")]).await,
        429
    );
    assert_eq!(
        token_status(&ts, &[("x-forwarded-for", "203.0.113.3")]).await,
        429
    );
    assert_eq!(
        token_status(&ts, &[("forwarded", "for=203.0.113.4")]).await,
        429
    );
}
