//! rmcp's own client through `mcpauth_rmcp` against the real authorization server
//! (mcpauth-authserver, SQLite in memory) and rmcp's own Streamable HTTP server (tools `echo`
//! and `add`) behind the real resource layer (mcpauth-resource), over HTTP on 127.0.0.1.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::middleware::{Next, from_fn};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mcpauth_authserver::admin::{self, NewClient};
use mcpauth_authserver::{AuthMethod, AuthServer, Config, PasswordParams, RateLimits, Store};
use mcpauth_client::ClientError;
use mcpauth_client::authorize::{BoxFuture, FrontEnd, PendingRedirect};
use mcpauth_client::dpop::load_key;
use mcpauth_client::http::{HttpOptions, OAuthHttp};
use mcpauth_client::session::{Grant, Session, SessionConfig};
use mcpauth_client::store::{FileStore, MemoryStore, TokenRecord, TokenStore, now_unix};
use mcpauth_core::authorization_response::AuthorizationResponse;
use mcpauth_core::dpop::NonceIssuer;
use mcpauth_core::{ClientSecret, ScopeSet};
use mcpauth_resource::{
    BearerAuthLayer, DpopConfig, DpopPolicy, IntrospectionVerifier, JwtVerifier, ResourceMetadata,
    ScopePolicy,
};
use mcpauth_rmcp::SessionHttpClient;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ClientConfig, ContentBlock,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{RequestContext, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleClient, RoleServer, ServerHandler, ServiceExt};
use serde_json::{Value, json};
use tokio::net::TcpListener;

const USER: &str = "alice";
const PASSWORD: &str = "correct horse battery";
/// The redirect URI of the scripted browser (nothing listens there: it reads `Location`).
const REDIRECT: &str = "http://127.0.0.1:53682/callback";

/// The MCP server: rmcp's handler with two tools.
#[derive(Clone)]
struct Tools;

fn tool(name: &'static str, description: &'static str, properties: Value) -> Tool {
    let schema = json!({"type": "object", "properties": properties});
    Tool::new(
        name,
        description,
        Arc::new(schema.as_object().cloned().unwrap_or_default()),
    )
}

impl ServerHandler for Tools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(vec![
            tool("echo", "Says it back", json!({"text": {"type": "string"}})),
            tool(
                "add",
                "Adds two numbers",
                json!({"a": {"type": "number"}, "b": {"type": "number"}}),
            ),
        ]))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let args = request.arguments.unwrap_or_default();
        let number = |k: &str| args.get(k).and_then(Value::as_f64).unwrap_or_default();
        let text = match &*request.name {
            "echo" => args
                .get("text")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            "add" => (number("a") + number("b")).to_string(),
            _ => return Err(ErrorData::invalid_params("unknown tool", None)),
        };
        Ok(CallToolResult::success(vec![ContentBlock::text(text)]).into())
    }
}

/// One request as the resource server saw it (outside the resource layer).
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    /// The `Authorization` scheme, if any.
    scheme: Option<String>,
    /// Whether a `DPoP` proof came along.
    proof: bool,
    /// Whether it carried `Mcp-Session-Id`.
    in_session: bool,
    status: u16,
    /// The `error` of the `WWW-Authenticate` challenge, if any.
    error: Option<String>,
}

async fn record(seen: Arc<Mutex<Vec<Seen>>>, request: Request<Body>, next: Next) -> Response {
    let headers = request.headers();
    let mut entry = Seen {
        method: request.method().to_string(),
        path: request.uri().path().to_owned(),
        scheme: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|a| a.split(' ').next().map(str::to_owned)),
        proof: headers.contains_key("dpop"),
        in_session: headers.contains_key("mcp-session-id"),
        status: 0,
        error: None,
    };
    let response = next.run(request).await;
    entry.status = response.status().as_u16();
    entry.error = response
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split("error=\"").nth(1))
        .and_then(|v| v.split('"').next())
        .map(str::to_owned);
    seen.lock().unwrap().push(entry);
    response
}

