//! Client authentication, client credentials, introspection, revocation and request limits.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mcpauth_authserver::AuthMethod;
use mcpauth_authserver::admin::{self, NewClient};
use serde_json::{Value, json};

use crate::support::*;

/// A client_credentials access token for `resource`, asked for by `client`.
async fn client_credentials_token(
    ts: &TestServer,
    client: &(String, String),
    resource: &str,
) -> String {
    let (status, body) = token_request(
        ts,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &client.0),
            ("client_secret", &client.1),
            ("resource", resource),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

both_backends! {
    /// A12: client_credentials with client_secret_basic; a wrong secret is a 401 with a Basic
    /// challenge; client_secret_post works too; a public client may not use the grant.
    async fn a12_client_credentials_with_client_secret_basic(db) {
        let ts = TestServer::start(db, |_| {}).await;
        let (id, secret) = ts.add_secret_client().await;
        let resp = http().post(ts.url("/token")).basic_auth(&id, Some(&secret))
            .form(&[("grant_type", "client_credentials"), ("scope", "mcp:read"), ("resource", RESOURCE)])
            .send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["cache-control"], "no-store");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert!(body.get("refresh_token").is_none());
        let c = claims(body["access_token"].as_str().unwrap());
        assert_eq!((c["sub"].as_str(), c["client_id"].as_str()), (Some(id.as_str()), Some(id.as_str())));
        assert_eq!(c["aud"], RESOURCE);

        let resp = http().post(ts.url("/token")).basic_auth(&id, Some("wrong"))
            .form(&[("grant_type", "client_credentials")]).send().await.unwrap();
        assert_eq!(resp.status(), 401);
        assert!(resp.headers()["www-authenticate"].to_str().unwrap().starts_with("Basic"));
        assert_eq!(resp.json::<serde_json::Value>().await.unwrap()["error"], "invalid_client");

        let (status, body) = token_request(&ts, &[
            ("grant_type", "client_credentials"), ("client_id", &id), ("client_secret", &secret),
        ]).await;
        assert_eq!(status, 200, "{body}");
        // The default resource is the only configured one.
        assert_eq!(claims(body["access_token"].as_str().unwrap())["aud"], RESOURCE);

        let public = ts.register_public_client(&[REDIRECT]).await;
        let (status, body) = token_request(&ts, &[
            ("grant_type", "client_credentials"), ("client_id", &public),
        ]).await;
        assert_eq!(status, 400, "{body}");
        let (status, body) = token_request(&ts, &[
            ("grant_type", "client_credentials"), ("client_id", &id), ("client_secret", &secret),
            ("resource", "https://elsewhere.example/mcp"),
        ]).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_target")));
    }

    /// A12, RFC 7523: client_credentials with private_key_jwt (inline JWKS); the audience may
    /// be the issuer or the token endpoint; an assertion cannot be replayed; a key of the
    /// wrong client does not verify.
    async fn a12_client_credentials_with_private_key_jwt(db) {
        let ts = TestServer::start(db, |_| {}).await;
        let (pkcs8, jwk) = ec_key("k1");
        let mut c = NewClient::new(AuthMethod::PrivateKeyJwt);
        c.client_id = Some("jwt-robot".into());
        c.jwks = Some(json!({"keys": [jwk]}));
        admin::add_client(ts.store(), c).await.unwrap();
        let jwt_type = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
        let token_endpoint = ts.url("/token");
        for (aud, jti) in [(token_endpoint.as_str(), "j1"), (ts.issuer.as_str(), "j2")] {
            let a = assertion(&pkcs8, "k1", "jwt-robot", aud, jti);
            let (status, body) = token_request(&ts, &[
                ("grant_type", "client_credentials"), ("client_assertion_type", jwt_type),
                ("client_assertion", &a),
            ]).await;
            assert_eq!(status, 200, "{body}");
        }
        let a = assertion(&pkcs8, "k1", "jwt-robot", &token_endpoint, "j1");
        let (status, body) = token_request(&ts, &[
            ("grant_type", "client_credentials"), ("client_assertion_type", jwt_type),
            ("client_assertion", &a),
        ]).await;
        assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")), "replay");
        let (other_key, _) = ec_key("k1");
        let a = assertion(&other_key, "k1", "jwt-robot", &token_endpoint, "j3");
        let (status, _) = token_request(&ts, &[
            ("grant_type", "client_credentials"), ("client_assertion_type", jwt_type),
            ("client_assertion", &a),
        ]).await;
        assert_eq!(status, 401, "signed by another key");
        let a = assertion(&pkcs8, "k1", "jwt-robot", "https://other.example", "j4");
        let (status, _) = token_request(&ts, &[
            ("grant_type", "client_credentials"), ("client_assertion_type", jwt_type),
            ("client_assertion", &a),
        ]).await;
        assert_eq!(status, 401, "wrong audience");
    }

    /// A12, RFC 7523 §2.2 with the keys at an RFC 7591 `jwks_uri` (MCP SPEC A10, C31: fetched
    /// with the SSRF-safe fetcher): a pre-registered private_key_jwt client whose JWK set is
    /// served over real HTTPS gets a token for an assertion signed by its key, and the set was
    /// fetched; an assertion signed by another key (same kid) is `invalid_client`; an instance
    /// whose fetch policy does not allow-list the address refuses to fetch it at all.
    async fn a12_private_key_jwt_with_keys_at_a_jwks_uri(db) {
        let docs = DocServer::start().await;
        let (pkcs8, jwk) = ec_key("k1");
        docs.serve_json("/jwks.json", &json!({"keys": [jwk]}), None);
        let ts = TestServer::start(db, |c| docs.trust(c)).await;
        let mut c = NewClient::new(AuthMethod::PrivateKeyJwt);
        c.client_id = Some("jwks-robot".into());
        c.jwks_uri = Some(docs.url("/jwks.json"));
        admin::add_client(ts.store(), c).await.unwrap();
        let jwt_type = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
        let token_endpoint = ts.url("/token");

        let a = assertion(&pkcs8, "k1", "jwks-robot", &token_endpoint, "j1");
        let (status, body) = token_request(&ts, &[
            ("grant_type", "client_credentials"), ("client_assertion_type", jwt_type),
            ("client_assertion", &a), ("resource", RESOURCE),
        ]).await;
        assert_eq!(status, 200, "{body}");
        let c = claims(body["access_token"].as_str().unwrap());
        assert_eq!(c["client_id"], "jwks-robot");
        assert_eq!(c["aud"], RESOURCE);
        assert_eq!(docs.hits("/jwks.json"), 1, "the key set was fetched from the jwks_uri");

        let (other_key, _) = ec_key("k1");
        let a = assertion(&other_key, "k1", "jwks-robot", &token_endpoint, "j2");
        let (status, body) = token_request(&ts, &[
            ("grant_type", "client_credentials"), ("client_assertion_type", jwt_type),
            ("client_assertion", &a),
        ]).await;
        assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")), "{body}");

        // A second instance on the same database that trusts the certificate but does not
        // allow-list 127.0.0.0/8: the loopback jwks_uri is refused before any request is made,
        // and the client is told only that the document could not be fetched (security
        // finding 10).
        let strict = TestServer::start(db, |c| {
            c.fetch.extra_root_certs_pem = vec![docs.cert_pem.clone()];
        }).await;
        let before = docs.hits("/jwks.json");
        let a = assertion(&pkcs8, "k1", "jwks-robot", &strict.url("/token"), "j3");
        let (status, body) = token_request(&strict, &[
            ("grant_type", "client_credentials"), ("client_assertion_type", jwt_type),
            ("client_assertion", &a),
        ]).await;
        assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")), "{body}");
        let description = body["error_description"].as_str().unwrap();
        assert!(description.contains("jwks_uri document could not be fetched"), "{description}");
        assert!(!description.contains("loopback") && !description.contains("127.0.0.1"), "{description}");
        assert_eq!(docs.hits("/jwks.json"), before, "nothing was fetched");
    }

    /// RFC 7591 `jwks_uri` kept as its `Cache-Control` says: within `max-age` no refetch, after
    /// it the client's rotated keys are used; `no-store` is fetched for every assertion.
    async fn a12_jwks_uri_follows_cache_control_and_key_rotation(db) {
        let docs = DocServer::start().await;
        let (k1, jwk1) = ec_key("k1");
        let (k2, jwk2) = ec_key("k2");
        docs.serve_json("/rot.json", &json!({"keys": [jwk1]}), Some("max-age=1"));
        docs.serve_json("/nostore.json", &json!({"keys": [jwk1]}), Some("no-store"));
        let ts = TestServer::start(db, |c| docs.trust(c)).await;
        for (id, path) in [("rotating", "/rot.json"), ("nostore", "/nostore.json")] {
            let mut c = NewClient::new(AuthMethod::PrivateKeyJwt);
            c.client_id = Some(id.into());
            c.jwks_uri = Some(docs.url(path));
            admin::add_client(ts.store(), c).await.unwrap();
        }
        let jwt_type = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
        let token_endpoint = ts.url("/token");
        let grant = |a: String| {
            let ts = &ts;
            async move {
                token_request(ts, &[
                    ("grant_type", "client_credentials"), ("client_assertion_type", jwt_type),
                    ("client_assertion", &a),
                ]).await.0
            }
        };
        assert_eq!(grant(assertion(&k1, "k1", "rotating", &token_endpoint, "r1")).await, 200);
        assert_eq!(grant(assertion(&k1, "k1", "rotating", &token_endpoint, "r2")).await, 200);
        assert_eq!(docs.hits("/rot.json"), 1, "within max-age the keys come from the cache");
        // The client rotates to k2; once max-age has passed, the new keys are fetched.
        docs.serve_json("/rot.json", &json!({"keys": [jwk2]}), Some("max-age=1"));
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        assert_eq!(grant(assertion(&k2, "k2", "rotating", &token_endpoint, "r3")).await, 200);
        assert_eq!(docs.hits("/rot.json"), 2);
        assert_eq!(
            grant(assertion(&k1, "k1", "rotating", &token_endpoint, "r4")).await,
            401,
            "the retired key no longer verifies"
        );

        assert_eq!(grant(assertion(&k1, "k1", "nostore", &token_endpoint, "n1")).await, 200);
        assert_eq!(grant(assertion(&k1, "k1", "nostore", &token_endpoint, "n2")).await, 200);
        assert_eq!(docs.hits("/nostore.json"), 2, "no-store: fetched for every assertion");
    }

    /// RFC 7662: introspection needs client authentication and reports the token's claims;
    /// `alg: none` and HS256 signed with our public key are inactive.
    async fn introspection_refuses_alg_none_and_hs256_with_the_public_key(db) {
        let ts = TestServer::start(db, |_| {}).await;
        let rs = ts.add_resource_server(&[RESOURCE]).await;
        let (status, body) = token_request(&ts, &[
            ("grant_type", "client_credentials"), ("client_id", &rs.0), ("client_secret", &rs.1),
            ("scope", "mcp:read"),
        ]).await;
        assert_eq!(status, 200);
        let at = body["access_token"].as_str().unwrap();
        let v = introspect(&ts, &rs, at).await;
        assert_eq!(v["active"], true);
        assert_eq!(v["client_id"], rs.0.as_str());
        assert_eq!(v["scope"], "mcp:read");
        assert_eq!(v["aud"], RESOURCE);
        assert_eq!(v["iss"], ts.issuer);
        assert!(v["exp"].is_i64());

        let header = jwt_header(at);
        let payload = at.split('.').nth(1).unwrap();
        // alg: none, no signature.
        let none_header = URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "at+jwt", "kid": header["kid"]}).to_string());
        let forged = format!("{none_header}.{payload}.");
        assert_eq!(introspect(&ts, &rs, &forged).await["active"], false);
        // HS256 with the public JWK (as JSON and as raw x) as the HMAC secret.
        let jwks: serde_json::Value = http().get(ts.url("/jwks")).send().await.unwrap().json().await.unwrap();
        let public = jwks["keys"][0].clone();
        for secret in [public.to_string(), public["x"].as_str().unwrap().to_owned()] {
            let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
            h.typ = Some("at+jwt".into());
            h.kid = header["kid"].as_str().map(str::to_owned);
            let forged = jsonwebtoken::encode(&h, &claims(at),
                &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes())).unwrap();
            assert_eq!(introspect(&ts, &rs, &forged).await["active"], false);
        }
        // Tampered payload.
        let mut parts: Vec<&str> = at.split('.').collect();
        let evil = URL_SAFE_NO_PAD.encode(json!({"sub": "admin"}).to_string());
        parts[1] = &evil;
        assert_eq!(introspect(&ts, &rs, &parts.join(".")).await["active"], false);
        // Unauthenticated introspection is refused.
        let resp = http().post(ts.url("/introspect")).form(&[("token", at)]).send().await.unwrap();
        assert_eq!(resp.status(), 401);
        // RFC 7662 §2.1, §4: a public client's bare client_id is no authentication (anyone can
        // register one), so it cannot scan other clients' tokens.
        let public = ts.register_public_client(&["http://127.0.0.1:9/cb"]).await;
        let resp = http().post(ts.url("/introspect"))
            .form(&[("token", at), ("client_id", public.as_str())]).send().await.unwrap();
        assert_eq!(resp.status(), 401);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "invalid_client");
        assert!(body.get("sub").is_none() && body.get("active").is_none(), "{body}");
        let meta: Value = http().get(ts.url("/.well-known/oauth-authorization-server"))
            .send().await.unwrap().json().await.unwrap();
        let methods = meta["introspection_endpoint_auth_methods_supported"].as_array().unwrap();
        assert!(!methods.iter().any(|m| m == "none"), "{methods:?}");
    }

    /// Security finding 8 (RFC 7662 §2.1, §4): open dynamic registration hands a secret to
    /// anyone, so a confidential client is no proof of being a resource server. A client
    /// registered that way introspects a valid token as inactive, and learns nothing more
    /// (RFC 7662 §2.2); so does a pre-registered client that is not a resource server.
    async fn sec8_anonymous_dcr_client_with_a_secret_introspects_inactive(db) {
        let ts = TestServer::start(db, |_| {}).await;
        let rs = ts.add_resource_server(&[RESOURCE]).await;
        let at = client_credentials_token(&ts, &rs, RESOURCE).await;
        assert_eq!(introspect(&ts, &rs, &at).await["active"], true);
        let resp = http().post(ts.url("/register")).json(&json!({
            "client_name": "Anyone", "redirect_uris": [REDIRECT],
            "token_endpoint_auth_method": "client_secret_basic",
        })).send().await.unwrap();
        assert_eq!(resp.status(), 201);
        let registered: Value = resp.json().await.unwrap();
        let anonymous = (
            registered["client_id"].as_str().unwrap().to_owned(),
            registered["client_secret"].as_str().expect("a secret").to_owned(),
        );
        assert_eq!(introspect(&ts, &anonymous, &at).await, json!({"active": false}));
        let robot = ts.add_secret_client().await;
        let own = client_credentials_token(&ts, &robot, RESOURCE).await;
        for token in [&at, &own] {
            assert_eq!(introspect(&ts, &robot, token).await, json!({"active": false}));
        }
    }

    /// Security finding 8 (RFC 7662 §2.1, §4; RFC 8707 §2): a resource server introspects the
    /// access tokens of the resources it serves (compared as canonical URIs, MCP SPEC C22) and
    /// no others: a token for another audience is inactive, exactly like an unknown one.
    async fn sec8_resource_server_introspects_only_tokens_for_its_resources(db) {
        const OTHER: &str = "http://127.0.0.1:9001/mcp";
        let ts = TestServer::start(db, |c| c.resources = vec![RESOURCE.into(), OTHER.into()]).await;
        let robot = ts.add_secret_client().await;
        let at_a = client_credentials_token(&ts, &robot, RESOURCE).await;
        let at_b = client_credentials_token(&ts, &robot, OTHER).await;
        let rs_a = ts.add_resource_server(&[RESOURCE]).await;
        let v = introspect(&ts, &rs_a, &at_a).await;
        assert_eq!((v["active"].as_bool(), v["aud"].as_str()), (Some(true), Some(RESOURCE)), "{v}");
        assert_eq!(introspect(&ts, &rs_a, &at_b).await, json!({"active": false}));
        let rs_b = ts.add_resource_server(&["HTTP://127.0.0.1:9001/mcp"]).await;
        assert_eq!(introspect(&ts, &rs_b, &at_b).await["active"], true);
        assert_eq!(introspect(&ts, &rs_b, &at_a).await, json!({"active": false}));
        let both = ts.add_resource_server(&[RESOURCE, OTHER]).await;
        for at in [&at_a, &at_b] {
            assert_eq!(introspect(&ts, &both, at).await["active"], true);
        }
        // A public client cannot be a resource server: it cannot authenticate (RFC 7662 §2.1).
        let mut public = NewClient::new(AuthMethod::None);
        public.introspection = vec![RESOURCE.into()];
        assert!(admin::add_client(ts.store(), public).await.is_err());
    }

    /// RFC 7009: revoking a refresh token revokes its family; revoking an access token makes it
    /// inactive.
    async fn revocation_of_refresh_and_access_tokens(db) {
        let ts = TestServer::start(db, |_| {}).await;
        ts.add_user().await;
        let rs = ts.add_resource_server(&[RESOURCE]).await;
        let client_id = ts.register_public_client(&[REDIRECT]).await;
        let t = code_flow_tokens(&ts, &client_id).await;
        let at = t["access_token"].as_str().unwrap();
        let rt = t["refresh_token"].as_str().unwrap();
        assert_eq!(introspect(&ts, &rs, at).await["active"], true);
        let resp = http().post(ts.url("/revoke"))
            .form(&[("token", rt), ("client_id", client_id.as_str())]).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(introspect(&ts, &rs, at).await["active"], false, "family revoked");
        let (status, _) = token_request(&ts, &[
            ("grant_type", "refresh_token"), ("client_id", &client_id), ("refresh_token", rt),
        ]).await;
        assert_eq!(status, 400);

        let (_, cc) = token_request(&ts, &[
            ("grant_type", "client_credentials"), ("client_id", &rs.0), ("client_secret", &rs.1),
        ]).await;
        let at = cc["access_token"].as_str().unwrap();
        assert_eq!(introspect(&ts, &rs, at).await["active"], true);
        let resp = http().post(ts.url("/revoke")).basic_auth(&rs.0, Some(&rs.1))
            .form(&[("token", at), ("token_type_hint", "access_token")]).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(introspect(&ts, &rs, at).await["active"], false);
        // Unknown tokens: 200 all the same.
        let resp = http().post(ts.url("/revoke")).basic_auth(&rs.0, Some(&rs.1))
            .form(&[("token", "nonsense")]).send().await.unwrap();
        assert_eq!(resp.status(), 200);
    }

    /// Body and header limits: oversized requests are refused before any work.
    async fn oversized_body_and_headers_are_refused(db) {
        let ts = TestServer::start(db, |_| {}).await;
        let big = "x".repeat(100 * 1024);
        let resp = http().post(ts.url("/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("grant_type=client_credentials&pad={big}")).send().await.unwrap();
        assert_eq!(resp.status(), 413);
        let resp = http().post(ts.url("/register")).header("content-type", "application/json")
            .body(format!("{{\"client_name\":\"{big}\"}}")).send().await.unwrap();
        assert_eq!(resp.status(), 413);
        let resp = http().get(ts.url("/healthz")).header("x-pad", "y".repeat(20 * 1024))
            .send().await.unwrap();
        assert_eq!(resp.status(), 431);
        assert_eq!(http().get(ts.url("/healthz")).send().await.unwrap().status(), 200);
    }
}

both_backends! {
    /// Review finding 2 (RFC 8725 §3.1, RFC 7523 §3, MCP SPEC A12): a client's JWK set only
    /// lends asymmetric keys, for the advertised `token_endpoint_auth_signing_alg_values_supported`.
    /// An `oct` key is no HS256 secret, and an EC key naming `alg: HS256` verifies nothing; the
    /// same client's P-256 key still works.
    async fn review2_client_assertions_refuse_symmetric_keys_and_foreign_algorithms(db) {
        let ts = TestServer::start(db, |_| {}).await;
        let secret = b"a shared secret that anyone reading the JWK set knows";
        let oct = json!({"kty": "oct", "kid": "s1", "alg": "HS256", "k": URL_SAFE_NO_PAD.encode(secret)});
        let (pkcs8, mut hs_named) = ec_key("e1");
        hs_named["alg"] = json!("HS256");
        let (good, good_jwk) = ec_key("e2");
        let mut c = NewClient::new(AuthMethod::PrivateKeyJwt);
        c.client_id = Some("oct-robot".into());
        c.jwks = Some(json!({"keys": [oct, hs_named, good_jwk]}));
        admin::add_client(ts.store(), c).await.unwrap();
        let token_endpoint = ts.url("/token");
        let grant = async |a: String| {
            token_request(&ts, &[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                ("client_assertion", &a),
            ]).await
        };
        let now = jsonwebtoken::get_current_timestamp();
        let claims = json!({"iss": "oct-robot", "sub": "oct-robot", "aud": token_endpoint,
            "iat": now, "exp": now + 120, "jti": "h1"});
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some("s1".into());
        let hs256 = jsonwebtoken::encode(&header, &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret)).unwrap();
        let (status, body) = grant(hs256).await;
        assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")), "{body}");
        let (status, body) = grant(assertion(&pkcs8, "e1", "oct-robot", &token_endpoint, "h2")).await;
        assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")), "{body}");
        let (status, body) = grant(assertion(&good, "e2", "oct-robot", &token_endpoint, "h3")).await;
        assert_eq!(status, 200, "{body}");
        let meta: Value = http().get(ts.url("/.well-known/oauth-authorization-server"))
            .send().await.unwrap().json().await.unwrap();
        let algs = meta["token_endpoint_auth_signing_alg_values_supported"].as_array().unwrap();
        assert!(algs.iter().all(|a| !a.as_str().unwrap().starts_with("HS")), "{algs:?}");
    }
}
