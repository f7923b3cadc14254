//! Client authentication at the token, revocation and introspection endpoints (RFC 6749 §2.3,
//! RFC 7523 §2.2): `none`, `client_secret_basic`, `client_secret_post`, `private_key_jwt`.

use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use mcpauth_core::jose::{JwkParams, JwsAlgorithm, signature_algorithms};
use mcpauth_core::{ErrorCode, OAuthError, constant_time_eq};
use serde::Deserialize;

use crate::basic_auth;
use crate::clients::{self, AuthMethod, Client, LookupError};
use crate::fetch;
use crate::params::{Params, oauth_error};
use crate::secrets::{hash_secret, now};
use crate::server::Shared;

/// RFC 7523 §2.2 client assertion type.
pub(crate) const JWT_BEARER_ASSERTION: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Longest accepted client-assertion lifetime (bounds the replay table).
const MAX_ASSERTION_LIFETIME: i64 = 3600;

/// An OAuth error answered as JSON (RFC 6749 §5.2), with `Cache-Control: no-store`.
#[derive(Debug)]
pub(crate) struct TokenError {
    pub status: StatusCode,
    pub error: OAuthError,
    /// Add `WWW-Authenticate: Basic` (the client tried HTTP Basic and failed).
    pub basic_challenge: bool,
}

impl TokenError {
    /// A 400 error.
    pub(crate) fn bad(error: OAuthError) -> Self {
        let status = match error.error {
            ErrorCode::InvalidClient => StatusCode::UNAUTHORIZED,
            ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        };
        Self {
            status,
            error,
            basic_challenge: false,
        }
    }

    /// `invalid_client` (401).
    pub(crate) fn invalid_client(description: &str, basic: bool) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            error: oauth_error(ErrorCode::InvalidClient, description),
            basic_challenge: basic,
        }
    }

    /// `server_error` (500), logging the cause.
    pub(crate) fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "internal error");
        Self::bad(oauth_error(ErrorCode::ServerError, "internal error"))
    }

    /// 429 `temporarily_unavailable`... with the rate-limit wording.
    pub(crate) fn rate_limited() -> Self {
        Self {
            status: StatusCode::TOO_MANY_REQUESTS,
            error: oauth_error(
                ErrorCode::TemporarilyUnavailable,
                "too many requests; slow down",
            ),
            basic_challenge: false,
        }
    }
}

impl From<OAuthError> for TokenError {
    fn from(e: OAuthError) -> Self {
        Self::bad(e)
    }
}

impl From<crate::error::AuthServerError> for TokenError {
    fn from(e: crate::error::AuthServerError) -> Self {
        Self::internal(e)
    }
}

impl IntoResponse for TokenError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(&self.error)).into_response();
        let h = resp.headers_mut();
        h.insert(header::CACHE_CONTROL, "no-store".parse().unwrap());
        h.insert(header::PRAGMA, "no-cache".parse().unwrap());
        if self.basic_challenge {
            h.insert(
                header::WWW_AUTHENTICATE,
                "Basic realm=\"mcpauth\", charset=\"UTF-8\""
                    .parse()
                    .unwrap(),
            );
        }
        resp
    }
}

/// Credentials of an `Authorization: Basic` header, if there is one.
fn basic_credentials(headers: &HeaderMap) -> Option<Result<(String, String), ()>> {
    basic_auth::credentials(headers.get(header::AUTHORIZATION)?.to_str().ok()?)
}

async fn lookup(shared: &Shared, client_id: &str, basic: bool) -> Result<Client, TokenError> {
    match clients::resolve(shared, client_id).await {
        Ok(c) => Ok(c),
        Err(LookupError::Unknown) => Err(TokenError::invalid_client("unknown client", basic)),
        Err(LookupError::Document(d)) => Err(TokenError::invalid_client(
            &format!("the client ID metadata document is unusable: {d}"),
            basic,
        )),
        // Why is in the server log only (security finding 10).
        Err(LookupError::NotFetched) => Err(TokenError::invalid_client(
            "the client ID metadata document could not be fetched",
            basic,
        )),
        Err(LookupError::Internal(e)) => Err(TokenError::internal(e)),
    }
}

fn secret_matches(client: &Client, secret: &str) -> bool {
    client
        .secret_hash
        .as_deref()
        .is_some_and(|h| constant_time_eq(h.as_bytes(), hash_secret(secret).as_bytes()))
}

