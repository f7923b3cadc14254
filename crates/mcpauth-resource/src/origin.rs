//! The `Origin` and `Host` guard of Streamable HTTP endpoints (MCP SPEC S11): a browser page
//! from another origin, or a DNS-rebound host name pointing at a loopback server, gets 403 with
//! an id-less JSON-RPC error body.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum_core::body::Body;
use http::{Request, Response, StatusCode, header};
use mcpauth_core::url_policy::{is_loopback, parse_url};
use tower::{Layer, Service};

use crate::ResourceError;
use crate::challenge::jsonrpc_error;

/// Refuses requests whose `Origin` is present and not allowed, and (when enabled) requests
/// whose `Host` is not in the allow-list (DNS rebinding), with 403 and
/// `{"jsonrpc":"2.0","error":{"code":-32600,"message":"…"}}` (no `id`).
///
/// Requests without `Origin` (non-browser clients) pass the origin check. Put this layer
/// outermost, in front of the bearer layer.
///
/// ```
/// use mcpauth_resource::OriginGuardLayer;
/// // Public behind TLS: same-origin requests only, Host not checked.
/// let guard = OriginGuardLayer::new("https://mcp.example.com/mcp").unwrap();
/// // Bound to loopback: Origin and Host must name 127.0.0.1, localhost or [::1] at that port.
/// let local = OriginGuardLayer::for_loopback("127.0.0.1:8080".parse().unwrap());
/// ```
#[derive(Clone, Debug)]
pub struct OriginGuardLayer {
    policy: Arc<Policy>,
}

#[derive(Clone, Debug)]
struct Policy {
    /// ASCII-serialised origins (`scheme://host[:port]`, lower case, default port omitted).
    origins: Vec<String>,
    /// Allowed `Host` values (lower case), or `None` when the host is not checked.
    hosts: Option<Vec<String>>,
}

fn origin_of(value: &str) -> Option<String> {
    let url = url::Url::parse(value).ok()?;
    let origin = url.origin();
    origin.is_tuple().then(|| origin.ascii_serialization())
}

fn loopback_names(port: u16) -> Vec<String> {
    ["127.0.0.1", "localhost", "[::1]"]
        .iter()
        .map(|h| format!("{h}:{port}"))
        .collect()
}

impl OriginGuardLayer {
    /// A guard for a server reachable at `public_url`: the allowed origin is that URL's
    /// origin. When its host is a loopback name or address, the `Host` allow-list is on with
    /// `127.0.0.1`, `localhost` and `[::1]` at that port (and the same origins are allowed).
    pub fn new(public_url: &str) -> Result<Self, ResourceError> {
        let url = parse_url(public_url).map_err(ResourceError::config)?;
        let origin = origin_of(public_url).ok_or_else(|| {
            ResourceError::Config(format!("{public_url:?} has no http(s) origin"))
        })?;
        let mut origins = vec![origin];
        let hosts = if is_loopback(&url) {
            let port = url.port_or_known_default().unwrap_or(80);
            let names = loopback_names(port);
            for n in &names {
                let o = format!("{}://{n}", url.scheme());
                if let Some(o) = origin_of(&o)
                    && !origins.contains(&o)
                {
                    origins.push(o);
                }
            }
            let mut hosts = names;
            if url.port().is_none() {
                hosts.extend(["127.0.0.1", "localhost", "[::1]"].map(String::from));
            }
            Some(hosts)
        } else {
            None
        };
        Ok(Self {
            policy: Arc::new(Policy { origins, hosts }),
        })
    }

    /// A guard for a server bound to `addr` over plain HTTP: the loopback names at that port
    /// are the allowed origins and hosts. For a non-loopback `addr`, only the origin
    /// `http://addr` is allowed and the host is not checked.
    pub fn for_loopback(addr: SocketAddr) -> Self {
        let url = format!("http://{addr}");
        Self::new(&url).unwrap_or_else(|_| Self {
            policy: Arc::new(Policy {
                origins: Vec::new(),
                hosts: None,
            }),
        })
    }

