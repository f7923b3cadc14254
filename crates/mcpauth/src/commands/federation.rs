//! The identity-provider flags of `mcpauth serve` and of `mcpauth gateway` with its embedded
//! authorization server (SPEC F1-F8): users sign in through an upstream OpenID Connect provider.

use std::path::{Path, PathBuf};

use anyhow::Context;
use mcpauth_authserver::Config;
use mcpauth_authserver::federation::{ClaimRule, IdentityProvider, callback_uri};
use mcpauth_core::ClientSecret;
use serde::Deserialize;

use crate::cli::IdpArgs;

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
        None => std::env::var(SECRET_ENV).unwrap_or_default(),
    };
    anyhow::ensure!(
        !secret.is_empty(),
        "--idp-issuer needs the client secret in --idp-client-secret-file FILE or {SECRET_ENV}"
    );
    let name = args.idp_name.clone().unwrap_or_else(|| name_from(issuer));
    let mut p = IdentityProvider::new(name, issuer.clone(), client_id, ClientSecret::new(secret));
    p.display_name = url::Url::parse(issuer)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| p.name.clone());
    if !args.idp_scopes.is_empty() {
        p.scopes = args.idp_scopes.clone();
    }
    p.allow.any = args.idp_allow_any;
    p.allow.domains = args.idp_allow_domains.clone();
    p.allow.emails = args.idp_allow_emails.clone();
    p.allow.claims = args
        .idp_allow_claims
        .iter()
        .map(|c| ClaimRule::parse(c))
        .collect::<Result<_, _>>()?;
    config.identity_providers.push(p);
    Ok(())
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
        let secret = read_secret(&s.client_secret_file)?;
        let mut p = IdentityProvider::new(
            s.name.clone(),
            s.issuer.clone(),
            s.client_id.clone(),
            ClientSecret::new(secret),
        );
        if let Some(d) = &s.display_name {
            p.display_name = d.clone();
        }
        if !s.scopes.is_empty() {
            p.scopes = s.scopes.clone();
        }
        p.allow.any = s.allow_any;
        p.allow.domains = s.allow_domains.clone();
        p.allow.emails = s.allow_emails.clone();
        p.allow.claims = s
            .allow_claims
            .iter()
            .map(|c| ClaimRule::parse(c))
            .collect::<Result<_, _>>()?;
        config.identity_providers.push(p);
    }
    Ok(())
}

fn read_secret(path: &Path) -> anyhow::Result<String> {
    let s = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the client secret file {}", path.display()))?;
    let s = s.trim_end_matches(['\n', '\r']).to_owned();
    anyhow::ensure!(
        !s.is_empty(),
        "the client secret file {} is empty",
        path.display()
    );
    Ok(s)
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
