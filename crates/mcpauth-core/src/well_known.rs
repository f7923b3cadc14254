//! Well-known discovery URLs, in the order MCP clients must try them (MCP SPEC C3, C5).

use url::Url;

use crate::{CoreError, url_policy::parse_url};

/// Which kind of metadata document a URL is expected to return.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetadataKind {
    /// RFC 8414 OAuth authorization server metadata.
    OAuth,
    /// OpenID Connect Discovery 1.0.
    OpenId,
}

fn with_path(base: &Url, path: &str) -> String {
    let mut u = base.clone();
    u.set_path(path);
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

fn trimmed_path(url: &Url) -> &str {
    url.path().trim_end_matches('/')
}

/// Protected resource metadata URLs for an MCP server: path-inserted first, then root
/// (RFC 9728 §3.1, MCP SPEC C3). A server without a path has only the root URL.
///
/// ```
/// use mcpauth_core::well_known::protected_resource_urls;
/// assert_eq!(protected_resource_urls("https://h/public/mcp").unwrap(), [
///     "https://h/.well-known/oauth-protected-resource/public/mcp",
///     "https://h/.well-known/oauth-protected-resource",
/// ]);
/// ```
pub fn protected_resource_urls(server_url: &str) -> Result<Vec<String>, CoreError> {
    let url = parse_url(server_url)?;
    let path = trimmed_path(&url);
    let mut out = Vec::with_capacity(2);
    if !path.is_empty() {
        out.push(with_path(
            &url,
            &format!("/.well-known/oauth-protected-resource{path}"),
        ));
    }
    out.push(with_path(&url, "/.well-known/oauth-protected-resource"));
    Ok(out)
}

/// Authorization server metadata URLs for an issuer, in the order of MCP SPEC C5.
///
/// ```
/// use mcpauth_core::well_known::authorization_server_urls;
/// let urls: Vec<String> = authorization_server_urls("https://as.example/tenant1").unwrap()
///     .into_iter().map(|(u, _)| u).collect();
/// assert_eq!(urls, [
///     "https://as.example/.well-known/oauth-authorization-server/tenant1",
///     "https://as.example/.well-known/openid-configuration/tenant1",
///     "https://as.example/tenant1/.well-known/openid-configuration",
/// ]);
/// ```
pub fn authorization_server_urls(issuer: &str) -> Result<Vec<(String, MetadataKind)>, CoreError> {
    let url = parse_url(issuer)?;
    let path = trimmed_path(&url);
    Ok(if path.is_empty() {
        vec![
            (
                with_path(&url, "/.well-known/oauth-authorization-server"),
                MetadataKind::OAuth,
            ),
            (
                with_path(&url, "/.well-known/openid-configuration"),
                MetadataKind::OpenId,
            ),
        ]
    } else {
        vec![
            (
                with_path(
                    &url,
                    &format!("/.well-known/oauth-authorization-server{path}"),
                ),
                MetadataKind::OAuth,
            ),
            (
                with_path(&url, &format!("/.well-known/openid-configuration{path}")),
                MetadataKind::OpenId,
            ),
            (
                with_path(&url, &format!("{path}/.well-known/openid-configuration")),
                MetadataKind::OpenId,
            ),
        ]
    })
}

/// The 2025-03-26 fallback endpoints at the MCP server's origin, used when no metadata exists:
/// `(authorize, token, register)`.
pub fn legacy_default_endpoints(server_url: &str) -> Result<(String, String, String), CoreError> {
    let url = parse_url(server_url)?;
    Ok((
        with_path(&url, "/authorize"),
        with_path(&url, "/token"),
        with_path(&url, "/register"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c3_root_only_without_path() {
        assert_eq!(
            protected_resource_urls("https://h:8443/").unwrap(),
            ["https://h:8443/.well-known/oauth-protected-resource"]
        );
        assert_eq!(
            protected_resource_urls("https://h/mcp/?q=1").unwrap(),
            [
                "https://h/.well-known/oauth-protected-resource/mcp",
                "https://h/.well-known/oauth-protected-resource"
            ]
        );
    }

    #[test]
    fn c5_order_without_path() {
        let urls = authorization_server_urls("https://as.example").unwrap();
        assert_eq!(
            urls[0].0,
            "https://as.example/.well-known/oauth-authorization-server"
        );
        assert_eq!(
            urls[1],
            (
                "https://as.example/.well-known/openid-configuration".into(),
                MetadataKind::OpenId
            )
        );
        assert_eq!(urls.len(), 2);
    }

    #[test]
    fn legacy_endpoints_at_origin() {
        let (a, t, r) = legacy_default_endpoints("http://127.0.0.1:9/some/mcp").unwrap();
        assert_eq!(a, "http://127.0.0.1:9/authorize");
        assert_eq!(t, "http://127.0.0.1:9/token");
        assert_eq!(r, "http://127.0.0.1:9/register");
    }
}
