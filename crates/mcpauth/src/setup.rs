//! Turns flags, environment and config entries into a [`Session`].

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use mcpauth_client::authorize::{FrontEnd, Headless, RESERVED_PARAMS};
use mcpauth_client::cross_app::CrossAppAccess;
use mcpauth_client::grants::SigningKey;
use mcpauth_client::http::{HttpOptions, OAuthHttp};
use mcpauth_client::loopback::{Loopback, LoopbackOptions};
use mcpauth_client::paste::{LoopbackOrPaste, Paste, PasteInput};
use mcpauth_client::registration::StaticClient;
use mcpauth_client::session::{
    ENV_CLIENT_ID, ENV_CLIENT_SECRET, ENV_MCPAUTH_CLIENT_SECRET, Grant, ResourceParam, Session,
    SessionConfig,
};
use mcpauth_client::store::{FileStore, MemoryStore, TokenStore};
use mcpauth_client::workload::{WorkloadIdentity, WorkloadSource};
use mcpauth_core::{Assertion, ClientSecret, ScopeSet};
use serde::Deserialize;

use crate::cli::{AuthArgs, Cli, StoreKind};
use crate::config::{ConfigFile, MCPO_CALLBACK_PORT, OAuthBlock, ServerEntry};
use crate::present::{Terminal, Wait};

/// The port announced by the paste flow when none is configured (nothing listens there).
const PASTE_PORT: u16 = 8976;

/// A server to act on.
#[derive(Clone, Debug)]
pub struct Target {
    /// The MCP endpoint URL.
    pub url: String,
    /// Its config entry, when it came from --config.
    pub entry: Option<ServerEntry>,
}

/// Resolves a command-line target: a URL, or a name in the config file.
pub fn resolve(config: Option<&ConfigFile>, target: &str) -> anyhow::Result<Target> {
    if target.starts_with("http://") || target.starts_with("https://") {
        let entry = config.and_then(|c| {
            c.servers
                .values()
                .find(|e| e.url.as_deref() == Some(target))
                .cloned()
        });
        return Ok(Target {
            url: target.to_owned(),
            entry,
        });
    }
    let Some(config) = config else {
        bail!(
            "{target:?} is not an http(s) URL; give the MCP server's URL, or a server name together with --config FILE"
        );
    };
    let (url, entry) = config.http_server(target)?;
    Ok(Target {
        url,
        entry: Some(entry.clone()),
    })
}

/// The token store for this run.
pub fn store(cli: &Cli, entry: Option<&ServerEntry>) -> anyhow::Result<Arc<dyn TokenStore>> {
    let from_config = entry
        .and_then(|e| e.oauth.as_ref())
        .and_then(|o| o.storage_type.as_deref());
    let kind = match from_config {
        Some("memory") => StoreKind::Memory,
        Some("file") | None => cli.store,
        Some(other) => {
            bail!("storage_type {other:?} is not supported (use \"file\" or \"memory\")")
        }
    };
    Ok(match kind {
        StoreKind::File => Arc::new(FileStore::default_location()?),
        StoreKind::Memory => Arc::new(MemoryStore::new()),
        StoreKind::Keyring => keyring_store()?,
    })
}

/// The OS keyring store, or the file store (with a warning) when there is no keyring.
fn keyring_store() -> anyhow::Result<Arc<dyn TokenStore>> {
    let files = FileStore::default_location()?;
    #[cfg(feature = "keyring")]
    let reason = match mcpauth_client::store::KeyringStore::system(FileStore::new(files.dir())) {
        Ok(k) => return Ok(Arc::new(k)),
        Err(e) => e.to_string(),
    };
    #[cfg(not(feature = "keyring"))]
    let reason = "this mcpauth was built without the `keyring` feature".to_owned();
    tracing::warn!(
        "{reason}; falling back to the file store in {}",
        files.dir().display()
    );
    Ok(Arc::new(files))
}

/// The OAuth HTTP client.
pub fn http(auth: &AuthArgs) -> anyhow::Result<OAuthHttp> {
    Ok(OAuthHttp::new(HttpOptions {
        timeout: Duration::from_secs(30),
        allow_insecure_http: auth.allow_http,
        ..Default::default()
    })?)
}

