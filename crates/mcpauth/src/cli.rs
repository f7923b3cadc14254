//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Printed at the end of `--help`.
const EXIT_CODES: &str = "\
Exit codes:
  0   success
  1   failure (network, server or configuration error)
  2   a login is needed (`mcpauth token` without a usable token; run `mcpauth login URL`)
  3   refused for safety: a check of the MCP authorization spec failed (issuer or iss mismatch,
      state mismatch, no PKCE S256, plain http to a remote host, resource mismatch), or the
      server takes only DPoP-bound tokens and DPoP is off
  4   the user or the authorization server denied access
  64  usage error
  130 interrupted (Ctrl-C)

Environment:
  MCPAUTH_HOME            where tokens are stored (default: the platform data directory)
  MCP_CLIENT_ID           use the client credentials grant with this client id
  MCP_CLIENT_SECRET       its secret (also MCPAUTH_CLIENT_SECRET, which wins)
  RUST_LOG                tracing filter for stderr, e.g. RUST_LOG=mcpauth_client=debug";

/// OAuth 2.1 for the Model Context Protocol: log in to protected MCP servers and use them.
#[derive(Debug, Parser)]
#[command(name = "mcpauth", version, after_help = EXIT_CODES, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Print data as JSON on stdout (for scripts).
    #[arg(long, global = true)]
    pub json: bool,
    /// More logging on stderr (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Where tokens live: `file` (private files under MCPAUTH_HOME), `memory` (this run only) or
    /// `keyring` (the OS keyring).
    #[arg(long, global = true, value_enum, default_value_t = StoreKind::File, env = "MCPAUTH_STORE")]
    pub store: StoreKind,
    /// A `mcpServers` JSON config file (Claude Desktop, Cursor, mcpo); targets may then be names.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The log's format on stderr: `text`, or `json` (one JSON object per line, with an RFC 3339
    /// timestamp).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Append the security events (sign-ins, consent, registrations, tokens issued, refreshed
    /// and revoked, refresh-token reuse, administration, refused requests) to FILE as JSON
    /// lines, created 0600; never a token, code, secret or password.
    #[arg(long, global = true, value_name = "FILE", env = "MCPAUTH_AUDIT_LOG")]
    pub audit_log: Option<PathBuf>,
}

/// `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// JSON lines.
    Json,
}

/// Token stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    /// Private files (0600 in a 0700 directory), locked across processes.
    File,
    /// Nothing is written; tokens last for this run.
    Memory,
    /// Tokens in the OS keyring (built with the `keyring` feature); falls back to `file` with a
    /// warning when no keyring service is running.
    Keyring,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Log in to MCP servers: discover, register, authorize in the browser, store the tokens.
    Login(LoginArgs),
    /// Print a fresh access token (refreshing it if needed) for scripts and curl.
    Token(TokenArgs),
    /// List stored logins.
    Status,
    /// Revoke and delete stored logins.
    Logout(LogoutArgs),
    /// Run discovery only and show every URL tried and why it was used or not.
    Discover(DiscoverArgs),
    /// List the tools of an MCP server (authenticating as needed).
    Tools(ToolsArgs),
    /// Call a tool of an MCP server and print its result.
    Call(CallArgs),
    /// Proxy stdio to a protected MCP server: use it as the `command` of an MCP client.
    Connect(ConnectArgs),
    /// Put OAuth in front of an MCP server: an HTTP upstream, or `--demo`.
    Gateway(Box<GatewayArgs>),
    /// Run the authorization server (SQLite by default, PostgreSQL for several instances).
    Serve(ServeArgs),
    /// Manage the authorization server's users.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Manage the authorization server's pre-registered clients.
    #[command(subcommand)]
    Clients(ClientsCommand),
    /// Manage the authorization server's signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// List and revoke what users allowed clients (the live grants).
    #[command(subcommand)]
    Grants(GrantsCommand),
}