/// How the resource server of a [`Rig`] is set up.
struct Setup {
    dpop: DpopPolicy,
    /// Proofs must carry the resource server's nonce (RFC 9449 §9).
    nonces: bool,
    scopes: ScopePolicy,
    access_token_ttl: Duration,
    /// Tokens are checked by introspection (RFC 7662), so revocation is seen at once.
    introspection: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            dpop: DpopPolicy::Allow,
            nonces: false,
            scopes: ScopePolicy::new(),
            access_token_ttl: Duration::from_secs(3600),
            introspection: false,
        }
    }
}

/// The authorization server, the protected MCP server, a user and a confidential client.
struct Rig {
    resource: String,
    issuer: String,
    client: (String, String),
    seen: Arc<Mutex<Vec<Seen>>>,
    _server: AuthServer,
    _stops: Vec<tokio::sync::oneshot::Sender<()>>,
}

impl Rig {
    async fn start(setup: Setup) -> Rig {
        let as_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let rs_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let resource = format!("http://{}/mcp", rs_listener.local_addr().unwrap());
        let mut config = Config::new(format!("http://{}", as_listener.local_addr().unwrap()));
        config.password_params = PasswordParams::insecure_for_tests();
        config.rate_limits = RateLimits::none();
        config.resources = vec![resource.clone()];
        config.access_token_ttl = setup.access_token_ttl;
        let store = Store::connect("sqlite::memory:").await.unwrap();
        let server = AuthServer::new(config, store).await.unwrap();
        let issuer = server.config().issuer.clone();
        let (as_stop, as_stopped) = tokio::sync::oneshot::channel::<()>();
        let (router, limits) = (server.router(), server.config().connections);
        tokio::spawn(async move {
            mcpauth_authserver::serve_router(as_listener, router, limits, async {
                let _ = as_stopped.await;
            })
            .await
            .unwrap();
        });
        admin::add_user(
            server.store(),
            USER,
            PASSWORD,
            PasswordParams::insecure_for_tests(),
        )
        .await
        .unwrap();
        let created = admin::add_client(server.store(), NewClient::new(AuthMethod::SecretBasic))
            .await
            .unwrap();
        let client = (
            created.info.client_id,
            created.client_secret.unwrap().expose().to_owned(),
        );

        let mut dpop = DpopConfig::new(setup.dpop);
        if setup.nonces {
            dpop = dpop.nonces(NonceIssuer::random().unwrap());
        }
        let prm = ResourceMetadata::new(resource.clone(), [issuer.as_str()])
            .unwrap()
            .dpop(&dpop);
        let layer = if setup.introspection {
            let mut rs = NewClient::new(AuthMethod::SecretBasic);
            rs.introspection = vec![resource.clone()];
            let rs = admin::add_client(server.store(), rs).await.unwrap();
            let verifier = IntrospectionVerifier::new(
                format!("{issuer}/introspect"),
                rs.info.client_id,
                rs.client_secret.unwrap(),
                [resource.as_str()],
            )
            .unwrap()
            .cache_ttl(Duration::ZERO);
            BearerAuthLayer::new(verifier, &prm)
        } else {
            let verifier = JwtVerifier::builder()
                .issuer(&issuer)
                .audience(&resource)
                .leeway(Duration::ZERO)
                .build()
                .unwrap();
            BearerAuthLayer::new(verifier, &prm)
        };
        let mcp = StreamableHttpService::new(
            || Ok(Tools),
            Arc::new(LocalSessionManager::default()),
            StreamableHttpServerConfig::default(),
        );
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let app = Router::new()
            .route_service("/mcp", mcp)
            .route_layer(layer.dpop(dpop).scope_policy(setup.scopes))
            .route_service(prm.metadata_path(), prm.service())
            .layer(from_fn(move |request: Request<Body>, next: Next| {
                record(Arc::clone(&log), request, next)
            }));
        let (rs_stop, rs_stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(rs_listener, app)
                .with_graceful_shutdown(async {
                    let _ = rs_stopped.await;
                })
                .await
                .unwrap();
        });
        Rig {
            resource,
            issuer,
            client,
            seen,
            _server: server,
            _stops: vec![as_stop, rs_stop],
        }
    }

    /// A client credentials session of the rig's confidential client.
    fn machine(&self, store: Arc<dyn TokenStore>, dpop: bool) -> Arc<Session> {
        let mut config = SessionConfig::client_credentials(
            &self.resource,
            &self.client.0,
            Some(ClientSecret::new(&self.client.1)),
        );
        config.dpop = dpop;
        Arc::new(Session::new(config, http(), store))
    }

    /// An authorization code session (dynamically registered public client) whose user logs
    /// in through `browser`; tokens are used until they expire.
    fn user(&self, store: Arc<dyn TokenStore>, browser: Arc<Browser>) -> Arc<Session> {
        let mut config = SessionConfig::new(&self.resource, Grant::AuthorizationCode(browser));
        config.refresh_margin = Duration::ZERO;
        Arc::new(Session::new(config, http(), store))
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Revokes `record`'s access token at the authorization server (RFC 7009).
    async fn revoke(&self, record: &TokenRecord) {
        let response = reqwest::Client::new()
            .post(format!("{}/revoke", self.issuer))
            .basic_auth(&self.client.0, Some(&self.client.1))
            .form(&[
                ("token", record.access_token.expose()),
                ("token_type_hint", "access_token"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
}

fn http() -> OAuthHttp {
    OAuthHttp::new(HttpOptions {
        timeout: Duration::from_secs(10),
        ..Default::default()
    })
    .unwrap()
}

/// A user at a browser: logs in with the password and allows the client, following the
/// authorization server's pages (login form, consent form, redirect).
#[derive(Debug)]
struct Browser {
    issuer: String,
    /// How many authorizations the user was sent through.
    visits: AtomicUsize,
}

impl Browser {
    fn new(issuer: &str) -> Arc<Browser> {
        Arc::new(Browser {
            issuer: issuer.to_owned(),
            visits: AtomicUsize::new(0),
        })
    }
}

struct Visit {
    issuer: String,
}

impl FrontEnd for Browser {
    fn prepare(&self) -> BoxFuture<'_, Result<Box<dyn PendingRedirect>, ClientError>> {
        self.visits.fetch_add(1, Ordering::SeqCst);
        let visit: Box<dyn PendingRedirect> = Box::new(Visit {
            issuer: self.issuer.clone(),
        });
        Box::pin(async move { Ok(visit) })
    }
}

impl PendingRedirect for Visit {
    fn redirect_uri(&self) -> &str {
        REDIRECT
    }

    fn complete(
        self: Box<Self>,
        url: String,
    ) -> BoxFuture<'static, Result<AuthorizationResponse, ClientError>> {
        Box::pin(async move { Ok(log_in_and_allow(&self.issuer, &url).await) })
    }
}

/// The value of a hidden form field.
fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).unwrap_or_else(|| panic!("no {name}")) + marker.len();
    html[start..][..html[start..].find('"').unwrap()].to_owned()
}

