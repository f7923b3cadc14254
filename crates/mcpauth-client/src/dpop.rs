//! DPoP on the client side (RFC 9449, SPEC D1-D3): whether an authorization server takes proofs,
//! the key kept with the tokens, proofs for token and MCP requests, and the server nonces.
//!
//! - [`supported`]: the AS metadata lists `ES256` in `dpop_signing_alg_values_supported`.
//! - [`resource_takes_dpop`]: the resource said it takes proofs (a `DPoP` challenge or its
//!   metadata); a resource that says nothing of DPoP gets Bearer tokens, which it surely knows.
//! - [`Prover`]: a key and the session's [`Nonces`]; every proof has a fresh `jti` (D1).
//! - [`Nonces`]: the newest `DPoP-Nonce` of each origin, AS and RS alike (D2).

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mcpauth_core::dpop::{DpopKey, MAX_NONCE_BYTES};
use mcpauth_core::www_authenticate::BearerChallenge;
use mcpauth_core::www_authenticate::parse;
use mcpauth_core::{
    AccessToken, AuthorizationServerMetadata, DpopPrivateKey, ProtectedResourceMetadata,
};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, WWW_AUTHENTICATE};

use crate::ClientError;
use crate::store::TokenRecord;

/// The request header carrying a proof (RFC 9449 §4.1).
pub const DPOP: &str = "DPoP";
/// The response header carrying a server nonce (RFC 9449 §8.1).
pub const DPOP_NONCE: &str = "DPoP-Nonce";
/// The `token_type` of a DPoP-bound access token, and the authorization scheme (RFC 9449 §5, §7.1).
pub const TOKEN_TYPE: &str = "DPoP";
/// The error that asks for a proof with the server's nonce (RFC 9449 §8, §9).
pub const USE_DPOP_NONCE: &str = "use_dpop_nonce";
/// The error of a refused proof (RFC 9449 §5, §7.1).
pub const INVALID_DPOP_PROOF: &str = "invalid_dpop_proof";
/// Origins whose nonce is remembered; past this the oldest entries are dropped (a bound).
const MAX_ORIGINS: usize = 64;

/// Whether the authorization server takes proofs this client can make: `ES256` is in its
/// `dpop_signing_alg_values_supported` (RFC 9449 §5.1).
pub fn supported(metadata: &AuthorizationServerMetadata) -> bool {
    metadata
        .extra
        .get("dpop_signing_alg_values_supported")
        .and_then(|v| v.as_array())
        .is_some_and(|algs| algs.iter().any(|a| a.as_str() == Some("ES256")))
}

/// Whether the resource said it takes DPoP proofs with ES256 (RFC 9449 §7.1, RFC 9728 §2): a
/// `DPoP` challenge (without `algs`, or with `ES256` in them), or protected resource metadata
/// with `ES256` in `dpop_signing_alg_values_supported` or `dpop_bound_access_tokens_required`.
/// A resource that says none of this may know only Bearer and refuse the `DPoP` scheme (the
/// TypeScript SDK's `requireBearerAuth` does), so its tokens are not bound.
pub fn resource_takes_dpop(
    prm: Option<&ProtectedResourceMetadata>,
    challenge: Option<&BearerChallenge>,
) -> bool {
    let es256 = |algs: &[String]| algs.iter().any(|a| a == "ES256");
    let challenged = challenge
        .and_then(|c| c.dpop_algs.as_deref())
        .is_some_and(|algs| algs.is_empty() || es256(algs));
    let advertised = prm.is_some_and(|p| {
        let algs = p.extra.get("dpop_signing_alg_values_supported");
        algs.and_then(|v| v.as_array())
            .is_some_and(|a| a.iter().any(|a| a.as_str() == Some("ES256")))
    }) || resource_requires_dpop(prm);
    challenged || advertised
}

/// Whether the resource demands DPoP-bound tokens: `dpop_bound_access_tokens_required: true`
/// in its protected resource metadata (RFC 9728 §2). A Bearer token can never work there.
pub fn resource_requires_dpop(prm: Option<&ProtectedResourceMetadata>) -> bool {
    prm.and_then(|p| p.extra.get("dpop_bound_access_tokens_required"))
        .and_then(|v| v.as_bool())
        == Some(true)
}

