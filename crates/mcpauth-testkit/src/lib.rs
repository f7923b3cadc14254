//! Test-only: a real (small) OAuth authorization server and protected MCP endpoint on
//! 127.0.0.1, with knobs to make it misbehave. Every test starts its own on port 0. Not the
//! product's authorization server (that is `mcpauth-authserver`): this one is scriptable.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

mod eras;
mod github;
mod oidc;
mod upstream;
pub use eras::{Era, Received};
pub use github::{GithubFault, GithubProvider, GithubUser};
pub use oidc::{IdpFault, IdpUser, OidcProvider};
pub use upstream::ClientAuth;

/// How the test authorization server behaves.
#[derive(Clone, Debug)]
pub struct Knobs {
    /// Access token lifetime in seconds.
    pub expires_in: u64,
    /// The `issuer` its metadata claims (None = its real URL).
    pub metadata_issuer: Option<String>,
    /// The `iss` it puts in authorization responses (None = its real URL).
    pub response_iss: Option<String>,
    /// Whether it advertises `authorization_response_iss_parameter_supported` (and sends `iss`).
    pub iss_supported: bool,
    /// Whether it advertises S256.
    pub s256: bool,
    /// The `state` it returns instead of the client's.
    pub state_override: Option<String>,
    /// Redirect with `error=access_denied` instead of a code.
    pub deny: bool,
    /// The PRM `resource` (None = the MCP URL).
    pub prm_resource: Option<String>,
    /// The PRM `authorization_servers` (None = itself).
    pub prm_authorization_servers: Option<Vec<String>>,
    /// Raw body of the metadata document instead of the real one.
    pub metadata_body: Option<String>,
    /// Bytes of padding added to token responses.
    pub token_padding: usize,
    /// Delay of refresh responses (to make concurrent refreshes overlap).
    pub refresh_delay: Duration,
    /// Whether refresh responses rotate the refresh token.
    pub rotate: bool,
    /// Scopes required by the MCP endpoint.
    pub required_scopes: Vec<String>,
    /// The MCP endpoint refuses every token with 401 `invalid_token`.
    pub refuse_all_tokens: bool,
    /// The token endpoint answers with this status (and `temporarily_unavailable`) instead.
    pub token_status: Option<u16>,
    /// `/mcp` answers 405 to every POST (a server with only the 2024-11-05 transport).
    pub legacy_only: bool,
    /// The legacy stream names its message endpoint on this other origin (an attack).
    pub legacy_endpoint_origin: Option<String>,
    /// GET on `/mcp` opens a Streamable HTTP event stream that never ends (and DELETE stays 405).
    pub endless_get_stream: bool,
    /// `initialize` opens an MCP session (`Mcp-Session-Id`); unknown session ids get 404.
    pub sessions: bool,
    /// Which MCP revisions `/mcp` speaks (see the `eras` module).
    pub era: Era,
    /// With `sessions`: GET on `/mcp` opens the session's notification stream.
    pub get_stream: bool,
    /// The `client_id` dynamic registration hands out (None = `client-N`): a hostile server's.
    pub registered_client_id: Option<String>,
    /// The access token every grant issues (None = `at-N`): a hostile server's.
    pub access_token: Option<String>,
    /// The workload JWTs the JWT bearer grant accepts (RFC 7523 §2.1, SEP-1933); any other
    /// assertion is refused with `invalid_grant` and [`Knobs::workload_refusal`].
    pub workload_tokens: Vec<String>,
    /// The `error_description` of a refused JWT bearer grant.
    pub workload_refusal: String,
    /// The metadata's `grant_types_supported` (None = every grant it implements).
    pub grant_types: Option<Vec<String>>,
    /// Advertise DPoP (`dpop_signing_alg_values_supported: ["ES256"]`) in both metadata
    /// documents (RFC 9449 §5.1, RFC 9728 §2). Its tokens stay `Bearer` (a server may answer a
    /// proof with a Bearer token, RFC 9449 §5).
    pub dpop: bool,
}