fn cookie(response: &reqwest::Response) -> String {
    let set = response.headers()["set-cookie"].to_str().unwrap();
    set.split(';').next().unwrap().to_owned()
}

async fn log_in_and_allow(issuer: &str, url: &str) -> AuthorizationResponse {
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login = browser.get(url).send().await.unwrap();
    assert_eq!(login.status(), 200, "the login page");
    let session = cookie(&login);
    let html = login.text().await.unwrap();
    let consent = browser
        .post(format!("{issuer}/authorize/login"))
        .header("cookie", session)
        .form(&[
            ("request_id", hidden(&html, "request_id").as_str()),
            ("csrf", hidden(&html, "csrf").as_str()),
            ("username", USER),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(consent.status(), 200, "the consent page");
    let session = cookie(&consent);
    let html = consent.text().await.unwrap();
    let redirect = browser
        .post(format!("{issuer}/authorize/consent"))
        .header("cookie", session)
        .form(&[
            ("request_id", hidden(&html, "request_id").as_str()),
            ("csrf", hidden(&html, "csrf").as_str()),
            ("decision", "allow"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(redirect.status(), 303);
    let location = redirect.headers()["location"].to_str().unwrap();
    let location = reqwest::Url::parse(location).unwrap();
    assert!(location.as_str().starts_with(REDIRECT), "{location}");
    AuthorizationResponse::from_query(location.query().unwrap_or_default())
}

type Client = RunningService<RoleClient, ClientConfig>;

/// rmcp's client over the session: what a user of this crate writes.
async fn connect(session: &Arc<Session>) -> Client {
    let transport = mcpauth_rmcp::transport(Arc::clone(session)).unwrap();
    ClientConfig::default().serve(transport).await.unwrap()
}

async fn call(client: &Client, name: &'static str, arguments: Value) -> String {
    let arguments = arguments.as_object().cloned().unwrap();
    let params = CallToolRequestParams::new(name).with_arguments(arguments);
    let result = client.call_tool(params).await.unwrap();
    assert_ne!(result.is_error, Some(true), "{result:?}");
    result.content[0].as_text().unwrap().text.clone()
}

async fn tool_names(client: &Client) -> Vec<String> {
    let mut names: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    names
}

/// The `cnf.jkt` of a JWT access token (RFC 9449 §6.1).
fn jkt_of(record: &TokenRecord) -> Option<String> {
    let payload = record.access_token.expose().split('.').nth(1)?;
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    claims["cnf"]["jkt"].as_str().map(str::to_owned)
}

/// The requests the MCP server answered (past the resource layer's refusals).
fn served(seen: &[Seen]) -> Vec<&Seen> {
    seen.iter()
        .filter(|s| s.path == "/mcp" && s.status != 401 && s.status != 403)
        .collect()
}

/// D1, C4: the AS advertises DPoP, so the tokens are bound to the session's key; the first
/// request goes out without a token and its 401 starts discovery and the grant; then every
/// request rmcp makes (the POSTs, the GET of the server's stream, the DELETE that ends the MCP
/// session) carries `Authorization: DPoP` and a proof, which the resource layer requires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dpop_bound_tokens_list_and_call_tools_on_every_request_kind() {
    let rig = Rig::start(Setup {
        dpop: DpopPolicy::Require,
        ..Setup::default()
    })
    .await;
    let session = rig.machine(Arc::new(MemoryStore::new()), true);
    let client = connect(&session).await;
    assert_eq!(tool_names(&client).await, ["add", "echo"]);
    assert_eq!(call(&client, "echo", json!({"text": "hi"})).await, "hi");
    assert_eq!(call(&client, "add", json!({"a": 2, "b": 3})).await, "5");
    client.cancel().await.unwrap();

    let record = session.current_record().await.unwrap();
    assert_eq!(record.token_type, "DPoP");
    let key = load_key(record.dpop_key.as_ref().unwrap()).unwrap();
    assert_eq!(jkt_of(&record).as_deref(), Some(key.thumbprint()));

    let seen = rig.seen();
    assert_eq!(
        (seen[0].status, seen[0].scheme.as_deref()),
        (401, None),
        "{seen:#?}"
    );
    let served = served(&seen);
    for method in ["POST", "GET", "DELETE"] {
        assert!(served.iter().any(|s| s.method == method), "{seen:#?}");
    }
    for s in &served {
        assert_eq!(
            (s.scheme.as_deref(), s.proof),
            (Some("DPoP"), true),
            "{s:?}"
        );
    }
}

/// D3: with DPoP off (`SessionConfig::dpop`), the token is a Bearer token and goes out as
/// `Authorization: Bearer` without proofs (RFC 6750 §2.1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_dpop_off_bearer_tokens_list_and_call_tools() {
    let rig = Rig::start(Setup::default()).await;
    let session = rig.machine(Arc::new(MemoryStore::new()), false);
    let client = connect(&session).await;
    assert_eq!(tool_names(&client).await, ["add", "echo"]);
    assert_eq!(call(&client, "add", json!({"a": 40, "b": 2})).await, "42");
    client.cancel().await.unwrap();

    let record = session.current_record().await.unwrap();
    assert_eq!(
        (
            record.token_type.as_str(),
            record.dpop_key.is_none(),
            jkt_of(&record)
        ),
        ("Bearer", true, None)
    );
    for s in served(&rig.seen()) {
        assert_eq!(
            (s.scheme.as_deref(), s.proof),
            (Some("Bearer"), false),
            "{s:?}"
        );
    }
}

/// D2: a resource server that demands its nonce (RFC 9449 §9) answers the first proof with 401
/// `use_dpop_nonce` and a `DPoP-Nonce`; the request is replayed with it, and the nonce each
/// response carries keeps later proofs acceptable. (rmcp's own reqwest client never shows the
/// `DPoP-Nonce` response header to a wrapper, which is why this crate makes the requests.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_resource_servers_dpop_nonce_is_used() {
    let rig = Rig::start(Setup {
        dpop: DpopPolicy::Require,
        nonces: true,
        ..Setup::default()
    })
    .await;
    let session = rig.machine(Arc::new(MemoryStore::new()), true);
    let client = connect(&session).await;
    assert_eq!(
        call(&client, "echo", json!({"text": "nonce"})).await,
        "nonce"
    );
    assert_eq!(call(&client, "add", json!({"a": 1, "b": 1})).await, "2");
    client.cancel().await.unwrap();

    let seen = rig.seen();
    let refusals = seen
        .iter()
        .filter(|s| s.error.as_deref() == Some("use_dpop_nonce"))
        .count();
    assert_eq!(refusals, 1, "{seen:#?}");
    assert!(served(&seen).iter().all(|s| s.proof), "{seen:#?}");
}

/// C4: the access token expires in the middle of the MCP session (2 s tokens, no clock leeway
/// at the resource server). The session no longer hands the expired token out, so the next
/// request goes without one and gets the server's 401 challenge; the session refreshes with its
/// refresh token (no new login: the browser is not visited again) and the call is replayed and
/// succeeds in the same MCP session. The tokens are DPoP-bound and kept in the file store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_refreshed_in_the_middle_of_the_session() {
    let rig = Rig::start(Setup {
        dpop: DpopPolicy::Require,
        access_token_ttl: Duration::from_secs(2),
        ..Setup::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let browser = Browser::new(&rig.issuer);
    let session = rig.user(Arc::new(FileStore::new(dir.path())), Arc::clone(&browser));
    let client = connect(&session).await;
    assert_eq!(
        call(&client, "echo", json!({"text": "before"})).await,
        "before"
    );
    let before = session.current_record().await.unwrap();
    assert!(before.refresh_token.is_some());

    // Let the token expire (the wait is setup; what is checked is what happens next).
    let expires_at = before.expires_at.unwrap();
    let left = expires_at.saturating_sub(now_unix()) + 1;
    tokio::time::sleep(Duration::from_secs(left)).await;
    assert!(now_unix() > expires_at);
    let requests_before = rig.seen().len();

    assert_eq!(call(&client, "add", json!({"a": 2, "b": 3})).await, "5");
    let after = session.current_record().await.unwrap();
    assert_ne!(after.access_token, before.access_token);
    assert_ne!(
        after.refresh_token, before.refresh_token,
        "rotated by the refresh"
    );
    assert_eq!(after.token_type, "DPoP");
    assert_eq!(browser.visits.load(Ordering::SeqCst), 1, "no second login");
    client.cancel().await.unwrap();

    let seen = rig.seen();
    let later = &seen[requests_before..];
    assert!(later.iter().any(|s| s.status == 401), "{later:#?}");
    let call = later.iter().position(|s| s.status == 401).and_then(|i| {
        later[i..]
            .iter()
            .find(|s| s.method == "POST" && s.status == 200)
    });
    assert!(call.is_some_and(|s| s.in_session && s.proof), "{later:#?}");
    // One MCP session throughout: only the first exchange went out without a session id.
    let initializations = seen
        .iter()
        .filter(|s| s.method == "POST" && s.status == 200 && !s.in_session)
        .count();
    assert_eq!(initializations, 1, "{seen:#?}");

    // The refreshed tokens are in the file store, where another process would find them.
    let stored = FileStore::new(dir.path()).list_tokens().unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].access_token, after.access_token);
}

/// C4: the resource server refuses a token the client still holds for fresh (revoked at the
/// authorization server; the resource server introspects): 401 `invalid_token` for that
/// DPoP request, a new token from the session, one replay, success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_the_server_refuses_is_replaced_and_the_call_replayed() {
    let rig = Rig::start(Setup {
        dpop: DpopPolicy::Require,
        introspection: true,
        ..Setup::default()
    })
    .await;
    let session = rig.machine(Arc::new(MemoryStore::new()), true);
    let client = connect(&session).await;
    assert_eq!(
        call(&client, "echo", json!({"text": "first"})).await,
        "first"
    );
    let revoked = session.current_record().await.unwrap();
    rig.revoke(&revoked).await;
    let requests_before = rig.seen().len();

    assert_eq!(call(&client, "add", json!({"a": 5, "b": 6})).await, "11");
    let fresh = session.current_record().await.unwrap();
    assert_ne!(fresh.access_token, revoked.access_token);
    assert_eq!(fresh.token_type, "DPoP");
    client.cancel().await.unwrap();

    let seen = rig.seen();
    let later = &seen[requests_before..];
    let refused = later
        .iter()
        .position(|s| s.status == 401 && s.error.as_deref() == Some("invalid_token"));
    let refused = refused.unwrap_or_else(|| panic!("{later:#?}"));
    assert_eq!(later[refused].scheme.as_deref(), Some("DPoP"));
    assert!(
        later[refused + 1..]
            .iter()
            .any(|s| s.method == "POST" && s.status == 200),
        "{later:#?}"
    );
}