/// Why a client with DPoP `enabled` cannot bind tokens for a resource that demands them
/// ([`resource_requires_dpop`]), or `None` when it can (SPEC D1).
pub fn cannot_bind(enabled: bool, metadata: &AuthorizationServerMetadata) -> Option<String> {
    if !enabled {
        Some("DPoP is turned off here (--no-dpop, or `dpop = false`): turn it on".into())
    } else if !supported(metadata) {
        Some(format!(
            "its authorization server {} does not offer DPoP with ES256 \
             (dpop_signing_alg_values_supported): ask its operator",
            metadata
                .issuer
                .chars()
                .filter(|c| !c.is_control())
                .collect::<String>()
        ))
    } else {
        None
    }
}

/// A new key for new tokens when DPoP is `enabled`, the authorization server is [`supported`]
/// and the resource takes proofs (`resource`, see [`resource_takes_dpop`]) (SPEC D1).
pub fn new_key(
    enabled: bool,
    metadata: &AuthorizationServerMetadata,
    resource: bool,
) -> Result<Option<DpopKey>, ClientError> {
    if !enabled || !resource || !supported(metadata) {
        return Ok(None);
    }
    Ok(Some(DpopKey::generate()?))
}

/// The headers that present `token` on a `method` request to `url`: `Authorization: DPoP` and
/// a fresh proof with `ath` and the origin's nonce when `record` holds `token` as a DPoP token
/// (RFC 9449 §7.1, SPEC D1), else `Authorization: Bearer` (D3: the issued `token_type` rules).
pub fn credential_headers(
    record: Option<&TokenRecord>,
    token: &AccessToken,
    method: &str,
    url: &str,
    nonces: &Nonces,
) -> Result<Vec<(&'static str, String)>, ClientError> {
    let bound = record
        .filter(|r| r.access_token == *token && r.token_type.eq_ignore_ascii_case(TOKEN_TYPE));
    let Some(record) = bound else {
        return Ok(vec![(
            "Authorization",
            format!("Bearer {}", token.expose()),
        )]);
    };
    let stored = record.dpop_key.as_ref().ok_or_else(|| {
        ClientError::Config(
            "the stored DPoP token has no key to prove possession with; log in again".into(),
        )
    })?;
    let key = load_key(stored)?;
    let proof = Prover { key: &key, nonces }.proof(method, url, Some(token.expose()))?;
    Ok(vec![
        ("Authorization", format!("{TOKEN_TYPE} {}", token.expose())),
        (DPOP, proof),
    ])
}

/// A key as stored: base64url PKCS#8 DER.
pub fn store_key(key: &DpopKey) -> Result<DpopPrivateKey, ClientError> {
    Ok(DpopPrivateKey::new(URL_SAFE_NO_PAD.encode(key.to_pkcs8()?)))
}

/// A stored key.
pub fn load_key(stored: &DpopPrivateKey) -> Result<DpopKey, ClientError> {
    let der = URL_SAFE_NO_PAD.decode(stored.expose()).map_err(|_| {
        ClientError::Dpop(mcpauth_core::dpop::DpopError::Signing(
            "stored key is not base64url",
        ))
    })?;
    Ok(DpopKey::from_pkcs8(&der)?)
}

