//! `mcpauth connect`: stdio <-> Streamable HTTP for any local MCP client. Only JSON-RPC goes to
//! stdout; logs, prompts and URLs go to stderr.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use mcpauth_client::authed::AuthenticatedClient;
use serde_json::json;

use crate::cli::{Cli, ConnectArgs};
use crate::config::{ConfigFile, parse_headers};
use crate::relay::{Relay, Sender};
use crate::setup::{self, Interaction};

/// Runs the proxy until the local client closes stdin.
pub async fn connect(
    cli: &Cli,
    args: &ConnectArgs,
    config: Option<&ConfigFile>,
) -> anyhow::Result<()> {
    if let Some(name) = &args.print_config {
        let url = args
            .target
            .as_deref()
            .context("--print-config NAME needs the server URL too")?;
        let exe = std::env::current_exe()?;
        let entry = json!({"mcpServers": {name: {"command": exe, "args": ["connect", url]}}});
        println!("{}", serde_json::to_string_pretty(&entry)?);
        return Ok(());
    }
    let target = setup::resolve(config, args.target.as_deref().unwrap_or_default())?;
    let mut lines = args.headers.clone();
    if let Some(file) = &args.header_file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the header file {}", file.display()))?;
        lines.extend(
            text.lines()
                .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
                .map(str::to_owned),
        );
    }
    if let Some(entry) = &target.entry {
        lines.extend(entry.headers.iter().map(|(k, v)| format!("{k}: {v}")));
    }
    let headers = parse_headers(lines.iter().map(String::as_str))?;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .build()?;
    let sender = if headers.contains_key(reqwest::header::AUTHORIZATION) {
        tracing::info!("an Authorization header was given: it is sent as is, without OAuth");
        Sender::Plain(http)
    } else {
        let interaction = if args.authorize_headless {
            Interaction::Headless
        } else {
            Interaction::BrowserOnly
        };
        let session = setup::session(cli, &args.auth, &target, true, interaction)?;
        Sender::OAuth(AuthenticatedClient::new(Arc::clone(&session), http))
    };
    tracing::info!(url = %target.url, "relaying stdio");
    Relay::new(
        sender,
        target.url.clone(),
        headers,
        args.ignore_tools.clone(),
        args.transport,
        args.protocol,
        args.reinit,
    )
    .run(
        tokio::io::BufReader::new(tokio::io::stdin()),
        tokio::io::stdout(),
    )
    .await
}