/// C26: a tool that needs another scope gets 403 `insufficient_scope` (RFC 6750 §3.1); the
/// session asks for the union of the scopes, the new token is bound again, and the call is
/// replayed and succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insufficient_scope_steps_up_and_replays() {
    let rig = Rig::start(Setup {
        dpop: DpopPolicy::Require,
        scopes: ScopePolicy::new().tool("add", ["extra"]),
        ..Setup::default()
    })
    .await;
    let session = rig.machine(Arc::new(MemoryStore::new()), true);
    let client = connect(&session).await;
    assert_eq!(
        call(&client, "echo", json!({"text": "plain"})).await,
        "plain"
    );
    let before = session.current_record().await.unwrap();
    assert!(!before.granted_scopes.contains("extra"));

    assert_eq!(call(&client, "add", json!({"a": 20, "b": 22})).await, "42");
    let after = session.current_record().await.unwrap();
    assert_ne!(after.access_token, before.access_token);
    assert!(
        after.granted_scopes.is_superset(&ScopeSet::parse("extra")),
        "{}",
        after.granted_scopes
    );
    assert_eq!(after.token_type, "DPoP");
    client.cancel().await.unwrap();

    let seen = rig.seen();
    let step_ups = seen
        .iter()
        .filter(|s| s.status == 403 && s.error.as_deref() == Some("insufficient_scope"))
        .count();
    assert_eq!(step_ups, 1, "{seen:#?}");
}

