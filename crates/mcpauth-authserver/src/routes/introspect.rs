//! Token introspection (RFC 7662) for resource servers. The caller must authenticate as a
//! confidential client (RFC 7662 §2.1) that an administrator registered as a resource server
//! with the resources it serves (`mcpauth clients add --introspection RESOURCE`); a client
//! registered through `/register` never is one, though it may hold a secret. A token is
//! reported only to a resource server of its audience (an access token's `aud`, a refresh
//! token's resource, or the issuer when it has none) and, for a refresh token, only to the
//! client it was issued to. Every other answer is `{"active": false}`, the same as for an
//! unknown token, so it does not tell why (RFC 7662 §2.2, §4; security finding 8). Access
//! tokens are verified with our own keys and the key's algorithm only, so `alg: none` and
//! HS256 signed with the public key are inactive.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use mcpauth_core::resource::canonical_resource;
use serde_json::{Value, json};

use super::{AppState, PeerIp, TokenQuery, no_store_json};
use crate::client_auth::TokenError;
use crate::clients::AuthMethod;
use crate::secrets::{hash_secret, now};
use crate::server::Shared;
use crate::tokens::{ACCESS_TOKEN_TYP, AccessClaims};

/// `POST /introspect`.
pub(crate) async fn introspect(
    State(shared): AppState,
    PeerIp(ip): PeerIp,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match handle(&shared, &ip, &headers, &body).await {
        Ok(v) => no_store_json(StatusCode::OK, &v),
        Err(e) => e.into_response(),
    }
}

async fn handle(
    shared: &Shared,
    ip: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Value, TokenError> {
    let TokenQuery { client, token } =
        TokenQuery::parse(shared, ip, headers, body, "/introspect").await?;
    // RFC 7662 §2.1, §4: introspection needs real client authentication, or anyone could
    // register a public client and scan tokens. A public client's id proves nothing.
    if client.auth_method == AuthMethod::None {
        return Err(TokenError::invalid_client(
            "introspection requires a confidential client (RFC 7662 §2.1)",
            false,
        ));
    }
    let token = token.as_str();
    let inactive = json!({"active": false});
    // Security finding 8 (RFC 7662 §4): only resource servers, for their own audiences.
    let served = shared
        .store
        .introspection_resources(&client.client_id)
        .await?;
    if served.is_empty() {
        return Ok(inactive);
    }
    let issuer = &shared.config.issuer;
    if let Some(c) = shared
        .keys
        .verify::<AccessClaims>(token, ACCESS_TOKEN_TYP, issuer)
        .await
    {
        if !serves(&served, &c.aud) || shared.store.access_token_revoked(&c.jti).await? {
            return Ok(inactive);
        }
        let mut v = json!({
            "active": true, "token_type": "Bearer", "client_id": c.client_id, "sub": c.sub,
            "aud": c.aud, "iss": c.iss, "exp": c.exp, "iat": c.iat, "jti": c.jti,
        });
        if let Some(s) = c.scope {
            v["scope"] = json!(s);
        }
        // RFC 9449 §6.2: the key a bound token needs proofs by.
        if let Some(cnf) = c.cnf {
            v["token_type"] = json!("DPoP");
            v["cnf"] = json!({"jkt": cnf.jkt});
        }
        return Ok(v);
    }
    if let Some(row) = shared.store.refresh(&hash_secret(token)).await?
        && row.client_id == client.client_id
        && serves(&served, row.resource.as_deref().unwrap_or(issuer))
        && row.used_at.is_none()
        && row.revoked_at.is_none()
        && row.expires_at > now()
    {
        let mut v = json!({
            "active": true, "token_type": "refresh_token", "client_id": row.client_id,
            "sub": row.user_id, "iss": issuer, "exp": row.expires_at,
        });
        if !row.scope.is_empty() {
            v["scope"] = json!(row.scope);
        }
        if let Some(r) = row.resource {
            v["aud"] = json!(r);
        }
        return Ok(v);
    }
    Ok(inactive)
}

/// Whether `audience` is one of the `served` resources, compared as canonical URIs (MCP SPEC
/// C22) like the `resource` parameter of a token request (RFC 8707 §2).
fn serves(served: &[String], audience: &str) -> bool {
    let canonical = canonical_resource(audience).ok();
    served
        .iter()
        .any(|r| r == audience || (canonical.is_some() && canonical_resource(r).ok() == canonical))
}
