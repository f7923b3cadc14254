//! Clients: pre-registered (admin), dynamically registered (RFC 7591) and URL client ids whose
//! metadata document is fetched (MCP SPEC A9); redirect-URI rules and exact matching with the
//! RFC 8252 §7.3 port relaxation for loopback only (MCP SPEC A8).

use std::time::Duration;

use mcpauth_core::registration::{check_client_id_url, check_client_name};
use mcpauth_core::url_policy::is_loopback;
use mcpauth_core::{ClientIdMetadataDocument, ClientMetadata};
use url::{Host, Url};

use crate::config::Config;
use crate::error::AuthServerError;
use crate::fetch;
use crate::secrets::now;
use crate::server::Shared;
use crate::store::ClientRow;

/// How a client authenticates at the token endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    /// A public client (`none`).
    None,
    /// `client_secret_basic`
    SecretBasic,
    /// `client_secret_post`
    SecretPost,
    /// `private_key_jwt` (RFC 7523)
    PrivateKeyJwt,
}

impl AuthMethod {
    /// The RFC 7591 name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::None => "none",
            AuthMethod::SecretBasic => "client_secret_basic",
            AuthMethod::SecretPost => "client_secret_post",
            AuthMethod::PrivateKeyJwt => "private_key_jwt",
        }
    }

    /// Parses an RFC 7591 name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            AuthMethod::None,
            AuthMethod::SecretBasic,
            AuthMethod::SecretPost,
            AuthMethod::PrivateKeyJwt,
        ]
        .into_iter()
        .find(|m| m.as_str() == s)
    }

    /// Whether the method uses a shared secret.
    pub fn uses_secret(self) -> bool {
        matches!(self, AuthMethod::SecretBasic | AuthMethod::SecretPost)
    }
}

/// Where a client came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientKind {
    /// Added by an administrator.
    Static,
    /// Registered through `/register`.
    Dynamic,
    /// A URL client id whose metadata document was fetched.
    MetadataDocument,
}

impl ClientKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ClientKind::Static => "static",
            ClientKind::Dynamic => "dynamic",
            ClientKind::MetadataDocument => "metadata_document",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "static" => ClientKind::Static,
            "dynamic" => ClientKind::Dynamic,
            _ => ClientKind::MetadataDocument,
        }
    }
}

/// A client as the protocol code sees it.
#[derive(Clone, Debug)]
pub(crate) struct Client {
    pub client_id: String,
    pub kind: ClientKind,
    pub auth_method: AuthMethod,
    pub secret_hash: Option<String>,
    pub metadata: ClientMetadata,
    /// Unix seconds: when a dynamic client's registration expires, or when a metadata
    /// document's cached copy does.
    pub expires_at: Option<i64>,
}

impl Client {
    pub(crate) fn from_row(row: &ClientRow) -> Result<Client, AuthServerError> {
        let metadata: ClientMetadata =
            serde_json::from_str(&row.metadata).map_err(|e| AuthServerError::Invalid {
                what: "stored client metadata",
                reason: e.to_string(),
            })?;
        Ok(Client {
            client_id: row.client_id.clone(),
            kind: ClientKind::parse(&row.kind),
            auth_method: AuthMethod::parse(&row.auth_method).unwrap_or(AuthMethod::None),
            secret_hash: row.secret_hash.clone(),
            metadata,
            expires_at: row.expires_at,
        })
    }

    /// Whether this is a dynamically registered client whose registration has expired.
    fn expired(&self, now: i64) -> bool {
        self.kind == ClientKind::Dynamic && self.expires_at.is_some_and(|e| e <= now)
    }

    /// The name to show on the consent page: the client id instead of a name that could
    /// disguise the client (one stored before such names were refused: security finding 12).
    pub(crate) fn display_name(&self) -> &str {
        self.metadata
            .client_name
            .as_deref()
            .filter(|n| check_client_name(n).is_ok())
            .unwrap_or(&self.client_id)
    }