impl Default for Knobs {
    fn default() -> Self {
        Self {
            expires_in: 3600,
            metadata_issuer: None,
            response_iss: None,
            iss_supported: true,
            s256: true,
            state_override: None,
            deny: false,
            prm_resource: None,
            prm_authorization_servers: None,
            metadata_body: None,
            token_padding: 0,
            refresh_delay: Duration::ZERO,
            rotate: true,
            required_scopes: Vec::new(),
            refuse_all_tokens: false,
            token_status: None,
            legacy_only: false,
            legacy_endpoint_origin: None,
            endless_get_stream: false,
            sessions: false,
            era: Era::Legacy,
            get_stream: false,
            registered_client_id: None,
            access_token: None,
            workload_tokens: Vec::new(),
            workload_refusal: "the workload token is not trusted".into(),
            grant_types: None,
            dpop: false,
        }
    }
}

/// What the server saw.
#[derive(Debug, Default)]
pub struct Counters {
    /// `/register` calls.
    pub registrations: usize,
    /// `/authorize` calls.
    pub authorizations: usize,
    /// Successful code exchanges.
    pub code_exchanges: usize,
    /// Successful refreshes.
    pub refreshes: usize,
    /// Client credentials grants.
    pub client_credentials: usize,
    /// Refresh attempts refused with `invalid_grant`.
    pub refused_refreshes: usize,
    /// Requests to the MCP endpoint.
    pub mcp_requests: usize,
    /// Tokens revoked at `/revoke` (RFC 7009).
    pub revocations: Vec<String>,
    /// The last authorization request's query parameters.
    pub last_authorize: HashMap<String, String>,
    /// The last token request's form.
    pub last_token_form: HashMap<String, String>,
    /// The last token request's Authorization header.
    pub last_token_auth: Option<String>,
    /// The last token request's `DPoP` header (RFC 9449 §4).
    pub last_token_dpop: Option<String>,
    /// Every assertion of a JWT bearer grant, accepted or not, in order.
    pub workload_assertions: Vec<String>,
}

#[derive(Debug, Default)]
struct Grants {
    clients: HashMap<String, Option<String>>,
    codes: HashMap<String, IssuedCode>,
    refresh: HashMap<String, (String, String)>, // refresh token -> (client, scope)
    access: HashMap<String, String>,            // access token -> scope
    devices: HashMap<String, PendingDevice>,    // device code -> pending approval
    next: u64,
}

/// What an authorization code was issued for: it is redeemable only by the same client, with
/// the PKCE verifier of the challenge, the same `redirect_uri` (RFC 6749 §4.1.3) and the same
/// `resource` (RFC 8707 §2.2).
#[derive(Debug)]
struct IssuedCode {
    client: String,
    challenge: String,
    scope: String,
    redirect_uri: String,
    resource: Option<String>,
}

/// A device authorization waiting for the user (RFC 8628).
#[derive(Debug)]
struct PendingDevice {
    client: String,
    user_code: String,
    scope: String,
    approved: bool,
}

/// Open legacy (2024-11-05 HTTP+SSE) sessions: session id -> the stream's sender.
type LegacySessions = Arc<Mutex<HashMap<String, tokio::sync::mpsc::Sender<String>>>>;

/// A running test server.
#[derive(Clone)]
pub struct TestServer {
    /// `http://127.0.0.1:PORT`: the issuer, and the origin of the MCP endpoint.
    pub base: String,
    /// The behaviour, changeable while it runs.
    pub knobs: Arc<Mutex<Knobs>>,
    /// What it saw.
    pub counters: Arc<Mutex<Counters>>,
    grants: Arc<Mutex<Grants>>,
    legacy: LegacySessions,
    /// Live MCP sessions (with the `sessions` knob).
    mcp_sessions: Arc<Mutex<HashSet<String>>>,
    eras: Arc<eras::EraLog>,
}

impl TestServer {
    /// Starts a server with `knobs` on 127.0.0.1:0.
    pub async fn start(knobs: Knobs) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = TestServer {
            base,
            knobs: Arc::new(Mutex::new(knobs)),
            counters: Default::default(),
            grants: Default::default(),
            legacy: Default::default(),
            mcp_sessions: Default::default(),
            eras: Default::default(),
        };
        let app = Router::new()
            .route("/.well-known/oauth-protected-resource/mcp", get(prm))
            .route("/.well-known/oauth-authorization-server", get(metadata))
            .route("/register", post(register))
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .route("/revoke", post(revoke))
            .route("/device_authorization", post(device_authorization))
            .route("/device", get(device_approve))
            .route("/mcp", post(mcp).get(legacy_sse))
            .route("/messages", post(legacy_message))
            .with_state(server.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        server
    }

