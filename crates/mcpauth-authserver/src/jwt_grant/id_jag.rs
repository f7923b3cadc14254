//! Identity Assertion JWT Authorization Grants at the token endpoint (MCP Enterprise-Managed
//! Authorization §5, SPEC E1-E3): an enterprise IdP vouches that its user may use a registered,
//! authenticated client with this server. The ID-JAG's `typ` is `oauth-id-jag+jwt`, its `aud`
//! our issuer, its `client_id` the authenticated client's, its `jti` used once; the token's
//! audience is its `resource` (`invalid_target` for one we do not serve), its scope the
//! intersection of the ID-JAG's, the request's and the IdP rule's (`invalid_scope` when that is
//! empty), its subject the local user the IdP's `sub` names. No refresh token.

use axum::response::Response;
use mcpauth_core::{ErrorCode, ScopeSet};
use serde_json::Value;

use super::{IdJagRule, Presented, TrustedIssuer, UserMapping, invalid_grant, verify};
use crate::client_auth::TokenError;
use crate::clients::Client;
use crate::params::{Params, oauth_error};
use crate::routes::token::respond;
use crate::secrets::{now, random_bytes_b64};
use crate::server::Shared;
use crate::tokens::{audience, check_resource, issue_access_token};

/// The jwt-bearer grant for an ID-JAG of an IdP with `rule`, presented by `client`.
pub(crate) async fn token(
    shared: &Shared,
    client: &Client,
    params: &Params,
    rule: &IdJagRule,
    presented: &Presented<'_>,
) -> Result<Response, TokenError> {
    let (trusted, jkt) = (presented.trusted, presented.jkt.as_deref());
    let issuer = shared.config.issuer.as_str();
    let claims = verify(shared, presented, &[issuer], true).await?;
    // §5.1: the client the IdP issued it to is the one that authenticated.
    if claims.get("client_id").and_then(Value::as_str) != Some(client.client_id.as_str()) {
        return Err(invalid_grant(
            "the ID-JAG was issued to another client (its client_id claim)",
        ));
    }
    let resource = match claims.get("resource") {
        None => None,
        Some(Value::String(r)) => Some(r.as_str()),
        Some(_) => return Err(invalid_grant("the ID-JAG's resource is not a string")),
    };
    if let (Some(r), Some(asked)) = (resource, params.get("resource"))
        && r != asked
    {
        return Err(oauth_error(
            ErrorCode::InvalidTarget,
            "the request's resource is not the ID-JAG's",
        )
        .into());
    }
    let resource = check_resource(shared, resource.or(params.get("resource")))?;
    let scope = scope(shared, rule, &claims, params.get("scope"))?;
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let user_id = local_user(shared, trusted, rule, sub).await?;
    let aud = audience(shared, resource.as_deref());
    let (access, ttl) =
        issue_access_token(shared, &user_id, &client.client_id, &aud, &scope, None, jkt).await?;
    Ok(respond(access, ttl, None, &scope, jkt))
}

/// The granted scope: what the ID-JAG carries, narrowed by the request, the IdP's rule and the
/// scopes this server supports. A set that one of them empties is `invalid_scope`.
fn scope(
    shared: &Shared,
    rule: &IdJagRule,
    claims: &serde_json::Map<String, Value>,
    requested: Option<&str>,
) -> Result<ScopeSet, TokenError> {
    let granted = claims
        .get("scope")
        .and_then(Value::as_str)
        .map(ScopeSet::parse);
    let requested = requested.map(ScopeSet::parse);
    let mut scope = match (granted, requested) {
        (Some(g), Some(r)) => g.iter().filter(|s| r.contains(s)).collect(),
        (Some(s), None) | (None, Some(s)) => s,
        (None, None) => return Ok(ScopeSet::default()),
    };
    if !rule.scopes.is_empty() {
        scope = scope
            .iter()
            .filter(|s| rule.scopes.iter().any(|x| x == s))
            .collect();
    }
    let supported = &shared.config.scopes_supported;
    if !supported.is_empty() {
        scope = scope
            .iter()
            .filter(|s| supported.iter().any(|x| x == s))
            .collect();
    }
    if scope.is_empty() {
        return Err(oauth_error(
            ErrorCode::InvalidScope,
            "no scope is left: the ID-JAG, the request and this server have none in common",
        )
        .into());
    }
    Ok(scope)
}

/// The local user the IdP's `sub` names (§4.3: the user's identifier at the MCP server).
async fn local_user(
    shared: &Shared,
    trusted: &TrustedIssuer,
    rule: &IdJagRule,
    sub: &str,
) -> Result<String, TokenError> {
    match rule.users {
        UserMapping::Existing => match shared.store.user_by_name(sub).await? {
            Some(u) => Ok(u.id),
            None => Err(invalid_grant("the ID-JAG names no user of this server")),
        },
        UserMapping::Linked => {
            let username = format!("{}:{sub}", trusted.name);
            if let Some(id) = shared
                .store
                .federated_user(&trusted.name, &username)
                .await?
            {
                return Ok(id);
            }
            let id = random_bytes_b64(16);
            match shared
                .store
                .insert_federated_user(&id, &username, &trusted.name, now())
                .await
            {
                Ok(()) => Ok(id),
                // Another instance linked the same user at the same moment.
                Err(crate::AuthServerError::AlreadyExists { .. }) => shared
                    .store
                    .federated_user(&trusted.name, &username)
                    .await?
                    .ok_or_else(|| TokenError::internal("a linked user vanished")),
                Err(e) => Err(e.into()),
            }
        }
    }
}