/// Authenticates the client of a token-endpoint-style request. `endpoint` is the URL called
/// (also accepted as a client-assertion audience).
pub(crate) async fn authenticate(
    shared: &Shared,
    headers: &HeaderMap,
    params: &Params,
    endpoint: &str,
) -> Result<Client, TokenError> {
    let basic = basic_credentials(headers);
    let assertion = params.get("client_assertion");
    let post_secret = params.get("client_secret");
    let methods = usize::from(basic.is_some())
        + usize::from(assertion.is_some())
        + usize::from(post_secret.is_some());
    if methods > 1 {
        return Err(oauth_error(
            ErrorCode::InvalidRequest,
            "use exactly one client authentication method (RFC 6749 §2.3)",
        )
        .into());
    }
    let param_id = params.get("client_id");
    if let Some(basic) = basic {
        let Ok((id, secret)) = basic else {
            return Err(TokenError::invalid_client(
                "malformed Basic credentials",
                true,
            ));
        };
        if param_id.is_some_and(|p| p != id) {
            return Err(TokenError::invalid_client(
                "client_id differs from the credentials",
                true,
            ));
        }
        let client = lookup(shared, &id, true).await?;
        if !client.auth_method.uses_secret() || !secret_matches(&client, &secret) {
            return Err(TokenError::invalid_client(
                "client authentication failed",
                true,
            ));
        }
        return Ok(client);
    }
    if let Some(assertion) = assertion {
        if params.get("client_assertion_type") != Some(JWT_BEARER_ASSERTION) {
            return Err(TokenError::invalid_client(
                "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                false,
            ));
        }
        return verify_assertion(shared, assertion, param_id, endpoint).await;
    }
    let Some(id) = param_id else {
        return Err(TokenError::invalid_client(
            "no client authentication",
            false,
        ));
    };
    let client = lookup(shared, id, false).await?;
    match (client.auth_method, post_secret) {
        (AuthMethod::None, None) => Ok(client),
        (m, Some(secret)) if m.uses_secret() && secret_matches(&client, secret) => Ok(client),
        _ => Err(TokenError::invalid_client(
            "client authentication failed",
            false,
        )),
    }
}

#[derive(Deserialize)]
struct UnverifiedSubject {
    sub: Option<String>,
}

#[derive(Deserialize)]
struct AssertionClaims {
    exp: i64,
    jti: Option<String>,
}

/// The algorithms a client may sign its assertions with, advertised as
/// `token_endpoint_auth_signing_alg_values_supported` (RFC 8414 §2, MCP SPEC A12): asymmetric only.
pub(crate) const CLIENT_ASSERTION_ALGORITHMS: [JwsAlgorithm; 4] = [
    JwsAlgorithm::ES256,
    JwsAlgorithm::ES384,
    JwsAlgorithm::EdDSA,
    JwsAlgorithm::RS256,
];

/// The algorithms a client's JWK may verify: the shared rule of [`mcpauth_core::jose`] (no `oct`
/// keys, an `alg` must suit the key type) limited to [`CLIENT_ASSERTION_ALGORITHMS`]. The
/// token header's `alg` only picks among them, it is never trusted (RFC 8725 §3.1).
fn key_algorithms(jwk: &Jwk) -> Result<Vec<Algorithm>, String> {
    let json = serde_json::to_value(jwk).map_err(|e| e.to_string())?;
    let algs = signature_algorithms(&JwkParams::from_json(&json), &CLIENT_ASSERTION_ALGORITHMS)
        .map_err(|e| e.to_string())?;
    algs.iter()
        .map(|a| a.as_str().parse::<Algorithm>().map_err(|e| e.to_string()))
        .collect()
}

/// A `jwks_uri` document is fetched again at most this often when an assertion does not verify
/// with the cached keys (the client may have rotated them; an attacker's made-up `kid`s must
/// not turn the server into a fetcher).
const JWKS_REFETCH_AFTER: Duration = Duration::from_secs(10);

/// A fetched `jwks_uri` document.
#[derive(Debug)]
pub(crate) struct CachedJwks {
    keys: JwkSet,
    fetched: Instant,
    /// Until when the document's `Cache-Control` lets the keys be used.
    fresh_until: Instant,
}

