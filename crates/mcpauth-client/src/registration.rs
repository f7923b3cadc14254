//! Obtaining a client id for an authorization server, in the order of MCP SPEC C9:
//! pre-registered -> client ID metadata document -> RFC 7591 dynamic registration -> error.
//! Registrations are bound to the issuer (MCP SPEC C15).

use mcpauth_core::url_policy::{is_loopback, parse_url};
use mcpauth_core::{
    AuthorizationServerMetadata, ClientInformation, ClientMetadata, ClientSecret, registration,
};

use crate::ClientError;
use crate::discovery::Discovered;
use crate::http::OAuthHttp;
use crate::store::{ClientRecord, RegistrationKind, SCHEMA_VERSION, TokenStore, now_unix};

/// How the token endpoint authenticates the client (RFC 6749 §2.3, RFC 7523 §2.2).
pub mod auth_method {
    /// A public client: `client_id` only.
    pub const NONE: &str = "none";
    /// HTTP Basic with the form-encoded id and secret.
    pub const CLIENT_SECRET_BASIC: &str = "client_secret_basic";
    /// Id and secret in the form body.
    pub const CLIENT_SECRET_POST: &str = "client_secret_post";
    /// A JWT assertion signed with the client's private key (RFC 7523).
    pub const PRIVATE_KEY_JWT: &str = "private_key_jwt";
}

/// A client registered out of band (MCP SPEC C13).
#[derive(Clone, Debug)]
pub struct StaticClient {
    /// The client id.
    pub client_id: String,
    /// The secret of a confidential client.
    pub client_secret: Option<ClientSecret>,
    /// The token endpoint authentication method; chosen from the metadata when `None`.
    pub auth_method: Option<String>,
    /// The issuer it was registered with; a different issuer is an error (MCP SPEC C15).
    pub issuer: Option<String>,
}

/// What the client may use to get a client id.
#[derive(Clone, Debug)]
pub struct ClientSettings {
    /// A pre-registered client, tried first.
    pub static_client: Option<StaticClient>,
    /// The HTTPS URL of this client's metadata document (MCP SPEC C11), tried second.
    pub metadata_document_url: Option<String>,
    /// Metadata for RFC 7591 dynamic registration; `None` disables it.
    pub dynamic: Option<ClientMetadata>,
}

impl Default for ClientSettings {
    fn default() -> Self {
        Self {
            static_client: None,
            metadata_document_url: None,
            dynamic: Some(ClientMetadata {
                client_name: Some("mcpauth".into()),
                client_uri: None,
                software_id: Some("mcpauth".into()),
                software_version: Some(env!("CARGO_PKG_VERSION").into()),
                ..Default::default()
            }),
        }
    }
}

/// Returns a client registration for the discovered authorization server, registering one if
/// needed. `redirect_uri` is the one the authorization step will use (none for grants without
/// redirects); `grant_types` are the grants this client will use.
pub async fn obtain_client(
    http: &OAuthHttp,
    store: &dyn TokenStore,
    discovered: &Discovered,
    settings: &ClientSettings,
    redirect_uri: Option<&str>,
    grant_types: &[&str],
) -> Result<ClientRecord, ClientError> {
    let meta = &discovered.authorization_server;
    let issuer = meta.issuer.as_str();
    if let Some(configured) = configured_client(meta, settings, redirect_uri)? {
        return Ok(configured);
    }
    if let Some(stored) = store.load_client(issuer)?
        && stored.kind == RegistrationKind::Dynamic
        && redirect_uri.is_none_or(|r| stored.redirect_uris.iter().any(|u| u == r))
        && stored
            .secret_expires_at
            .is_none_or(|t| t == 0 || t > now_unix() + 60)
    {
        return Ok(stored);
    }
    let Some(template) = &settings.dynamic else {
        return Err(no_registration(discovered, settings));
    };
    let Some(endpoint) = &meta.registration_endpoint else {
        return Err(no_registration(discovered, settings));
    };
    let record = register(
        http,
        discovered,
        endpoint,
        template,
        redirect_uri,
        grant_types,
    )
    .await?;
    store.save_client(&record)?;
    Ok(record)
}

/// The client the user configured for this authorization server, without any request: a
/// pre-registered client (refused if bound to another issuer, MCP SPEC C15), else the client ID
/// metadata document URL when the server supports those (C12). `None` when neither applies.
pub fn configured_client(
    meta: &AuthorizationServerMetadata,
    settings: &ClientSettings,
    redirect_uri: Option<&str>,
) -> Result<Option<ClientRecord>, ClientError> {
    let record = |client_id: String, secret, method: String, kind| ClientRecord {
        schema: SCHEMA_VERSION,
        issuer: meta.issuer.clone(),
        client_id,
        client_secret: secret,
        token_endpoint_auth_method: method,
        redirect_uris: redirect_uri.map(|r| vec![r.to_owned()]).unwrap_or_default(),
        kind,
        secret_expires_at: None,
        updated_at: now_unix(),
    };
    if let Some(s) = &settings.static_client {
        if let Some(bound) = &s.issuer
            && *bound != meta.issuer
        {
            return Err(ClientError::StaticClientIssuerMismatch {
                configured: bound.clone(),
                actual: meta.issuer.clone(),
            });
        }
        let method = s
            .auth_method
            .clone()
            .unwrap_or_else(|| choose_secret_method(meta, s.client_secret.is_some()).to_owned());
        return Ok(Some(record(
            s.client_id.clone(),
            s.client_secret.clone(),
            method,
            RegistrationKind::PreRegistered,
        )));
    }
    if let Some(url) = &settings.metadata_document_url
        && meta.supports_client_id_metadata_documents()
    {
        registration::check_client_id_url(url)?;
        return Ok(Some(record(
            url.clone(),
            None,
            auth_method::NONE.into(),
            RegistrationKind::MetadataDocument,
        )));
    }
    Ok(None)
}

