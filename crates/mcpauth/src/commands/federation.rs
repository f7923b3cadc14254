//! The identity-provider flags of `mcpauth serve` and of `mcpauth gateway` with its embedded
//! authorization server (SPEC F1-F8): users sign in through an upstream OpenID Connect provider.

use std::path::PathBuf;

use anyhow::Context;
use mcpauth_authserver::Config;
use mcpauth_authserver::federation::{ClaimRule, IdentityProvider, callback_uri};
use mcpauth_core::ClientSecret;
use serde::Deserialize;

use crate::cli::IdpArgs;
use crate::setup::read_secret;

/// The environment variable that may hold the provider's client secret.
const SECRET_ENV: &str = "MCPAUTH_IDP_CLIENT_SECRET";

/// A URL-safe provider name from the issuer's host, e.g. `accounts-google-com`.
fn name_from(issuer: &str) -> String {
    let host = url::Url::parse(issuer)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    let mut name: String = host
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(32)
        .collect();
    if name.is_empty() {
        name = "idp".into();
    }
    name
}

/// Adds the provider the flags describe (if any) to `config` and applies `--no-password-login`.
/// The client secret comes from `--idp-client-secret-file` or `MCPAUTH_IDP_CLIENT_SECRET`,
/// never from the command line.
pub fn apply(args: &IdpArgs, config: &mut Config) -> anyhow::Result<()> {
    if args.no_password_login {
        config.password_login = false;
    }
    let Some(issuer) = &args.idp_issuer else {
        return Ok(());
    };
    let client_id = args
        .idp_client_id
        .clone()
        .context("--idp-issuer needs --idp-client-id")?;
    let secret = match &args.idp_client_secret_file {
        Some(path) => read_secret(path)?,
        None => std::env::var(SECRET_ENV)
            .ok()
            .filter(|s| !s.is_empty())
            .map(ClientSecret::new)
            .with_context(|| {
                format!(
                    "--idp-issuer needs the client secret in --idp-client-secret-file FILE or {SECRET_ENV}"
                )
            })?,
    };
    let name = args.idp_name.clone().unwrap_or_else(|| name_from(issuer));
    let mut p = IdentityProvider::new(name, issuer.clone(), client_id, secret);
    p.display_name = url::Url::parse(issuer)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| p.name.clone());
    let allow = Allow {
        any: args.idp_allow_any,
        domains: &args.idp_allow_domains,
        emails: &args.idp_allow_emails,
        claims: &args.idp_allow_claims,
    };
    config
        .identity_providers
        .push(complete(p, &args.idp_scopes, allow)?);
    Ok(())
}

/// Who may sign in through a provider, as the flags or the settings file say it.
struct Allow<'a> {
    any: bool,
    domains: &'a [String],
    emails: &'a [String],
    claims: &'a [String],
}

/// `p` with its scopes (when given) and its allow-list.
fn complete(
    mut p: IdentityProvider,
    scopes: &[String],
    allow: Allow<'_>,
) -> anyhow::Result<IdentityProvider> {
    if !scopes.is_empty() {
        p.scopes = scopes.to_vec();
    }
    p.allow.any = allow.any;
    p.allow.domains = allow.domains.to_vec();
    p.allow.emails = allow.emails.to_vec();
    p.allow.claims = allow
        .claims
        .iter()
        .map(|c| ClaimRule::parse(c))
        .collect::<Result<_, _>>()?;
    Ok(p)
}

/// An identity provider in the settings file (`[[identity_providers]]`); the client secret is
/// read from `client_secret_file`, never written in the settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdpSettings {
    name: String,
    display_name: Option<String>,
    issuer: String,
    client_id: String,
    client_secret_file: PathBuf,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    allow_domains: Vec<String>,
    #[serde(default)]
    allow_emails: Vec<String>,
    #[serde(default)]
    allow_claims: Vec<String>,
    #[serde(default)]
    allow_any: bool,
}

/// Adds the settings file's providers to `config`; `password_login = false` there turns
/// password sign-in off.
pub fn apply_settings(
    providers: &[IdpSettings],
    password_login: Option<bool>,
    config: &mut Config,
) -> anyhow::Result<()> {
    if let Some(p) = password_login {
        config.password_login = p;
    }
    for s in providers {
        let mut p = IdentityProvider::new(
            s.name.clone(),
            s.issuer.clone(),
            s.client_id.clone(),
            read_secret(&s.client_secret_file)?,
        );
        if let Some(d) = &s.display_name {
            p.display_name = d.clone();
        }
        let allow = Allow {
            any: s.allow_any,
            domains: &s.allow_domains,
            emails: &s.allow_emails,
            claims: &s.allow_claims,
        };
        config
            .identity_providers
            .push(complete(p, &s.scopes, allow)?);
    }
    Ok(())
}

/// The start-up banner lines about identity providers: the redirect URI to register.
pub fn banner(config: &Config) {
    for p in &config.identity_providers {
        eprintln!("  sign-in via: {} ({})", p.display_name, p.issuer);
    }
    if !config.identity_providers.is_empty() {
        eprintln!(
            "  register this redirect URI at the identity provider: {}",
            callback_uri(config)
        );
    }
    if !config.password_login {
        eprintln!("  password sign-in: off");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f1_provider_names_come_from_the_issuer_host() {
        assert_eq!(
            name_from("https://accounts.google.com"),
            "accounts-google-com"
        );
        assert_eq!(name_from("http://127.0.0.1:9000"), "127-0-0-1");
        assert_eq!(name_from("not a url"), "idp");
    }
}
