//! A small but real OpenID Connect provider on 127.0.0.1 for federation tests: discovery, a
//! JWKS with one ES256 key, an `/authorize` that approves at once (302 with `code`, `state` and
//! RFC 9207 `iss`), a `/token` that checks the client secret and PKCE and returns an ID token,
//! and `/userinfo`. [`IdpFault`] makes one thing go wrong; [`OidcProvider::stop`] takes it down.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::upstream::{AuthRequest, ClientAuth, Codes, Server, client_auth, random, redirect_back};

/// The one thing the provider does wrong.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IdpFault {
    /// Nothing.
    #[default]
    None,
    /// The ID token's `aud` is another client.
    OtherAudience,
    /// The ID token's `iss` is another issuer.
    OtherIssuer,
    /// The ID token is signed by a key the JWKS does not hold (same `kid`).
    BadSignature,
    /// The ID token expired an hour ago.
    Expired,
    /// The ID token carries another `nonce`.
    WrongNonce,
    /// The ID token is HS256, keyed with the client secret (and HS256 is advertised).
    Hs256,
    /// The ID token has no `email`; only `/userinfo` has it.
    EmailOnlyInUserinfo,
    /// `/authorize` redirects back with `error=access_denied`.
    AccessDenied,
    /// The ID token's `aud` is our client and another, without `azp`.
    SeveralAudiences,
    /// The ID token has no `email`, and `/userinfo` answers for another `sub`.
    UserinfoOtherSub,
    /// Only `client_secret_post` is advertised and accepted at `/token`.
    SecretPostOnly,
    /// A refresh is refused with `invalid_grant` (the account was removed or its access
    /// revoked at the provider).
    RefreshRevoked,
    /// `/token` answers 503 (the provider is unwell); everything else works.
    TokenUnavailable,
}

/// The account the provider signs in.
#[derive(Clone, Debug)]
pub struct IdpUser {
    /// `sub`.
    pub sub: String,
    /// `email` (verified).
    pub email: String,
    /// More claims for the ID token, e.g. `{"groups": ["admins"]}`.
    pub extra: Value,
}

struct Inner {
    /// The signing key (PKCS#8), its `kid` and its public JWK.
    key: (Vec<u8>, String, Value),
    fault: IdpFault,
    user: IdpUser,
    tokens: u32,
    /// `expires_in` of the access tokens.
    access_ttl: i64,
    /// The refresh tokens that are valid (each is spent by its use: rotation).
    refresh_tokens: std::collections::HashSet<String>,
    /// Refreshes answered with tokens.
    refreshes: u32,
}

/// A running test provider.
#[derive(Clone)]
pub struct OidcProvider {
    /// `http://127.0.0.1:PORT`: the issuer.
    pub issuer: String,
    /// The client registered at it.
    pub client_id: String,
    /// That client's secret.
    pub client_secret: String,
    other_key: Arc<Vec<u8>>,
    codes: Codes,
    server: Server,
    inner: Arc<Mutex<Inner>>,
}

fn ec_key(kid: &str) -> (Vec<u8>, Value) {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .expect("key generation");
    let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
        .expect("generated key");
    let p = kp.public_key().as_ref();
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
        "x": URL_SAFE_NO_PAD.encode(&p[1..33]), "y": URL_SAFE_NO_PAD.encode(&p[33..]),
    });
    (pkcs8.as_ref().to_vec(), jwk)
}

impl OidcProvider {
    /// Starts a provider on 127.0.0.1:0 that signs in `user`.
    pub async fn start(user: IdpUser) -> OidcProvider {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let (key, jwk) = ec_key("idp-key-1");
        let (other_key, _) = ec_key("idp-key-1");
        let idp = OidcProvider {
            issuer,
            client_id: "mcpauth-test-client".into(),
            client_secret: random(),
            other_key: Arc::new(other_key),
            codes: Codes::default(),
            server: Server::default(),
            inner: Arc::new(Mutex::new(Inner {
                key: (key, "idp-key-1".into(), jwk),
                fault: IdpFault::None,
                user,
                tokens: 0,
                access_ttl: 300,
                refresh_tokens: Default::default(),
                refreshes: 0,
            })),
        };
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .route("/userinfo", get(userinfo))
            .with_state(idp.clone());
        idp.server.serve(listener, app);
        idp
    }

