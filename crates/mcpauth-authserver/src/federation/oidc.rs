//! The upstream OpenID Connect client: discovery (cached), JWKS (cached, refetched on an
//! unknown `kid` at most once per [`JWKS_REFETCH`]), the token request and ID token checks
//! (OIDC Core §3.1.3.7, SPEC F6), and userinfo (OIDC Core §5.3). Every request has a time limit
//! and a size limit, and follows no redirects; the providers are configured by the operator, so
//! loopback is allowed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use mcpauth_core::constant_time_eq;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::IdentityProvider;

/// Time limit of one request to a provider.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Largest accepted response from a provider.
const MAX_BYTES: usize = 256 * 1024;
/// How long discovery and JWKS documents are kept without `Cache-Control: max-age`.
const DEFAULT_CACHE: Duration = Duration::from_secs(300);
/// Longest time documents are kept, whatever the provider says.
const MAX_CACHE: Duration = Duration::from_secs(24 * 3600);
/// Least time between two JWKS refetches caused by unknown `kid`s (a stream of tokens with
/// made-up `kid`s must not turn into a stream of fetches).
const JWKS_REFETCH: Duration = Duration::from_secs(30);
/// Clock skew accepted on `exp` and `iat`.
const LEEWAY: u64 = 60;

/// Why signing in at a provider failed. The message is for the server log and, without
/// secrets, for the error page.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    /// The provider could not be reached or answered garbage.
    #[error("the identity provider could not be reached or answered badly: {0}")]
    Unreachable(String),
    /// Its discovery document is unusable.
    #[error("the identity provider's configuration is unusable: {0}")]
    Metadata(String),
    /// The token request failed.
    #[error("the identity provider refused the code: {0}")]
    Token(String),
    /// The ID token failed a check.
    #[error("the identity provider's ID token was refused: {0}")]
    IdToken(&'static str),
    /// The userinfo response failed a check.
    #[error("the identity provider's userinfo answer was refused: {0}")]
    UserInfo(&'static str),
}

/// The parts of a provider's discovery document we use (OIDC Discovery §3).
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct ProviderMetadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
    #[serde(default)]
    pub id_token_signing_alg_values_supported: Vec<String>,
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
}

struct Cached<T> {
    value: T,
    until: Instant,
}

struct CachedJwks {
    keys: JwkSet,
    until: Instant,
    /// When an unknown `kid` last caused a refetch.
    forced: Option<Instant>,
}

/// The HTTP client and caches for all providers.
pub(crate) struct Upstream {
    http: reqwest::Client,
    metadata: Mutex<HashMap<String, Cached<ProviderMetadata>>>,
    jwks: Mutex<HashMap<String, CachedJwks>>,
}

crate::redacted_debug!(Upstream);

/// The verified identity of a signed-in account.
#[derive(Debug)]
pub(crate) struct Identity {
    pub sub: String,
    /// ID token claims, completed by userinfo when the ID token had no `email`.
    pub claims: Map<String, Value>,
}

