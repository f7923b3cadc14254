//! The upstream OpenID Connect client: discovery (cached), JWKS (cached, refetched on an
//! unknown `kid` at most once per [`JWKS_REFETCH`]), the token request and ID token checks
//! (OIDC Core §3.1.3.7, SPEC F6), and userinfo (OIDC Core §5.3), over the shared
//! [`Upstream`] client.

use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use mcpauth_core::constant_time_eq;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::upstream::{
    CodeGrant, Identity, Upstream, UpstreamError, UpstreamTokens, read_json, secure_url,
};
use super::{IdentityProvider, TokenAuth};

/// How long discovery and JWKS documents are kept without `Cache-Control: max-age`.
const DEFAULT_CACHE: Duration = Duration::from_secs(300);
/// Longest time documents are kept, whatever the provider says.
const MAX_CACHE: Duration = Duration::from_secs(24 * 3600);
/// Least time between two JWKS refetches caused by unknown `kid`s (a stream of tokens with
/// made-up `kid`s must not turn into a stream of fetches).
const JWKS_REFETCH: Duration = Duration::from_secs(30);
/// Clock skew accepted on `exp` and `iat`.
const LEEWAY: u64 = 60;

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

/// A cached discovery document.
pub(crate) struct Cached<T> {
    value: T,
    until: Instant,
}

/// A cached JWKS.
pub(crate) struct CachedJwks {
    keys: JwkSet,
    until: Instant,
    /// When an unknown `kid` last caused a refetch.
    forced: Option<Instant>,
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

/// Asymmetric algorithms only: never `none`, never HS* (SPEC F6).
pub(crate) fn asymmetric(alg: Algorithm) -> bool {
    !matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

impl ProviderMetadata {
    /// How we authenticate at the token endpoint: client_secret_basic, or client_secret_post
    /// when that is all the provider supports (RFC 8414 §2).
    pub(super) fn token_auth(&self) -> TokenAuth {
        let post_only = self
            .token_endpoint_auth_methods_supported
            .as_ref()
            .is_some_and(|m| {
                m.iter().any(|x| x == "client_secret_post")
                    && !m.iter().any(|x| x == "client_secret_basic")
            });
        if post_only {
            TokenAuth::Post
        } else {
            TokenAuth::Basic
        }
    }
}

impl Upstream {
    /// The discovery document of the provider `issuer`; its `issuer` must equal the configured
    /// one exactly (OIDC Discovery §4.3, SPEC C6).
    pub(crate) async fn metadata(&self, issuer: &str) -> Result<ProviderMetadata, UpstreamError> {
        if let Some(c) = self.metadata.lock().unwrap().get(issuer)
            && c.until > Instant::now()
        {
            return Ok(c.value.clone());
        }
        let (m, ttl): (ProviderMetadata, _) = self.discovery(issuer).await?;
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
        if m.issuer != issuer {
            return Err(UpstreamError::Metadata(format!(
                "its discovery document names the issuer {:?}, not {issuer:?} (OpenID Connect \
                 Discovery §4.3)",
                m.issuer
            )));
        }
        self.metadata.lock().unwrap().insert(
            issuer.to_owned(),
            Cached {
                value: m.clone(),
                until: Instant::now() + ttl,
            },
        );
        Ok(m)
    }

    /// The OpenID discovery document of `issuer` and how long it may be kept.
    async fn discovery<T: serde::de::DeserializeOwned>(
        &self,
        issuer: &str,
    ) -> Result<(T, Duration), UpstreamError> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let resp = self.get(&url).await?;
        let ttl = cache_for(&resp);
        Ok((read_json(resp).await?, ttl))
    }

    /// The `jwks_uri` of `issuer` from its OpenID discovery document (cached like the others):
    /// only `issuer` (which must be exact, OIDC Discovery §4.3) and `jwks_uri` (https, or http
    /// on loopback) are needed, so workload issuers such as Kubernetes qualify.
    pub(crate) async fn jwks_uri(&self, issuer: &str) -> Result<String, UpstreamError> {
        if let Some(c) = self.jwks_uris.lock().unwrap().get(issuer)
            && c.until > Instant::now()
        {
            return Ok(c.value.clone());
        }
        let (doc, ttl): (Map<String, Value>, _) = self.discovery(issuer).await?;
        if doc.get("issuer").and_then(Value::as_str) != Some(issuer) {
            return Err(UpstreamError::Metadata(format!(
                "its discovery document does not name the issuer {issuer:?} (OpenID Connect \
                 Discovery §4.3)"
            )));
        }
        let uri = doc
            .get("jwks_uri")
            .and_then(Value::as_str)
            .filter(|u| secure_url(u))
            .ok_or_else(|| {
                UpstreamError::Metadata("its discovery document has no https jwks_uri".into())
            })?
            .to_owned();
        self.jwks_uris.lock().unwrap().insert(
            issuer.to_owned(),
            Cached {
                value: uri.clone(),
                until: Instant::now() + ttl,
            },
        );
        Ok(uri)
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
    pub(crate) async fn key(
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
        issuer: &str,
        meta: &ProviderMetadata,
        grant: &CodeGrant<'_>,
        nonce: &str,
    ) -> Result<Identity, UpstreamError> {
        let body = self
            .token_request(idp, &meta.token_endpoint, meta.token_auth(), grant)
            .await?;
        let tokens = UpstreamTokens::from_response(&body, crate::secrets::now(), None);
        let id_token = body
            .id_token
            .ok_or_else(|| UpstreamError::Token("the answer has no id_token".into()))?;
        let mut claims = self
            .check_id_token(idp, issuer, meta, &id_token, nonce)
            .await?;
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or(UpstreamError::IdToken("no sub"))?
            .to_owned();
        if !claims.contains_key("email")
            && let (Some(endpoint), Some(at)) = (&meta.userinfo_endpoint, &body.access_token)
        {
            let info: Map<String, Value> = self.user_json(endpoint, at).await?;
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
        Ok(Identity {
            sub,
            claims,
            tokens,
        })
    }

    /// OIDC Core §3.1.3.7 (SPEC F6): an asymmetric signature by the provider's key with an
    /// advertised algorithm, `iss` exact, `aud` holding our client id (and `azp` ours when
    /// there are several audiences), `exp` and `iat` within [`LEEWAY`], `nonce` ours.
    async fn check_id_token(
        &self,
        idp: &IdentityProvider,
        issuer: &str,
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
        v.set_issuer(&[issuer]);
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
    fn f6_only_asymmetric_algorithms() {
        assert!(asymmetric(Algorithm::ES256));
        assert!(asymmetric(Algorithm::RS256));
        assert!(asymmetric(Algorithm::EdDSA));
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            assert!(!asymmetric(alg));
        }
    }
}
