//! A trivial MCP endpoint (JSON answers to `initialize`, `tools/list`, `tools/call echo`) for
//! bench/gateway.sh:
//!
//!   mcpauth-bench-mcp-server --bind 127.0.0.1:PORT
//!       no auth at all (the baseline, and the trivial upstream behind `mcpauth gateway`)
//!   mcpauth-bench-mcp-server --bind 127.0.0.1:PORT --issuer ISSUER --resource URL
//!       the same handler behind mcpauth-resource's BearerAuthLayer (JwtVerifier against the
//!       issuer's JWKS, audience = URL) and OriginGuardLayer, as examples/axum_server.rs does

use axum::Router;
use axum::routing::post;
use mcpauth_resource::{BearerAuthLayer, JwtVerifier, OriginGuardLayer, ResourceMetadata};
use serde_json::{Value, json};

fn arg(flag: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1).cloned())
}

async fn mcp(axum::Json(req): axum::Json<Value>) -> axum::Json<Value> {
    let id = req.get("id").cloned().unwrap_or(Value::Null);
    let result = match req["method"].as_str().unwrap_or_default() {
        "initialize" => json!({
            "protocolVersion": "2025-11-25",
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "mcpauth-bench", "version": "0.0.0"},
        }),
        "tools/list" => json!({"tools": [
            {"name": "echo", "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}}},
        ]}),
        "tools/call" => json!({"content": [{"type": "text",
            "text": req["params"]["arguments"]["text"].as_str().unwrap_or_default()}]}),
        _ => {
            return axum::Json(json!({"jsonrpc": "2.0", "id": id,
                "error": {"code": -32601, "message": "method not found"}}));
        }
    };
    axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": result}))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
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
