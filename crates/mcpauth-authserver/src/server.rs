//! The server: shared state, the axum router with its layers, and `serve`.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::Listener;
use tower_http::cors::{Any, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;

use crate::config::{Config, IpNet, RegistrationPolicy};
use crate::error::AuthServerError;
use crate::keys::KeyRing;
use crate::rate_limit::{Bucket, RateLimiter};
use crate::routes;
use crate::secrets::hash_secret;
use crate::store::Store;

/// State shared by every request.
pub(crate) struct Shared {
    pub config: Config,
    pub store: Store,
    pub keys: KeyRing,
    pub limiter: RateLimiter,
    /// An argon2id hash verified against for unknown users, so that timing does not tell which
    /// usernames exist.
    pub dummy_password_hash: String,
    /// SHA-256 of the initial access token, when registration requires one.
    pub registration_token_hash: Option<String>,
    /// Fetched client `jwks_uri` documents.
    pub jwks_cache: Mutex<HashMap<String, crate::client_auth::CachedJwks>>,
    /// Permits for password checks ([`Config::max_concurrent_password_checks`]).
    pub password_checks: Arc<tokio::sync::Semaphore>,
    /// The client of the upstream identity providers (federation), with its caches.
    pub upstream: crate::federation::upstream::Upstream,
    /// The key sealing upstream tokens ([`Config::vault_key`], or a random one).
    pub vault_key: crate::VaultKey,
    /// One upstream refresh per grant at a time.
    pub refresh_locks: crate::federation::session::RefreshLocks,
    /// The DPoP nonces required at the token endpoint ([`Config::dpop_nonces`]).
    pub nonces: Option<mcpauth_core::dpop::NonceIssuer>,
}

crate::redacted_debug!(Shared);

impl Shared {
    /// Takes a token from the rate-limit bucket of `key` (an IP address or a client id).
    pub(crate) fn allow(&self, bucket: Bucket, key: &str) -> bool {
        let l = &self.config.rate_limits;
        let limit = match bucket {
            Bucket::Authorize => l.authorize_per_ip,
            Bucket::Login => l.login_per_ip,
            Bucket::TokenIp => l.token_per_ip,
            Bucket::TokenClient => l.token_per_client,
            Bucket::Register => l.register_per_ip,
            Bucket::DeviceIp => l.device_per_ip,
        };
        let allowed = self.limiter.allow(limit, bucket, key);
        if !allowed {
            // Counted by `mcpauth --metrics-bind` (target `mcpauth::metrics`); never the key.
            tracing::trace!(target: "mcpauth::metrics", counter = "rate_limited", bucket = bucket.name());
        }
        allowed
    }
}

/// How often a server reads the revocations other instances made on a shared database.
pub const REVOCATION_SYNC: Duration = Duration::from_secs(2);

/// Reads other instances' revocations every [`REVOCATION_SYNC`] while the server exists.
async fn sync_revocations(shared: std::sync::Weak<Shared>) {
    let mut tick = tokio::time::interval(REVOCATION_SYNC);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if let Err(e) = shared.store.sync_revocations().await {
            tracing::warn!(error = %e, "reading revocations failed");
        }
    }
}

/// A configured authorization server: build it once, then take its [`router`](Self::router) or
/// [`serve`] it. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AuthServer {
    shared: Arc<Shared>,
}

impl AuthServer {
    /// Checks the configuration and loads (on first start: generates) the signing keys.
    pub async fn new(config: Config, store: Store) -> Result<AuthServer, AuthServerError> {
        config.validate()?;
        let keys = KeyRing::load(store.clone(), config.signing_alg).await?;
        let params = config.password_params;
        let dummy_password_hash = tokio::task::spawn_blocking(move || {
            crate::passwords::hash(&crate::secrets::random_secret(), params)
        })
        .await
        .map_err(|e| AuthServerError::Password(e.to_string()))??;
        let registration_token_hash = match &config.registration {
            RegistrationPolicy::InitialAccessToken(t) => Some(hash_secret(t)),
            _ => None,
        };
        store.note_access_ttl(config.access_token_ttl.as_secs());
        let password_checks = Arc::new(tokio::sync::Semaphore::new(
            (config.max_concurrent_password_checks).min(tokio::sync::Semaphore::MAX_PERMITS),
        ));
        store.sync_revocations().await?;
        let config_vault_key = config.vault_key.clone().unwrap_or_else(|| {
            if !config.identity_providers.is_empty() {
                tracing::warn!(
                    "no vault key configured: upstream tokens are sealed under a key for this \
                     process only, and those grants end at their next refresh after a restart"
                );
            }
            crate::VaultKey::random()
        });
        let nonces = match config.dpop_nonces {
            true => Some(store.dpop_nonces().await?),
            false => None,
        };
        let shared = Arc::new(Shared {
            nonces,
            config,
            store,
            keys,
            limiter: RateLimiter::default(),
            dummy_password_hash,
            registration_token_hash,
            jwks_cache: Mutex::new(HashMap::new()),
            password_checks,
            upstream: crate::federation::upstream::Upstream::new(),
            vault_key: config_vault_key,
            refresh_locks: Default::default(),
        });
        tokio::spawn(sync_revocations(Arc::downgrade(&shared)));
        Ok(AuthServer { shared })
    }

