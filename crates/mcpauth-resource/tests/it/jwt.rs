//! JWT verification against real keys: audience, expiry, rotation, algorithm confusion, `typ`.

use std::time::Duration;

use mcpauth_authserver::SigningAlg;
use mcpauth_resource::{JwtVerifier, ResourceError, ScopePolicy, TokenVerifier};
use serde_json::{Value, json};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s4_valid_token_from_the_authorization_server_reaches_the_handler() {
    let pending = Pending::new().await;
    let auth = As::start(&[&pending.resource]).await;
    let verifier = JwtVerifier::builder()
        .issuer(&auth.issuer)
        .audience(&pending.resource)
        .build()
        .unwrap();
    let app = pending.serve(
        verifier,
        &[&auth.issuer],
        ScopePolicy::new().require(["mcp"]),
    );
    let client = auth.client().await;
    let token = auth.token(&client, &app.resource, "mcp files:read").await;
    let resp = app.call(Some(&token), &initialize()).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["result"]["subject"], client.0);
    assert_eq!(body["result"]["client_id"], client.0);
    assert_eq!(body["result"]["scopes"], "mcp files:read");
    assert_eq!(body["result"]["issuer"], auth.issuer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s4_s5_token_for_another_audience_is_refused() {
    let pending = Pending::new().await;
    let other = "http://127.0.0.1:1/other-mcp";
    let auth = As::start(&[&pending.resource, other]).await;
    let verifier = JwtVerifier::builder()
        .issuer(&auth.issuer)
        .audience(&pending.resource)
        .build()
        .unwrap();
    let app = pending.serve(verifier, &[&auth.issuer], ScopePolicy::new());
    let client = auth.client().await;
    let foreign = auth.token(&client, other, "mcp").await;
    let resp = app.call(Some(&foreign), &initialize()).await;
    assert_eq!(resp.status(), 401);
    let c = challenge(&resp);
    assert_eq!(c.param("error"), Some("invalid_token"));
    assert!(c.param("error_description").unwrap().contains("audience"));
    assert_eq!(c.param("resource_metadata"), Some(app.prm.metadata_url()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s4_key_rotation_at_the_authorization_server_is_followed() {
    let pending = Pending::new().await;
    let auth = As::start(&[&pending.resource]).await;
    let verifier = JwtVerifier::builder()
        .issuer(&auth.issuer)
        .audience(&pending.resource)
        .jwks_refetch_interval(Duration::ZERO)
        .build()
        .unwrap();
    let app = pending.serve(verifier, &[&auth.issuer], ScopePolicy::new());
    let client = auth.client().await;
    let before = auth.token(&client, &app.resource, "mcp").await;
    assert_eq!(app.call(Some(&before), &initialize()).await.status(), 200);

    admin::rotate_keys(auth.server.store(), SigningAlg::EdDsa)
        .await
        .unwrap();
    auth.server.reload_keys().await.unwrap();
    let after = auth.token(&client, &app.resource, "mcp").await;
    assert_ne!(
        jwt_kid(&before),
        jwt_kid(&after),
        "the rotation made a new key"
    );
    let resp = app.call(Some(&after), &initialize()).await;
    assert_eq!(
        resp.status(),
        200,
        "{:?}",
        resp.headers().get("www-authenticate")
    );
    // The old key is still published as `previous`: its tokens stay valid.
    assert_eq!(app.call(Some(&before), &initialize()).await.status(), 200);
}

use mcpauth_authserver::admin;

fn jwt_kid(jwt: &str) -> String {
    jsonwebtoken::decode_header(jwt).unwrap().kid.unwrap()
}

/// A fake issuer with one key, and a verifier for resource `aud` trusting it.
async fn fake(interval: Duration) -> (FakeIssuer, SigningKey, JwtVerifier, &'static str) {
    let key = SigningKey::generate("k1");
    let issuer = FakeIssuer::start(&[&key]).await;
    let aud = "https://mcp.example.com/mcp";
    let verifier = JwtVerifier::builder()
        .issuer(&issuer.issuer)
        .audience("api://00000000-0000-0000-0000-000000000001")
        .audience(aud)
        .jwks_refetch_interval(interval)
        .build()
        .unwrap();
    (issuer, key, verifier, aud)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s4_expired_token_is_invalid() {
    let (issuer, key, verifier, aud) = fake(Duration::from_secs(30)).await;
    let ok = key.sign("at+jwt", &issuer.claims(aud, json!({})));
    let p = verifier.verify(&ok).await.unwrap();
    assert_eq!(p.subject, "alice");
    let expired = key.sign("at+jwt", &issuer.claims(aud, json!({"exp": now() - 3600})));
    assert!(matches!(
        verifier.verify(&expired).await,
        Err(ResourceError::Expired)
    ));
    // Within the 60 s leeway is still fine; a future nbf is not.
    let recent = key.sign(
        "at+jwt",
        &issuer.claims(aud, json!({"exp": now() - 10, "jti": "j2"})),
    );
    assert!(verifier.verify(&recent).await.is_ok());
    let early = key.sign("at+jwt", &issuer.claims(aud, json!({"nbf": now() + 3600})));
    assert!(matches!(
        verifier.verify(&early).await,
        Err(ResourceError::Expired)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s5_audience_iss_and_exp_are_mandatory() {
    let (issuer, key, verifier, aud) = fake(Duration::from_secs(30)).await;
    // Several audiences, one of them ours (Entra-style GUID audience).
    let multi = key.sign(
        "at+jwt",
        &issuer.claims(
            "x",
            json!({"aud": ["https://other", "api://00000000-0000-0000-0000-000000000001"]}),
        ),
    );
    assert!(verifier.verify(&multi).await.is_ok());
    for (extra, what) in [
        (json!({"aud": null}), "no aud"),
        (json!({"aud": ["https://other"]}), "other aud"),
        (
            json!({"aud": "https://mcp.example.com/mcp/"}),
            "aud differs by a slash",
        ),
    ] {
        let t = key.sign("at+jwt", &issuer.claims(aud, extra));
        assert!(
            matches!(verifier.verify(&t).await, Err(ResourceError::WrongAudience)),
            "{what}"
        );
    }
    let wrong_iss = key.sign(
        "at+jwt",
        &issuer.claims(aud, json!({"iss": format!("{}/", issuer.issuer)})),
    );
    assert!(matches!(
        verifier.verify(&wrong_iss).await,
        Err(ResourceError::WrongIssuer)
    ));
    let no_exp = key.sign("at+jwt", &issuer.claims(aud, json!({"exp": null})));
    assert!(matches!(
        verifier.verify(&no_exp).await,
        Err(ResourceError::InvalidToken { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s4_alg_none_and_hs256_with_the_public_key_are_refused() {
    let (issuer, key, verifier, aud) = fake(Duration::from_secs(30)).await;
    let claims = issuer.claims(aud, json!({}));
    let none = raw_jwt(
        &json!({"alg": "none", "typ": "at+jwt", "kid": "k1"}),
        &claims,
        b"",
    );
    let none_no_sig = format!("{}.", none.trim_end_matches('.'));
    for t in [none, none_no_sig] {
        let e = verifier.verify(&t).await.unwrap_err();
        assert!(matches!(e, ResourceError::InvalidToken { .. }), "{e}");
    }
    // HS256 keyed with the published public key, in three encodings an attacker might try.
    let header = json!({"alg": "HS256", "typ": "at+jwt", "kid": "k1"});
    let jwk_text = key.jwk.to_string();
    for secret in [
        key.public.as_slice(),
        jwk_text.as_bytes(),
        key.jwk["x"].as_str().unwrap().as_bytes(),
    ] {
        let t = hs256_jwt(&header, &claims, secret);
        let e = verifier.verify(&t).await.unwrap_err();
        assert!(e.to_string().contains("symmetric"), "{e}");
    }
    // A header alg the key does not allow (ES384 on a P-256 ES256 key).
    let es384 = raw_jwt(
        &json!({"alg": "ES384", "typ": "at+jwt", "kid": "k1"}),
        &claims,
        &[0; 96],
    );
    let e = verifier.verify(&es384).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("not the algorithm of the signing key"),
        "{e}"
    );
    // Tampered claims with the original signature.
    let good = key.sign("at+jwt", &claims);
    let parts: Vec<&str> = good.split('.').collect();
    let forged_claims = issuer.claims(aud, json!({"sub": "mallory"}));
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            forged_claims.to_string()
        ),
        parts[2]
    );
    // Refused for its signature, not for anything else about it (review finding 14).
    let e = verifier.verify(&forged).await.unwrap_err();
    assert!(
        matches!(&e, ResourceError::InvalidToken { reason } if reason == "bad signature"),
        "{e}"
    );
    assert!(verifier.verify(&good).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s4_wrong_typ_is_refused_by_default() {
    let (issuer, key, verifier, aud) = fake(Duration::from_secs(30)).await;
    let claims = issuer.claims(aud, json!({}));
    for typ in ["JWT", "id_token+jwt"] {
        let e = verifier.verify(&key.sign(typ, &claims)).await.unwrap_err();
        assert!(e.to_string().contains("at+jwt"), "{e}");
    }
    assert!(
        verifier
            .verify(&key.sign("application/at+jwt", &claims))
            .await
            .is_ok()
    );
    let lenient = JwtVerifier::builder()
        .issuer(&issuer.issuer)
        .audience(aud)
        .accept_plain_jwt(true)
        .build()
        .unwrap();
    assert!(lenient.verify(&key.sign("JWT", &claims)).await.is_ok());
}

/// Whether `e` refuses a token for its signing key, which the issuer does not publish.
fn unknown_key(e: &ResourceError) -> bool {
    matches!(e, ResourceError::InvalidToken { reason }
        if reason == "signed by a key the issuer does not publish")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s4_unknown_kid_refetches_at_most_once_per_interval() {
    let (issuer, _key, verifier, aud) = fake(Duration::from_secs(3600)).await;
    let stranger = SigningKey::generate("k-unknown");
    let claims = issuer.claims(aud, json!({}));
    for i in 0..5 {
        let t = stranger.sign(
            "at+jwt",
            &issuer.claims(aud, json!({"jti": format!("x{i}")})),
        );
        let e = verifier.verify(&t).await.unwrap_err();
        assert!(unknown_key(&e), "{e}");
    }
    // The first fetch only: it was within the interval, so no unknown kid caused another.
    assert_eq!(issuer.fetches(), 1);
    // A key published later is not picked up before the interval is over...
    issuer.publish(&stranger);
    let e = verifier
        .verify(&stranger.sign("at+jwt", &claims))
        .await
        .unwrap_err();
    assert!(unknown_key(&e), "{e}");
    assert_eq!(issuer.fetches(), 1);

    // ...but with a short interval it is, once.
    let quick = JwtVerifier::builder()
        .issuer(&issuer.issuer)
        .audience(aud)
        .jwks_refetch_interval(Duration::from_millis(200))
        .build()
        .unwrap();
    let newer = SigningKey::generate("k-newer");
    quick.prefetch().await.unwrap();
    let n = issuer.fetches();
    issuer.publish(&newer);
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(quick.verify(&newer.sign("at+jwt", &claims)).await.is_ok());
    assert_eq!(issuer.fetches(), n + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_tokens_are_cached_until_exp() {
    let (issuer, key, verifier, aud) = fake(Duration::from_secs(30)).await;
    let t = key.sign("at+jwt", &issuer.claims(aud, json!({})));
    let a = verifier.verify(&t).await.unwrap();
    let b = verifier.verify(&t).await.unwrap();
    assert!(
        std::sync::Arc::ptr_eq(&a, &b),
        "the second verification is a cache hit"
    );
    assert_eq!(issuer.fetches(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_issuer_is_503_not_401() {
    // A port that was just free: connections are refused.
    let (listener, addr) = bind().await;
    drop(listener);
    let verifier = JwtVerifier::builder()
        .issuer(format!("http://{addr}"))
        .audience("https://r")
        .build()
        .unwrap();
    let key = SigningKey::generate("k1");
    let t = key.sign("at+jwt", &json!({"iss": format!("http://{addr}"), "aud": "https://r", "exp": now() + 60, "sub": "s"}));
    let e = verifier.verify(&t).await.unwrap_err();
    assert!(matches!(e, ResourceError::Unavailable { .. }), "{e}");
    assert_eq!(e.status(), 503);
}

#[test]
fn insecure_issuer_urls_are_refused() {
    let e = JwtVerifier::builder()
        .issuer("http://as.example.com")
        .audience("https://r")
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("https"), "{e}");
    assert!(
        JwtVerifier::builder()
            .issuer("https://as.example.com")
            .build()
            .is_err()
    );
}

/// Audiences other than the resource URL (Entra `api://…`, Auth0/Okta API identifiers): a
/// token is accepted when its `aud` names any configured one (MCP SPEC S5).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s5_any_configured_api_identifier_is_an_accepted_audience() {
    let key = SigningKey::generate("k1");
    let issuer = FakeIssuer::start(&[&key]).await;
    let verifier = JwtVerifier::builder()
        .issuer(&issuer.issuer)
        .audience("api://mcp")
        .audience("https://api.example.com")
        .build()
        .unwrap();
    for aud in ["api://mcp", "https://api.example.com"] {
        let t = key.sign("at+jwt", &issuer.claims(aud, json!({})));
        assert!(verifier.verify(&t).await.is_ok(), "{aud}");
    }
    for aud in [
        "api://other",
        "https://api.example.com/",
        "https://mcp.example.com/mcp",
    ] {
        let t = key.sign("at+jwt", &issuer.claims(aud, json!({"jti": aud})));
        assert!(
            matches!(verifier.verify(&t).await, Err(ResourceError::WrongAudience)),
            "{aud}"
        );
    }
}

/// Auth0 issues `https://tenant.auth0.com/`: with the trailing-slash variant accepted, `iss`
/// with or without that one slash passes; nothing else does (SPEC C6 spirit: no other
/// normalisation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c6_the_trailing_slash_variant_of_the_issuer_only_when_configured() {
    let key = SigningKey::generate("k1");
    let issuer = FakeIssuer::start(&[&key]).await;
    let aud = "https://mcp.example.com/mcp";
    let lenient = JwtVerifier::builder()
        .issuer(&issuer.issuer)
        .audience(aud)
        .accept_issuer_trailing_slash(true)
        .build()
        .unwrap();
    let slash = format!("{}/", issuer.issuer);
    for (i, iss) in [issuer.issuer.clone(), slash.clone()].iter().enumerate() {
        let t = key.sign("at+jwt", &issuer.claims(aud, json!({"iss": iss, "jti": i})));
        let p = lenient.verify(&t).await.unwrap();
        assert_eq!(&p.issuer, iss);
    }
    for iss in [
        format!("{}//", issuer.issuer),
        format!("{}/x", issuer.issuer),
    ] {
        let t = key.sign(
            "at+jwt",
            &issuer.claims(aud, json!({"iss": iss, "jti": iss})),
        );
        assert!(
            matches!(lenient.verify(&t).await, Err(ResourceError::WrongIssuer)),
            "{iss}"
        );
    }

    // Configured with the slash while the metadata's `issuer` has none: the metadata is used
    // only with the variant accepted.
    let t = key.sign(
        "at+jwt",
        &issuer.claims(aud, json!({"iss": slash, "jti": "s"})),
    );
    let strict = JwtVerifier::builder()
        .issuer(&slash)
        .audience(aud)
        .build()
        .unwrap();
    let e = strict.verify(&t).await.unwrap_err();
    assert!(matches!(e, ResourceError::Unavailable { .. }), "{e}");
    let lenient = JwtVerifier::builder()
        .issuer(&slash)
        .audience(aud)
        .accept_issuer_trailing_slash(true)
        .build()
        .unwrap();
    assert!(lenient.verify(&t).await.is_ok());
}

/// An explicit JWK set URL (`--jwks-uri`): the issuer's metadata is never fetched, so an issuer
/// whose metadata is unreachable still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s4_an_explicit_jwks_url_needs_no_metadata() {
    let key = SigningKey::generate("k1");
    let keys = FakeIssuer::start(&[&key]).await;
    // A port that was just free: its metadata cannot be fetched.
    let (listener, addr) = bind().await;
    drop(listener);
    let issuer = format!("http://{addr}/tenant/v2.0");
    let verifier = JwtVerifier::builder()
        .issuer_with_jwks(&issuer, format!("{}/jwks", keys.issuer))
        .audience("api://mcp")
        .build()
        .unwrap();
    let t = key.sign("at+jwt", &keys.claims("api://mcp", json!({"iss": issuer})));
    assert_eq!(verifier.verify(&t).await.unwrap().issuer, issuer);
    assert_eq!(keys.fetches(), 1);
}
