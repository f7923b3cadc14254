//! The authorization code flow through the real login and consent pages, and its attacks.

use crate::support::*;

both_backends! {
    /// A1, A4, A10, A11: log in, consent, get a code with `state` and `iss`, redeem it with
    /// PKCE for an RFC 9068 access token bound to the resource.
    async fn a1_a4_a10_full_code_flow_with_pkce(db) {
        let ts = TestServer::start(db, |_| {}).await;
        ts.add_user().await;
        let client_id = ts.register_public_client(&[REDIRECT]).await;
        let a = authorization(&ts, &client_id, REDIRECT, &[]);

        // The login page: anti-framing headers, a session cookie with the right attributes.
        let page = http().get(&a.url).send().await.unwrap();
        assert_eq!(page.status(), 200);
        let h = page.headers();
        assert!(h["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
        assert_eq!(h["x-frame-options"], "DENY");
        let set_cookie = h["set-cookie"].to_str().unwrap();
        assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"), "{set_cookie}");

        let (resp, _) = browser_flow(&ts, &a.url).await;
        let p = location_params(&resp);
        assert!(resp.headers()["location"].to_str().unwrap().starts_with(REDIRECT));
        assert_eq!(p["state"], a.state);
        assert_eq!(p["iss"], ts.issuer, "A4: RFC 9207 iss");
        let (status, body) = token_request(&ts, &[
            ("grant_type", "authorization_code"), ("code", &p["code"]),
            ("redirect_uri", REDIRECT), ("code_verifier", &a.verifier),
            ("client_id", &client_id), ("resource", RESOURCE),
        ]).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["scope"], "mcp:read mcp:write");
        assert!(body["refresh_token"].is_string());
        let at = body["access_token"].as_str().unwrap();
        assert_eq!(jwt_header(at)["typ"], "at+jwt");
        assert_eq!(jwt_header(at)["alg"], "ES256");
        let c = claims(at);
        assert_eq!(c["iss"], ts.issuer);
        assert_eq!(c["aud"], RESOURCE, "A11: audience is the resource");
        assert_eq!(c["client_id"], client_id.as_str());
        assert_eq!(c["scope"], "mcp:read mcp:write");
        assert!(c["sub"].is_string() && c["jti"].is_string());
        assert!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap() <= 3600);
    }

    /// Security finding 7, RFC 8252 §8.6: a public client on a loopback redirect URI cannot
    /// prove who it is, so an earlier approval never answers for it silently. After one
    /// approval, an authorization for the same client id from another loopback port with
    /// another PKCE challenge (an impersonator's) gets the consent page again (one click, the
    /// earlier approval noted, the redirect host shown), never a redirect with a code; the same
    /// right after a fresh login, and `prompt=none` answers `consent_required`. Clients whose
    /// identity is assured keep their remembered consent (straight back with a code): a
    /// confidential client, which must authenticate to redeem the code, and a public client
    /// whose redirect URI is claimed https on a public host.
    async fn sec7_public_client_consent_not_remembered_rfc8252_8_6(db) {
        let ts = TestServer::start(db, |_| {}).await;
        ts.add_user().await;
        let client_id = ts.register_public_client(&[REDIRECT]).await;
        let a = authorization(&ts, &client_id, REDIRECT, &[]);
        let (_, cookie) = browser_flow(&ts, &a.url).await;

        let impostor = "http://127.0.0.1:40000/callback";
        let b = authorization(&ts, &client_id, impostor, &[]);
        let resp = http().get(&b.url).header("cookie", &cookie).send().await.unwrap();
        assert_eq!(resp.status(), 200, "the consent page, not a redirect with a code");
        assert!(resp.headers().get("location").is_none());
        let html = resp.text().await.unwrap();
        assert!(html.contains("name=\"decision\" value=\"allow\""), "the consent form: {html}");
        assert!(html.contains("<p class=\"host\">127.0.0.1:40000</p>"), "A10: {html}");
        assert!(html.contains(CONSENT_AGAIN), "the earlier approval is noted: {html}");
        let resp = post_consent(&ts, &cookie, &html, "allow").await;
        assert_eq!(resp.status(), 303, "one click");
        assert!(resp.headers()["location"].to_str().unwrap().starts_with(impostor));
        assert!(location_params(&resp).contains_key("code"));

        // Straight after a fresh login, too.
        let c = authorization(&ts, &client_id, REDIRECT, &[]);
        let (_, html) = login_to_consent(&ts, &c.url).await;
        assert!(html.contains(CONSENT_AGAIN), "{html}");

        // prompt=none cannot show the page: consent_required, no code.
        let d = authorization(&ts, &client_id, REDIRECT, &[("prompt", "none")]);
        let resp = http().get(&d.url).header("cookie", &cookie).send().await.unwrap();
        assert_eq!(resp.status(), 302);
        let p = location_params(&resp);
        assert_eq!((p["error"].as_str(), p.get("code")), ("consent_required", None));
        assert_eq!((p["state"].as_str(), p["iss"].as_str()), (d.state.as_str(), ts.issuer.as_str()));

        // A confidential client (same loopback redirect URI) keeps its remembered consent.
        let (secret_client, _) = ts.add_secret_client().await;
        let e = authorization(&ts, &secret_client, REDIRECT, &[]);
        let (_, cookie) = browser_flow(&ts, &e.url).await;
        let again = authorization(&ts, &secret_client, REDIRECT, &[]);
        let resp = http().get(&again.url).header("cookie", &cookie).send().await.unwrap();
        assert_eq!(resp.status(), 302);
        assert!(location_params(&resp).contains_key("code"));

        // So does a public client whose redirect URI is https on a public host.
        let web = "https://app.example.com/cb";
        let resp = http().post(ts.url("/register")).json(&serde_json::json!({
            "client_name": "Web", "redirect_uris": [web], "token_endpoint_auth_method": "none",
        })).send().await.unwrap();
        assert_eq!(resp.status(), 201);
        let web_client = resp.json::<serde_json::Value>().await.unwrap()["client_id"]
            .as_str().unwrap().to_owned();
        let f = authorization(&ts, &web_client, web, &[]);
        let (_, cookie) = browser_flow(&ts, &f.url).await;
        let again = authorization(&ts, &web_client, web, &[]);
        let resp = http().get(&again.url).header("cookie", &cookie).send().await.unwrap();
        assert_eq!(resp.status(), 302);
        assert!(resp.headers()["location"].to_str().unwrap().starts_with(web));
        assert!(location_params(&resp).contains_key("code"));
    }

    /// A10: the consent page shows the redirect host; a loopback redirect of a fetched
    /// (CIMD) client would add a warning (checked in the page unit test).
    async fn a10_consent_page_shows_the_redirect_host(db) {
        let ts = TestServer::start(db, |_| {}).await;
        ts.add_user().await;
        let client_id = ts.register_public_client(&[REDIRECT]).await;
        let a = authorization(&ts, &client_id, REDIRECT, &[]);
        let (_, html) = login_to_consent(&ts, &a.url).await;
        assert!(html.contains("127.0.0.1:53682"), "{html}");
        assert!(html.contains("Test Client"));
        assert!(html.contains("mcp:read"));
    }

    /// A wrong password re-renders the login page; no session is made.
    async fn wrong_password_is_refused(db) {
        let ts = TestServer::start(db, |_| {}).await;
        ts.add_user().await;
        let client_id = ts.register_public_client(&[REDIRECT]).await;
        let a = authorization(&ts, &client_id, REDIRECT, &[]);
        let (cookie, html) = open_login(&a.url).await;
        for user in [USER, "nobody"] {
            let resp = post_login(&ts, &cookie, &html, user, "wrong password").await;
            assert_eq!(resp.status(), 401);
            assert!(resp.headers().get("set-cookie").is_none());
            assert!(resp.text().await.unwrap().contains("Wrong username or password"));
        }
    }

    /// C28: a verifier that does not match the S256 challenge gets no token.
    async fn c28_pkce_mismatch_is_refused(db) {
        let ts = TestServer::start(db, |_| {}).await;
        ts.add_user().await;
        let client_id = ts.register_public_client(&[REDIRECT]).await;
        let a = authorization(&ts, &client_id, REDIRECT, &[]);
        let (resp, _) = browser_flow(&ts, &a.url).await;
        let code = location_params(&resp)["code"].clone();
        let wrong = mcpauth_core::pkce::new_verifier().unwrap();
        let (status, body) = token_request(&ts, &[
            ("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", REDIRECT),
            ("code_verifier", wrong.expose()), ("client_id", &client_id),
        ]).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
        // The code was burned by the failed attempt.
        let (status, _) = token_request(&ts, &[
            ("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", REDIRECT),
            ("code_verifier", &a.verifier), ("client_id", &client_id),
        ]).await;
        assert_eq!(status, 400);
        // No verifier at all.
        let (status, body) = token_request(&ts, &[
            ("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", REDIRECT),
            ("client_id", &client_id),
        ]).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_request")));
    }

    /// C28, A4: plain PKCE (or none) is refused with an error redirect carrying `iss` and `state`.
    async fn c28_a4_plain_pkce_is_refused_with_iss(db) {
        let ts = TestServer::start(db, |_| {}).await;
        let client_id = ts.register_public_client(&[REDIRECT]).await;
        for extra in [
            vec![("code_challenge_method", "plain")],
            vec![("code_challenge_method", "")],
            vec![("code_challenge", "")],
        ] {
            let a = authorization(&ts, &client_id, REDIRECT, &extra);
            let resp = http().get(&a.url).send().await.unwrap();
            assert_eq!(resp.status(), 302);
            let p = location_params(&resp);
            assert_eq!(p["error"], "invalid_request");
            assert_eq!(p["iss"], ts.issuer);
            assert_eq!(p["state"], a.state);
        }
    }

    /// A4: every error redirect carries `iss` (here: an unsupported response type).
    async fn a4_iss_on_error_redirects(db) {
        let ts = TestServer::start(db, |_| {}).await;
        let client_id = ts.register_public_client(&[REDIRECT]).await;
        let a = authorization(&ts, &client_id, REDIRECT, &[("response_type", "token")]);
        let resp = http().get(&a.url).send().await.unwrap();
        assert_eq!(resp.status(), 302);
        let p = location_params(&resp);
        assert_eq!(p["error"], "unsupported_response_type");
        assert_eq!(p["iss"], ts.issuer);
        assert_eq!(p["state"], a.state);
    }

    /// A11: a resource this server does not issue tokens for is `invalid_target`.
    async fn a11_unregistered_resource_is_invalid_target(db) {
        let ts = TestServer::start(db, |_| {}).await;
        let client_id = ts.register_public_client(&[REDIRECT]).await;
        let a = authorization(&ts, &client_id, REDIRECT, &[("resource", "https://other.example/mcp")]);
        let resp = http().get(&a.url).send().await.unwrap();
        let p = location_params(&resp);
        assert_eq!(p["error"], "invalid_target");
        assert_eq!(p["iss"], ts.issuer);
    }

    /// A1: a replayed code is refused and everything it issued is revoked.
    async fn a1_code_replay_revokes_issued_tokens(db) {
        let ts = TestServer::start(db, |_| {}).await;
        ts.add_user().await;
        let rs = ts.add_resource_server(&[RESOURCE]).await;
        let client_id = ts.register_public_client(&[REDIRECT]).await;
        let a = authorization(&ts, &client_id, REDIRECT, &[]);
        let (resp, _) = browser_flow(&ts, &a.url).await;
        let code = location_params(&resp)["code"].clone();
        let form = [
            ("grant_type", "authorization_code"), ("code", code.as_str()),
            ("redirect_uri", REDIRECT), ("code_verifier", a.verifier.as_str()),
            ("client_id", client_id.as_str()),
        ];
        let (status, first) = token_request(&ts, &form).await;
        assert_eq!(status, 200);
        let at = first["access_token"].as_str().unwrap();
        assert_eq!(introspect(&ts, &rs, at).await["active"], true);
        let (status, replay) = token_request(&ts, &form).await;
        assert_eq!((status, replay["error"].as_str()), (400, Some("invalid_grant")));
        assert_eq!(introspect(&ts, &rs, at).await["active"], false, "access token revoked");
        let (status, body) = token_request(&ts, &[
            ("grant_type", "refresh_token"), ("client_id", &client_id),
            ("refresh_token", first["refresh_token"].as_str().unwrap()),
        ]).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "refresh token revoked");
    }

    /// A8: redirect URIs match exactly — a lookalike host or an added path gets an error page,
    /// never a redirect; only loopback redirect URIs may change their port (RFC 8252 §7.3).
    async fn a8_redirect_uri_mismatch_renders_an_error_page(db) {
        let ts = TestServer::start(db, |_| {}).await;
        let registered = "https://app.example.com/cb";
        let resp = http().post(ts.url("/register")).json(&serde_json::json!({
            "client_name": "Web", "redirect_uris": [registered, "http://127.0.0.1:1234/cb"],
            "token_endpoint_auth_method": "none", "application_type": "native",
        })).send().await.unwrap();
        assert_eq!(resp.status(), 201);
        let client_id = resp.json::<serde_json::Value>().await.unwrap()["client_id"]
            .as_str().unwrap().to_owned();
        for bad in [
            "https://app.example.com.evil.com/cb",
            "https://app.example.com/cb/extra",
            "https://app.example.com:8443/cb",
            "http://127.0.0.1:5555/other",
        ] {
            let a = authorization(&ts, &client_id, bad, &[]);
            let resp = http().get(&a.url).send().await.unwrap();
            assert_eq!(resp.status(), 400, "{bad}");
            assert!(resp.headers().get("location").is_none(), "{bad}");
            assert!(resp.text().await.unwrap().contains("not registered"));
        }
        // Loopback: another port is fine.
        let a = authorization(&ts, &client_id, "http://127.0.0.1:5555/cb", &[]);
        assert_eq!(http().get(&a.url).send().await.unwrap().status(), 200);
        // Unknown client: an error page too.
        let a = authorization(&ts, "no-such-client", REDIRECT, &[]);
        let resp = http().get(&a.url).send().await.unwrap();
        assert_eq!(resp.status(), 400);
        assert!(resp.headers().get("location").is_none());
    }

    /// S14 (applied to our own consent): a consent POST without the CSRF token, or with one
    /// made for another browser, is refused.
    async fn s14_csrf_less_consent_post_is_refused(db) {
        let ts = TestServer::start(db, |_| {}).await;
        ts.add_user().await;
        let client_id = ts.register_public_client(&[REDIRECT]).await;
        let a = authorization(&ts, &client_id, REDIRECT, &[]);
        let h = http();
        let (cookie, html) = login_to_consent(&ts, &a.url).await;
        let request_id = hidden(&html, "request_id");
        for csrf in ["", "forged", &hidden(&html, "csrf")[1..]] {
            let resp = h.post(ts.url("/authorize/consent")).header("cookie", &cookie).form(&[
                ("request_id", request_id.as_str()), ("csrf", csrf), ("decision", "allow"),
            ]).send().await.unwrap();
            assert_eq!(resp.status(), 403, "csrf {csrf:?}");
            assert!(resp.headers().get("location").is_none());
        }
        // Without the cookie (a cross-site POST from another browser) even the right token fails.
        let resp = h.post(ts.url("/authorize/consent")).form(&[
            ("request_id", request_id.as_str()), ("csrf", hidden(&html, "csrf").as_str()),
            ("decision", "allow"),
        ]).send().await.unwrap();
        assert_eq!(resp.status(), 403);
        // The real form still works afterwards.
        let resp = post_consent(&ts, &cookie, &html, "deny").await;
        assert_eq!(resp.status(), 303);
        let p = location_params(&resp);
        assert_eq!(p["error"], "access_denied");
        assert_eq!(p["iss"], ts.issuer);
    }
}