    /// Also allows `origin` (e.g. `https://app.example.com`, a browser client's page).
    pub fn allow_origin(mut self, origin: &str) -> Result<Self, ResourceError> {
        let o = origin_of(origin)
            .ok_or_else(|| ResourceError::Config(format!("{origin:?} is not an http(s) origin")))?;
        Arc::make_mut(&mut self.policy).origins.push(o);
        Ok(self)
    }

    /// Also allows the `Host` value `host` (`name[:port]`), turning the host check on if it
    /// was off.
    pub fn allow_host(mut self, host: &str) -> Self {
        Arc::make_mut(&mut self.policy)
            .hosts
            .get_or_insert_with(Vec::new)
            .push(host.to_ascii_lowercase());
        self
    }

    /// Turns the `Host` check off (e.g. behind a reverse proxy that rewrites it).
    pub fn without_host_check(mut self) -> Self {
        Arc::make_mut(&mut self.policy).hosts = None;
        self
    }
}

impl Policy {
    fn check<B>(&self, req: &Request<B>) -> Result<(), &'static str> {
        let mut origins = req.headers().get_all(header::ORIGIN).iter();
        if let Some(o) = origins.next() {
            if origins.next().is_some() {
                return Err("several Origin headers");
            }
            let allowed = o
                .to_str()
                .ok()
                .and_then(origin_of)
                .is_some_and(|o| self.origins.contains(&o));
            if !allowed {
                return Err("Origin not allowed");
            }
        }
        if let Some(hosts) = &self.hosts {
            let host = req
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .or_else(|| req.uri().authority().map(|a| a.as_str()));
            let ok = host.is_some_and(|h| hosts.iter().any(|a| a.eq_ignore_ascii_case(h)));
            if !ok {
                return Err("Host not allowed");
            }
        }
        Ok(())
    }
}

impl<S> Layer<S> for OriginGuardLayer {
    type Service = OriginGuard<S>;

    fn layer(&self, inner: S) -> OriginGuard<S> {
        OriginGuard {
            inner,
            policy: self.policy.clone(),
        }
    }
}

/// The service [`OriginGuardLayer`] makes.
#[derive(Clone, Debug)]
pub struct OriginGuard<S> {
    inner: S,
    policy: Arc<Policy>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S, B, RB> Service<Request<B>> for OriginGuard<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Future: Send + 'static,
    RB: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if let Err(why) = self.policy.check(&req) {
            tracing::debug!(reason = why, "refused by the Origin/Host guard");
            let resp = jsonrpc_error(StatusCode::FORBIDDEN, -32600, why);
            return Box::pin(async move { Ok(resp) });
        }
        let fut = self.inner.call(req);
        Box::pin(async move { fut.await.map(|r| r.map(Body::new)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(origin: Option<&str>, host: Option<&str>) -> Request<()> {
        let mut b = Request::builder().uri("/mcp");
        if let Some(o) = origin {
            b = b.header(header::ORIGIN, o);
        }
        if let Some(h) = host {
            b = b.header(header::HOST, h);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn s11_origin_and_host() {
        let g = OriginGuardLayer::for_loopback("127.0.0.1:8080".parse().unwrap());
        let p = &g.policy;
        assert!(p.check(&req(None, Some("127.0.0.1:8080"))).is_ok());
        assert!(
            p.check(&req(Some("http://localhost:8080"), Some("localhost:8080")))
                .is_ok()
        );
        assert!(
            p.check(&req(Some("http://evil.example"), Some("127.0.0.1:8080")))
                .is_err()
        );
        assert!(p.check(&req(Some("null"), Some("127.0.0.1:8080"))).is_err());
        assert!(p.check(&req(None, Some("evil.example:8080"))).is_err());
        assert!(p.check(&req(None, None)).is_err());

        let public = OriginGuardLayer::new("https://MCP.example.com/mcp").unwrap();
        let p = &public.policy;
        assert!(
            p.check(&req(Some("https://mcp.example.com"), Some("anything")))
                .is_ok()
        );
        assert!(
            p.check(&req(Some("https://mcp.example.com:443"), None))
                .is_ok()
        );
        assert!(p.check(&req(Some("http://mcp.example.com"), None)).is_err());
    }
}
