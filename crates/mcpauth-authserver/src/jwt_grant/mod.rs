//! The JWT bearer grant (RFC 7523 §2.1, §3; RFC 7521 §4.1) for JWTs from issuers the operator
//! trusts: workload identity tokens (SEP-1933, SPEC W2: a CI job's or a pod's platform token, no
//! client registration) and Identity Assertion JWT Authorization Grants from an enterprise IdP
//! (the MCP Enterprise-Managed Authorization extension, SPEC E1-E3). Both are checked the same
//! way here ([`verify`]): an asymmetric signature by the issuer's key (JWKS configured or found
//! through OpenID discovery), `iss` exact, `aud` ours, `exp`, `nbf` and `iat` within a minute,
//! and each `jti` used once across every instance; then [`workload`] or [`id_jag`] decides what
//! the token may get. No refresh token is issued for either: the assertion is the credential.

pub(crate) mod id_jag;
pub(crate) mod workload;

use jsonwebtoken::{DecodingKey, Validation};
use mcpauth_core::ErrorCode;
use serde_json::{Map, Value};

use axum::http::HeaderMap;
use axum::response::Response;

use crate::client_auth::{TokenError, authenticate};
use crate::clients;
use crate::dpop::proof_key;
use crate::federation::ClaimRule;
use crate::federation::oidc::asymmetric;
use crate::params::oauth_error;
use crate::params::{Params, invalid_request};
use crate::rate_limit::Bucket;
use crate::secrets::now;
use crate::server::Shared;

/// The grant type (RFC 7523 §2.1).
pub(crate) const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// The `typ` of an ID-JAG (Enterprise-Managed Authorization §4.3).
pub(crate) const ID_JAG_TYP: &str = "oauth-id-jag+jwt";
/// The grant profile advertised in `authorization_grant_profiles_supported`.
pub(crate) const ID_JAG_PROFILE: &str = "urn:ietf:params:oauth:grant-profile:id-jag";
/// Clock skew accepted on `exp`, `nbf` and `iat`.
const LEEWAY: u64 = 60;
/// Longest assertion accepted, in bytes.
const MAX_ASSERTION_BYTES: usize = 16 * 1024;

/// An issuer whose JWTs the token endpoint accepts with the JWT bearer grant.
#[derive(Clone, Debug)]
pub struct TrustedIssuer {
    /// URL-safe name (`a-z`, `0-9`, `-`, `_`): the workload's client id, or the prefix of the
    /// users an IdP's ID-JAGs sign in (`NAME:SUB`).
    pub name: String,
    /// The `iss` its JWTs carry, exactly.
    pub issuer: String,
    /// Where its keys are; `None`: the `jwks_uri` of its OpenID discovery document.
    pub jwks_uri: Option<String>,
    /// What its JWTs are and may get.
    pub kind: TrustKind,
}

impl TrustedIssuer {
    /// Checks the settings: a URL-safe name, https (or loopback http) URLs, and at least one
    /// scope for workloads.
    pub fn validate(&self) -> Result<(), crate::AuthServerError> {
        let bad = |why: String| {
            crate::AuthServerError::Config(format!("trusted issuer {:?}: {why}", self.name))
        };
        let name_ok = (1..=32).contains(&self.name.len())
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !name_ok {
            return Err(bad("the name must be 1 to 32 of a-z, 0-9, - and _".into()));
        }
        for url in std::iter::once(&self.issuer).chain(self.jwks_uri.as_ref()) {
            if !crate::federation::upstream::secure_url(url) {
                return Err(bad(format!(
                    "{url:?} must be https (http only on a loopback host)"
                )));
            }
        }
        if let TrustKind::Workload(rule) = &self.kind
            && rule.scopes.is_empty()
        {
            return Err(bad(
                "list the scopes its workloads may get (scopes = [...])".into(),
            ));
        }
        Ok(())
    }
}

/// What a trusted issuer's JWTs are.
#[derive(Clone, Debug)]
pub enum TrustKind {
    /// Workload identity tokens (SEP-1933): the workload itself is the subject.
    Workload(WorkloadRule),
    /// ID-JAGs from an enterprise IdP: a user, for a registered client.
    IdJag(IdJagRule),
}

/// Which of an issuer's workload tokens are accepted, and what they may get.
#[derive(Clone, Debug, Default)]
pub struct WorkloadRule {
    /// The `aud` the tokens must carry; `None`: this server's issuer or token endpoint.
    pub audience: Option<String>,
    /// A pattern the `sub` must match (`*` matches any run of characters), e.g.
    /// `repo:acme/tools:environment:prod` or `system:serviceaccount:ci:*`; `None`: any.
    pub subject: Option<String>,
    /// Claims that must all match (a string equal, or an array holding it), e.g.
    /// `repository=acme/tools`.
    pub claims: Vec<ClaimRule>,
    /// The scopes such a workload may get (at least one).
    pub scopes: Vec<String>,
}

