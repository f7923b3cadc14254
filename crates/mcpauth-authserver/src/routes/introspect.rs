//! Token introspection (RFC 7662) for authenticated confidential clients (resource servers).
//! Access tokens are verified with our own keys and the key's algorithm only, so `alg: none`
//! and HS256 signed with the public key are inactive; refresh tokens are reported only to the
//! client they were issued to.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
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
    let issuer = &shared.config.issuer;
    if let Some(c) = shared
        .keys
        .verify::<AccessClaims>(token, ACCESS_TOKEN_TYP, issuer)
        .await
    {
        if shared.store.access_token_revoked(&c.jti).await? {
            return Ok(inactive);
        }
        let mut v = json!({
            "active": true, "token_type": "Bearer", "client_id": c.client_id, "sub": c.sub,
            "aud": c.aud, "iss": c.iss, "exp": c.exp, "iat": c.iat, "jti": c.jti,
        });
        if let Some(s) = c.scope {
            v["scope"] = json!(s);
        }
        return Ok(v);
    }
    if let Some(row) = shared.store.refresh(&hash_secret(token)).await?
        && row.client_id == client.client_id
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
