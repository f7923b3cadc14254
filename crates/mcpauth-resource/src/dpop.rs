//! DPoP at the resource server (RFC 9449 §7, SPEC D4-D5): the policy, the proof `jti` replay
//! cache, and the check of a `DPoP`-scheme request against its token's `cnf.jkt`. The proof
//! checks themselves are [`mcpauth_core::dpop::check_proof`].

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use http::HeaderMap;
use mcpauth_core::dpop::{self, DEFAULT_IAT_WINDOW, DpopError, NonceIssuer, ProofCheck, unix_now};
use mcpauth_core::jose::JwsAlgorithm;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{Principal, ResourceError};

/// The response header carrying a server nonce (RFC 9449 §9).
const DPOP_NONCE: &str = "dpop-nonce";

/// Which tokens need a DPoP proof.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DpopPolicy {
    /// DPoP-bound tokens (with `cnf.jkt`) need the `DPoP` scheme and a proof; bearer tokens
    /// pass as `Bearer` (RFC 9449 §7.2). The default.
    #[default]
    Allow,
    /// Every request needs the `DPoP` scheme, a DPoP-bound token and a proof (SPEC D5).
    Require,
}

/// The future a [`ReplayCache`] returns.
pub type ReplayFuture<'a> = Pin<Box<dyn Future<Output = Result<bool, ResourceError>> + Send + 'a>>;

/// Remembers the proofs seen (RFC 9449 §11.1, SPEC D4): a proof is used at most once within
/// the `iat` window. Several instances of one resource share one cache to refuse a proof
/// replayed at another instance (SPEC D7).
pub trait ReplayCache: Send + Sync + 'static {
    /// Records `key` (a hash of the proof's key and `jti`) until `expires_at` (Unix seconds):
    /// `Ok(true)` the first time, `Ok(false)` when it was seen before. `Err` when the cache
    /// cannot answer (the request is refused with 503, never let through).
    fn first_use(&self, key: [u8; 32], expires_at: i64) -> ReplayFuture<'_>;
}

/// An in-process [`ReplayCache`] holding at most `capacity` proofs. When every slot holds a
/// proof still inside its window, new proofs are refused (503) rather than an old one
/// forgotten, which would let it be replayed.
#[derive(Debug)]
pub struct MemoryReplayCache {
    capacity: usize,
    inner: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    by_key: HashMap<[u8; 32], i64>,
    /// Keys by expiry, to drop the expired ones first.
    by_expiry: BTreeMap<(i64, [u8; 32]), ()>,
}

/// How many proofs [`MemoryReplayCache::default`] remembers.
pub const DEFAULT_REPLAY_CAPACITY: usize = 1 << 18;

impl Default for MemoryReplayCache {
    fn default() -> Self {
        Self::new(DEFAULT_REPLAY_CAPACITY)
    }
}

impl MemoryReplayCache {
    /// A cache of at most `capacity` proofs (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::default(),
        }
    }

    fn record(&self, key: [u8; 32], expires_at: i64, now: i64) -> Result<bool, ResourceError> {
        let mut seen = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        while let Some((&(exp, k), ())) = seen.by_expiry.first_key_value() {
            if exp > now {
                break;
            }
            seen.by_expiry.remove(&(exp, k));
            seen.by_key.remove(&k);
        }
        if seen.by_key.contains_key(&key) {
            return Ok(false);
        }
        if seen.by_key.len() >= self.capacity {
            return Err(ResourceError::unavailable(
                "the DPoP replay cache",
                format!("it holds {} unexpired proofs", self.capacity),
            ));
        }
        seen.by_key.insert(key, expires_at);
        seen.by_expiry.insert((expires_at, key), ());
        Ok(true)
    }
}

impl ReplayCache for MemoryReplayCache {
    fn first_use(&self, key: [u8; 32], expires_at: i64) -> ReplayFuture<'_> {
        let result = self.record(key, expires_at, unix_now());
        Box::pin(async move { result })
    }
}

/// DPoP settings of a [`BearerAuthLayer`](crate::BearerAuthLayer).
#[derive(Clone)]
pub struct DpopConfig {
    pub(crate) policy: DpopPolicy,
    pub(crate) algorithms: Vec<JwsAlgorithm>,
    pub(crate) replay: Arc<dyn ReplayCache>,
    pub(crate) iat_window: i64,
    pub(crate) nonces: Option<Arc<NonceIssuer>>,
}

