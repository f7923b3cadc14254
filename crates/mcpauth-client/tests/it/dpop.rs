//! DPoP on the client (RFC 9449, SPEC D1-D3) against the real authorization server
//! (mcpauth-authserver, SQLite in memory) and an MCP endpoint behind the real resource layer
//! (mcpauth-resource), over HTTP on 127.0.0.1.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::middleware::{Next, from_fn};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mcpauth_authserver::admin::{self, NewClient};
use mcpauth_authserver::{AuthMethod, AuthServer, Config, PasswordParams, RateLimits, Store};
use mcpauth_client::ClientError;
use mcpauth_client::authed::AuthenticatedClient;
use mcpauth_client::authorize::Headless;
use mcpauth_client::dpop::load_key;
use mcpauth_client::http::{HttpOptions, OAuthHttp};
use mcpauth_client::session::{Grant, Session, SessionConfig};
use mcpauth_client::store::{FileStore, MemoryStore, TokenRecord, TokenStore};
use mcpauth_core::ClientSecret;
use mcpauth_resource::{
    Authenticated, BearerAuthLayer, DpopConfig, DpopPolicy, JwtVerifier, ResourceMetadata,
    ScopePolicy,
};
use mcpauth_testkit::{Knobs, TestServer};
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// The nonce the resource server of [`Rig::start`] demands when asked to.
const RS_NONCE: &str = "rs-nonce-1";
/// The nonce its authorization server demands at the token endpoint when asked to.
const AS_NONCE: &str = "as-nonce-1";

/// Which servers of a [`Rig`] demand a nonce (RFC 9449 §8, §9).
#[derive(Clone, Copy, Default)]
struct Demand {
    resource: bool,
    token: bool,
    /// The token endpoint refuses every proof, with a new nonce each time.
    token_forever: bool,
    /// The resource server knows only Bearer (like the TypeScript SDK's `requireBearerAuth`):
    /// its metadata and challenges say nothing of DPoP and it refuses the `DPoP` scheme.
    bearer_only: bool,
}

/// The authorization server, the protected MCP endpoint and a confidential client.
struct Rig {
    resource: String,
    client: (String, String),
    /// Requests the resource server refused with `use_dpop_nonce`.
    nonce_refusals: Arc<AtomicUsize>,
    /// Token requests the authorization server refused with `use_dpop_nonce`.
    token_nonce_refusals: Arc<AtomicUsize>,
    _server: AuthServer,
    _stops: Vec<tokio::sync::oneshot::Sender<()>>,
}

fn serve(listener: TcpListener, app: Router) -> tokio::sync::oneshot::Sender<()> {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    tx
}

/// The `nonce` claim of the request's DPoP proof, read without verification (the resource
/// layer verifies the proof after this).
fn proof_nonce(request: &Request<Body>) -> Option<String> {
    let proof = request.headers().get("dpop")?.to_str().ok()?;
    let claims = URL_SAFE_NO_PAD.decode(proof.split('.').nth(1)?).ok()?;
    let claims: Value = serde_json::from_slice(&claims).ok()?;
    claims["nonce"].as_str().map(str::to_owned)
}

impl Rig {
    /// Starts both servers; the resource server takes DPoP by `policy`. As `demand` says, the
    /// resource server answers `use_dpop_nonce` to a proof without [`RS_NONCE`] (RFC 9449 §9;
    /// a request without a proof gets the layer's own challenge), and the token endpoint
    /// answers 400 `use_dpop_nonce` to a proof without [`AS_NONCE`] (§8).
    async fn start(policy: DpopPolicy, demand: Demand) -> Rig {
        Self::start_with(policy, demand, ScopePolicy::new()).await
    }

