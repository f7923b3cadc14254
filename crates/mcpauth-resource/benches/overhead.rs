//! The cost of the bearer layer on a trivial MCP handler (DESIGN: under 5% of throughput),
//! measured in one run: the same axum router with and without the layer, driven in-process
//! with `tower::ServiceExt::oneshot` (no sockets), a cached-JWKS ES256 token, and a scope
//! policy that reads the JSON-RPC body. Prints ns/request for both and their ratio; then the
//! same for a DPoP-bound token with a fresh proof per request (RFC 9449 §7: the proof's ES256
//! signature is checked and its `jti` recorded), the same with server nonces (§9), and what
//! signing one proof costs the client.
//!
//! `cargo bench -p mcpauth-resource --bench overhead`

use std::time::Instant;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mcpauth_core::dpop::DpopKey;
use mcpauth_resource::{
    BearerAuthLayer, DpopConfig, JwtVerifier, NonceIssuer, ResourceMetadata, ScopePolicy,
};
use serde_json::json;
use tower::ServiceExt;

const RESOURCE: &str = "http://127.0.0.1:9/mcp";
const BODY: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}"#;

async fn handler() -> &'static str {
    r#"{"jsonrpc":"2.0","id":1,"result":{}}"#
}

/// ns/request for one DPoP request per proof in `proofs` (each used once).
async fn run_dpop(app: &Router, token: &str, proofs: &[String]) -> f64 {
    let start = Instant::now();
    for proof in proofs {
        let req = Request::post("/mcp")
            .header("content-type", "application/json")
            .header("authorization", format!("DPoP {token}"))
            .header("dpop", proof.as_str());
        let resp = app
            .clone()
            .oneshot(req.body(Body::from(BODY)).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    start.elapsed().as_nanos() as f64 / proofs.len() as f64
}

async fn run(app: &Router, token: Option<&str>, n: u32) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        let mut req = Request::post("/mcp").header("content-type", "application/json");
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let resp = app
            .clone()
            .oneshot(req.body(Body::from(BODY)).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    start.elapsed().as_nanos() as f64 / f64::from(n)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // A JWK set server for one ES256 key.
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let point = kp.public_key().as_ref().to_vec();
    let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k", "alg": "ES256",
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..])}]});
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let jwks_app = Router::new().route("/jwks", get(move || async move { axum::Json(jwks) }));
    tokio::spawn(async move { axum::serve(listener, jwks_app).await.unwrap() });

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.typ = Some("at+jwt".into());
    header.kid = Some("k".into());
    let claims = json!({"iss": issuer, "sub": "alice", "aud": RESOURCE, "client_id": "c",
        "scope": "mcp tools:call", "iat": now, "exp": now + 3600, "jti": "j"});
    let signing = jsonwebtoken::EncodingKey::from_ec_der(pkcs8.as_ref());
    let token = jsonwebtoken::encode(&header, &claims, &signing).unwrap();
    let dpop_key = DpopKey::generate().unwrap();
    let mut bound_claims = claims.clone();
    bound_claims["jti"] = json!("j-bound");
    bound_claims["cnf"] = json!({"jkt": dpop_key.thumbprint()});
    let bound = jsonwebtoken::encode(&header, &bound_claims, &signing).unwrap();

    let verifier = JwtVerifier::builder()
        .issuer_with_jwks(&issuer, format!("{issuer}/jwks"))
        .audience(RESOURCE)
        .build()
        .unwrap();
    verifier.prefetch().await.unwrap();
    let prm = ResourceMetadata::new(RESOURCE, [&issuer]).unwrap();
    let policy = ScopePolicy::new()
        .require(["mcp"])
        .tool("echo", ["tools:call"]);
    let plain = Router::new().route("/mcp", post(handler));
    let verifier = std::sync::Arc::new(verifier);
    let guarded = Router::new()
        .route("/mcp", post(handler))
        .layer(BearerAuthLayer::new(verifier.clone(), &prm).scope_policy(policy));
    let token_only = Router::new().route("/mcp", post(handler)).layer(
        BearerAuthLayer::new(verifier.clone(), &prm)
            .scope_policy(ScopePolicy::new().require(["mcp"])),
    );
    let dpop = Router::new().route("/mcp", post(handler)).layer(
        BearerAuthLayer::new(verifier.clone(), &prm)
            .scope_policy(ScopePolicy::new().require(["mcp"]))
            .dpop(DpopConfig::default()),
    );
    // The same with server nonces (RFC 9449 §9): three MACs to check the proof's nonce and one
    // for the DPoP-Nonce of every answer.
    let secret = [5u8; 32];
    let with_nonce = Router::new().route("/mcp", post(handler)).layer(
        BearerAuthLayer::new(verifier, &prm)
            .scope_policy(ScopePolicy::new().require(["mcp"]))
            .dpop(DpopConfig::default().nonces(NonceIssuer::new(&secret).unwrap())),
    );

    let n = 200_000;
    // Warm up (and put the token in the verified-token cache).
    run(&plain, None, n / 10).await;
    run(&guarded, Some(&token), n / 10).await;
    let mut best = (f64::MAX, f64::MAX, f64::MAX);
    for _ in 0..3 {
        best.0 = best.0.min(run(&plain, None, n).await);
        best.1 = best.1.min(run(&guarded, Some(&token), n).await);
        best.2 = best.2.min(run(&token_only, Some(&token), n).await);
    }
    println!("unprotected handler:  {:8.0} ns/request", best.0);
    println!(
        "layer, token only:    {:8.0} ns/request (no body read)",
        best.2
    );
    println!(
        "with BearerAuthLayer: {:8.0} ns/request (per-tool policy)",
        best.1
    );
    println!(
        "throughput ratio:     {:.3} (layer costs {:.1}% of in-process throughput)",
        best.0 / best.1,
        (1.0 - best.0 / best.1) * 100.0
    );

    // DPoP: proofs are made before the clock starts (their signing is the client's cost,
    // measured below); each is used once, as the replay cache demands.
    let m = 10_000;
    let sign_start = Instant::now();
    let mut proofs: Vec<String> = (0..4 * m)
        .map(|_| {
            dpop_key
                .proof("POST", RESOURCE, Some(&bound), None)
                .unwrap()
        })
        .collect();
    let sign_ns = sign_start.elapsed().as_nanos() as f64 / (4 * m) as f64;
    let mut best_dpop = f64::MAX;
    run_dpop(&dpop, &bound, &proofs.split_off(3 * m)).await;
    for chunk in proofs.chunks(m) {
        best_dpop = best_dpop.min(run_dpop(&dpop, &bound, chunk).await);
    }
    println!(
        "DPoP token + proof:   {:8.0} ns/request ({:.2}x the bearer layer, token only)",
        best_dpop,
        best_dpop / best.2
    );
    println!(
        "DPoP ratio:           {:.3} (the DPoP layer costs {:.1}% of in-process throughput)",
        best.0 / best_dpop,
        (1.0 - best.0 / best_dpop) * 100.0
    );
    let nonce = NonceIssuer::new(&secret)
        .unwrap()
        .current(mcpauth_core::dpop::unix_now());
    let mut proofs: Vec<String> = (0..4 * m)
        .map(|_| {
            dpop_key
                .proof("POST", RESOURCE, Some(&bound), Some(&nonce))
                .unwrap()
        })
        .collect();
    let mut best_nonce = f64::MAX;
    run_dpop(&with_nonce, &bound, &proofs.split_off(3 * m)).await;
    for chunk in proofs.chunks(m) {
        best_nonce = best_nonce.min(run_dpop(&with_nonce, &bound, chunk).await);
    }
    println!(
        "DPoP + server nonce:  {:8.0} ns/request ({:.0} ns more than DPoP without nonces)",
        best_nonce,
        best_nonce - best_dpop
    );
    println!("client: one proof:    {sign_ns:8.0} ns (ES256 signature, fresh jti)");
}