    /// The MCP endpoint URL.
    pub fn mcp_url(&self) -> String {
        format!("{}/mcp", self.base)
    }

    /// Changes a knob.
    pub fn set(&self, f: impl FnOnce(&mut Knobs)) {
        f(&mut self.knobs.lock().unwrap());
    }

    /// Reads the counters.
    pub fn seen<T>(&self, f: impl FnOnce(&Counters) -> T) -> T {
        f(&self.counters.lock().unwrap())
    }

    /// Forgets every MCP session, as a restarted server would.
    pub fn restart(&self) {
        self.mcp_sessions.lock().unwrap().clear();
    }

    /// Invalidates every access token (as after a server-side revocation).
    pub fn revoke_access_tokens(&self) {
        self.grants.lock().unwrap().access.clear();
    }

    /// Forgets every registered client (as after a server reset).
    pub fn forget_clients(&self) {
        self.grants.lock().unwrap().clients.clear();
    }

    /// Registers a client with an optional secret (a pre-registered client).
    pub fn add_client(&self, id: &str, secret: Option<&str>) {
        self.grants
            .lock()
            .unwrap()
            .clients
            .insert(id.into(), secret.map(Into::into));
    }
}

fn www_authenticate(s: &TestServer, error: Option<&str>, scope: &str) -> String {
    let mut v = format!(
        "Bearer resource_metadata=\"{}/.well-known/oauth-protected-resource/mcp\"",
        s.base
    );
    if let Some(e) = error {
        v.push_str(&format!(", error=\"{e}\""));
    }
    if !scope.is_empty() {
        v.push_str(&format!(", scope=\"{scope}\""));
    }
    v
}

async fn prm(State(s): State<TestServer>) -> Json<Value> {
    let k = s.knobs.lock().unwrap().clone();
    let mut m = json!({
        "resource": k.prm_resource.unwrap_or_else(|| s.mcp_url()),
        "authorization_servers": k.prm_authorization_servers.unwrap_or_else(|| vec![s.base.clone()]),
        "scopes_supported": ["mcp:read", "mcp:write"],
    });
    if k.dpop {
        m["dpop_signing_alg_values_supported"] = json!(["ES256"]);
    }
    Json(m)
}

async fn metadata(State(s): State<TestServer>) -> Response {
    let k = s.knobs.lock().unwrap().clone();
    if let Some(body) = k.metadata_body {
        return ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    }
    let mut m = json!({
        "issuer": k.metadata_issuer.unwrap_or_else(|| s.base.clone()),
        "authorization_endpoint": format!("{}/authorize", s.base),
        "token_endpoint": format!("{}/token", s.base),
        "registration_endpoint": format!("{}/register", s.base),
        "revocation_endpoint": format!("{}/revoke", s.base),
        "device_authorization_endpoint": format!("{}/device_authorization", s.base),
        "response_types_supported": ["code"],
        "grant_types_supported": k.grant_types.unwrap_or_else(|| [
            "authorization_code", "refresh_token", "client_credentials", JWT_BEARER,
        ].map(String::from).to_vec()),
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "authorization_response_iss_parameter_supported": k.iss_supported,
    });
    if k.s256 {
        m["code_challenge_methods_supported"] = json!(["S256"]);
    }
    if k.dpop {
        m["dpop_signing_alg_values_supported"] = json!(["ES256"]);
    }
    Json(m).into_response()
}

async fn register(State(s): State<TestServer>, Json(body): Json<Value>) -> Response {
    s.counters.lock().unwrap().registrations += 1;
    // RFC 8628 clients have no redirect; every other client needs one.
    let device = body["grant_types"].as_array().is_some_and(|g| {
        g.iter()
            .any(|g| g == "urn:ietf:params:oauth:grant-type:device_code")
    });
    if !device
        && body["redirect_uris"]
            .as_array()
            .is_none_or(|r| r.is_empty())
    {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_redirect_uri", "error_description": "redirect_uris required"})),
        )
            .into_response();
    }
    let chosen = s.knobs.lock().unwrap().registered_client_id.clone();
    let mut g = s.grants.lock().unwrap();
    g.next += 1;
    let id = chosen.unwrap_or_else(|| format!("client-{}", g.next));
    g.clients.insert(id.clone(), None);
    let mut out = body.clone();
    out["client_id"] = json!(id);
    (StatusCode::CREATED, Json(out)).into_response()
}

