//! RFC 7662 token introspection, for opaque tokens or servers that want revocation honoured.

use std::time::Duration;

use mcpauth_core::ClientSecret;
use serde_json::{Map, Value};

use super::{TokenCache, TokenVerifier, VerifyFuture, now_secs};
use crate::fetch::{check_url, read_json};
use crate::{Principal, ResourceError};

/// Largest introspection response accepted.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Verifies tokens by asking the authorization server (RFC 7662), authenticated as a
/// confidential client with `client_secret_basic`.
///
/// The answer must say `active: true`; its `aud` must name one of the configured audiences
/// (MCP SPEC S4-S5; a response without `aud` is refused unless
/// [`accept_missing_audience`](Self::accept_missing_audience)); its `iss`, when present and when
/// issuers are configured, must be one of them; a `token_type` of `refresh_token` is refused.
/// Active answers are cached by the token's SHA-256 (never the token) for a short time (30 s by
/// default, never past `exp`), so a revocation takes effect within that time.
pub struct IntrospectionVerifier {
    endpoint: String,
    client_id: String,
    client_secret: ClientSecret,
    audiences: Vec<String>,
    issuers: Vec<String>,
    accept_missing_audience: bool,
    http: reqwest::Client,
    cache: TokenCache,
    cache_ttl: u64,
}

impl std::fmt::Debug for IntrospectionVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntrospectionVerifier")
            .field("endpoint", &self.endpoint)
            .field("client_id", &self.client_id)
            .field("audiences", &self.audiences)
            .field("issuers", &self.issuers)
            .finish_non_exhaustive()
    }
}

fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

impl IntrospectionVerifier {
    /// Introspects at `endpoint` (https, or http on loopback) as `client_id`/`client_secret`,
    /// accepting tokens for any of `audiences` (this resource's URI, RFC 8707).
    pub fn new(
        endpoint: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: ClientSecret,
        audiences: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<Self, ResourceError> {
        let endpoint = endpoint.into();
        check_url(&endpoint, "introspection endpoint")?;
        let audiences: Vec<String> = audiences.into_iter().map(Into::into).collect();
        if audiences.is_empty() || audiences.iter().any(String::is_empty) {
            return Err(ResourceError::Config(
                "an introspection verifier needs this resource's URI as audience (MCP SPEC S4-S5)"
                    .into(),
            ));
        }
        Ok(Self {
            endpoint,
            client_id: client_id.into(),
            client_secret,
            audiences,
            issuers: Vec::new(),
            accept_missing_audience: false,
            http: crate::fetch::client()?,
            cache: TokenCache::new(10_000),
            cache_ttl: 30,
        })
    }

    /// Accepts only these issuers when the response names one (`iss`, compared exactly).
    pub fn issuers(mut self, issuers: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.issuers = issuers.into_iter().map(Into::into).collect();
        self
    }

    /// How long an active answer is reused (default 30 s; zero turns caching off).
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl.as_secs();
        self
    }

    /// Accepts active tokens whose introspection response has no `aud` at all. This weakens
    /// MCP SPEC S5 (audience binding) to "the authorization server vouches for the token":
    /// use it only with servers that never return `aud` and issue tokens for this resource
    /// alone.
    pub fn accept_missing_audience(mut self, yes: bool) -> Self {
        self.accept_missing_audience = yes;
        self
    }

    /// The HTTP client (default: rustls, no redirects, 10 s).
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = client;
        self
    }

    async fn introspect(&self, token: &str) -> Result<Principal, ResourceError> {
        let what = format!("the introspection endpoint {}", self.endpoint);
        let resp = self
            .http
            .post(&self.endpoint)
            .basic_auth(
                form_encode(&self.client_id),
                Some(form_encode(self.client_secret.expose())),
            )
            .header(http::header::ACCEPT, "application/json")
            .form(&[("token", token), ("token_type_hint", "access_token")])
            .send()
            .await
            .map_err(|e| ResourceError::unavailable(&what, e))?;
        let body: Map<String, Value> = read_json(resp, MAX_RESPONSE_BYTES, &what).await?;
        if body.get("active") != Some(&Value::Bool(true)) {
            return Err(ResourceError::Inactive);
        }
        if body
            .get("token_type")
            .and_then(Value::as_str)
            .is_some_and(|t| t.eq_ignore_ascii_case("refresh_token"))
        {
            return Err(ResourceError::invalid(
                "a refresh token is not an access token",
            ));
        }
        let now = now_secs();
        if body
            .get("exp")
            .and_then(Value::as_u64)
            .is_some_and(|exp| exp <= now)
        {
            return Err(ResourceError::Expired);
        }
        let iss = body.get("iss").and_then(Value::as_str).map(str::to_owned);
        if let Some(iss) = &iss
            && !self.issuers.is_empty()
            && !self.issuers.iter().any(|i| i == iss)
        {
            return Err(ResourceError::WrongIssuer);
        }
        let mut body = body;
        if iss.is_none() {
            // Principal needs an issuer: name the endpoint's server.
            let named = self.issuers.first().unwrap_or(&self.endpoint).clone();
            body.insert("iss".into(), Value::String(named));
        }
        let p = Principal::from_claims(body).map_err(ResourceError::invalid)?;
        let audience_ok = if p.audience.is_empty() {
            self.accept_missing_audience
        } else {
            p.audience.iter().any(|a| self.audiences.contains(a))
        };
        if !audience_ok {
            return Err(ResourceError::WrongAudience);
        }
        Ok(p)
    }
}

impl TokenVerifier for IntrospectionVerifier {
    fn verify<'a>(&'a self, token: &'a str) -> VerifyFuture<'a> {
        Box::pin(
            self.cache
                .get_or_verify(token, self.cache_ttl, self.introspect(token)),
        )
    }
}
