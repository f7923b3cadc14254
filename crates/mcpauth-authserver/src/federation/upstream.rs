//! The HTTP client of the upstream identity providers, shared by both kinds: every request has a
//! time limit and a size limit and follows no redirects (the providers are configured by the
//! operator, so loopback is allowed); the token request (RFC 6749 §4.1.3) and bearer GETs
//! (RFC 6750 §2.1) of the user endpoints.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

use super::oidc::{Cached, CachedJwks, ProviderMetadata};
use super::{IdentityProvider, TokenAuth};

/// Time limit of one request to a provider.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Largest accepted response from a provider.
const MAX_BYTES: usize = 256 * 1024;

/// Why signing in at a provider failed. The message is for the server log and, without
/// secrets, for the error page.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    /// The provider could not be reached or answered garbage.
    #[error("the identity provider could not be reached or answered badly: {0}")]
    Unreachable(String),
    /// Its discovery document is unusable.
    #[error("the identity provider's configuration is unusable: {0}")]
    Metadata(String),
    /// The token request failed.
    #[error("the identity provider refused the code: {0}")]
    Token(String),
    /// The ID token failed a check.
    #[error("the identity provider's ID token was refused: {0}")]
    IdToken(&'static str),
    /// The user endpoint's answer failed a check.
    #[error("the identity provider's userinfo answer was refused: {0}")]
    UserInfo(&'static str),
    /// A refresh was answered `invalid_grant` (RFC 6749 §5.2): the provider ended the session
    /// (the account was removed or its access revoked).
    #[error("the identity provider ended the session (invalid_grant)")]
    GrantEnded,
}

/// The verified identity of a signed-in account.
#[derive(Debug)]
pub(crate) struct Identity {
    pub sub: String,
    /// The claims the allow-list sees: the ID token's, completed by userinfo when the ID token
    /// had no `email` (OIDC); the user endpoint's JSON, mapped (OAuth 2.0).
    pub claims: serde_json::Map<String, serde_json::Value>,
    /// The upstream tokens the sign-in brought, for the vault (SPEC F2).
    pub tokens: Option<UpstreamTokens>,
}

/// The token endpoint's answer (RFC 6749 §5.1, §5.2).
#[derive(Deserialize)]
pub(crate) struct TokenResponse {
    pub id_token: Option<String>,
    pub access_token: Option<String>,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub expires_in: Option<u64>,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
}

crate::redacted_debug!(TokenResponse);

/// An upstream grant's tokens as the vault keeps them (sealed, SPEC F5).
#[derive(Clone, serde::Serialize, Deserialize)]
pub(crate) struct UpstreamTokens {
    pub access_token: String,
    pub refresh_token: Option<String>,
    /// Unix time the access token expires; `None` when the provider did not say.
    pub expires_at: Option<i64>,
    pub scope: Option<String>,
    /// The account's e-mail address and name at sign-in, for identity assertions.
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

crate::redacted_debug!(UpstreamTokens);

impl UpstreamTokens {
    /// The tokens of a token endpoint answer received at `now`; `previous` supplies the refresh
    /// token and scope when a refresh answer omits them (RFC 6749 §6 lets the provider keep
    /// the refresh token).
    pub(crate) fn from_response(
        body: &TokenResponse,
        now: i64,
        previous: Option<&UpstreamTokens>,
    ) -> Option<Self> {
        let access_token = body.access_token.clone().filter(|t| !t.is_empty())?;
        Some(Self {
            access_token,
            refresh_token: body
                .refresh_token
                .clone()
                .filter(|t| !t.is_empty())
                .or_else(|| previous.and_then(|p| p.refresh_token.clone())),
            expires_at: body
                .expires_in
                .map(|s| now.saturating_add(i64::try_from(s).unwrap_or(i64::MAX))),
            scope: body
                .scope
                .clone()
                .or_else(|| previous.and_then(|p| p.scope.clone())),
            email: previous.and_then(|p| p.email.clone()),
            name: previous.and_then(|p| p.name.clone()),
        })
    }
}

/// What the callback brought and what redeems it (RFC 6749 §4.1.3, RFC 7636 §4.5); no `Debug`,
/// it holds secrets.
pub(crate) struct CodeGrant<'a> {
    /// The authorization code.
    pub code: &'a str,
    /// Our callback URI, as sent in the authorization request.
    pub redirect_uri: &'a str,
    /// The PKCE code verifier.
    pub verifier: &'a str,
}

/// The HTTP client and caches for all providers.
pub(crate) struct Upstream {
    pub(super) http: reqwest::Client,
    pub(super) metadata: Mutex<HashMap<String, Cached<ProviderMetadata>>>,
    pub(super) jwks: Mutex<HashMap<String, CachedJwks>>,
    /// The `jwks_uri` of issuers found through discovery for the JWT bearer grant.
    pub(super) jwks_uris: Mutex<HashMap<String, Cached<String>>>,
}

crate::redacted_debug!(Upstream);

/// Reads a JSON body of at most [`MAX_BYTES`].
pub(super) async fn read_json<T: serde::de::DeserializeOwned>(
    mut resp: reqwest::Response,
) -> Result<T, UpstreamError> {
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| UpstreamError::Unreachable(e.to_string()))?
    {
        if body.len() + chunk.len() > MAX_BYTES {
            return Err(UpstreamError::Unreachable(format!(
                "the response is larger than {MAX_BYTES} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| UpstreamError::Unreachable(e.to_string()))
}

/// Whether `url` is https, or http on a loopback host (OAuth 2.1 §1.5).
pub(crate) fn secure_url(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| {
        u.scheme() == "https" || (u.scheme() == "http" && mcpauth_core::url_policy::is_loopback(&u))
    })
}

fn unreachable(e: reqwest::Error) -> UpstreamError {
    UpstreamError::Unreachable(e.without_url().to_string())
}

impl Upstream {
    pub(crate) fn new() -> Self {
        // GitHub's API refuses requests without a User-Agent.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            .user_agent("mcpauth")
            .no_proxy()
            .build()
            .expect("the TLS backend initialises");
        Self {
            http,
            metadata: Mutex::default(),
            jwks: Mutex::default(),
            jwks_uris: Mutex::default(),
        }
    }

    /// GET `url` for JSON; anything but 2xx fails.
    pub(super) async fn get(&self, url: &str) -> Result<reqwest::Response, UpstreamError> {
        let resp = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(unreachable)?;
        if !resp.status().is_success() {
            return Err(UpstreamError::Unreachable(format!(
                "{url} answered {}",
                resp.status()
            )));
        }
        Ok(resp)
    }

    /// The authorization code grant's token request (RFC 6749 §4.1.3 with the PKCE verifier,
    /// RFC 7636 §4.5), authenticated as `auth` says (RFC 6749 §2.3.1).
    pub(super) async fn token_request(
        &self,
        idp: &IdentityProvider,
        endpoint: &str,
        auth: TokenAuth,
        grant: &CodeGrant<'_>,
    ) -> Result<TokenResponse, UpstreamError> {
        let form = vec![
            ("grant_type", "authorization_code"),
            ("code", grant.code),
            ("redirect_uri", grant.redirect_uri),
            ("code_verifier", grant.verifier),
        ];
        self.post_token(idp, endpoint, auth, form)
            .await
            .map_err(|(_, e)| e)
    }

    /// The refresh token grant at the provider (RFC 6749 §6); `invalid_grant` is
    /// [`UpstreamError::GrantEnded`], any other refusal or failure leaves the grant as it is.
    pub(super) async fn refresh_request(
        &self,
        idp: &IdentityProvider,
        endpoint: &str,
        auth: TokenAuth,
        refresh_token: &str,
    ) -> Result<TokenResponse, UpstreamError> {
        let form = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ];
        match self.post_token(idp, endpoint, auth, form).await {
            Ok(body) => Ok(body),
            Err((Some(code), _)) if code == "invalid_grant" => Err(UpstreamError::GrantEnded),
            Err((_, e)) => Err(e),
        }
    }

    /// POSTs `form` to the token endpoint. `Accept: application/json` because GitHub answers
    /// form-encoded otherwise. An `error` member fails the request whatever the status (GitHub
    /// answers errors with 200); the failure carries the sanitized error code, if any.
    async fn post_token(
        &self,
        idp: &IdentityProvider,
        endpoint: &str,
        auth: TokenAuth,
        mut form: Vec<(&str, &str)>,
    ) -> Result<TokenResponse, (Option<String>, UpstreamError)> {
        let mut req = self.http.post(endpoint);
        match auth {
            TokenAuth::Post => {
                form.push(("client_id", &idp.client_id));
                form.push(("client_secret", idp.client_secret.expose()));
            }
            TokenAuth::Basic => {
                // RFC 6749 §2.3.1: both parts form-urlencoded before Basic.
                let enc = |s: &str| {
                    url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
                };
                let basic = STANDARD.encode(format!(
                    "{}:{}",
                    enc(&idp.client_id),
                    enc(idp.client_secret.expose())
                ));
                req = req.header(reqwest::header::AUTHORIZATION, format!("Basic {basic}"));
            }
        }
        let resp = req
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|e| (None, unreachable(e)))?;
        let status = resp.status();
        let body: TokenResponse = read_json(resp).await.map_err(|e| (None, e))?;
        if !status.is_success() || body.error.is_some() {
            let error: String = body
                .error
                .unwrap_or_default()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(64)
                .collect();
            let e = UpstreamError::Token(format!("HTTP {status}, error {error:?}"));
            // A server error is the provider being unwell, not a verdict on the grant.
            let code = (!status.is_server_error()).then_some(error);
            return Err((code, e));
        }
        Ok(body)
    }

    /// GET a user endpoint with the access token (RFC 6750 §2.1); a refusal is a
    /// [`UpstreamError::UserInfo`].
    pub(super) async fn user_json<T: serde::de::DeserializeOwned>(
        &self,
        endpoint: &str,
        access_token: &str,
    ) -> Result<T, UpstreamError> {
        let resp = self
            .http
            .get(endpoint)
            .bearer_auth(access_token)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(unreachable)?;
        if !resp.status().is_success() {
            return Err(UpstreamError::UserInfo(
                "the endpoint refused the access token",
            ));
        }
        read_json(resp).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f6_provider_endpoints_must_be_https_or_loopback() {
        assert!(secure_url("https://idp.example/token"));
        assert!(secure_url("http://127.0.0.1:8080/token"));
        assert!(!secure_url("http://idp.example/token"));
        assert!(!secure_url("javascript:alert(1)"));
        assert!(!secure_url("not a url"));
    }
}
