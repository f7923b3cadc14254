//! DPoP at the resource server (RFC 9449 §7, SPEC D4-D5), over real HTTP: tokens bound to a key
//! by `cnf.jkt` from an issuer the tests control, proofs made with mcpauth-core's `DpopKey`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mcpauth_core::dpop::DpopKey;
use mcpauth_core::www_authenticate::{Challenge, parse};
use mcpauth_resource::{DpopConfig, DpopPolicy, JwtVerifier, NonceIssuer, ScopePolicy};
use serde_json::{Value, json};

use crate::support::*;

struct Setup {
    app: App,
    issuer: FakeIssuer,
    _signing: SigningKey,
    key: DpopKey,
    /// A token bound to `key`.
    bound: String,
    /// A token bound to no key.
    plain: String,
}

async fn setup(policy: DpopPolicy) -> Setup {
    setup_with(DpopConfig::new(policy)).await
}

async fn setup_with(config: DpopConfig) -> Setup {
    let signing = SigningKey::generate("k1");
    let issuer = FakeIssuer::start(&[&signing]).await;
    let pending = Pending::new().await;
    let verifier = JwtVerifier::builder()
        .issuer(&issuer.issuer)
        .audience(&pending.resource)
        .build()
        .unwrap();
    let key = DpopKey::generate().unwrap();
    let bound = signing.sign(
        "at+jwt",
        &issuer.claims(
            &pending.resource,
            json!({"cnf": {"jkt": key.thumbprint()}, "jti": "b"}),
        ),
    );
    let plain = signing.sign(
        "at+jwt",
        &issuer.claims(&pending.resource, json!({"jti": "p"})),
    );
    let app = pending.serve_with(verifier, &[&issuer.issuer], ScopePolicy::new(), config);
    Setup {
        app,
        issuer,
        _signing: signing,
        key,
        bound,
        plain,
    }
}

impl Setup {
    /// POSTs initialize with `Authorization: SCHEME token` and each `proofs` as a DPoP header.
    async fn send(&self, scheme: &str, token: &str, proofs: &[&str]) -> reqwest::Response {
        let mut req = http()
            .post(&self.app.resource)
            .header("authorization", format!("{scheme} {token}"))
            .json(&initialize());
        for p in proofs {
            req = req.header("dpop", *p);
        }
        req.send().await.unwrap()
    }

    fn proof(&self, token: &str) -> String {
        self.key
            .proof("POST", &self.app.resource, Some(token), None)
            .unwrap()
    }
}

/// The `DPoP` challenge of a refused response.
fn dpop_challenge(resp: &reqwest::Response) -> Challenge {
    let all: Vec<Challenge> = resp
        .headers()
        .get_all("www-authenticate")
        .iter()
        .flat_map(|v| parse(v.to_str().unwrap()).unwrap())
        .collect();
    all.into_iter()
        .find(|c| c.is_scheme("DPoP"))
        .expect("a DPoP challenge")
}

