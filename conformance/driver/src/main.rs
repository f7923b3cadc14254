//! `conformance-client`: the program `@modelcontextprotocol/conformance` runs in client mode.
//!
//! Usage: `conformance-client <server-url>`, with `MCP_CONFORMANCE_SCENARIO`, optionally
//! `MCP_CONFORMANCE_CONTEXT` (JSON credentials) and `MCP_CONFORMANCE_PROTOCOL_VERSION` in the
//! environment. It authorizes with `mcpauth-client` as the scenario requires, then lists the
//! tools and calls `test-tool`. Exit 0 on success, 1 on any failure (refusals included).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use mcpauth_client::authed::AuthenticatedClient;
use mcpauth_client::authorize::Headless;
use mcpauth_client::cross_app::CrossAppAccess;
use mcpauth_client::grants::SigningKey;
use mcpauth_client::http::{HttpOptions, OAuthHttp};
use mcpauth_client::mcp::Mcp;
use mcpauth_client::registration::{StaticClient, auth_method};
use mcpauth_client::session::{Grant, Session, SessionConfig};
use mcpauth_client::store::MemoryStore;
use mcpauth_client::workload::{WorkloadIdentity, WorkloadSource};
use mcpauth_core::{Assertion, ClientSecret};
use serde_json::{Value, json};

/// Where the headless front end says the browser would return; nothing needs to listen.
const REDIRECT_URI: &str = "http://localhost:3000/callback";
/// This client's metadata document URL (used only where the server supports such documents).
const CLIENT_METADATA_URL: &str = "https://conformance-test.local/client-metadata.json";
/// The wire used when the suite does not say (0.1.x).
const DEFAULT_VERSION: &str = "2025-11-25";

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "mcpauth_client=debug,info".into()),
        )
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("conformance-client: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn context_str(context: &Value, key: &str) -> Option<String> {
    context.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// Builds the session configuration the scenario calls for: what a user would pass as flags.
fn session_config(
    server_url: &str,
    scenario: &str,
    context: &Value,
    http: &OAuthHttp,
    version: &str,
) -> anyhow::Result<SessionConfig> {
    let headless = Grant::AuthorizationCode(Arc::new(Headless::new(http.clone(), REDIRECT_URI)));
    let client_id = context_str(context, "client_id");
    let secret = context_str(context, "client_secret").map(ClientSecret::new);
    let static_client = |method: Option<&str>| {
        client_id.clone().map(|id| StaticClient {
            client_id: id,
            client_secret: secret.clone(),
            auth_method: method.map(str::to_owned),
            issuer: context_str(context, "issuer"),
        })
    };
    let mut config;
    if let Some(jwt) = context_str(context, "valid_jwt") {
        // Workload identity federation (SEP-1933, SPEC W1): the workload's JWT, and no client.
        let source = WorkloadSource::Value(Assertion::new(jwt));
        config = SessionConfig::new(
            server_url,
            Grant::Workload(Arc::new(WorkloadIdentity::new(source))),
        );
    } else if let Some(id_token) = context_str(context, "idp_id_token") {
        // Enterprise-managed authorization (SEP-990).
        let xaa = CrossAppAccess {
            idp_issuer: context_str(context, "idp_issuer").context("idp_issuer missing")?,
            idp_token_endpoint: context_str(context, "idp_token_endpoint")
                .context("idp_token_endpoint missing")?,
            id_token: Assertion::new(id_token),
            idp_client_id: context_str(context, "idp_client_id")
                .context("idp_client_id missing")?,
            idp_client_secret: None,
        };
        config = SessionConfig::new(server_url, Grant::CrossApp(Arc::new(xaa)));
        config.client.static_client = static_client(None);
    } else if let Some(pem) = context_str(context, "private_key_pem") {
        // Client credentials with private_key_jwt (RFC 7523).
        config = SessionConfig::new(server_url, Grant::ClientCredentials);
        config.signing_key = Some(SigningKey::from_pem(
            &pem,
            context.get("signing_algorithm").and_then(Value::as_str),
            None,
        )?);
        config.client.static_client = static_client(Some(auth_method::PRIVATE_KEY_JWT));
    } else if scenario.contains("client-credentials") {
        // The machine grant, as a user would ask for with MCP_CLIENT_ID / MCP_CLIENT_SECRET.
        config = SessionConfig::new(server_url, Grant::ClientCredentials);
        config.client.static_client = static_client(None);
    } else {
        config = SessionConfig::new(server_url, headless);
        config.client.static_client = static_client(None);
        config.client.metadata_document_url = Some(CLIENT_METADATA_URL.into());
    }
    config.discovery.protocol_version = Some(version.to_owned());
    Ok(config)
}

async fn run() -> anyhow::Result<()> {
    let Some(server_url) = std::env::args().skip(1).last() else {
        bail!("usage: conformance-client <server-url>");
    };
    let scenario = std::env::var("MCP_CONFORMANCE_SCENARIO").unwrap_or_default();
    let context: Value = match std::env::var("MCP_CONFORMANCE_CONTEXT") {
        Ok(c) => serde_json::from_str(&c).context("MCP_CONFORMANCE_CONTEXT is not JSON")?,
        Err(_) => json!({}),
    };
    let version = std::env::var("MCP_CONFORMANCE_PROTOCOL_VERSION")
        .unwrap_or_else(|_| DEFAULT_VERSION.into());
    tracing::info!(%scenario, %version, %server_url, "starting");

    let http = OAuthHttp::new(HttpOptions {
        timeout: Duration::from_secs(10),
        ..Default::default()
    })?;
    let config = session_config(&server_url, &scenario, &context, &http, &version)?;
    let session = Arc::new(Session::new(config, http, Arc::new(MemoryStore::new())));
    let mcp_http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()?;
    let mcp = Mcp::new(
        AuthenticatedClient::new(Arc::clone(&session), mcp_http),
        server_url,
        version,
    );
    let outcome = async {
        mcp.initialize().await?;
        let tools = mcp.request("tools/list", json!({})).await?;
        tracing::info!(tools = %tools, "tools/list");
        let called = mcp
            .request("tools/call", json!({"name": "test-tool", "arguments": {}}))
            .await?;
        tracing::info!(result = %called, "tools/call test-tool");
        anyhow::Ok(())
    }
    .await;
    if outcome.is_err() {
        eprintln!("discovery:\n{}", session.discovery_report().await);
    }
    outcome
}
