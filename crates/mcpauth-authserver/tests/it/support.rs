//! Test harness: databases, servers, an HTTP client without redirects, and the browser steps
//! of the code flow (login and consent forms with cookie and CSRF token).

use std::collections::HashMap;

use mcpauth_authserver::admin::{self, NewClient};
use mcpauth_authserver::{AuthMethod, AuthServer, Config, PasswordParams, RateLimits, Store};
use mcpauth_core::pkce;
use serde_json::{Value, json};
use sqlx::migrate::MigrateDatabase;

pub const USER: &str = "alice";
pub const PASSWORD: &str = "correct horse battery";
pub const REDIRECT: &str = "http://127.0.0.1:53682/callback";
pub const RESOURCE: &str = "http://127.0.0.1:9000/mcp";
/// What the consent page says when the user approved the client before but the approval cannot
/// answer for it silently (security finding 7, RFC 8252 §8.6).
pub const CONSENT_AGAIN: &str = "You allowed this application before";
/// All that the error page and `error_description` say when a client's metadata document could
/// not be fetched; the reason goes to the server log only (security finding 10).
pub const NOT_FETCHED: &str = "metadata document could not be fetched";

/// Generates `mod $name { sqlite, postgres }` running `$body` with a fresh [`Db`] of each kind.
macro_rules! both_backends {
    ($( $(#[$meta:meta])* async fn $name:ident($db:ident) $body:block )*) => {$(
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn case($db: &crate::support::Db) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = crate::support::Db::sqlite();
                case(&db).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(
                not(mcpauth_pg),
                ignore = "needs PostgreSQL: build and run with MCPAUTH_TEST_DATABASE_URL set"
            )]
            async fn postgres() {
                let db = crate::support::Db::postgres().await;
                case(&db).await;
                db.drop_database().await;
            }
        }
    )*};
}
pub(crate) use both_backends;

/// A database for one test.
pub struct Db {
    pub url: String,
    postgres: bool,
    _dir: Option<tempfile::TempDir>,
}

impl Db {
    pub fn sqlite() -> Db {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/mcpauth.db?mode=rwc", dir.path().display());
        Db {
            url,
            postgres: false,
            _dir: Some(dir),
        }
    }

    pub async fn postgres() -> Db {
        let base = std::env::var("MCPAUTH_TEST_DATABASE_URL")
            .ok()
            .filter(|v| !v.is_empty())
            .expect(
                "MCPAUTH_TEST_DATABASE_URL is not set: this PostgreSQL test cannot run, and must \
                 not pass without running",
            );
        let mut url = url::Url::parse(&base).unwrap();
        let name = format!(
            "mcpauth_test_{}",
            mcpauth_core::random_urlsafe(9)
                .unwrap()
                .to_ascii_lowercase()
                .replace(['-', '_'], "x")
        );
        url.set_path(&format!("/{name}"));
        let url = url.to_string();
        sqlx::any::install_default_drivers();
        sqlx::Any::create_database(&url).await.unwrap();
        Db {
            url,
            postgres: true,
            _dir: None,
        }
    }

    /// Drops a PostgreSQL test database (after the servers are gone).
    pub async fn drop_database(&self) {
        if self.postgres {
            let _ = sqlx::Any::force_drop_database(&self.url).await;
        }
    }
}

/// A running server.
pub struct TestServer {
    pub issuer: String,
    /// Where this instance listens (differs from the issuer when instances share one).
    pub base: String,
    pub server: AuthServer,
    _stop: StopOnDrop,
}

/// Stops a test server (its graceful-shutdown signal) when dropped.
pub struct StopOnDrop(Option<tokio::sync::oneshot::Sender<()>>);

impl StopOnDrop {
    /// The guard and the future the server waits on.
    pub fn new() -> (StopOnDrop, impl Future<Output = ()> + Send + 'static) {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        (StopOnDrop(Some(tx)), async move {
            let _ = rx.await;
        })
    }
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

