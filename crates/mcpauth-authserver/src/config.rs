//! Configuration of the authorization server: who it is, what it issues tokens for, and its
//! policies. Built by the `mcpauth serve` command from flags and its config file.

use std::net::IpAddr;
use std::time::Duration;

use mcpauth_core::url_policy::{is_loopback, parse_url};

use crate::error::AuthServerError;

/// The algorithm of the access-token signing key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SigningAlg {
    /// ECDSA with P-256 and SHA-256 (the default).
    #[default]
    Es256,
    /// Ed25519.
    EdDsa,
}

impl SigningAlg {
    /// The JOSE name (`ES256`, `EdDSA`).
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlg::Es256 => "ES256",
            SigningAlg::EdDsa => "EdDSA",
        }
    }

    /// Parses a JOSE name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ES256" => Some(SigningAlg::Es256),
            "EdDSA" => Some(SigningAlg::EdDsa),
            _ => None,
        }
    }
}

/// Who may use the RFC 7591 registration endpoint.
#[derive(Clone, Default)]
pub enum RegistrationPolicy {
    /// Anyone, subject to the `/register` rate limit (the default).
    #[default]
    Open,
    /// Only requests bearing this initial access token (RFC 7591 §3).
    InitialAccessToken(String),
    /// No dynamic registration; `/register` is not advertised.
    Disabled,
}

impl std::fmt::Debug for RegistrationPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegistrationPolicy::Open => f.write_str("Open"),
            RegistrationPolicy::InitialAccessToken(_) => {
                f.write_str("InitialAccessToken(<redacted>)")
            }
            RegistrationPolicy::Disabled => f.write_str("Disabled"),
        }
    }
}

/// An IP network such as `127.0.0.0/8` or `fd00::/8`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Parses `ADDR/PREFIX` or a single address.
    pub fn parse(s: &str) -> Result<Self, AuthServerError> {
        let bad = || AuthServerError::Config(format!("{s:?} is not an IP address or network"));
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().map_err(|_| bad())?)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(bad());
        }
        Ok(Self { addr, prefix })
    }

    /// Whether `ip` is inside the network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// How client ID metadata documents (and `jwks_uri` documents) are fetched (MCP SPEC A9, A10).
#[derive(Clone, Debug)]
pub struct FetchPolicy {
    /// Whether URL client ids are accepted at all (`client_id_metadata_document_supported`).
    pub enabled: bool,
    /// Networks that may be fetched although they are loopback, private, link-local, unique
    /// local or CGNAT: a development escape hatch, empty by default.
    pub allow_networks: Vec<IpNet>,
    /// Extra trusted root certificates (PEM) for those fetches, for development and tests.
    pub extra_root_certs_pem: Vec<String>,
    /// Largest accepted document, in bytes.
    pub max_bytes: usize,
    /// Time limit of one fetch, connection included.
    pub timeout: Duration,
    /// Cache lifetime when the response has no `Cache-Control: max-age`.
    pub default_cache: Duration,
    /// Longest cache lifetime, whatever the response says.
    pub max_cache: Duration,
}

impl Default for FetchPolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            allow_networks: Vec::new(),
            extra_root_certs_pem: Vec::new(),
            max_bytes: 64 * 1024,
            timeout: Duration::from_secs(5),
            default_cache: Duration::from_secs(300),
            max_cache: Duration::from_secs(24 * 3600),
        }
    }
}

/// A token bucket: `burst` requests at once, refilled at `per_minute`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    /// Bucket size.
    pub burst: u32,
    /// Refill rate.
    pub per_minute: u32,
}

impl RateLimit {
    /// A limit of `burst` at once and `per_minute` sustained.
    pub const fn new(burst: u32, per_minute: u32) -> Self {
        Self { burst, per_minute }
    }
}

