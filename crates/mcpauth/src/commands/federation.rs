//! The identity-provider flags of `mcpauth serve` and of `mcpauth gateway` with its embedded
//! authorization server, and serve's `[[identity_providers]]` settings (SPEC F1-F8): users sign
//! in through an upstream OpenID Connect provider (flags or settings) or a plain OAuth 2.0 one
//! such as GitHub (`kind = "oauth2"` in the settings).

use std::path::PathBuf;

use anyhow::{Context, bail};
use mcpauth_authserver::federation::{
    ClaimRule, IdentityProvider, OAuth2Endpoints, ProviderKind, TokenAuth, callback_uri,
};
use mcpauth_authserver::{Config, VaultKey, default_key_path};
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

/// Loads (creating when missing) the vault key of a server with identity providers on the
/// database `database_url`: `--vault-key-file`, or the default beside the database. An
/// in-memory database gets a key for this process only.
fn apply_vault_key(
    args: &IdpArgs,
    database_url: &str,
    config: &mut Config,
) -> anyhow::Result<Option<PathBuf>> {
    if config.identity_providers.is_empty() {
        return Ok(None);
    }
    let path = match &args.vault_key_file {
        Some(p) => p.clone(),
        None => {
            let sqlite_file = database_url
                .strip_prefix("sqlite://")
                .and_then(|rest| rest.split('?').next())
                .filter(|_| !database_url.contains("mode=memory"));
            match sqlite_file {
                Some(file) => default_key_path(std::path::Path::new(file)),
                None if database_url.starts_with("sqlite:") => return Ok(None),
                None => mcpauth_client::store::FileStore::default_location()?
                    .dir()
                    .join("authserver.vault-key"),
            }
        }
    };
    config.vault_key = Some(VaultKey::load_or_create(&path)?);
    Ok(Some(path))
}

/// Configures sign-in for the server on `database_url`: the settings file's providers, then the
/// flags' one, then the vault key. Returns the vault key's file, if the tokens are sealed with
/// a key kept in a file.
pub fn configure(
    args: &IdpArgs,
    database_url: &str,
    config: &mut Config,
) -> anyhow::Result<Option<PathBuf>> {
    apply_settings(
        &args.settings_providers,
        args.settings_password_login,
        config,
    )?;
    apply(args, config)?;
    config.trusted_issuers = super::trust::trusted_issuers(&args.settings_trusted_issuers)?;
    apply_vault_key(args, database_url, config)
}

/// Adds the provider the flags describe (if any) to `config` and applies `--no-password-login`.
/// The client secret comes from `--idp-client-secret-file` or `MCPAUTH_IDP_CLIENT_SECRET`,
/// never from the command line.
fn apply(args: &IdpArgs, config: &mut Config) -> anyhow::Result<()> {
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
    p.display_name = match &args.idp_display_name {
        Some(d) => d.clone(),
        None => url::Url::parse(issuer)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_else(|| p.name.clone()),
    };
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

/// The kind of a provider in the settings file.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// OpenID Connect (the default): `issuer`.
    #[default]
    Oidc,
    /// Plain OAuth 2.0 (e.g. GitHub): the endpoints and the user endpoint's fields.
    Oauth2,
}

/// How the settings name the token endpoint authentication (RFC 6749 §2.3.1).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum AuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
}

/// An identity provider in the settings file (`[[identity_providers]]`); the client secret is
/// read from `client_secret_file`, never written in the settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdpSettings {
    name: String,
    #[serde(default)]
    kind: Kind,
    display_name: Option<String>,
    issuer: Option<String>,
    authorization_endpoint: Option<String>,
    token_endpoint: Option<String>,
    userinfo_endpoint: Option<String>,
    emails_endpoint: Option<String>,
    subject_field: Option<String>,
    email_field: Option<String>,
    name_field: Option<String>,
    token_endpoint_auth_method: Option<AuthMethod>,
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