/// Reads a secret from a file, trimming the final newline.
pub fn read_secret(path: &Path) -> anyhow::Result<ClientSecret> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the client secret file {}", path.display()))?;
    let secret = text.trim_end_matches(['\n', '\r']);
    if secret.is_empty() {
        bail!("the client secret file {} is empty", path.display());
    }
    Ok(ClientSecret::new(secret))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StaticClientFile {
    client_id: String,
    #[serde(default)]
    client_secret: Option<String>,
    #[serde(default)]
    token_endpoint_auth_method: Option<String>,
    #[serde(default)]
    issuer: Option<String>,
}

fn static_client(
    auth: &AuthArgs,
    entry: Option<&ServerEntry>,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Option<StaticClient>> {
    let oauth = entry.and_then(|e| e.oauth.as_ref());
    let env_secret = || {
        env(ENV_MCPAUTH_CLIENT_SECRET)
            .or_else(|| env(ENV_CLIENT_SECRET))
            .filter(|s| !s.is_empty())
            .map(ClientSecret::new)
    };
    let secret_file = auth
        .client_secret_file
        .as_deref()
        .or(oauth.and_then(|o| o.client_secret_file.as_deref()));
    let secret = || -> anyhow::Result<Option<ClientSecret>> {
        Ok(match secret_file {
            Some(f) => Some(read_secret(f)?),
            None => env_secret(),
        })
    };
    if let Some(path) = &auth.static_client {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the static client file {}", path.display()))?;
        let f: StaticClientFile = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a static client file", path.display()))?;
        return Ok(Some(StaticClient {
            client_id: f.client_id,
            client_secret: match f.client_secret {
                Some(s) => Some(ClientSecret::new(s)),
                None => secret()?,
            },
            auth_method: f.token_endpoint_auth_method,
            issuer: f.issuer,
        }));
    }
    let id = auth
        .client_id
        .clone()
        .or(oauth.and_then(|o| o.client_id.clone()))
        .or_else(|| env(ENV_CLIENT_ID).filter(|s| !s.is_empty()));
    Ok(match id {
        Some(client_id) => Some(StaticClient {
            client_id,
            client_secret: secret()?,
            auth_method: auth
                .private_key
                .as_ref()
                .map(|_| "private_key_jwt".to_owned()),
            issuer: None,
        }),
        None => None,
    })
}

/// Workload identity federation (SEP-1933, SPEC W1) when a workload token source is configured
/// (flags first, then the config entry). A client id may go with it, never a secret.
fn workload(
    auth: &AuthArgs,
    oauth: Option<&OAuthBlock>,
) -> anyhow::Result<Option<WorkloadIdentity>> {
    let flag = match (&auth.workload_token_file, &auth.workload_token_command) {
        (Some(file), _) => Some(WorkloadSource::File(file.clone())),
        (None, Some(command)) => Some(WorkloadSource::Command(command.clone())),
        (None, None) => None,
    };
    let configured = || match oauth {
        Some(OAuthBlock {
            workload_token_file: Some(_),
            workload_token_command: Some(_),
            ..
        }) => bail!(
            "the config entry has both workload_token_file and workload_token_command; keep one"
        ),
        Some(OAuthBlock {
            workload_token_file: Some(file),
            ..
        }) => Ok(Some(WorkloadSource::File(file.clone()))),
        Some(OAuthBlock {
            workload_token_command: Some(command),
            ..
        }) => Ok(Some(WorkloadSource::Command(command.clone()))),
        _ => Ok(None),
    };
    let Some(source) = flag.map_or_else(configured, |s| Ok(Some(s)))? else {
        return Ok(None);
    };
    let secret = auth.client_secret_file.is_some()
        || auth.private_key.is_some()
        || auth.static_client.is_some()
        || oauth.is_some_and(|o| o.client_secret_file.is_some());
    if secret {
        bail!(
            "workload identity federation sends no client secret or key (SEP-1933, SPEC W1): the \
             workload token is the only credential; drop --client-secret-file, --private-key, \
             --static-client and client_secret_file"
        );
    }
    Ok(Some(WorkloadIdentity {
        source,
        client_id: auth
            .client_id
            .clone()
            .or_else(|| oauth.and_then(|o| o.client_id.clone())),
    }))
}

/// How an authorization may reach the user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interaction {
    /// Browser and, on a terminal, a paste prompt on stdin.
    Terminal,
    /// Browser only: stdin carries something else (`mcpauth connect`'s JSON-RPC).
    BrowserOnly,
    /// No user: GET the authorization URL and take its redirect (servers that approve by
    /// themselves, such as test and conformance servers).
    Headless,
}

