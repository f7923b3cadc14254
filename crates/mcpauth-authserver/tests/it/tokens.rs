//! Client authentication, client credentials, introspection, revocation and request limits.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mcpauth_authserver::AuthMethod;
use mcpauth_authserver::admin::{self, NewClient};
use serde_json::{Value, json};

use crate::support::*;

/// A P-256 key pair: (PKCS#8 private key, public JWK).
fn ec_key(kid: &str) -> (Vec<u8>, serde_json::Value) {
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .unwrap();
    let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let p = kp.public_key().as_ref();
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "kid": kid,
        "x": URL_SAFE_NO_PAD.encode(&p[1..33]), "y": URL_SAFE_NO_PAD.encode(&p[33..]),
    });
    (pkcs8.as_ref().to_vec(), jwk)
}

fn assertion(pkcs8: &[u8], kid: &str, client_id: &str, aud: &str, jti: &str) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(kid.into());
    let now = jsonwebtoken::get_current_timestamp();
    let claims = json!({"iss": client_id, "sub": client_id, "aud": aud, "iat": now,
        "exp": now + 120, "jti": jti});
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_ec_der(pkcs8),
    )
    .unwrap()
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

    /// RFC 7662: introspection needs client authentication and reports the token's claims;
    /// `alg: none` and HS256 signed with our public key are inactive.
    async fn introspection_refuses_alg_none_and_hs256_with_the_public_key(db) {
        let ts = TestServer::start(db, |_| {}).await;
        let rs = ts.add_secret_client().await;
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

    /// RFC 7009: revoking a refresh token revokes its family; revoking an access token makes it
    /// inactive.
    async fn revocation_of_refresh_and_access_tokens(db) {
        let ts = TestServer::start(db, |_| {}).await;
        ts.add_user().await;
        let rs = ts.add_secret_client().await;
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
