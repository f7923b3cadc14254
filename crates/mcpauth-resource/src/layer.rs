//! The tower layer that guards an MCP endpoint with bearer tokens (RFC 6750; MCP SPEC S2-S8).

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum_core::body::Body;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use mcpauth_core::ScopeSet;
use tower::{Layer, Service};

use crate::challenge::{bearer, dpop_challenge, json_response, jsonrpc_error};
use crate::dpop::{DpopConfig, DpopPolicy, Refusal, bound_key};
use crate::{Principal, ResourceError, ResourceMetadata, ScopePolicy, TokenVerifier};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Largest JSON-RPC body read to find the method and tool, by default (1 MiB).
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// Guards the wrapped service with bearer tokens:
///
/// - no credentials: 401 `WWW-Authenticate: Bearer resource_metadata="…", scope="…"` without
///   `error` (RFC 6750 §3.1; MCP SPEC S2-S3);
/// - a bad, expired or foreign token: 401 `error="invalid_token"` with `error_description`
///   (MCP SPEC S4-S6); a verifier that cannot check tokens right now: 503;
/// - too few scopes for the JSON-RPC method or tool: 403 `error="insufficient_scope"` with
///   every scope the operation needs in one challenge (MCP SPEC S7-S8);
/// - a malformed `Authorization` header (several of them, several tokens, a token without the
///   `Bearer` scheme) or an `access_token` query parameter (RFC 6750 §2.3, MCP SPEC C23): 400
///   `error="invalid_request"`;
/// - a JSON-RPC body larger than the limit, when the policy needs to read it: 413;
/// - DPoP (RFC 9449 §7, SPEC D4-D5; see [`BearerAuthLayer::dpop`]): a token bound to a key
///   (`cnf.jkt`) needs `Authorization: DPoP` and a valid, unused proof by that key, else 401
///   `WWW-Authenticate: DPoP error="invalid_dpop_proof"` (or `invalid_token` for a bound token
///   sent as `Bearer`, a downgrade).
///
/// Otherwise the request goes on with an `Arc<Principal>` in its extensions (see
/// [`principal`](crate::principal) and [`Authenticated`](crate::Authenticated)). CORS
/// preflight requests (`OPTIONS` with `Access-Control-Request-Method`) pass unauthenticated.
/// Tokens are never logged.
///
/// ```no_run
/// # fn f(verifier: mcpauth_resource::JwtVerifier, prm: mcpauth_resource::ResourceMetadata) {
/// use mcpauth_resource::{BearerAuthLayer, ScopePolicy};
/// let layer = BearerAuthLayer::new(verifier, &prm)
///     .scope_policy(ScopePolicy::new().require(["mcp"]).tool("delete", ["files:write"]));
/// # }
/// ```
#[derive(Clone)]
pub struct BearerAuthLayer {
    shared: Arc<Shared>,
}

#[derive(Clone)]
struct Shared {
    verifier: Arc<dyn TokenVerifier>,
    resource_metadata: String,
    policy: ScopePolicy,
    max_body: usize,
    dpop: DpopConfig,
    /// Scheme, host and port the resource is reached at (a proof's `htu` names them).
    origin: String,
}

impl std::fmt::Debug for BearerAuthLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerAuthLayer")
            .field("resource_metadata", &self.shared.resource_metadata)
            .field("policy", &self.shared.policy)
            .field("max_body", &self.shared.max_body)
            .finish_non_exhaustive()
    }
}

impl BearerAuthLayer {
    /// Checks tokens with `verifier`; challenges point at `metadata`'s URL.
    pub fn new(verifier: impl TokenVerifier, metadata: &ResourceMetadata) -> Self {
        Self::with_metadata_url(verifier, metadata.metadata_url())
    }

