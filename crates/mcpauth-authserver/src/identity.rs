//! Identity assertions for the MCP servers behind an embedded gateway (issue 12 part 3): a
//! short-lived JWT, signed with the authorization server's current key so that the upstream
//! verifies it with the published JWK set (`{issuer}/jwks`), naming the user for one audience
//! (the upstream). Unlike a bare `X-User` header, a client cannot forge it.

use serde::Serialize;

use crate::error::AuthServerError;
use crate::secrets::{now, random_bytes_b64};
use crate::server::AuthServer;

/// The JWT `typ` of an identity assertion (RFC 8725 §3.11: explicit typing keeps it from being
/// taken for an access token).
pub const IDENTITY_TOKEN_TYP: &str = "mcp-identity+jwt";

/// Lifetime of an identity assertion, in seconds.
pub const IDENTITY_TOKEN_TTL: i64 = 60;

#[derive(Serialize)]
struct IdentityClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    iat: i64,
    exp: i64,
    jti: String,
}

impl AuthServer {
    /// An identity assertion for the subject `sub` of a verified access token (with its
    /// `jti`) to the upstream `audience`: `iss`, `aud`, `sub`, the `email` and `name` the
    /// identity provider gave at sign-in (a local user: the username as `name`), `iat`, `exp`
    /// ([`IDENTITY_TOKEN_TTL`] later) and a fresh `jti`; typed [`IDENTITY_TOKEN_TYP`].
    pub async fn identity_token(
        &self,
        sub: &str,
        jti: Option<&str>,
        audience: &str,
    ) -> Result<String, AuthServerError> {
        let shared = self.shared();
        let family = jti.and_then(|j| j.split_once('.')).map(|(f, _)| f);
        let federated = match family {
            Some(f) => crate::federation::session::identity(shared, f).await?,
            None => None,
        };
        let (email, name) = match federated {
            Some(pair) => pair,
            None => (
                None,
                shared.store.user_by_id(sub).await?.map(|u| u.username),
            ),
        };
        let iat = now();
        let claims = IdentityClaims {
            iss: &shared.config.issuer,
            aud: audience,
            sub,
            email,
            name,
            iat,
            exp: iat + IDENTITY_TOKEN_TTL,
            jti: random_bytes_b64(16),
        };
        shared.keys.sign(IDENTITY_TOKEN_TYP, &claims).await
    }
}
