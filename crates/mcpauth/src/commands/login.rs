//! `mcpauth login`.

use anyhow::bail;

use crate::cli::{Cli, LoginArgs};
use crate::config::ConfigFile;
use crate::present::escape;
use crate::setup;

/// Logs in to each target (or to every HTTP server of the config file).
pub async fn login(cli: &Cli, args: &LoginArgs, config: Option<&ConfigFile>) -> anyhow::Result<()> {
    let targets: Vec<String> = match (&args.targets[..], config) {
        ([], Some(c)) => c
            .http_servers()
            .into_iter()
            .map(|(name, _, _)| name)
            .collect(),
        ([], None) => bail!("give the MCP server URL to log in to (or --config FILE)"),
        (t, _) => t.to_vec(),
    };
    let mut out = Vec::new();
    for t in &targets {
        let target = setup::resolve(config, t)?;
        let session = setup::session(cli, &args.auth, &target, true, setup::Interaction::Terminal)?;
        session.access_token().await?;
        let record = session
            .current_record()
            .await
            .ok_or_else(|| anyhow::anyhow!("no token was stored"))?;
        eprintln!(
            "Logged in to {} (issuer {}, client {}, scopes {}, expires {}{})",
            escape(&target.url),
            escape(&record.key.issuer),
            // A workload grant is made as no client (SPEC W1).
            if record.key.client_id.is_empty() {
                "-".into()
            } else {
                escape(&record.key.client_id)
            },
            if record.granted_scopes.is_empty() {
                "-".to_owned()
            } else {
                escape(&record.granted_scopes.to_string()).into_owned()
            },
            super::relative(record.expires_at),
            if record.refresh_token.is_some() {
                ", refreshable"
            } else {
                ""
            },
        );
        let mut j = super::record_json(&record);
        j["server"] = target.url.clone().into();
        out.push(j);
    }
    if cli.json {
        println!("{}", serde_json::Value::Array(out));
    }
    Ok(())
}
