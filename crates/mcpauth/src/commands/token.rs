//! `mcpauth token`: a fresh access token on stdout, for scripts.

use anyhow::Context;
use mcpauth_client::ClientError;
use mcpauth_client::dpop;
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
    let bound = record
        .as_ref()
        .is_some_and(|r| r.token_type.eq_ignore_ascii_case(dpop::TOKEN_TYPE));
    if cli.json {
        let expires_at = record.as_ref().and_then(|r| r.expires_at);
        let token_type = record.as_ref().map_or("Bearer", |r| r.token_type.as_str());
        println!(
            "{}",
            serde_json::json!({"access_token": token.expose(), "token_type": token_type, "expires_at": expires_at})
        );
    } else if let (true, Some(method), Some(url)) = (args.header, &args.method, &args.url) {
        // RFC 9449 §7.1: a bound token goes with a proof for this one request (SPEC D1); §9:
        // with the nonce the resource server handed out, when one was given.
        if let Some(nonce) = &args.nonce
            && !session.remember_nonce(url, nonce)
        {
            anyhow::bail!("--url {url} is not an http(s) URL with a host: no nonce can go with it");
        }
        for (name, value) in session.credential_headers(&token, method, url).await? {
            println!("{name}: {value}");
        }
    } else if args.header && bound {
        return Err(DpopNeedsRequest.into());
    } else if args.header {
        println!("Authorization: Bearer {}", token.expose());
    } else {
        println!("{}", token.expose());
    }
    Ok(())
}

/// `--header` alone for a DPoP-bound token: no single line is a complete credential, since every
/// request needs its own proof (RFC 9449 §4.2). Exit code 64 (usage).
#[derive(Debug)]
pub struct DpopNeedsRequest;

impl std::fmt::Display for DpopNeedsRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "the token is DPoP-bound (RFC 9449): every request needs its own proof, so --header \
             alone cannot print a complete credential. Add --method M --url U to print the \
             Authorization and DPoP lines for that request, or log in with --no-dpop for a \
             Bearer token",
        )
    }
}

impl std::error::Error for DpopNeedsRequest {}
