//! Outbound HTTP for verifiers: HTTPS unless loopback, no redirects, time and size limits.

use std::time::Duration;

use mcpauth_core::url_policy::require_secure;
use serde::de::DeserializeOwned;

use crate::ResourceError;

/// Time limit of one request to an authorization server, connection included.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(10);

/// The HTTP client verifiers use: rustls, redirects off, explicit timeouts.
pub(crate) fn client() -> Result<reqwest::Client, ResourceError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .timeout(TIMEOUT)
        .build()
        .map_err(ResourceError::config)
}

/// Checks that `url` may be called: `https`, or `http` on loopback (MCP SPEC C30-C31).
pub(crate) fn check_url(url: &str, what: &str) -> Result<(), ResourceError> {
    require_secure(url, false)
        .map(drop)
        .map_err(|e| ResourceError::Config(format!("{what}: {e}")))
}

/// Reads a successful JSON response of at most `max` bytes.
pub(crate) async fn read_json<T: DeserializeOwned>(
    mut resp: reqwest::Response,
    max: usize,
    what: &str,
) -> Result<T, ResourceError> {
    let status = resp.status();
    if !status.is_success() {
        return Err(ResourceError::unavailable(
            what,
            format!("HTTP status {status}"),
        ));
    }
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(ResourceError::unavailable(
            what,
            format!("larger than {max} bytes"),
        ));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| ResourceError::unavailable(what, e))?
    {
        if body.len() + chunk.len() > max {
            return Err(ResourceError::unavailable(
                what,
                format!("larger than {max} bytes"),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body)
        .map_err(|e| ResourceError::unavailable(what, format!("malformed JSON: {e}")))
}