impl IdpSettings {
    /// What the settings say about the provider's kind, with a clear error for a member that is
    /// missing or belongs to the other kind.
    fn kind(&self) -> anyhow::Result<ProviderKind> {
        let name = &self.name;
        let oauth2_only = [
            (
                "authorization_endpoint",
                self.authorization_endpoint.is_some(),
            ),
            ("token_endpoint", self.token_endpoint.is_some()),
            ("userinfo_endpoint", self.userinfo_endpoint.is_some()),
            ("emails_endpoint", self.emails_endpoint.is_some()),
            ("subject_field", self.subject_field.is_some()),
            ("email_field", self.email_field.is_some()),
            ("name_field", self.name_field.is_some()),
            (
                "token_endpoint_auth_method",
                self.token_endpoint_auth_method.is_some(),
            ),
        ];
        match self.kind {
            Kind::Oidc => {
                if let Some((member, _)) = oauth2_only.iter().find(|(_, set)| *set) {
                    bail!(
                        "identity provider {name:?}: {member} is for kind = \"oauth2\" (an \
                         OpenID Connect provider is found from its issuer)"
                    );
                }
                let issuer = self.issuer.clone().with_context(|| {
                    format!(
                        "identity provider {name:?}: kind = \"oidc\" needs issuer (or say \
                         kind = \"oauth2\" with its endpoints)"
                    )
                })?;
                Ok(ProviderKind::Oidc { issuer })
            }
            Kind::Oauth2 => {
                if self.issuer.is_some() {
                    bail!(
                        "identity provider {name:?}: kind = \"oauth2\" has no issuer; give \
                         authorization_endpoint, token_endpoint and userinfo_endpoint"
                    );
                }
                let need = |v: &Option<String>, member: &str| {
                    v.clone().with_context(|| {
                        format!("identity provider {name:?}: kind = \"oauth2\" needs {member}")
                    })
                };
                let mut e = OAuth2Endpoints::new(
                    need(&self.authorization_endpoint, "authorization_endpoint")?,
                    need(&self.token_endpoint, "token_endpoint")?,
                    need(&self.userinfo_endpoint, "userinfo_endpoint")?,
                );
                e.emails_endpoint = self.emails_endpoint.clone();
                if let Some(f) = &self.subject_field {
                    e.subject_field = f.clone();
                }
                if let Some(f) = &self.email_field {
                    e.email_field = f.clone();
                }
                e.name_field = self.name_field.clone();
                if self.token_endpoint_auth_method == Some(AuthMethod::ClientSecretPost) {
                    e.token_auth = TokenAuth::Post;
                }
                Ok(ProviderKind::OAuth2(e))
            }
        }
    }
}