    /// Whether the access token with this `jti` claim has been revoked (RFC 7009), by itself or
    /// with its grant (a logout, a replayed code, a reused refresh token). Answered from memory:
    /// revocations through this server count at once, those of other instances on the same
    /// database within [`REVOCATION_SYNC`]. For a verifier in the same process as the server.
    pub fn access_token_revoked(&self, jti: &str) -> bool {
        self.shared.store.is_revoked(jti)
    }

    /// The fresh upstream access token of the user an access token was issued to, from its
    /// verified `jti` (its grant family): renewed at the identity provider first when it
    /// expires within a minute; the provider refusing that ends the grant (SPEC F3, F4, F8).
    pub async fn upstream_token(
        &self,
        jti: &str,
    ) -> Result<crate::UpstreamAccess, crate::VaultError> {
        let Some((family, _)) = jti.split_once('.') else {
            return Err(crate::VaultError::NoUpstreamGrant);
        };
        if self.shared.store.is_revoked(jti) {
            return Err(crate::VaultError::Ended);
        }
        crate::federation::session::fresh(&self.shared, family).await
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// Re-reads the signing keys now (e.g. after [`crate::admin::rotate_keys`] in this process;
    /// other instances pick a rotation up within a minute).
    pub async fn reload_keys(&self) -> Result<(), AuthServerError> {
        self.shared.keys.reload().await
    }

    /// The axum router with every endpoint and layer. Serve it with connect info
    /// (`into_make_service_with_connect_info::<SocketAddr>()`) so that per-IP rate limits see
    /// the peer address; [`serve`] does.
    pub fn router(&self) -> Router {
        router(self)
    }
}

/// The router of `server`: endpoints under the issuer's path, metadata at the RFC 8414 and
/// OpenID well-known locations, CORS on the endpoints browsers call, body and header limits,
/// and `Authorization`/`Cookie` marked sensitive.
pub fn router(server: &AuthServer) -> Router {
    let shared = server.shared.clone();
    let config = &shared.config;
    let base = config.issuer_path();
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .max_age(Duration::from_secs(3600));
    // Endpoints a browser-based client may call cross-origin (no credentials).
    let mut cors_routes = Router::new()
        .route(&format!("{base}/token"), post(routes::token::token))
        .route(&format!("{base}/revoke"), post(routes::revoke::revoke))
        .route(&format!("{base}/jwks"), get(routes::metadata::jwks))
        .route(
            &format!("{base}/device_authorization"),
            post(routes::device::device_authorization),
        );
    if !matches!(config.registration, RegistrationPolicy::Disabled) {
        cors_routes = cors_routes.route(
            &format!("{base}/register"),
            post(routes::register::register),
        );
    }
    for path in routes::metadata::metadata_paths(config) {
        cors_routes = cors_routes.route(&path, get(routes::metadata::metadata));
    }
    let cors_routes = cors_routes.layer(cors);
    let max_header_bytes = config.max_header_bytes;
    Router::new()
        .route(
            &format!("{base}/authorize"),
            get(routes::authorize::authorize),
        )
        .route(
            &format!("{base}/authorize/login"),
            post(routes::authorize::login),
        )
        .route(
            &format!("{base}/authorize/consent"),
            post(routes::authorize::consent),
        )
        .route(&format!("{base}/account"), get(routes::account::page))
        .route(
            &format!("{base}/account/revoke"),
            post(routes::account::revoke),
        )
        .route(
            &format!("{base}/account/signout"),
            post(routes::account::signout),
        )
        .route(
            &format!("{base}/device"),
            get(routes::device::page).post(routes::device::enter),
        )
        .route(&format!("{base}/idp/start"), get(crate::federation::start))
        .route(
            &format!("{base}/idp/callback"),
            get(crate::federation::callback),
        )
        .route(
            &format!("{base}/introspect"),
            post(routes::introspect::introspect),
        )
        .route(&format!("{base}/healthz"), get(healthz))
        .merge(cors_routes)
        .fallback(not_found)
        .with_state(shared.clone())
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(RequestBodyLimitLayer::new(config.max_body_bytes))
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            limit_headers(req, next, max_header_bytes)
        }))
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            header::COOKIE,
        ]))
}