async fn refused_with(resp: reqwest::Response, error: &str) -> String {
    assert_eq!(resp.status(), 401);
    let c = dpop_challenge(&resp);
    assert_eq!(c.param("error"), Some(error), "{c:?}");
    assert!(c.param("algs").unwrap().contains("ES256"));
    assert!(c.param("resource_metadata").is_some());
    c.param("error_description").unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d4_a_bound_token_with_its_proof_is_served() {
    let s = setup(DpopPolicy::Allow).await;
    let resp = s.send("DPoP", &s.bound, &[&s.proof(&s.bound)]).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["result"]["subject"], "alice");
    // An unbound token still passes as Bearer under the default policy.
    assert_eq!(
        s.app.call(Some(&s.plain), &initialize()).await.status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d4_a_replayed_proof_is_refused() {
    let s = setup(DpopPolicy::Allow).await;
    let proof = s.proof(&s.bound);
    assert_eq!(s.send("DPoP", &s.bound, &[&proof]).await.status(), 200);
    let why = refused_with(
        s.send("DPoP", &s.bound, &[&proof]).await,
        "invalid_dpop_proof",
    )
    .await;
    assert!(why.contains("already used"), "{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d4_proofs_for_another_request_time_token_or_key_are_refused() {
    let s = setup(DpopPolicy::Allow).await;
    let other_path = s.app.resource.replace("/mcp", "/other");
    let now = now();
    let cases: Vec<(&str, String)> = vec![
        (
            "htm",
            s.key
                .proof("GET", &s.app.resource, Some(&s.bound), None)
                .unwrap(),
        ),
        (
            "htu",
            s.key
                .proof("POST", &other_path, Some(&s.bound), None)
                .unwrap(),
        ),
        (
            "stale iat",
            s.key
                .proof_at("POST", &s.app.resource, Some(&s.bound), None, now - 600)
                .unwrap(),
        ),
        (
            "future iat",
            s.key
                .proof_at("POST", &s.app.resource, Some(&s.bound), None, now + 600)
                .unwrap(),
        ),
        (
            "ath",
            s.key
                .proof("POST", &s.app.resource, Some(&s.plain), None)
                .unwrap(),
        ),
        (
            "another key",
            DpopKey::generate()
                .unwrap()
                .proof("POST", &s.app.resource, Some(&s.bound), None)
                .unwrap(),
        ),
    ];
    for (what, proof) in cases {
        let why = refused_with(
            s.send("DPoP", &s.bound, &[&proof]).await,
            "invalid_dpop_proof",
        )
        .await;
        assert!(!why.is_empty(), "{what}");
    }
    // The htu with a query names another URI than this request's.
    let with_query = sign_proof(
        &s.key,
        json!({"htu": format!("{}?a=1", s.app.resource)}),
        &s.bound,
    );
    refused_with(
        s.send("DPoP", &s.bound, &[&with_query]).await,
        "invalid_dpop_proof",
    )
    .await;
}

/// A proof by `key` whose claims are the good ones overridden by `extra`, with `header` changes.
fn sign_proof_with(key: &DpopKey, header: Value, extra: Value, token: &str, url: &str) -> String {
    let mut h = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": key.public_jwk()});
    for (k, v) in header.as_object().unwrap() {
        h[k] = v.clone();
    }
    let mut c = json!({
        "jti": mcpauth_core::random_urlsafe(12).unwrap(), "htm": "POST", "htu": url, "iat": now(),
        "ath": mcpauth_core::dpop::access_token_hash(token),
    });
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(h.to_string()),
        URL_SAFE_NO_PAD.encode(c.to_string())
    );
    format!("{input}.{}", key.sign_for_tests(input.as_bytes()))
}

fn sign_proof(key: &DpopKey, extra: Value, token: &str) -> String {
    let url = extra["htu"].as_str().unwrap_or_default().to_owned();
    sign_proof_with(key, json!({}), extra, token, &url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d4_forged_and_malformed_proofs_are_refused() {
    let s = setup(DpopPolicy::Allow).await;
    let url = s.app.resource.clone();
    let mut private = s.key.public_jwk().clone();
    private["d"] = json!("c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0cw");
    let cases = [
        (
            "alg none",
            sign_proof_with(&s.key, json!({"alg": "none"}), json!({}), &s.bound, &url),
        ),
        (
            "HS256",
            sign_proof_with(&s.key, json!({"alg": "HS256"}), json!({}), &s.bound, &url),
        ),
        (
            "typ",
            sign_proof_with(&s.key, json!({"typ": "JWT"}), json!({}), &s.bound, &url),
        ),
        (
            "private key",
            sign_proof_with(&s.key, json!({"jwk": private}), json!({}), &s.bound, &url),
        ),
        (
            "no jti",
            sign_proof_with(&s.key, json!({}), json!({"jti": null}), &s.bound, &url),
        ),
        ("garbage", "not.a.proof".to_owned()),
    ];
    for (what, proof) in &cases {
        let why = refused_with(
            s.send("DPoP", &s.bound, &[proof]).await,
            "invalid_dpop_proof",
        )
        .await;
        assert!(!why.is_empty(), "{what}");
    }
    // Two DPoP headers, or none.
    let (a, b) = (s.proof(&s.bound), s.proof(&s.bound));
    let why = refused_with(
        s.send("DPoP", &s.bound, &[&a, &b]).await,
        "invalid_dpop_proof",
    )
    .await;
    assert!(why.contains("more than one"), "{why}");
    let why = refused_with(s.send("DPoP", &s.bound, &[]).await, "invalid_dpop_proof").await;
    assert!(why.contains("no DPoP proof"), "{why}");
    // The good proof still works afterwards: nothing above was recorded as used.
    assert_eq!(s.send("DPoP", &s.bound, &[&a]).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d5_a_bound_token_sent_as_bearer_is_refused() {
    let s = setup(DpopPolicy::Allow).await;
    let why = refused_with(
        s.app.call(Some(&s.bound), &initialize()).await,
        "invalid_token",
    )
    .await;
    assert!(why.contains("DPoP-bound"), "{why}");
    // ... even with a valid proof beside it: the scheme must be DPoP.
    let why = refused_with(
        s.send("Bearer", &s.bound, &[&s.proof(&s.bound)]).await,
        "invalid_token",
    )
    .await;
    assert!(why.contains("DPoP-bound"), "{why}");
    // An unbound token under the DPoP scheme is not a DPoP token either.
    let why = refused_with(
        s.send("DPoP", &s.plain, &[&s.proof(&s.plain)]).await,
        "invalid_token",
    )
    .await;
    assert!(why.contains("not DPoP-bound"), "{why}");
    // A token signed by a key the issuer does not publish is refused before any proof check.
    let other = SigningKey::generate("k1");
    let forged = other.sign(
        "at+jwt",
        &s.issuer
            .claims(&s.app.resource, json!({"cnf": {"jkt": s.key.thumbprint()}})),
    );
    let resp = s.send("DPoP", &forged, &[&s.proof(&forged)]).await;
    refused_with(resp, "invalid_token").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d5_the_require_policy_refuses_bearer_tokens_and_advertises_dpop() {
    let s = setup(DpopPolicy::Require).await;
    let why = refused_with(
        s.app.call(Some(&s.plain), &initialize()).await,
        "invalid_token",
    )
    .await;
    assert!(why.contains("only DPoP-bound"), "{why}");
    // No credentials: the Bearer challenge (for discovery) and a DPoP one with algs.
    let resp = s.app.call(None, &initialize()).await;
    assert_eq!(resp.status(), 401);
    let c = dpop_challenge(&resp);
    assert_eq!(c.param("error"), None);
    assert!(c.param("algs").unwrap().contains("ES256"));
    let schemes: Vec<String> = resp
        .headers()
        .get_all("www-authenticate")
        .iter()
        .flat_map(|v| parse(v.to_str().unwrap()).unwrap())
        .map(|c| c.scheme)
        .collect();
    assert_eq!(schemes, ["Bearer", "DPoP"]);
    assert_eq!(
        s.send("DPoP", &s.bound, &[&s.proof(&s.bound)])
            .await
            .status(),
        200
    );
}

/// SPEC D4-D6 end to end: `mcpauth-authserver` binds a client-credentials token to the proof's
/// key, the layer (JWT and introspection verifiers alike) serves it with a fresh proof by that
/// key and refuses it as a bearer token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d6_tokens_bound_by_the_authorization_server_need_their_proof() {
    for introspection in [false, true] {
        let pending = Pending::new().await;
        let auth = As::start(&[&pending.resource]).await;
        let resource = pending.resource.clone();
        let app = if introspection {
            let rs = auth.resource_server(&[&resource]).await;
            let verifier = mcpauth_resource::IntrospectionVerifier::new(
                format!("{}/introspect", auth.issuer),
                &rs.0,
                mcpauth_core::ClientSecret::new(rs.1.clone()),
                [resource.clone()],
            )
            .unwrap()
            .issuers([auth.issuer.clone()]);
            pending.serve(verifier, &[&auth.issuer], ScopePolicy::new())
        } else {
            let verifier = JwtVerifier::builder()
                .issuer(&auth.issuer)
                .audience(&resource)
                .build()
                .unwrap();
            pending.serve(verifier, &[&auth.issuer], ScopePolicy::new())
        };
        let client = auth.client().await;
        let key = DpopKey::generate().unwrap();
        let token_proof = key
            .proof("POST", &format!("{}/token", auth.issuer), None, None)
            .unwrap();
        let token = auth
            .token_with(&client, &resource, "mcp", Some(&token_proof))
            .await;
        let proof = key.proof("POST", &resource, Some(&token), None).unwrap();
        let resp = http()
            .post(&resource)
            .header("authorization", format!("DPoP {token}"))
            .header("dpop", proof)
            .json(&initialize())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "introspection: {introspection}");
        let why = refused_with(app.call(Some(&token), &initialize()).await, "invalid_token").await;
        assert!(why.contains("DPoP-bound"), "{why}");
    }
}

/// D7, RFC 9449 §9: with nonces on, a proof without the resource's nonce, or with a stale or
/// foreign one, gets 401 `use_dpop_nonce` with a fresh `DPoP-Nonce`; the retry with it is
/// served, and every answer carries the current nonce.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d7_the_resource_requires_its_nonce() {
    let secret = [9u8; 32];
    let s =
        setup_with(DpopConfig::new(DpopPolicy::Allow).nonces(NonceIssuer::new(&secret).unwrap()))
            .await;
    let resp = s.send("DPoP", &s.bound, &[&s.proof(&s.bound)]).await;
    let nonce = resp
        .headers()
        .get("dpop-nonce")
        .map(|v| v.to_str().unwrap().to_owned());
    refused_with(resp, "use_dpop_nonce").await;
    let nonce = nonce.expect("use_dpop_nonce comes with DPoP-Nonce");
    let now = mcpauth_core::dpop::unix_now();
    let stale = NonceIssuer::new(&secret).unwrap().current(now - 180);
    let foreign = NonceIssuer::random().unwrap().current(now);
    for bad in [stale.as_str(), foreign.as_str(), "x"] {
        let p = s
            .key
            .proof("POST", &s.app.resource, Some(&s.bound), Some(bad))
            .unwrap();
        let resp = s.send("DPoP", &s.bound, &[&p]).await;
        assert!(resp.headers().contains_key("dpop-nonce"));
        refused_with(resp, "use_dpop_nonce").await;
    }
    let p = s
        .key
        .proof("POST", &s.app.resource, Some(&s.bound), Some(&nonce))
        .unwrap();
    let resp = s.send("DPoP", &s.bound, &[&p]).await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers().contains_key("dpop-nonce"),
        "served answers carry the nonce too"
    );
    // Bearer tokens are not affected by nonces.
    assert_eq!(
        s.app.call(Some(&s.plain), &initialize()).await.status(),
        200
    );
}

/// D7: a resource whose nonce issuer shares another instance's secret accepts that instance's
/// nonces.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d7_instances_with_one_secret_accept_each_others_nonces() {
    let secret = [4u8; 32];
    let s =
        setup_with(DpopConfig::new(DpopPolicy::Allow).nonces(NonceIssuer::new(&secret).unwrap()))
            .await;
    let other_instance = NonceIssuer::new(&secret).unwrap();
    let nonce = other_instance.current(mcpauth_core::dpop::unix_now());
    let p = s
        .key
        .proof("POST", &s.app.resource, Some(&s.bound), Some(&nonce))
        .unwrap();
    assert_eq!(s.send("DPoP", &s.bound, &[&p]).await.status(), 200);
}

/// RFC 9449 §7.1 (found by the TypeScript SDK v2 interop): a token that fails verification
/// under the DPoP scheme is answered with a DPoP challenge (`invalid_token`, `algs`), not only
/// a Bearer one, under the default policy too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d4_an_invalid_token_under_the_dpop_scheme_gets_a_dpop_challenge() {
    let s = setup(DpopPolicy::Allow).await;
    let forged = "eyJhbGciOiJFUzI1NiJ9.e30.c2ln";
    let resp = s.send("DPoP", forged, &[&s.proof(forged)]).await;
    let why = refused_with(resp, "invalid_token").await;
    assert!(why.contains("invalid access token"), "{why}");
}