    /// Whether the client may use `grant_type`. Without `grant_types`, RFC 7591 §2 implies
    /// `authorization_code`.
    pub(crate) fn allows_grant(&self, grant_type: &str) -> bool {
        if self.metadata.grant_types.is_empty() {
            return grant_type == "authorization_code";
        }
        self.metadata.grant_types.iter().any(|g| g == grant_type)
    }

    /// Whether a confidential client (one that can authenticate).
    pub(crate) fn is_confidential(&self) -> bool {
        self.auth_method != AuthMethod::None
    }
}

/// Why a client id could not be resolved.
#[derive(Debug)]
pub(crate) enum LookupError {
    /// No such client.
    Unknown,
    /// A URL client id whose document is invalid (what is wrong with it may be shown).
    Document(String),
    /// A URL client id whose document could not be fetched. Why is logged, never shown: it
    /// would reveal what internal names resolve to (security finding 10).
    NotFetched,
    /// The database failed.
    Internal(AuthServerError),
}

impl From<AuthServerError> for LookupError {
    fn from(e: AuthServerError) -> Self {
        LookupError::Internal(e)
    }
}

/// Whether `client_id` is a URL client id (a client ID metadata document).
pub(crate) fn is_url_client_id(client_id: &str) -> bool {
    client_id.starts_with("https://")
}

/// Finds a client: in the database, or, for a URL client id, from its cached or freshly fetched
/// metadata document (MCP SPEC A9).
pub(crate) async fn resolve(shared: &Shared, client_id: &str) -> Result<Client, LookupError> {
    if client_id.is_empty() || client_id.len() > 2048 {
        return Err(LookupError::Unknown);
    }
    let now = now();
    if let Some(client) = shared.store.cached_client(client_id)
        && !client.expired(now)
    {
        return Ok(client);
    }
    let row = shared.store.client(client_id).await?;
    let remaining = |e: i64| (e > now).then(|| Duration::from_secs((e - now) as u64));
    let max_age = match &row {
        // A dynamic client until its registration expires, if it does; then it is unknown.
        Some(row) if row.kind == ClientKind::Dynamic.as_str() => {
            row.expires_at.map_or(Some(Duration::MAX), remaining)
        }
        Some(row) if row.kind != ClientKind::MetadataDocument.as_str() => Some(Duration::MAX),
        // A cached metadata document is used until its own expiry.
        Some(row) => row.expires_at.and_then(remaining),
        None => None,
    };
    if let (Some(row), Some(max_age)) = (row, max_age) {
        let client = Client::from_row(&row)?;
        shared.store.cache_client(&client, max_age);
        return Ok(client);
    }
    if !is_url_client_id(client_id) || !shared.config.fetch.enabled {
        return Err(LookupError::Unknown);
    }
    check_client_id_url(client_id).map_err(|e| LookupError::Document(e.to_string()))?;
    let fetched = fetch::fetch(&shared.config.fetch, client_id)
        .await
        .map_err(|e| {
            e.log("a client ID metadata document");
            LookupError::NotFetched
        })?;
    let doc = ClientIdMetadataDocument::from_json_for_url(&fetched.body, client_id)
        .map_err(|e| LookupError::Document(e.to_string()))?;
    let method = doc
        .metadata
        .token_endpoint_auth_method
        .as_deref()
        .unwrap_or("none");
    let auth_method = match AuthMethod::parse(method) {
        Some(m @ (AuthMethod::None | AuthMethod::PrivateKeyJwt)) => m,
        _ => {
            return Err(LookupError::Document(format!(
                "a client ID metadata document cannot use token_endpoint_auth_method {method:?} \
                 (no shared secret exists); use none or private_key_jwt"
            )));
        }
    };
    if auth_method == AuthMethod::PrivateKeyJwt
        && doc.metadata.jwks.is_none()
        && doc.metadata.jwks_uri.is_none()
    {
        return Err(LookupError::Document(
            "private_key_jwt needs jwks or jwks_uri".into(),
        ));
    }
    let app_type = application_type(&doc.metadata);
    validate_redirect_uris(app_type, &doc.metadata.redirect_uris).map_err(LookupError::Document)?;
    let row = ClientRow {
        client_id: client_id.to_owned(),
        kind: ClientKind::MetadataDocument.as_str().into(),
        auth_method: auth_method.as_str().into(),
        secret_hash: None,
        metadata: serde_json::to_string(&doc.metadata).unwrap_or_default(),
        created_at: now,
        expires_at: Some(now + fetched.cache_for.as_secs() as i64),
    };
    if fetched.cache_for > Duration::ZERO {
        shared.store.upsert_metadata_document(&row).await?;
    }
    let client = Client::from_row(&row)?;
    // Fresh for exactly its max-age from now (the stored expiry has whole seconds).
    shared.store.cache_client(&client, fetched.cache_for);
    Ok(client)
}

