//! The MCP authorization server (MCP 2026-07-28, "Authorization", SPEC §3 A1–A12): OAuth 2.1
//! with PKCE S256, RFC 8414 and OpenID discovery metadata, RFC 9207 `iss`, RFC 8707 resource
//! indicators, RFC 9068 JWT access tokens (ES256 or EdDSA), refresh-token rotation with reuse
//! detection, client ID metadata documents fetched SSRF-safely, RFC 7591 registration, RFC 7009
//! revocation, RFC 7662 introspection, login and consent pages, and sign-in through upstream
//! OpenID Connect providers ([`federation`]). State lives in SQLite or PostgreSQL ([`Store`]), so
//! several instances can share one PostgreSQL database.
//!
//! ```no_run
//! # async fn run() -> Result<(), mcpauth_authserver::AuthServerError> {
//! use mcpauth_authserver::{AuthServer, Config, Store, admin, serve};
//! let store = Store::connect("sqlite://mcpauth.db?mode=rwc").await?;
//! let mut config = Config::new("http://127.0.0.1:8080");
//! config.resources = vec!["http://127.0.0.1:9000/mcp".into()];
//! admin::add_user(&store, "alice", "a long passphrase", config.password_params).await?;
//! let server = AuthServer::new(config, store).await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! serve(listener, server, std::future::pending::<()>()).await?;
//! # Ok(()) }
//! ```

/// Implements `Debug` for a type holding secrets or keys as just its name.
macro_rules! redacted_debug {
    ($t:ident) => {
        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($t), " { .. }"))
            }
        }
    };
}
pub(crate) use redacted_debug;

pub mod admin;
mod audit;
mod basic_auth;
mod client_auth;
mod clients;
pub mod config;
mod dpop;
mod error;
pub mod federation;
mod fetch;
#[doc(hidden)]
pub mod fuzzing;
mod identity;
mod jwt_grant;
mod keys;
mod listen;
mod pages;
mod params;
mod passwords;
mod rate_limit;
mod routes;
mod secrets;
mod server;
mod store;
mod tokens;
mod vault;

pub use audit::AUDIT_TARGET;
pub use clients::{AuthMethod, ClientKind};
pub use config::{
    Config, FetchPolicy, IpNet, PasswordParams, RateLimit, RateLimits, RegistrationPolicy,
    SigningAlg,
};
pub use error::{AuthServerError, DatabaseError, MigrationError};
pub use identity::{IDENTITY_TOKEN_TTL, IDENTITY_TOKEN_TYP};
pub use jwt_grant::{IdJagRule, TrustKind, TrustedIssuer, UserMapping, WorkloadRule};
pub use listen::{ConnectionLimits, serve_router};
pub use server::{AuthServer, REVOCATION_SYNC, router, serve, serve_app};
pub use store::{Backend, Store};
pub use vault::{UpstreamAccess, VaultError, VaultKey, default_key_path};
