//! `mcpauth serve`: the authorization server, on plain HTTP (loopback) or TLS.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use mcpauth_authserver::{
    AuthServer, Config, IpNet, RateLimits, RegistrationPolicy, SigningAlg, Store, admin, serve_app,
};
use serde::Deserialize;

use crate::cli::{DatabaseArgs, Registration, ServeArgs};
use crate::tls;

/// Where `serve` listens unless told otherwise.
const DEFAULT_BIND: &str = "127.0.0.1:8080";

/// The TOML settings file: the same settings as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    bind: Option<String>,
    issuer: Option<String>,
    database: Option<String>,
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    scopes: Vec<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    registration: Option<Registration>,
    registration_token_file: Option<PathBuf>,
    /// Days; 0: dynamically registered clients never expire.
    dynamic_client_ttl: Option<u64>,
    access_token_ttl: Option<u64>,
    signing_alg: Option<String>,
    #[serde(default)]
    allow_fetch_networks: Vec<String>,
    #[serde(default)]
    trusted_proxies: Vec<String>,
    /// `false` turns the rate limits off (benchmarks only).
    rate_limits: Option<bool>,
    /// `true`: DPoP proofs at /token need a nonce (`--dpop-nonce`).
    #[serde(default)]
    dpop_nonce: bool,
    /// Where Prometheus metrics are served (`--metrics-bind`).
    metrics_bind: Option<String>,
    /// `false`: users sign in through identity providers only.
    password_login: Option<bool>,
    /// Upstream identity providers (`[[identity_providers]]`): OpenID Connect, or plain OAuth
    /// 2.0 with `kind = "oauth2"`.
    #[serde(default)]
    identity_providers: Vec<super::federation::IdpSettings>,
    /// The key sealing the identity providers' tokens (`--vault-key-file`).
    vault_key_file: Option<PathBuf>,
    /// Issuers whose JWTs the JWT bearer grant accepts (`[[trusted_issuers]]`): workload
    /// identity tokens and ID-JAGs.
    #[serde(default)]
    trusted_issuers: Vec<super::trust::TrustSettings>,
}

/// The default database: `authserver.db` beside the token store, in a 0700 directory.
fn default_database() -> anyhow::Result<String> {
    let dir = mcpauth_client::store::FileStore::default_location()?
        .dir()
        .to_owned();
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(format!(
        "sqlite://{}?mode=rwc",
        dir.join("authserver.db").display()
    ))
}

/// Connects to (and migrates) the database named by the flags, the environment or the default;
/// returns it with its URL.
pub async fn open_store(
    db: &DatabaseArgs,
    from_settings: Option<&str>,
) -> anyhow::Result<(Store, String)> {
    let url = match db.database.as_deref().or(from_settings) {
        Some(u) => u.to_owned(),
        None => default_database()?,
    };
    let store = Store::connect(&url)
        .await
        .with_context(|| format!("cannot open the database {}", redact_url(&url)))?;
    Ok((store, url))
}

/// A database URL without its password, for messages.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("****"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

fn read_secret_file(path: &Path, what: &str) -> anyhow::Result<String> {
    let s = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the {what} file {}", path.display()))?;
    let s = s.trim_end_matches(['\n', '\r']).to_owned();
    anyhow::ensure!(!s.is_empty(), "the {what} file {} is empty", path.display());
    Ok(s)
}

/// Resolves when SIGINT or SIGTERM arrives.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    eprintln!("shutting down: finishing requests in flight");
}