impl TestServer {
    /// Starts a server on `db` with test defaults (cheap argon2, no rate limits, one resource),
    /// adjusted by `adjust` (which may append a path to the issuer).
    pub async fn start(db: &Db, adjust: impl FnOnce(&mut Config)) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let mut config = Config::new(base.clone());
        config.password_params = PasswordParams::insecure_for_tests();
        config.rate_limits = RateLimits::none();
        config.resources = vec![RESOURCE.into()];
        adjust(&mut config);
        let store = Store::connect(&db.url).await.unwrap();
        let server = AuthServer::new(config, store).await.unwrap();
        let (stop, stopped) = StopOnDrop::new();
        let s = server.clone();
        tokio::spawn(async move {
            mcpauth_authserver::serve(listener, s, stopped)
                .await
                .unwrap();
        });
        TestServer {
            base,
            issuer: server.config().issuer.clone(),
            server,
            _stop: stop,
        }
    }

    /// An endpoint of this instance: its own address plus the issuer's path.
    pub fn url(&self, path: &str) -> String {
        let issuer_path = url::Url::parse(&self.issuer)
            .unwrap()
            .path()
            .trim_end_matches('/')
            .to_owned();
        format!("{}{issuer_path}{path}", self.base)
    }

    /// This server reached at `base` (e.g. the load balancer in front of it); dropping the
    /// view does not stop the server.
    pub fn via(&self, base: &str) -> TestServer {
        TestServer {
            issuer: self.issuer.clone(),
            base: base.to_owned(),
            server: self.server.clone(),
            _stop: StopOnDrop(None),
        }
    }

    pub fn store(&self) -> &Store {
        self.server.store()
    }

    /// Adds the test user (ignoring "already exists").
    pub async fn add_user(&self) {
        let _ = admin::add_user(
            self.store(),
            USER,
            PASSWORD,
            PasswordParams::insecure_for_tests(),
        )
        .await;
    }

    /// Registers a public native client over `/register`; returns its id.
    pub async fn register_public_client(&self, redirect_uris: &[&str]) -> String {
        let resp = http()
            .post(self.url("/register"))
            .json(&json!({
                "client_name": "Test Client",
                "redirect_uris": redirect_uris,
                "token_endpoint_auth_method": "none",
                "grant_types": ["authorization_code", "refresh_token"],
                "application_type": "native",
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        let body: Value = resp.json().await.unwrap();
        assert!(body.get("client_secret").is_none());
        body["client_id"].as_str().unwrap().to_owned()
    }

    /// Pre-registers a confidential client with a secret; returns (id, secret).
    pub async fn add_secret_client(&self) -> (String, String) {
        let mut c = NewClient::new(AuthMethod::SecretBasic);
        c.client_name = Some("Robot".into());
        c.redirect_uris = vec![REDIRECT.into()];
        let created = admin::add_client(self.store(), c).await.unwrap();
        (
            created.info.client_id,
            created.client_secret.unwrap().expose().to_owned(),
        )
    }

    /// Pre-registers a resource server: a confidential client that may introspect the access
    /// tokens of `resources` (security finding 8); returns (id, secret).
    pub async fn add_resource_server(&self, resources: &[&str]) -> (String, String) {
        let mut c = NewClient::new(AuthMethod::SecretBasic);
        c.client_name = Some("Resource server".into());
        c.introspection = resources.iter().map(|r| r.to_string()).collect();
        let created = admin::add_client(self.store(), c).await.unwrap();
        (
            created.info.client_id,
            created.client_secret.unwrap().expose().to_owned(),
        )
    }
}

/// An HTTP client that never follows redirects.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A started authorization: the URL and the PKCE verifier and state behind it.
pub struct Authorization {
    pub url: String,
    pub verifier: String,
    pub state: String,
}

/// Builds an authorization request URL; `extra` overrides or adds parameters (an empty value
/// removes one).
pub fn authorization(
    ts: &TestServer,
    client_id: &str,
    redirect_uri: &str,
    extra: &[(&str, &str)],
) -> Authorization {
    let verifier = pkce::new_verifier().unwrap();
    let state = mcpauth_core::random_urlsafe(8).unwrap();
    let challenge = pkce::challenge_s256(&verifier);
    let mut params: Vec<(String, String)> = [
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", redirect_uri),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("state", state.as_str()),
        ("scope", "mcp:read mcp:write"),
        ("resource", RESOURCE),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in extra {
        params.retain(|(pk, _)| pk != k);
        if !v.is_empty() {
            params.push((k.to_string(), v.to_string()));
        }
    }
    let mut url = url::Url::parse(&ts.url("/authorize")).unwrap();
    url.query_pairs_mut().extend_pairs(params);
    Authorization {
        url: url.to_string(),
        verifier: verifier.expose().to_owned(),
        state,
    }
}

/// The `name=value` of the session cookie a response sets.
pub fn cookie_from(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap().to_owned())
        .next()
}

/// The value of a hidden form field.
pub fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {html}"))
        + marker.len();
    html[start..][..html[start..].find('"').unwrap()].to_owned()
}

/// Query parameters of a `Location`.
pub fn location_params(resp: &reqwest::Response) -> HashMap<String, String> {
    let loc = resp
        .headers()
        .get("location")
        .expect("a redirect")
        .to_str()
        .unwrap();
    url::Url::parse(loc)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// GETs an authorization URL that shows the login page; returns the session cookie and HTML.
pub async fn open_login(url: &str) -> (String, String) {
    let page = http().get(url).send().await.unwrap();
    assert_eq!(page.status(), 200, "login page");
    let cookie = cookie_from(&page).expect("a session cookie");
    (cookie, page.text().await.unwrap())
}

/// Posts the login form shown in `html`.
pub async fn post_login(
    ts: &TestServer,
    cookie: &str,
    html: &str,
    username: &str,
    password: &str,
) -> reqwest::Response {
    http()
        .post(ts.url("/authorize/login"))
        .header("cookie", cookie)
        .form(&[
            ("request_id", hidden(html, "request_id").as_str()),
            ("csrf", hidden(html, "csrf").as_str()),
            ("username", username),
            ("password", password),
        ])
        .send()
        .await
        .unwrap()
}

/// Logs in through the page at `url`; returns the new session cookie and the consent page.
pub async fn login_to_consent(ts: &TestServer, url: &str) -> (String, String) {
    let (cookie, html) = open_login(url).await;
    let resp = post_login(ts, &cookie, &html, USER, PASSWORD).await;
    assert_eq!(resp.status(), 200, "consent page");
    assert_eq!(resp.headers()["x-frame-options"], "DENY");
    let cookie = cookie_from(&resp).expect("a new session cookie after login");
    (cookie, resp.text().await.unwrap())
}

/// Posts the consent form shown in `html` with `decision`.
pub async fn post_consent(
    ts: &TestServer,
    cookie: &str,
    html: &str,
    decision: &str,
) -> reqwest::Response {
    http()
        .post(ts.url("/authorize/consent"))
        .header("cookie", cookie)
        .form(&[
            ("request_id", hidden(html, "request_id").as_str()),
            ("csrf", hidden(html, "csrf").as_str()),
            ("decision", decision),
        ])
        .send()
        .await
        .unwrap()
}

/// The browser side of the code flow: GET the authorization URL, log in, consent. Returns the
/// final redirect response and the session cookie.
pub async fn browser_flow(ts: &TestServer, url: &str) -> (reqwest::Response, String) {
    let (cookie, html) = login_to_consent(ts, url).await;
    assert!(html.contains("Allow"), "{html}");
    let resp = post_consent(ts, &cookie, &html, "allow").await;
    assert_eq!(resp.status(), 303);
    (resp, cookie)
}

/// POSTs a form to the token endpoint; returns status and JSON body.
pub async fn token_request(ts: &TestServer, form: &[(&str, &str)]) -> (u16, Value) {
    token_request_with(ts, form, &[]).await
}

/// [`token_request`] with extra request headers (e.g. `DPoP`).
pub async fn token_request_with(
    ts: &TestServer,
    form: &[(&str, &str)],
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut req = http().post(ts.url("/token")).form(form);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    assert_eq!(
        resp.headers().get("cache-control").unwrap(),
        "no-store",
        "every token response is no-store"
    );
    (status, resp.json().await.unwrap())
}

/// A public client, logged-in user and code flow up to the token response.
pub async fn code_flow_tokens(ts: &TestServer, client_id: &str) -> Value {
    code_flow_tokens_with(ts, client_id, &[]).await
}

/// [`code_flow_tokens`] with extra headers on the token request (e.g. `DPoP`).
pub async fn code_flow_tokens_with(
    ts: &TestServer,
    client_id: &str,
    headers: &[(&str, &str)],
) -> Value {
    let a = authorization(ts, client_id, REDIRECT, &[]);
    let (resp, _) = browser_flow(ts, &a.url).await;
    let code = location_params(&resp)["code"].clone();
    exchange_code_with(ts, client_id, &code, &a.verifier, headers).await
}

/// The form exchanging `code` (redirect [`REDIRECT`], resource [`RESOURCE`]) as the public
/// client `client_id`.
pub fn code_form<'a>(
    client_id: &'a str,
    code: &'a str,
    verifier: &'a str,
) -> [(&'a str, &'a str); 6] {
    [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier),
        ("client_id", client_id),
        ("resource", RESOURCE),
    ]
}

