//! The JWK set of one issuer: located through its RFC 8414 / OpenID metadata (`jwks_uri`) or
//! given explicitly, cached, refetched when a token names an unknown `kid` (at most once per
//! interval) and when it grows old. Each key carries the algorithms its JWK allows (from `kty`,
//! `crv` and `alg`), never more: the token header only picks among them.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use mcpauth_core::jose::{JwkParams, JwsAlgorithm, signature_algorithms};
use mcpauth_core::well_known::authorization_server_urls;
use mcpauth_core::{AuthorizationServerMetadata, CoreError};
use serde_json::Value;

use crate::ResourceError;
use crate::fetch::{check_url, read_json};

/// Largest JWK set or metadata document accepted.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// A verification key and the validation rules that go with it.
pub(crate) struct VerifyKey {
    pub(crate) kid: Option<String>,
    pub(crate) algorithms: Vec<Algorithm>,
    pub(crate) key: DecodingKey,
    /// Algorithms, issuer, audiences, leeway and required claims, ready to use.
    pub(crate) validation: Validation,
}

/// The algorithms a JWK may verify: the shared rule of [`mcpauth_core::jose`] (RFC 7517 §4,
/// RFC 7518 §3.1) over every asymmetric signature algorithm. Symmetric (`oct`) keys and
/// encryption keys are refused; an `alg` member must agree with the key type.
pub(crate) fn algorithms_for(jwk: &Jwk) -> Result<Vec<Algorithm>, String> {
    let json = serde_json::to_value(jwk).map_err(|e| e.to_string())?;
    let algs = signature_algorithms(&JwkParams::from_json(&json), &JwsAlgorithm::ALL)
        .map_err(|e| e.to_string())?;
    algs.iter()
        .map(|a| a.as_str().parse::<Algorithm>().map_err(|e| e.to_string()))
        .collect()
}

/// The keys of one fetch.
#[derive(Default)]
struct KeySet {
    keys: Vec<Arc<VerifyKey>>,
    /// When the keys were fetched successfully.
    fetched_at: Option<Instant>,
    /// When a fetch was last tried (successful or not).
    attempted_at: Option<Instant>,
}

/// How often keys are refetched.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RefetchPolicy {
    /// At most one refetch per interval for unknown key ids.
    pub(crate) min_interval: Duration,
    /// Keys older than this are refetched on the next request.
    pub(crate) max_age: Duration,
}

/// Where the JWK set is.
enum Location {
    /// Fixed URL.
    Url(String),
    /// `jwks_uri` of the issuer's metadata, discovered on the first fetch.
    Discover(tokio::sync::OnceCell<String>),
}

/// The cached keys of one issuer.
pub(crate) struct IssuerKeys {
    pub(crate) issuer: String,
    /// The `iss` values accepted: the issuer, and its trailing-slash variant when configured.
    accepted: Vec<String>,
    location: Location,
    state: RwLock<Arc<KeySet>>,
    refetch: tokio::sync::Mutex<()>,
    base: Validation,
    policy: RefetchPolicy,
    http: reqwest::Client,
}

/// What the key lookup found.
pub(crate) enum Lookup {
    /// Keys that may verify the token (by `kid`, or every key allowing the algorithm).
    Keys(Vec<Arc<VerifyKey>>),
    /// A key with that `kid` exists but does not allow the header's `alg`.
    AlgMismatch,
    /// No such key, even after a refetch (or a refetch was not allowed yet).
    Unknown,
}

impl IssuerKeys {
    /// Keys of `issuer`, from `jwks_url` or discovered; `base` is the validation template.
    /// With `slash_variant`, `iss` (and the metadata `issuer`) may also be the issuer with one
    /// trailing slash added or removed.
    pub(crate) fn new(
        issuer: String,
        jwks_url: Option<String>,
        slash_variant: bool,
        base: Validation,
        policy: RefetchPolicy,
        http: reqwest::Client,
    ) -> Result<Self, ResourceError> {
        check_url(&issuer, "issuer")?;
        let location = match jwks_url {
            Some(u) => {
                check_url(&u, "JWK set URL")?;
                Location::Url(u)
            }
            None => Location::Discover(tokio::sync::OnceCell::new()),
        };
        let mut accepted = vec![issuer.clone()];
        if slash_variant {
            accepted.push(match issuer.strip_suffix('/') {
                Some(bare) => bare.to_owned(),
                None => format!("{issuer}/"),
            });
        }
        let mut base = base;
        base.set_issuer(&accepted);
        Ok(Self {
            issuer,
            accepted,
            location,
            state: RwLock::new(Arc::new(KeySet::default())),
            refetch: tokio::sync::Mutex::new(()),
            base,
            policy,
            http,
        })
    }