/// `mcpauth connect`.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// The MCP server URL (or a name from --config).
    #[arg(required_unless_present = "print_config")]
    pub target: Option<String>,
    /// A header for every request, `Name: value` (repeatable; `${VAR}` is replaced from the
    /// environment, so secrets need not be on the command line).
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// A file of `Name: value` header lines.
    #[arg(long, value_name = "FILE")]
    pub header_file: Option<std::path::PathBuf>,
    /// Print the `mcpServers` entry for Claude Desktop / Cursor (`--print-config NAME URL`) and exit.
    #[arg(long, value_name = "NAME")]
    pub print_config: Option<String>,
    /// Authorize without a user: GET the authorization URL and take its redirect (for servers
    /// that approve by themselves, e.g. test servers).
    #[arg(long)]
    pub authorize_headless: bool,
    /// The MCP transport: `http-first` (Streamable HTTP, falling back to the 2024-11-05 HTTP+SSE
    /// transport when the server answers 404/405 to `initialize`), `sse-first`, `http-only`,
    /// `sse-only`.
    #[arg(long, value_enum, default_value_t = Transport::HttpFirst)]
    pub transport: Transport,
    /// Which era of MCP the server speaks, so that clients of the other era can use it: `auto`
    /// finds out from the server's answer to the first message (MCP 2026-07-28 "Versioning"
    /// §Backward Compatibility); `legacy` for servers with the `initialize` handshake (2025-11-25
    /// and earlier); `native` for stateless 2026-07-28 servers. When the client's era differs,
    /// mcpauth connect translates: handshake and `server/discover`, per-request `_meta`,
    /// subscriptions and the GET stream, server requests and `input_required` results.
    #[arg(long, value_enum, default_value_t = Protocol::Auto)]
    pub protocol: Protocol,
    /// When the server has lost the MCP session (HTTP 404, e.g. it restarted), start a new one by
    /// replaying the client's initialize, and retry the request (else the client gets an error).
    #[arg(long)]
    pub reinit: bool,
    /// Hide tools whose name matches this pattern (`*` and `?` wildcards; repeatable): they are
    /// left out of tools/list and calls to them are refused without reaching the server.
    #[arg(long = "ignore-tool", value_name = "GLOB")]
    pub ignore_tools: Vec<String>,
    /// Also write the log to this file (stderr keeps it too; stdout is only JSON-RPC).
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<std::path::PathBuf>,
    /// Authentication options.
    #[command(flatten)]
    pub auth: AuthArgs,
}