/// Exchanges `code` (redirect [`REDIRECT`], resource [`RESOURCE`]) as the public client
/// `client_id`; asserts 200 and returns the token response.
pub async fn exchange_code(ts: &TestServer, client_id: &str, code: &str, verifier: &str) -> Value {
    exchange_code_with(ts, client_id, code, verifier, &[]).await
}

/// [`exchange_code`] with extra headers on the token request (e.g. `DPoP`).
pub async fn exchange_code_with(
    ts: &TestServer,
    client_id: &str,
    code: &str,
    verifier: &str,
    headers: &[(&str, &str)],
) -> Value {
    let (status, body) =
        token_request_with(ts, &code_form(client_id, code, verifier), headers).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Introspects `token` as the confidential client `(id, secret)` (a resource server, see
/// [`TestServer::add_resource_server`], or every answer is inactive).
pub async fn introspect(ts: &TestServer, client: &(String, String), token: &str) -> Value {
    let resp = http()
        .post(ts.url("/introspect"))
        .basic_auth(&client.0, Some(&client.1))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

/// The claims of a JWT, unverified (tests only).
pub fn claims(jwt: &str) -> Value {
    use base64::Engine;
    let part = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap()
}

/// The header of a JWT.
pub fn jwt_header(jwt: &str) -> Value {
    use base64::Engine;
    let part = jwt.split('.').next().unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap()
}

/// A P-256 key pair for `private_key_jwt`: (PKCS#8 private key, public JWK with `kid`).
pub fn ec_key(kid: &str) -> (Vec<u8>, Value) {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .unwrap();
    let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let p = kp.public_key().as_ref();
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "kid": kid,
        "x": URL_SAFE_NO_PAD.encode(&p[1..33]), "y": URL_SAFE_NO_PAD.encode(&p[33..]),
    });
    (pkcs8.as_ref().to_vec(), jwk)
}

/// An RFC 7523 client assertion (ES256) signed with `pkcs8`.
pub fn assertion(pkcs8: &[u8], kid: &str, client_id: &str, aud: &str, jti: &str) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(kid.into());
    let now = jsonwebtoken::get_current_timestamp();
    let claims = json!({"iss": client_id, "sub": client_id, "aud": aud, "iat": now,
        "exp": now + 120, "jti": jti});
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_ec_der(pkcs8),
    )
    .unwrap()
}