    /// A JWT with `claims` signed by the provider's current key (`iss` added), with `typ` in its
    /// header when given: a workload token or an ID-JAG this issuer vouches for.
    pub fn mint(&self, typ: Option<&str>, claims: &Value) -> String {
        let (key, kid) = {
            let inner = self.inner.lock().unwrap();
            (inner.key.0.clone(), inner.key.1.clone())
        };
        self.mint_with(&key, &kid, typ, claims)
    }

    /// [`OidcProvider::mint`] signed by a key the provider does not publish (a forgery).
    pub fn mint_forged(&self, typ: Option<&str>, claims: &Value) -> String {
        let kid = self.inner.lock().unwrap().key.1.clone();
        self.mint_with(&self.other_key, &kid, typ, claims)
    }

    fn mint_with(&self, key: &[u8], kid: &str, typ: Option<&str>, claims: &Value) -> String {
        let mut claims = claims.clone();
        if claims.get("iss").is_none() {
            claims["iss"] = json!(self.issuer);
        }
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(kid.into());
        header.typ = typ.map(str::to_owned);
        jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_ec_der(key),
        )
        .expect("signing")
    }

    /// Takes the provider down: its port refuses connections from now on.
    pub async fn stop(&self) {
        self.server.stop().await;
    }

    /// Makes the provider do `fault` from now on.
    pub fn set_fault(&self, fault: IdpFault) {
        self.inner.lock().unwrap().fault = fault;
    }

    /// Replaces the signing key by a new one with a new `kid` (key rotation); the JWKS then
    /// holds only the new key.
    pub fn rotate_key(&self) {
        let kid = format!("idp-key-{}", random());
        let (key, jwk) = ec_key(&kid);
        self.inner.lock().unwrap().key = (key, kid, jwk);
    }

    /// How many token requests it answered with tokens.
    pub fn tokens_issued(&self) -> u32 {
        self.inner.lock().unwrap().tokens
    }

    /// Sets `expires_in` of the access tokens issued from now on (default 300 s).
    pub fn set_access_ttl(&self, seconds: i64) {
        self.inner.lock().unwrap().access_ttl = seconds;
    }

    /// How many refreshes it answered with tokens.
    pub fn refreshes(&self) -> u32 {
        self.inner.lock().unwrap().refreshes
    }

    /// The access token it issued last (`at-SUB` at sign-in, `at-SUB-rN` after the Nth
    /// refresh).
    pub fn last_access_token(&self) -> String {
        let inner = self.inner.lock().unwrap();
        access_token_of(&inner.user.sub, inner.refreshes)
    }

    fn fault(&self) -> IdpFault {
        self.inner.lock().unwrap().fault
    }
}

