//! `mcpauth token`: a fresh access token on stdout, for scripts.

use crate::cli::{Cli, TokenArgs};
use crate::config::ConfigFile;
use crate::setup;

/// Prints a fresh token; exit code 2 (via `LoginRequired`) when a login is needed.
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
    if cli.json {
        let expires_at = session.current_record().await.and_then(|r| r.expires_at);
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