/// Rate limits per client IP address and per client id; `None` turns one off.
#[derive(Clone, Debug)]
pub struct RateLimits {
    /// `/authorize` and the login and consent forms, per IP.
    pub authorize_per_ip: Option<RateLimit>,
    /// Login attempts per IP: every password check counts, right or wrong, so this bounds both
    /// guessing and the argon2 work one address can cause.
    pub login_per_ip: Option<RateLimit>,
    /// `/token`, per IP.
    pub token_per_ip: Option<RateLimit>,
    /// `/token`, per client id.
    pub token_per_client: Option<RateLimit>,
    /// `/register`, per IP.
    pub register_per_ip: Option<RateLimit>,
    /// Device authorizations started (`/device_authorization`, RFC 8628 §3.1), per IP: each is
    /// a pending row until it expires, so this bounds what one address can make the server
    /// hold (about `burst` + `per_minute` × the device code lifetime in minutes).
    pub device_per_ip: Option<RateLimit>,
}

impl RateLimits {
    /// No rate limits (for benchmarks).
    pub fn none() -> Self {
        Self {
            authorize_per_ip: None,
            login_per_ip: None,
            token_per_ip: None,
            token_per_client: None,
            register_per_ip: None,
            device_per_ip: None,
        }
    }
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            authorize_per_ip: Some(RateLimit::new(60, 120)),
            login_per_ip: Some(RateLimit::new(10, 10)),
            token_per_ip: Some(RateLimit::new(600, 6000)),
            token_per_client: Some(RateLimit::new(300, 3000)),
            register_per_ip: Some(RateLimit::new(20, 10)),
            // A device flow ends in a sign-in (10 per minute per IP): 130 live codes at most
            // with the default 10-minute lifetime, instead of the /token limit's 60,000.
            device_per_ip: Some(RateLimit::new(30, 10)),
        }
    }
}

