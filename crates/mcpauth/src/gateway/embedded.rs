//! The token verifier of a gateway with its embedded authorization server: the JWT checks
//! (signature, issuer, audience, times) plus the server's revocation state, shared in process
//! (security review finding 1: a revoked token must be refused at once, RFC 7009 §2).

use std::sync::Arc;

use mcpauth_authserver::AuthServer;
use mcpauth_resource::{JwtVerifier, Principal, ResourceError, TokenVerifier, VerifyFuture};

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