    /// Like [`new`](Self::new), with the protected resource metadata URL given directly (the
    /// `resource_metadata` challenge parameter, RFC 9728 §5.1).
    pub fn with_metadata_url(
        verifier: impl TokenVerifier,
        resource_metadata_url: impl Into<String>,
    ) -> Self {
        let resource_metadata = resource_metadata_url.into();
        // The metadata is served at the resource's own origin (RFC 9728 §3).
        let origin = url::Url::parse(&resource_metadata)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_default();
        Self {
            shared: Arc::new(Shared {
                verifier: Arc::new(verifier),
                resource_metadata,
                policy: ScopePolicy::new(),
                max_body: DEFAULT_MAX_BODY_BYTES,
                dpop: DpopConfig::default(),
                origin,
            }),
        }
    }

    /// DPoP settings (default: [`DpopPolicy::Allow`], every asymmetric algorithm, an
    /// in-process replay cache). Advertise them in the metadata too
    /// ([`ResourceMetadata::dpop`]): clients bind tokens only for a resource that says it
    /// takes proofs.
    pub fn dpop(mut self, config: DpopConfig) -> Self {
        Arc::make_mut(&mut self.shared).dpop = config;
        self
    }

    /// The scopes requests need (default: none beyond a valid token).
    pub fn scope_policy(mut self, policy: ScopePolicy) -> Self {
        Arc::make_mut(&mut self.shared).policy = policy;
        self
    }

    /// The largest body read to find the JSON-RPC method and tool (default 1 MiB); larger
    /// bodies get 413. Bodies are read only when the policy has per-method or per-tool rules.
    pub fn max_body_bytes(mut self, max: usize) -> Self {
        Arc::make_mut(&mut self.shared).max_body = max;
        self
    }

    /// Authenticates a request without a wrapped service: `Ok` with the request (body
    /// re-attached, principal in its extensions) or `Err` with the answer to send. For callers
    /// that route by hand (e.g. a gateway).
    pub async fn authorize<B>(&self, req: Request<B>) -> Result<Request<Body>, Response<Body>>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        self.shared.authorize(req).await
    }
}

impl<S> Layer<S> for BearerAuthLayer {
    type Service = BearerAuth<S>;

    fn layer(&self, inner: S) -> BearerAuth<S> {
        BearerAuth {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service [`BearerAuthLayer`] makes.
#[derive(Clone)]
pub struct BearerAuth<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> std::fmt::Debug for BearerAuth<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerAuth").finish_non_exhaustive()
    }
}

impl<S, B, RB> Service<Request<B>> for BearerAuth<S>
where
    S: Service<Request<Body>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    RB: http_body::Body<Data = Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The clone that was driven to readiness serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        Box::pin(async move {
            let mut resp = match shared.authorize(req).await {
                Ok(req) => inner.call(req).await?.map(Body::new),
                Err(resp) => resp,
            };
            shared.dpop.add_nonce(resp.headers_mut());
            Ok(resp)
        })
    }
}

