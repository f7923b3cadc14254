//! An HTTP client that authenticates itself: `Authorization: Bearer` on every request (never
//! the query string, MCP SPEC C23), or `Authorization: DPoP` with a fresh proof for a DPoP-bound
//! token (SPEC D1), one replay with the server's nonce on `use_dpop_nonce` (D2), a new token and
//! one replay on 401 (C4), step-up on 403 `insufficient_scope` (C26), and at most three
//! authorization attempts per request.

use std::sync::Arc;

use mcpauth_core::www_authenticate::BearerChallenge;
use reqwest::StatusCode;
use reqwest::header::{HeaderName, HeaderValue, WWW_AUTHENTICATE};

use crate::ClientError;
use crate::dpop;
use crate::session::Session;

/// Authorization attempts per request before giving up (MCP SPEC C26).
pub const MAX_ATTEMPTS: u32 = 3;

/// Sends requests to an MCP server with a token from a [`Session`].
#[derive(Clone, Debug)]
pub struct AuthenticatedClient {
    session: Arc<Session>,
    http: reqwest::Client,
}

impl AuthenticatedClient {
    /// Uses `http` (build it without redirects to cross-origin hosts) for MCP requests.
    pub fn new(session: Arc<Session>, http: reqwest::Client) -> Self {
        Self { session, http }
    }

    /// The session.
    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }

    /// The underlying HTTP client.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Sends the request `build` makes, authenticating as needed. `build` is called again for
    /// every replay, so it must be repeatable.
    pub async fn send<F>(&self, build: F) -> Result<reqwest::Response, ClientError>
    where
        F: Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    {
        let mut token = self.session.cached_token().await?;
        let mut attempts = 0;
        let mut nonce_retried = false;
        loop {
            let failed = |error| ClientError::request_failed("MCP request", error);
            let mut request = build(&self.http).build().map_err(failed)?;
            let mut proved = false;
            if let Some(t) = &token {
                let (method, url) = (request.method().to_string(), request.url().to_string());
                for (name, value) in self.session.credential_headers(t, &method, &url).await? {
                    proved |= name == dpop::DPOP;
                    let bad = || ClientError::Config(format!("the {name} header is not valid"));
                    let value = HeaderValue::from_str(&value).map_err(|_| bad())?;
                    let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad())?;
                    request.headers_mut().insert(name, value);
                }
            }
            let url = request.url().to_string();
            let response = self.http.execute(request).await.map_err(failed)?;
            let status = response.status();
            if proved {
                let fresh = self.session.nonces().remember(&url, response.headers());
                // SPEC D2: one replay with the resource server's new nonce.
                if fresh && !nonce_retried && dpop::resource_wants_nonce(status, response.headers())
                {
                    nonce_retried = true;
                    continue;
                }
            }
            if status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN {
                return Ok(response);
            }
            let challenge = BearerChallenge::from_headers(
                response
                    .headers()
                    .get_all(WWW_AUTHENTICATE)
                    .iter()
                    .filter_map(|v| v.to_str().ok()),
            )?;
            let insufficient_scope = challenge
                .as_ref()
                .is_some_and(|c| c.error.as_deref() == Some("insufficient_scope"));
            if status == StatusCode::FORBIDDEN && !insufficient_scope {
                // A 403 for any other reason is the server's final word.
                return Ok(response);
            }
            attempts += 1;
            if attempts > MAX_ATTEMPTS {
                return Err(ClientError::RetryLimit {
                    resource: self.session.config().server_url.clone(),
                    attempts: MAX_ATTEMPTS,
                });
            }
            token = Some(match (&challenge, insufficient_scope) {
                (Some(c), true) => {
                    self.session
                        .on_insufficient_scope(c, token.as_ref())
                        .await?
                }
                _ => {
                    self.session
                        .on_unauthorized(challenge.as_ref(), token.as_ref(), attempts)
                        .await?
                }
            });
        }
    }
}