/// The client's public keys: inline `jwks`, or `jwks_uri` fetched with the SSRF-safe fetcher and
/// kept as long as its `Cache-Control` allows (within the fetch policy's bounds). `stale`: the
/// cached keys did not verify an assertion, so fetch again unless that was just done. The flag
/// returned says whether the keys came from a cache (and may be worth refetching).
async fn client_keys(
    shared: &Shared,
    client: &Client,
    stale: bool,
) -> Result<(JwkSet, bool), TokenError> {
    let bad = |d: String| TokenError::invalid_client(&d, false);
    if let Some(jwks) = &client.metadata.jwks {
        let set =
            serde_json::from_value(jwks.clone()).map_err(|e| bad(format!("client jwks: {e}")))?;
        return Ok((set, false));
    }
    let Some(uri) = &client.metadata.jwks_uri else {
        return Err(bad("the client has no jwks or jwks_uri".into()));
    };
    if let Some(cached) = shared.jwks_cache.lock().unwrap().get(uri) {
        let usable = if stale {
            cached.fetched.elapsed() < JWKS_REFETCH_AFTER
        } else {
            Instant::now() < cached.fresh_until
        };
        if usable {
            return Ok((cached.keys.clone(), !stale));
        }
    }
    let fetched = fetch::fetch(&shared.config.fetch, uri).await.map_err(|e| {
        // Why is in the server log only (security finding 10).
        e.log("a client's jwks_uri document");
        bad("the client's jwks_uri document could not be fetched".into())
    })?;
    let set: JwkSet = serde_json::from_slice(&fetched.body)
        .map_err(|e| bad(format!("client jwks_uri document: {e}")))?;
    let now = Instant::now();
    let mut cache = shared.jwks_cache.lock().unwrap();
    if cache.len() > 1000 {
        cache.clear();
    }
    cache.insert(
        uri.clone(),
        CachedJwks {
            keys: set.clone(),
            fetched: now,
            fresh_until: now + fetched.cache_for,
        },
    );
    Ok((set, false))
}

/// The claims of `assertion` if one of `keys` (matching its `kid` and `alg`) verifies it.
fn verify_with(
    keys: &JwkSet,
    assertion: &str,
    header: &jsonwebtoken::Header,
    client_id: &str,
    audiences: &[&str],
) -> Option<AssertionClaims> {
    for jwk in keys
        .keys
        .iter()
        .filter(|k| header.kid.is_none() || k.common.key_id == header.kid)
    {
        match key_algorithms(jwk) {
            Ok(algs) if algs.contains(&header.alg) => {}
            Ok(_) => continue,
            Err(reason) => {
                tracing::debug!(%client_id, %reason, "skipping a client JWK");
                continue;
            }
        }
        let Ok(key) = DecodingKey::from_jwk(jwk) else {
            continue;
        };
        let mut v = Validation::new(header.alg);
        v.leeway = 30;
        v.set_audience(audiences);
        v.set_issuer(&[client_id]);
        v.sub = Some(client_id.to_owned());
        v.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        if let Ok(d) = jsonwebtoken::decode::<AssertionClaims>(assertion, &key, &v) {
            return Some(d.claims);
        }
    }
    None
}

async fn verify_assertion(
    shared: &Shared,
    assertion: &str,
    param_id: Option<&str>,
    endpoint: &str,
) -> Result<Client, TokenError> {
    let fail = |d: &str| TokenError::invalid_client(d, false);
    let header =
        jsonwebtoken::decode_header(assertion).map_err(|_| fail("malformed client assertion"))?;
    // The subject only selects the client whose keys then verify the assertion.
    let subject: UnverifiedSubject = jsonwebtoken::dangerous::insecure_decode(assertion)
        .map(|d| d.claims)
        .map_err(|_| fail("malformed client assertion"))?;
    let client_id = subject
        .sub
        .ok_or_else(|| fail("the client assertion has no sub"))?;
    if param_id.is_some_and(|p| p != client_id) {
        return Err(fail("client_id differs from the assertion's sub"));
    }
    let client = lookup(shared, &client_id, false).await?;
    if client.auth_method != AuthMethod::PrivateKeyJwt {
        return Err(fail("the client is not registered for private_key_jwt"));
    }
    let token_endpoint = shared.config.endpoint("/token");
    let audiences = [
        shared.config.issuer.as_str(),
        token_endpoint.as_str(),
        endpoint,
    ];
    let (keys, cached) = client_keys(shared, &client, false).await?;
    let mut verified = verify_with(&keys, assertion, &header, &client_id, &audiences);
    if verified.is_none() && cached {
        // Perhaps the client rotated its keys since they were fetched.
        let (keys, _) = client_keys(shared, &client, true).await?;
        verified = verify_with(&keys, assertion, &header, &client_id, &audiences);
    }
    let claims = verified.ok_or_else(|| fail("the client assertion does not verify"))?;
    let now = now();
    if claims.exp > now + MAX_ASSERTION_LIFETIME {
        return Err(fail("the client assertion lives too long"));
    }
    let jti = claims
        .jti
        .ok_or_else(|| fail("the client assertion has no jti (RFC 7523 §3)"))?;
    if !shared
        .store
        .use_assertion_jti(&client_id, &jti, claims.exp + 60)
        .await?
    {
        return Err(fail("the client assertion was already used"));
    }
    Ok(client)
}
