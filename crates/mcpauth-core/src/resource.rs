//! Canonical MCP server URIs for the RFC 8707 `resource` parameter (MCP SPEC C21-C22), and the
//! check that protected resource metadata describes the server it was fetched for.

use url::Url;

use crate::{CoreError, url_policy::parse_url};

/// The canonical URI of an MCP server (MCP SPEC C22): lower-case scheme and host, no default port,
/// no fragment, and no trailing slash on an empty path. Other paths are kept as given.
///
/// ```
/// use mcpauth_core::resource::canonical_resource;
/// assert_eq!(canonical_resource("HTTPS://MCP.Example.com:443/mcp#x").unwrap(), "https://mcp.example.com/mcp");
/// assert_eq!(canonical_resource("https://mcp.example.com/").unwrap(), "https://mcp.example.com");
/// ```
pub fn canonical_resource(server_url: &str) -> Result<String, CoreError> {
    let mut url = parse_url(server_url)?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(CoreError::InvalidUrl {
            url: server_url.to_owned(),
            reason: "an MCP server URL must be http(s) with a host".into(),
        });
    }
    url.set_fragment(None);
    let mut s = url.to_string();
    if url.path() == "/" && url.query().is_none() {
        s.pop();
    }
    Ok(s)
}

/// Checks that the protected resource metadata `resource` names the MCP server at `server_url`
/// (RFC 9728 §3.3, §7.3, MCP SPEC C21): same origin, and the server's path equal to or below the
/// resource's path. A mismatch must stop the flow before any authorization request.
pub fn check_prm_resource(prm_resource: &str, server_url: &str) -> Result<(), CoreError> {
    let mismatch = || CoreError::InvalidDocument {
        what: "protected resource metadata",
        reason: format!(
            "its resource {prm_resource:?} does not cover the MCP server {server_url:?} \
             (RFC 9728 §3.3); refusing to request tokens for it"
        ),
    };
    let resource = parse_url(prm_resource).map_err(|_| mismatch())?;
    let server = parse_url(server_url)?;
    if resource.origin() != server.origin() {
        return Err(mismatch());
    }
    let rp = resource.path().trim_end_matches('/');
    let sp = server.path();
    let covered = sp == rp
        || sp.trim_end_matches('/') == rp
        || sp
            .strip_prefix(rp)
            .is_some_and(|rest| rest.starts_with('/'));
    if covered { Ok(()) } else { Err(mismatch()) }
}

/// The origin of a URL (`scheme://host[:port]`), as the 2025-03-26 revision's "authorization base
/// URL".
pub fn origin_of(url: &Url) -> String {
    url.origin().ascii_serialization()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c22_canonical_forms() {
        assert_eq!(
            canonical_resource("https://h/mcp/").unwrap(),
            "https://h/mcp/"
        );
        assert_eq!(
            canonical_resource("http://h:8080").unwrap(),
            "http://h:8080"
        );
        assert_eq!(
            canonical_resource("https://h/mcp?x=1").unwrap(),
            "https://h/mcp?x=1"
        );
        assert!(canonical_resource("ftp://h/x").is_err());
        assert!(canonical_resource("not a url").is_err());
    }

    #[test]
    fn c21_prm_resource_must_cover_server() {
        assert!(check_prm_resource("https://h/mcp", "https://h/mcp").is_ok());
        assert!(check_prm_resource("https://h", "https://h/mcp").is_ok());
        assert!(check_prm_resource("https://h/", "https://h/mcp").is_ok());
        assert!(check_prm_resource("https://H:443/mcp", "https://h/mcp/").is_ok());
        for bad in [
            "https://evil.example/mcp",
            "https://h/other",
            "https://h/mc",
            "http://h/mcp",
            "nope",
        ] {
            let e = check_prm_resource(bad, "https://h/mcp").unwrap_err();
            assert!(e.to_string().contains("does not cover"), "{bad}: {e}");
        }
    }
}