/// `mcpauth gateway`.
#[derive(Clone, Debug, Args)]
pub struct GatewayArgs {
    /// The MCP server to protect (Streamable HTTP), e.g. http://127.0.0.1:9000/mcp.
    #[arg(
        long,
        value_name = "URL",
        required_unless_present_any = ["demo", "command", "settings"],
        conflicts_with_all = ["demo", "command"]
    )]
    pub upstream: Option<String>,
    /// A stdio MCP server to serve over Streamable HTTP instead: `-- COMMAND ARGS…` (one process
    /// per MCP session, bound to the user who opened it).
    #[arg(last = true, value_name = "COMMAND", conflicts_with = "demo")]
    pub command: Vec<String>,
    /// Serve a built-in demo MCP server (tools echo, add, time) with a generated demo user, in a
    /// throwaway in-memory database (`--database` is not used).
    #[arg(long)]
    pub demo: bool,
    /// A header for every upstream request, `Name: value` (repeatable; `${VAR}` from the
    /// environment). The client's own Authorization is never passed on (MCP SPEC S5).
    #[arg(long = "upstream-header", value_name = "NAME: VALUE")]
    pub upstream_headers: Vec<String>,
    /// Give the upstream MCP server the signed-in user's access token at their identity
    /// provider in this header on every request (`Authorization` carries `Bearer TOKEN`, any
    /// other header the bare token), renewed by mcpauth when it expires within a minute; never
    /// the MCP client's token (SPEC F8). Needs the embedded authorization server with an
    /// identity provider, and --upstream. A user who signed in with a password gets 403.
    #[arg(long, value_name = "HEADER")]
    pub upstream_token: Option<String>,
    /// For a stdio MCP server: put the signed-in user's identity provider access token in this
    /// environment variable of each session's process (like --upstream-token). The process
    /// keeps the token it started with; when it expires, the client starts a new MCP session.
    #[arg(long, value_name = "NAME")]
    pub upstream_token_env: Option<String>,
    /// Tell the upstream MCP server who calls: this header carries a JWT (typ
    /// `mcp-identity+jwt`, 60 s) signed with the embedded authorization server's key, with
    /// `iss`, `aud` = the --upstream URL, `sub`, `email` and `name`, `iat`, `exp`, `jti`; the
    /// upstream verifies it with the issuer's JWK set (ISSUER/jwks). Never an unsigned user
    /// header a client could forge. For a stdio server, the JWT (`aud` = `stdio:COMMAND`) is in
    /// the process's MCPAUTH_IDENTITY instead, made when the session starts. Needs the
    /// embedded authorization server.
    #[arg(long, value_name = "HEADER")]
    pub identity_header: Option<String>,
    /// An environment variable for the stdio MCP server, `NAME=VALUE`, or `NAME` to pass on the
    /// gateway's own (repeatable). The server starts with a clean environment: only PATH,
    /// HOME, USER, LOGNAME, SHELL, LANG, LANGUAGE, LC_ALL, LC_CTYPE, LC_MESSAGES, TERM, TZ,
    /// TMPDIR, TMP, TEMP (and on Windows SYSTEMROOT, SYSTEMDRIVE, WINDIR, COMSPEC, PATHEXT,
    /// USERPROFILE, APPDATA, LOCALAPPDATA, PROGRAMDATA, PROGRAMFILES) pass, never the gateway's
    /// secrets (MCPAUTH_*) unless named here.
    #[arg(long = "upstream-env", value_name = "NAME[=VALUE]")]
    pub upstream_env: Vec<String>,
    /// Most stdio MCP sessions (each a process) one user may hold at once; more `initialize`
    /// requests are answered 429 [default: 8].
    #[arg(long, value_name = "N")]
    pub max_sessions_per_user: Option<usize>,
    /// Most stdio MCP sessions (each a process) all users together may hold at once [default:
    /// 64].
    #[arg(long, value_name = "N")]
    pub max_sessions: Option<usize>,
    /// Seconds a stdio MCP session may go without a request before its process is ended (its
    /// id then gets 404; an open GET stream alone does not count as a request) [default: 600].
    #[arg(long, value_name = "SECS")]
    pub session_idle_timeout: Option<u64>,
    /// Address to listen on (loopback unless told otherwise; default 127.0.0.1:8090).
    #[arg(long)]
    pub bind: Option<String>,
    /// The URL clients use, if not http(s)://the bound address (e.g. behind a TLS proxy).
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
    /// Use this external authorization server (identity provider) instead of the embedded one:
    /// its issuer identifier exactly as its metadata spells it (Keycloak
    /// `https://HOST/realms/REALM`, Okta `https://ORG.okta.com/oauth2/default`, Entra
    /// `https://login.microsoftonline.com/TENANT/v2.0`, Auth0 `https://TENANT.auth0.com/` with the
    /// slash). Published in the protected resource metadata; JWTs are checked with its keys
    /// (or, with --introspection-url, by introspection).
    #[arg(long, value_name = "URL")]
    pub issuer: Option<String>,
    /// An accepted token audience (repeatable; default: the MCP URL). Entra, Okta and Auth0 put
    /// the API's identifier in `aud` (e.g. `api://mcp` or `https://api.example.com`), not the MCP
    /// URL. Only with --issuer or --introspection-url.
    #[arg(long = "audience", value_name = "VALUE")]
    pub audiences: Vec<String>,
    /// The issuer's JWK set URL, when its metadata (RFC 8414 / OpenID Discovery) is not at the
    /// standard place or not reachable (default: the metadata's jwks_uri). Only with --issuer.
    #[arg(long, value_name = "URL")]
    pub jwks_uri: Option<String>,
    /// Also accept `iss` (and a metadata `issuer`) that differs from --issuer only by one
    /// trailing slash. Without it, issuers must match byte for byte.
    #[arg(long)]
    pub accept_issuer_trailing_slash: bool,
    /// Also accept JWT access tokens whose header `typ` is `JWT` or missing (Entra ID, Okta,
    /// Keycloak and Auth0 by default), not only `at+jwt` (RFC 9068 §2.1).
    #[arg(long)]
    pub accept_plain_jwt: bool,
    /// DPoP (RFC 9449): `allow` (default) serves a token bound to a key (`cnf.jkt`) only with
    /// the DPoP scheme and a fresh proof by that key, and bearer tokens as before; `require`
    /// refuses every token that is not DPoP-bound. The embedded authorization server binds a
    /// token when the client sends a DPoP proof to its token endpoint.
    #[arg(long, value_name = "MODE")]
    pub dpop: Option<DpopMode>,
    /// DPoP proofs must carry a nonce the gateway handed out (RFC 9449 §9; at the embedded
    /// server's /token too, §8): one without, or older than about two minutes, gets 401
    /// `use_dpop_nonce` and a fresh `DPoP-Nonce` (every answer carries the current one).
    /// Instances sharing a --database accept each other's nonces.
    #[arg(long)]
    pub dpop_nonce: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics, a listener of their own (e.g.
    /// 127.0.0.1:9464); off by default. No label carries a token, user, client or address.
    #[arg(long, value_name = "ADDR")]
    pub metrics_bind: Option<String>,
    /// Lifetime of the embedded authorization server's access tokens in seconds (default
    /// 3600); clients refresh them when they run out.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub access_token_ttl: Option<u64>,
    /// Validate tokens by RFC 7662 introspection here instead (client id in
    /// --introspection-client-id, secret from MCPAUTH_CLIENT_SECRET or --client-secret-file).
    /// Give --issuer too: the issuer clients are sent to is otherwise guessed from this URL's
    /// origin, which is wrong for Keycloak realms and Okta.
    /// Active answers are cached for 30 s: a token revoked at that server may still be
    /// accepted for up to 30 s. (With the embedded server, a revoked token is refused at once;
    /// with --issuer alone, JWTs are accepted until they expire.)
    #[arg(long, value_name = "URL", requires = "introspection_client_id")]
    pub introspection_url: Option<String>,
    /// The gateway's client id at the introspection endpoint (at `mcpauth serve`, a resource
    /// server for the gateway's MCP URL: `mcpauth clients add --introspection URL`).
    #[arg(long)]
    pub introspection_client_id: Option<String>,
    /// A file holding the introspection client's secret.
    #[arg(long, value_name = "FILE")]
    pub client_secret_file: Option<PathBuf>,
    /// A scope every request needs (repeatable).
    #[arg(long = "scope")]
    pub scopes: Vec<String>,
    /// A scope one tool needs, `TOOL=SCOPE` (repeatable).
    #[arg(long = "tool-scope", value_name = "TOOL=SCOPE")]
    pub tool_scopes: Vec<String>,
    /// TLS certificate chain (PEM).
    #[arg(long, requires = "tls_key", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, requires = "tls_cert", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// A TOML file with these settings (`upstream` or `command`, `bind`, `public_url`, `issuer`,
    /// `audiences`, `jwks_uri`, `accept_issuer_trailing_slash`, `accept_plain_jwt`, `dpop`,
    /// `dpop_nonce`, `access_token_ttl`,
    /// `introspection_url`, `introspection_client_id`, `scopes`, `upstream_headers`,
    /// `upstream_token`, `upstream_token_env`, `identity_header`,
    /// `upstream_env`, `max_sessions_per_user`, `max_sessions`, `session_idle_timeout`, and a
    /// `[tool_scopes]` table of tool = ["scope", …], and for the embedded server
    /// `[[identity_providers]]` and `[[trusted_issuers]]` as in serve's); flags win.
    #[arg(long, value_name = "FILE")]
    pub settings: Option<PathBuf>,
    /// The embedded authorization server's database.
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// Connection timeouts and cap.
    #[command(flatten)]
    pub connections: ConnectionArgs,
    /// The embedded authorization server's sign-in through an upstream OpenID Connect provider.
    #[command(flatten)]
    pub idp: IdpArgs,
}

