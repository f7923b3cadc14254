//! `mcpauth gateway`: OAuth in front of an MCP server. One listener serves the protected MCP
//! endpoint (bearer validation, Origin/Host guard, scope policy), its protected resource
//! metadata, and — unless an external issuer is named — the embedded authorization server on
//! the same origin.

mod demo;
mod embedded;
mod proxy;
mod resume;
mod session_env;
mod stdio;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::Router;
use axum::extract::Request;
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{any, get};
use mcpauth_authserver::{AuthServer, Config, Store, admin, serve_router};
use mcpauth_resource::{
    BearerAuthLayer, DpopConfig, DpopPolicy, IntrospectionVerifier, JwtVerifier, NonceIssuer,
    OriginGuardLayer, ResourceMetadata, ScopePolicy, TokenVerifier,
};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;

use crate::cli::{DpopMode, GatewayArgs};
use crate::commands::{open_store, redact_url, shutdown_signal};
use crate::setup::read_secret;
use crate::tls;

/// One access-log line per request: method, path, status, time. Never headers or queries.
async fn access_log(req: Request, next: Next) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let start = Instant::now();
    let response = next.run(req).await;
    tracing::info!(
        target: "mcpauth::access",
        %method,
        %path,
        status = response.status().as_u16(),
        ms = start.elapsed().as_millis() as u64,
    );
    response
}

/// Where the gateway listens unless told otherwise.
const DEFAULT_BIND: &str = "127.0.0.1:8090";

/// The TOML settings file of the gateway: the flags' settings (flags win).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    upstream: Option<String>,
    #[serde(default)]
    command: Vec<String>,
    bind: Option<String>,
    public_url: Option<String>,
    issuer: Option<String>,
    #[serde(default)]
    audiences: Vec<String>,
    jwks_uri: Option<String>,
    #[serde(default)]
    accept_issuer_trailing_slash: bool,
    #[serde(default)]
    accept_plain_jwt: bool,
    dpop: Option<crate::cli::DpopMode>,
    #[serde(default)]
    dpop_nonce: bool,
    metrics_bind: Option<String>,
    access_token_ttl: Option<u64>,
    introspection_url: Option<String>,
    introspection_client_id: Option<String>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    upstream_headers: Vec<String>,
    #[serde(default)]
    upstream_env: Vec<String>,
    upstream_token: Option<String>,
    upstream_token_env: Option<String>,
    identity_header: Option<String>,
    max_sessions_per_user: Option<usize>,
    max_sessions: Option<usize>,
    session_idle_timeout: Option<u64>,
    #[serde(default)]
    tool_scopes: std::collections::BTreeMap<String, Vec<String>>,
    /// `false`: users of the embedded server sign in through identity providers only.
    password_login: Option<bool>,
    /// The embedded server's identity providers (`[[identity_providers]]`, as in serve's
    /// settings).
    #[serde(default)]
    identity_providers: Vec<crate::commands::federation::IdpSettings>,
    /// The embedded server's `[[trusted_issuers]]` (JWT bearer grant), as in serve's.
    #[serde(default)]
    trusted_issuers: Vec<crate::commands::trust::TrustSettings>,
    /// The key sealing the identity providers' tokens (`--vault-key-file`).
    vault_key_file: Option<std::path::PathBuf>,
}

/// The embedded server, when `flag` may be used: it holds the users' identity provider
/// tokens only with at least one identity provider (SPEC F8).
fn vault_server<'a>(flag: &str, server: Option<&'a AuthServer>) -> anyhow::Result<&'a AuthServer> {
    let Some(server) = server else {
        bail!(
            "{flag} needs the embedded authorization server (no --issuer or --introspection-url): only it holds the users' identity provider tokens"
        );
    };
    if server.config().identity_providers.is_empty() {
        bail!(
            "{flag} needs an identity provider (--idp-issuer): users who sign in with a password have no upstream token"
        );
    }
    Ok(server)
}

