//! `mcpauth discover`: discovery only, every URL tried and why.

use mcpauth_client::discovery::{self, DiscoveryOptions, DiscoveryReport};
use serde_json::json;

use crate::cli::{AuthArgs, Cli, DiscoverArgs};
use crate::config::ConfigFile;
use crate::present::escape;
use crate::setup;

/// Runs discovery and prints the report, then the result.
pub async fn discover(
    cli: &Cli,
    args: &DiscoverArgs,
    config: Option<&ConfigFile>,
) -> anyhow::Result<()> {
    let target = setup::resolve(config, &args.target)?;
    let http = setup::http(&AuthArgs {
        allow_http: args.allow_http,
        ..Default::default()
    })?;
    let mut report = DiscoveryReport::default();
    let challenge = discovery::probe(&http, &target.url, &mut report).await?;
    let result = discovery::discover(
        &http,
        &target.url,
        challenge.as_ref(),
        &DiscoveryOptions::default(),
        &mut report,
    )
    .await;
    if cli.json {
        let (ok, value) = match &result {
            Ok(d) => (
                true,
                json!({
                    "resource": d.resource,
                    "issuer": d.issuer(),
                    "legacy_default_endpoints": d.legacy_default_endpoints,
                    "pkce_s256": d.authorization_server.supports_s256(),
                    "protected_resource_metadata": d.protected_resource,
                    "authorization_server_metadata": d.authorization_server,
                }),
            ),
            Err(e) => (false, json!({"error": e.to_string()})),
        };
        println!(
            "{}",
            json!({"ok": ok, "attempts": report.attempts, "result": value})
        );
    } else {
        // Line by line: a server's text cannot forge a line of the report.
        for attempt in &report.attempts {
            eprintln!("{}", escape(&attempt.to_string()));
        }
        if let Ok(d) = &result {
            let m = &d.authorization_server;
            println!("resource:               {}", escape(&d.resource));
            println!("authorization server:   {}", escape(d.issuer()));
            for (name, v) in [
                ("authorization_endpoint", &m.authorization_endpoint),
                ("token_endpoint", &m.token_endpoint),
                ("registration_endpoint", &m.registration_endpoint),
                ("revocation_endpoint", &m.revocation_endpoint),
            ] {
                println!(
                    "{:<23} {}",
                    format!("{name}:"),
                    escape(v.as_deref().unwrap_or("-"))
                );
            }
            println!(
                "PKCE S256:              {}",
                if m.supports_s256() {
                    "yes"
                } else {
                    "NO (MCP SPEC C28: login will be refused)"
                }
            );
            println!(
                "iss in responses:       {}",
                if m.iss_parameter_supported() {
                    "yes"
                } else {
                    "not advertised"
                }
            );
            println!(
                "client ID documents:    {}",
                if m.supports_client_id_metadata_documents() {
                    "yes"
                } else {
                    "no"
                }
            );
            if let Some(s) = d.resource_scopes() {
                println!("scopes (PRM):           {}", escape(&s.join(" ")));
            }
        }
    }
    result.map(drop).map_err(Into::into)
}