/// `max-age` of a response, bounded.
fn cache_for(resp: &reqwest::Response) -> Duration {
    let cc = resp
        .headers()
        .get(reqwest::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if cc.contains("no-store") || cc.contains("no-cache") {
        return Duration::ZERO;
    }
    cc.split(',')
        .filter_map(|d| d.trim().strip_prefix("max-age="))
        .find_map(|s| s.parse().ok())
        .map_or(DEFAULT_CACHE, Duration::from_secs)
        .min(MAX_CACHE)
}

/// Reads a JSON body of at most [`MAX_BYTES`].
async fn read_json<T: serde::de::DeserializeOwned>(
    mut resp: reqwest::Response,
) -> Result<T, UpstreamError> {
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| UpstreamError::Unreachable(e.to_string()))?
    {
        if body.len() + chunk.len() > MAX_BYTES {
            return Err(UpstreamError::Unreachable(format!(
                "the response is larger than {MAX_BYTES} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| UpstreamError::Unreachable(e.to_string()))
}

/// Whether `url` is https, or http on a loopback host (OAuth 2.1 §1.5).
fn secure_url(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| {
        u.scheme() == "https" || (u.scheme() == "http" && mcpauth_core::url_policy::is_loopback(&u))
    })
}

/// Asymmetric algorithms only: never `none`, never HS* (SPEC F6).
fn asymmetric(alg: Algorithm) -> bool {
    !matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

#[derive(Deserialize)]
struct TokenResponse {
    id_token: Option<String>,
    access_token: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

impl Upstream {
    pub(crate) fn new() -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            .no_proxy()
            .build()
            .expect("the TLS backend initialises");
        Self {
            http,
            metadata: Mutex::default(),
            jwks: Mutex::default(),
        }
    }

    async fn get(&self, url: &str) -> Result<reqwest::Response, UpstreamError> {
        let resp = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| UpstreamError::Unreachable(e.without_url().to_string()))?;
        if !resp.status().is_success() {
            return Err(UpstreamError::Unreachable(format!(
                "{url} answered {}",
                resp.status()
            )));
        }
        Ok(resp)
    }

    /// The provider's discovery document; its `issuer` must equal the configured one exactly
    /// (OIDC Discovery §4.3, SPEC C6).
    pub(crate) async fn metadata(
        &self,
        idp: &IdentityProvider,
    ) -> Result<ProviderMetadata, UpstreamError> {
        if let Some(c) = self.metadata.lock().unwrap().get(&idp.issuer)
            && c.until > Instant::now()
        {
            return Ok(c.value.clone());
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            idp.issuer.trim_end_matches('/')
        );
        let resp = self.get(&url).await?;
        let ttl = cache_for(&resp);
        let m: ProviderMetadata = read_json(resp).await?;
        let endpoints = [
            Some(&m.authorization_endpoint),
            Some(&m.token_endpoint),
            Some(&m.jwks_uri),
            m.userinfo_endpoint.as_ref(),
        ];
        if let Some(bad) = endpoints.into_iter().flatten().find(|u| !secure_url(u)) {
            return Err(UpstreamError::Metadata(format!(
                "its endpoint {bad:?} is not https (http only on a loopback host)"
            )));
        }
        if m.issuer != idp.issuer {
            return Err(UpstreamError::Metadata(format!(
                "its discovery document names the issuer {:?}, not {:?} (OpenID Connect \
                 Discovery §4.3)",
                m.issuer, idp.issuer
            )));
        }
        self.metadata.lock().unwrap().insert(
            idp.issuer.clone(),
            Cached {
                value: m.clone(),
                until: Instant::now() + ttl,
            },
        );
        Ok(m)
    }

    /// Fetches and caches the JWKS at `uri`; `forced`: because of an unknown `kid`.
    async fn fetch_jwks(&self, uri: &str, forced: bool) -> Result<JwkSet, UpstreamError> {
        let resp = self.get(uri).await?;
        let ttl = cache_for(&resp);
        let keys: JwkSet = read_json(resp).await?;
        let now = Instant::now();
        let mut cache = self.jwks.lock().unwrap();
        let previous = cache.get(uri).and_then(|c| c.forced);
        cache.insert(
            uri.to_owned(),
            CachedJwks {
                keys: keys.clone(),
                until: now + ttl,
                forced: if forced { Some(now) } else { previous },
            },
        );
        Ok(keys)
    }

    /// The key for `kid`: from the cache, or fetched when the cache is stale or lacks it (at
    /// most once per [`JWKS_REFETCH`] for an unknown `kid`).
    async fn key(
        &self,
        uri: &str,
        kid: Option<&str>,
    ) -> Result<jsonwebtoken::jwk::Jwk, UpstreamError> {
        let find = |set: &JwkSet| match kid {
            Some(k) => set.find(k).cloned(),
            None if set.keys.len() == 1 => set.keys.first().cloned(),
            None => None,
        };
        let (cached, may_refetch) = {
            let cache = self.jwks.lock().unwrap();
            match cache.get(uri) {
                Some(c) if c.until > Instant::now() => (
                    Some(c.keys.clone()),
                    c.forced.is_none_or(|t| t.elapsed() >= JWKS_REFETCH),
                ),
                _ => (None, true),
            }
        };
        let forced = match &cached {
            Some(set) => match find(set) {
                Some(k) => return Ok(k),
                None if !may_refetch => {
                    return Err(UpstreamError::IdToken("signed with an unknown key"));
                }
                None => true,
            },
            None => false,
        };
        let set = self.fetch_jwks(uri, forced).await?;
        find(&set).ok_or(UpstreamError::IdToken("signed with an unknown key"))
    }

    /// Exchanges `code` at the token endpoint (client_secret_basic, or client_secret_post when
    /// that is all the provider supports) and checks the ID token; completes the claims from
    /// userinfo when the ID token has no `email`.
    pub(crate) async fn sign_in(
        &self,
        idp: &IdentityProvider,
        meta: &ProviderMetadata,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
        nonce: &str,
    ) -> Result<Identity, UpstreamError> {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
        ];
        let post_only = meta
            .token_endpoint_auth_methods_supported
            .as_ref()
            .is_some_and(|m| {
                m.iter().any(|x| x == "client_secret_post")
                    && !m.iter().any(|x| x == "client_secret_basic")
            });
        let mut req = self.http.post(&meta.token_endpoint);
        if post_only {
            form.push(("client_id", &idp.client_id));
            form.push(("client_secret", idp.client_secret.expose()));
        } else {
            // RFC 6749 §2.3.1: both parts form-urlencoded before Basic.
            let enc =
                |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let basic = STANDARD.encode(format!(
                "{}:{}",
                enc(&idp.client_id),
                enc(idp.client_secret.expose())
            ));
            req = req.header(reqwest::header::AUTHORIZATION, format!("Basic {basic}"));
        }
        let resp = req
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|e| UpstreamError::Unreachable(e.without_url().to_string()))?;
        let status = resp.status();
        let body: TokenResponse = read_json(resp).await?;
        if !status.is_success() {
            return Err(UpstreamError::Token(format!(
                "HTTP {status}, error {:?}",
                body.error.unwrap_or_default()
            )));
        }
        let id_token = body
            .id_token
            .ok_or_else(|| UpstreamError::Token("the answer has no id_token".into()))?;
        let mut claims = self.check_id_token(idp, meta, &id_token, nonce).await?;
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or(UpstreamError::IdToken("no sub"))?
            .to_owned();
        if !claims.contains_key("email")
            && let (Some(endpoint), Some(at)) = (&meta.userinfo_endpoint, &body.access_token)
        {
            let info = self.userinfo(endpoint, at).await?;
            // OIDC Core §5.3.2: the userinfo `sub` must be the ID token's.
            if info.get("sub").and_then(Value::as_str) != Some(sub.as_str()) {
                return Err(UpstreamError::UserInfo("its sub is not the ID token's"));
            }
            for k in ["email", "email_verified"] {
                if let Some(v) = info.get(k) {
                    claims.insert(k.into(), v.clone());
                }
            }
        }
        Ok(Identity { sub, claims })
    }

    async fn userinfo(
        &self,
        endpoint: &str,
        access_token: &str,
    ) -> Result<Map<String, Value>, UpstreamError> {
        let resp = self
            .http
            .get(endpoint)
            .bearer_auth(access_token)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| UpstreamError::Unreachable(e.without_url().to_string()))?;
        if !resp.status().is_success() {
            return Err(UpstreamError::UserInfo(
                "the endpoint refused the access token",
            ));
        }
        read_json(resp).await
    }

    /// OIDC Core §3.1.3.7 (SPEC F6): an asymmetric signature by the provider's key with an
    /// advertised algorithm, `iss` exact, `aud` holding our client id (and `azp` ours when
    /// there are several audiences), `exp` and `iat` within [`LEEWAY`], `nonce` ours.
    async fn check_id_token(
        &self,
        idp: &IdentityProvider,
        meta: &ProviderMetadata,
        id_token: &str,
        nonce: &str,
    ) -> Result<Map<String, Value>, UpstreamError> {
        let header = jsonwebtoken::decode_header(id_token)
            .map_err(|_| UpstreamError::IdToken("malformed"))?;
        if !asymmetric(header.alg) {
            return Err(UpstreamError::IdToken(
                "signed with a symmetric algorithm (only asymmetric signatures are accepted)",
            ));
        }
        // OIDC Discovery §3: RS256 when the provider does not say.
        let advertised = if meta.id_token_signing_alg_values_supported.is_empty() {
            vec!["RS256".to_owned()]
        } else {
            meta.id_token_signing_alg_values_supported.clone()
        };
        let alg_name = serde_json::to_value(header.alg)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        if !advertised.contains(&alg_name) {
            return Err(UpstreamError::IdToken(
                "signed with an algorithm the provider does not advertise",
            ));
        }
        let jwk = self.key(&meta.jwks_uri, header.kid.as_deref()).await?;
        let key =
            DecodingKey::from_jwk(&jwk).map_err(|_| UpstreamError::IdToken("unusable key"))?;
        let mut v = Validation::new(header.alg);
        v.set_issuer(&[&idp.issuer]);
        v.set_audience(&[&idp.client_id]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.leeway = LEEWAY;
        let data = jsonwebtoken::decode::<Map<String, Value>>(id_token, &key, &v).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            UpstreamError::IdToken(match e.kind() {
                K::InvalidSignature => "bad signature",
                K::ExpiredSignature => "expired",
                K::InvalidIssuer => "issued by another issuer",
                K::InvalidAudience => "issued for another client",
                K::ImmatureSignature => "not valid yet",
                _ => "invalid",
            })
        })?;
        let claims = data.claims;
        // OIDC Core §3.1.3.7 items 4 and 5: several audiences need our azp.
        if let Some(Value::Array(auds)) = claims.get("aud")
            && auds.len() > 1
            && claims.get("azp").and_then(Value::as_str) != Some(idp.client_id.as_str())
        {
            return Err(UpstreamError::IdToken(
                "several audiences and azp is not ours",
            ));
        }
        let now = crate::secrets::now();
        let iat = claims
            .get("iat")
            .and_then(Value::as_i64)
            .ok_or(UpstreamError::IdToken("no iat"))?;
        if iat > now + LEEWAY as i64 {
            return Err(UpstreamError::IdToken("issued in the future"));
        }
        // OIDC Core §3.1.3.7 item 11.
        let nonce_ok = claims
            .get("nonce")
            .and_then(Value::as_str)
            .is_some_and(|n| constant_time_eq(n.as_bytes(), nonce.as_bytes()));
        if !nonce_ok {
            return Err(UpstreamError::IdToken(
                "the nonce is not ours (replayed ID token?)",
            ));
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(cache_control: Option<&str>) -> reqwest::Response {
        let mut b = axum::http::Response::builder();
        if let Some(cc) = cache_control {
            b = b.header("cache-control", cc);
        }
        reqwest::Response::from(b.body("").unwrap())
    }

    #[test]
    fn f6_documents_are_cached_as_long_as_cache_control_says_within_bounds() {
        assert_eq!(cache_for(&response(None)), DEFAULT_CACHE);
        assert_eq!(
            cache_for(&response(Some("public, max-age=60"))),
            Duration::from_secs(60)
        );
        assert_eq!(cache_for(&response(Some("max-age=99999999"))), MAX_CACHE);
        assert_eq!(cache_for(&response(Some("no-store"))), Duration::ZERO);
    }

    #[test]
    fn f6_provider_endpoints_must_be_https_or_loopback() {
        assert!(secure_url("https://idp.example/token"));
        assert!(secure_url("http://127.0.0.1:8080/token"));
        assert!(!secure_url("http://idp.example/token"));
        assert!(!secure_url("javascript:alert(1)"));
        assert!(!secure_url("not a url"));
    }

    #[test]
    fn f6_only_asymmetric_algorithms() {
        assert!(asymmetric(Algorithm::ES256));
        assert!(asymmetric(Algorithm::RS256));
        assert!(asymmetric(Algorithm::EdDSA));
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            assert!(!asymmetric(alg));
        }
    }
}