/// What the `Authorization` header holds.
enum Credentials<'a> {
    /// No header (or an auth scheme we do not support): a plain challenge.
    Missing,
    /// One bearer token.
    Bearer(&'a str),
    /// One token under the `DPoP` scheme (RFC 9449 §7.1).
    Dpop(&'a str),
    /// Malformed: 400 `invalid_request`.
    Malformed(&'static str),
}

/// RFC 6750 §2.1 `b64token`.
fn is_b64token(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

/// Three base64url segments: a JWT sent without a scheme, or under a made-up one.
fn looks_like_jwt(s: &str) -> bool {
    s.split('.').count() == 3 && is_b64token(s) && s.len() > 20
}

fn credentials(headers: &HeaderMap) -> Credentials<'_> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Credentials::Missing;
    };
    if values.next().is_some() {
        return Credentials::Malformed("send exactly one Authorization header");
    }
    let Ok(value) = value.to_str() else {
        return Credentials::Malformed("the Authorization header is not ASCII");
    };
    let value = value.trim();
    let (scheme, rest) = match value.split_once(' ') {
        Some((s, r)) => (s, r.trim_start_matches(' ')),
        None => (value, ""),
    };
    if scheme.eq_ignore_ascii_case("Bearer") {
        return if rest.is_empty() {
            Credentials::Malformed("the Bearer scheme needs a token")
        } else if !is_b64token(rest) {
            Credentials::Malformed("send exactly one token after `Bearer ` (RFC 6750 §2.1)")
        } else {
            Credentials::Bearer(rest)
        };
    }
    if scheme.eq_ignore_ascii_case("DPoP") {
        return if rest.is_empty() || !is_b64token(rest) {
            Credentials::Malformed("send exactly one token after `DPoP ` (RFC 9449 §7.1)")
        } else {
            Credentials::Dpop(rest)
        };
    }
    if rest.is_empty() && looks_like_jwt(scheme) {
        return Credentials::Malformed("a token without the `Bearer` scheme (RFC 6750 §2.1)");
    }
    if looks_like_jwt(rest) && !is_known_scheme(scheme) {
        return Credentials::Malformed(
            "send access tokens with the `Bearer` scheme (RFC 6750 §2.1)",
        );
    }
    // Another authentication scheme (Basic, …): RFC 6750 §3.1 says answer as if no
    // credentials had come.
    Credentials::Missing
}

fn is_known_scheme(scheme: &str) -> bool {
    [
        "Basic",
        "Digest",
        "Negotiate",
        "NTLM",
        "DPoP",
        "HOBA",
        "Mutual",
        "SCRAM-SHA-256",
        "AWS4-HMAC-SHA256",
    ]
    .iter()
    .any(|s| s.eq_ignore_ascii_case(scheme))
}

/// Whether the query string carries `access_token` (RFC 6750 §2.3, refused: MCP SPEC C23).
fn token_in_query(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        q.contains("access_token")
            && url::form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == "access_token")
    })
}

fn is_preflight<B>(req: &Request<B>) -> bool {
    req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// The audit event of a refused request (target `mcpauth::audit`, as the authorization
/// server's events): the status, the OAuth error code and why, never the token.
fn audit_refusal(status: StatusCode, code: &str, reason: &str) {
    tracing::info!(
        target: "mcpauth::audit",
        event = "access.refused",
        status = status.as_u16(),
        error = code,
        reason
    );
}

/// One token check's outcome, for `mcpauth --metrics-bind` (a TRACE event on target
/// `mcpauth::metrics`: free unless a subscriber asks for it; a fixed set of values, never the
/// token or the subject).
fn counted(result: &'static str) {
    tracing::trace!(target: "mcpauth::metrics", counter = "token_verifications", result);
}

/// The outcome label of a refused token.
fn result_of(e: &ResourceError) -> &'static str {
    match e {
        ResourceError::Expired => "expired",
        ResourceError::WrongAudience => "bad_audience",
        ResourceError::WrongIssuer => "bad_issuer",
        ResourceError::Inactive => "revoked",
        ResourceError::Unavailable { .. } | ResourceError::Config(_) => "unavailable",
        _ => "invalid",
    }
}

impl Shared {
    fn refuse(
        &self,
        status: StatusCode,
        scope: &ScopeSet,
        error: Option<(&str, &str)>,
    ) -> Response<Body> {
        // A request without credentials is the discovery step, not a refusal worth auditing.
        if let Some((code, reason)) = error {
            audit_refusal(status, code, reason);
        }
        let mut resp = bearer(status, &self.resource_metadata, scope, error);
        if self.dpop.policy == DpopPolicy::Require {
            // RFC 9449 §7.1: say which proof algorithms are accepted.
            let dpop = dpop_challenge(
                status,
                &self.resource_metadata,
                &self.dpop.algs_param(),
                None,
            );
            if let Some(v) = dpop.headers().get(header::WWW_AUTHENTICATE) {
                resp.headers_mut()
                    .append(header::WWW_AUTHENTICATE, v.clone());
            }
        }
        resp
    }

