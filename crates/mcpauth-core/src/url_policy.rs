//! Which URLs mcpauth will talk to or hand to a browser (OAuth 2.1 §1.5, MCP SPEC C30-C32).

use url::{Host, Url};

use crate::CoreError;

/// Parses an absolute URL, naming the value in the error.
pub fn parse_url(value: &str) -> Result<Url, CoreError> {
    Url::parse(value).map_err(|e| CoreError::InvalidUrl {
        url: value.to_owned(),
        reason: e.to_string(),
    })
}

/// Whether the URL's host is a loopback name or address (`localhost`, 127.0.0.0/8, `::1`).
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => {
            d.eq_ignore_ascii_case("localhost") || d.to_ascii_lowercase().ends_with(".localhost")
        }
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Checks that `value` may be used as an OAuth endpoint: `https`, or `http` on a loopback host
/// (MCP SPEC C30, C31). `allow_insecure` is the explicit development opt-out of C31.
///
/// ```
/// use mcpauth_core::url_policy::require_secure;
/// assert!(require_secure("https://as.example/token", false).is_ok());
/// assert!(require_secure("http://127.0.0.1:8080/token", false).is_ok());
/// assert!(require_secure("http://as.example/token", false).is_err());
/// ```
pub fn require_secure(value: &str, allow_insecure: bool) -> Result<Url, CoreError> {
    let url = parse_url(value)?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if allow_insecure || is_loopback(&url) => Ok(url),
        "http" => Err(CoreError::InsecureUrl {
            url: value.to_owned(),
        }),
        other => Err(CoreError::InvalidUrl {
            url: value.to_owned(),
            reason: format!("scheme {other:?} is not allowed; only https (or http on loopback) is"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c30_http_only_on_loopback() {
        for ok in [
            "https://a.example/x",
            "http://localhost:3000/cb",
            "http://127.0.0.5/x",
            "http://[::1]:9/x",
        ] {
            assert!(require_secure(ok, false).is_ok(), "{ok}");
        }
        let e = require_secure("http://a.example/token", false).unwrap_err();
        assert!(e.to_string().contains("C30"), "{e}");
        assert!(require_secure("http://a.example/token", true).is_ok());
    }

    #[test]
    fn c32_dangerous_schemes_refused() {
        for bad in [
            "javascript:alert(1)",
            "data:text/html,x",
            "file:///etc/passwd",
            "vbscript:x",
        ] {
            assert!(require_secure(bad, true).is_err(), "{bad}");
        }
    }
}
