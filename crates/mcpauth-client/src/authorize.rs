//! The authorization step of the code flow: building the authorization request (RFC 6749 §4.1.1,
//! RFC 7636, RFC 8707) and the front ends that carry it to the user and bring the response back.
//!
//! A front end works in two phases so that a loopback listener can bind its port before the
//! client registers its redirect URI: [`FrontEnd::prepare`] returns a [`PendingRedirect`] that
//! knows the redirect URI, and [`PendingRedirect::complete`] takes the authorization URL and
//! returns the authorization response.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use mcpauth_core::authorization_response::AuthorizationResponse;
use mcpauth_core::url_policy::require_secure;
use reqwest::header::LOCATION;

use crate::ClientError;
use crate::http::OAuthHttp;

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Carries authorization requests to the user (browser, paste, headless) and back.
pub trait FrontEnd: Send + Sync + std::fmt::Debug {
    /// Gets ready to receive one redirect (for example, binds a loopback listener).
    fn prepare(&self) -> BoxFuture<'_, Result<Box<dyn PendingRedirect>, ClientError>>;

    /// [`prepare`](Self::prepare), given the redirect URIs of the client's stored registration
    /// with this authorization server: a front end free to choose its redirect URI takes one of
    /// them when it can, so that registration is reused. The default ignores them.
    fn prepare_reusing<'a>(
        &'a self,
        registered: &'a [String],
    ) -> BoxFuture<'a, Result<Box<dyn PendingRedirect>, ClientError>> {
        let _ = registered;
        self.prepare()
    }

    /// Finishes a flow another process started and could not finish (it died): receives the
    /// response for `state` at that flow's `redirect_uri` within `timeout`, showing nothing new
    /// (the user already has the page open). `Ok(None)` when this front end cannot.
    fn resume<'a>(
        &'a self,
        _redirect_uri: &'a str,
        _state: &'a str,
        _timeout: Duration,
    ) -> BoxFuture<'a, Result<Option<AuthorizationResponse>, ClientError>> {
        Box::pin(async { Ok(None) })
    }
}

/// One authorization in progress.
pub trait PendingRedirect: Send {
    /// The redirect URI to register and send.
    fn redirect_uri(&self) -> &str;
    /// Sends the user to `authorization_url` and waits for the response at the redirect URI.
    fn complete(
        self: Box<Self>,
        authorization_url: String,
    ) -> BoxFuture<'static, Result<AuthorizationResponse, ClientError>>;
}

/// Shows the user what to do: the CLI opens a browser and prints the URL on stderr.
pub trait Presenter: Send + Sync + std::fmt::Debug {
    /// The user should visit `url` (an authorization URL, already checked against MCP SPEC C32).
    fn show_authorization_url(&self, url: &str);
    /// The user should type the paste prompt's answer (paste front end).
    fn ask_for_redirect(&self) {}
    /// The user should approve this device at the verification URI (RFC 8628 §3.3).
    fn show_device_code(&self, device: &mcpauth_core::device::DeviceAuthorization);
    /// The authorization step has finished (stop a spinner).
    fn done(&self) {}
}

/// Parameters of an authorization request; see [`authorization_url`].
#[derive(Debug)]
pub struct AuthorizationRequest<'a> {
    /// The authorization endpoint.
    pub endpoint: &'a str,
    /// The client id.
    pub client_id: &'a str,
    /// The redirect URI.
    pub redirect_uri: &'a str,
    /// The space-separated scope, if any (MCP SPEC C17: omitted when nothing is known).
    pub scope: Option<&'a str>,
    /// The `state`.
    pub state: &'a str,
    /// The S256 code challenge.
    pub code_challenge: &'a str,
    /// RFC 8707 `resource` (MCP SPEC C21).
    pub resource: Option<&'a str>,
    /// The thumbprint of the DPoP key the code is bound to (`dpop_jkt`, RFC 9449 §10).
    pub dpop_jkt: Option<&'a str>,
    /// Extra parameters (e.g. `audience`, `prompt`); protocol parameters are refused.
    pub extra: &'a [(String, String)],
}

/// Parameters a caller may not override in [`AuthorizationRequest::extra`].
pub const RESERVED_PARAMS: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "resource",
    "dpop_jkt",
];

