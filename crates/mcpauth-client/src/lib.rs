//! The client side of MCP authorization (MCP 2026-07-28, "Authorization").
//!
//! - [`discovery`]: protected resource metadata and authorization server metadata (C1-C6),
//!   with a report of every URL tried.
//! - [`registration`]: pre-registered clients, client ID metadata documents and dynamic
//!   registration (C8-C15).
//! - [`grants`]: the token endpoint: authorization code + PKCE, refresh, client credentials,
//!   JWT bearer and token exchange, with every client authentication method.
//! - [`dpop`]: DPoP keys, proofs and nonces (RFC 9449, SPEC D1-D3).
//! - [`authorize`]: the authorization front-end trait and the headless front end;
//!   [`loopback`] and [`paste`]: the front ends for people.
//! - [`store`]: token and registration storage (file, memory).
//! - [`session`]: fresh tokens, refresh under a cross-process lock, new authorizations.
//! - [`authed`]: an HTTP client that authenticates itself, with the 401/403 loop;
//!   [`mcp`]: one-shot MCP requests over it.
//! - [`workload`]: workload identity federation (SEP-1933): a platform-issued JWT as the grant.
//!
//! ```no_run
//! # async fn run() -> Result<(), mcpauth_client::ClientError> {
//! use std::sync::Arc;
//! use mcpauth_client::{authed::AuthenticatedClient, http::{HttpOptions, OAuthHttp},
//!     session::{Session, SessionConfig}, store::FileStore};
//! use mcpauth_core::ClientSecret;
//! let http = OAuthHttp::new(HttpOptions::default())?;
//! let secret = std::env::var("MCP_CLIENT_SECRET").ok().map(ClientSecret::new);
//! let config = SessionConfig::client_credentials("https://mcp.example.com/mcp", "robot", secret);
//! let session = Arc::new(Session::new(config, http, Arc::new(FileStore::default_location()?)));
//! let client = AuthenticatedClient::new(session, reqwest::Client::new());
//! let response = client.send(|http| http.post("https://mcp.example.com/mcp").body("{}")).await?;
//! # Ok(()) }
//! ```

pub mod authed;
pub mod authorize;
pub mod cross_app;
pub mod discovery;
pub mod dpop;
mod error;
mod flow;
#[doc(hidden)]
pub mod fuzzing;
pub mod grants;
pub mod http;
pub mod loopback;
pub mod mcp;
pub mod paste;
pub mod registration;
pub mod session;
pub mod sse;
pub mod store;
pub mod workload;

pub use error::ClientError;
