//! Test harness: a real authorization server (`mcpauth-authserver`, SQLite in memory), a
//! hand-rolled issuer whose keys the tests control (for forged and malformed tokens), and the
//! protected MCP app, all on 127.0.0.1:0.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use axum::Router;
use axum::body::Bytes;
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mcpauth_authserver::admin::{self, NewClient};
use mcpauth_authserver::{AuthMethod, AuthServer, Config, PasswordParams, RateLimits, Store};
use mcpauth_resource::{
    Authenticated, BearerAuthLayer, DpopConfig, OriginGuardLayer, ResourceMetadata, ScopePolicy,
    TokenVerifier,
};
use serde_json::{Value, json};
use tokio::net::TcpListener;

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Serves `app` on `listener` until the returned guard is dropped.
pub fn spawn(listener: TcpListener, app: Router) -> Shutdown {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    Shutdown(Some(tx))
}

/// Stops a server when dropped.
pub struct Shutdown(Option<tokio::sync::oneshot::Sender<()>>);

impl Drop for Shutdown {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

pub async fn bind() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    (l, a)
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The real authorization server.
pub struct As {
    pub issuer: String,
    pub server: AuthServer,
    _shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for As {
    fn drop(&mut self) {
        if let Some(tx) = self._shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl As {
    /// Starts one that issues tokens for `resources`.
    pub async fn start(resources: &[&str]) -> As {
        let (listener, addr) = bind().await;
        let mut config = Config::new(format!("http://{addr}"));
        config.password_params = PasswordParams::insecure_for_tests();
        config.rate_limits = RateLimits::none();
        config.resources = resources.iter().map(|r| r.to_string()).collect();
        let store = Store::connect("sqlite::memory:").await.unwrap();
        let server = AuthServer::new(config, store).await.unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let s = server.clone();
        tokio::spawn(async move {
            mcpauth_authserver::serve(listener, s, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        As {
            issuer: server.config().issuer.clone(),
            server,
            _shutdown: Some(tx),
        }
    }

    /// A confidential client: (id, secret).
    pub async fn client(&self) -> (String, String) {
        let created =
            admin::add_client(self.server.store(), NewClient::new(AuthMethod::SecretBasic))
                .await
                .unwrap();
        (
            created.info.client_id,
            created.client_secret.unwrap().expose().to_owned(),
        )
    }

    /// A resource server for `resources`: a confidential client that may introspect their
    /// access tokens: (id, secret).
    pub async fn resource_server(&self, resources: &[&str]) -> (String, String) {
        let mut new = NewClient::new(AuthMethod::SecretBasic);
        new.introspection = resources.iter().map(|r| r.to_string()).collect();
        let created = admin::add_client(self.server.store(), new).await.unwrap();
        (
            created.info.client_id,
            created.client_secret.unwrap().expose().to_owned(),
        )
    }

    /// A client_credentials access token for `resource` with `scope`.
    pub async fn token(&self, client: &(String, String), resource: &str, scope: &str) -> String {
        self.token_with(client, resource, scope, None).await
    }

    /// [`As::token`] with a DPoP proof for the token request (a DPoP-bound token).
    pub async fn token_with(
        &self,
        client: &(String, String),
        resource: &str,
        scope: &str,
        dpop: Option<&str>,
    ) -> String {
        let mut req = http().post(format!("{}/token", self.issuer));
        if let Some(p) = dpop {
            req = req.header("dpop", p);
        }
        let resp = req
            .basic_auth(&client.0, Some(&client.1))
            .form(&[
                ("grant_type", "client_credentials"),
                ("scope", scope),
                ("resource", resource),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }
}

/// An issuer whose ES256 keys the test holds: serves RFC 8414 metadata and a JWK set, and
/// counts JWK set fetches.
pub struct FakeIssuer {
    pub issuer: String,
    pub keys: Arc<std::sync::Mutex<Vec<Value>>>,
    pub jwks_fetches: Arc<AtomicUsize>,
    _shutdown: Shutdown,
}

/// An ES256 signing key and its public JWK.
pub struct SigningKey {
    pub kid: String,
    pub pkcs8: Vec<u8>,
    pub jwk: Value,
    /// The raw public point, for the HS256-with-the-public-key attack.
    pub public: Vec<u8>,
}

impl SigningKey {
    pub fn generate(kid: &str) -> SigningKey {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .unwrap()
            .as_ref()
            .to_vec();
        let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8).unwrap();
        let point = kp.public_key().as_ref().to_vec();
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..]),
        });
        SigningKey {
            kid: kid.into(),
            pkcs8,
            jwk,
            public: point,
        }
    }

    /// Signs `claims` with header `typ` (and this key's kid).
    pub fn sign(&self, typ: &str, claims: &Value) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.typ = Some(typ.into());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(
            &header,
            claims,
            &jsonwebtoken::EncodingKey::from_ec_der(&self.pkcs8),
        )
        .unwrap()
    }
}

/// A JWT from raw header and claims with `signature` (no real signing).
pub fn raw_jwt(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

/// HMAC-SHA256 over the signing input of `header`.`claims` with `key`: a token "signed" with
/// a public key used as an HMAC secret.
pub fn hs256_jwt(header: &Value, claims: &Value, key: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    let tag = aws_lc_rs::hmac::sign(&k, input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

impl FakeIssuer {
    pub async fn start(initial: &[&SigningKey]) -> FakeIssuer {
        let (listener, addr) = bind().await;
        let issuer = format!("http://{addr}");
        let keys = Arc::new(std::sync::Mutex::new(
            initial.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>(),
        ));
        let fetches = Arc::new(AtomicUsize::new(0));
        let meta = json!({
            "issuer": issuer,
            "jwks_uri": format!("{issuer}/jwks"),
            "token_endpoint": format!("{issuer}/token"),
        });
        let (k, f) = (keys.clone(), fetches.clone());
        let app = Router::new()
            .route(
                "/.well-known/oauth-authorization-server",
                get(move || async move { axum::Json(meta) }),
            )
            .route(
                "/jwks",
                get(move || async move {
                    f.fetch_add(1, Ordering::SeqCst);
                    let keys = k.lock().unwrap().clone();
                    axum::Json(json!({ "keys": keys }))
                }),
            );
        FakeIssuer {
            issuer,
            keys,
            jwks_fetches: fetches,
            _shutdown: spawn(listener, app),
        }
    }

    pub fn publish(&self, key: &SigningKey) {
        self.keys.lock().unwrap().push(key.jwk.clone());
    }

    pub fn fetches(&self) -> usize {
        self.jwks_fetches.load(Ordering::SeqCst)
    }

    /// Good RFC 9068 claims for `aud`, overridden by `extra`.
    pub fn claims(&self, aud: &str, extra: Value) -> Value {
        let now = now();
        let mut c = json!({
            "iss": self.issuer, "sub": "alice", "aud": aud, "client_id": "cli",
            "scope": "mcp", "iat": now, "exp": now + 300, "jti": "j1",
        });
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    }
}

/// The protected MCP app: `POST /mcp` echoes the principal as a JSON-RPC result.
pub struct App {
    pub url: String,
    pub resource: String,
    pub prm: ResourceMetadata,
    _shutdown: Shutdown,
}

async fn mcp(Authenticated(p): Authenticated, body: Bytes) -> axum::Json<Value> {
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    axum::Json(json!({
        "jsonrpc": "2.0", "id": req.get("id").cloned().unwrap_or(Value::Null),
        "result": {
            "subject": p.subject, "client_id": p.client_id, "scopes": p.scopes.to_string(),
            "issuer": p.issuer,
        },
    }))
}

/// A bound but not yet serving app address (so the authorization server can know the
/// resource before the verifier exists).
pub struct Pending {
    listener: TcpListener,
    pub addr: SocketAddr,
    pub resource: String,
}

impl Pending {
    pub async fn new() -> Pending {
        let (listener, addr) = bind().await;
        Pending {
            listener,
            addr,
            resource: format!("http://{addr}/mcp"),
        }
    }

    /// Serves the app with `verifier`, `policy`, protected by `issuers`.
    pub fn serve(self, verifier: impl TokenVerifier, issuers: &[&str], policy: ScopePolicy) -> App {
        self.serve_with(verifier, issuers, policy, DpopConfig::default())
    }

    /// [`Pending::serve`] with DPoP settings.
    pub fn serve_with(
        self,
        verifier: impl TokenVerifier,
        issuers: &[&str],
        policy: ScopePolicy,
        dpop: DpopConfig,
    ) -> App {
        let prm = ResourceMetadata::new(self.resource.clone(), issuers.iter().copied())
            .unwrap()
            .scopes_supported(["mcp", "files:read", "files:write", "offline_access"])
            .dpop(&dpop);
        let app = Router::new()
            .route("/mcp", post(mcp).get(mcp))
            .route_layer(
                BearerAuthLayer::new(verifier, &prm)
                    .scope_policy(policy)
                    .dpop(dpop),
            )
            .route_service(prm.metadata_path(), prm.service())
            .layer(OriginGuardLayer::for_loopback(self.addr));
        App {
            url: format!("http://{}", self.addr),
            resource: self.resource,
            prm,
            _shutdown: spawn(self.listener, app),
        }
    }
}

impl App {
    /// POSTs a JSON-RPC request with `token` (if any).
    pub async fn call(&self, token: Option<&str>, body: &Value) -> reqwest::Response {
        let mut req = http().post(&self.resource).json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap()
    }
}

pub fn initialize() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}})
}

pub fn tool_call(name: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": name, "arguments": {}}})
}

/// The single `WWW-Authenticate` challenge of a response, parsed.
pub fn challenge(resp: &reqwest::Response) -> mcpauth_core::www_authenticate::Challenge {
    let values: Vec<_> = resp.headers().get_all("www-authenticate").iter().collect();
    assert_eq!(values.len(), 1, "exactly one WWW-Authenticate header");
    let mut parsed = mcpauth_core::www_authenticate::parse(values[0].to_str().unwrap()).unwrap();
    assert_eq!(parsed.len(), 1, "exactly one challenge (MCP SPEC S7)");
    let c = parsed.remove(0);
    assert!(c.is_bearer());
    c
}