/// Whether `nonce` can be a DPoP nonce: non-empty visible ASCII (RFC 9449 §8.1 `nonce` syntax),
/// at most [`MAX_NONCE_BYTES`].
pub fn valid_nonce(nonce: &str) -> bool {
    !nonce.is_empty()
        && nonce.len() <= MAX_NONCE_BYTES
        && nonce.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

/// The newest nonce of each origin (RFC 9449 §8.2, §9: a new one replaces the old; SPEC D2).
#[derive(Debug, Default)]
pub struct Nonces {
    by_origin: Mutex<HashMap<String, (u64, String)>>,
}

impl Nonces {
    /// The nonce to put in a proof for `url`, if its origin gave one.
    pub fn get(&self, url: &str) -> Option<String> {
        let origin = origin(url)?;
        let map = self.by_origin.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&origin).map(|(_, n)| n.clone())
    }

    /// Remembers the `DPoP-Nonce` of a response from `url`; `true` when there was a usable one.
    pub fn remember(&self, url: &str, headers: &HeaderMap) -> bool {
        headers
            .get(DPOP_NONCE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|nonce| self.set(url, nonce))
    }

    /// Takes `nonce` as the newest of `url`'s origin (one a server handed out, e.g. read from its
    /// `DPoP-Nonce` header by a script); `false` when it is not a valid nonce ([`valid_nonce`])
    /// or `url` has no origin.
    pub fn set(&self, url: &str, nonce: &str) -> bool {
        if !valid_nonce(nonce) {
            return false;
        }
        let Some(origin) = origin(url) else {
            return false;
        };
        let mut map = self.by_origin.lock().unwrap_or_else(|p| p.into_inner());
        let next = map.values().map(|(n, _)| *n).max().unwrap_or_default() + 1;
        map.insert(origin, (next, nonce.to_owned()));
        if map.len() > MAX_ORIGINS
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, (n, _))| *n)
                .map(|(o, _)| o.clone())
        {
            map.remove(&oldest);
        }
        true
    }
}

fn origin(url: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    let origin = u.origin();
    origin.is_tuple().then(|| origin.ascii_serialization())
}

/// Signs proofs with one key, using the session's nonces.
#[derive(Clone, Copy, Debug)]
pub struct Prover<'a> {
    /// The key the tokens are (to be) bound to.
    pub key: &'a DpopKey,
    /// The nonces of the servers.
    pub nonces: &'a Nonces,
}

impl Prover<'_> {
    /// A proof for `method` on `url` (SPEC D1), with `ath` when an access token goes along and
    /// the origin's nonce when it gave one (D2).
    pub fn proof(
        &self,
        method: &str,
        url: &str,
        access_token: Option<&str>,
    ) -> Result<String, ClientError> {
        let nonce = self.nonces.get(url);
        Ok(self
            .key
            .proof(method, url, access_token, nonce.as_deref())?)
    }
}