/// Which tokens the gateway wants DPoP proofs for (`--dpop`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DpopMode {
    /// Bound tokens need their proof; bearer tokens pass.
    Allow,
    /// Only DPoP-bound tokens with their proof.
    Require,
}

/// MCP transports for `mcpauth connect`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Transport {
    /// Streamable HTTP, then HTTP+SSE on 404/405.
    HttpFirst,
    /// HTTP+SSE, then Streamable HTTP if no event stream opens.
    SseFirst,
    /// Streamable HTTP only.
    HttpOnly,
    /// HTTP+SSE (2024-11-05) only.
    SseOnly,
}

/// The MCP era of the server behind `mcpauth connect`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    /// Find out from the server's answers.
    Auto,
    /// `initialize` handshake and sessions (2025-11-25 and earlier).
    Legacy,
    /// Stateless, `_meta` on every request (2026-07-28).
    Native,
}

/// Limits on what one HTTP client can make a server hold (slowloris protection).
#[derive(Clone, Debug, Default, Args)]
pub struct ConnectionArgs {
    /// Seconds a client may take to send a request's headers, from their first byte (from the
    /// connection's start for the first request), before the connection is closed [default: 10].
    #[arg(long, value_name = "SECS")]
    pub header_timeout: Option<u64>,
    /// Seconds a client may take to send a request's body (answered 400 after that)
    /// [default: 30].
    #[arg(long, value_name = "SECS")]
    pub body_timeout: Option<u64>,
    /// Seconds a connection may stay open with no request in flight (open SSE streams count as
    /// in flight) [default: 60].
    #[arg(long, value_name = "SECS")]
    pub idle_timeout: Option<u64>,
    /// Most connections open at once; more wait in the listen backlog [default: 1024]. With TLS,
    /// as many again may be in their handshake (at most 10 s each).
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
}

impl ConnectionArgs {
    /// The limits: the defaults with these flags applied.
    pub fn limits(&self) -> mcpauth_authserver::ConnectionLimits {
        let mut l = mcpauth_authserver::ConnectionLimits::default();
        let secs = std::time::Duration::from_secs;
        if let Some(s) = self.header_timeout {
            l.header_read_timeout = secs(s.max(1));
        }
        if let Some(s) = self.body_timeout {
            l.body_read_timeout = secs(s.max(1));
        }
        if let Some(s) = self.idle_timeout {
            l.idle_timeout = secs(s.max(1));
        }
        if let Some(n) = self.max_connections {
            l.max_connections = n.max(1);
        }
        l
    }
}

