//! End-to-end client behaviour against the real test authorization server in `support`:
//! discovery, registration, the code flow, refresh, the 401/403 loop and every refusal.

use std::sync::Arc;
use std::time::Duration;

use mcpauth_client::ClientError;
use mcpauth_client::authed::AuthenticatedClient;
use mcpauth_client::authorize::{Headless, Presenter};
use mcpauth_client::http::{HttpOptions, OAuthHttp};
use mcpauth_client::loopback::{Loopback, LoopbackOptions};
use mcpauth_client::session::{Grant, Session, SessionConfig};
use mcpauth_client::store::{FileStore, MemoryStore, TokenStore};
use mcpauth_core::device::DeviceAuthorization;
use mcpauth_core::{ClientSecret, CoreError, ErrorCode, ScopeSet};

use mcpauth_testkit::{Knobs, TestServer};

const REDIRECT: &str = "http://127.0.0.1:53682/callback";

pub(crate) fn http() -> OAuthHttp {
    OAuthHttp::new(HttpOptions {
        timeout: Duration::from_secs(10),
        ..Default::default()
    })
    .unwrap()
}

fn code_session(server: &TestServer, store: Arc<dyn TokenStore>) -> Arc<Session> {
    let grant = Grant::AuthorizationCode(Arc::new(Headless::new(http(), REDIRECT)));
    Arc::new(Session::new(
        SessionConfig::new(server.mcp_url(), grant),
        http(),
        store,
    ))
}

pub(crate) async fn call(session: &Arc<Session>, server: &TestServer) -> Result<u16, ClientError> {
    let client = AuthenticatedClient::new(Arc::clone(session), reqwest::Client::new());
    let url = server.mcp_url();
    let resp = client
        .send(|h| {
            h.post(&url)
                .header("content-type", "application/json")
                .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
        })
        .await?;
    Ok(resp.status().as_u16())
}

#[tokio::test]
async fn c1_c21_c28_full_flow_from_a_401() {
    let server = TestServer::start(Knobs::default()).await;
    let session = code_session(&server, Arc::new(MemoryStore::new()));
    assert_eq!(call(&session, &server).await.unwrap(), 200);
    server.seen(|c| {
        assert_eq!(
            (c.registrations, c.authorizations, c.code_exchanges),
            (1, 1, 1)
        );
        // C21: resource on both requests, the PRM's exact string.
        assert_eq!(c.last_authorize["resource"], server.mcp_url());
        assert_eq!(c.last_token_form["resource"], server.mcp_url());
        assert_eq!(c.last_authorize["code_challenge_method"], "S256");
        // C17: no challenge scope, so every PRM scope.
        assert_eq!(c.last_authorize["scope"], "mcp:read mcp:write");
        // the 401, then the replay.
        assert_eq!(c.mcp_requests, 2);
    });
    let report = session.discovery_report().await;
    assert!(report.to_string().contains("accepted"), "{report}");
}

#[tokio::test]
async fn c16_challenge_scope_is_authoritative() {
    let server = TestServer::start(Knobs {
        required_scopes: vec!["mcp:special".into()],
        ..Default::default()
    })
    .await;
    let session = code_session(&server, Arc::new(MemoryStore::new()));
    assert_eq!(call(&session, &server).await.unwrap(), 200);
    assert_eq!(
        server.seen(|c| c.last_authorize["scope"].clone()),
        "mcp:special"
    );
}

#[tokio::test]
async fn c26_step_up_requests_the_union_of_scopes() {
    let server = TestServer::start(Knobs {
        required_scopes: vec!["mcp:read".into()],
        ..Default::default()
    })
    .await;
    let session = code_session(&server, Arc::new(MemoryStore::new()));
    assert_eq!(call(&session, &server).await.unwrap(), 200);
    server.set(|k| k.required_scopes = vec!["mcp:read".into(), "mcp:admin".into()]);
    assert_eq!(call(&session, &server).await.unwrap(), 200);
    let scope = ScopeSet::parse(&server.seen(|c| c.last_authorize["scope"].clone()));
    assert!(
        scope.is_superset(&ScopeSet::parse("mcp:read mcp:admin")),
        "{scope}"
    );
    assert_eq!(server.seen(|c| c.authorizations), 2);
}