/// A canned response of a [`DocServer`].
#[derive(Clone)]
struct Doc {
    body: Vec<u8>,
    cache_control: Option<String>,
}

type Docs = std::sync::Arc<std::sync::Mutex<HashMap<String, Doc>>>;
type Hits = std::sync::Arc<std::sync::Mutex<HashMap<String, usize>>>;

/// A real HTTPS server on 127.0.0.1:0 for the documents the authorization server fetches
/// (client ID metadata documents, `jwks_uri` sets): a fresh self-signed certificate for
/// 127.0.0.1, canned responses per path, and a count of the requests each path received.
pub struct DocServer {
    /// `https://127.0.0.1:PORT`
    pub base: String,
    /// The self-signed certificate (PEM), to be trusted by the fetch policy.
    pub cert_pem: String,
    docs: Docs,
    hits: Hits,
    _stop: StopOnDrop,
}

/// Accepts TCP connections and completes their TLS handshakes (one at a time: a test server).
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, peer)) = self.tcp.accept().await else {
                continue;
            };
            let handshake = self.acceptor.accept(tcp);
            if let Ok(Ok(tls)) =
                tokio::time::timeout(std::time::Duration::from_secs(5), handshake).await
            {
                return (tls, peer);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

impl DocServer {
    pub async fn start() -> DocServer {
        use tokio_rustls::rustls;
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        let cert_pem = cert.cert.pem();
        let chain = vec![CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap()];
        let key =
            PrivateKeyDer::from_pem_slice(cert.signing_key.serialize_pem().as_bytes()).unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("https://{}", tcp.local_addr().unwrap());
        let listener = TlsListener {
            tcp,
            acceptor: tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(tls)),
        };

        let docs = Docs::default();
        let hits = Hits::default();
        let (d, h) = (docs.clone(), hits.clone());
        let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
            let (d, h) = (d.clone(), h.clone());
            async move {
                use axum::response::IntoResponse;
                let path = uri.path().to_owned();
                *h.lock().unwrap().entry(path.clone()).or_default() += 1;
                let doc = d.lock().unwrap().get(&path).cloned();
                match doc {
                    None => axum::http::StatusCode::NOT_FOUND.into_response(),
                    Some(doc) => {
                        let mut resp = (
                            [(axum::http::header::CONTENT_TYPE, "application/json")],
                            doc.body,
                        )
                            .into_response();
                        if let Some(cc) = doc.cache_control {
                            resp.headers_mut()
                                .insert(axum::http::header::CACHE_CONTROL, cc.parse().unwrap());
                        }
                        resp
                    }
                }
            }
        });
        let (stop, stopped) = StopOnDrop::new();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await
                .unwrap();
        });
        DocServer {
            base,
            cert_pem,
            docs,
            hits,
            _stop: stop,
        }
    }

    /// The URL of `path` on this server.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Serves `body` at `path` with an optional `Cache-Control` header.
    pub fn serve(&self, path: &str, body: impl Into<Vec<u8>>, cache_control: Option<&str>) {
        self.docs.lock().unwrap().insert(
            path.to_owned(),
            Doc {
                body: body.into(),
                cache_control: cache_control.map(str::to_owned),
            },
        );
    }

    /// Serves `value` as JSON at `path`.
    pub fn serve_json(&self, path: &str, value: &Value, cache_control: Option<&str>) {
        self.serve(path, serde_json::to_vec(value).unwrap(), cache_control);
    }

    /// How many requests `path` has received.
    pub fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    /// Makes the server's fetch policy trust this server: its certificate as an extra root and
    /// 127.0.0.0/8 allow-listed (the development escape hatch of MCP SPEC A10's SSRF rule).
    pub fn trust(&self, config: &mut Config) {
        config.fetch.extra_root_certs_pem = vec![self.cert_pem.clone()];
        config.fetch.allow_networks =
            vec![mcpauth_authserver::IpNet::parse("127.0.0.0/8").unwrap()];
    }
}

