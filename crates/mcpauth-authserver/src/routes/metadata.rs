//! Authorization server metadata (RFC 8414, OpenID Connect Discovery 1.0; MCP SPEC A2, A4, A5,
//! A12) and the JWKS.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mcpauth_core::AuthorizationServerMetadata;
use mcpauth_core::jose::JwsAlgorithm;
use mcpauth_core::pkce::S256;
use serde_json::json;

use super::AppState;
use crate::client_auth::CLIENT_ASSERTION_ALGORITHMS;
use crate::config::{Config, RegistrationPolicy};

/// Where the metadata is served: for an issuer with a path, path-inserted (RFC 8414 §3.1) and
/// OpenID's path-appended form (MCP SPEC C5); otherwise the root well-known URIs.
pub(crate) fn metadata_paths(config: &Config) -> Vec<String> {
    let path = config.issuer_path();
    if path.is_empty() {
        vec![
            "/.well-known/oauth-authorization-server".into(),
            "/.well-known/openid-configuration".into(),
        ]
    } else {
        vec![
            format!("/.well-known/oauth-authorization-server{path}"),
            format!("/.well-known/openid-configuration{path}"),
            format!("{path}/.well-known/openid-configuration"),
        ]
    }
}

fn strings(v: &[&str]) -> Option<Vec<String>> {
    Some(v.iter().map(|s| s.to_string()).collect())
}

/// The metadata document (the same for both kinds: it satisfies OpenID Discovery's required
/// members too).
pub(crate) async fn metadata(State(shared): AppState) -> Response {
    let c = &shared.config;
    let auth_methods = [
        "none",
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
    ];
    let client_auth_algs = CLIENT_ASSERTION_ALGORITHMS.map(JwsAlgorithm::as_str);
    let mut extra = serde_json::Map::new();
    extra.insert("response_modes_supported".into(), json!(["query"]));
    extra.insert("subject_types_supported".into(), json!(["public"]));
    // RFC 9449 §5.1 (SPEC D6): asymmetric proof algorithms only, never `none`.
    extra.insert(
        "dpop_signing_alg_values_supported".into(),
        json!(crate::dpop::DPOP_ALGORITHMS.map(JwsAlgorithm::as_str)),
    );
    // ID-JAG §"Authorization Server Metadata" (SPEC E1): the grant profile, when an IdP is trusted.
    if crate::jwt_grant::accepts_id_jags(&shared) {
        extra.insert(
            "authorization_grant_profiles_supported".into(),
            json!([crate::jwt_grant::ID_JAG_PROFILE]),
        );
    }
    extra.insert(
        "id_token_signing_alg_values_supported".into(),
        json!(shared.keys.algorithms()),
    );
    for endpoint in ["revocation", "introspection"] {
        // Introspection answers confidential clients only (RFC 7662 §2.1).
        let methods: &[&str] = if endpoint == "introspection" {
            &auth_methods[1..]
        } else {
            &auth_methods
        };
        extra.insert(
            format!("{endpoint}_endpoint_auth_methods_supported"),
            json!(methods),
        );
        extra.insert(
            format!("{endpoint}_endpoint_auth_signing_alg_values_supported"),
            json!(client_auth_algs),
        );
    }
    let doc = AuthorizationServerMetadata {
        issuer: c.issuer.clone(),
        authorization_endpoint: Some(c.endpoint("/authorize")),
        token_endpoint: Some(c.endpoint("/token")),
        jwks_uri: Some(c.endpoint("/jwks")),
        registration_endpoint: (!matches!(c.registration, RegistrationPolicy::Disabled))
            .then(|| c.endpoint("/register")),
        scopes_supported: (!c.scopes_supported.is_empty()).then(|| c.scopes_supported.clone()),
        response_types_supported: strings(&["code"]),
        grant_types_supported: strings(&[
            "authorization_code",
            "refresh_token",
            "client_credentials",
            crate::routes::device::DEVICE_GRANT,
        ])
        .map(|mut g| {
            if !c.trusted_issuers.is_empty() {
                g.push(crate::jwt_grant::JWT_BEARER_GRANT.into());
            }
            g
        }),
        token_endpoint_auth_methods_supported: strings(&auth_methods),
        token_endpoint_auth_signing_alg_values_supported: strings(&client_auth_algs),
        revocation_endpoint: Some(c.endpoint("/revoke")),
        introspection_endpoint: Some(c.endpoint("/introspect")),
        device_authorization_endpoint: Some(c.endpoint("/device_authorization")),
        code_challenge_methods_supported: strings(&[S256]),
        authorization_response_iss_parameter_supported: Some(true),
        client_id_metadata_document_supported: Some(c.fetch.enabled),
        extra,
    };
    let mut resp = axum::Json(doc).into_response();
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    resp
}

/// The JWK set with the current and previous signing keys.
pub(crate) async fn jwks(State(shared): AppState) -> Response {
    match shared.keys.jwks().await {
        Ok(set) => {
            let mut resp = axum::Json(set).into_response();
            resp.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=300"),
            );
            resp
        }
        Err(e) => {
            tracing::error!(error = %e, "loading signing keys failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