/// Argon2id cost parameters for user passwords.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PasswordParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for PasswordParams {
    /// The OWASP recommendation: 19 MiB, 2 passes, 1 lane.
    fn default() -> Self {
        Self {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

impl PasswordParams {
    /// Cheap parameters for tests only.
    pub fn insecure_for_tests() -> Self {
        Self {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        }
    }
}

/// Everything the authorization server needs besides its [`Store`](crate::Store).
#[derive(Clone, Debug)]
pub struct Config {
    /// The issuer identifier, e.g. `https://auth.example.com` or `http://127.0.0.1:8080`. The
    /// endpoints live under it; a path is allowed (metadata is then path-aware, RFC 8414 §3.1).
    pub issuer: String,
    /// The resources (MCP server URIs) tokens may be issued for (RFC 8707). When exactly one is
    /// configured, requests without `resource` get it; with none, tokens carry the issuer as
    /// audience.
    pub resources: Vec<String>,
    /// Scopes offered (`scopes_supported`); empty means any scope is accepted.
    pub scopes_supported: Vec<String>,
    /// Access token lifetime (MCP SPEC A6: short).
    pub access_token_ttl: Duration,
    /// Refresh token lifetime (sliding: each rotation starts it again).
    pub refresh_token_ttl: Duration,
    /// After a refresh token was rotated, how long presenting it again returns the same
    /// successor instead of revoking the family (concurrent refreshes).
    pub refresh_grace: Duration,
    /// Authorization code lifetime.
    pub code_ttl: Duration,
    /// Login session lifetime.
    pub session_ttl: Duration,
    /// Who may register clients dynamically.
    pub registration: RegistrationPolicy,
    /// How long a dynamically registered client (RFC 7591) lives unused: its registration
    /// expires this long after it was registered or last used at the token endpoint (the expiry
    /// moves forward at most once a day). An expired client is unknown and its row is purged.
    /// `None`: clients registered from then on never expire. Pre-registered clients and client
    /// ID metadata documents are not affected. Default: 90 days.
    pub dynamic_client_ttl: Option<Duration>,
    /// Client ID metadata document fetching.
    pub fetch: FetchPolicy,
    /// Algorithm of newly generated signing keys.
    pub signing_alg: SigningAlg,
    /// Rate limits.
    pub rate_limits: RateLimits,
    /// Reverse proxies in front of the server. When the TCP peer is in one of these networks,
    /// the client address for rate limits is the right-most address of `X-Forwarded-For`
    /// (without that header: of RFC 7239 `Forwarded: for=`) that is not itself in one;
    /// otherwise both headers are ignored. The proxies must append the address they see to
    /// `X-Forwarded-For` (or, if they only write `Forwarded`, drop any `X-Forwarded-For` a
    /// client sends). Empty by default: the TCP peer is the client.
    pub trusted_proxies: Vec<IpNet>,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Largest accepted total size of request headers.
    pub max_header_bytes: usize,
    /// Timeouts and the connection cap of [`serve`](crate::serve) (slowloris protection).
    pub connections: crate::ConnectionLimits,
    /// Argon2id parameters of the dummy hash verified for unknown users (match the real ones).
    pub password_params: PasswordParams,
    /// How many password checks run at once. Each holds the `memory_kib` of the hash it checks
    /// (19 MiB by default), so this bounds their memory: limit × `memory_kib`. Default: twice
    /// the available cores, at least 2 (argon2id is CPU-bound, more would only queue).
    pub max_concurrent_password_checks: usize,
    /// How long a sign-in waits for a password check when [`max_concurrent_password_checks`]
    /// are running; then it gets the login page again with 503 "too many sign-ins at once".
    /// Default: 5 s.
    ///
    /// [`max_concurrent_password_checks`]: Config::max_concurrent_password_checks
    pub password_check_wait: Duration,
    /// Whether cookies are `Secure` (and `__Host-` prefixed). Derived from the issuer scheme by
    /// [`Config::new`].
    pub secure_cookies: bool,
    /// Upstream identity providers (OpenID Connect or plain OAuth 2.0) users may sign in with
    /// (SPEC F1-F8), one button each on the login page. Register
    /// [`callback_uri`](crate::federation::callback_uri) at each.
    pub identity_providers: Vec<crate::federation::IdentityProvider>,
    /// Whether local users may sign in with a password (default true; false: providers only).
    pub password_login: bool,
    /// The key that seals the upstream tokens at rest (SPEC F5). `None` (the default): a random
    /// key for this process only, so the stored upstream tokens cannot be read after a restart
    /// and those grants end at their next refresh; give a [`VaultKey::load_or_create`] key to
    /// keep them (and the same file to every instance sharing a database).
    ///
    /// [`VaultKey::load_or_create`]: crate::VaultKey::load_or_create
    pub vault_key: Option<crate::VaultKey>,
    /// Whether a DPoP proof at the token endpoint must carry a nonce this server handed out
    /// (RFC 9449 §8, SPEC D7; default false). The nonces are stateless (a MAC over a one-minute
    /// slot) under a key kept in the database, so every instance accepts every instance's.
    pub dpop_nonces: bool,
    /// How long a device authorization waits for the user (RFC 8628 §3.2 `expires_in`;
    /// default 10 minutes).
    pub device_code_ttl: Duration,
    /// The polling interval a device client is given (RFC 8628 §3.2 `interval`; default 5 s,
    /// whole seconds, at least 1).
    pub device_interval: Duration,
    /// Issuers whose JWTs the JWT bearer grant accepts (RFC 7523): workload identity issuers
    /// (SEP-1933) and enterprise IdPs' ID-JAGs. None by default: the grant is then not offered.
    pub trusted_issuers: Vec<crate::TrustedIssuer>,
}

impl Config {
    /// Defaults for `issuer`: 1 h access tokens, 30 d refresh tokens, 30 s refresh grace,
    /// 60 s codes, 8 h sessions, open registration, 90-day dynamic clients, ES256, 64 KiB
    /// bodies, 16 KiB headers, the default [`ConnectionLimits`](crate::ConnectionLimits), two
    /// password checks at once per core.
    pub fn new(issuer: impl Into<String>) -> Self {
        let issuer = issuer.into();
        let secure_cookies = issuer.starts_with("https://");
        Self {
            issuer,
            resources: Vec::new(),
            scopes_supported: Vec::new(),
            access_token_ttl: Duration::from_secs(3600),
            refresh_token_ttl: Duration::from_secs(30 * 24 * 3600),
            refresh_grace: Duration::from_secs(30),
            code_ttl: Duration::from_secs(60),
            session_ttl: Duration::from_secs(8 * 3600),
            registration: RegistrationPolicy::Open,
            dynamic_client_ttl: Some(Duration::from_secs(90 * 24 * 3600)),
            fetch: FetchPolicy::default(),
            signing_alg: SigningAlg::Es256,
            rate_limits: RateLimits::default(),
            trusted_proxies: Vec::new(),
            max_body_bytes: 64 * 1024,
            max_header_bytes: 16 * 1024,
            connections: crate::ConnectionLimits::default(),
            password_params: PasswordParams::default(),
            max_concurrent_password_checks: std::thread::available_parallelism()
                .map_or(2, |n| n.get().saturating_mul(2))
                .max(2),
            password_check_wait: Duration::from_secs(5),
            secure_cookies,
            identity_providers: Vec::new(),
            password_login: true,
            vault_key: None,
            dpop_nonces: false,
            device_code_ttl: Duration::from_secs(600),
            device_interval: Duration::from_secs(5),
            trusted_issuers: Vec::new(),
        }
    }

    /// Checks the issuer (MCP SPEC A7: https, or http on loopback for development; no query or
    /// fragment, RFC 8414 §2) and the resources.
    pub fn validate(&self) -> Result<(), AuthServerError> {
        let url = parse_url(&self.issuer)?;
        let ok_scheme = url.scheme() == "https" || (url.scheme() == "http" && is_loopback(&url));
        if !ok_scheme {
            return Err(AuthServerError::Config(format!(
                "the issuer {:?} must be https (http only on a loopback host; MCP SPEC A7)",
                self.issuer
            )));
        }
        if url.query().is_some() || url.fragment().is_some() || self.issuer.ends_with('/') {
            return Err(AuthServerError::Config(format!(
                "the issuer {:?} must have no query, fragment or trailing slash (RFC 8414 §2)",
                self.issuer
            )));
        }
        for r in &self.resources {
            parse_url(r)?;
        }
        for (i, p) in self.identity_providers.iter().enumerate() {
            p.validate()?;
            if self.identity_providers[..i]
                .iter()
                .any(|q| q.name == p.name)
            {
                return Err(AuthServerError::Config(format!(
                    "two identity providers are named {:?}",
                    p.name
                )));
            }
        }
        for (i, t) in self.trusted_issuers.iter().enumerate() {
            t.validate()?;
            if self.trusted_issuers[..i]
                .iter()
                .any(|u| u.name == t.name || u.issuer == t.issuer)
            {
                return Err(AuthServerError::Config(format!(
                    "two trusted issuers share the name {:?} or the issuer {:?}",
                    t.name, t.issuer
                )));
            }
        }
        if !self.password_login && self.identity_providers.is_empty() {
            return Err(AuthServerError::Config(
                "password sign-in is off and no identity provider is configured: nobody could \
                 sign in"
                    .into(),
            ));
        }
        if self.max_concurrent_password_checks == 0 {
            return Err(AuthServerError::Config(
                "max_concurrent_password_checks must be at least 1: nobody could sign in".into(),
            ));
        }
        Ok(())
    }

    /// The issuer's path without a trailing slash ("" for an issuer without a path).
    pub(crate) fn issuer_path(&self) -> String {
        parse_url(&self.issuer)
            .map(|u| u.path().trim_end_matches('/').to_owned())
            .unwrap_or_default()
    }

    /// The URL of an endpoint below the issuer, e.g. `endpoint("/token")`.
    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_networks() {
        let n = IpNet::parse("127.0.0.0/8").unwrap();
        assert!(n.contains("127.1.2.3".parse().unwrap()));
        assert!(!n.contains("128.0.0.1".parse().unwrap()));
        assert!(
            IpNet::parse("::1")
                .unwrap()
                .contains("::1".parse().unwrap())
        );
        assert!(
            IpNet::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(IpNet::parse("1.2.3.4/33").is_err());
    }

    #[test]
    fn a7_issuer_rules() {
        assert!(Config::new("https://as.example/tenant").validate().is_ok());
        assert!(Config::new("http://127.0.0.1:8080").validate().is_ok());
        assert!(Config::new("http://as.example").validate().is_err());
        assert!(Config::new("https://as.example/").validate().is_err());
        assert!(Config::new("https://as.example").secure_cookies);
        assert!(!Config::new("http://127.0.0.1:1").secure_cookies);
    }
}
