//! Registration (RFC 7591, MCP SPEC C14, A3) and client ID metadata documents (A9, A10).

use mcpauth_authserver::{RegistrationPolicy, admin};
use serde_json::{Value, json};

use crate::support::*;

async fn register(ts: &TestServer, body: Value, bearer: Option<&str>) -> (u16, Value) {
    let mut req = http().post(ts.url("/register")).json(&body);
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

both_backends! {
    /// C14: native clients register loopback or private-use redirect URIs, web clients https
    /// only; confidential clients get a secret; client_credentials cannot be registered.
    async fn c14_registration_redirect_uri_rules(db) {
        let ts = TestServer::start(db, |_| {}).await;
        let (s, b) = register(&ts, json!({"application_type": "native",
            "redirect_uris": ["http://127.0.0.1/cb", "com.example.app:/cb"],
            "token_endpoint_auth_method": "none"}), None).await;
        assert_eq!(s, 201, "{b}");
        assert_eq!(b["application_type"], "native");
        let (s, b) = register(&ts, json!({"application_type": "web",
            "redirect_uris": ["http://127.0.0.1/cb"]}), None).await;
        assert_eq!((s, b["error"].as_str()), (400, Some("invalid_redirect_uri")));
        let (s, b) = register(&ts, json!({"application_type": "native",
            "redirect_uris": ["http://app.example/cb"]}), None).await;
        assert_eq!((s, b["error"].as_str()), (400, Some("invalid_redirect_uri")));
        let (s, b) = register(&ts, json!({"application_type": "web",
            "redirect_uris": ["https://app.example/cb"],
            "token_endpoint_auth_method": "client_secret_post"}), None).await;
        assert_eq!(s, 201);
        assert!(b["client_secret"].as_str().unwrap().len() >= 43);
        // RFC 7591 §3.2.1: the secret expires with the registration (review finding 8).
        assert!(b["client_secret_expires_at"].as_u64().unwrap() > 0, "{b}");
        let (s, b) = register(&ts, json!({"redirect_uris": ["https://app.example/cb"],
            "grant_types": ["client_credentials"]}), None).await;
        assert_eq!((s, b["error"].as_str()), (400, Some("invalid_client_metadata")));
        let (s, _) = register(&ts, json!({"redirect_uris": ["https://app.example/cb"],
            "token_endpoint_auth_method": "private_key_jwt"}), None).await;
        assert_eq!(s, 400, "private_key_jwt without keys");
    }

    /// RFC 7591 §3: with an initial access token configured, registration needs it.
    async fn registration_with_an_initial_access_token(db) {
        let ts = TestServer::start(db, |c| {
            c.registration = RegistrationPolicy::InitialAccessToken("let-me-in".into());
        }).await;
        let body = json!({"redirect_uris": ["http://127.0.0.1/cb"], "token_endpoint_auth_method": "none"});
        assert_eq!(register(&ts, body.clone(), None).await.0, 401);
        assert_eq!(register(&ts, body.clone(), Some("wrong")).await.0, 401);
        assert_eq!(register(&ts, body, Some("let-me-in")).await.0, 201);
    }

    /// Rate limits: /register per IP (429 once the bucket is empty).
    async fn registration_is_rate_limited_per_ip(db) {
        let ts = TestServer::start(db, |c| {
            c.rate_limits.register_per_ip = Some(mcpauth_authserver::RateLimit::new(2, 1));
        }).await;
        let body = json!({"redirect_uris": ["http://127.0.0.1/cb"], "token_endpoint_auth_method": "none"});
        assert_eq!(register(&ts, body.clone(), None).await.0, 201);
        assert_eq!(register(&ts, body.clone(), None).await.0, 201);
        let (s, b) = register(&ts, body, None).await;
        assert_eq!((s, b["error"].as_str()), (429, Some("temporarily_unavailable")));
    }

    /// A10: a URL client id whose host is loopback or the cloud metadata address is not
    /// fetched (SSRF), and the user sees an error page, not a redirect, saying only that the
    /// document could not be fetched (security finding 10).
    async fn a10_cimd_url_on_loopback_or_metadata_address_is_refused(db) {
        let ts = TestServer::start(db, |_| {}).await;
        for client_id in [
            "https://127.0.0.1/client.json",
            "https://169.254.169.254/latest/client.json",
            "https://[::1]:8443/client.json",
        ] {
            let a = authorization(&ts, client_id, REDIRECT, &[]);
            let resp = http().get(&a.url).send().await.unwrap();
            assert_eq!(resp.status(), 400, "{client_id}");
            assert!(resp.headers().get("location").is_none());
            let html = resp.text().await.unwrap();
            assert!(html.contains(NOT_FETCHED), "{html}");
            // Nor at the token endpoint.
            let (status, body) = token_request(&ts, &[
                ("grant_type", "authorization_code"), ("client_id", client_id), ("code", "x"),
                ("redirect_uri", REDIRECT), ("code_verifier", &a.verifier),
            ]).await;
            assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")));
        }
    }

    /// Security finding 10 (A10, RFC 6749 §4.1.2.1: error descriptions are for developers, not
    /// a probe): why a metadata document was not fetched is never shown, or anyone could map
    /// internal names through `/authorize`. A name that resolves to loopback (not
    /// allow-listed) and a name that does not resolve at all get the same error page and the
    /// same `error_description` at the token endpoint, naming neither the address, nor the
    /// name, nor the resolver's complaint.
    async fn sec10_cimd_fetch_refusal_does_not_leak_dns_results(db) {
        let ts = TestServer::start(db, |_| {}).await;
        let mut pages = Vec::new();
        let mut descriptions = Vec::new();
        for client_id in ["https://localhost/client.json", "https://nonexistent.invalid/client.json"] {
            let a = authorization(&ts, client_id, REDIRECT, &[]);
            let resp = http().get(&a.url).send().await.unwrap();
            assert_eq!(resp.status(), 400, "{client_id}");
            assert!(resp.headers().get("location").is_none());
            pages.push(resp.text().await.unwrap());
            let (status, body) = token_request(&ts, &[
                ("grant_type", "authorization_code"), ("client_id", client_id), ("code", "x"),
                ("redirect_uri", REDIRECT), ("code_verifier", &a.verifier),
            ]).await;
            assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")), "{body}");
            descriptions.push(body["error_description"].as_str().unwrap().to_owned());
        }
        for text in pages.iter().chain(&descriptions) {
            assert!(text.contains(NOT_FETCHED), "{text}");
            for leak in ["127.0.0.1", "::1", "resolve", "loopback", "SSRF", "lookup",
                         "Name or service", "localhost", "nonexistent"] {
                assert!(!text.contains(leak), "{leak:?} leaked: {text}");
            }
        }
        assert_eq!(pages[0], pages[1], "the same page for both");
        assert_eq!(descriptions[0], descriptions[1], "the same description for both");
    }

    /// Security finding 12 (RFC 7591 §2: `client_name` is presented to the end user; §3.2.2;
    /// A10): a name that could disguise the client on the consent page — a bidi override
    /// (U+202E), a zero-width space (U+200B), a control character, nothing visible, or 5,000
    /// characters — is refused with 400 `invalid_client_metadata` saying what is wrong, and
    /// nothing is stored. An ordinary non-ASCII name is registered and shown as it is; a bad
    /// name stored without the check (an administrator's) is never shown: the client id is.
    async fn sec12_dcr_refuses_client_names_that_could_spoof_the_consent_page(db) {
        let ts = TestServer::start(db, |_| {}).await;
        ts.add_user().await;
        let long = "A".repeat(5000);
        for (name, says) in [
            ("Good App\u{202E}ppA liveE", "U+202E"),
            ("Good\u{200B}App", "U+200B"),
            ("Good\nApp", "U+000A"),
            ("   ", "visible"),
            (long.as_str(), "at most 100 characters"),
        ] {
            let (s, b) = register(&ts, json!({"client_name": name, "redirect_uris": [REDIRECT],
                "token_endpoint_auth_method": "none"}), None).await;
            assert_eq!((s, b["error"].as_str()), (400, Some("invalid_client_metadata")), "{b}");
            let description = b["error_description"].as_str().unwrap();
            assert!(description.contains("client_name") && description.contains(says), "{description}");
            assert!(!description.contains(name), "the name is not echoed: {description}");
        }
        assert!(admin::list_clients(ts.store()).await.unwrap().is_empty(), "nothing was stored");

        let name = "Café Łódź 日本";
        let (s, b) = register(&ts, json!({"client_name": name, "redirect_uris": [REDIRECT],
            "token_endpoint_auth_method": "none"}), None).await;
        assert_eq!(s, 201, "{b}");
        assert_eq!(b["client_name"], name);
        let a = authorization(&ts, b["client_id"].as_str().unwrap(), REDIRECT, &[]);
        let (_, html) = login_to_consent(&ts, &a.url).await;
        assert!(html.contains(name), "{html}");
        assert!(html.contains("<p class=\"host\">127.0.0.1:53682</p>"), "A10: {html}");

        let mut c = admin::NewClient::new(mcpauth_authserver::AuthMethod::None);
        c.client_id = Some("admin-added".into());
        c.client_name = Some("Good App\u{202E}ppA liveE".into());
        c.redirect_uris = vec![REDIRECT.into()];
        admin::add_client(ts.store(), c).await.unwrap();
        let a = authorization(&ts, "admin-added", REDIRECT, &[]);
        let (_, html) = login_to_consent(&ts, &a.url).await;
        assert!(html.contains("Allow <bdi>admin-added</bdi>?") && !html.contains('\u{202E}'), "{html}");
    }
}