/// Whether this machine has no browser to open: no graphical session (`DISPLAY`,
/// `WAYLAND_DISPLAY`) and no `BROWSER` on Linux and the BSDs; macOS and Windows always have one.
fn no_browser_here() -> bool {
    let set = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty());
    cfg!(all(unix, not(target_os = "macos")))
        && !set("DISPLAY")
        && !set("WAYLAND_DISPLAY")
        && !set("BROWSER")
}

/// Builds the session for `target`. `interactive`: a browser login may start.
pub fn session(
    cli: &Cli,
    auth: &AuthArgs,
    target: &Target,
    interactive: bool,
    interaction: Interaction,
) -> anyhow::Result<Arc<Session>> {
    let env = |k: &str| std::env::var(k).ok();
    let entry = target.entry.as_ref();
    let oauth = entry.and_then(|e| e.oauth.as_ref());
    let http = http(auth)?;
    let static_client = static_client(auth, entry, &env)?;
    let machine = auth.client_credentials
        || (auth.client_id.is_none()
            && auth.static_client.is_none()
            && env(ENV_CLIENT_ID).is_some_and(|v| !v.is_empty()));
    let grant = if let Some(identity) = workload(auth, oauth)? {
        Grant::Workload(Arc::new(identity))
    } else if let Some(file) = &auth.id_token_file {
        if static_client.is_none() {
            bail!("--id-token-file needs the MCP client's --client-id (and its secret)");
        }
        let id_token = read_secret(file).context("the ID token file")?;
        Grant::CrossApp(Arc::new(CrossAppAccess {
            idp_issuer: auth.idp_issuer.clone().unwrap_or_default(),
            idp_token_endpoint: auth.idp_token_endpoint.clone().unwrap_or_default(),
            id_token: Assertion::new(id_token.expose()),
            idp_client_id: auth.idp_client_id.clone().unwrap_or_default(),
            idp_client_secret: None,
        }))
    } else if machine {
        if static_client.is_none() {
            bail!(
                "--client-credentials needs a client: --client-id with --client-secret-file, or MCP_CLIENT_ID and MCP_CLIENT_SECRET"
            );
        }
        Grant::ClientCredentials
    } else if auth.device {
        Grant::DeviceCode(Arc::new(Terminal::new(!auth.no_browser, Wait::Browser)))
    } else if interaction == Interaction::Headless {
        let redirect = format!(
            "http://{}:{}{}",
            auth.host,
            auth.port.unwrap_or(PASTE_PORT),
            auth.callback_path
        );
        Grant::AuthorizationCode(Arc::new(Headless::new(http.clone(), redirect)))
    } else {
        Grant::AuthorizationCode(front_end(
            auth,
            entry,
            interaction == Interaction::Terminal,
        )?)
    };
    let workload = matches!(grant, Grant::Workload(_));
    let browser_flow = matches!(grant, Grant::AuthorizationCode(_));
    let mut config = SessionConfig::new(&target.url, grant);
    // SPEC V1: with no browser to open and no terminal to paste into, the device grant is the
    // only way a person can sign in, when the server offers it.
    if browser_flow
        && interaction != Interaction::Headless
        && !auth.no_browser
        && !auth.paste
        && auth.port.is_none()
        && no_browser_here()
        && (interaction == Interaction::BrowserOnly || !std::io::stdin().is_terminal())
    {
        config.device_fallback = Some(Arc::new(Terminal::new(false, Wait::Browser)));
    }
    // SPEC W1: a workload grant is made as no registered client.
    config.client.static_client = static_client.filter(|_| !workload);
    config.client.metadata_document_url = auth
        .client_metadata_url
        .clone()
        .or(oauth.and_then(|o| o.client_metadata_url.clone()));
    if let Some(meta) = oauth.and_then(|o| o.client_metadata.clone()) {
        let mut meta = meta;
        meta.client_name.get_or_insert_with(|| "mcpauth".into());
        config.client.dynamic = Some(meta);
    }
    config.scopes = auth
        .scope
        .as_deref()
        .or(oauth.and_then(|o| o.scope.as_deref()))
        .map(ScopeSet::parse);
    config.resource = match (&auth.resource, auth.no_resource) {
        (_, true) => ResourceParam::Omit,
        (Some(r), _) => ResourceParam::Override(r.clone()),
        _ => ResourceParam::Discovered,
    };
    for p in &auth.authorize_params {
        let Some((k, v)) = p.split_once('=') else {
            bail!("--authorize-param takes k=v, not {p:?}");
        };
        if RESERVED_PARAMS.contains(&k) {
            bail!(
                "--authorize-param {k}=… is refused: mcpauth sets {k} itself (PKCE, state and resource are not negotiable)"
            );
        }
        config.authorize_params.push((k.to_owned(), v.to_owned()));
    }
    if let Some(path) = &auth.private_key {
        let pem = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the private key {}", path.display()))?;
        config.signing_key = Some(SigningKey::from_pem(&pem, None, None)?);
    }
    if let Some(server_url) = oauth.and_then(|o| o.server_url.as_deref()) {
        let origin = |u: &str| url::Url::parse(u).ok().map(|u| u.origin());
        if origin(server_url) != origin(&target.url) {
            config.discovery.issuer_override = Some(server_url.trim_end_matches('/').to_owned());
        }
    }
    config.interactive = interactive;
    config.dpop = !auth.no_dpop;
    let store = store(cli, entry)?;
    Ok(Arc::new(Session::new(config, http, store)))
}