#[tokio::test]
async fn c26_retry_limit_stops_a_server_that_never_accepts() {
    let server = TestServer::start(Knobs::default()).await;
    let session = code_session(&server, Arc::new(MemoryStore::new()));
    // The server answers 401 to every token.
    server.set(|k| k.refuse_all_tokens = true);
    let err = call(&session, &server).await.unwrap_err();
    assert!(
        matches!(err, ClientError::RetryLimit { attempts: 3, .. }),
        "{err}"
    );
    // One unauthenticated request, then one per attempt: no endless loop.
    assert_eq!(server.seen(|c| c.mcp_requests), 4);
}

#[tokio::test]
async fn refresh_rotates_and_the_old_refresh_token_is_dead() {
    let server = TestServer::start(Knobs {
        expires_in: 30, // inside the 60 s margin: every use refreshes
        ..Default::default()
    })
    .await;
    let store: Arc<dyn TokenStore> = Arc::new(MemoryStore::new());
    let session = code_session(&server, Arc::clone(&store));
    session.access_token().await.unwrap();
    let first = store.list_tokens().unwrap().remove(0);
    session.access_token().await.unwrap();
    let second = store.list_tokens().unwrap().remove(0);
    assert_ne!(first.refresh_token, second.refresh_token);
    assert_ne!(first.access_token, second.access_token);
    assert_eq!(server.seen(|c| (c.refreshes, c.authorizations)), (1, 1));
    // The spent refresh token is refused by the server (rotation).
    let http = reqwest::Client::new();
    let client_id = second.key.client_id.clone();
    let resp = http
        .post(format!("{}/token", server.base))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", &client_id),
            (
                "refresh_token",
                first.refresh_token.as_ref().unwrap().expose(),
            ),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn c4_a_401_refreshes_before_any_new_authorization() {
    let server = TestServer::start(Knobs::default()).await;
    let session = code_session(&server, Arc::new(MemoryStore::new()));
    assert_eq!(call(&session, &server).await.unwrap(), 200);
    server.revoke_access_tokens();
    assert_eq!(call(&session, &server).await.unwrap(), 200);
    assert_eq!(server.seen(|c| (c.authorizations, c.refreshes)), (1, 1));
}

#[tokio::test]
async fn invalid_grant_drops_only_the_refresh_token_then_authorizes_again() {
    let server = TestServer::start(Knobs {
        expires_in: 30,
        ..Default::default()
    })
    .await;
    let store: Arc<dyn TokenStore> = Arc::new(MemoryStore::new());
    let session = code_session(&server, Arc::clone(&store));
    session.access_token().await.unwrap();
    let client_before = store.list_tokens().unwrap()[0].key.client_id.clone();
    spend_refresh_token(&server, store.as_ref()).await;
    session.access_token().await.unwrap();
    server.seen(|c| {
        assert_eq!(c.refused_refreshes, 1);
        assert_eq!(c.authorizations, 2);
    });
    // The client registration was kept: no second registration.
    assert_eq!(store.list_tokens().unwrap()[0].key.client_id, client_before);
    assert_eq!(server.seen(|c| c.registrations), 1);
}

/// Spends the stored refresh token behind the sessions' back (the server rotates it), so the
/// next refresh is refused with `invalid_grant`.
async fn spend_refresh_token(server: &TestServer, store: &dyn TokenStore) {
    server.set(|k| k.rotate = true);
    let rec = store.list_tokens().unwrap().remove(0);
    let status = reqwest::Client::new()
        .post(format!("{}/token", server.base))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", rec.key.client_id.as_str()),
            (
                "refresh_token",
                rec.refresh_token.as_ref().unwrap().expose(),
            ),
        ])
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
}

