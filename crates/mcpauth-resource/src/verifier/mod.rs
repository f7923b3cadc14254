//! Access-token verification: the [`TokenVerifier`] trait and its two implementations,
//! [`JwtVerifier`] (RFC 9068 JWTs checked against the issuer's JWK set) and
//! [`IntrospectionVerifier`] (RFC 7662).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::{Principal, ResourceError};

mod introspection;
mod jwt;

pub use introspection::IntrospectionVerifier;
pub use jwt::{JwtVerifier, JwtVerifierBuilder};

/// The future a [`TokenVerifier`] returns.
pub type VerifyFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Arc<Principal>, ResourceError>> + Send + 'a>>;

/// Checks a bearer token and says whom it speaks for (OAuth 2.1 §5.2; MCP SPEC S4-S5).
///
/// Object safe: the layer holds an `Arc<dyn TokenVerifier>`. Implement it for your own token
/// format; the verifier MUST check that the token was issued for this resource (its audience).
///
/// ```
/// use std::sync::Arc;
/// use mcpauth_resource::{Principal, ResourceError, TokenVerifier, VerifyFuture};
///
/// struct Static;
/// impl TokenVerifier for Static {
///     fn verify<'a>(&'a self, token: &'a str) -> VerifyFuture<'a> {
///         Box::pin(async move {
///             if mcpauth_core::constant_time_eq(token.as_bytes(), b"let-me-in") {
///                 Ok(Arc::new(Principal::new("robot", "local")))
///             } else {
///                 Err(ResourceError::invalid("unknown token"))
///             }
///         })
///     }
/// }
/// ```
pub trait TokenVerifier: Send + Sync + 'static {
    /// Verifies `token` (the credential of an `Authorization: Bearer` header).
    ///
    /// A token problem is [`ResourceError::InvalidToken`], [`ResourceError::Expired`],
    /// [`ResourceError::WrongAudience`], [`ResourceError::WrongIssuer`] or
    /// [`ResourceError::Inactive`] (answered 401 `invalid_token`); a failure to check it at all
    /// is [`ResourceError::Unavailable`] (answered 503).
    fn verify<'a>(&'a self, token: &'a str) -> VerifyFuture<'a>;
}

impl<T: TokenVerifier + ?Sized> TokenVerifier for Arc<T> {
    fn verify<'a>(&'a self, token: &'a str) -> VerifyFuture<'a> {
        (**self).verify(token)
    }
}

/// Unix seconds now.
pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The cache key of a token: its SHA-256, so that the cache never holds a usable token.
pub(crate) fn token_key(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A cached principal and the Unix second it stops being valid.
type CacheEntry = (Arc<Principal>, u64);

/// Verified tokens by SHA-256, each until a deadline (never past the token's `exp`). Lookups
/// take a read lock only.
pub(crate) struct TokenCache {
    map: RwLock<HashMap<[u8; 32], CacheEntry>>,
    max_entries: usize,
}

impl TokenCache {
    pub(crate) fn new(max_entries: usize) -> Self {
        Self {
            map: RwLock::new(HashMap::new()),
            max_entries,
        }
    }

    /// The principal of `token`: from the cache, or from `verify` (then remembered for at
    /// most `ttl` seconds, never past its `exp`).
    pub(crate) async fn get_or_verify(
        &self,
        token: &str,
        ttl: u64,
        verify: impl Future<Output = Result<Principal, ResourceError>>,
    ) -> Result<Arc<Principal>, ResourceError> {
        let key = token_key(token);
        let now = now_secs();
        if let Some(p) = self.get(&key, now) {
            return Ok(p);
        }
        let p = Arc::new(verify.await?);
        let until = now
            .saturating_add(ttl)
            .min(p.expires_at.unwrap_or(u64::MAX));
        self.insert(key, p.clone(), until, now);
        Ok(p)
    }

    /// The cached principal of `key`, if still valid at `now`.
    pub(crate) fn get(&self, key: &[u8; 32], now: u64) -> Option<Arc<Principal>> {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        match map.get(key) {
            Some((p, until)) if now < *until => Some(p.clone()),
            _ => None,
        }
    }

    /// Remembers `principal` for `key` until `until` (Unix seconds).
    pub(crate) fn insert(&self, key: [u8; 32], principal: Arc<Principal>, until: u64, now: u64) {
        if self.max_entries == 0 || until <= now {
            return;
        }
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        if map.len() >= self.max_entries {
            map.retain(|_, (_, u)| *u > now);
            if map.len() >= self.max_entries {
                map.clear();
            }
        }
        map.insert(key, (principal, until));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_expires_and_stays_bounded() {
        let c = TokenCache::new(2);
        let p = Arc::new(Principal::new("s", "i"));
        c.insert(token_key("a"), p.clone(), 100, 10);
        assert!(c.get(&token_key("a"), 99).is_some());
        assert!(c.get(&token_key("a"), 100).is_none());
        c.insert(token_key("b"), p.clone(), 100, 10);
        c.insert(token_key("c"), p, 100, 10);
        assert!(c.map.read().unwrap().len() <= 2);
    }
}
