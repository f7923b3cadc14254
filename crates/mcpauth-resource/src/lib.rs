//! Protect an MCP server (MCP 2026-07-28, "Authorization", SPEC §2 S1–S12) with OAuth bearer
//! tokens from any authorization server.
//!
//! - [`BearerAuthLayer`]: a tower layer that checks `Authorization: Bearer` tokens with a
//!   [`TokenVerifier`] ([`JwtVerifier`] for RFC 9068 JWTs via the issuer's JWK set,
//!   [`IntrospectionVerifier`] for RFC 7662, or your own), enforces a [`ScopePolicy`] per
//!   JSON-RPC method and tool, answers with RFC 6750 challenges, and hands the handler the
//!   verified [`Principal`] ([`principal`], [`Authenticated`]).
//! - [`ResourceMetadata`]: the RFC 9728 protected resource metadata and its route at the
//!   path-aware well-known URL.
//! - [`OriginGuardLayer`]: the Streamable HTTP `Origin`/`Host` checks (S11).
//! - DPoP (RFC 9449, SPEC D4-D5): tokens bound to a key need the `DPoP` scheme and a proof;
//!   [`DpopConfig`] sets the policy, the accepted algorithms and the [`ReplayCache`].
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use axum::{Router, routing::post};
//! use mcpauth_resource::{
//!     Authenticated, BearerAuthLayer, JwtVerifier, OriginGuardLayer, ResourceMetadata, ScopePolicy,
//! };
//!
//! let resource = "http://127.0.0.1:9000/mcp";
//! let issuer = "http://127.0.0.1:8080";
//! let prm = ResourceMetadata::new(resource, [issuer])?.scopes_supported(["mcp", "files:write"]);
//! let verifier = JwtVerifier::builder().issuer(issuer).audience(resource).build()?;
//! let auth = BearerAuthLayer::new(verifier, &prm)
//!     .scope_policy(ScopePolicy::new().require(["mcp"]).tool("delete", ["files:write"]));
//!
//! async fn mcp(Authenticated(who): Authenticated, body: String) -> String {
//!     format!("hello {}", who.subject)
//! }
//! let app = Router::new()
//!     .route("/mcp", post(mcp))
//!     .route_layer(auth) // the routes above only (not the fallback: unknown paths stay 404)
//!     .route_service(prm.metadata_path(), prm.service()) // public
//!     .layer(OriginGuardLayer::new(resource)?); // everything
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9000").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```

mod challenge;
mod dpop;
mod error;
mod fetch;
#[doc(hidden)]
pub mod fuzzing;
mod jwks;
mod layer;
mod origin;
mod principal;
mod prm;
mod scope_policy;
mod verifier;

pub use dpop::{
    DEFAULT_REPLAY_CAPACITY, DpopConfig, DpopPolicy, MemoryReplayCache, ReplayCache, ReplayFuture,
};
pub use error::{ResourceError, VerifyError};
pub use layer::{BearerAuth, BearerAuthLayer, DEFAULT_MAX_BODY_BYTES};
pub use mcpauth_core::dpop::NonceIssuer;
pub use origin::{OriginGuard, OriginGuardLayer};
pub use principal::{Authenticated, Principal, principal};
pub use prm::{MetadataService, ResourceMetadata};
pub use scope_policy::{ScopeHierarchy, ScopePolicy};
pub use verifier::{
    IntrospectionVerifier, JwtVerifier, JwtVerifierBuilder, TokenVerifier, VerifyFuture,
};
