//! HTTP for OAuth calls: HTTPS policy, no redirects, timeouts and body-size limits on every
//! request (MCP SPEC C30-C31).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use mcpauth_core::{OAuthError, url_policy};
use reqwest::header::{ACCEPT, HeaderMap};
use reqwest::{Method, StatusCode};
use url::Url;

use crate::ClientError;

/// Largest metadata, registration or token response read (bytes).
pub const MAX_BODY: usize = 256 * 1024;

/// Settings of the OAuth HTTP client.
#[derive(Clone, Debug)]
pub struct HttpOptions {
    /// Connect + response timeout of each OAuth request.
    pub timeout: Duration,
    /// Allow plain `http` to non-loopback hosts (development only; MCP SPEC C31 opt-out).
    pub allow_insecure_http: bool,
    /// The `User-Agent` sent.
    pub user_agent: String,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            allow_insecure_http: false,
            user_agent: concat!("mcpauth/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// A response whose body has been read within the size limit.
#[derive(Debug)]
pub struct Fetched {
    /// The final URL (redirects are never followed, so the requested one).
    pub url: String,
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Vec<u8>,
}

impl Fetched {
    /// The body as lossy UTF-8, trimmed to a short single line for diagnostics.
    pub fn body_excerpt(&self) -> String {
        String::from_utf8_lossy(&self.body)
            .chars()
            .filter(|c| !c.is_control())
            .take(200)
            .collect()
    }

    /// Parses an OAuth error body (RFC 6749 §5.2), if it is one.
    pub fn oauth_error(&self) -> Option<OAuthError> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// The client used for every OAuth request: redirects off, timeouts, rustls.
///
/// The TLS client is built on first use, so a process that only reads a cached token never pays
/// for loading the system's root certificates.
#[derive(Clone, Debug)]
pub struct OAuthHttp {
    client: Arc<OnceLock<Result<reqwest::Client, String>>>,
    options: HttpOptions,
}

impl OAuthHttp {
    /// A client with these options (infallible today; the `Result` leaves room for checks).
    pub fn new(options: HttpOptions) -> Result<Self, ClientError> {
        Ok(Self {
            client: Arc::default(),
            options,
        })
    }

    /// The options it was built with.
    pub fn options(&self) -> &HttpOptions {
        &self.options
    }

    /// The underlying reqwest client (redirects off), built on first use.
    pub fn reqwest(&self) -> Result<&reqwest::Client, ClientError> {
        let o = &self.options;
        self.client
            .get_or_init(|| {
                reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .timeout(o.timeout)
                    .connect_timeout(o.timeout.min(Duration::from_secs(10)))
                    .user_agent(o.user_agent.clone())
                    .build()
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| ClientError::Config(format!("cannot build the HTTP client: {e}")))
    }

    /// Checks an OAuth URL against the HTTPS policy (MCP SPEC C30).
    pub fn check_url(&self, url: &str) -> Result<Url, ClientError> {
        Ok(url_policy::require_secure(
            url,
            self.options.allow_insecure_http,
        )?)
    }

    /// GETs a JSON document.
    pub async fn get(&self, url: &str, extra: &HeaderMap) -> Result<Fetched, ClientError> {
        let u = self.check_url(url)?;
        let req = self
            .reqwest()?
            .request(Method::GET, u)
            .header(ACCEPT, "application/json")
            .headers(extra.clone());
        self.send(url, req).await
    }

    /// POSTs `application/x-www-form-urlencoded` parameters, with optional HTTP Basic credentials
    /// and `extra` headers (a DPoP proof).
    pub async fn post_form(
        &self,
        url: &str,
        form: &[(&str, &str)],
        basic: Option<(&str, &str)>,
        extra: HeaderMap,
    ) -> Result<Fetched, ClientError> {
        let u = self.check_url(url)?;
        let mut req = self
            .reqwest()?
            .post(u)
            .header(ACCEPT, "application/json")
            .headers(extra)
            .form(form);
        if let Some((user, pass)) = basic {
            // RFC 6749 §2.3.1: form-encode both before Base64.
            let enc =
                |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            req = req.basic_auth(enc(user), Some(enc(pass)));
        }
        self.send(url, req).await
    }

    /// POSTs a JSON body.
    pub async fn post_json(
        &self,
        url: &str,
        body: &serde_json::Value,
    ) -> Result<Fetched, ClientError> {
        let u = self.check_url(url)?;
        let req = self
            .reqwest()?
            .post(u)
            .header(ACCEPT, "application/json")
            .json(body);
        self.send(url, req).await
    }

    async fn send(&self, url: &str, req: reqwest::RequestBuilder) -> Result<Fetched, ClientError> {
        let transport = |error| ClientError::request_failed("request", error);
        let mut resp = req.send().await.map_err(transport)?;
        let status = resp.status();
        let headers = resp.headers().clone();
        if resp.content_length().is_some_and(|n| n > MAX_BODY as u64) {
            return Err(ClientError::BodyTooLarge {
                url: url.to_owned(),
                limit: MAX_BODY,
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(ClientError::BodyTooLarge {
                    url: url.to_owned(),
                    limit: MAX_BODY,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched {
            url: url.to_owned(),
            status,
            headers,
            body,
        })
    }
}