/// Where the authorization server keeps its state.
#[derive(Clone, Debug, Default, Args)]
pub struct DatabaseArgs {
    /// `sqlite://PATH?mode=rwc` or `postgres://…` (default: authserver.db in MCPAUTH_HOME or the
    /// platform data directory).
    #[arg(long, env = "MCPAUTH_DATABASE_URL")]
    pub database: Option<String>,
}

/// `mcpauth serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (loopback unless told otherwise).
    #[arg(long)]
    pub bind: Option<String>,
    /// The issuer URL (default: http(s)://the bound address).
    #[arg(long)]
    pub issuer: Option<String>,
    /// An MCP server URI tokens may be issued for (repeatable; RFC 8707 `resource`).
    #[arg(long = "resource", value_name = "URL")]
    pub resources: Vec<String>,
    /// A scope to offer (repeatable; none: any scope).
    #[arg(long = "scope")]
    pub scopes: Vec<String>,
    /// TLS certificate chain (PEM); with --tls-key, serve HTTPS.
    #[arg(long, requires = "tls_key", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, requires = "tls_cert", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Dynamic client registration: `open` (rate-limited), `token` (needs an initial access token
    /// from MCPAUTH_REGISTRATION_TOKEN or --registration-token-file) or `disabled`.
    #[arg(long, value_enum)]
    pub registration: Option<Registration>,
    /// A file holding the initial access token for `--registration token`.
    #[arg(long, value_name = "FILE")]
    pub registration_token_file: Option<PathBuf>,
    /// Days a dynamically registered client lives unused (default 90; 0: never expires). Each
    /// use at /token restarts it; an expired client is unknown and deleted.
    #[arg(long, value_name = "DAYS")]
    pub dynamic_client_ttl: Option<u64>,
    /// Access token lifetime in seconds (default 3600).
    #[arg(long)]
    pub access_token_ttl: Option<u64>,
    /// Signing algorithm of new keys: ES256 (default) or EdDSA.
    #[arg(long)]
    pub signing_alg: Option<String>,
    /// A network whose addresses client metadata documents may resolve to (repeatable; for
    /// development, e.g. 127.0.0.0/8). Private and loopback addresses are refused otherwise.
    #[arg(long = "allow-fetch-network", value_name = "CIDR")]
    pub allow_fetch_networks: Vec<String>,
    /// A reverse proxy's network (repeatable, e.g. 10.0.0.0/8): from a peer in it, rate limits
    /// key on the right-most X-Forwarded-For (or Forwarded: for=) address that is not a trusted
    /// proxy. Without it those headers are ignored.
    #[arg(long = "trusted-proxy", value_name = "CIDR")]
    pub trusted_proxies: Vec<String>,
    /// Turn off the rate limits on /register, /token, /authorize and logins (benchmarks only).
    #[arg(long)]
    pub no_rate_limits: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics, a listener of their own (e.g.
    /// 127.0.0.1:9464); off by default. No label carries a token, user, client or address.
    #[arg(long, value_name = "ADDR")]
    pub metrics_bind: Option<String>,
    /// A DPoP proof at /token must carry a nonce this server handed out (RFC 9449 §8): a proof
    /// without one, or with one older than about two minutes, gets 400 `use_dpop_nonce` and a
    /// fresh `DPoP-Nonce`. Limits how far ahead a stolen key's proofs can be made. Nonces are
    /// stateless under a key in the database: instances sharing it accept each other's.
    #[arg(long)]
    pub dpop_nonce: bool,
    /// A TOML file with any of these settings (flags win).
    #[arg(long, value_name = "FILE")]
    pub settings: Option<PathBuf>,
    /// The database.
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// Connection timeouts and cap.
    #[command(flatten)]
    pub connections: ConnectionArgs,
    /// Sign-in through an upstream OpenID Connect provider.
    #[command(flatten)]
    pub idp: IdpArgs,
}

