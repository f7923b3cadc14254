//! A tiny MCP-style JSON-RPC server behind `mcpauth-resource`.
//!
//! ```text
//! cargo run -p mcpauth-resource --example axum_server -- \
//!     --issuer http://127.0.0.1:8080 --resource http://127.0.0.1:9000/mcp
//! ```
//! (or `MCPAUTH_ISSUER` / `MCPAUTH_RESOURCE`). Start an authorization server for that issuer
//! first (e.g. `mcpauth serve`), issuing tokens for the resource. The server binds the
//! resource's host and port, serves the protected resource metadata at
//! `/.well-known/oauth-protected-resource/mcp`, and needs the scope `mcp` for everything and
//! `files:write` to call the `delete` tool (`files:write` implies `files:read`).

use std::net::SocketAddr;

use axum::Router;
use axum::http::header;
use axum::routing::post;
use mcpauth_resource::{
    Authenticated, BearerAuthLayer, JwtVerifier, OriginGuardLayer, ResourceMetadata, ScopePolicy,
};
use serde_json::{Value, json};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;

fn setting(flag: &str, env: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1).cloned())
        .or_else(|| std::env::var(env).ok())
        .unwrap_or_else(|| default.to_owned())
}

/// Answers `initialize`, `tools/list` and `tools/call` (`whoami`, `echo`, `delete`).
async fn mcp(
    Authenticated(who): Authenticated,
    axum::Json(req): axum::Json<Value>,
) -> axum::Json<Value> {
    let id = req.get("id").cloned().unwrap_or(Value::Null);
    let result = match req["method"].as_str().unwrap_or_default() {
        "initialize" => json!({
            "protocolVersion": "2025-11-25",
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "mcpauth-resource-example", "version": "0.1.0"},
        }),
        "tools/list" => json!({"tools": [
            {"name": "whoami", "description": "who the token speaks for", "inputSchema": {"type": "object"}},
            {"name": "echo", "description": "echoes `text`", "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}}},
            {"name": "delete", "description": "needs files:write", "inputSchema": {"type": "object"}},
        ]}),
        "tools/call" => {
            let text = match req["params"]["name"].as_str() {
                Some("whoami") => format!(
                    "subject {} (client {:?}, scopes {:?}, issuer {})",
                    who.subject,
                    who.client_id,
                    who.scopes.to_string(),
                    who.issuer
                ),
                Some("echo") => req["params"]["arguments"]["text"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
                Some("delete") => "nothing deleted (this is an example)".to_owned(),
                _ => {
                    return axum::Json(json!({"jsonrpc": "2.0", "id": id,
                        "error": {"code": -32602, "message": "unknown tool"}}));
                }
            };
            json!({"content": [{"type": "text", "text": text}]})
        }
        _ => {
            return axum::Json(json!({"jsonrpc": "2.0", "id": id,
                "error": {"code": -32601, "message": "method not found"}}));
        }
    };
    axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": result}))
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
    let bind: SocketAddr = setting(
        "--bind",
        "MCPAUTH_BIND",
        &format!(
            "{}:{}",
            url.host_str()
                .unwrap_or("127.0.0.1")
                .trim_matches(['[', ']']),
            url.port_or_known_default().unwrap_or(80)
        ),
    )
    .replace("localhost", "127.0.0.1")
    .parse()?;

    let prm = ResourceMetadata::new(&resource, [&issuer])?
        .scopes_supported(["mcp", "files:read", "files:write"])
        .resource_name("mcpauth-resource example");
    let verifier = JwtVerifier::builder()
        .issuer(&issuer)
        .audience(&resource)
        .build()?;
    if let Err(e) = verifier.prefetch().await {
        eprintln!("warning: {e} (will retry on the first request)");
    }
    let policy = ScopePolicy::new()
        .require(["mcp"])
        .tool("delete", ["files:write"])
        .implies("files:write", "files:read");
    let app = Router::new()
        .route(url.path(), post(mcp))
        .route_layer(BearerAuthLayer::new(verifier, &prm).scope_policy(policy))
        .route_service(prm.metadata_path(), prm.service())
        .layer(OriginGuardLayer::new(&resource)?)
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
        ]));

    let listener = tokio::net::TcpListener::bind(bind).await?;
    eprintln!(
        "MCP endpoint {resource} (metadata at {})",
        prm.metadata_url()
    );
    eprintln!("tokens from {issuer}; try: curl -i -X POST {resource}");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
