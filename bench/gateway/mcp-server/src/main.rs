//! A trivial MCP server (answers to `initialize`, `tools/list`, `tools/call echo`) for
//! bench/gateway.sh, the same handler on every transport:
//!
//!   mcpauth-bench-mcp-server --bind 127.0.0.1:PORT
//!       Streamable HTTP with JSON answers and no auth at all (the baseline, and the trivial
//!       upstream behind `mcpauth gateway --upstream`)
//!   mcpauth-bench-mcp-server --bind 127.0.0.1:PORT --issuer ISSUER --resource URL
//!       the same behind mcpauth-resource's BearerAuthLayer (JwtVerifier against the issuer's
//!       JWKS, audience = URL) and OriginGuardLayer, as examples/axum_server.rs does
//!   mcpauth-bench-mcp-server --stdio
//!       the stdio transport (MCP basic/transports §stdio: newline-delimited JSON-RPC on
//!       stdin/stdout), for `mcpauth gateway -- COMMAND` and the direct stdio client

mod handler;
mod stdio;

use axum::Router;
use axum::routing::post;
use mcpauth_resource::{BearerAuthLayer, JwtVerifier, OriginGuardLayer, ResourceMetadata};
use serde_json::Value;

fn arg(flag: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1).cloned())
}

async fn mcp(axum::Json(req): axum::Json<Value>) -> axum::Json<Value> {
    axum::Json(handler::answer(&req))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::args().any(|a| a == "--stdio") {
        return Ok(stdio::serve()?);
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve_http())
}

async fn serve_http() -> Result<(), Box<dyn std::error::Error>> {
    let bind = arg("--bind").unwrap_or_else(|| "127.0.0.1:9000".into());
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    let local = listener.local_addr()?;
    let mut app = Router::new().route("/mcp", post(mcp));
    match (arg("--issuer"), arg("--resource")) {
        (Some(issuer), Some(resource)) => {
            let prm = ResourceMetadata::new(&resource, [&issuer])?;
            let verifier = JwtVerifier::builder()
                .issuer(&issuer)
                .audience(&resource)
                .build()?;
            verifier.prefetch().await?;
            app = app
                .route_layer(BearerAuthLayer::new(verifier, &prm))
                .route_service(prm.metadata_path(), prm.service())
                .layer(OriginGuardLayer::new(&resource)?);
            eprintln!(
                "listening on http://{local}/mcp with the mcpauth-resource layers (issuer {issuer})"
            );
        }
        _ => eprintln!("listening on http://{local}/mcp without auth"),
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