/// When a dynamic client registered or used at `now` expires: `now` +
/// [`Config::dynamic_client_ttl`](crate::Config::dynamic_client_ttl), or never.
pub(crate) fn dynamic_expiry(config: &Config, now: i64) -> Option<i64> {
    let ttl = config.dynamic_client_ttl?;
    Some(now.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)))
}

/// Moves the expiry of a dynamic client used at the token endpoint to now + TTL, once it was set
/// more than a day ago (half the TTL, if that is shorter). The decision is taken from `client`,
/// usually the cached copy, so the token endpoint writes at most once a day per client, not on
/// every request. Other clients, and every client when there is no TTL, are left alone.
pub(crate) async fn slide_expiry(shared: &Shared, client: &Client) -> Result<(), AuthServerError> {
    let config = &shared.config;
    let (ClientKind::Dynamic, Some(ttl), Some(wanted)) = (
        client.kind,
        config.dynamic_client_ttl,
        dynamic_expiry(config, now()),
    ) else {
        return Ok(());
    };
    let step = i64::try_from((ttl / 2).as_secs())
        .unwrap_or(i64::MAX)
        .min(SLIDE_INTERVAL);
    let stale_before = wanted.saturating_sub(step);
    if client.expires_at.is_some_and(|e| e >= stale_before) {
        return Ok(());
    }
    shared
        .store
        .slide_client_expiry(&client.client_id, wanted, stale_before)
        .await
}

/// How often at most the token endpoint moves a dynamic client's expiry: a day, in seconds.
const SLIDE_INTERVAL: i64 = 24 * 3600;

/// `native` or `web`: the declared `application_type`, else inferred from the redirect URIs
/// (all loopback or custom-scheme: native).
pub(crate) fn application_type(m: &ClientMetadata) -> &'static str {
    match m.application_type.as_deref() {
        Some("native") => "native",
        Some(_) => "web",
        None if !m.redirect_uris.is_empty()
            && m.redirect_uris
                .iter()
                .all(|u| Url::parse(u).is_ok_and(|u| u.scheme() != "https" || is_loopback(&u))) =>
        {
            "native"
        }
        None => "web",
    }
}

/// Checks redirect URIs for an application type (OIDC Registration §2, RFC 8252 §7, OAuth 2.1
/// §2.3): absolute, no fragment, no dangerous scheme; `web`: https on a non-loopback host;
/// `native`: http on a loopback host, https, or a private-use scheme.
pub(crate) fn validate_redirect_uris(app_type: &str, uris: &[String]) -> Result<(), String> {
    for raw in uris {
        let url = Url::parse(raw).map_err(|e| format!("redirect URI {raw:?} is invalid: {e}"))?;
        if url.fragment().is_some() {
            return Err(format!("redirect URI {raw:?} must not have a fragment"));
        }
        let scheme = url.scheme();
        if matches!(
            scheme,
            "javascript" | "data" | "file" | "vbscript" | "about" | "blob"
        ) {
            return Err(format!("redirect URI {raw:?} uses a forbidden scheme"));
        }
        let ok = match (app_type, scheme) {
            ("web", "https") => !is_loopback(&url),
            ("web", _) => false,
            (_, "https") => true,
            (_, "http") => is_loopback(&url),
            // A private-use URI scheme (RFC 8252 §7.1).
            (_, _) => true,
        };
        if !ok {
            return Err(format!(
                "redirect URI {raw:?} is not allowed for a {app_type} client: web clients use \
                 https on a public host; native clients use http on a loopback address, https, \
                 or a private-use scheme"
            ));
        }
    }
    Ok(())
}