impl std::fmt::Debug for DpopConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopConfig")
            .field("policy", &self.policy)
            .field("algorithms", &self.algorithms)
            .field("iat_window", &self.iat_window)
            .field("nonces", &self.nonces.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for DpopConfig {
    fn default() -> Self {
        Self::new(DpopPolicy::Allow)
    }
}

impl DpopConfig {
    /// `policy` with every asymmetric algorithm, a [`MemoryReplayCache`] and an `iat` window
    /// of ±5 minutes.
    pub fn new(policy: DpopPolicy) -> Self {
        Self {
            policy,
            algorithms: JwsAlgorithm::ALL.to_vec(),
            replay: Arc::new(MemoryReplayCache::default()),
            iat_window: DEFAULT_IAT_WINDOW,
            nonces: None,
        }
    }

    /// Proofs must carry a nonce from `issuer` (RFC 9449 §9, SPEC D7): a proof without one, or
    /// with a stale one, is answered 401 `use_dpop_nonce` with a fresh `DPoP-Nonce`, and every
    /// response carries the current nonce. Instances sharing the issuer's secret accept each
    /// other's nonces.
    pub fn nonces(mut self, issuer: NonceIssuer) -> Self {
        self.nonces = Some(Arc::new(issuer));
        self
    }

    /// Whether proofs must carry a server nonce.
    pub fn requires_nonce(&self) -> bool {
        self.nonces.is_some()
    }

    /// Adds the current nonce to `headers` when nonces are on (RFC 9449 §9).
    pub(crate) fn add_nonce(&self, headers: &mut HeaderMap) {
        if let Some(n) = &self.nonces
            && let Ok(v) = http::HeaderValue::from_str(&n.current(unix_now()))
        {
            headers.insert(DPOP_NONCE, v);
        }
    }

    /// The proof algorithms accepted (advertised as `algs` in challenges).
    pub fn algorithms(mut self, algs: impl IntoIterator<Item = JwsAlgorithm>) -> Self {
        self.algorithms = algs.into_iter().collect();
        self
    }

    /// A replay cache shared by several instances.
    pub fn replay_cache(mut self, cache: impl ReplayCache) -> Self {
        self.replay = Arc::new(cache);
        self
    }

    /// The policy.
    pub fn policy(&self) -> DpopPolicy {
        self.policy
    }

    /// The `algs` challenge parameter (RFC 9449 §7.1).
    pub(crate) fn algs_param(&self) -> String {
        self.algorithms
            .iter()
            .map(|a| a.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Checks the request's proof for `token` (RFC 9449 §4.3, §7.1): `Err` with the refusal.
    pub(crate) async fn check(
        &self,
        headers: &HeaderMap,
        method: &str,
        url: &str,
        token: &str,
        principal: &Principal,
    ) -> Result<(), Refusal> {
        let Some(jkt) = bound_key(principal) else {
            return Err(Refusal::Token(
                "the token is not DPoP-bound (no cnf.jkt): send it with the Bearer scheme",
            ));
        };
        let mut values = Vec::new();
        for v in headers.get_all("dpop") {
            values.push(
                v.to_str()
                    .map_err(|_| Refusal::Proof(DpopError::Malformed("not ASCII")))?,
            );
        }
        let now = unix_now();
        let accepted = self.nonces.as_ref().map(|n| n.accepted(now));
        let accepted: Vec<&str> = accepted.iter().flatten().map(String::as_str).collect();
        let mut check = ProofCheck::new(method, url, now).with_access_token(token);
        check.algorithms = &self.algorithms;
        check.iat_window = self.iat_window;
        check.nonces = &accepted;
        let proof = dpop::check_proof(&values, &check).map_err(Refusal::Proof)?;
        if !dpop::thumbprint_matches(&proof.jkt, jkt) {
            return Err(Refusal::Proof(DpopError::Key(
                "it is not the key the token is bound to (cnf.jkt)".into(),
            )));
        }
        let key: [u8; 32] = Sha256::new()
            .chain_update(proof.jkt.as_bytes())
            .chain_update([0])
            .chain_update(proof.jti.as_bytes())
            .finalize()
            .into();
        match self
            .replay
            .first_use(key, proof.iat + self.iat_window + 1)
            .await
        {
            Ok(true) => Ok(()),
            Ok(false) => Err(Refusal::Replayed),
            Err(e) => Err(Refusal::Unavailable(e)),
        }
    }
}

/// Why a DPoP request was refused.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// The token cannot be used this way: `invalid_token`.
    Token(&'static str),
    /// The proof failed a check: `invalid_dpop_proof` (or `use_dpop_nonce`).
    Proof(DpopError),
    /// The proof was seen before (RFC 9449 §11.1).
    Replayed,
    /// The replay cache could not answer.
    Unavailable(ResourceError),
}

/// The token's `cnf.jkt` (RFC 9449 §6.1 for JWTs, §6.2 for introspection).
pub(crate) fn bound_key(principal: &Principal) -> Option<&str> {
    principal
        .claims
        .get("cnf")
        .and_then(|c| c.get("jkt"))
        .and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn d4_the_memory_cache_refuses_a_second_use_and_forgets_expired_proofs() {
        let c = MemoryReplayCache::new(2);
        let (a, b, d) = ([1; 32], [2; 32], [3; 32]);
        assert!(c.record(a, 100, 0).unwrap());
        assert!(!c.record(a, 100, 50).unwrap());
        assert!(c.record(b, 200, 50).unwrap());
        // Full of unexpired proofs: refuse rather than forget one (which could be replayed).
        assert!(matches!(
            c.record(d, 300, 60),
            Err(ResourceError::Unavailable { .. })
        ));
        // `a` expired at 100: its slot is free again, and it is forgotten.
        assert!(c.record(d, 300, 100).unwrap());
        assert!(!c.record(b, 200, 100).unwrap());
    }
}
