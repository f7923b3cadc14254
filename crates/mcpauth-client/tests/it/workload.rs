//! Workload identity federation on the client (SEP-1933, SPEC W1): the RFC 7523 JWT bearer grant
//! against the test authorization server over HTTP on 127.0.0.1.

use std::path::Path;
use std::sync::Arc;

use mcpauth_client::ClientError;
use mcpauth_client::session::{Grant, Session, SessionConfig};
use mcpauth_client::store::{MemoryStore, TokenStore};
use mcpauth_client::workload::{WorkloadIdentity, WorkloadSource};
use mcpauth_core::{ErrorCode, ScopeSet};
use mcpauth_testkit::{Knobs, TestServer};

use super::session::{call, http};

/// Two workload JWTs (compact serialization; the test server compares them as strings).
const JWT_1: &str = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ3b3JrbG9hZC0xIn0.c2lnbmF0dXJlLTE";
const JWT_2: &str = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ3b3JrbG9hZC0yIn0.c2lnbmF0dXJlLTI";

fn trusting(tokens: &[&str]) -> Knobs {
    Knobs {
        workload_tokens: tokens.iter().map(|t| (*t).to_owned()).collect(),
        ..Default::default()
    }
}

fn workload_session(
    server: &TestServer,
    source: WorkloadSource,
    store: Arc<dyn TokenStore>,
) -> Arc<Session> {
    let grant = Grant::Workload(Arc::new(WorkloadIdentity::new(source)));
    Arc::new(Session::new(
        SessionConfig::new(server.mcp_url(), grant),
        http(),
        store,
    ))
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[tokio::test]
async fn w1_grant_sends_the_token_as_given_with_resource_and_scope_and_no_client() {
    let server = TestServer::start(trusting(&[JWT_1])).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    // A projected token file ends with a newline; the JWT itself is sent unchanged.
    write(&file, &format!("{JWT_1}\n"));
    let store = Arc::new(MemoryStore::new());
    let grant = Grant::Workload(Arc::new(WorkloadIdentity::new(WorkloadSource::File(file))));
    let mut config = SessionConfig::new(server.mcp_url(), grant);
    config.scopes = Some(ScopeSet::parse("mcp:read"));
    let session = Arc::new(Session::new(config, http(), store.clone()));
    assert_eq!(call(&session, &server).await.unwrap(), 200);
    server.seen(|c| {
        let form = &c.last_token_form;
        assert_eq!(
            form["grant_type"],
            "urn:ietf:params:oauth:grant-type:jwt-bearer"
        );
        assert_eq!(form["assertion"], JWT_1);
        // RFC 8707 / MCP SPEC C21: the PRM resource, exactly.
        assert_eq!(form["resource"], server.mcp_url());
        assert_eq!(form["scope"], "mcp:read");
        // SPEC W1: no registration, no client id, no secret, no client authentication.
        for absent in ["client_id", "client_secret", "client_assertion"] {
            assert!(!form.contains_key(absent), "{absent} was sent");
        }
        assert_eq!(c.last_token_auth, None);
        assert_eq!((c.registrations, c.authorizations), (0, 0));
        assert_eq!(c.workload_assertions, [JWT_1]);
    });
    let records = store.list_tokens().unwrap();
    assert_eq!(records.len(), 1);
    assert!(records[0].refresh_token.is_none());
    assert_eq!(records[0].key.resource, server.mcp_url());
}

#[tokio::test]
async fn w1_a_refused_token_is_one_request_a_clear_error_and_nothing_stored() {
    let server = TestServer::start(Knobs {
        workload_refusal: "issuer \u{1b}[31mnot trusted\u{7}\nfor this tenant".into(),
        ..trusting(&[JWT_2])
    })
    .await;
    let store = Arc::new(MemoryStore::new());
    let session = workload_session(
        &server,
        WorkloadSource::Value(mcpauth_core::Assertion::new(JWT_1)),
        store.clone(),
    );
    let err = call(&session, &server).await.unwrap_err();
    let ClientError::AssertionRefused { error, status, .. } = &err else {
        panic!("expected AssertionRefused, got {err:?}");
    };
    assert_eq!(
        (error.error.clone(), *status),
        (ErrorCode::InvalidGrant, 400)
    );
    let shown = err.to_string();
    assert!(shown.contains("invalid_grant"), "{shown}");
    assert!(
        shown.contains("not trusted") && shown.contains("for this tenant"),
        "{shown}"
    );
    // Escaped for the terminal: no escape sequence, bell or line break from the server.
    assert!(!shown.chars().any(char::is_control), "{shown:?}");
    assert!(!shown.contains(JWT_1) && !format!("{err:?}").contains(JWT_1));
    server.seen(|c| {
        // Never retried, never another grant.
        assert_eq!(c.workload_assertions, [JWT_1]);
        assert_eq!(
            (c.client_credentials, c.registrations, c.authorizations),
            (0, 0, 0)
        );
    });
    assert!(store.list_tokens().unwrap().is_empty());
    assert!(session.current_record().await.is_none());
}

#[tokio::test]
async fn w1_the_file_is_read_again_for_every_new_token() {
    // Tokens expire within the refresh margin, so every use needs a new one; there is no refresh
    // token, so each is a new grant with the file as it is then.
    let server = TestServer::start(Knobs {
        expires_in: 30,
        ..trusting(&[JWT_1, JWT_2])
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    write(&file, JWT_1);
    let session = workload_session(
        &server,
        WorkloadSource::File(file.clone()),
        Arc::new(MemoryStore::new()),
    );
    let first = session.access_token().await.unwrap();
    // The platform rotates the projected token in place.
    write(&file, JWT_2);
    let second = session.access_token().await.unwrap();
    assert_ne!(first, second);
    server.seen(|c| {
        assert_eq!(c.workload_assertions, [JWT_1, JWT_2]);
        assert_eq!(c.refreshes, 0);
    });
}

#[tokio::test]
async fn w1_a_command_gives_the_token_and_a_failing_one_is_a_clear_error() {
    let server = TestServer::start(trusting(&[JWT_1])).await;
    let ok = workload_session(
        &server,
        WorkloadSource::Command(format!("printf '  {JWT_1}\\n\\n'")),
        Arc::new(MemoryStore::new()),
    );
    assert_eq!(call(&ok, &server).await.unwrap(), 200);
    server.seen(|c| assert_eq!(c.workload_assertions, [JWT_1]));

    // It prints a token before failing: neither it nor its output is shown or sent.
    let dir = tempfile::tempdir().unwrap();
    let printed = dir.path().join("printed");
    write(&printed, JWT_2);
    let failing = workload_session(
        &server,
        WorkloadSource::Command(format!("cat '{}'; exit 3", printed.display())),
        Arc::new(MemoryStore::new()),
    );
    let err = failing.access_token().await.unwrap_err();
    assert!(matches!(err, ClientError::WorkloadToken { .. }), "{err:?}");
    let shown = err.to_string();
    assert!(shown.contains("exit status: 3"), "{shown}");
    assert!(shown.contains("workload token command"), "{shown}");
    assert!(!shown.contains(JWT_2) && !format!("{err:?}").contains(JWT_2));
    // Nothing was sent for the failed command.
    server.seen(|c| assert_eq!(c.workload_assertions, [JWT_1]));
}

#[tokio::test]
async fn w1_an_empty_missing_or_non_jwt_file_is_a_clear_error_and_nothing_is_sent() {
    let server = TestServer::start(trusting(&[JWT_1])).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    for (content, expected) in [
        (Some("\n"), "is empty"),
        (Some("not a token at all"), "does not hold a JWT"),
        (None, "cannot be read"),
    ] {
        match content {
            Some(text) => write(&file, text),
            None => std::fs::remove_file(&file).unwrap(),
        }
        let session = workload_session(
            &server,
            WorkloadSource::File(file.clone()),
            Arc::new(MemoryStore::new()),
        );
        let err = session.access_token().await.unwrap_err();
        let shown = err.to_string();
        assert!(matches!(err, ClientError::WorkloadToken { .. }), "{err:?}");
        assert!(shown.contains(expected), "{shown}");
        assert!(shown.contains(&file.display().to_string()), "{shown}");
        assert!(!shown.contains("not a token at all"), "{shown}");
    }
    server.seen(|c| assert!(c.workload_assertions.is_empty()));
}

#[tokio::test]
async fn w1_an_authorization_server_without_the_grant_is_refused_naming_what_it_supports() {
    let server = TestServer::start(Knobs {
        grant_types: Some(vec!["authorization_code".into(), "refresh_token".into()]),
        ..trusting(&[JWT_1])
    })
    .await;
    let store = Arc::new(MemoryStore::new());
    let session = workload_session(
        &server,
        WorkloadSource::Value(mcpauth_core::Assertion::new(JWT_1)),
        store.clone(),
    );
    let err = call(&session, &server).await.unwrap_err();
    assert!(
        matches!(err, ClientError::GrantUnsupported { .. }),
        "{err:?}"
    );
    let shown = err.to_string();
    assert!(
        shown.contains("authorization_code, refresh_token")
            && shown.contains("urn:ietf:params:oauth:grant-type:jwt-bearer"),
        "{shown}"
    );
    server.seen(|c| {
        assert!(c.workload_assertions.is_empty());
        assert_eq!((c.registrations, c.authorizations), (0, 0));
    });
    assert!(store.list_tokens().unwrap().is_empty());
}

#[tokio::test]
async fn w1_d1_the_grant_carries_a_dpop_proof_when_the_server_takes_dpop() {
    let server = TestServer::start(Knobs {
        dpop: true,
        ..trusting(&[JWT_1])
    })
    .await;
    let store = Arc::new(MemoryStore::new());
    let session = workload_session(
        &server,
        WorkloadSource::Value(mcpauth_core::Assertion::new(JWT_1)),
        store.clone(),
    );
    session.access_token().await.unwrap();
    let proof = server
        .seen(|c| c.last_token_dpop.clone())
        .expect("a DPoP proof");
    let header = proof.split('.').next().unwrap();
    let header: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, header).unwrap(),
    )
    .unwrap();
    assert_eq!(header["typ"], "dpop+jwt");
    // SPEC D3: the key is kept with the token it is bound to.
    assert!(store.list_tokens().unwrap()[0].dpop_key.is_some());
}

#[tokio::test]
async fn w1_the_token_is_not_in_debug_output() {
    let server = TestServer::start(trusting(&[JWT_1])).await;
    let session = workload_session(
        &server,
        WorkloadSource::Value(mcpauth_core::Assertion::new(JWT_1)),
        Arc::new(MemoryStore::new()),
    );
    let token = session.access_token().await.unwrap();
    for shown in [
        format!("{session:?}"),
        format!("{:?}", session.config()),
        format!("{:?}", session.current_record().await),
        format!("{token:?}"),
    ] {
        assert!(!shown.contains(JWT_1), "{shown}");
        assert!(!shown.contains("c2lnbmF0dXJlLTE"), "{shown}");
    }
}
