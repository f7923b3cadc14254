//! Token revocation (RFC 7009). Revoking a refresh token revokes its whole family; revoking an
//! access token records its `jti`. Tokens of other clients and unknown tokens are ignored
//! (RFC 7009 §2.2: the answer is 200 either way).

use crate::audit::audit;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{AppState, PeerIp, TokenQuery, no_store_json};
use crate::client_auth::TokenError;
use crate::secrets::{hash_secret, now};
use crate::server::Shared;
use crate::tokens::{ACCESS_TOKEN_TYP, AccessClaims};

/// `POST /revoke`.
pub(crate) async fn revoke(
    State(shared): AppState,
    PeerIp(ip): PeerIp,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match handle(&shared, &ip, &headers, &body).await {
        Ok(()) => no_store_json(StatusCode::OK, &serde_json::json!({})),
        Err(e) => e.into_response(),
    }
}

async fn handle(
    shared: &Shared,
    ip: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), TokenError> {
    let TokenQuery { client, token } =
        TokenQuery::parse(shared, ip, headers, body, "/revoke").await?;
    let token = token.as_str();
    let now = now();
    if let Some(row) = shared.store.refresh(&hash_secret(token)).await? {
        if row.client_id == client.client_id {
            let until = now + shared.config.refresh_token_ttl.as_secs() as i64;
            shared
                .store
                .revoke_family(&row.family_id, now, until)
                .await?;
            audit!(
                "token.revoked",
                token = "refresh_token",
                client_id = client.client_id.as_str(),
                grant_id = row.family_id.as_str(),
                ip
            );
        }
        return Ok(());
    }
    if let Some(claims) = shared
        .keys
        .verify::<AccessClaims>(token, ACCESS_TOKEN_TYP, &shared.config.issuer)
        .await
        && claims.client_id == client.client_id
    {
        shared
            .store
            .revoke_access_token(&claims.jti, claims.exp)
            .await?;
        audit!(
            "token.revoked",
            token = "access_token",
            client_id = client.client_id.as_str(),
            jti = claims.jti.as_str(),
            ip
        );
    }
    Ok(())
}
