//! Token and client-registration storage.
//!
//! Records are keyed by (resource, issuer, client) so that credentials never leak across
//! authorization servers (MCP SPEC C7, C15, C24). Implementations: [`FileStore`] (durable,
//! private, locked across processes) and [`MemoryStore`].

mod file;
#[cfg(feature = "keyring")]
mod keyring;
mod memory;

use mcpauth_core::{
    AccessToken, ClientSecret, DpopPrivateKey, PkceVerifier, RefreshToken, ScopeSet,
};
use serde::{Deserialize, Serialize};

use crate::ClientError;

pub use file::FileStore;
#[cfg(feature = "keyring")]
pub use keyring::KeyringStore;
pub use memory::MemoryStore;

/// The version of the record layout written by this build.
pub const SCHEMA_VERSION: u32 = 1;

/// Identifies one stored login.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StoreKey {
    /// The `resource` the tokens are for (the PRM `resource`, or the canonical server URI).
    pub resource: String,
    /// The authorization server's `issuer`.
    pub issuer: String,
    /// The client id the tokens were issued to.
    pub client_id: String,
}

/// Tokens for one (resource, issuer, client).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Layout version ([`SCHEMA_VERSION`]).
    pub schema: u32,
    /// The key.
    #[serde(flatten)]
    pub key: StoreKey,
    /// The access token.
    pub access_token: AccessToken,
    /// The `token_type` as issued: `Bearer`, or `DPoP` for a token bound to [`Self::dpop_key`]
    /// (RFC 9449 §5, SPEC D3).
    pub token_type: String,
    /// The DPoP key the tokens are bound to, when proofs were sent for them (SPEC D3: the key
    /// lives as long as its tokens, in the same record). Records written before DPoP have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_key: Option<DpopPrivateKey>,
    /// A refresh token, if one was issued and is still believed valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<RefreshToken>,
    /// Absolute expiry of the access token, seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// The scopes the server granted (its `scope`, else what was requested).
    #[serde(default)]
    pub granted_scopes: ScopeSet,
    /// The scopes that were requested.
    #[serde(default)]
    pub requested_scopes: ScopeSet,
    /// When the record was written, seconds since the Unix epoch.
    pub updated_at: u64,
}

/// How a client id was obtained (MCP SPEC C9).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistrationKind {
    /// Configured by the user.
    PreRegistered,
    /// A client ID metadata document URL.
    MetadataDocument,
    /// RFC 7591 dynamic registration.
    Dynamic,
}

/// A client registration with one authorization server, keyed by its `issuer` (MCP SPEC C15).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRecord {
    /// Layout version ([`SCHEMA_VERSION`]).
    pub schema: u32,
    /// The authorization server's `issuer`.
    pub issuer: String,
    /// The client id.
    pub client_id: String,
    /// The client secret, for confidential clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<ClientSecret>,
    /// The token endpoint authentication method to use.
    pub token_endpoint_auth_method: String,
    /// The registered redirect URIs.
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// How it was obtained.
    pub kind: RegistrationKind,
    /// Absolute expiry of the secret, if any (RFC 7591 `client_secret_expires_at`, 0 = never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_expires_at: Option<u64>,
    /// When it was written, seconds since the Unix epoch.
    pub updated_at: u64,
}

/// An interactive authorization in progress, shared across processes so that exactly one runs
/// per (resource, issuer): others wait for its tokens, and if its holder dies a survivor can
/// finish it (same redirect URI, state and PKCE verifier) without opening another browser tab.
/// Kept after the flow ends (inactive) for the per-minute cap on new flows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowRecord {
    /// Layout version ([`SCHEMA_VERSION`]).
    pub schema: u32,
    /// The resource and issuer; `client_id` is empty (the flow may register the client).
    pub key: StoreKey,
    /// Whether a flow is in progress.
    pub active: bool,
    /// The process running it.
    pub holder_pid: u32,
    /// Until when the holder's lease runs (it renews it while alive), Unix seconds.
    pub lease_until: u64,
    /// When the flow gives up, Unix seconds.
    pub deadline: u64,
    /// The client the flow authorizes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Where the browser will return.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_uri: Option<String>,
    /// The `state` sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// The authorization URL the user was sent to (not a secret: shown again on a takeover).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_url: Option<String>,
    /// The PKCE verifier (a secret: only in this 0600 record, only while the flow runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verifier: Option<PkceVerifier>,
    /// The DPoP key the authorization request bound the code to (`dpop_jkt`, RFC 9449 §10; a
    /// secret, like the verifier).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_key: Option<DpopPrivateKey>,
    /// When recent flows started, for the per-minute cap.
    #[serde(default)]
    pub recent_starts: Vec<u64>,
}

/// Held while a caller refreshes or re-authorizes one key; dropping it releases the lock.
pub trait StoreLock: Send {}

/// Where tokens and client registrations live.
///
/// Methods block briefly on local I/O; [`TokenStore::lock`] may block for as long as another
/// process holds the lock, so call it from `spawn_blocking`.
pub trait TokenStore: Send + Sync + std::fmt::Debug {
    /// The tokens for `key`, if any.
    fn load_tokens(&self, key: &StoreKey) -> Result<Option<TokenRecord>, ClientError>;
    /// Stores (replaces) the tokens of `record.key`, durably.
    fn save_tokens(&self, record: &TokenRecord) -> Result<(), ClientError>;
    /// Deletes the tokens for `key`; deleting nothing is not an error.
    fn delete_tokens(&self, key: &StoreKey) -> Result<(), ClientError>;
    /// Every stored token record.
    fn list_tokens(&self) -> Result<Vec<TokenRecord>, ClientError>;
    /// The client registration with `issuer`, if any.
    fn load_client(&self, issuer: &str) -> Result<Option<ClientRecord>, ClientError>;
    /// Stores (replaces) the client registration of `record.issuer`.
    fn save_client(&self, record: &ClientRecord) -> Result<(), ClientError>;
    /// Deletes the client registration with `issuer`.
    fn delete_client(&self, issuer: &str) -> Result<(), ClientError>;
    /// The flow record of `key` (resource and issuer, empty client id), if any.
    fn load_flow(&self, key: &StoreKey) -> Result<Option<FlowRecord>, ClientError>;
    /// Stores (replaces) a flow record.
    fn save_flow(&self, record: &FlowRecord) -> Result<(), ClientError>;
    /// Takes the exclusive lock for `key`, across threads and processes, blocking until free.
    fn lock(&self, key: &StoreKey) -> Result<Box<dyn StoreLock>, ClientError>;
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}
