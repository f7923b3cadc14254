//! The protected resource metadata document (RFC 9728) and the route that serves it at the
//! path-aware well-known URL (MCP SPEC S1-S2, S9).

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum_core::body::Body;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use mcpauth_core::ProtectedResourceMetadata;
use mcpauth_core::url_policy::parse_url;
use mcpauth_core::well_known::protected_resource_urls;
use tower::Service;

use crate::ResourceError;

/// The protected resource metadata of one MCP server, and where it is served.
///
/// The document carries `resource` exactly as given (clients compare it byte for byte),
/// `authorization_servers` (at least one, MCP SPEC S1), `bearer_methods_supported: ["header"]`
/// and, when set, `scopes_supported` without `offline_access` (MCP SPEC S9: refresh tokens are
/// the authorization server's business, so a resource does not advertise it).
///
/// ```
/// let prm = mcpauth_resource::ResourceMetadata::new(
///     "https://mcp.example.com/mcp",
///     ["https://auth.example.com"],
/// ).unwrap()
/// .scopes_supported(["files:read", "offline_access"]);
/// assert_eq!(prm.metadata_path(), "/.well-known/oauth-protected-resource/mcp");
/// assert_eq!(prm.metadata_url(), "https://mcp.example.com/.well-known/oauth-protected-resource/mcp");
/// assert_eq!(prm.document().scopes_supported.as_deref(), Some(&["files:read".to_string()][..]));
/// ```
#[derive(Clone, Debug)]
pub struct ResourceMetadata {
    doc: Arc<ProtectedResourceMetadata>,
    json: Bytes,
    url: String,
    path: String,
}

impl ResourceMetadata {
    /// The metadata of the MCP server `resource` (its canonical URI, RFC 8707 / MCP SPEC C22),
    /// protected by `authorization_servers` (issuer identifiers; at least one).
    pub fn new(
        resource: impl Into<String>,
        authorization_servers: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<Self, ResourceError> {
        let resource = resource.into();
        let parsed = parse_url(&resource).map_err(ResourceError::config)?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.fragment().is_some() {
            return Err(ResourceError::Config(format!(
                "the resource {resource:?} must be an http(s) URI without fragment (RFC 9728 §1.2)"
            )));
        }
        let servers: Vec<String> = authorization_servers.into_iter().map(Into::into).collect();
        if servers.is_empty() {
            return Err(ResourceError::Config(
                "protected resource metadata needs at least one authorization server (MCP SPEC S1)"
                    .into(),
            ));
        }
        let url = protected_resource_urls(&resource)
            .map_err(ResourceError::config)?
            .remove(0);
        let path = parse_url(&url)
            .map_err(ResourceError::config)?
            .path()
            .to_owned();
        let doc = ProtectedResourceMetadata {
            resource,
            authorization_servers: Some(servers),
            bearer_methods_supported: Some(vec!["header".into()]),
            ..Default::default()
        };
        Ok(Self::from_parts(doc, url, path))
    }

    fn from_parts(doc: ProtectedResourceMetadata, url: String, path: String) -> Self {
        let json = Bytes::from(serde_json::to_vec(&doc).unwrap_or_default());
        Self {
            doc: Arc::new(doc),
            json,
            url,
            path,
        }
    }

    fn edit(self, f: impl FnOnce(&mut ProtectedResourceMetadata)) -> Self {
        let mut doc = Arc::unwrap_or_clone(self.doc);
        f(&mut doc);
        Self::from_parts(doc, self.url, self.path)
    }

    /// Sets `scopes_supported`. `offline_access` is left out on purpose (MCP SPEC S9); when no
    /// scope is left, the member is left out too (RFC 9728 §2: it is optional, and `[]` would
    /// say that the resource knows no scope at all).
    pub fn scopes_supported<S: Into<String>>(self, scopes: impl IntoIterator<Item = S>) -> Self {
        let scopes: Vec<String> = scopes
            .into_iter()
            .map(Into::into)
            .filter(|s| s != "offline_access")
            .collect();
        self.edit(|d| d.scopes_supported = Some(scopes).filter(|s| !s.is_empty()))
    }

    /// Sets `resource_name` (shown to users by some clients).
    pub fn resource_name(self, name: impl Into<String>) -> Self {
        let name = name.into();
        self.edit(|d| d.resource_name = Some(name))
    }

    /// Sets `resource_documentation`.
    pub fn resource_documentation(self, url: impl Into<String>) -> Self {
        let url = url.into();
        self.edit(|d| d.resource_documentation = Some(url))
    }

    /// Says what `config` accepts (RFC 9728 §2): `dpop_signing_alg_values_supported` (the proof
    /// algorithms), and `dpop_bound_access_tokens_required: true` under
    /// [`DpopPolicy::Require`](crate::DpopPolicy::Require). Clients bind their tokens only for
    /// a resource that says it takes proofs, so a resource behind a [`crate::BearerAuthLayer`]
    /// with DPoP on should advertise it here.
    pub fn dpop(self, config: &crate::DpopConfig) -> Self {
        let algs: Vec<&str> = config.algorithms.iter().map(|a| a.as_str()).collect();
        let required = config.policy() == crate::DpopPolicy::Require;
        self.edit(|d| {
            d.extra.insert(
                "dpop_signing_alg_values_supported".into(),
                serde_json::json!(algs),
            );
            if required {
                d.extra
                    .insert("dpop_bound_access_tokens_required".into(), true.into());
            }
        })
    }

    /// Adds any other member (RFC 9728 §2 allows extensions).
    pub fn member(self, name: impl Into<String>, value: serde_json::Value) -> Self {
        let name = name.into();
        self.edit(|d| {
            d.extra.insert(name, value);
        })
    }

    /// The `resource` identifier, exactly as configured.
    pub fn resource(&self) -> &str {
        &self.doc.resource
    }

    /// The document.
    pub fn document(&self) -> &ProtectedResourceMetadata {
        &self.doc
    }

    /// The absolute URL of the document (the `resource_metadata` of challenges): the
    /// path-inserted well-known URL (RFC 9728 §3.1), e.g.
    /// `https://host/.well-known/oauth-protected-resource/mcp` for `https://host/mcp`.
    pub fn metadata_url(&self) -> &str {
        &self.url
    }

    /// The path to serve the document at (the path of [`metadata_url`](Self::metadata_url)).
    pub fn metadata_path(&self) -> &str {
        &self.path
    }

    /// A tower service answering `GET`/`HEAD` with the document (CORS-open: any origin may
    /// read it) and `OPTIONS` preflights; other methods get 405. Mount it at
    /// [`metadata_path`](Self::metadata_path), outside the bearer layer.
    pub fn service(&self) -> MetadataService {
        MetadataService {
            json: self.json.clone(),
        }
    }

    /// An axum router serving the document at [`metadata_path`](Self::metadata_path); merge it
    /// next to (not under) the protected routes.
    #[cfg(feature = "axum")]
    pub fn router<S: Clone + Send + Sync + 'static>(&self) -> axum::Router<S> {
        axum::Router::new().route_service(&self.path, self.service())
    }
}