async fn discovery(State(idp): State<OidcProvider>) -> Json<Value> {
    let algs = if idp.fault() == IdpFault::Hs256 {
        json!(["ES256", "HS256"])
    } else {
        json!(["ES256"])
    };
    let auth_methods = if idp.fault() == IdpFault::SecretPostOnly {
        json!(["client_secret_post"])
    } else {
        json!(["client_secret_basic"])
    };
    let i = &idp.issuer;
    Json(json!({
        "issuer": i,
        "authorization_endpoint": format!("{i}/authorize"),
        "token_endpoint": format!("{i}/token"),
        "jwks_uri": format!("{i}/jwks"),
        "userinfo_endpoint": format!("{i}/userinfo"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algs,
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": auth_methods,
        "authorization_response_iss_parameter_supported": true,
    }))
}

async fn jwks(State(idp): State<OidcProvider>) -> Response {
    (
        [(header::CACHE_CONTROL, "max-age=300")],
        Json(json!({ "keys": [idp.inner.lock().unwrap().key.2] })),
    )
        .into_response()
}

async fn authorize(
    State(idp): State<OidcProvider>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let req = match AuthRequest::parse(&q, &idp.client_id) {
        Ok(r) => r,
        Err(refusal) => return refusal.into_response(),
    };
    let redirect_uri = req.redirect_uri.clone();
    let state = req.state.clone();
    let mut pairs = Vec::new();
    if idp.fault() == IdpFault::AccessDenied {
        pairs.push(("error", "access_denied".to_owned()));
    } else {
        pairs.push(("code", idp.codes.issue(req)));
    }
    if let Some(s) = state {
        pairs.push(("state", s));
    }
    pairs.push(("iss", idp.issuer.clone()));
    let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    redirect_back(&redirect_uri, &pairs)
}

fn token_error(error: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": error }))).into_response()
}

async fn token(
    State(idp): State<OidcProvider>,
    headers: HeaderMap,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    let auth = client_auth(&headers, &f, &idp.client_id, &idp.client_secret);
    let wanted = if idp.fault() == IdpFault::SecretPostOnly {
        ClientAuth::Post
    } else {
        ClientAuth::Basic
    };
    if auth != Some(wanted) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    if idp.fault() == IdpFault::TokenUnavailable {
        return (StatusCode::SERVICE_UNAVAILABLE, "down for maintenance").into_response();
    }
    match f.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {}
        Some("refresh_token") => return refresh(&idp, &f),
        Some("urn:ietf:params:oauth:grant-type:token-exchange") => return exchange(&idp, &f),
        _ => return token_error("unsupported_grant_type"),
    }
    let Some(issued) = idp.codes.redeem(&f) else {
        return token_error("invalid_grant");
    };
    let (fault, user, (key, kid, _)) = {
        let mut inner = idp.inner.lock().unwrap();
        inner.tokens += 1;
        (inner.fault, inner.user.clone(), inner.key.clone())
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (iat, exp) = if fault == IdpFault::Expired {
        (now - 7200, now - 3600)
    } else {
        (now, now + 300)
    };
    let mut claims = json!({
        "iss": if fault == IdpFault::OtherIssuer { "https://evil.example".to_owned() } else { idp.issuer.clone() },
        "sub": user.sub,
        "aud": if fault == IdpFault::OtherAudience { "another-client" } else { idp.client_id.as_str() },
        "iat": iat,
        "exp": exp,
    });
    let nonce = if fault == IdpFault::WrongNonce {
        Some("not-the-nonce".to_owned())
    } else {
        issued.nonce
    };
    if let Some(n) = nonce {
        claims["nonce"] = json!(n);
    }
    if fault == IdpFault::SeveralAudiences {
        claims["aud"] = json!([idp.client_id, "another-client"]);
    }
    if !matches!(
        fault,
        IdpFault::EmailOnlyInUserinfo | IdpFault::UserinfoOtherSub
    ) {
        claims["email"] = json!(user.email);
        claims["email_verified"] = json!(true);
    }
    if let Some(extra) = user.extra.as_object() {
        for (k, v) in extra {
            claims[k] = v.clone();
        }
    }
    let id_token = match fault {
        IdpFault::Hs256 => sign(
            &kid,
            jsonwebtoken::Algorithm::HS256,
            &jsonwebtoken::EncodingKey::from_secret(idp.client_secret.as_bytes()),
            &claims,
        ),
        IdpFault::BadSignature => sign(
            &kid,
            jsonwebtoken::Algorithm::ES256,
            &jsonwebtoken::EncodingKey::from_ec_der(&idp.other_key),
            &claims,
        ),
        _ => sign(
            &kid,
            jsonwebtoken::Algorithm::ES256,
            &jsonwebtoken::EncodingKey::from_ec_der(&key),
            &claims,
        ),
    };
    let (refresh_token, access_ttl) = {
        let mut inner = idp.inner.lock().unwrap();
        let rt = format!("rt-{}", random());
        inner.refresh_tokens.insert(rt.clone());
        (rt, inner.access_ttl)
    };
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({
            "access_token": access_token_of(&user.sub, 0),
            "token_type": "Bearer",
            "expires_in": access_ttl,
            "refresh_token": refresh_token,
            "id_token": id_token,
        })),
    )
        .into_response()
}