/// The session's tokens go to its own server only (RFC 8707, MCP "Token Audience Binding"),
/// and never beside a static `auth_header`: nothing is sent, and connecting fails with the
/// reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_go_nowhere_else_and_never_twice() {
    let rig = Rig::start(Setup::default()).await;
    let session = rig.machine(Arc::new(MemoryStore::new()), true);
    let other = rig.resource.replace("/mcp", "/elsewhere");
    let client = SessionHttpClient::new(Arc::clone(&session)).unwrap();
    assert!(!format!("{client:?}").contains("eyJ"));

    let config = StreamableHttpClientTransportConfig::with_uri(other.as_str());
    let transport = StreamableHttpClientTransport::with_client(client.clone(), config);
    let err = ClientConfig::default().serve(transport).await.unwrap_err();
    assert!(err.to_string().contains("not sending them there"), "{err}");

    let mut config = StreamableHttpClientTransportConfig::with_uri(rig.resource.as_str());
    config.auth_header = Some("static".into());
    let transport = StreamableHttpClientTransport::with_client(client, config);
    let err = ClientConfig::default().serve(transport).await.unwrap_err();
    assert!(err.to_string().contains("auth_header"), "{err}");

    assert!(rig.seen().is_empty(), "{:#?}", rig.seen());
    assert!(session.current_record().await.is_none());
}