fn no_registration(discovered: &Discovered, settings: &ClientSettings) -> ClientError {
    let meta = &discovered.authorization_server;
    let mut missing = Vec::new();
    if settings.metadata_document_url.is_none() {
        missing.push("no client ID metadata document URL is configured");
    } else if !meta.supports_client_id_metadata_documents() {
        missing.push("it does not advertise client_id_metadata_document_supported");
    }
    if settings.dynamic.is_none() {
        missing.push("dynamic registration is disabled");
    } else if meta.registration_endpoint.is_none() {
        missing.push("it has no registration_endpoint");
    }
    ClientError::NoRegistration {
        issuer: meta.issuer.clone(),
        reason: missing.join(", and "),
    }
}

/// The method for a client holding (or not) a secret, from what the server supports.
fn choose_secret_method(meta: &AuthorizationServerMetadata, has_secret: bool) -> &'static str {
    if !has_secret {
        return auth_method::NONE;
    }
    if meta.supports_auth_method(auth_method::CLIENT_SECRET_BASIC) {
        auth_method::CLIENT_SECRET_BASIC
    } else if meta.supports_auth_method(auth_method::CLIENT_SECRET_POST) {
        auth_method::CLIENT_SECRET_POST
    } else {
        auth_method::CLIENT_SECRET_BASIC
    }
}

/// RFC 7591 §3.1 registration with `application_type` (MCP SPEC C14) and `refresh_token` in
/// `grant_types` (MCP SPEC C25).
async fn register(
    http: &OAuthHttp,
    discovered: &Discovered,
    endpoint: &str,
    template: &ClientMetadata,
    redirect_uri: Option<&str>,
    grant_types: &[&str],
) -> Result<ClientRecord, ClientError> {
    let meta = &discovered.authorization_server;
    let mut request = template.clone();
    if let Some(r) = redirect_uri {
        request.redirect_uris = vec![r.to_owned()];
        if request.application_type.is_none() {
            let native = parse_url(r).map(|u| is_loopback(&u) || u.scheme() != "https")?;
            request.application_type = Some(if native { "native" } else { "web" }.into());
        }
    }
    if request.grant_types.is_empty() {
        request.grant_types = grant_types.iter().map(|g| (*g).to_owned()).collect();
        // MCP SPEC C25: user-delegated grants ask for refresh tokens.
        if grant_types.iter().any(|g| *g != "client_credentials") {
            request.grant_types.push("refresh_token".into());
        }
        if grant_types.contains(&"authorization_code") {
            request.response_types = vec!["code".into()];
        }
    }
    if redirect_uri.is_none()
        && request.application_type.is_none()
        && request.redirect_uris.is_empty()
    {
        // A device-flow or machine client runs on the user's machine or a server without a
        // browser redirect: a native application (MCP SPEC C14).
        request.application_type = Some("native".into());
    }
    if request.token_endpoint_auth_method.is_none() {
        let method = match &meta.token_endpoint_auth_methods_supported {
            Some(m) if !m.iter().any(|m| m == auth_method::NONE) => {
                choose_secret_method(meta, true)
            }
            _ => auth_method::NONE,
        };
        request.token_endpoint_auth_method = Some(method.into());
    }
    let body = serde_json::to_value(&request).map_err(|e| ClientError::Config(e.to_string()))?;
    let fetched = http.post_json(endpoint, &body).await?;
    if !fetched.status.is_success() {
        return Err(match fetched.oauth_error() {
            Some(error) => ClientError::OAuth {
                context: "dynamic client registration (RFC 7591) was refused",
                status: fetched.status.as_u16(),
                error,
            },
            None => ClientError::UnexpectedStatus {
                context: "dynamic client registration (RFC 7591)",
                url: endpoint.to_owned(),
                status: fetched.status.as_u16(),
                body: fetched.body_excerpt(),
            },
        });
    }
    let info = ClientInformation::from_json(&fetched.body)?;
    let method = info
        .metadata
        .token_endpoint_auth_method
        .clone()
        .unwrap_or_else(|| choose_secret_method(meta, info.client_secret.is_some()).to_owned());
    let redirect_uris = if info.metadata.redirect_uris.is_empty() {
        request.redirect_uris
    } else {
        info.metadata.redirect_uris
    };
    tracing::info!(issuer = %meta.issuer, client_id = %info.client_id, "registered a client (RFC 7591)");
    Ok(ClientRecord {
        schema: SCHEMA_VERSION,
        issuer: meta.issuer.clone(),
        client_id: info.client_id,
        client_secret: info.client_secret,
        token_endpoint_auth_method: method,
        redirect_uris,
        kind: RegistrationKind::Dynamic,
        secret_expires_at: info.client_secret_expires_at,
        updated_at: now_unix(),
    })
}