/// Whether `uri` is an http redirect URI on a loopback IP literal or `localhost`.
pub(crate) fn is_loopback_redirect(uri: &str) -> bool {
    Url::parse(uri).is_ok_and(|u| u.scheme() == "http" && is_loopback(&u))
}

/// Exact matching of a requested redirect URI against the registered ones (MCP SPEC A8). The
/// only relaxation is RFC 8252 §7.3: for http loopback redirect URIs the port may differ.
pub(crate) fn redirect_uri_allowed(registered: &[String], requested: &str) -> bool {
    if registered.iter().any(|r| r == requested) {
        return true;
    }
    let Ok(req) = Url::parse(requested) else {
        return false;
    };
    // The requested string must be in canonical form so that no normalisation can make two
    // different strings compare equal below.
    if req.as_str() != requested || req.scheme() != "http" || !is_loopback_ip_host(&req) {
        return false;
    }
    let strip = |u: &Url| {
        let mut u = u.clone();
        let _ = u.set_port(None);
        u.to_string()
    };
    registered.iter().any(|r| {
        Url::parse(r).is_ok_and(|reg| {
            reg.scheme() == "http"
                && is_loopback_ip_host(&reg)
                && reg.host() == req.host()
                && strip(&reg) == strip(&req)
        })
    })
}

fn is_loopback_ip_host(u: &Url) -> bool {
    match u.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a8_exact_match_with_loopback_port_relaxation_only() {
        let r = reg(&["https://app.example.com/cb", "http://127.0.0.1:1234/cb"]);
        assert!(redirect_uri_allowed(&r, "https://app.example.com/cb"));
        assert!(!redirect_uri_allowed(
            &r,
            "https://app.example.com.evil.com/cb"
        ));
        assert!(!redirect_uri_allowed(
            &r,
            "https://app.example.com/cb/extra"
        ));
        assert!(!redirect_uri_allowed(&r, "https://app.example.com:8443/cb"));
        assert!(!redirect_uri_allowed(&r, "https://APP.example.com/cb"));
        assert!(redirect_uri_allowed(&r, "http://127.0.0.1:5555/cb"));
        assert!(redirect_uri_allowed(&r, "http://127.0.0.1/cb"));
        assert!(!redirect_uri_allowed(&r, "http://127.0.0.1:5555/cb2"));
        assert!(!redirect_uri_allowed(&r, "http://127.0.0.2:5555/cb"));
        assert!(!redirect_uri_allowed(&r, "http://127.0.0.1:5555/x/../cb"));
    }

    #[test]
    fn c14_redirect_uri_rules_per_application_type() {
        assert!(validate_redirect_uris("web", &reg(&["https://a.example/cb"])).is_ok());
        assert!(validate_redirect_uris("web", &reg(&["http://127.0.0.1/cb"])).is_err());
        assert!(validate_redirect_uris("web", &reg(&["http://a.example/cb"])).is_err());
        assert!(validate_redirect_uris("native", &reg(&["http://127.0.0.1:9/cb"])).is_ok());
        assert!(validate_redirect_uris("native", &reg(&["http://localhost/cb"])).is_ok());
        assert!(validate_redirect_uris("native", &reg(&["com.example.app:/cb"])).is_ok());
        assert!(validate_redirect_uris("native", &reg(&["http://a.example/cb"])).is_err());
        assert!(validate_redirect_uris("native", &reg(&["javascript:alert(1)"])).is_err());
        assert!(validate_redirect_uris("web", &reg(&["https://a.example/cb#f"])).is_err());
    }

    #[test]
    fn application_type_is_inferred_when_absent() {
        let mut m = ClientMetadata {
            redirect_uris: reg(&["http://127.0.0.1/cb"]),
            ..Default::default()
        };
        assert_eq!(application_type(&m), "native");
        m.redirect_uris = reg(&["https://a.example/cb"]);
        assert_eq!(application_type(&m), "web");
        m.application_type = Some("native".into());
        assert_eq!(application_type(&m), "native");
    }
}