    fn refuse_dpop(&self, code: &str, description: &str) -> Response<Body> {
        tracing::debug!(reason = %description, "refused a DPoP request");
        audit_refusal(StatusCode::UNAUTHORIZED, code, description);
        dpop_challenge(
            StatusCode::UNAUTHORIZED,
            &self.resource_metadata,
            &self.dpop.algs_param(),
            Some((code, description)),
        )
    }

    async fn authorize<B>(&self, req: Request<B>) -> Result<Request<Body>, Response<Body>>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        if is_preflight(&req) {
            return Ok(req.map(Body::new));
        }
        if token_in_query(req.uri().query()) {
            return Err(self.refuse(
                StatusCode::BAD_REQUEST,
                &self.policy.challenge(),
                Some((
                    "invalid_request",
                    "access tokens in the URI query are refused; use the Authorization header (RFC 6750 §2.3)",
                )),
            ));
        }
        let (token, dpop_scheme) = match credentials(req.headers()) {
            Credentials::Missing => {
                return Err(self.refuse(StatusCode::UNAUTHORIZED, &self.policy.challenge(), None));
            }
            Credentials::Malformed(why) => {
                counted("invalid");
                return Err(self.refuse(
                    StatusCode::BAD_REQUEST,
                    &self.policy.challenge(),
                    Some(("invalid_request", why)),
                ));
            }
            Credentials::Bearer(t) => (t, false),
            Credentials::Dpop(t) => (t, true),
        };
        if !dpop_scheme && self.dpop.policy == DpopPolicy::Require {
            counted("dpop_refused");
            return Err(self.refuse_dpop(
                "invalid_token",
                "this resource accepts only DPoP-bound tokens, sent with the DPoP scheme and a proof (RFC 9449 §7.1)",
            ));
        }
        let verified = self.verifier.verify(token).await;
        if let Err(e) = &verified {
            counted(result_of(e));
        }
        let principal: Arc<Principal> = match verified {
            Ok(p) => p,
            // RFC 9449 §7.1: a token refused under the DPoP scheme gets a DPoP challenge.
            Err(e) if dpop_scheme && e.status() == StatusCode::UNAUTHORIZED => {
                return Err(self.refuse_dpop("invalid_token", &e.to_string()));
            }
            Err(e) => return Err(self.verify_failed(&e)),
        };
        if dpop_scheme {
            let url = format!("{}{}", self.origin, req.uri().path());
            let checked = self
                .dpop
                .check(
                    req.headers(),
                    req.method().as_str(),
                    &url,
                    token,
                    &principal,
                )
                .await;
            if checked.is_err() {
                counted("dpop_refused");
            }
            match checked {
                Ok(()) => {}
                Err(Refusal::Token(why)) => return Err(self.refuse_dpop("invalid_token", why)),
                Err(Refusal::Proof(e)) => {
                    return Err(self.refuse_dpop(e.error_code(), &e.to_string()));
                }
                Err(Refusal::Replayed) => {
                    return Err(self.refuse_dpop(
                        "invalid_dpop_proof",
                        "the DPoP proof was already used (RFC 9449 §11.1)",
                    ));
                }
                Err(Refusal::Unavailable(e)) => return Err(self.verify_failed(&e)),
            }
        } else if bound_key(&principal).is_some() {
            // RFC 9449 §7.2: a bound token without its proof is a downgrade.
            counted("dpop_refused");
            return Err(self.refuse_dpop(
                "invalid_token",
                "this token is DPoP-bound: send it with the DPoP scheme and a proof (RFC 9449 §7.2)",
            ));
        }
        let (mut parts, body) = req.into_parts();
        let (required, body) = if self.policy.needs_body() && parts.method == Method::POST {
            let bytes = self.read_body(&parts.headers, body).await?;
            let required = self.policy.required_for_body(&bytes);
            (Cow::Owned(required), Body::from(bytes))
        } else {
            (Cow::Borrowed(self.policy.base_scopes()), Body::new(body))
        };
        if !self.policy.is_satisfied(&principal.scopes, &required) {
            tracing::debug!(subject = %principal.subject, required = %required, granted = %principal.scopes, "insufficient scope");
            counted("insufficient_scope");
            return Err(self.refuse(
                StatusCode::FORBIDDEN,
                &required,
                Some((
                    "insufficient_scope",
                    "the access token lacks scopes this request needs",
                )),
            ));
        }
        parts.extensions.insert(principal);
        counted("ok");
        Ok(Request::from_parts(parts, body))
    }

    fn verify_failed(&self, e: &ResourceError) -> Response<Body> {
        let status = e.status();
        if status == StatusCode::UNAUTHORIZED {
            tracing::debug!(reason = %e, "refused an access token");
            self.refuse(
                status,
                &self.policy.challenge(),
                Some(("invalid_token", &e.to_string())),
            )
        } else {
            tracing::warn!(error = %e, "cannot verify access tokens");
            let mut resp = json_response(
                status,
                &serde_json::json!({"error": "temporarily_unavailable", "error_description": e.to_string()}),
            );
            resp.headers_mut()
                .insert(header::RETRY_AFTER, http::HeaderValue::from_static("5"));
            resp
        }
    }

    async fn read_body<B>(&self, headers: &HeaderMap, body: B) -> Result<Bytes, Response<Body>>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let too_large = || {
            jsonrpc_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                -32600,
                &format!("the request body is larger than {} bytes", self.max_body),
            )
        };
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.max_body as u64) {
            return Err(too_large());
        }
        match Limited::new(body, self.max_body).collect().await {
            Ok(c) => Ok(c.to_bytes()),
            Err(e) if e.is::<LengthLimitError>() => Err(too_large()),
            Err(_) => Err(jsonrpc_error(
                StatusCode::BAD_REQUEST,
                -32700,
                "the request body could not be read",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(v: &[&str]) -> String {
        let mut h = HeaderMap::new();
        for v in v {
            h.append(header::AUTHORIZATION, v.parse().unwrap());
        }
        match credentials(&h) {
            Credentials::Missing => "missing".into(),
            Credentials::Bearer(t) => format!("bearer {t}"),
            Credentials::Dpop(t) => format!("dpop {t}"),
            Credentials::Malformed(_) => "malformed".into(),
        }
    }

    #[test]
    fn s6_authorization_header_forms() {
        assert_eq!(creds(&[]), "missing");
        assert_eq!(creds(&["Bearer abc.def-_~+/=="]), "bearer abc.def-_~+/==");
        assert_eq!(creds(&["bearer   abc"]), "bearer abc");
        assert_eq!(creds(&["Bearer a b"]), "malformed");
        assert_eq!(creds(&["Bearer a,b"]), "malformed");
        assert_eq!(creds(&["Bearer "]), "malformed");
        assert_eq!(creds(&["Bearer a", "Bearer b"]), "malformed");
        assert_eq!(creds(&["Basic dXNlcjpwYXNz"]), "missing");
        assert_eq!(creds(&["DPoP abc.def"]), "dpop abc.def");
        assert_eq!(creds(&["dpop a b"]), "malformed");
        assert_eq!(creds(&["DPoP"]), "malformed");
        assert_eq!(
            creds(&["eyJhbGciOi.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"]),
            "malformed"
        );
        assert_eq!(
            creds(&["Token eyJhbGciOi.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"]),
            "malformed"
        );
    }

    #[test]
    fn c23_query_tokens_are_spotted() {
        assert!(token_in_query(Some("a=1&access_token=x")));
        assert!(!token_in_query(Some("my_access_token_hint=1")));
        assert!(!token_in_query(None));
    }
}