/// Instances on one database behind one URL, as behind a load balancer: a round-robin TCP
/// proxy sends each new connection to the next instance, and the helpers here open one
/// connection per request, so consecutive requests reach different instances.
pub struct Balanced {
    /// The instances, each also reachable at its own address.
    pub instances: Vec<TestServer>,
    /// The shared URL (the issuer of every instance).
    pub front: TestServer,
    hits: std::sync::Arc<Vec<std::sync::atomic::AtomicUsize>>,
}

impl Balanced {
    /// Starts two instances on `db` adjusted by `adjust`, and the proxy in front of them.
    pub async fn start(db: &Db, adjust: impl Fn(&mut Config)) -> Balanced {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let front = format!("http://{}", listener.local_addr().unwrap());
        let mut instances = Vec::new();
        for _ in 0..2 {
            instances.push(
                TestServer::start(db, |c| {
                    c.issuer = front.clone();
                    adjust(c);
                })
                .await,
            );
        }
        let backends: Vec<String> = instances
            .iter()
            .map(|i| i.base.trim_start_matches("http://").to_owned())
            .collect();
        let hits: Arc<Vec<AtomicUsize>> =
            Arc::new(backends.iter().map(|_| AtomicUsize::new(0)).collect());
        let counted = Arc::clone(&hits);
        tokio::spawn(async move {
            let mut next = 0;
            while let Ok((mut inbound, _)) = listener.accept().await {
                let i = next % backends.len();
                next += 1;
                counted[i].fetch_add(1, Ordering::Relaxed);
                let backend = backends[i].clone();
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(backend).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        let front = instances[0].via(&front);
        Balanced {
            instances,
            front,
            hits,
        }
    }

    /// How many connections each instance got.
    pub fn hits(&self) -> Vec<usize> {
        self.hits
            .iter()
            .map(|h| h.load(std::sync::atomic::Ordering::Relaxed))
            .collect()
    }
}