/// Runs the authorization server until SIGINT/SIGTERM.
pub async fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    let settings: Settings = match &args.settings {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the settings file {}", path.display()))?;
            toml::from_str(&text)
                .with_context(|| format!("{} is not a valid settings file", path.display()))?
        }
        None => Settings::default(),
    };
    let bind = args
        .bind
        .clone()
        .or(settings.bind)
        .unwrap_or_else(|| DEFAULT_BIND.into());
    let tls_files = match (
        args.tls_cert.clone().or(settings.tls_cert),
        args.tls_key.clone().or(settings.tls_key),
    ) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => bail!("TLS needs both a certificate and a key"),
    };
    let tcp = tokio::net::TcpListener::bind(&bind)
        .await
        .with_context(|| format!("cannot listen on {bind}"))?;
    let local = tcp.local_addr()?;
    let scheme = if tls_files.is_some() { "https" } else { "http" };
    let issuer = args
        .issuer
        .clone()
        .or(settings.issuer)
        .unwrap_or_else(|| format!("{scheme}://{local}"));
    let issuer_url =
        url::Url::parse(&issuer).with_context(|| format!("the issuer {issuer:?} is not a URL"))?;
    if issuer_url.scheme() != "https" && !mcpauth_core::url_policy::is_loopback(&issuer_url) {
        // MCP SPEC A7: every authorization server endpoint is HTTPS.
        bail!(
            "the issuer {issuer} must be https (MCP SPEC A7); serve TLS with --tls-cert/--tls-key or put a TLS proxy in front and pass --issuer https://…"
        );
    }
    if !local.ip().is_loopback() && tls_files.is_none() && issuer_url.scheme() != "https" {
        bail!(
            "refusing to serve plain HTTP on {local}, which is not loopback; use --tls-cert/--tls-key"
        );
    }

    let (store, database) = open_store(&args.db, settings.database.as_deref()).await?;
    let mut config = Config::new(&issuer);
    config.resources = if args.resources.is_empty() {
        settings.resources
    } else {
        args.resources.clone()
    };
    config.scopes_supported = if args.scopes.is_empty() {
        settings.scopes
    } else {
        args.scopes.clone()
    };
    if let Some(ttl) = args.access_token_ttl.or(settings.access_token_ttl) {
        config.access_token_ttl = Duration::from_secs(ttl);
    }
    if let Some(alg) = args
        .signing_alg
        .as_deref()
        .or(settings.signing_alg.as_deref())
    {
        config.signing_alg = SigningAlg::parse(alg)
            .with_context(|| format!("unknown signing algorithm {alg:?} (ES256 or EdDSA)"))?;
    }
    config.registration = match args
        .registration
        .or(settings.registration)
        .unwrap_or(Registration::Open)
    {
        Registration::Open => RegistrationPolicy::Open,
        Registration::Disabled => RegistrationPolicy::Disabled,
        Registration::Token => {
            let token = match args.registration_token_file.as_deref().or(settings.registration_token_file.as_deref()) {
                Some(f) => read_secret_file(f, "registration token")?,
                None => std::env::var("MCPAUTH_REGISTRATION_TOKEN")
                    .ok()
                    .filter(|t| !t.is_empty())
                    .context("--registration token needs MCPAUTH_REGISTRATION_TOKEN or --registration-token-file")?,
            };
            RegistrationPolicy::InitialAccessToken(token)
        }
    };
    if let Some(days) = args.dynamic_client_ttl.or(settings.dynamic_client_ttl) {
        config.dynamic_client_ttl = match days {
            0 => None,
            days => Some(Duration::from_secs(
                days.checked_mul(24 * 3600)
                    .context("--dynamic-client-ttl is too large")?,
            )),
        };
    }
    let networks = if args.allow_fetch_networks.is_empty() {
        settings.allow_fetch_networks
    } else {
        args.allow_fetch_networks.clone()
    };
    for n in networks {
        config.fetch.allow_networks.push(IpNet::parse(&n)?);
    }
    let proxies = if args.trusted_proxies.is_empty() {
        settings.trusted_proxies
    } else {
        args.trusted_proxies.clone()
    };
    for p in proxies {
        config.trusted_proxies.push(IpNet::parse(&p)?);
    }
    if args.no_rate_limits || settings.rate_limits == Some(false) {
        tracing::warn!("rate limits are off: run like this only for benchmarks");
        config.rate_limits = RateLimits::none();
    }
    config.connections = args.connections.limits();
    config.dpop_nonces = args.dpop_nonce || settings.dpop_nonce;
    let mut idp = args.idp.clone();
    idp.settings_providers = settings.identity_providers;
    idp.settings_password_login = settings.password_login;
    idp.settings_trusted_issuers = settings.trusted_issuers;
    idp.vault_key_file = idp.vault_key_file.or(settings.vault_key_file);
    let vault_key = super::federation::configure(&idp, &database, &mut config)?;
    let server = AuthServer::new(config, store.clone()).await?;
    let metrics = match args.metrics_bind.clone().or(settings.metrics_bind) {
        Some(bind) => Some(crate::metrics::serve(&bind).await?),
        None => None,
    };
    let mut app = server.router();
    if metrics.is_some() {
        app = app.layer(crate::metrics::HttpMetricsLayer);
    }

    let users = admin::list_users(&store).await?.len();
    eprintln!("mcpauth authorization server");
    eprintln!("  issuer:     {issuer}");
    let metadata = mcpauth_core::well_known::authorization_server_urls(&issuer)?;
    eprintln!("  metadata:   {}", metadata[0].0);
    eprintln!("  listening:  {scheme}://{local}");
    eprintln!("  database:   {}", redact_url(&database));
    if server.config().resources.is_empty() {
        eprintln!("  resources:  any (pass --resource URL for each MCP server it protects)");
    } else {
        eprintln!("  resources:  {}", server.config().resources.join(", "));
    }
    if server.config().dpop_nonces {
        eprintln!("  DPoP:       proofs at /token need a nonce from this server (--dpop-nonce)");
    }
    if let Some(addr) = metrics {
        eprintln!("  metrics:    http://{addr}/metrics");
    }
    super::federation::banner(server.config(), vault_key.as_deref());
    if users == 0 {
        eprintln!(
            "No users yet. Add one with:  mcpauth users add NAME   (the password is read from stdin)"
        );
    } else {
        eprintln!("{users} user(s). Press Ctrl-C to stop.");
    }
    match tls_files {
        Some((cert, key)) => {
            let listener = tls::TlsListener::new(
                tcp,
                tls::server_config(&cert, &key)?,
                server.config().connections.max_connections,
            )?;
            serve_app(listener, server, app, shutdown_signal()).await?;
        }
        None => serve_app(tcp, server, app, shutdown_signal()).await?,
    }
    Ok(())
}