/// Whether a resource server's answer asks for a proof with its nonce: 401 with
/// `WWW-Authenticate: DPoP error="use_dpop_nonce"` (RFC 9449 §9).
pub fn resource_wants_nonce(status: StatusCode, headers: &HeaderMap) -> bool {
    status == StatusCode::UNAUTHORIZED
        && headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| parse(v).ok())
            .flatten()
            .any(|c| c.is_scheme(TOKEN_TYPE) && c.param("error") == Some(USE_DPOP_NONCE))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_nonce(n: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(DPOP_NONCE, n.parse().unwrap());
        h
    }

    #[test]
    fn d2_nonces_are_kept_per_origin_and_the_newest_wins() {
        let nonces = Nonces::default();
        assert!(nonces.remember("https://as.example/token", &with_nonce("n1")));
        assert!(nonces.remember("https://rs.example/mcp", &with_nonce("r1")));
        assert!(nonces.remember("https://as.example/other", &with_nonce("n2")));
        assert_eq!(
            nonces.get("https://as.example/token").as_deref(),
            Some("n2")
        );
        assert_eq!(nonces.get("https://rs.example/x").as_deref(), Some("r1"));
        assert_eq!(nonces.get("https://rs.example:8443/mcp"), None);
    }

    #[test]
    fn d2_unusable_nonces_are_ignored() {
        let nonces = Nonces::default();
        assert!(!nonces.remember("https://as.example/token", &HeaderMap::new()));
        assert!(!nonces.remember("https://as.example/token", &with_nonce("a b")));
        let long = "n".repeat(MAX_NONCE_BYTES + 1);
        assert!(!nonces.remember("https://as.example/token", &with_nonce(&long)));
        assert_eq!(nonces.get("https://as.example/token"), None);
    }

    #[test]
    fn d2_the_origin_table_is_bounded() {
        let nonces = Nonces::default();
        for i in 0..MAX_ORIGINS + 5 {
            nonces.remember(&format!("https://h{i}.example/"), &with_nonce("n"));
        }
        assert_eq!(nonces.get("https://h0.example/"), None);
        let last = format!("https://h{}.example/", MAX_ORIGINS + 4);
        assert_eq!(nonces.get(&last).as_deref(), Some("n"));
    }

    #[test]
    fn d3_a_stored_key_round_trips_and_debug_hides_it() {
        let key = DpopKey::generate().unwrap();
        let stored = store_key(&key).unwrap();
        assert!(!format!("{stored:?}").contains(stored.expose()));
        assert_eq!(load_key(&stored).unwrap().thumbprint(), key.thumbprint());
        let err = load_key(&DpopPrivateKey::new("!!")).unwrap_err();
        assert!(err.to_string().contains("base64url"), "{err}");
    }

    #[test]
    fn d1_only_es256_in_the_metadata_turns_dpop_on() {
        let meta = |algs: serde_json::Value| {
            AuthorizationServerMetadata::from_json_located_by_origin(
                serde_json::json!({"issuer": "https://as.example", "dpop_signing_alg_values_supported": algs})
                    .to_string()
                    .as_bytes(),
            )
            .unwrap()
        };
        assert!(supported(&meta(serde_json::json!(["EdDSA", "ES256"]))));
        assert!(!supported(&meta(serde_json::json!(["RS256"]))));
        assert!(!supported(&meta(serde_json::json!("ES256"))));
    }

    fn record(token_type: &str, key: Option<DpopPrivateKey>) -> TokenRecord {
        TokenRecord {
            schema: crate::store::SCHEMA_VERSION,
            key: crate::store::StoreKey {
                resource: "https://rs.example/mcp".into(),
                issuer: "https://as.example".into(),
                client_id: "c".into(),
            },
            access_token: AccessToken::new("at"),
            token_type: token_type.into(),
            dpop_key: key,
            refresh_token: None,
            expires_at: None,
            granted_scopes: Default::default(),
            requested_scopes: Default::default(),
            updated_at: 0,
        }
    }

    #[test]
    fn d1_d3_credential_headers_follow_the_token_type() {
        let nonces = Nonces::default();
        let url = "https://rs.example/mcp";
        let at = AccessToken::new("at");
        let bearer = credential_headers(Some(&record("Bearer", None)), &at, "POST", url, &nonces);
        assert_eq!(bearer.unwrap(), [("Authorization", "Bearer at".to_owned())]);
        let other = AccessToken::new("other");
        let unknown = credential_headers(None, &other, "POST", url, &nonces).unwrap();
        assert_eq!(unknown, [("Authorization", "Bearer other".to_owned())]);

        let key = DpopKey::generate().unwrap();
        let bound = record("DPoP", Some(store_key(&key).unwrap()));
        nonces.remember(url, &with_nonce("n-1"));
        let headers = credential_headers(Some(&bound), &at, "POST", url, &nonces).unwrap();
        assert_eq!(headers[0], ("Authorization", "DPoP at".to_owned()));
        assert_eq!(headers[1].0, DPOP);
        let check = mcpauth_core::dpop::ProofCheck::new("POST", url, 0).with_access_token("at");
        let iat = mcpauth_core::dpop::unverified_iat(&headers[1].1).unwrap();
        let ok = mcpauth_core::dpop::check_proof(&[&headers[1].1], &check.at(iat)).unwrap();
        assert_eq!(ok.jkt, key.thumbprint());
        let claims = URL_SAFE_NO_PAD
            .decode(headers[1].1.split('.').nth(1).unwrap())
            .unwrap();
        let claims: serde_json::Value = serde_json::from_slice(&claims).unwrap();
        assert_eq!(claims["nonce"], "n-1");

        let keyless = record("DPoP", None);
        let err = credential_headers(Some(&keyless), &at, "POST", url, &nonces).unwrap_err();
        assert!(err.to_string().contains("log in again"), "{err}");
    }

    #[test]
    fn d2_resource_nonce_challenges_are_recognised() {
        let mut h = HeaderMap::new();
        h.insert(
            WWW_AUTHENTICATE,
            r#"DPoP error="use_dpop_nonce", algs="ES256""#.parse().unwrap(),
        );
        assert!(resource_wants_nonce(StatusCode::UNAUTHORIZED, &h));
        assert!(!resource_wants_nonce(StatusCode::FORBIDDEN, &h));
        h.insert(
            WWW_AUTHENTICATE,
            r#"Bearer error="use_dpop_nonce""#.parse().unwrap(),
        );
        assert!(!resource_wants_nonce(StatusCode::UNAUTHORIZED, &h));
    }
}
