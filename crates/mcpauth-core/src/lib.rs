//! Sans-I/O building blocks of MCP authorization (MCP 2026-07-28, "Authorization").
//!
//! Wire types for OAuth discovery and registration documents, token responses and errors; PKCE;
//! `WWW-Authenticate` parsing; canonical resource URIs; well-known URL builders; scope sets;
//! RFC 9207 authorization response validation; DPoP keys, proofs and their checks ([`dpop`]); secrets as redacted types; and the HTTP headers
//! of a 2026-07-28 MCP request ([`mcp_headers`]). No networking and
//! no async runtime: the I/O crates (`mcpauth-client`, `mcpauth-resource`, `mcpauth-authserver`)
//! move the bytes.
//!
//! ```
//! use mcpauth_core::{well_known, pkce};
//! let urls = well_known::protected_resource_urls("https://mcp.example.com/mcp").unwrap();
//! assert_eq!(urls[0], "https://mcp.example.com/.well-known/oauth-protected-resource/mcp");
//! let verifier = pkce::new_verifier().unwrap();
//! assert_ne!(pkce::challenge_s256(&verifier), verifier.expose());
//! ```

pub mod authorization_response;
pub mod civil;
pub mod device;
pub mod dpop;
mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod jose;
pub mod mcp_headers;
pub mod metadata;
pub mod oauth_error;
pub mod pkce;
mod random;
pub mod registration;
pub mod resource;
pub mod scope;
mod secret;
pub mod token;
pub mod url_policy;
pub mod well_known;
pub mod www_authenticate;

pub use error::CoreError;
pub use metadata::{AuthorizationServerMetadata, ProtectedResourceMetadata};
pub use oauth_error::{ErrorCode, OAuthError};
pub use random::random_urlsafe;
pub use registration::{ClientIdMetadataDocument, ClientInformation, ClientMetadata};
pub use scope::ScopeSet;
pub use secret::{
    AccessToken, Assertion, AuthorizationCode, ClientSecret, DeviceCode, DpopPrivateKey,
    PkceVerifier, RefreshToken, constant_time_eq,
};
pub use token::{TokenResponse, TokenType};