/// Sign-in through an upstream OpenID Connect provider (federation, SPEC F1-F8).
#[derive(Clone, Debug, Default, Args)]
pub struct IdpArgs {
    /// The provider's OIDC issuer, e.g. `https://accounts.google.com`: users may sign in there.
    /// Register the redirect URI printed at start-up with it.
    #[arg(long, value_name = "URL", requires = "idp_client_id")]
    pub idp_issuer: Option<String>,
    /// Our client id at the provider.
    #[arg(long, value_name = "ID", requires = "idp_issuer")]
    pub idp_client_id: Option<String>,
    /// A file holding our client secret at the provider (or MCPAUTH_IDP_CLIENT_SECRET).
    #[arg(long, value_name = "FILE", requires = "idp_issuer")]
    pub idp_client_secret_file: Option<PathBuf>,
    /// The provider's URL-safe name, the prefix of its users' names (default: from its host).
    #[arg(long, value_name = "NAME", requires = "idp_issuer")]
    pub idp_name: Option<String>,
    /// What the login page's button and the start-up banner call the provider, e.g.
    /// "Google" (default: its host).
    #[arg(long, value_name = "TEXT", requires = "idp_issuer")]
    pub idp_display_name: Option<String>,
    /// A scope to request (repeatable; default: openid email profile).
    #[arg(long = "idp-scope", value_name = "SCOPE", requires = "idp_issuer")]
    pub idp_scopes: Vec<String>,
    /// Let in accounts with a verified e-mail address in this domain (repeatable).
    #[arg(
        long = "idp-allow-domain",
        value_name = "DOMAIN",
        requires = "idp_issuer"
    )]
    pub idp_allow_domains: Vec<String>,
    /// Let in the account with this verified e-mail address (repeatable).
    #[arg(
        long = "idp-allow-email",
        value_name = "EMAIL",
        requires = "idp_issuer"
    )]
    pub idp_allow_emails: Vec<String>,
    /// Let in accounts whose claim NAME is VALUE or, for a list such as groups, contains it
    /// (repeatable), e.g. hd=example.com or groups=admins.
    #[arg(
        long = "idp-allow-claim",
        value_name = "NAME=VALUE",
        requires = "idp_issuer"
    )]
    pub idp_allow_claims: Vec<String>,
    /// Let in every account of the provider (required when no other --idp-allow-* is given).
    #[arg(long, requires = "idp_issuer")]
    pub idp_allow_any: bool,
    /// Turn off password sign-in: users sign in through identity providers only.
    #[arg(long)]
    pub no_password_login: bool,
    /// The key sealing the identity providers' tokens at rest (SPEC F5), created with mode 0600
    /// when missing; give every instance sharing a database the same file [default: beside a
    /// SQLite database, DB.vault-key; otherwise authserver.vault-key beside the token store].
    #[arg(long, value_name = "FILE")]
    pub vault_key_file: Option<PathBuf>,
    /// The `[[identity_providers]]` of the settings file.
    #[arg(skip)]
    pub settings_providers: Vec<crate::commands::federation::IdpSettings>,
    /// The settings file's `password_login`.
    #[arg(skip)]
    pub settings_password_login: Option<bool>,
    /// The `[[trusted_issuers]]` of the settings file (JWT bearer grant).
    #[arg(skip)]
    pub settings_trusted_issuers: Vec<crate::commands::trust::TrustSettings>,
}

/// Dynamic registration policies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Registration {
    /// Anyone, rate-limited.
    Open,
    /// Only with the initial access token.
    Token,
    /// No dynamic registration.
    Disabled,
}