/// Adds the settings file's providers to `config`; `password_login = false` there turns
/// password sign-in off.
fn apply_settings(
    providers: &[IdpSettings],
    password_login: Option<bool>,
    config: &mut Config,
) -> anyhow::Result<()> {
    if let Some(p) = password_login {
        config.password_login = p;
    }
    for s in providers {
        let kind = s.kind()?;
        let secret = read_secret(&s.client_secret_file)?;
        let (name, client_id) = (s.name.clone(), s.client_id.clone());
        let mut p = match kind {
            ProviderKind::Oidc { issuer } => IdentityProvider::new(name, issuer, client_id, secret),
            ProviderKind::OAuth2(e) => IdentityProvider::oauth2(name, e, client_id, secret),
        };
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
pub fn banner(config: &Config, vault_key: Option<&std::path::Path>) {
    for p in &config.identity_providers {
        eprintln!("  sign-in via: {} ({})", p.display_name, p.location());
    }
    if !config.identity_providers.is_empty() {
        eprintln!(
            "  register this redirect URI at the identity provider: {}",
            callback_uri(config)
        );
        match vault_key {
            Some(path) => eprintln!(
                "  upstream tokens sealed with the key in {} (give every instance sharing the database this file)",
                path.display()
            ),
            None => eprintln!(
                "  upstream tokens sealed with a key of this process only (in-memory database)"
            ),
        }
    }
    if !config.password_login {
        eprintln!("  password sign-in: off");
    }
    for t in &config.trusted_issuers {
        let what = match t.kind {
            mcpauth_authserver::TrustKind::Workload(_) => "workload tokens",
            mcpauth_authserver::TrustKind::IdJag(_) => "ID-JAGs",
        };
        eprintln!("  trusts:     {} for {what} ({})", t.issuer, t.name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(toml_text: &str) -> Result<IdpSettings, String> {
        #[derive(Deserialize)]
        struct File {
            identity_providers: Vec<IdpSettings>,
        }
        toml::from_str::<File>(toml_text)
            .map(|mut f| f.identity_providers.remove(0))
            .map_err(|e| e.to_string())
    }

    const GITHUB: &str = r#"
        [[identity_providers]]
        name = "github"
        kind = "oauth2"
        client_id = "Iv1.abc"
        client_secret_file = "/run/secrets/github"
        authorization_endpoint = "https://github.com/login/oauth/authorize"
        token_endpoint = "https://github.com/login/oauth/access_token"
        userinfo_endpoint = "https://api.github.com/user"
        emails_endpoint = "https://api.github.com/user/emails"
        name_field = "login"
        scopes = ["read:user", "user:email"]
        allow_claims = ["login=octocat"]
    "#;

    #[test]
    fn f1_settings_oauth2_provider() {
        let ProviderKind::OAuth2(e) = settings(GITHUB).unwrap().kind().unwrap() else {
            panic!("an OAuth 2.0 provider");
        };
        assert_eq!(
            e.token_endpoint,
            "https://github.com/login/oauth/access_token"
        );
        assert_eq!(
            e.emails_endpoint.as_deref(),
            Some("https://api.github.com/user/emails")
        );
        assert_eq!(
            (e.subject_field.as_str(), e.email_field.as_str()),
            ("id", "email")
        );
        assert_eq!(e.name_field.as_deref(), Some("login"));
        assert_eq!(e.token_auth, TokenAuth::Basic);
        let post = GITHUB.replace(
            "name_field",
            "token_endpoint_auth_method = \"client_secret_post\"\nname_field",
        );
        let ProviderKind::OAuth2(e) = settings(&post).unwrap().kind().unwrap() else {
            panic!("an OAuth 2.0 provider");
        };
        assert_eq!(e.token_auth, TokenAuth::Post);
        let oidc = r#"
            [[identity_providers]]
            name = "corp"
            issuer = "https://idp.example"
            client_id = "c"
            client_secret_file = "/s"
        "#;
        assert_eq!(
            settings(oidc).unwrap().kind().unwrap(),
            ProviderKind::Oidc {
                issuer: "https://idp.example".into()
            }
        );
    }

    #[test]
    fn f1_settings_errors_are_clear() {
        let kind_err = |text: &str| settings(text).unwrap().kind().unwrap_err().to_string();
        let e = kind_err(&GITHUB.replace("token_endpoint =", "# "));
        assert!(e.contains("kind = \"oauth2\" needs token_endpoint"), "{e}");
        let e = kind_err(&GITHUB.replace("userinfo_endpoint =", "# "));
        assert!(e.contains("needs userinfo_endpoint"), "{e}");
        let e = kind_err(&GITHUB.replace("kind = \"oauth2\"\n", ""));
        assert!(e.contains("is for kind = \"oauth2\""), "{e}");
        let e =
            kind_err(&GITHUB.replace("name_field", "issuer = \"https://github.com\"\nname_field"));
        assert!(e.contains("has no issuer"), "{e}");
        let e = kind_err(
            r#"[[identity_providers]]
            name = "corp"
            client_id = "c"
            client_secret_file = "/s""#,
        );
        assert!(e.contains("needs issuer"), "{e}");
        let e = settings(&GITHUB.replace("\"oauth2\"", "\"saml\"")).unwrap_err();
        assert!(e.contains("unknown variant") && e.contains("oauth2"), "{e}");
        let e =
            settings(&GITHUB.replace("name_field", "user_field = \"x\"\nname_field")).unwrap_err();
        assert!(
            e.contains("unknown field") && e.contains("user_field"),
            "{e}"
        );
        let e = settings(&GITHUB.replace(
            "name_field",
            "token_endpoint_auth_method = \"none\"\nname_field",
        ))
        .unwrap_err();
        assert!(e.contains("client_secret_basic"), "{e}");
    }

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
