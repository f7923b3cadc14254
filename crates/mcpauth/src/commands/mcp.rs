//! `mcpauth tools` and `mcpauth call`: one-shot authenticated MCP requests.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use mcpauth_client::authed::AuthenticatedClient;
use mcpauth_client::mcp::Mcp;
use serde_json::{Value, json};

use crate::cli::{AuthArgs, CallArgs, Cli, ToolsArgs};
use crate::config::{ConfigFile, parse_headers};
use crate::setup::{self, Target};

/// The protocol revision used for one-shot requests.
const PROTOCOL_VERSION: &str = "2025-11-25";

async fn connect(cli: &Cli, auth: &AuthArgs, target: &Target) -> anyhow::Result<Mcp> {
    let session = setup::session(cli, auth, target, true, setup::Interaction::Terminal)?;
    let lines: Vec<String> = target
        .entry
        .iter()
        .flat_map(|e| e.headers.iter().map(|(k, v)| format!("{k}: {v}")))
        .collect();
    let headers = parse_headers(lines.iter().map(String::as_str))
        .context("the headers of the config entry")?;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .default_headers(headers)
        .build()?;
    let mcp = Mcp::new(
        AuthenticatedClient::new(Arc::clone(&session), http),
        target.url.clone(),
        PROTOCOL_VERSION.into(),
    );
    mcp.initialize().await?;
    Ok(mcp)
}

fn print(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Lists the tools.
pub async fn tools(cli: &Cli, args: &ToolsArgs, config: Option<&ConfigFile>) -> anyhow::Result<()> {
    let target = setup::resolve(config, &args.target)?;
    let mcp = connect(cli, &args.auth, &target).await?;
    print(&mcp.request("tools/list", json!({})).await?)
}

/// Calls a tool.
pub async fn call(cli: &Cli, args: &CallArgs, config: Option<&ConfigFile>) -> anyhow::Result<()> {
    let arguments: Value = serde_json::from_str(&args.arguments)
        .with_context(|| format!("the tool arguments are not JSON: {}", args.arguments))?;
    anyhow::ensure!(
        arguments.is_object(),
        "the tool arguments must be a JSON object"
    );
    let target = setup::resolve(config, &args.target)?;
    let mcp = connect(cli, &args.auth, &target).await?;
    print(
        &mcp.request(
            "tools/call",
            json!({"name": args.tool, "arguments": arguments}),
        )
        .await?,
    )
}