/// `mcpauth users`.
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Add a user; the password is read from --password-file or the first line of stdin.
    Add {
        /// The login name.
        username: String,
        /// A file holding the password (never pass it on the command line).
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
        /// The database.
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// List users.
    List {
        /// The database.
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Remove a user.
    Remove {
        /// The login name.
        username: String,
        /// The database.
        #[command(flatten)]
        db: DatabaseArgs,
    },
}

/// `mcpauth clients`.
#[derive(Debug, Subcommand)]
pub enum ClientsCommand {
    /// Pre-register a client; a generated secret is printed once.
    Add {
        /// The client id (default: generated).
        #[arg(long)]
        id: Option<String>,
        /// The name shown on the consent page.
        #[arg(long)]
        name: Option<String>,
        /// none, client_secret_basic, client_secret_post or private_key_jwt.
        #[arg(long, default_value = "client_secret_basic")]
        auth_method: String,
        /// A redirect URI (repeatable).
        #[arg(long = "redirect-uri", value_name = "URL")]
        redirect_uris: Vec<String>,
        /// A grant type (repeatable; default: authorization_code, refresh_token, and
        /// client_credentials for confidential clients).
        #[arg(long = "grant-type")]
        grant_types: Vec<String>,
        /// The most the client may ask for (space-separated).
        #[arg(long)]
        scope: Option<String>,
        /// A JWK set file with the client's public keys (private_key_jwt).
        #[arg(long, value_name = "FILE")]
        jwks_file: Option<PathBuf>,
        /// Where the client's public keys are (private_key_jwt).
        #[arg(long, value_name = "URL")]
        jwks_uri: Option<String>,
        /// Make this client a resource server for RESOURCE (repeatable): it may introspect
        /// (RFC 7662) the access tokens issued for that resource (their audience), and only
        /// those. Other clients, and other tokens, are answered {"active": false}.
        #[arg(long = "introspection", value_name = "RESOURCE")]
        introspection: Vec<String>,
        /// The database.
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// List clients.
    List {
        /// The database.
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Remove a client.
    Remove {
        /// The client id (one that starts with `-` is an id too).
        #[arg(allow_hyphen_values = true)]
        client_id: String,
        /// The database.
        #[command(flatten)]
        db: DatabaseArgs,
    },
}

/// `mcpauth keys`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a new signing key; the current one stays published as previous.
    Rotate {
        /// ES256 (default) or EdDSA.
        #[arg(long)]
        alg: Option<String>,
        /// The database.
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// List signing keys.
    List {
        /// The database.
        #[command(flatten)]
        db: DatabaseArgs,
    },
}

/// `mcpauth grants`.
#[derive(Debug, Subcommand)]
pub enum GrantsCommand {
    /// List the live grants: one per authorization that still holds a refresh token (user,
    /// client, scope, resource, when granted and last refreshed).
    List {
        /// Only this user's (a login name; `PROVIDER:SUB` for a federated user).
        #[arg(long, value_name = "USERNAME")]
        user: Option<String>,
        /// The database.
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Revoke a grant: its refresh token and access tokens (running servers on the database
    /// refuse them within 2 s) and the user's consent for that client.
    Revoke {
        /// The grant's id, from `mcpauth grants list` (one that starts with `-` is an id too).
        #[arg(allow_hyphen_values = true)]
        id: String,
        /// The database.
        #[command(flatten)]
        db: DatabaseArgs,
    },
}

/// How to authenticate (shared by the commands that may need a token).
#[derive(Clone, Debug, Default, Args)]
pub struct AuthArgs {
    /// Scopes to request (space-separated) instead of what the server suggests.
    #[arg(long)]
    pub scope: Option<String>,
    /// The RFC 8707 `resource` to send instead of the discovered one.
    #[arg(long, conflicts_with = "no_resource")]
    pub resource: Option<String>,
    /// Send no `resource` parameter (for servers that reject it, such as some Entra setups).
    #[arg(long)]
    pub no_resource: bool,
    /// An extra authorization request parameter, `k=v` (repeatable), e.g. `audience=api`.
    #[arg(long = "authorize-param", value_name = "K=V")]
    pub authorize_params: Vec<String>,
    /// A pre-registered client id.
    #[arg(long)]
    pub client_id: Option<String>,
    /// A file holding the client secret (never pass a secret on the command line).
    #[arg(long, value_name = "FILE")]
    pub client_secret_file: Option<PathBuf>,
    /// A PEM private key for `private_key_jwt` client authentication (RFC 7523).
    #[arg(long, value_name = "FILE")]
    pub private_key: Option<PathBuf>,
    /// A JSON file with a pre-registered client: client_id, client_secret, token_endpoint_auth_method, issuer.
    #[arg(long, value_name = "FILE")]
    pub static_client: Option<PathBuf>,
    /// This client's metadata document URL (a URL client id, used where the server supports it).
    #[arg(long, value_name = "URL")]
    pub client_metadata_url: Option<String>,
    /// Use the client credentials grant (no browser); needs a client id and secret or key.
    #[arg(long)]
    pub client_credentials: bool,
    /// Enterprise-managed authorization (SEP-990): a file with the user's ID token from the
    /// enterprise IdP, exchanged there for an ID-JAG (RFC 8693) that the MCP authorization server
    /// takes as a JWT bearer grant (RFC 7523). Needs the --idp-* options and a --client-id.
    #[arg(long, value_name = "FILE", requires_all = ["idp_token_endpoint", "idp_issuer", "idp_client_id"])]
    pub id_token_file: Option<PathBuf>,
    /// The enterprise IdP's token endpoint (with --id-token-file).
    #[arg(long, value_name = "URL")]
    pub idp_token_endpoint: Option<String>,
    /// The enterprise IdP's issuer (with --id-token-file).
    #[arg(long, value_name = "URL")]
    pub idp_issuer: Option<String>,
    /// This client's id at the enterprise IdP (with --id-token-file).
    #[arg(long, value_name = "ID")]
    pub idp_client_id: Option<String>,
    /// Workload identity federation (SEP-1933): a file holding the workload's JWT (a Kubernetes
    /// projected service-account token, a CI OIDC token), sent as an RFC 7523 JWT bearer grant.
    /// Read again for every new token. No registration and no client secret.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["workload_token_command", "client_credentials", "id_token_file", "device", "paste"])]
    pub workload_token_file: Option<PathBuf>,
    /// Workload identity federation (SEP-1933): a command (run with `sh -c`) whose output is
    /// the workload's JWT; run again for every new token.
    #[arg(long, value_name = "CMD", conflicts_with_all = ["client_credentials", "id_token_file", "device", "paste"])]
    pub workload_token_command: Option<String>,
    /// Paste the redirect URL instead of running a local listener.
    #[arg(long, conflicts_with = "device")]
    pub paste: bool,
    /// Use the device authorization grant (RFC 8628): approve on any other device.
    #[arg(long)]
    pub device: bool,
    /// Do not open a browser; print the URL only.
    #[arg(long)]
    pub no_browser: bool,
    /// Host of the local callback listener.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port of the local callback listener (0 or unset: any free port).
    #[arg(long)]
    pub port: Option<u16>,
    /// Path of the local callback listener.
    #[arg(long, default_value = "/callback")]
    pub callback_path: String,
    /// Seconds to wait for the browser.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// Allow plain http to non-loopback hosts (development only; MCP SPEC C31).
    #[arg(long)]
    pub allow_http: bool,
    /// Do not bind tokens to a DPoP key, even where both servers support it
    /// (RFC 9449): plain Bearer tokens.
    #[arg(long)]
    pub no_dpop: bool,
}

/// `mcpauth login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// MCP server URLs, or names from --config (none with --config: every server with a URL).
    pub targets: Vec<String>,
    /// Authentication options.
    #[command(flatten)]
    pub auth: AuthArgs,
}

/// `mcpauth token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The MCP server URL (or a name from --config).
    pub target: String,
    /// Print `Authorization: Bearer …` instead of the bare token. A DPoP-bound token also needs
    /// --method and --url: then the `Authorization: DPoP …` and `DPoP: <proof>` lines for that
    /// one request (RFC 9449 §7.1).
    #[arg(long)]
    pub header: bool,
    /// The HTTP method of the request the header is for (with --header).
    #[arg(long, requires_all = ["header", "url"], value_name = "M")]
    pub method: Option<String>,
    /// The URL of the request the header is for (with --header).
    #[arg(long, requires_all = ["header", "method"], value_name = "U")]
    pub url: Option<String>,
    /// The nonce to put in the DPoP proof (with --method and --url): the `DPoP-Nonce` header of
    /// the server's last answer, when it refused a proof with `use_dpop_nonce` (RFC 9449 §9).
    #[arg(long, requires_all = ["method", "url"], value_name = "NONCE", value_parser = dpop_nonce)]
    pub nonce: Option<String>,
    /// Start a login if no token can be refreshed (default: exit 2).
    #[arg(long)]
    pub login: bool,
    /// Authentication options.
    #[command(flatten)]
    pub auth: AuthArgs,
}

/// `mcpauth logout`.
#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// The MCP server URL (or a name from --config).
    #[arg(required_unless_present = "all")]
    pub target: Option<String>,
    /// Every stored login.
    #[arg(long, conflicts_with = "target")]
    pub all: bool,
    /// Authentication options (for revocation with a confidential client).
    #[command(flatten)]
    pub auth: AuthArgs,
}

/// `mcpauth discover`.
#[derive(Debug, Args)]
pub struct DiscoverArgs {
    /// The MCP server URL (or a name from --config).
    pub target: String,
    /// Allow plain http to non-loopback hosts (development only).
    #[arg(long)]
    pub allow_http: bool,
}

/// `mcpauth tools`.
#[derive(Debug, Args)]
pub struct ToolsArgs {
    /// The MCP server URL (or a name from --config).
    pub target: String,
    /// Authentication options.
    #[command(flatten)]
    pub auth: AuthArgs,
}

/// `mcpauth call`.
#[derive(Debug, Args)]
pub struct CallArgs {
    /// The MCP server URL (or a name from --config).
    pub target: String,
    /// The tool name.
    pub tool: String,
    /// The arguments as a JSON object.
    #[arg(default_value = "{}")]
    pub arguments: String,
    /// Authentication options.
    #[command(flatten)]
    pub auth: AuthArgs,
}

/// `--nonce`: a DPoP nonce as a server hands it out (RFC 9449 §8.1 syntax).
fn dpop_nonce(value: &str) -> Result<String, String> {
    if mcpauth_client::dpop::valid_nonce(value) {
        Ok(value.to_owned())
    } else {
        Err(format!(
            "not a DPoP nonce: a nonce is 1 to {} visible ASCII characters, no spaces \
             (RFC 9449 §8.1); copy the server's DPoP-Nonce header value",
            mcpauth_core::dpop::MAX_NONCE_BYTES
        ))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// Grant and client ids are random base64url and start with `-` one time in 64: they are
    /// ids, not flags (CI once failed `grants revoke -Q…` with a usage error).
    #[test]
    fn ids_that_start_with_a_dash_are_ids() {
        let cli = Cli::try_parse_from(["mcpauth", "grants", "revoke", "-QxUd7", "--database", "x"])
            .unwrap();
        assert!(
            matches!(cli.command, Command::Grants(GrantsCommand::Revoke { id, .. }) if id == "-QxUd7")
        );
        let cli = Cli::try_parse_from(["mcpauth", "clients", "remove", "-abc"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Clients(ClientsCommand::Remove { client_id, .. }) if client_id == "-abc"
        ));
    }
}