/// The service of [`ResourceMetadata::service`].
#[derive(Clone, Debug)]
pub struct MetadataService {
    json: Bytes,
}

impl MetadataService {
    fn respond(&self, method: &Method) -> Response<Body> {
        let mut resp = match *method {
            Method::GET => Response::new(Body::from(self.json.clone())),
            Method::HEAD => Response::new(Body::empty()),
            Method::OPTIONS => {
                let mut r = Response::new(Body::empty());
                *r.status_mut() = StatusCode::NO_CONTENT;
                let h = r.headers_mut();
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_METHODS,
                    HeaderValue::from_static("GET, HEAD, OPTIONS"),
                );
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_HEADERS,
                    HeaderValue::from_static("mcp-protocol-version, content-type"),
                );
                h.insert(
                    header::ACCESS_CONTROL_MAX_AGE,
                    HeaderValue::from_static("3600"),
                );
                r
            }
            _ => {
                let mut r = Response::new(Body::empty());
                *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
                r.headers_mut().insert(
                    header::ALLOW,
                    HeaderValue::from_static("GET, HEAD, OPTIONS"),
                );
                return r;
            }
        };
        let h = resp.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        if *method != Method::OPTIONS {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            h.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=300"),
            );
        }
        resp
    }
}

impl<B> Service<Request<B>> for MetadataService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        ready(Ok(self.respond(req.method())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s1_needs_an_authorization_server() {
        let none: [&str; 0] = [];
        assert!(ResourceMetadata::new("https://h/mcp", none).is_err());
        assert!(ResourceMetadata::new("https://h/mcp#x", ["https://a"]).is_err());
    }

    /// RFC 9728 §2: the proof algorithms, and `dpop_bound_access_tokens_required` only when
    /// every token must be bound.
    #[test]
    fn d5_the_metadata_says_what_dpop_the_resource_takes() {
        use crate::{DpopConfig, DpopPolicy};
        use mcpauth_core::jose::JwsAlgorithm;
        let prm = ResourceMetadata::new("https://h/mcp", ["https://a"]).unwrap();
        let allow = prm
            .clone()
            .dpop(&DpopConfig::new(DpopPolicy::Allow).algorithms([JwsAlgorithm::ES256]));
        let doc = serde_json::to_value(allow.document()).unwrap();
        assert_eq!(
            doc["dpop_signing_alg_values_supported"],
            serde_json::json!(["ES256"])
        );
        assert!(doc.get("dpop_bound_access_tokens_required").is_none());
        let require = prm.dpop(&DpopConfig::new(DpopPolicy::Require));
        let doc = serde_json::to_value(require.document()).unwrap();
        assert_eq!(doc["dpop_bound_access_tokens_required"], true);
        assert!(
            doc["dpop_signing_alg_values_supported"]
                .as_array()
                .unwrap()
                .len()
                > 1
        );
    }

    #[test]
    fn root_resource_uses_root_well_known() {
        let prm = ResourceMetadata::new("https://h", ["https://a"]).unwrap();
        assert_eq!(prm.metadata_path(), "/.well-known/oauth-protected-resource");
        assert_eq!(prm.resource(), "https://h");
    }
}