/// `--upstream-token HEADER`, checked: only for an HTTP upstream.
fn upstream_token(
    args: &GatewayArgs,
    server: Option<&AuthServer>,
) -> anyhow::Result<Option<proxy::UpstreamToken>> {
    let Some(name) = &args.upstream_token else {
        return Ok(None);
    };
    let server = vault_server("--upstream-token", server)?;
    if args.upstream.is_none() {
        bail!(
            "--upstream-token needs --upstream URL (an MCP server over HTTP); for a stdio server use --upstream-token-env NAME"
        );
    }
    let header = header::HeaderName::from_bytes(name.as_bytes())
        .with_context(|| format!("--upstream-token {name:?} is not a valid header name"))?;
    Ok(Some(proxy::UpstreamToken {
        header,
        server: server.clone(),
    }))
}

/// `--upstream-token-env NAME` and `--identity-header` for a stdio upstream, checked.
fn session_env(
    args: &GatewayArgs,
    server: Option<&AuthServer>,
) -> anyhow::Result<Option<session_env::SessionEnv>> {
    if let Some(name) = &args.upstream_token_env {
        vault_server("--upstream-token-env", server)?;
        if args.command.is_empty() {
            bail!(
                "--upstream-token-env is for a stdio MCP server (-- COMMAND); with --upstream use --upstream-token HEADER"
            );
        }
        if name.is_empty() || name.contains(['=', '\0']) {
            bail!("--upstream-token-env {name:?} is not a valid environment variable name");
        }
    }
    let identity = args.identity_header.is_some() && !args.command.is_empty();
    if args.upstream_token_env.is_none() && !identity {
        return Ok(None);
    }
    let Some(server) = server else {
        bail!(
            "--identity-header needs the embedded authorization server (no --issuer or --introspection-url): its key signs the identity"
        );
    };
    Ok(Some(session_env::SessionEnv {
        token_env: args.upstream_token_env.clone(),
        identity_audience: identity.then(|| format!("stdio:{}", args.command[0])),
        server: server.clone(),
    }))
}

/// `--identity-header HEADER` for an HTTP upstream, checked: the embedded authorization
/// server's key signs the assertions (a stdio upstream: [`session_env()`]).
fn identity_header(
    args: &GatewayArgs,
    server: Option<&AuthServer>,
) -> anyhow::Result<Option<proxy::IdentityHeader>> {
    let Some(name) = &args.identity_header else {
        return Ok(None);
    };
    let Some(server) = server else {
        bail!(
            "--identity-header needs the embedded authorization server (no --issuer or --introspection-url): its key signs the identity"
        );
    };
    let Some(audience) = &args.upstream else {
        return Ok(None);
    };
    let header = header::HeaderName::from_bytes(name.as_bytes())
        .with_context(|| format!("--identity-header {name:?} is not a valid header name"))?;
    if header == header::AUTHORIZATION
        || args
            .upstream_token
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case(name))
    {
        bail!("--identity-header {name} would overwrite the upstream token's header; pick another");
    }
    Ok(Some(proxy::IdentityHeader {
        header,
        server: server.clone(),
        audience: audience.clone(),
    }))
}