/// RFC 8693 token exchange of an ID token this provider issued for an ID-JAG (MCP
/// Enterprise-Managed Authorization §4): audience, resource and scope as asked, `client_id` the
/// requesting client's (the tests register it under the same id at the resource's server).
fn exchange(idp: &OidcProvider, f: &HashMap<String, String>) -> Response {
    let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("");
    if get("requested_token_type") != "urn:ietf:params:oauth:token-type:id-jag"
        || get("subject_token_type") != "urn:ietf:params:oauth:token-type:id_token"
    {
        return token_error("invalid_request");
    }
    let jwk = idp.inner.lock().unwrap().key.2.clone();
    let Ok(jwk) = serde_json::from_value::<jsonwebtoken::jwk::Jwk>(jwk) else {
        return token_error("server_error");
    };
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    v.set_issuer(&[&idp.issuer]);
    v.set_audience(&[&idp.client_id]);
    let subject = jsonwebtoken::DecodingKey::from_jwk(&jwk)
        .ok()
        .and_then(|key| jsonwebtoken::decode::<Value>(get("subject_token"), &key, &v).ok());
    let Some(subject) = subject else {
        return token_error("invalid_grant");
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut claims = json!({
        "sub": subject.claims["sub"], "aud": get("audience"), "client_id": idp.client_id,
        "jti": random(), "iat": now, "exp": now + 300,
    });
    for k in ["resource", "scope"] {
        if !get(k).is_empty() {
            claims[k] = json!(get(k));
        }
    }
    let id_jag = idp.mint(Some("oauth-id-jag+jwt"), &claims);
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({
            "access_token": id_jag,
            "issued_token_type": "urn:ietf:params:oauth:token-type:id-jag",
            "token_type": "N_A",
            "expires_in": 300,
        })),
    )
        .into_response()
}

fn access_token_of(sub: &str, refreshes: u32) -> String {
    if refreshes == 0 {
        format!("at-{sub}")
    } else {
        format!("at-{sub}-r{refreshes}")
    }
}

/// The refresh token grant (RFC 6749 §6), rotating the refresh token.
fn refresh(idp: &OidcProvider, f: &HashMap<String, String>) -> Response {
    let mut inner = idp.inner.lock().unwrap();
    let presented = f.get("refresh_token").map(String::as_str).unwrap_or("");
    if inner.fault == IdpFault::RefreshRevoked || !inner.refresh_tokens.remove(presented) {
        return token_error("invalid_grant");
    }
    inner.refreshes += 1;
    let rt = format!("rt-{}", random());
    inner.refresh_tokens.insert(rt.clone());
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({
            "access_token": access_token_of(&inner.user.sub, inner.refreshes),
            "token_type": "Bearer",
            "expires_in": inner.access_ttl,
            "refresh_token": rt,
        })),
    )
        .into_response()
}

fn sign(
    kid: &str,
    alg: jsonwebtoken::Algorithm,
    key: &jsonwebtoken::EncodingKey,
    claims: &Value,
) -> String {
    let mut header = jsonwebtoken::Header::new(alg);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, claims, key).expect("signing")
}

async fn userinfo(State(idp): State<OidcProvider>, headers: HeaderMap) -> Response {
    let user = idp.inner.lock().unwrap().user.clone();
    let expected = format!("Bearer at-{}", user.sub);
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(&expected)
    {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let sub = if idp.fault() == IdpFault::UserinfoOtherSub {
        "someone-else".to_owned()
    } else {
        user.sub
    };
    Json(json!({ "sub": sub, "email": user.email, "email_verified": true })).into_response()
}
