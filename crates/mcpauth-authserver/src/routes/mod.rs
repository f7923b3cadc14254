//! HTTP endpoints.

pub(crate) mod account;
pub(crate) mod authorize;
pub(crate) mod device;
pub(crate) mod introspect;
pub(crate) mod metadata;
pub(crate) mod register;
pub(crate) mod revoke;
pub(crate) mod token;

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::client_auth::{TokenError, authenticate};
use crate::clients::Client;
use crate::params::{Params, invalid_request};
use crate::rate_limit::Bucket;
use crate::server::{Shared, client_ip};

/// The state every handler gets.
pub(crate) type AppState = axum::extract::State<Arc<Shared>>;

/// The client's IP address for rate limits (the TCP peer, or whom a trusted proxy forwards for).
pub(crate) struct PeerIp(pub String);

impl FromRequestParts<Arc<Shared>> for PeerIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        shared: &Arc<Shared>,
    ) -> Result<Self, Self::Rejection> {
        Ok(PeerIp(client_ip(parts, &shared.config.trusted_proxies)))
    }
}

/// A JSON response with `Cache-Control: no-store` (RFC 6749 §5.1).
pub(crate) fn no_store_json(
    status: axum::http::StatusCode,
    body: &impl serde::Serialize,
) -> Response {
    let mut resp = (status, axum::Json(body)).into_response();
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

/// The form of a request to the client-authenticated endpoint at `path`, and its client, after
/// the per-IP rate limit.
pub(crate) async fn authenticated(
    shared: &Shared,
    ip: &str,
    headers: &HeaderMap,
    body: &[u8],
    path: &str,
) -> Result<(Params, Client), TokenError> {
    if !shared.allow(Bucket::TokenIp, ip) {
        return Err(TokenError::rate_limited());
    }
    let params = Params::parse(body)?;
    let client = authenticate(shared, headers, &params, &shared.config.endpoint(path)).await?;
    Ok((params, client))
}

/// A client-authenticated request about one `token` (RFC 7009 §2.1, RFC 7662 §2.1), after the
/// per-IP rate limit.
pub(crate) struct TokenQuery {
    pub client: Client,
    pub token: String,
}

impl TokenQuery {
    pub(crate) async fn parse(
        shared: &Shared,
        ip: &str,
        headers: &HeaderMap,
        body: &[u8],
        path: &str,
    ) -> Result<TokenQuery, TokenError> {
        let (params, client) = authenticated(shared, ip, headers, body, path).await?;
        let token = params
            .get("token")
            .ok_or_else(|| invalid_request("token is required"))?
            .to_owned();
        Ok(TokenQuery { client, token })
    }
}
