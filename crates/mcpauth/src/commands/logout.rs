//! `mcpauth logout`: revoke (RFC 7009) and delete.

use crate::cli::{Cli, LogoutArgs};
use crate::config::ConfigFile;
use crate::present::escape;
use crate::setup::{self, Target};

/// Logs out of one server or of all.
pub async fn logout(
    cli: &Cli,
    args: &LogoutArgs,
    config: Option<&ConfigFile>,
) -> anyhow::Result<()> {
    let targets: Vec<Target> = if args.all {
        let store = setup::store(cli, None)?;
        store
            .list_tokens()?
            .into_iter()
            .map(|r| Target {
                url: r.key.resource,
                entry: None,
            })
            .collect()
    } else {
        let t = args.target.as_deref().unwrap_or_default();
        vec![setup::resolve(config, t)?]
    };
    let mut out = Vec::new();
    for target in targets {
        let session = setup::session(
            cli,
            &args.auth,
            &target,
            false,
            setup::Interaction::Terminal,
        )?;
        match session.logout().await? {
            None => eprintln!("No stored login for {}.", escape(&target.url)),
            Some(report) => {
                let revoked = if report.revoked.is_empty() {
                    "nothing revoked".to_owned()
                } else {
                    format!("revoked the {}", report.revoked.join(" and the "))
                };
                match &report.revocation_error {
                    None => eprintln!(
                        "Logged out of {}: {revoked}, deleted the stored tokens.",
                        escape(&target.url)
                    ),
                    Some(e) => eprintln!(
                        "Logged out of {}: {revoked} ({}); deleted the stored tokens.",
                        escape(&target.url),
                        escape(e)
                    ),
                }
                out.push(serde_json::to_value(&report)?);
            }
        }
    }
    if cli.json {
        println!("{}", serde_json::Value::Array(out));
    }
    Ok(())
}
