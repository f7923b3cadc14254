//! `mcpauth token`: a fresh access token on stdout, for scripts.

use anyhow::Context;
use mcpauth_client::ClientError;
use mcpauth_core::token::check_b64token;

use crate::cli::{Cli, TokenArgs};
use crate::config::ConfigFile;
use crate::setup;

/// Prints a fresh token; exit code 2 (via `LoginRequired`) when a login is needed, 3 when the
/// token is not a plain RFC 6750 §2.1 b64token (security finding 9: it goes to terminals and
/// scripts as is).
pub async fn token(cli: &Cli, args: &TokenArgs, config: Option<&ConfigFile>) -> anyhow::Result<()> {
    let target = setup::resolve(config, &args.target)?;
    let session = setup::session(
        cli,
        &args.auth,
        &target,
        args.login,
        setup::Interaction::Terminal,
    )?;
    let token = match session.cached_token().await? {
        Some(t) => t,
        None => session.access_token().await?,
    };
    let record = session.current_record().await;
    check_b64token(token.expose())
        .map_err(ClientError::from)
        .with_context(|| {
            let issuer = record
                .as_ref()
                .map(|r| format!(" issued by {}", r.key.issuer))
                .unwrap_or_default();
            format!(
                "refusing to print the access token for {}{issuer}",
                target.url
            )
        })?;
    if cli.json {
        let expires_at = record.and_then(|r| r.expires_at);
        println!(
            "{}",
            serde_json::json!({"access_token": token.expose(), "token_type": "Bearer", "expires_at": expires_at})
        );
    } else if args.header {
        println!("Authorization: Bearer {}", token.expose());
    } else {
        println!("{}", token.expose());
    }
    Ok(())
}
