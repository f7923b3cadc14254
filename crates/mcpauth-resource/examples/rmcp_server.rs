//! The official MCP Rust SDK's Streamable HTTP server (`rmcp::StreamableHttpService`) behind
//! `mcpauth-resource`.
//!
//! ```text
//! cargo run -p mcpauth-resource --example rmcp_server -- \
//!     --issuer http://127.0.0.1:8080 --resource http://127.0.0.1:9000/mcp
//! ```
//! (or `MCPAUTH_ISSUER` / `MCPAUTH_RESOURCE`). The `whoami` tool reads the verified
//! [`Principal`] from the HTTP request parts rmcp hands to handlers; bind anything
//! session-like to `Principal::key()` (MCP SPEC S12).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::header;
use mcpauth_resource::{
    BearerAuthLayer, JwtVerifier, OriginGuardLayer, Principal, ResourceMetadata, ScopePolicy,
};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;

fn setting(flag: &str, env: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1).cloned())
        .or_else(|| std::env::var(env).ok())
        .unwrap_or_else(|| default.to_owned())
}

/// A server with one tool, `whoami`.
#[derive(Clone)]
struct Demo;

impl ServerHandler for Demo {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let schema = serde_json::json!({"type": "object"});
        let tool = Tool::new(
            "whoami",
            "Who the access token speaks for",
            Arc::new(schema.as_object().cloned().unwrap_or_default()),
        );
        Ok(ListToolsResult::with_all_items(vec![tool]))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if request.name != "whoami" {
            return Err(ErrorData::invalid_params("unknown tool", None));
        }
        let principal = context
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<Arc<Principal>>())
            .ok_or_else(|| ErrorData::internal_error("no principal: is the layer on?", None))?;
        let text = format!(
            "subject {} (client {:?}, scopes {:?}, issuer {})",
            principal.subject,
            principal.client_id,
            principal.scopes.to_string(),
            principal.issuer
        );
        Ok(CallToolResult::success(vec![ContentBlock::text(text)]).into())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let issuer = setting("--issuer", "MCPAUTH_ISSUER", "http://127.0.0.1:8080");
    let resource = setting(
        "--resource",
        "MCPAUTH_RESOURCE",
        "http://127.0.0.1:9000/mcp",
    );
    let url = url::Url::parse(&resource)?;
    let bind: SocketAddr = format!(
        "{}:{}",
        url.host_str()
            .unwrap_or("127.0.0.1")
            .replace("localhost", "127.0.0.1"),
        url.port_or_known_default().unwrap_or(80)
    )
    .parse()?;

    let prm = ResourceMetadata::new(&resource, [&issuer])?.scopes_supported(["mcp"]);
    let verifier = JwtVerifier::builder()
        .issuer(&issuer)
        .audience(&resource)
        .build()?;
    let mcp = StreamableHttpService::new(
        || Ok(Demo),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    let app = Router::new()
        .route_service(url.path(), mcp)
        .route_layer(
            BearerAuthLayer::new(verifier, &prm).scope_policy(ScopePolicy::new().require(["mcp"])),
        )
        .route_service(prm.metadata_path(), prm.service())
        .layer(OriginGuardLayer::new(&resource)?)
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
        ]));

    let listener = tokio::net::TcpListener::bind(bind).await?;
    eprintln!("rmcp Streamable HTTP at {resource}, tokens from {issuer}");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