async fn healthz() -> &'static str {
    "ok"
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found").into_response()
}

/// Refuses requests whose headers are larger than `max` bytes in total, or more than 100.
async fn limit_headers(req: Request, next: Next, max: usize) -> Response {
    let headers = req.headers();
    let size: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum::<usize>()
        + req.uri().to_string().len();
    if size > max || headers.len() > 100 {
        return (
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "request headers too large",
        )
            .into_response();
    }
    next.run(req).await
}

/// The client's IP address for rate limits: the TCP peer; when the peer is a trusted proxy
/// ([`Config::trusted_proxies`]), the address it forwards for (see [`forwarded_client`]);
/// "unknown" without connect info.
pub(crate) fn client_ip(parts: &Parts, trusted: &[IpNet]) -> String {
    match parts.extensions.get::<ConnectInfo<SocketAddr>>() {
        Some(c) => forwarded_client(c.0.ip(), &parts.headers, trusted).to_string(),
        None => "unknown".into(),
    }
}

/// The client behind `peer`: `peer` unless it is trusted; then, walking the forwarded addresses
/// from the right (each proxy appends the address it saw), the first that is not trusted, or the
/// left-most when all are. Only `X-Forwarded-For` is read when present, else RFC 7239 §4
/// `Forwarded` (its `for=` nodes). A hop that is no IP address (`unknown`, an obfuscated node,
/// junk) stops the walk at the nearest trusted address.
fn forwarded_client(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let xff = headers.get_all("x-forwarded-for");
    let (values, forwarded) = if xff.iter().next().is_some() {
        (xff, false)
    } else {
        (headers.get_all(header::FORWARDED), true)
    };
    let mut hops = Vec::new();
    for value in values {
        let Ok(value) = value.to_str() else {
            hops.push(None);
            continue;
        };
        for element in value.split(',') {
            let node = if forwarded {
                // RFC 7239 §4: `for=node` among `;`-separated pairs, names case-insensitive.
                element.split(';').find_map(|pair| {
                    let (name, node) = pair.split_once('=')?;
                    name.trim().eq_ignore_ascii_case("for").then_some(node)
                })
            } else {
                Some(element)
            };
            hops.push(node.and_then(node_ip));
        }
    }
    let mut client = peer;
    for hop in hops.into_iter().rev() {
        let Some(ip) = hop else { break };
        client = ip;
        if !is_trusted(ip) {
            break;
        }
    }
    client
}

/// The address of a forwarded node (RFC 7239 §6): `192.0.2.1`, `192.0.2.1:80`, `2001:db8::1`,
/// `[2001:db8::1]:80`, quoted or not.
fn node_ip(node: &str) -> Option<IpAddr> {
    let node = node.trim().trim_matches('"');
    if let Some(bracketed) = node.strip_prefix('[') {
        let v6: Ipv6Addr = bracketed.split_once(']')?.0.parse().ok()?;
        return Some(IpAddr::V6(v6).to_canonical());
    }
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    node.parse::<SocketAddrV4>()
        .ok()
        .map(|a| IpAddr::V4(*a.ip()))
}

/// Headers every HTML page carries: no framing (clickjacking), no caching, no sniffing, no
/// referrer, and a CSP that allows only the inline stylesheet.
pub(crate) fn page_headers(resp: &mut Response) {
    let h = resp.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, k: HeaderName, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; \
         frame-ancestors 'none'; base-uri 'none'",
    );
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::CACHE_CONTROL, "no-store");
}