    /// Whether a token's `iss` names this issuer (byte for byte, or the configured variant).
    pub(crate) fn accepts(&self, iss: &str) -> bool {
        self.accepted.iter().any(|a| a == iss)
    }

    fn snapshot(&self) -> Arc<KeySet> {
        self.state.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn find(set: &KeySet, kid: Option<&str>, alg: Algorithm) -> Lookup {
        match kid {
            Some(kid) => match set.keys.iter().find(|k| k.kid.as_deref() == Some(kid)) {
                Some(k) if k.algorithms.contains(&alg) => Lookup::Keys(vec![k.clone()]),
                Some(_) => Lookup::AlgMismatch,
                None => Lookup::Unknown,
            },
            None => {
                let keys: Vec<_> = set
                    .keys
                    .iter()
                    .filter(|k| k.algorithms.contains(&alg))
                    .cloned()
                    .collect();
                if keys.is_empty() {
                    Lookup::Unknown
                } else {
                    Lookup::Keys(keys)
                }
            }
        }
    }

    /// The keys that may verify a token with header `kid` and `alg`, refetching the set when it
    /// was never fetched, is too old, or lacks the key (at most once per interval).
    pub(crate) async fn lookup(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Lookup, ResourceError> {
        let mut set = self.snapshot();
        let now = Instant::now();
        match set.fetched_at {
            None => {
                self.refetch(true).await?;
                set = self.snapshot();
                if set.fetched_at.is_none() {
                    return Err(ResourceError::unavailable(
                        format!("the JWK set of {}", self.issuer),
                        "the last fetch failed",
                    ));
                }
            }
            Some(t) if now.duration_since(t) > self.policy.max_age => {
                // Old keys: refetch, but keep using them if that fails.
                if let Err(e) = self.refetch(false).await {
                    tracing::warn!(issuer = %self.issuer, error = %e, "refreshing the JWK set failed; using the cached keys");
                }
                set = self.snapshot();
            }
            Some(_) => {}
        }
        match Self::find(&set, kid, alg) {
            Lookup::Unknown => {
                // A key rotation at the issuer: refetch, at most once per interval.
                self.refetch(false).await?;
                Ok(Self::find(&self.snapshot(), kid, alg))
            }
            found => Ok(found),
        }
    }

    /// Fetches the key set now (`force`), or unless a fetch was tried within the interval.
    /// Concurrent callers wait for one fetch.
    pub(crate) async fn refetch(&self, force: bool) -> Result<(), ResourceError> {
        let before = self.snapshot().attempted_at;
        let _guard = self.refetch.lock().await;
        let current = self.snapshot();
        if current.attempted_at != before {
            return Ok(()); // another request fetched while this one waited
        }
        if !force
            && current
                .attempted_at
                .is_some_and(|t| t.elapsed() < self.policy.min_interval)
        {
            return Ok(());
        }
        let result = self.fetch_keys().await;
        let now = Instant::now();
        let next = match &result {
            Ok(keys) => KeySet {
                keys: keys.clone(),
                fetched_at: Some(now),
                attempted_at: Some(now),
            },
            Err(_) => KeySet {
                keys: current.keys.clone(),
                fetched_at: current.fetched_at,
                attempted_at: Some(now),
            },
        };
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
        result.map(drop)
    }

    async fn jwks_url(&self) -> Result<String, ResourceError> {
        match &self.location {
            Location::Url(u) => Ok(u.clone()),
            Location::Discover(cell) => cell
                .get_or_try_init(|| discover_jwks_uri(&self.http, &self.issuer, &self.accepted))
                .await
                .cloned(),
        }
    }

    async fn fetch_keys(&self) -> Result<Vec<Arc<VerifyKey>>, ResourceError> {
        let url = self.jwks_url().await?;
        let what = format!("the JWK set {url}");
        let resp = self
            .http
            .get(&url)
            .header(
                http::header::ACCEPT,
                "application/json, application/jwk-set+json",
            )
            .send()
            .await
            .map_err(|e| ResourceError::unavailable(&what, e))?;
        let doc: Value = read_json(resp, MAX_DOCUMENT_BYTES, &what).await?;
        let keys = self
            .keys_of(&doc)
            .map_err(|reason| ResourceError::unavailable(&what, reason))?;
        tracing::debug!(issuer = %self.issuer, keys = keys.len(), "fetched the JWK set");
        Ok(keys)
    }

    /// The usable keys of a JWK set document (RFC 7517 §5), each with this issuer's validation
    /// rules; keys that cannot be used (see [`algorithms_for`]) are skipped. An error if the
    /// document has no `keys` array.
    pub(crate) fn keys_of(&self, doc: &Value) -> Result<Vec<Arc<VerifyKey>>, &'static str> {
        let keys = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("no `keys` array")?;
        let mut out = Vec::new();
        for k in keys {
            let parsed = serde_json::from_value::<Jwk>(k.clone())
                .map_err(|e| e.to_string())
                .and_then(|jwk| {
                    let algorithms = algorithms_for(&jwk)?;
                    let key = DecodingKey::from_jwk(&jwk).map_err(|e| e.to_string())?;
                    let mut validation = self.base.clone();
                    validation.algorithms = algorithms.clone();
                    Ok(VerifyKey {
                        kid: jwk.common.key_id.clone(),
                        algorithms,
                        key,
                        validation,
                    })
                });
            match parsed {
                Ok(k) => out.push(Arc::new(k)),
                Err(reason) => {
                    tracing::debug!(issuer = %self.issuer, %reason, "skipping a JWK");
                }
            }
        }
        Ok(out)
    }

    /// Uses `keys` as if they had just been fetched (for the fuzz targets, which must not touch
    /// the network): no refetch happens before the refetch policy's interval and maximum age.
    pub(crate) fn preload(&self, keys: Vec<Arc<VerifyKey>>) {
        let now = Instant::now();
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(KeySet {
            keys,
            fetched_at: Some(now),
            attempted_at: Some(now),
        });
    }
}

/// The `jwks_uri` of `issuer`, from its RFC 8414 or OpenID metadata (tried in the order of
/// MCP SPEC C5), whose `issuer` must be identical (RFC 8414 §3.3) to one of `accepted` (the
/// issuer, and its trailing-slash variant only when configured).
async fn discover_jwks_uri(
    http: &reqwest::Client,
    issuer: &str,
    accepted: &[String],
) -> Result<String, ResourceError> {
    let what = format!("the metadata of {issuer}");
    let urls = authorization_server_urls(issuer).map_err(ResourceError::config)?;
    let mut last = String::from("no metadata document found");
    for (url, _) in urls {
        let resp = match http
            .get(&url)
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => r,
            Ok(r) => {
                last = format!("{url}: HTTP status {}", r.status());
                continue;
            }
            Err(e) => {
                last = format!("{url}: {e}");
                continue;
            }
        };
        let body: Value = match read_json(resp, MAX_DOCUMENT_BYTES, &url).await {
            Ok(b) => b,
            Err(e) => {
                last = e.to_string();
                continue;
            }
        };
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let meta = match AuthorizationServerMetadata::from_json_for_issuer(&bytes, issuer) {
            Err(CoreError::IssuerMismatch { found, .. }) if accepted.contains(&found) => {
                AuthorizationServerMetadata::from_json_for_issuer(&bytes, &found)
            }
            other => other,
        }
        .map_err(|e| ResourceError::unavailable(&what, e))?;
        let jwks_uri = meta
            .jwks_uri
            .ok_or_else(|| ResourceError::unavailable(&what, "the metadata has no jwks_uri"))?;
        check_url(&jwks_uri, "jwks_uri").map_err(|e| ResourceError::unavailable(&what, e))?;
        return Ok(jwks_uri);
    }
    Err(ResourceError::unavailable(what, last))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn jwk(v: Value) -> Jwk {
        serde_json::from_value(v).unwrap()
    }

    const X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
    const Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";

    #[test]
    fn algorithms_come_from_the_key() {
        let ec = json!({"kty": "EC", "crv": "P-256", "x": X, "y": Y});
        assert_eq!(
            algorithms_for(&jwk(ec.clone())).unwrap(),
            [Algorithm::ES256]
        );
        let mut with_alg = ec.clone();
        with_alg["alg"] = json!("RS256");
        assert!(algorithms_for(&jwk(with_alg)).is_err());
        let mut enc = ec;
        enc["use"] = json!("enc");
        assert!(algorithms_for(&jwk(enc)).is_err());
        let oct = json!({"kty": "oct", "k": "c2VjcmV0"});
        assert!(algorithms_for(&jwk(oct)).is_err());
        let ed = json!({"kty": "OKP", "crv": "Ed25519", "x": X, "alg": "EdDSA"});
        assert_eq!(algorithms_for(&jwk(ed)).unwrap(), [Algorithm::EdDSA]);
    }
}
