//! Dynamic client registration (RFC 7591; MCP SPEC A3, C14): open with a rate limit, or behind
//! an initial access token; redirect-URI rules per `application_type`.

use crate::audit::audit;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use mcpauth_core::registration::check_client_name;
use mcpauth_core::{
    ClientInformation, ClientMetadata, ClientSecret, ErrorCode, OAuthError, constant_time_eq,
};

use super::{AppState, PeerIp, no_store_json};
use crate::clients::{
    AuthMethod, ClientKind, application_type, dynamic_expiry, validate_redirect_uris,
};
use crate::params::oauth_error;
use crate::rate_limit::Bucket;
use crate::secrets::{hash_secret, now, random_bytes_b64, random_secret};
use crate::server::Shared;
use crate::store::ClientRow;

fn error(status: StatusCode, e: OAuthError) -> Response {
    no_store_json(status, &e)
}

/// A refusal: status and RFC 7591 §3.2.2 error.
type Refusal = (StatusCode, OAuthError);

fn bad_metadata(d: &str) -> Refusal {
    (
        StatusCode::BAD_REQUEST,
        oauth_error(ErrorCode::InvalidClientMetadata, d),
    )
}

fn bad_redirect(d: &str) -> Refusal {
    (
        StatusCode::BAD_REQUEST,
        oauth_error(ErrorCode::InvalidRedirectUri, d),
    )
}

/// `POST /register`.
pub(crate) async fn register(
    State(shared): AppState,
    PeerIp(ip): PeerIp,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !shared.allow(Bucket::Register, &ip) {
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            oauth_error(
                ErrorCode::TemporarilyUnavailable,
                "too many registrations; slow down",
            ),
        );
    }
    if let Some(expected) = &shared.registration_token_hash {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(|t| hash_secret(t.trim()));
        if !presented.is_some_and(|p| constant_time_eq(p.as_bytes(), expected.as_bytes())) {
            let mut resp = error(
                StatusCode::UNAUTHORIZED,
                oauth_error(
                    ErrorCode::InvalidToken,
                    "registration requires a valid initial access token (RFC 7591 §3)",
                ),
            );
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
            return resp;
        }
    }
    let metadata: ClientMetadata = match serde_json::from_slice(&body) {
        Ok(m) => m,
        Err(e) => {
            let (status, e) = bad_metadata(&format!("the body is not client metadata JSON: {e}"));
            return error(status, e);
        }
    };
    match register_client(&shared, metadata).await {
        Ok(info) => {
            audit!(
                "client.registered",
                client_id = info.client_id.as_str(),
                ip = ip.as_str()
            );
            no_store_json(StatusCode::CREATED, &info)
        }
        Err((status, e)) => error(status, e),
    }
}

/// Checks and normalises metadata for dynamic registration.
pub(crate) fn check_metadata(
    shared: &Shared,
    mut m: ClientMetadata,
) -> Result<(ClientMetadata, AuthMethod), Refusal> {
    let method_name = m
        .token_endpoint_auth_method
        .clone()
        .unwrap_or_else(|| "client_secret_basic".into());
    let method = AuthMethod::parse(&method_name).ok_or_else(|| {
        bad_metadata(&format!(
            "token_endpoint_auth_method {method_name:?} is not supported"
        ))
    })?;
    if method == AuthMethod::PrivateKeyJwt {
        match (&m.jwks, &m.jwks_uri) {
            (Some(_), None) => {}
            (None, Some(uri)) if uri.starts_with("https://") => {}
            _ => {
                return Err(bad_metadata(
                    "private_key_jwt needs exactly one of jwks or an https jwks_uri",
                ));
            }
        }
    }
    if m.grant_types.is_empty() {
        m.grant_types = vec!["authorization_code".into()];
    }
    if let Some(g) = m.grant_types.iter().find(|g| {
        !matches!(
            g.as_str(),
            "authorization_code" | "refresh_token" | super::device::DEVICE_GRANT
        )
    }) {
        return Err(bad_metadata(&format!(
            "grant type {g:?} cannot be registered dynamically (client_credentials clients are \
             pre-registered by an administrator)"
        )));
    }
    if m.response_types.is_empty() {
        m.response_types = vec!["code".into()];
    }
    if m.response_types.iter().any(|r| r != "code") {
        return Err(bad_metadata("only the response type \"code\" is supported"));
    }
    // RFC 7591 §2: the name is presented to the end user; one that could disguise the client
    // is invalid_client_metadata (§3.2.2; security finding 12).
    if let Some(name) = &m.client_name {
        check_client_name(name).map_err(|e| bad_metadata(&e.to_string()))?;
    }
    if let Some(t) = &m.application_type
        && t != "native"
        && t != "web"
    {
        return Err(bad_metadata(
            "application_type must be \"native\" or \"web\"",
        ));
    }
    if m.grant_types.iter().any(|g| g == "authorization_code") && m.redirect_uris.is_empty() {
        return Err(bad_redirect("redirect_uris is required"));
    }
    let app_type = application_type(&m);
    validate_redirect_uris(app_type, &m.redirect_uris).map_err(|d| bad_redirect(&d))?;
    let supported = &shared.config.scopes_supported;
    if let Some(scope) = &m.scope
        && !supported.is_empty()
        && let Some(bad) = scope
            .split(' ')
            .find(|s| !s.is_empty() && *s != "offline_access" && !supported.iter().any(|x| x == s))
    {
        return Err(bad_metadata(&format!("scope {bad:?} is not supported")));
    }
    m.application_type = Some(app_type.into());
    m.token_endpoint_auth_method = Some(method.as_str().into());
    Ok((m, method))
}

async fn register_client(
    shared: &Shared,
    metadata: ClientMetadata,
) -> Result<ClientInformation, Refusal> {
    let (metadata, method) = check_metadata(shared, metadata)?;
    let client_id = random_bytes_b64(18);
    let secret = method.uses_secret().then(random_secret);
    let now = now();
    let expires_at = dynamic_expiry(&shared.config, now);
    let row = ClientRow {
        client_id: client_id.clone(),
        kind: ClientKind::Dynamic.as_str().into(),
        auth_method: method.as_str().into(),
        secret_hash: secret.as_deref().map(hash_secret),
        metadata: serde_json::to_string(&metadata).unwrap_or_default(),
        created_at: now,
        expires_at,
    };
    if let Err(e) = shared.store.insert_client(&row).await {
        tracing::error!(error = %e, "storing a registered client failed");
        return Err((
            StatusCode::INTERNAL_SERVER_ERROR,
            oauth_error(ErrorCode::ServerError, "internal error"),
        ));
    }
    Ok(ClientInformation {
        client_id,
        // RFC 7591 §3.2.1: required with a secret, which lasts as long as the registration
        // (0: never).
        client_secret_expires_at: secret.as_ref().map(|_| expires_at.map_or(0, |e| e as u64)),
        client_secret: secret.map(ClientSecret::new),
        client_id_issued_at: Some(now as u64),
        metadata,
    })
}
