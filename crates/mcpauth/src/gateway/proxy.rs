//! The authenticating reverse proxy of `mcpauth gateway --upstream URL`: streams request and
//! response bodies (SSE passes through event by event), keeps the MCP headers, never passes the
//! client's token on (MCP SPEC S5), and binds each MCP session to the principal that opened it
//! (S12: another user's token cannot use it).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mcpauth_authserver::{AuthServer, UpstreamAccess, VaultError};
use mcpauth_resource::principal;
use serde_json::json;

/// Request headers passed to the upstream, besides `Mcp-Param-*` (everything else,
/// Authorization and cookies included, stays at the gateway).
const FORWARDED_REQUEST: &[&str] = &[
    "content-type",
    "accept",
    "mcp-session-id",
    "mcp-protocol-version",
    "last-event-id",
    "mcp-method",
    "mcp-name",
    "user-agent",
];

/// Response headers passed back to the client.
const FORWARDED_RESPONSE: &[&str] = &[
    "content-type",
    "mcp-session-id",
    "mcp-protocol-version",
    "cache-control",
    "retry-after",
];

/// Sessions unused this long are forgotten.
const SESSION_IDLE: Duration = Duration::from_secs(24 * 3600);

/// Which principal opened which MCP session.
#[derive(Debug, Default)]
pub struct Sessions {
    owners: Mutex<HashMap<String, (String, String, Instant)>>,
}

impl Sessions {
    /// Whether `owner` may use session `id` (an unknown session is the upstream's to judge).
    fn allows(&self, id: &str, owner: (&str, &str)) -> bool {
        let mut owners = self.owners.lock().unwrap();
        match owners.get_mut(id) {
            Some((iss, sub, used)) if (iss.as_str(), sub.as_str()) == owner => {
                *used = Instant::now();
                true
            }
            Some(_) => false,
            None => true,
        }
    }

    fn bind(&self, id: &str, owner: (&str, &str)) {
        let mut owners = self.owners.lock().unwrap();
        owners.retain(|_, (_, _, used)| used.elapsed() < SESSION_IDLE);
        owners
            .entry(id.to_owned())
            .or_insert_with(|| (owner.0.to_owned(), owner.1.to_owned(), Instant::now()));
    }

    fn end(&self, id: &str) {
        self.owners.lock().unwrap().remove(id);
    }
}

/// The upstream and how to reach it.
#[derive(Debug)]
pub struct Upstream {
    /// The upstream MCP endpoint.
    pub url: String,
    /// Headers added to every upstream request (`--upstream-header`).
    pub headers: HeaderMap,
    /// The HTTP client (no redirects, no overall timeout: streams may last).
    pub http: reqwest::Client,
    /// Session owners.
    pub sessions: Sessions,
    /// `--upstream-token`: where the user's identity provider token goes.
    pub upstream_token: Option<UpstreamToken>,
    /// `--identity-header`: a signed assertion of who calls.
    pub identity: Option<IdentityHeader>,
}

/// The fresh provider token of the grant of the access token `jti` (SPEC F8), or the answer
/// to give the client instead: 403 for a grant without one, 401 when the provider ended the
/// session, 503 when it cannot be reached.
pub(crate) async fn upstream_access(
    server: &AuthServer,
    jti: Option<&str>,
) -> Result<UpstreamAccess, Response> {
    let got = match jti {
        Some(jti) => server.upstream_token(jti).await,
        None => Err(VaultError::NoUpstreamGrant),
    };
    got.map_err(|e| match e {
        VaultError::NoUpstreamGrant => json_rpc_error(
            StatusCode::FORBIDDEN,
            "this MCP server needs your identity provider's access token: sign in with the \
             identity provider, not a password",
        ),
        VaultError::Ended => json_rpc_error(
            StatusCode::UNAUTHORIZED,
            "the identity provider ended your session; sign in again",
        ),
        VaultError::Unavailable(_) => json_rpc_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the identity provider could not be reached to renew your session; try again",
        ),
        VaultError::Store(e) => {
            tracing::error!(error = %e, "reading the upstream token failed");
            json_rpc_error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    })
}

/// The `jti` of the request's verified access token.
pub(crate) fn access_jti(req: &Request) -> Option<String> {
    principal(req).and_then(|p| p.claims.get("jti")?.as_str().map(str::to_owned))
}

/// `--identity-header HEADER`: a JWT signed by the embedded authorization server naming the
/// caller, for the upstream `audience`.
#[derive(Debug)]
pub struct IdentityHeader {
    /// The header set on every upstream request.
    pub header: HeaderName,
    /// The embedded authorization server (its key signs).
    pub server: AuthServer,
    /// The `aud` claim: the upstream URL.
    pub audience: String,
}

/// `--upstream-token HEADER`: the header and the embedded server whose vault holds the tokens.
#[derive(Debug)]
pub struct UpstreamToken {
    /// The header set on every upstream request.
    pub header: HeaderName,
    /// The embedded authorization server.
    pub server: AuthServer,
}