/// How an IdP's ID-JAGs map to users.
#[derive(Clone, Debug, Default)]
pub struct IdJagRule {
    /// How the ID-JAG's `sub` names the user.
    pub users: UserMapping,
    /// The scopes its ID-JAGs may carry; empty: any this server supports.
    pub scopes: Vec<String>,
}

/// How an ID-JAG's `sub` names a local user.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UserMapping {
    /// The user `NAME:SUB`, created on first use (as a provider sign-in does).
    #[default]
    Linked,
    /// An existing local user whose username is the `sub`; anyone else is refused.
    Existing,
}

/// The assertion of a JWT bearer grant request, from a trusted issuer, and the DPoP key the
/// request proved (RFC 9449 §5).
pub(crate) struct Presented<'a> {
    pub trusted: &'a TrustedIssuer,
    pub header: jsonwebtoken::Header,
    pub assertion: &'a str,
    pub jkt: Option<String>,
}

/// `invalid_grant` (RFC 7521 §5.2 for every refused assertion).
pub(crate) fn invalid_grant(description: &str) -> TokenError {
    oauth_error(ErrorCode::InvalidGrant, description).into()
}

/// The trusted issuer of `iss`, and the JWT's header, read without any check.
fn issuer_of<'a>(
    shared: &'a Shared,
    assertion: &str,
) -> Result<(&'a TrustedIssuer, jsonwebtoken::Header), TokenError> {
    if assertion.len() > MAX_ASSERTION_BYTES {
        return Err(invalid_grant("the assertion is too long"));
    }
    let header = jsonwebtoken::decode_header(assertion)
        .map_err(|_| invalid_grant("the assertion is not a JWT"))?;
    // The issuer only selects the keys that then verify the assertion.
    let claims: Map<String, Value> = jsonwebtoken::dangerous::insecure_decode(assertion)
        .map(|d| d.claims)
        .map_err(|_| invalid_grant("the assertion's claims are not a JSON object"))?;
    let iss = claims.get("iss").and_then(Value::as_str).unwrap_or("");
    let trusted = shared
        .config
        .trusted_issuers
        .iter()
        .find(|t| t.issuer == iss)
        .ok_or_else(|| invalid_grant("the assertion's issuer is not trusted here"))?;
    Ok((trusted, header))
}

/// The claims of `assertion`, checked (RFC 7523 §3): the issuer's key (an asymmetric
/// algorithm), `iss`, `aud` one of `audiences`, `exp` and `sub` present, `exp`, `nbf` and `iat`
/// within [`LEEWAY`], and its `jti` (when it has one; `require_jti`: it must) used once.
async fn verify(
    shared: &Shared,
    presented: &Presented<'_>,
    audiences: &[&str],
    require_jti: bool,
) -> Result<Map<String, Value>, TokenError> {
    let (trusted, header, assertion) = (presented.trusted, &presented.header, presented.assertion);
    if !asymmetric(header.alg) {
        return Err(invalid_grant(
            "the assertion is not signed with an asymmetric algorithm",
        ));
    }
    let uri = match &trusted.jwks_uri {
        Some(u) => u.clone(),
        None => shared
            .upstream
            .jwks_uri(&trusted.issuer)
            .await
            .map_err(|e| unreachable(trusted, &e))?,
    };
    let jwk = shared
        .upstream
        .key(&uri, header.kid.as_deref())
        .await
        .map_err(|e| match e {
            crate::federation::upstream::UpstreamError::IdToken(why) => {
                invalid_grant(&format!("the assertion is {why}"))
            }
            e => unreachable(trusted, &e),
        })?;
    let key =
        DecodingKey::from_jwk(&jwk).map_err(|_| invalid_grant("the issuer's key is unusable"))?;
    let mut v = Validation::new(header.alg);
    v.set_issuer(&[&trusted.issuer]);
    v.set_audience(audiences);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    v.leeway = LEEWAY;
    v.validate_nbf = true;
    let claims = jsonwebtoken::decode::<Map<String, Value>>(assertion, &key, &v)
        .map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            invalid_grant(match e.kind() {
                K::InvalidSignature => "the assertion's signature does not verify",
                K::ExpiredSignature => "the assertion has expired",
                K::ImmatureSignature => "the assertion is not valid yet (nbf)",
                K::InvalidAudience => "the assertion is for another audience",
                K::InvalidIssuer => "the assertion is from another issuer",
                K::MissingRequiredClaim(_) => "the assertion lacks exp, iss, aud or sub",
                _ => "the assertion is invalid",
            })
        })?
        .claims;
    let now = now();
    if claims
        .get("iat")
        .and_then(Value::as_i64)
        .is_some_and(|iat| iat > now + LEEWAY as i64)
    {
        return Err(invalid_grant("the assertion was issued in the future"));
    }
    let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(now);
    match claims.get("jti").and_then(Value::as_str) {
        // RFC 7523 §3 item 7: replay protection, shared by every instance.
        Some(jti) if !jti.is_empty() && jti.len() <= 256 => {
            let first = shared
                .store
                .use_assertion_jti(&trusted.issuer, jti, exp + LEEWAY as i64)
                .await?;
            if !first {
                return Err(invalid_grant("the assertion was used before (its jti)"));
            }
        }
        _ if require_jti => return Err(invalid_grant("the assertion has no usable jti")),
        _ => {}
    }
    Ok(claims)
}

