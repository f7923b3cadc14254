//! The token verifier of a gateway with its embedded authorization server: the JWT checks
//! (signature, issuer, audience, times) plus the server's revocation state, shared in process
//! (security review finding 1: a revoked token must be refused at once, RFC 7009 §2); and its
//! DPoP replay cache, the server's database.

use std::sync::Arc;

use mcpauth_authserver::{AuthServer, Store};
use mcpauth_resource::{
    JwtVerifier, Principal, ReplayCache, ReplayFuture, ResourceError, TokenVerifier, VerifyFuture,
};

/// [`JwtVerifier`] that also refuses tokens the embedded server has revoked, by themselves or
/// with their grant (logout, /revoke, a replayed code, a reused refresh token).
pub(crate) struct EmbeddedVerifier {
    pub jwt: JwtVerifier,
    pub server: AuthServer,
}

impl TokenVerifier for EmbeddedVerifier {
    fn verify<'a>(&'a self, token: &'a str) -> VerifyFuture<'a> {
        Box::pin(async move {
            let principal: Arc<Principal> = self.jwt.verify(token).await?;
            // The JWT verifier caches principals; revocation is checked on every request.
            let jti = principal.claims.get("jti").and_then(|v| v.as_str());
            match jti {
                Some(jti) if self.server.access_token_revoked(jti) => {
                    Err(ResourceError::invalid("the access token has been revoked"))
                }
                _ => Ok(principal),
            }
        })
    }
}

/// The DPoP proofs seen, kept in the authorization server's schema (the embedded server's
/// database, or `--database` in front of an external one): gateway instances sharing one
/// PostgreSQL database refuse a proof used at any of them (RFC 9449 §11.1, SPEC D7).
pub(crate) struct StoreReplayCache(pub Store);

impl ReplayCache for StoreReplayCache {
    fn first_use(&self, key: [u8; 32], expires_at: i64) -> ReplayFuture<'_> {
        Box::pin(async move {
            let key: String = key.iter().map(|b| format!("{b:02x}")).collect();
            self.0
                .dpop_first_use(&key, expires_at)
                .await
                .map_err(|e| ResourceError::Unavailable {
                    what: "the DPoP replay cache (the database)".into(),
                    reason: e.to_string(),
                })
        })
    }
}