impl UpstreamToken {
    /// The header's value for the grant of the access token `jti` (SPEC F8), or the answer to
    /// give the client instead of forwarding.
    async fn value(&self, jti: Option<&str>) -> Result<HeaderValue, Response> {
        let token = upstream_access(&self.server, jti).await?;
        let text = if self.header == header::AUTHORIZATION {
            format!("Bearer {}", token.access_token())
        } else {
            token.access_token().to_owned()
        };
        let mut value = HeaderValue::from_str(&text).map_err(|_| {
            json_rpc_error(
                StatusCode::BAD_GATEWAY,
                "the identity provider's access token cannot travel in a header",
            )
        })?;
        value.set_sensitive(true);
        Ok(value)
    }
}

pub(crate) fn json_rpc_error(status: StatusCode, message: &str) -> Response {
    let body = json!({"jsonrpc": "2.0", "error": {"code": -32600, "message": message}});
    (status, axum::Json(body)).into_response()
}

/// Relays one request to the upstream.
pub async fn forward(State(up): State<Arc<Upstream>>, req: Request) -> Response {
    let Some(who) = principal(&req).map(|p| {
        let (iss, sub) = p.key();
        (iss.to_owned(), sub.to_owned())
    }) else {
        // The bearer layer runs first; reaching here without a principal is a wiring bug.
        return json_rpc_error(StatusCode::UNAUTHORIZED, "not authenticated");
    };
    let owner = (who.0.as_str(), who.1.as_str());
    let mut headers = up.headers.clone();
    if let Some(t) = &up.upstream_token {
        let jti = access_jti(&req);
        match t.value(jti.as_deref()).await {
            Ok(v) => {
                headers.insert(t.header.clone(), v);
            }
            Err(refused) => return refused,
        }
    }
    if let Some(id) = &up.identity {
        let jti = access_jti(&req);
        let signed = id
            .server
            .identity_token(owner.1, jti.as_deref(), &id.audience)
            .await;
        match signed.map(|jwt| HeaderValue::from_str(&jwt)) {
            Ok(Ok(mut v)) => {
                v.set_sensitive(true);
                headers.insert(id.header.clone(), v);
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "the identity assertion is no header value");
                return json_rpc_error(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
            }
            Err(e) => {
                tracing::error!(error = %e, "signing the identity assertion failed");
                return json_rpc_error(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
            }
        }
    }
    let session = req
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(id) = &session
        && !up.sessions.allows(id, owner)
    {
        tracing::warn!(subject = %owner.1, "refused a session opened by another principal");
        return json_rpc_error(
            StatusCode::FORBIDDEN,
            "this MCP session belongs to another user (MCP SPEC S12)",
        );
    }
    let method = req.method().clone();
    let mut out = up.http.request(method.clone(), &up.url).headers(headers);
    for (name, v) in req.headers() {
        // Streamable HTTP (2026-07-28) §Custom Headers (SEP-2243): the `x-mcp-header`
        // parameters of a tool call travel as `Mcp-Param-{Name}`; the server checks them.
        if FORWARDED_REQUEST.contains(&name.as_str()) || name.as_str().starts_with("mcp-param-") {
            out = out.header(name, v);
        }
    }
    let body = reqwest::Body::wrap_stream(req.into_body().into_data_stream());
    let started = std::time::Instant::now();
    let sent = out.body(body).send().await;
    crate::metrics::upstream(
        sent.as_ref().is_ok_and(|r| !r.status().is_server_error()),
        started,
    );
    let response = match sent {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "the upstream MCP server is unreachable");
            return json_rpc_error(
                StatusCode::BAD_GATEWAY,
                "the upstream MCP server is unreachable",
            );
        }
    };
    let status = response.status();
    if matches!(status.as_u16(), 401 | 403) {
        // The upstream refused the gateway's own credential: not the client's business to
        // answer with OAuth (its token is not passed on).
        tracing::warn!(
            status = status.as_u16(),
            "the upstream refused the gateway's credential"
        );
        return json_rpc_error(
            StatusCode::BAD_GATEWAY,
            "the upstream MCP server refused the gateway's credential (see --upstream-header)",
        );
    }
    if let Some(id) = response
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
    {
        up.sessions.bind(id, owner);
    }
    if method == axum::http::Method::DELETE
        && status.is_success()
        && let Some(id) = &session
    {
        up.sessions.end(id);
    }
    let mut builder = Response::builder().status(status);
    for name in FORWARDED_RESPONSE {
        for v in response.headers().get_all(*name) {
            builder = builder.header(HeaderName::from_static(name), v);
        }
    }
    if response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"))
    {
        // Event streams must not be buffered by anything in between.
        builder = builder.header("x-accel-buffering", "no");
    }
    builder
        .body(Body::from_stream(response.bytes_stream()))
        .unwrap_or_else(|_| json_rpc_error(StatusCode::BAD_GATEWAY, "bad upstream response"))
}