/// The flags, completed from the settings file.
fn with_settings(args: &GatewayArgs) -> anyhow::Result<GatewayArgs> {
    let mut a = args.clone();
    let Some(path) = &args.settings else {
        return Ok(a);
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the settings file {}", path.display()))?;
    let s: Settings = toml::from_str(&text)
        .with_context(|| format!("{} is not a valid gateway settings file", path.display()))?;
    if a.upstream.is_none() && a.command.is_empty() && !a.demo {
        a.upstream = s.upstream;
        a.command = s.command;
    }
    a.bind = a.bind.or(s.bind);
    a.public_url = a.public_url.or(s.public_url);
    a.issuer = a.issuer.or(s.issuer);
    if a.audiences.is_empty() {
        a.audiences = s.audiences;
    }
    a.jwks_uri = a.jwks_uri.or(s.jwks_uri);
    a.accept_issuer_trailing_slash |= s.accept_issuer_trailing_slash;
    a.accept_plain_jwt |= s.accept_plain_jwt;
    a.dpop = a.dpop.or(s.dpop);
    a.dpop_nonce |= s.dpop_nonce;
    a.metrics_bind = a.metrics_bind.or(s.metrics_bind);
    a.access_token_ttl = a.access_token_ttl.or(s.access_token_ttl);
    a.introspection_url = a.introspection_url.or(s.introspection_url);
    a.introspection_client_id = a.introspection_client_id.or(s.introspection_client_id);
    if a.scopes.is_empty() {
        a.scopes = s.scopes;
    }
    if a.upstream_headers.is_empty() {
        a.upstream_headers = s.upstream_headers;
    }
    if a.upstream_env.is_empty() {
        a.upstream_env = s.upstream_env;
    }
    a.upstream_token = a.upstream_token.or(s.upstream_token);
    a.upstream_token_env = a.upstream_token_env.or(s.upstream_token_env);
    a.identity_header = a.identity_header.or(s.identity_header);
    a.max_sessions_per_user = a.max_sessions_per_user.or(s.max_sessions_per_user);
    a.max_sessions = a.max_sessions.or(s.max_sessions);
    a.session_idle_timeout = a.session_idle_timeout.or(s.session_idle_timeout);
    a.idp.settings_providers = s.identity_providers;
    a.idp.settings_trusted_issuers = s.trusted_issuers;
    a.idp.settings_password_login = s.password_login;
    a.idp.vault_key_file = a.idp.vault_key_file.or(s.vault_key_file);
    if a.tool_scopes.is_empty() {
        a.tool_scopes = s
            .tool_scopes
            .into_iter()
            .flat_map(|(tool, scopes)| scopes.into_iter().map(move |sc| format!("{tool}={sc}")))
            .collect();
    }
    Ok(a)
}

/// Runs the gateway until SIGINT/SIGTERM.
pub async fn gateway(args: &GatewayArgs) -> anyhow::Result<()> {
    let args = &with_settings(args)?;
    if args.upstream.is_none() && args.command.is_empty() && !args.demo {
        bail!(
            "give the MCP server to protect: --upstream URL, -- COMMAND ARGS…, or --demo (or upstream/command in the settings file)"
        );
    }
    if args.upstream.is_some() && !args.command.is_empty() {
        bail!("give either an upstream URL or a command, not both");
    }
    if args.introspection_url.is_some() && args.introspection_client_id.is_none() {
        bail!(
            "introspection needs the gateway's client id (--introspection-client-id or introspection_client_id)"
        );
    }
    let jwt_only = [
        (args.jwks_uri.is_some(), "--jwks-uri"),
        (
            args.accept_issuer_trailing_slash,
            "--accept-issuer-trailing-slash",
        ),
        (args.accept_plain_jwt, "--accept-plain-jwt"),
    ];
    if let Some((_, flag)) = jwt_only.iter().find(|(set, _)| *set) {
        if args.issuer.is_none() {
            bail!("{flag} is about the tokens of an external issuer: give it with --issuer URL");
        }
        if args.introspection_url.is_some() {
            bail!(
                "{flag} is about JWT validation; with --introspection-url the tokens are introspected"
            );
        }
    }
    if (args.idp.idp_issuer.is_some() || !args.idp.settings_providers.is_empty())
        && (args.issuer.is_some() || args.introspection_url.is_some())
    {
        bail!(
            "identity providers (--idp-issuer, [[identity_providers]]) configure the embedded \
             authorization server; with an external one (--issuer or --introspection-url), \
             configure sign-in there"
        );
    }
    if !args.idp.settings_trusted_issuers.is_empty()
        && (args.issuer.is_some() || args.introspection_url.is_some())
    {
        bail!(
            "[[trusted_issuers]] configure the embedded authorization server; with an external \
             one (--issuer or --introspection-url), configure them there"
        );
    }
    if args.access_token_ttl.is_some()
        && (args.issuer.is_some() || args.introspection_url.is_some())
    {
        bail!(
            "--access-token-ttl sets the embedded authorization server's token lifetime; with an \
             external one (--issuer or --introspection-url), set it there"
        );
    }
    if args.access_token_ttl == Some(0) {
        bail!("--access-token-ttl must be at least 1 second");
    }
    if !args.audiences.is_empty() && args.issuer.is_none() && args.introspection_url.is_none() {
        bail!(
            "--audience is for the tokens of an external authorization server (--issuer or --introspection-url); the embedded one issues tokens for the MCP URL"
        );
    }
    let bind = args.bind.as_deref().unwrap_or(DEFAULT_BIND);
    let tcp = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen on {bind}"))?;
    let local = tcp.local_addr()?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => Some(tls::server_config(c, k)?),
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let resource = args
        .public_url
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{local}/mcp"));
    let resource_url =
        url::Url::parse(&resource).with_context(|| format!("{resource:?} is not a URL"))?;
    let origin = resource_url.origin().ascii_serialization();
    if resource_url.scheme() != "https" && !mcpauth_core::url_policy::is_loopback(&resource_url) {
        bail!(
            "the public URL {resource} must be https unless it is on loopback (MCP SPEC C30); use --tls-cert/--tls-key or a TLS proxy and --public-url https://…"
        );
    }
    if !local.ip().is_loopback() && tls.is_none() && resource_url.scheme() != "https" {
        bail!(
            "refusing to serve plain HTTP on {local}, which is not loopback; use --tls-cert/--tls-key"
        );
    }
    let mut scopes: Vec<String> = args.scopes.clone();
    let mut policy = ScopePolicy::new().require(args.scopes.clone());
    for ts in &args.tool_scopes {
        let Some((tool, scope)) = ts.split_once('=') else {
            bail!("--tool-scope takes TOOL=SCOPE, not {ts:?}");
        };
        policy = policy.tool(tool, [scope]);
        if !scopes.iter().any(|s| s == scope) {
            scopes.push(scope.to_owned());
        }
    }

    // Who issues and checks the tokens. External servers often name an API identifier in
    // `aud` rather than the MCP URL (MCP SPEC S5: still an audience check, on those values).
    let audiences = if args.audiences.is_empty() {
        vec![resource.clone()]
    } else {
        args.audiences.clone()
    };
    let mut demo_login = None;
    let mut vault_key = None;
    let (issuer, verifier, authserver): (String, Arc<dyn TokenVerifier>, Option<AuthServer>) =
        if let (Some(issuer), None) = (&args.issuer, &args.introspection_url) {
            let mut b = JwtVerifier::builder()
                .accept_issuer_trailing_slash(args.accept_issuer_trailing_slash)
                .accept_plain_jwt(args.accept_plain_jwt);
            b = match &args.jwks_uri {
                Some(jwks) => b.issuer_with_jwks(issuer, jwks),
                None => b.issuer(issuer),
            };
            for a in &audiences {
                b = b.audience(a);
            }
            let v = b.build()?;
            // The keys now, so that a wrong issuer or JWK set URL shows at start-up; the gateway
            // starts anyway (the identity provider may be down for a moment).
            if let Err(e) = v.prefetch().await {
                eprintln!(
                    "warning: cannot fetch the signing keys of {issuer} now: {e}; tokens are refused (503) until they can be fetched"
                );
            }
            (issuer.clone(), Arc::new(v), None)
        } else if let Some(url) = &args.introspection_url {
            let secret = match &args.client_secret_file {
                Some(f) => read_secret(f)?,
                None => std::env::var("MCPAUTH_CLIENT_SECRET")
                    .ok()
                    .filter(|s| !s.is_empty())
                    .map(mcpauth_core::ClientSecret::new)
                    .context("introspection needs the client secret (MCPAUTH_CLIENT_SECRET or --client-secret-file)")?,
            };
            let client_id = args.introspection_client_id.clone().unwrap_or_default();
            let v = IntrospectionVerifier::new(url, client_id, secret, audiences.clone())?;
            match &args.issuer {
                // RFC 7662 §2.2 `iss`, when the answer has one, must be the given issuer.
                Some(issuer) => (issuer.clone(), Arc::new(v.issuers([issuer])), None),
                None => {
                    let issuer = url::Url::parse(url)?.origin().ascii_serialization();
                    eprintln!(
                        "warning: the issuer published in the protected resource metadata, {issuer}, is guessed from the introspection URL; clients check it byte for byte (MCP SPEC C6), so pass --issuer with the authorization server's exact issuer identifier (e.g. https://HOST/realms/REALM for Keycloak)"
                    );
                    (issuer, Arc::new(v), None)
                }
            }
        } else {
            let (store, database) = if args.demo {
                if args.db.database.is_some() {
                    eprintln!(
                        "warning: --demo keeps its demo user in a throwaway in-memory database; \
                         the --database given (or MCPAUTH_DATABASE_URL) is not used"
                    );
                }
                (
                    Store::connect("sqlite::memory:").await?,
                    "sqlite::memory:".to_owned(),
                )
            } else {
                open_store(&args.db, None).await?
            };
            let mut config = Config::new(&origin);
            config.resources = vec![resource.clone()];
            config.scopes_supported = scopes.clone();
            config.dpop_nonces = args.dpop_nonce;
            if let Some(ttl) = args.access_token_ttl {
                config.access_token_ttl = Duration::from_secs(ttl);
            }
            vault_key = crate::commands::federation::configure(&args.idp, &database, &mut config)?;
            if args.demo {
                let password = mcpauth_core::random_urlsafe(12)?;
                admin::add_user(&store, "demo", &password, config.password_params).await?;
                demo_login = Some(password);
            }
            let server = AuthServer::new(config, store).await?;
            let jwt = JwtVerifier::builder()
                .issuer(&origin)
                .audience(&resource)
                .build()?;
            let v = embedded::EmbeddedVerifier {
                jwt,
                server: server.clone(),
            };
            (origin.clone(), Arc::new(v), Some(server))
        };

    let upstream_token = upstream_token(args, authserver.as_ref())?;
    let identity = identity_header(args, authserver.as_ref())?;
    let session_env = session_env(args, authserver.as_ref())?;
    let dpop = match args.dpop {
        Some(DpopMode::Require) => DpopPolicy::Require,
        _ => DpopPolicy::Allow,
    };
    // RFC 9449 §11.1, SPEC D7: the proofs seen, in a database every instance shares (the
    // embedded server's; with an external one, --database when given), else in memory.
    let replay_store = match (&authserver, &args.db.database) {
        (Some(server), _) => Some(server.store().clone()),
        (None, Some(_)) => Some(open_store(&args.db, None).await?.0),
        (None, None) => None,
    };
    let mut dpop = DpopConfig::new(dpop);
    if let Some(store) = &replay_store {
        dpop = dpop.replay_cache(embedded::StoreReplayCache(store.clone()));
    }
    // RFC 9449 §9, SPEC D7: the nonce key in the shared database (the embedded server's /token
    // hands out the same nonces), else one for this process.
    if args.dpop_nonce {
        dpop = dpop.nonces(match &replay_store {
            Some(store) => store.dpop_nonces().await?,
            None => NonceIssuer::random()?,
        });
    }
    let prm = ResourceMetadata::new(&resource, [issuer.clone()])?
        .scopes_supported(scopes.clone())
        .dpop(&dpop);
    let bearer = BearerAuthLayer::new(verifier, &prm)
        .scope_policy(policy)
        .dpop(dpop);
    let guard = OriginGuardLayer::new(&resource)?;
    let path = resource_url.path().to_owned();
    let mcp: Router = if args.demo {
        Router::new().route(&path, any(demo::handle))
    } else if !args.command.is_empty() {
        let upstream = Arc::new(stdio::StdioUpstream::new(
            args.command.clone(),
            stdio::Options::from_args(args)?,
            session_env,
        ));
        Router::new()
            .route(&path, any(stdio::handle))
            .with_state(upstream)
    } else {
        let upstream = Arc::new(proxy::Upstream {
            url: args.upstream.clone().unwrap_or_default(),
            headers: crate::config::parse_headers(
                args.upstream_headers.iter().map(String::as_str),
            )?,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(Duration::from_secs(10))
                .build()?,
            sessions: proxy::Sessions::default(),
            upstream_token,
            identity,
        });
        Router::new()
            .route(&path, any(proxy::forward))
            .with_state(upstream)
    };
    let mut app = mcp
        .route_layer(bearer)
        .route_layer(guard)
        .route_service(prm.metadata_path(), prm.service());
    app = match &authserver {
        Some(server) => app.merge(server.router()),
        None => app.route("/healthz", get(|| async { "ok" })),
    };
    // Off by default: a listener of its own, and the request metrics on every route.
    let metrics = match &args.metrics_bind {
        Some(bind) => Some(crate::metrics::serve(bind).await?),
        None => None,
    };
    if metrics.is_some() {
        app = app.layer(crate::metrics::HttpMetricsLayer);
    }
    let app =
        app.layer(middleware::from_fn(access_log))
            .layer(SetSensitiveRequestHeadersLayer::new([
                header::AUTHORIZATION,
                header::COOKIE,
                header::HeaderName::from_static("dpop"),
            ]));

    if authserver.is_none() && scopes.is_empty() {
        eprintln!(
            "warning: no scope configured: many identity providers refuse an authorization request without a scope (Entra ID, Okta, Google); pass --scope SCOPE with the scope your API defines there (e.g. --scope api://mcp/mcp.access for Entra ID)"
        );
    }
    eprintln!("mcpauth gateway");
    eprintln!("  MCP server:            {resource}");
    match (&args.upstream, args.command.is_empty()) {
        (Some(u), _) => eprintln!("  upstream:              {u}"),
        (None, false) => eprintln!("  upstream:              stdio: {}", args.command.join(" ")),
        (None, true) => {
            eprintln!("  upstream:              built-in demo (tools: echo, add, time)")
        }
    }
    eprintln!(
        "  authorization server:  {issuer}{}",
        if authserver.is_some() {
            " (embedded)"
        } else {
            ""
        }
    );
    if authserver.is_none() {
        eprintln!("  token audience:        {}", audiences.join(", "));
        match (&replay_store, &args.db.database) {
            (Some(_), Some(url)) => eprintln!(
                "  DPoP replay cache:     {} (shared by the instances using it)",
                redact_url(url)
            ),
            _ => eprintln!(
                "  DPoP replay cache:     this process's memory (several instances: give them one --database)"
            ),
        }
    }
    if let Some(addr) = metrics {
        eprintln!("  metrics:               http://{addr}/metrics");
    }
    if args.dpop_nonce {
        eprintln!(
            "  DPoP nonces:           required ({})",
            if replay_store.is_some() {
                "key in the database: instances sharing it accept each other's"
            } else {
                "key in this process's memory: one instance"
            }
        );
    }
    if let Some(server) = &authserver {
        crate::commands::federation::banner(server.config(), vault_key.as_deref());
    }
    if let Some(password) = &demo_login {
        let exe = std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "mcpauth".into());
        eprintln!("  demo login:            user demo, password {password}");
        eprintln!();
        eprintln!("Try, in another terminal:");
        eprintln!("  {exe} login {resource}");
        eprintln!("  {exe} tools {resource}");
        eprintln!("  {exe} call {resource} add '{{\"a\": 2, \"b\": 3}}'");
        eprintln!();
        eprintln!("Claude Desktop / Cursor (mcpServers):");
        eprintln!(
            "  {{\"mcpServers\": {{\"mcpauth-demo\": {{\"command\": \"{exe}\", \"args\": [\"connect\", \"{resource}\"]}}}}}}"
        );
    }
    eprintln!("Press Ctrl-C to stop.");
    let limits = args.connections.limits();
    match tls {
        Some(config) => {
            serve_router(
                tls::TlsListener::new(tcp, config, limits.max_connections)?,
                app,
                limits,
                shutdown_signal(),
            )
            .await?
        }
        None => serve_router(tcp, app, limits, shutdown_signal()).await?,
    }
    Ok(())
}