/// A browser stand-in: follows the authorization URL's redirects to the loopback listener.
#[derive(Debug)]
struct Browser;

impl Presenter for Browser {
    fn show_authorization_url(&self, url: &str) {
        let url = url.to_owned();
        tokio::spawn(async move { reqwest::get(url).await.unwrap() });
    }
    fn show_device_code(&self, _: &DeviceAuthorization) {}
}

/// RFC 8252 §7.3, MCP SPEC C9: a browser login after the refresh token was refused reuses the
/// stored registration: the loopback listener (any free port) takes the registered port again,
/// so the redirect URI matches exactly (before: a new client at every login).
#[tokio::test]
async fn c9_a_new_login_reuses_the_registration_and_its_loopback_port() {
    let server = TestServer::start(Knobs {
        expires_in: 30, // inside the 60 s margin: every use refreshes
        ..Default::default()
    })
    .await;
    let store: Arc<dyn TokenStore> = Arc::new(MemoryStore::new());
    let loopback = Loopback::new(LoopbackOptions::default(), Arc::new(Browser));
    let grant = Grant::AuthorizationCode(Arc::new(loopback));
    let session = Arc::new(Session::new(
        SessionConfig::new(server.mcp_url(), grant),
        http(),
        Arc::clone(&store),
    ));
    session.access_token().await.unwrap();
    let registered = store.list_tokens().unwrap()[0].key.client_id.clone();
    spend_refresh_token(&server, store.as_ref()).await;
    session.access_token().await.unwrap();
    server.seen(|c| {
        assert_eq!((c.refused_refreshes, c.authorizations), (1, 2));
        assert_eq!(c.registrations, 1, "the second login registered again");
    });
    let records = store.list_tokens().unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].key.client_id, registered);
}

/// A dead record (refresh token refused, access token expired) of an older registration is
/// never chosen over a live one for the same resource and issuer, whatever their times say
/// (before: the newer `updated_at` won and the live tokens were ignored for a new login).
#[tokio::test]
async fn c27_a_dead_record_never_hides_a_live_one() {
    let server = TestServer::start(Knobs::default()).await;
    let store: Arc<dyn TokenStore> = Arc::new(MemoryStore::new());
    let first = code_session(&server, Arc::clone(&store));
    let token = first.access_token().await.unwrap();
    let live = store.list_tokens().unwrap().remove(0);
    let mut dead = live.clone();
    dead.key.client_id = "an-older-registration".into();
    dead.refresh_token = None;
    dead.expires_at = Some(0);
    dead.updated_at = live.updated_at + 100;
    store.save_tokens(&dead).unwrap();
    let again = code_session(&server, Arc::clone(&store));
    assert_eq!(again.access_token().await.unwrap(), token);
    assert_eq!(server.seen(|c| c.authorizations), 1);
}