async fn authorize(
    State(s): State<TestServer>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let k = s.knobs.lock().unwrap().clone();
    {
        let mut c = s.counters.lock().unwrap();
        c.authorizations += 1;
        c.last_authorize = q.clone();
    }
    let mut g = s.grants.lock().unwrap();
    let client = q.get("client_id").cloned().unwrap_or_default();
    if !g.clients.contains_key(&client)
        || q.get("code_challenge_method").map(String::as_str) != Some("S256")
    {
        return (StatusCode::BAD_REQUEST, "unknown client or no PKCE").into_response();
    }
    let mut target = url::Url::parse(&q["redirect_uri"]).unwrap();
    {
        let mut p = target.query_pairs_mut();
        if k.deny {
            p.append_pair("error", "access_denied")
                .append_pair("error_description", "the user said no");
        } else {
            g.next += 1;
            let code = format!("code-{}", g.next);
            g.codes.insert(
                code.clone(),
                IssuedCode {
                    client,
                    challenge: q["code_challenge"].clone(),
                    scope: q.get("scope").cloned().unwrap_or_default(),
                    redirect_uri: q["redirect_uri"].clone(),
                    resource: q.get("resource").cloned(),
                },
            );
            p.append_pair("code", &code);
        }
        let state = k
            .state_override
            .unwrap_or_else(|| q.get("state").cloned().unwrap_or_default());
        p.append_pair("state", &state);
        if k.iss_supported || k.response_iss.is_some() {
            p.append_pair("iss", &k.response_iss.unwrap_or_else(|| s.base.clone()));
        }
    }
    (StatusCode::FOUND, [(header::LOCATION, target.to_string())]).into_response()
}

/// RFC 7523 §2.1 grant type.
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

fn oauth_error(status: StatusCode, error: &str) -> Response {
    (status, Json(json!({"error": error}))).into_response()
}

/// Client id from Basic credentials or the form (public clients).
fn authenticate(g: &Grants, headers: &HeaderMap, form: &HashMap<String, String>) -> Option<String> {
    if let Some(auth) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        && let Some(b64) = auth.strip_prefix("Basic ")
    {
        let decoded = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (id, secret) = decoded.split_once(':')?;
        let id: String = url::form_urlencoded::parse(format!("x={id}").as_bytes())
            .next()?
            .1
            .into();
        let secret: String = url::form_urlencoded::parse(format!("x={secret}").as_bytes())
            .next()?
            .1
            .into();
        return (g.clients.get(&id)? == &Some(secret)).then_some(id);
    }
    let id = form.get("client_id")?;
    match g.clients.get(id)? {
        None => Some(id.clone()),
        Some(secret) => (form.get("client_secret") == Some(secret)).then(|| id.clone()),
    }
}

/// A form body as a real server reads it: `application/x-www-form-urlencoded`, each parameter at
/// most once (RFC 6749 §3.1, §3.2); `None` for anything else, which is 400 `invalid_request`
/// (§5.2).
fn strict_form(headers: &HeaderMap, body: &str) -> Option<HashMap<String, String>> {
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form_type {
        return None;
    }
    let mut form = HashMap::new();
    for (name, value) in url::form_urlencoded::parse(body.as_bytes()) {
        if form.insert(name.into_owned(), value.into_owned()).is_some() {
            return None;
        }
    }
    Some(form)
}

