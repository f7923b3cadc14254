//! Workload identity tokens at the token endpoint (SEP-1933, SPEC W2): a JWT from a trusted
//! workload issuer (GitHub Actions, Kubernetes, a cloud's metadata service), with no client
//! registration and no client secret. The issuer's rule decides: its `aud`, a pattern on `sub`,
//! claims that must all match (`repository`, `environment`, …) and the scopes it may get. The
//! access token's subject is `NAME:SUB` and its client id the issuer's name; no refresh token.

use axum::response::Response;
use mcpauth_core::{ErrorCode, ScopeSet};
use serde_json::Value;

use super::{Presented, WorkloadRule, glob, invalid_grant, verify};
use crate::client_auth::TokenError;
use crate::params::{Params, oauth_error};
use crate::routes::token::respond;
use crate::server::Shared;
use crate::tokens::{audience, check_resource, issue_access_token};

/// The jwt-bearer grant for a workload token whose issuer has `rule`.
pub(crate) async fn token(
    shared: &Shared,
    params: &Params,
    rule: &WorkloadRule,
    presented: &Presented<'_>,
) -> Result<Response, TokenError> {
    let (trusted, jkt) = (presented.trusted, presented.jkt.as_deref());
    let token_endpoint = shared.config.endpoint("/token");
    let audiences: Vec<&str> = match &rule.audience {
        Some(a) => vec![a.as_str()],
        None => vec![shared.config.issuer.as_str(), token_endpoint.as_str()],
    };
    let claims = verify(shared, presented, &audiences, false).await?;
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if let Some(pattern) = &rule.subject
        && !glob(pattern, sub)
    {
        return Err(invalid_grant(
            "the workload's subject is not one this issuer's rule allows",
        ));
    }
    if let Some(c) = rule.claims.iter().find(|c| !c.matches(&claims)) {
        return Err(invalid_grant(&format!(
            "the workload token's {} claim is not what this issuer's rule requires",
            c.name
        )));
    }
    let allowed: ScopeSet = rule.scopes.iter().map(String::as_str).collect();
    let scope = match params.get("scope") {
        None => allowed,
        Some(s) => {
            let requested = ScopeSet::parse(s);
            if !allowed.is_superset(&requested) {
                return Err(oauth_error(
                    ErrorCode::InvalidScope,
                    "the workload may not get that scope (this issuer's rule lists what it may)",
                )
                .into());
            }
            requested
        }
    };
    let resource = check_resource(shared, params.get("resource"))?;
    let aud = audience(shared, resource.as_deref());
    let subject = format!("{}:{sub}", trusted.name);
    let (access, ttl) =
        issue_access_token(shared, &subject, &trusted.name, &aud, &scope, None, jkt).await?;
    Ok(respond(access, ttl, None, &scope, jkt))
}