#[tokio::test]
async fn c27_tokens_survive_a_restart_without_network() {
    let server = TestServer::start(Knobs::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let first = code_session(&server, Arc::new(FileStore::new(dir.path())));
    let token = first.access_token().await.unwrap();
    drop(first);
    let second = code_session(&server, Arc::new(FileStore::new(dir.path())));
    assert_eq!(second.cached_token().await.unwrap(), Some(token.clone()));
    assert_eq!(second.access_token().await.unwrap(), token);
    assert_eq!(server.seen(|c| (c.authorizations, c.refreshes)), (1, 0));
}

#[tokio::test]
async fn a_stale_registration_is_replaced_once() {
    let server = TestServer::start(Knobs::default()).await;
    let store: Arc<dyn TokenStore> = Arc::new(MemoryStore::new());
    let session = code_session(&server, Arc::clone(&store));
    session.access_token().await.unwrap();
    server.forget_clients();
    server.revoke_access_tokens();
    // A new session (new process) with the same store: the stored registration is stale.
    let again = code_session(&server, Arc::clone(&store));
    assert_eq!(call(&again, &server).await.unwrap(), 200);
    assert_eq!(server.seen(|c| c.registrations), 2);
}

#[tokio::test]
async fn client_credentials_with_client_secret_basic() {
    let server = TestServer::start(Knobs::default()).await;
    server.add_client("machine", Some("s3cr:t&"));
    let config = SessionConfig::client_credentials(
        server.mcp_url(),
        "machine",
        Some(ClientSecret::new("s3cr:t&")),
    );
    let session = Arc::new(Session::new(config, http(), Arc::new(MemoryStore::new())));
    assert_eq!(call(&session, &server).await.unwrap(), 200);
    server.seen(|c| {
        assert_eq!(c.client_credentials, 1);
        assert!(c.last_token_auth.as_deref().unwrap().starts_with("Basic "));
        assert!(!c.last_token_form.contains_key("client_secret"));
        assert!(!c.last_token_form["scope"].contains("offline_access"));
    });
}

#[tokio::test]
async fn c15_static_client_bound_to_another_issuer_is_refused() {
    let server = TestServer::start(Knobs::default()).await;
    let mut config = SessionConfig::client_credentials(
        server.mcp_url(),
        "machine",
        Some(ClientSecret::new("x")),
    );
    if let Some(client) = config.client.static_client.as_mut() {
        client.issuer = Some("https://old-as.example".into());
    }
    let session = Arc::new(Session::new(config, http(), Arc::new(MemoryStore::new())));
    let err = call(&session, &server).await.unwrap_err();
    assert!(
        matches!(err, ClientError::StaticClientIssuerMismatch { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("C15"), "{err}");
}

// ---- bad input: each shows a clear error and nothing is stored ----

async fn refused(knobs: Knobs) -> (ClientError, TestServer, Arc<dyn TokenStore>) {
    let server = TestServer::start(knobs).await;
    let store: Arc<dyn TokenStore> = Arc::new(MemoryStore::new());
    let session = code_session(&server, Arc::clone(&store));
    let err = call(&session, &server).await.unwrap_err();
    assert!(
        store.list_tokens().unwrap().is_empty(),
        "a refused flow stored tokens"
    );
    (err, server, store)
}

#[tokio::test]
async fn c6_metadata_issuer_mismatch_is_refused() {
    let (err, server, _) = refused(Knobs {
        metadata_issuer: Some("https://evil.example".into()),
        ..Default::default()
    })
    .await;
    assert!(
        matches!(err, ClientError::Core(CoreError::IssuerMismatch { .. })),
        "{err}"
    );
    assert_eq!(server.seen(|c| c.authorizations), 0);
}

#[tokio::test]
async fn malformed_metadata_is_a_clear_error() {
    let (err, _, _) = refused(Knobs {
        metadata_body: Some("{\"issuer\": 42".into()),
        ..Default::default()
    })
    .await;
    assert!(
        err.to_string()
            .contains("no usable authorization server metadata"),
        "{err}"
    );
}

#[tokio::test]
async fn c21_prm_resource_mismatch_stops_before_authorization() {
    let (err, server, _) = refused(Knobs {
        prm_resource: Some("https://other.example/mcp".into()),
        ..Default::default()
    })
    .await;
    assert!(err.to_string().contains("does not cover"), "{err}");
    assert_eq!(server.seen(|c| (c.registrations, c.authorizations)), (0, 0));
}

#[tokio::test]
async fn c28_missing_s256_is_refused() {
    let (err, server, _) = refused(Knobs {
        s256: false,
        ..Default::default()
    })
    .await;
    assert!(matches!(err, ClientError::PkceUnsupported { .. }), "{err}");
    assert!(err.to_string().contains("C28"), "{err}");
    assert_eq!(server.seen(|c| c.authorizations), 0);
}

#[tokio::test]
async fn c19_iss_mismatch_is_refused_before_the_token_request() {
    let (err, server, _) = refused(Knobs {
        response_iss: Some("https://evil.example".into()),
        ..Default::default()
    })
    .await;
    assert!(
        matches!(err, ClientError::Core(CoreError::IssMismatch { .. })),
        "{err}"
    );
    assert_eq!(server.seen(|c| c.code_exchanges), 0);
}

#[tokio::test]
async fn c29_state_mismatch_is_refused() {
    let (err, server, _) = refused(Knobs {
        state_override: Some("forged".into()),
        ..Default::default()
    })
    .await;
    assert!(
        matches!(err, ClientError::Core(CoreError::StateMismatch)),
        "{err}"
    );
    assert_eq!(server.seen(|c| c.code_exchanges), 0);
}

#[tokio::test]
async fn an_error_redirect_is_a_clear_error() {
    let (err, _, _) = refused(Knobs {
        deny: true,
        ..Default::default()
    })
    .await;
    assert!(
        err.to_string().contains("access_denied (the user said no)"),
        "{err}"
    );
}

/// Many identity providers (Entra ID, Okta, Google) answer `access_denied` or `invalid_scope`
/// to an authorization request without `scope`: the error says the request carried none and
/// names the fix; the exit code of a denial stays (RFC 6749 §4.1.2.1 code kept).
#[tokio::test]
async fn an_error_redirect_to_a_request_without_scope_names_the_fix() {
    // No scope at all, or only `offline_access` (which asks for a refresh token, not access).
    for (scopes, sent) in [("", None), ("offline_access", Some("offline_access"))] {
        let server = TestServer::start(Knobs {
            deny: true,
            ..Default::default()
        })
        .await;
        let grant = Grant::AuthorizationCode(Arc::new(Headless::new(http(), REDIRECT)));
        let mut config = SessionConfig::new(server.mcp_url(), grant);
        config.scopes = Some(ScopeSet::parse(scopes));
        let session = Arc::new(Session::new(config, http(), Arc::new(MemoryStore::new())));
        let err = call(&session, &server).await.unwrap_err();
        assert_eq!(
            server.seen(|c| c.last_authorize.get("scope").cloned()),
            sent.map(str::to_owned)
        );
        let ClientError::RefusedWithoutScope(oauth) = &err else {
            panic!("{err}");
        };
        assert_eq!(oauth.error, ErrorCode::AccessDenied);
        let text = err.to_string();
        assert!(
            text.contains("access_denied") && text.contains("no scope") && text.contains("--scope"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn c30_plain_http_authorization_server_is_refused() {
    let (err, _, _) = refused(Knobs {
        prm_authorization_servers: Some(vec!["http://as.example.com".into()]),
        ..Default::default()
    })
    .await;
    assert!(
        matches!(err, ClientError::Core(CoreError::InsecureUrl { .. })),
        "{err}"
    );
}

#[tokio::test]
async fn an_oversized_token_response_is_refused() {
    let (err, _, _) = refused(Knobs {
        token_padding: 1024 * 1024,
        ..Default::default()
    })
    .await;
    assert!(matches!(err, ClientError::BodyTooLarge { .. }), "{err}");
}

#[test]
fn env_client_id_means_client_credentials_and_our_secret_wins() {
    let front_end = Arc::new(Headless::new(http(), REDIRECT));
    let vars = |k: &str| match k {
        "MCP_CLIENT_ID" => Some("robot".to_owned()),
        "MCP_CLIENT_SECRET" => Some("theirs".to_owned()),
        "MCPAUTH_CLIENT_SECRET" => Some("ours".to_owned()),
        _ => None,
    };
    let config = SessionConfig::from_lookup("https://mcp.example/mcp", front_end.clone(), vars);
    assert!(matches!(config.grant, Grant::ClientCredentials));
    let client = config.client.static_client.unwrap();
    assert_eq!(client.client_secret.unwrap().expose(), "ours");
    let config = SessionConfig::from_lookup("https://mcp.example/mcp", front_end, |_| None);
    assert!(matches!(config.grant, Grant::AuthorizationCode(_)));
    assert!(config.client.static_client.is_none());
}

#[tokio::test]
async fn transient_refresh_failure_keeps_the_stored_credentials() {
    let server = TestServer::start(Knobs {
        expires_in: 30,
        ..Default::default()
    })
    .await;
    let store: Arc<dyn TokenStore> = Arc::new(MemoryStore::new());
    let session = code_session(&server, Arc::clone(&store));
    session.access_token().await.unwrap();
    let before = store.list_tokens().unwrap().remove(0);
    server.set(|k| k.token_status = Some(503));
    let err = session.access_token().await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    let after = store.list_tokens().unwrap().remove(0);
    assert_eq!(after.refresh_token, before.refresh_token);
    // Once the server is back, the same refresh token works and no new login is needed.
    server.set(|k| k.token_status = None);
    session.access_token().await.unwrap();
    assert_eq!(server.seen(|c| (c.refreshes, c.authorizations)), (1, 1));
}

/// A memory store that records the threads its tokens were saved on.
#[derive(Debug, Default)]
struct ThreadRecordingStore {
    inner: MemoryStore,
    saved_on: std::sync::Mutex<Vec<std::thread::ThreadId>>,
}

impl TokenStore for ThreadRecordingStore {
    fn load_tokens(
        &self,
        key: &mcpauth_client::store::StoreKey,
    ) -> Result<Option<mcpauth_client::store::TokenRecord>, ClientError> {
        self.inner.load_tokens(key)
    }
    fn save_tokens(&self, record: &mcpauth_client::store::TokenRecord) -> Result<(), ClientError> {
        self.saved_on
            .lock()
            .unwrap()
            .push(std::thread::current().id());
        self.inner.save_tokens(record)
    }
    fn delete_tokens(&self, key: &mcpauth_client::store::StoreKey) -> Result<(), ClientError> {
        self.inner.delete_tokens(key)
    }
    fn list_tokens(&self) -> Result<Vec<mcpauth_client::store::TokenRecord>, ClientError> {
        self.inner.list_tokens()
    }
    fn load_client(
        &self,
        issuer: &str,
    ) -> Result<Option<mcpauth_client::store::ClientRecord>, ClientError> {
        self.inner.load_client(issuer)
    }
    fn save_client(&self, record: &mcpauth_client::store::ClientRecord) -> Result<(), ClientError> {
        self.inner.save_client(record)
    }
    fn delete_client(&self, issuer: &str) -> Result<(), ClientError> {
        self.inner.delete_client(issuer)
    }
    fn load_flow(
        &self,
        key: &mcpauth_client::store::StoreKey,
    ) -> Result<Option<mcpauth_client::store::FlowRecord>, ClientError> {
        self.inner.load_flow(key)
    }
    fn save_flow(&self, record: &mcpauth_client::store::FlowRecord) -> Result<(), ClientError> {
        self.inner.save_flow(record)
    }
    fn lock(
        &self,
        key: &mcpauth_client::store::StoreKey,
    ) -> Result<Box<dyn mcpauth_client::store::StoreLock>, ClientError> {
        self.inner.lock(key)
    }
}

/// Code review finding 8: saving tokens (a write, fsync and rename for the file store) runs on
/// the blocking pool, never on the thread that drives the async tasks.
#[tokio::test(flavor = "current_thread")]
async fn review8_tokens_are_saved_off_the_async_worker_thread() {
    let server = TestServer::start(Knobs::default()).await;
    server.add_client("machine", Some("s3cret"));
    let config = SessionConfig::client_credentials(
        server.mcp_url(),
        "machine",
        Some(ClientSecret::new("s3cret")),
    );
    let store = Arc::new(ThreadRecordingStore::default());
    let session = Arc::new(Session::new(config, http(), store.clone()));
    assert_eq!(call(&session, &server).await.unwrap(), 200);
    let saved_on = store.saved_on.lock().unwrap().clone();
    assert!(!saved_on.is_empty(), "the tokens were never saved");
    let runtime_thread = std::thread::current().id();
    assert!(
        saved_on.iter().all(|t| *t != runtime_thread),
        "tokens were saved on the async runtime's thread"
    );
}
