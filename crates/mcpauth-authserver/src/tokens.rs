//! RFC 9068 JWT access tokens, and the checks shared by the grants: the RFC 8707 `resource`
//! (MCP SPEC A11) and the requested scope.

use mcpauth_core::resource::canonical_resource;
use mcpauth_core::{ErrorCode, OAuthError, ScopeSet};
use serde::{Deserialize, Serialize};

use crate::clients::Client;
use crate::error::AuthServerError;
use crate::params::oauth_error;
use crate::secrets::{now, random_bytes_b64};
use crate::server::Shared;

/// The JOSE `typ` of access tokens (RFC 9068 §2.1).
pub(crate) const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// RFC 9068 §2.2 claims.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    /// The DPoP key the token is bound to (RFC 9449 §6.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
}

/// The `cnf` claim of a DPoP-bound token (RFC 7800 §3.1, RFC 9449 §6.1).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Confirmation {
    /// The RFC 7638 SHA-256 thumbprint of the client's DPoP key.
    pub jkt: String,
}

/// Signs an access token, bound to the DPoP key `jkt` when there is one (RFC 9449 §6). Tokens
/// of a family (from one authorization code) get a jti prefixed with the family id, so revoking
/// the family revokes them.
pub(crate) async fn issue_access_token(
    shared: &Shared,
    sub: &str,
    client_id: &str,
    audience: &str,
    scope: &ScopeSet,
    family: Option<&str>,
    jkt: Option<&str>,
) -> Result<(String, u64), AuthServerError> {
    let now = now();
    let ttl = shared.config.access_token_ttl.as_secs();
    let jti = match family {
        Some(f) => format!("{f}.{}", random_bytes_b64(12)),
        None => random_bytes_b64(16),
    };
    let claims = AccessClaims {
        iss: shared.config.issuer.clone(),
        sub: sub.to_owned(),
        aud: audience.to_owned(),
        client_id: client_id.to_owned(),
        scope: (!scope.is_empty()).then(|| scope.to_string()),
        iat: now,
        exp: now + ttl as i64,
        jti,
        cnf: jkt.map(|j| Confirmation { jkt: j.to_owned() }),
    };
    let jwt = shared.keys.sign(ACCESS_TOKEN_TYP, &claims).await?;
    Ok((jwt, ttl))
}

/// The audience for a requested `resource` (RFC 8707 §2): it must be one of the configured
/// resources (exactly, or after canonicalisation); without `resource`, the only configured
/// resource. With no resources configured, any http(s) resource is accepted and the issuer is
/// the audience of tokens requested without one.
pub(crate) fn check_resource(
    shared: &Shared,
    requested: Option<&str>,
) -> Result<Option<String>, OAuthError> {
    let configured = &shared.config.resources;
    let Some(r) = requested else {
        return match configured.len() {
            0 | 1 => Ok(configured.first().cloned()),
            _ => Err(oauth_error(
                ErrorCode::InvalidTarget,
                "this server issues tokens for several resources: send the resource parameter \
                 (RFC 8707)",
            )),
        };
    };
    let canonical = canonical_resource(r).map_err(|_| {
        oauth_error(
            ErrorCode::InvalidTarget,
            "resource must be an absolute http(s) URI (RFC 8707 §2)",
        )
    })?;
    if configured.is_empty() {
        return Ok(Some(r.to_owned()));
    }
    configured
        .iter()
        .find(|c| *c == r || canonical_resource(c).is_ok_and(|c| c == canonical))
        .map(|c| Some(c.clone()))
        .ok_or_else(|| {
            oauth_error(
                ErrorCode::InvalidTarget,
                "this authorization server does not issue tokens for that resource (RFC 8707)",
            )
        })
}

/// The token audience for a checked resource.
pub(crate) fn audience(shared: &Shared, resource: Option<&str>) -> String {
    resource.unwrap_or(&shared.config.issuer).to_owned()
}

/// The scope to grant: the requested one (or the client's registered scope), which must be
/// within `scopes_supported` (when configured) and the client's registered scope (when it has
/// one).
pub(crate) fn check_scope(
    shared: &Shared,
    client: &Client,
    requested: Option<&str>,
) -> Result<ScopeSet, OAuthError> {
    let registered = client.metadata.scope.as_deref().map(ScopeSet::parse);
    let scope = match requested {
        Some(s) => ScopeSet::parse(s),
        None => registered.clone().unwrap_or_default(),
    };
    if scope.iter().any(|s| {
        s.len() > 200
            || s.chars()
                .any(|c| c == '"' || c == '\\' || (c as u32) < 0x21)
    }) {
        return Err(oauth_error(ErrorCode::InvalidScope, "malformed scope"));
    }
    let supported = &shared.config.scopes_supported;
    if !supported.is_empty()
        && let Some(bad) = scope
            .iter()
            .find(|s| *s != "offline_access" && !supported.iter().any(|x| x == s))
    {
        return Err(oauth_error(
            ErrorCode::InvalidScope,
            &format!("scope {bad:?} is not supported"),
        ));
    }
    if let Some(reg) = registered
        && !reg.is_superset(&scope)
    {
        return Err(oauth_error(
            ErrorCode::InvalidScope,
            "the requested scope exceeds the client's registered scope",
        ));
    }
    Ok(scope)
}