async fn token(State(s): State<TestServer>, headers: HeaderMap, body: String) -> Response {
    let Some(form) = strict_form(&headers, &body) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    };
    let k = s.knobs.lock().unwrap().clone();
    {
        let mut c = s.counters.lock().unwrap();
        c.last_token_form = form.clone();
        c.last_token_auth = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(Into::into);
        c.last_token_dpop = headers
            .get("dpop")
            .and_then(|v| v.to_str().ok())
            .map(Into::into);
    }
    if let Some(status) = k.token_status {
        return oauth_error(
            StatusCode::from_u16(status).unwrap(),
            "temporarily_unavailable",
        );
    }
    let grant = form.get("grant_type").cloned().unwrap_or_default();
    if grant == "refresh_token" && !k.refresh_delay.is_zero() {
        tokio::time::sleep(k.refresh_delay).await;
    }
    let mut g = s.grants.lock().unwrap();
    // RFC 7523 §3.1: a JWT grant needs no client authentication (a workload has no client).
    let anonymous = grant == JWT_BEARER
        && !headers.contains_key(header::AUTHORIZATION)
        && !form.contains_key("client_id");
    let client = if anonymous {
        String::new()
    } else {
        let Some(client) = authenticate(&g, &headers, &form) else {
            return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
        };
        client
    };
    let scope = match grant.as_str() {
        "authorization_code" => {
            let Some(issued) = g
                .codes
                .remove(form.get("code").map(String::as_str).unwrap_or_default())
            else {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
            };
            let verifier = form.get("code_verifier").cloned().unwrap_or_default();
            if issued.client != client
                || URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) != issued.challenge
                // RFC 6749 §4.1.3: the redirect_uri of the authorization request, identical.
                || form.get("redirect_uri") != Some(&issued.redirect_uri)
            {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
            }
            // RFC 8707 §2.2: the code is for the resource it was requested for, and no other.
            if form.get("resource") != issued.resource.as_ref() {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_target");
            }
            s.counters.lock().unwrap().code_exchanges += 1;
            issued.scope
        }
        "refresh_token" => {
            let rt = form.get("refresh_token").cloned().unwrap_or_default();
            let entry = if k.rotate {
                g.refresh.remove(&rt)
            } else {
                g.refresh.get(&rt).cloned()
            };
            let Some((owner, scope)) = entry.filter(|(o, _)| *o == client) else {
                s.counters.lock().unwrap().refused_refreshes += 1;
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
            };
            let _ = owner;
            s.counters.lock().unwrap().refreshes += 1;
            scope
        }
        "urn:ietf:params:oauth:grant-type:device_code" => {
            let code = form.get("device_code").cloned().unwrap_or_default();
            match g.devices.get(&code) {
                Some(d) if d.client != client => {
                    return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
                }
                Some(d) if !d.approved => {
                    return oauth_error(StatusCode::BAD_REQUEST, "authorization_pending");
                }
                Some(_) => g.devices.remove(&code).map(|d| d.scope).unwrap_or_default(),
                None => return oauth_error(StatusCode::BAD_REQUEST, "expired_token"),
            }
        }
        "client_credentials" => {
            s.counters.lock().unwrap().client_credentials += 1;
            form.get("scope").cloned().unwrap_or_default()
        }
        JWT_BEARER => {
            let assertion = form.get("assertion").cloned().unwrap_or_default();
            s.counters
                .lock()
                .unwrap()
                .workload_assertions
                .push(assertion.clone());
            if !k.workload_tokens.contains(&assertion) {
                let body =
                    json!({"error": "invalid_grant", "error_description": k.workload_refusal});
                return (StatusCode::BAD_REQUEST, Json(body)).into_response();
            }
            form.get("scope").cloned().unwrap_or_default()
        }
        _ => return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type"),
    };
    g.next += 1;
    let access = k.access_token.unwrap_or_else(|| format!("at-{}", g.next));
    g.access.insert(access.clone(), scope.clone());
    let mut body = json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": k.expires_in,
        "scope": scope,
        "padding": "x".repeat(k.token_padding),
    });
    if grant != "client_credentials"
        && grant != JWT_BEARER
        && (grant != "refresh_token" || k.rotate)
    {
        let rt = format!("rt-{}", g.next);
        g.refresh.insert(rt.clone(), (client, scope));
        body["refresh_token"] = json!(rt);
    }
    ([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

/// RFC 8628 §3.1-3.2: issues a device code and a user code (interval 1 s for quick tests).
async fn device_authorization(
    State(s): State<TestServer>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let mut g = s.grants.lock().unwrap();
    let Some(client) = authenticate(&g, &headers, &form) else {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    };
    g.next += 1;
    let (device, user) = (format!("dc-{}", g.next), format!("UC-{}", g.next));
    let scope = form.get("scope").cloned().unwrap_or_default();
    g.devices.insert(
        device.clone(),
        PendingDevice {
            client,
            user_code: user.clone(),
            scope,
            approved: false,
        },
    );
    Json(json!({
        "device_code": device,
        "user_code": user,
        "verification_uri": format!("{}/device", s.base),
        "verification_uri_complete": format!("{}/device?user_code={user}", s.base),
        "expires_in": 600,
        "interval": 1,
    }))
    .into_response()
}

/// The user visits the verification URI and approves (RFC 8628 §3.3).
async fn device_approve(
    State(s): State<TestServer>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut g = s.grants.lock().unwrap();
    let user = q.get("user_code").cloned().unwrap_or_default();
    match g.devices.values_mut().find(|d| d.user_code == user) {
        Some(d) => {
            d.approved = true;
            "approved".into_response()
        }
        None => (StatusCode::NOT_FOUND, "unknown user code").into_response(),
    }
}

/// RFC 7009: revokes an access or refresh token (a refresh token's access tokens stay valid
/// here; the counters record what was revoked).
async fn revoke(
    State(s): State<TestServer>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let mut g = s.grants.lock().unwrap();
    if authenticate(&g, &headers, &form).is_none() {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let token = form.get("token").cloned().unwrap_or_default();
    g.access.remove(&token);
    g.refresh.remove(&token);
    s.counters.lock().unwrap().revocations.push(token);
    StatusCode::OK.into_response()
}

/// The 401 to answer unless the request carries a valid access token.
fn unauthorized(s: &TestServer, headers: &HeaderMap) -> Option<Response> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if token.is_some_and(|t| s.grants.lock().unwrap().access.contains_key(t)) {
        return None;
    }
    let error = token.map(|_| "invalid_token");
    Some(
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, www_authenticate(s, error, ""))],
        )
            .into_response(),
    )
}