/// Builds the authorization URL. The endpoint must be https or loopback http (MCP SPEC C30, C32).
///
/// ```
/// use mcpauth_client::authorize::{authorization_url, AuthorizationRequest};
/// let url = authorization_url(&AuthorizationRequest {
///     endpoint: "https://as.example/authorize", client_id: "c", redirect_uri: "http://127.0.0.1:5/cb",
///     scope: Some("read"), state: "s", code_challenge: "ch", resource: Some("https://mcp.example/mcp"),
///     dpop_jkt: None, extra: &[],
/// }, false).unwrap();
/// assert!(url.starts_with("https://as.example/authorize?response_type=code&client_id=c&"));
/// assert!(url.contains("&code_challenge_method=S256&resource=https%3A%2F%2Fmcp.example%2Fmcp"));
/// ```
pub fn authorization_url(
    req: &AuthorizationRequest<'_>,
    allow_insecure: bool,
) -> Result<String, ClientError> {
    let mut url = require_secure(req.endpoint, allow_insecure)?;
    if let Some((k, _)) = req
        .extra
        .iter()
        .find(|(k, _)| RESERVED_PARAMS.contains(&k.as_str()))
    {
        return Err(ClientError::Config(format!(
            "the authorization parameter {k:?} is set by mcpauth itself and cannot be overridden"
        )));
    }
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", req.client_id)
            .append_pair("redirect_uri", req.redirect_uri);
        if let Some(s) = req.scope.filter(|s| !s.is_empty()) {
            q.append_pair("scope", s);
        }
        q.append_pair("state", req.state)
            .append_pair("code_challenge", req.code_challenge)
            .append_pair("code_challenge_method", mcpauth_core::pkce::S256);
        if let Some(r) = req.resource {
            q.append_pair("resource", r);
        }
        if let Some(j) = req.dpop_jkt {
            q.append_pair("dpop_jkt", j);
        }
        for (k, v) in req.extra {
            q.append_pair(k, v);
        }
    }
    Ok(url.to_string())
}

/// A front end without a user: GETs the authorization URL without following redirects and reads
/// the response from the `Location` header. For tests, CI and servers that approve
/// automatically (such as the MCP conformance suite's authorization server).
#[derive(Clone, Debug)]
pub struct Headless {
    http: OAuthHttp,
    redirect_uri: String,
}

impl Headless {
    /// A headless front end announcing `redirect_uri` (nothing listens there).
    pub fn new(http: OAuthHttp, redirect_uri: impl Into<String>) -> Self {
        Self {
            http,
            redirect_uri: redirect_uri.into(),
        }
    }
}

impl FrontEnd for Headless {
    fn prepare(&self) -> BoxFuture<'_, Result<Box<dyn PendingRedirect>, ClientError>> {
        let pending: Box<dyn PendingRedirect> = Box::new(self.clone());
        Box::pin(async move { Ok(pending) })
    }
}

impl PendingRedirect for Headless {
    fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    fn complete(
        self: Box<Self>,
        authorization_url: String,
    ) -> BoxFuture<'static, Result<AuthorizationResponse, ClientError>> {
        Box::pin(async move {
            let fetched = self
                .http
                .get(&authorization_url, &Default::default())
                .await?;
            let location = fetched
                .headers
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| {
                    ClientError::Authorization(format!(
                        "the authorization endpoint answered HTTP {} without a redirect",
                        fetched.status.as_u16()
                    ))
                })?;
            let target = url::Url::parse(&authorization_url)
                .and_then(|base| base.join(location))
                .map_err(|e| ClientError::Authorization(format!("bad Location header: {e}")))?;
            let expected = url::Url::parse(&self.redirect_uri)
                .map_err(|e| ClientError::Config(format!("bad redirect URI: {e}")))?;
            if target.origin() != expected.origin() || target.path() != expected.path() {
                return Err(ClientError::Authorization(
                    "the authorization server redirected somewhere other than the redirect URI"
                        .into(),
                ));
            }
            Ok(AuthorizationResponse::from_query(
                target.query().unwrap_or_default(),
            ))
        })
    }
}