    /// [`Rig::start`] with the resource server's scope policy.
    async fn start_with(policy: DpopPolicy, demand: Demand, scopes: ScopePolicy) -> Rig {
        let as_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let rs_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let resource = format!("http://{}/mcp", rs_listener.local_addr().unwrap());
        let mut config = Config::new(format!("http://{}", as_listener.local_addr().unwrap()));
        config.password_params = PasswordParams::insecure_for_tests();
        config.rate_limits = RateLimits::none();
        config.resources = vec![resource.clone()];
        let store = Store::connect("sqlite::memory:").await.unwrap();
        let server = AuthServer::new(config, store).await.unwrap();
        let issuer = server.config().issuer.clone();
        let (as_stop, as_stopped) = tokio::sync::oneshot::channel::<()>();
        let token_nonce_refusals = Arc::new(AtomicUsize::new(0));
        let refusals = Arc::clone(&token_nonce_refusals);
        let demand_token = move |request: Request<Body>, next: Next| {
            let refusals = Arc::clone(&refusals);
            async move {
                if demand.token
                    && request.uri().path() == "/token"
                    && (demand.token_forever || proof_nonce(&request).as_deref() != Some(AS_NONCE))
                {
                    let n = refusals.fetch_add(1, Ordering::SeqCst);
                    let nonce = if demand.token_forever {
                        format!("{AS_NONCE}-{n}")
                    } else {
                        AS_NONCE.to_owned()
                    };
                    return (
                        StatusCode::BAD_REQUEST,
                        [("dpop-nonce", nonce)],
                        axum::Json(json!({"error": "use_dpop_nonce"})),
                    )
                        .into_response();
                }
                next.run(request).await
            }
        };
        let router = server.router().layer(from_fn(demand_token));
        let limits = server.config().connections;
        tokio::spawn(async move {
            mcpauth_authserver::serve_router(as_listener, router, limits, async {
                let _ = as_stopped.await;
            })
            .await
            .unwrap();
        });
        let created = admin::add_client(server.store(), NewClient::new(AuthMethod::SecretBasic))
            .await
            .unwrap();
        let client = (
            created.info.client_id,
            created.client_secret.unwrap().expose().to_owned(),
        );

        let verifier = JwtVerifier::builder()
            .issuer(&issuer)
            .audience(&resource)
            .build()
            .unwrap();
        let dpop = DpopConfig::new(policy);
        let prm = ResourceMetadata::new(resource.clone(), [issuer.as_str()]).unwrap();
        let prm = if demand.bearer_only {
            prm
        } else {
            prm.dpop(&dpop)
        };
        let nonce_refusals = Arc::new(AtomicUsize::new(0));
        let refusals = Arc::clone(&nonce_refusals);
        let demand_resource = move |request: Request<Body>, next: Next| {
            let refusals = Arc::clone(&refusals);
            async move {
                let scheme = request
                    .headers()
                    .get("authorization")
                    .and_then(|v| v.to_str().ok());
                if demand.bearer_only && scheme.is_some_and(|v| !v.starts_with("Bearer ")) {
                    return (
                        StatusCode::UNAUTHORIZED,
                        [("www-authenticate", r#"Bearer error="invalid_token""#)],
                    )
                        .into_response();
                }
                let proved = request.headers().contains_key("dpop");
                if demand.resource && proved && proof_nonce(&request).as_deref() != Some(RS_NONCE) {
                    refusals.fetch_add(1, Ordering::SeqCst);
                    return (
                        StatusCode::UNAUTHORIZED,
                        [
                            (
                                "www-authenticate",
                                r#"DPoP error="use_dpop_nonce", algs="ES256""#,
                            ),
                            ("dpop-nonce", RS_NONCE),
                        ],
                    )
                        .into_response();
                }
                next.run(request).await
            }
        };
        let app = Router::new()
            .route("/mcp", post(mcp))
            .route_layer(
                BearerAuthLayer::new(verifier, &prm)
                    .dpop(dpop)
                    .scope_policy(scopes),
            )
            .route_service(prm.metadata_path(), prm.service())
            .layer(from_fn(demand_resource));
        let rs_stop = serve(rs_listener, app);
        Rig {
            resource,
            client,
            nonce_refusals,
            token_nonce_refusals,
            _server: server,
            _stops: vec![as_stop, rs_stop],
        }
    }

    /// A client credentials session of the rig's client over `store`.
    fn session(&self, store: Arc<dyn TokenStore>, dpop: bool) -> Arc<Session> {
        let mut config = SessionConfig::client_credentials(
            &self.resource,
            &self.client.0,
            Some(ClientSecret::new(&self.client.1)),
        );
        config.dpop = dpop;
        Arc::new(Session::new(config, http(), store))
    }
}

async fn mcp(Authenticated(p): Authenticated) -> Response {
    axum::Json(json!({"jsonrpc": "2.0", "id": 1, "result": {"client_id": p.client_id}}))
        .into_response()
}

fn http() -> OAuthHttp {
    OAuthHttp::new(HttpOptions {
        timeout: Duration::from_secs(10),
        ..Default::default()
    })
    .unwrap()
}

async fn call(session: &Arc<Session>, url: &str) -> u16 {
    let client = AuthenticatedClient::new(Arc::clone(session), reqwest::Client::new());
    let response = client
        .send(|h| {
            h.post(url)
                .header("content-type", "application/json")
                .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
        })
        .await
        .unwrap();
    response.status().as_u16()
}

/// The `cnf.jkt` of a JWT access token (RFC 9449 §6.1).
fn jkt_of(record: &TokenRecord) -> Option<String> {
    let payload = record.access_token.expose().split('.').nth(1)?;
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    claims["cnf"]["jkt"].as_str().map(str::to_owned)
}

/// D1, D3: the AS advertises ES256, so the token request carries a proof, the token comes back
/// as `DPoP` bound to the stored key, and the MCP request (DPoP required) presents it with a
/// proof.
#[tokio::test]
async fn d1_d3_a_bound_token_is_obtained_and_presented_with_proofs() {
    let rig = Rig::start(DpopPolicy::Require, Demand::default()).await;
    let session = rig.session(Arc::new(MemoryStore::new()), true);
    assert_eq!(call(&session, &rig.resource).await, 200);
    let record = session.current_record().await.unwrap();
    assert_eq!(record.token_type, "DPoP");
    let key = load_key(record.dpop_key.as_ref().unwrap()).unwrap();
    assert_eq!(jkt_of(&record).as_deref(), Some(key.thumbprint()));
    // A second call reuses the token with a new proof (a replayed jti would be refused).
    assert_eq!(call(&session, &rig.resource).await, 200);
    assert_eq!(rig.nonce_refusals.load(Ordering::SeqCst), 0);
}

/// D2: the resource server's `use_dpop_nonce` is answered once with its nonce, which is then
/// kept for the origin: the next request carries it at once.
#[tokio::test]
async fn d2_the_resource_servers_nonce_is_used_after_one_refusal() {
    let demand = Demand {
        resource: true,
        ..Demand::default()
    };
    let rig = Rig::start(DpopPolicy::Require, demand).await;
    let session = rig.session(Arc::new(MemoryStore::new()), true);
    assert_eq!(call(&session, &rig.resource).await, 200);
    assert_eq!(rig.nonce_refusals.load(Ordering::SeqCst), 1);
    assert_eq!(call(&session, &rig.resource).await, 200);
    assert_eq!(rig.nonce_refusals.load(Ordering::SeqCst), 1);
}

/// D2: the token endpoint's `use_dpop_nonce` (400 with `DPoP-Nonce`) is answered once with a
/// new proof carrying the nonce; the bound token then works at the resource server.
#[tokio::test]
async fn d2_the_token_endpoints_nonce_is_used_after_one_refusal() {
    let demand = Demand {
        token: true,
        ..Demand::default()
    };
    let rig = Rig::start(DpopPolicy::Require, demand).await;
    let session = rig.session(Arc::new(MemoryStore::new()), true);
    assert_eq!(call(&session, &rig.resource).await, 200);
    assert_eq!(rig.token_nonce_refusals.load(Ordering::SeqCst), 1);
    assert_eq!(session.current_record().await.unwrap().token_type, "DPoP");
}

/// D2: a token endpoint that keeps answering `use_dpop_nonce` (with a new nonce each time) is
/// retried once only, and its refusal is reported.
#[tokio::test]
async fn d2_a_token_endpoint_that_keeps_refusing_is_retried_once() {
    let demand = Demand {
        token: true,
        token_forever: true,
        ..Demand::default()
    };
    let rig = Rig::start(DpopPolicy::Require, demand).await;
    let session = rig.session(Arc::new(MemoryStore::new()), true);
    let err = session.access_token().await.unwrap_err();
    match &err {
        ClientError::OAuth { error, status, .. } => {
            assert_eq!((error.error.as_str(), *status), ("use_dpop_nonce", 400));
        }
        other => panic!("{other}"),
    }
    assert_eq!(rig.token_nonce_refusals.load(Ordering::SeqCst), 2);
}

/// D1, C26: a 403 `insufficient_scope` to a bound token leads to a new grant with the union of
/// the scopes, bound to a key again, and the replay succeeds.
#[tokio::test]
async fn d1_step_up_gets_a_new_bound_token() {
    let scopes = ScopePolicy::new()
        .require(["mcp"])
        .method("ping", ["mcp:admin"]);
    let rig = Rig::start_with(DpopPolicy::Require, Demand::default(), scopes).await;
    let session = rig.session(Arc::new(MemoryStore::new()), true);
    let first = session.access_token().await.unwrap();
    assert_eq!(call(&session, &rig.resource).await, 200);
    let record = session.current_record().await.unwrap();
    assert_ne!(record.access_token, first, "a new token after the 403");
    assert!(
        record
            .granted_scopes
            .is_superset(&mcpauth_core::ScopeSet::parse("mcp mcp:admin")),
        "{}",
        record.granted_scopes
    );
    assert_eq!(record.token_type, "DPoP");
    let key = load_key(record.dpop_key.as_ref().unwrap()).unwrap();
    assert_eq!(jkt_of(&record).as_deref(), Some(key.thumbprint()));
}

/// D3: the key is stored with the tokens in the 0600 file store and survives a restart: a new
/// session over the same directory presents the stored token with proofs by the stored key.
#[tokio::test]
async fn d3_the_key_is_stored_in_the_file_store_and_survives_a_restart() {
    use std::os::unix::fs::PermissionsExt;
    let rig = Rig::start(DpopPolicy::Require, Demand::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let first = rig.session(Arc::new(FileStore::new(dir.path())), true);
    assert_eq!(call(&first, &rig.resource).await, 200);
    let stored = first.current_record().await.unwrap();
    let mut files = Vec::new();
    for entry in walk(dir.path()) {
        let text = std::fs::read_to_string(&entry).unwrap_or_default();
        if text.contains("\"dpop_key\"") {
            let mode = std::fs::metadata(&entry).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", entry.display());
            files.push(entry);
        }
    }
    assert_eq!(files.len(), 1, "one token record holds the key");
    drop(first);

    let second = rig.session(Arc::new(FileStore::new(dir.path())), true);
    assert_eq!(call(&second, &rig.resource).await, 200);
    let reloaded = second.current_record().await.unwrap();
    assert_eq!(reloaded.access_token, stored.access_token);
    assert_eq!(reloaded.dpop_key, stored.dpop_key);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// D3: with DPoP turned off (`--no-dpop`) no proof is sent, the AS issues a Bearer token and
/// it is presented as Bearer.
#[tokio::test]
async fn d3_dpop_off_gets_and_presents_a_bearer_token() {
    let rig = Rig::start(DpopPolicy::Allow, Demand::default()).await;
    let session = rig.session(Arc::new(MemoryStore::new()), false);
    assert_eq!(call(&session, &rig.resource).await, 200);
    let record = session.current_record().await.unwrap();
    assert_eq!(
        (record.token_type.as_str(), record.dpop_key.clone()),
        ("Bearer", None)
    );
    assert_eq!(jkt_of(&record), None);
}

/// D3, RFC 9449 §7.1, RFC 9728 §2: a resource that says nothing of DPoP (no `DPoP` challenge,
/// no `dpop_*` metadata) may not know the scheme, so the client asks for a Bearer token although
/// the authorization server offers DPoP, and its calls go through.
#[tokio::test]
async fn d3_a_resource_that_does_not_offer_dpop_gets_a_bearer_token() {
    let demand = Demand {
        bearer_only: true,
        ..Demand::default()
    };
    let rig = Rig::start(DpopPolicy::Allow, demand).await;
    let session = rig.session(Arc::new(MemoryStore::new()), true);
    assert_eq!(call(&session, &rig.resource).await, 200);
    let record = session.current_record().await.unwrap();
    assert_eq!(
        (record.token_type.as_str(), record.dpop_key.is_none()),
        ("Bearer", true)
    );
    assert_eq!(jkt_of(&record), None);
}

/// D3: an authorization server without `dpop_signing_alg_values_supported` gets no proof and
/// its Bearer token is presented as before.
#[tokio::test]
async fn d3_a_server_without_dpop_metadata_gets_bearer_as_before() {
    let server = TestServer::start(Knobs::default()).await;
    let grant = Grant::AuthorizationCode(Arc::new(Headless::new(
        http(),
        "http://127.0.0.1:53682/callback",
    )));
    let session = Arc::new(Session::new(
        SessionConfig::new(server.mcp_url(), grant),
        http(),
        Arc::new(MemoryStore::new()),
    ));
    assert_eq!(call(&session, &server.mcp_url()).await, 200);
    let record = session.current_record().await.unwrap();
    assert_eq!(
        (record.token_type.as_str(), record.dpop_key.clone()),
        ("Bearer", None)
    );
}

/// SPEC D1, RFC 9728 §2: with DPoP off, a resource whose metadata says
/// `dpop_bound_access_tokens_required` can take no token this client gets, so it stops at
/// once with an error that says so (before: three authorizations, then "gave up").
#[tokio::test]
async fn d1_dpop_off_against_a_resource_that_requires_it_stops_at_once() {
    let rig = Rig::start(DpopPolicy::Require, Demand::default()).await;
    let session = rig.session(Arc::new(MemoryStore::new()), false);
    let client = AuthenticatedClient::new(Arc::clone(&session), reqwest::Client::new());
    let err = client
        .send(|h| {
            h.post(&rig.resource)
                .header("content-type", "application/json")
                .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::DpopRequired { why, .. } if why.contains("--no-dpop")),
        "{err}"
    );
    assert!(
        session.current_record().await.is_none(),
        "no token was fetched"
    );
}