/// The browser front end: loopback (with a paste prompt beside it on a terminal), or paste only.
fn front_end(
    auth: &AuthArgs,
    entry: Option<&ServerEntry>,
    stdin_free: bool,
) -> anyhow::Result<Arc<dyn FrontEnd>> {
    let oauth = entry.and_then(|e| e.oauth.as_ref());
    let timeout = Duration::from_secs(auth.timeout);
    let configured_redirect = oauth
        .and_then(|o| o.client_metadata.as_ref())
        .and_then(|m| m.redirect_uris.first().cloned());
    let port = auth.port.or(oauth.and_then(|o| o.callback_port)).or(oauth
        .map(|_| MCPO_CALLBACK_PORT)
        .filter(|_| configured_redirect.is_none()));
    let paste_only =
        stdin_free && (auth.paste || oauth.and_then(|o| o.use_loopback) == Some(false));
    let stdin_tty = stdin_free && std::io::stdin().is_terminal();
    let wait = match (paste_only, stdin_tty) {
        (true, _) => Wait::Paste,
        (false, true) => Wait::BrowserOrPaste,
        (false, false) => Wait::Browser,
    };
    let presenter = Arc::new(Terminal::new(!auth.no_browser && !paste_only, wait));
    if paste_only {
        let redirect = configured_redirect.unwrap_or_else(|| {
            format!(
                "http://{}:{}{}",
                auth.host,
                port.unwrap_or(PASTE_PORT),
                auth.callback_path
            )
        });
        return Ok(Arc::new(Paste::new(
            redirect,
            presenter,
            Arc::new(PasteInput::stdin()),
        )));
    }
    let options = match (&configured_redirect, auth.port) {
        (Some(uri), None) => LoopbackOptions::from_redirect_uri(uri, timeout)?,
        _ => LoopbackOptions {
            host: auth.host.clone(),
            port: port.unwrap_or(0),
            path: auth.callback_path.clone(),
            timeout,
        },
    };
    let loopback = Loopback::new(options, presenter.clone());
    Ok(if stdin_tty {
        Arc::new(LoopbackOrPaste::new(
            loopback,
            presenter,
            Arc::new(PasteInput::stdin()),
        ))
    } else {
        Arc::new(loopback)
    })
}