/// A trusted issuer that cannot be reached or described: the request may be retried.
fn unreachable(trusted: &TrustedIssuer, e: &dyn std::fmt::Display) -> TokenError {
    tracing::warn!(issuer = %trusted.issuer, error = %e, "cannot get the signing keys of a trusted issuer");
    oauth_error(
        ErrorCode::TemporarilyUnavailable,
        "the assertion's issuer cannot be reached to check its signature; try again later",
    )
    .into()
}

/// The assertion of a JWT bearer grant request, its trusted issuer and header, and whether it
/// is an ID-JAG (by its `typ`, RFC 8725 §3.11).
fn classify<'a>(
    shared: &'a Shared,
    assertion: &str,
) -> Result<(&'a TrustedIssuer, jsonwebtoken::Header, bool), TokenError> {
    let (trusted, header) = issuer_of(shared, assertion)?;
    let is_id_jag = header.typ.as_deref() == Some(ID_JAG_TYP);
    let expected_id_jag = matches!(trusted.kind, TrustKind::IdJag(_));
    if is_id_jag != expected_id_jag {
        return Err(invalid_grant(if expected_id_jag {
            "the assertion's issuer issues ID-JAGs, and this one's typ is not oauth-id-jag+jwt"
        } else {
            "the assertion's issuer is trusted for workload tokens, not ID-JAGs"
        }));
    }
    Ok((trusted, header, is_id_jag))
}

/// `POST /token` with `grant_type` [`JWT_BEARER_GRANT`]: a workload token needs no client
/// authentication (SPEC W1: none is registered); an ID-JAG needs a confidential client allowed
/// the grant. Returns the response and the client id to audit.
pub(crate) async fn token(
    shared: &Shared,
    headers: &HeaderMap,
    params: &Params,
    endpoint: &str,
) -> Result<(Response, String), TokenError> {
    let assertion = params
        .get("assertion")
        .ok_or_else(|| invalid_request("assertion is required (RFC 7523 §2.1)"))?;
    let (trusted, header, _) = classify(shared, assertion)?;
    let mut presented = Presented {
        trusted,
        header,
        assertion,
        jkt: None,
    };
    match &trusted.kind {
        TrustKind::Workload(rule) => {
            presented.jkt = proof_key(shared, headers, endpoint).await?;
            if !shared.allow(Bucket::TokenClient, &trusted.name) {
                return Err(TokenError::rate_limited());
            }
            let resp = workload::token(shared, params, rule, &presented).await?;
            Ok((resp, trusted.name.clone()))
        }
        TrustKind::IdJag(rule) => {
            let client = authenticate(shared, headers, params, endpoint).await?;
            presented.jkt = proof_key(shared, headers, endpoint).await?;
            clients::slide_expiry(shared, &client).await?;
            if !shared.allow(Bucket::TokenClient, &client.client_id) {
                return Err(TokenError::rate_limited());
            }
            if !client.is_confidential() || !client.allows_grant(JWT_BEARER_GRANT) {
                return Err(oauth_error(
                    ErrorCode::UnauthorizedClient,
                    "ID-JAGs are redeemed by a confidential client registered for the \
                     jwt-bearer grant",
                )
                .into());
            }
            let resp = id_jag::token(shared, &client, params, rule, &presented).await?;
            Ok((resp, client.client_id))
        }
    }
}

/// Whether any configured issuer is an IdP of ID-JAGs (the metadata then says so).
pub(crate) fn accepts_id_jags(shared: &Shared) -> bool {
    shared
        .config
        .trusted_issuers
        .iter()
        .any(|t| matches!(t.kind, TrustKind::IdJag(_)))
}

/// Whether `value` matches `pattern`, where `*` matches any run of characters.
pub(crate) fn glob(pattern: &str, value: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == value;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !value.starts_with(first) || value.len() < first.len() + last.len() || !value.ends_with(last)
    {
        return false;
    }
    let mut rest = &value[first.len()..value.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn w2_subject_patterns() {
        for (p, v, ok) in [
            (
                "repo:acme/tools:*",
                "repo:acme/tools:ref:refs/heads/main",
                true,
            ),
            ("repo:acme/tools:*", "repo:acme/other:ref:x", false),
            (
                "system:serviceaccount:ci:*",
                "system:serviceaccount:ci:runner",
                true,
            ),
            (
                "system:serviceaccount:ci:*",
                "system:serviceaccount:prod:runner",
                false,
            ),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("a*b*c", "a-x-b-y-c", true),
            ("a*b*c", "a-x-c", false),
            ("*", "", true),
            ("ab*ba", "aba", false),
        ] {
            assert_eq!(glob(p, v), ok, "{p} ~ {v}");
        }
    }
}