/// The 2024-11-05 HTTP+SSE transport (GET on the MCP URL): the stream, whose first event names
/// where to POST.
async fn legacy_sse(State(s): State<TestServer>, headers: HeaderMap) -> Response {
    let (legacy_only, endless, get_stream) = {
        let k = s.knobs.lock().unwrap();
        (
            k.legacy_only,
            k.endless_get_stream,
            k.sessions && k.get_stream,
        )
    };
    if get_stream {
        if let Some(r) = unauthorized(&s, &headers) {
            return r;
        }
        let sid = headers.get("mcp-session-id").and_then(|v| v.to_str().ok());
        if sid.is_none_or(|id| !s.mcp_sessions.lock().unwrap().contains(id)) {
            return StatusCode::NOT_FOUND.into_response();
        }
        return eras::legacy_stream(&s);
    }
    if endless {
        let stream = futures_util::stream::pending::<Result<String, std::convert::Infallible>>();
        return axum::response::Response::builder()
            .header(header::CONTENT_TYPE, "text/event-stream")
            .body(axum::body::Body::from_stream(stream))
            .unwrap();
    }
    if !legacy_only {
        // A Streamable HTTP server without a GET stream (MCP Transports: 405 is allowed).
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    if let Some(r) = unauthorized(&s, &headers) {
        return r;
    }
    let session = {
        let mut g = s.grants.lock().unwrap();
        g.next += 1;
        format!("legacy-{}", g.next)
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(16);
    s.legacy.lock().unwrap().insert(session.clone(), tx);
    let origin = s
        .knobs
        .lock()
        .unwrap()
        .legacy_endpoint_origin
        .clone()
        .unwrap_or_default();
    let first = format!("event: endpoint\ndata: {origin}/messages?session={session}\n\n");
    let stream = async_stream_of(first, move |cx| {
        rx.poll_recv(cx)
            .map(|o| o.map(|line| format!("event: message\ndata: {line}\n\n")))
    });
    axum::response::Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(axum::body::Body::from_stream(stream))
        .unwrap()
}

fn async_stream_of(
    first: String,
    mut next: impl FnMut(&mut std::task::Context<'_>) -> std::task::Poll<Option<String>>
    + Send
    + 'static,
) -> impl futures_util::Stream<Item = Result<String, std::convert::Infallible>> + Send {
    let mut first = Some(first);
    futures_util::stream::poll_fn(move |cx| match first.take() {
        Some(f) => std::task::Poll::Ready(Some(Ok(f))),
        None => next(cx).map(|o| o.map(Ok)),
    })
}

/// POSTs of the legacy transport: 202, and the answer goes down the session's stream.
async fn legacy_message(
    State(s): State<TestServer>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    if let Some(r) = unauthorized(&s, &headers) {
        return r;
    }
    s.counters.lock().unwrap().mcp_requests += 1;
    let Some(tx) = q
        .get("session")
        .and_then(|id| s.legacy.lock().unwrap().get(id).cloned())
    else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let answer = mcp_answer(&body);
    if answer.status() == StatusCode::OK {
        let bytes = axum::body::to_bytes(answer.into_body(), 1 << 20)
            .await
            .unwrap_or_default();
        let _ = tx.send(String::from_utf8_lossy(&bytes).into_owned()).await;
    }
    StatusCode::ACCEPTED.into_response()
}

async fn mcp(State(s): State<TestServer>, headers: HeaderMap, body: String) -> Response {
    if s.knobs.lock().unwrap().legacy_only {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    s.counters.lock().unwrap().mcp_requests += 1;
    let (required, refuse_all) = {
        let k = s.knobs.lock().unwrap();
        (k.required_scopes.join(" "), k.refuse_all_tokens)
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let granted = token
        .filter(|_| !refuse_all)
        .and_then(|t| s.grants.lock().unwrap().access.get(t).cloned());
    let Some(granted) = granted else {
        let error = token.map(|_| "invalid_token");
        return (
            StatusCode::UNAUTHORIZED,
            [(
                header::WWW_AUTHENTICATE,
                www_authenticate(&s, error, &required),
            )],
        )
            .into_response();
    };
    let have: HashSet<&str> = granted.split(' ').collect();
    if !required
        .split(' ')
        .filter(|r| !r.is_empty())
        .all(|r| have.contains(r))
    {
        return (
            StatusCode::FORBIDDEN,
            [(
                header::WWW_AUTHENTICATE,
                www_authenticate(&s, Some("insufficient_scope"), &required),
            )],
        )
            .into_response();
    }
    if s.knobs.lock().unwrap().era == Era::Modern {
        return eras::modern(&s, &headers, &body);
    }
    if s.knobs.lock().unwrap().sessions {
        eras::record(&s, &headers, &body);
        let is_initialize = body.contains("\"initialize\"");
        let sid = headers.get("mcp-session-id").and_then(|v| v.to_str().ok());
        if is_initialize {
            let id = {
                let mut g = s.grants.lock().unwrap();
                g.next += 1;
                format!("s-{}", g.next)
            };
            s.mcp_sessions.lock().unwrap().insert(id.clone());
            let mut answer = mcp_answer(&body);
            answer
                .headers_mut()
                .insert("mcp-session-id", id.parse().unwrap());
            return answer;
        }
        if sid.is_none_or(|id| !s.mcp_sessions.lock().unwrap().contains(id)) {
            return StatusCode::NOT_FOUND.into_response();
        }
        if let Some(r) = eras::legacy(&s, &body).await {
            return r;
        }
    }
    mcp_answer(&body)
}

/// A minimal MCP server: `initialize`, `tools/list` (one `echo` tool), `tools/call` (echoes the
/// arguments), `echo/request` (echoes the whole request), 202 for notifications, an empty result
/// for anything else; a body that is not JSON is 400 with a parse error (JSON-RPC 2.0 §5.1).
fn mcp_answer(body: &str) -> Response {
    let Ok(request) = serde_json::from_str::<Value>(body) else {
        let error = json!({"code": -32700, "message": "Parse error"});
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"jsonrpc": "2.0", "id": null, "error": error})),
        )
            .into_response();
    };
    let Some(id) = request.get("id").cloned() else {
        return StatusCode::ACCEPTED.into_response();
    };
    let params = &request["params"];
    let result = match request["method"].as_str().unwrap_or_default() {
        "initialize" => json!({
            "protocolVersion": params["protocolVersion"],
            "capabilities": {"tools": {"listChanged": true},
                "resources": {"subscribe": true}, "logging": {}},
            "serverInfo": {"name": "mcpauth-testkit", "version": "0"},
        }),
        "tools/list" => json!({"tools": [{"name": "echo", "inputSchema": {"type": "object"}}]}),
        "tools/call" => json!({
            "content": [{"type": "text", "text": params["arguments"].to_string()}],
        }),
        // The whole request as received, with a field the client never saw: for relay tests.
        "echo/request" => json!({"request": request, "serverOnly": {"_meta": {"x": [1, null]}}}),
        _ => json!({"ok": true}),
    };
    Json(json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response()
}