/// Serves `server` on `listener` until `shutdown` completes, then finishes in-flight requests,
/// within the configured [`ConnectionLimits`](crate::ConnectionLimits). Expired rows are purged
/// every ten minutes meanwhile.
///
/// `listener` is a TCP listener or any axum [`Listener`] with socket addresses (e.g. a TLS
/// listener); the peer address feeds the per-IP rate limits.
pub async fn serve<L>(
    listener: L,
    server: AuthServer,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AuthServerError>
where
    L: Listener<Addr = SocketAddr>,
{
    let app = server.router();
    serve_app(listener, server, app, shutdown).await
}

/// [`serve`] with `app` instead of `server`'s router as is: the router with layers of the
/// caller's (e.g. metrics).
pub async fn serve_app<L>(
    listener: L,
    server: AuthServer,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AuthServerError>
where
    L: Listener<Addr = SocketAddr>,
{
    let store = server.store().clone();
    let purge = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(600));
        loop {
            tick.tick().await;
            if let Err(e) = store.purge_expired().await {
                tracing::warn!(error = %e, "purging expired rows failed");
            }
        }
    });
    let limits = server.config().connections;
    let result = crate::serve_router(listener, app, limits, shutdown).await;
    purge.abort();
    result.map_err(AuthServerError::Io)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(peer: &str, headers: &[(&str, &str)], trusted: &[&str]) -> String {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let trusted: Vec<IpNet> = trusted.iter().map(|n| IpNet::parse(n).unwrap()).collect();
        forwarded_client(peer.parse().unwrap(), &h, &trusted).to_string()
    }

    #[test]
    fn review4_forwarded_addresses_count_only_from_trusted_proxies() {
        let xff = |v| [("x-forwarded-for", v)];
        let lan = ["10.0.0.0/8"];
        // Untrusted peer: the headers are ignored.
        assert_eq!(client("192.0.2.9", &xff("203.0.113.1"), &lan), "192.0.2.9");
        assert_eq!(client("10.0.0.1", &xff("203.0.113.1"), &[]), "10.0.0.1");
        // The right-most untrusted address; what the client prepended is ignored.
        let chain = xff("198.51.100.1, 203.0.113.1, 10.0.0.2");
        assert_eq!(client("10.0.0.1", &chain, &lan), "203.0.113.1");
        let two_headers = [
            ("x-forwarded-for", "198.51.100.1"),
            ("x-forwarded-for", "203.0.113.1"),
        ];
        assert_eq!(client("10.0.0.1", &two_headers, &lan), "203.0.113.1");
        // All trusted: the left-most. No header: the peer.
        assert_eq!(
            client("10.0.0.1", &xff("10.0.0.3, 10.0.0.2"), &lan),
            "10.0.0.3"
        );
        assert_eq!(client("10.0.0.1", &[], &lan), "10.0.0.1");
        // A hop that is no address stops at the nearest trusted one.
        assert_eq!(
            client("10.0.0.1", &xff("203.0.113.1, unknown, 10.0.0.2"), &lan),
            "10.0.0.2"
        );
        assert_eq!(client("10.0.0.1", &xff("junk"), &lan), "10.0.0.1");
        // Ports, brackets, IPv4-mapped IPv6.
        assert_eq!(
            client("10.0.0.1", &xff("203.0.113.1:4711"), &lan),
            "203.0.113.1"
        );
        assert_eq!(
            client("::ffff:10.0.0.1", &xff("[2001:db8::1]:80"), &lan),
            "2001:db8::1"
        );
    }

    #[test]
    fn review4_rfc7239_forwarded_for() {
        let lan = ["10.0.0.0/8"];
        let fwd = |v| [("forwarded", v)];
        let v = r#"for=198.51.100.1, For="[2001:db8:cafe::17]:4711";proto=https;by=10.0.0.1"#;
        assert_eq!(client("10.0.0.1", &fwd(v), &lan), "2001:db8:cafe::17");
        assert_eq!(
            client("10.0.0.1", &fwd("proto=https;for=\"203.0.113.5:80\""), &lan),
            "203.0.113.5"
        );
        // An element without `for`, or an obfuscated node: no further.
        assert_eq!(
            client("10.0.0.1", &fwd("for=203.0.113.5, proto=https"), &lan),
            "10.0.0.1"
        );
        assert_eq!(client("10.0.0.1", &fwd("for=_hidden"), &lan), "10.0.0.1");
        // X-Forwarded-For wins when both are present.
        let both = [
            ("forwarded", "for=198.51.100.1"),
            ("x-forwarded-for", "203.0.113.1"),
        ];
        assert_eq!(client("10.0.0.1", &both, &lan), "203.0.113.1");
    }
}
