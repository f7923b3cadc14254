//! The OS keyring store (cargo feature `keyring`): access tokens, refresh tokens and client
//! secrets, and DPoP keys, live in the platform keyring (Secret Service on Linux, the Keychain on macOS, the
//! Credential Manager on Windows); the rest of each record (key, expiry, scopes) and the
//! cross-process locks stay in a [`FileStore`], so logins can still be listed and locked.

use std::sync::Arc;

use keyring_core::{CredentialStore, Entry};
use mcpauth_core::{AccessToken, ClientSecret, DpopPrivateKey, RefreshToken};
use serde::{Deserialize, Serialize};

use super::file::{client_file_stem, token_file_stem};
use super::{ClientRecord, FileStore, FlowRecord, StoreKey, StoreLock, TokenRecord, TokenStore};
use crate::ClientError;

/// The keyring service name of every mcpauth entry.
const SERVICE: &str = "mcpauth";
/// What the file holds where the secret would be.
const IN_KEYRING: &str = "(in the OS keyring)";

/// Tokens in the OS keyring, everything else in a [`FileStore`].
pub struct KeyringStore {
    files: FileStore,
    keyring: Arc<CredentialStore>,
}

impl std::fmt::Debug for KeyringStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyringStore")
            .field("files", &self.files)
            .field("keyring", &self.keyring.vendor())
            .finish()
    }
}

#[derive(Serialize, Deserialize)]
struct TokenSecrets {
    access_token: AccessToken,
    refresh_token: Option<RefreshToken>,
    /// The DPoP key bound to the tokens (SPEC D3); absent in entries written before DPoP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dpop_key: Option<DpopPrivateKey>,
}

fn keyring_error(what: &str, e: keyring_core::Error) -> ClientError {
    ClientError::Keyring(format!("{what}: {e}"))
}

impl KeyringStore {
    /// Secrets in `keyring`, the rest in `files`.
    pub fn new(files: FileStore, keyring: Arc<CredentialStore>) -> Self {
        Self { files, keyring }
    }

    /// The platform's keyring; an error when none is available (e.g. no Secret Service on the
    /// session bus), so the caller can fall back to the file store.
    pub fn system(files: FileStore) -> Result<Self, ClientError> {
        #[cfg(target_os = "linux")]
        let keyring: Arc<CredentialStore> = zbus_secret_service_keyring_store::Store::new()
            .map_err(|e| keyring_error("no Secret Service keyring is available", e))?;
        #[cfg(target_os = "macos")]
        let keyring: Arc<CredentialStore> = apple_native_keyring_store::keychain::Store::new()
            .map_err(|e| keyring_error("the macOS keychain is not available", e))?;
        #[cfg(windows)]
        let keyring: Arc<CredentialStore> = windows_native_keyring_store::Store::new()
            .map_err(|e| keyring_error("the Windows credential manager is not available", e))?;
        #[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
        return Err(ClientError::Keyring(
            "no OS keyring is supported on this platform".into(),
        ));
        #[cfg(any(target_os = "linux", target_os = "macos", windows))]
        Ok(Self::new(files, keyring))
    }

    fn entry(&self, user: &str) -> Result<Entry, ClientError> {
        self.keyring
            .build(SERVICE, user, None)
            .map_err(|e| keyring_error("keyring entry", e))
    }

    fn get(&self, user: &str) -> Result<Option<String>, ClientError> {
        match self.entry(user)?.get_password() {
            Ok(p) => Ok(Some(p)),
            Err(keyring_core::Error::NoEntry) => Ok(None),
            Err(e) => Err(keyring_error("reading from the keyring", e)),
        }
    }

    fn delete(&self, user: &str) -> Result<(), ClientError> {
        match self.entry(user)?.delete_credential() {
            Ok(()) | Err(keyring_core::Error::NoEntry) => Ok(()),
            Err(e) => Err(keyring_error("deleting from the keyring", e)),
        }
    }

    /// Fills a record read from the file with its secrets; `None` when the keyring lost them.
    fn with_token_secrets(&self, mut r: TokenRecord) -> Result<Option<TokenRecord>, ClientError> {
        if r.access_token.expose() != IN_KEYRING {
            return Ok(Some(r));
        }
        let Some(json) = self.get(&format!("tokens:{}", token_file_stem(&r.key)))? else {
            return Ok(None);
        };
        let secrets: TokenSecrets = serde_json::from_str(&json).map_err(|e| {
            ClientError::Keyring(format!("the keyring entry is not mcpauth's: {e}"))
        })?;
        r.access_token = secrets.access_token;
        r.refresh_token = secrets.refresh_token;
        r.dpop_key = secrets.dpop_key;
        Ok(Some(r))
    }
}

impl TokenStore for KeyringStore {
    fn load_tokens(&self, key: &StoreKey) -> Result<Option<TokenRecord>, ClientError> {
        match self.files.load_tokens(key)? {
            Some(r) => self.with_token_secrets(r),
            None => Ok(None),
        }
    }

    fn save_tokens(&self, record: &TokenRecord) -> Result<(), ClientError> {
        let secrets = TokenSecrets {
            access_token: record.access_token.clone(),
            refresh_token: record.refresh_token.clone(),
            dpop_key: record.dpop_key.clone(),
        };
        let json =
            serde_json::to_string(&secrets).map_err(|e| ClientError::Keyring(e.to_string()))?;
        self.entry(&format!("tokens:{}", token_file_stem(&record.key)))?
            .set_password(&json)
            .map_err(|e| keyring_error("writing to the keyring", e))?;
        let mut public = record.clone();
        public.access_token = AccessToken::new(IN_KEYRING);
        public.refresh_token = record
            .refresh_token
            .as_ref()
            .map(|_| RefreshToken::new(IN_KEYRING));
        public.dpop_key = None;
        self.files.save_tokens(&public)
    }

    fn delete_tokens(&self, key: &StoreKey) -> Result<(), ClientError> {
        self.delete(&format!("tokens:{}", token_file_stem(key)))?;
        self.files.delete_tokens(key)
    }

    fn list_tokens(&self) -> Result<Vec<TokenRecord>, ClientError> {
        let mut out = Vec::new();
        for r in self.files.list_tokens()? {
            out.extend(self.with_token_secrets(r)?);
        }
        Ok(out)
    }

    fn load_client(&self, issuer: &str) -> Result<Option<ClientRecord>, ClientError> {
        let Some(mut c) = self.files.load_client(issuer)? else {
            return Ok(None);
        };
        if c.client_secret
            .as_ref()
            .is_some_and(|s| s.expose() == IN_KEYRING)
        {
            match self.get(&format!("client:{}", client_file_stem(issuer)))? {
                Some(secret) => c.client_secret = Some(ClientSecret::new(secret)),
                None => return Ok(None),
            }
        }
        Ok(Some(c))
    }

    fn save_client(&self, record: &ClientRecord) -> Result<(), ClientError> {
        let mut public = record.clone();
        if let Some(secret) = &record.client_secret {
            self.entry(&format!("client:{}", client_file_stem(&record.issuer)))?
                .set_password(secret.expose())
                .map_err(|e| keyring_error("writing to the keyring", e))?;
            public.client_secret = Some(ClientSecret::new(IN_KEYRING));
        }
        self.files.save_client(&public)
    }

    fn delete_client(&self, issuer: &str) -> Result<(), ClientError> {
        self.delete(&format!("client:{}", client_file_stem(issuer)))?;
        self.files.delete_client(issuer)
    }

    fn load_flow(&self, key: &StoreKey) -> Result<Option<FlowRecord>, ClientError> {
        self.files.load_flow(key)
    }

    fn save_flow(&self, record: &FlowRecord) -> Result<(), ClientError> {
        self.files.save_flow(record)
    }

    fn lock(&self, key: &StoreKey) -> Result<Box<dyn StoreLock>, ClientError> {
        self.files.lock(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{RegistrationKind, SCHEMA_VERSION};
    use mcpauth_core::ScopeSet;

    fn store(dir: &std::path::Path) -> KeyringStore {
        // keyring-core's in-memory credential store stands in for the platform one.
        KeyringStore::new(
            FileStore::new(dir),
            keyring_core::mock::Store::new().unwrap(),
        )
    }

    fn record() -> TokenRecord {
        TokenRecord {
            schema: SCHEMA_VERSION,
            key: StoreKey {
                resource: "https://mcp.example/mcp".into(),
                issuer: "https://as.example".into(),
                client_id: "c".into(),
            },
            access_token: AccessToken::new("at-keyring-secret"),
            token_type: "Bearer".into(),
            dpop_key: None,
            refresh_token: Some(RefreshToken::new("rt-keyring-secret")),
            expires_at: Some(1),
            granted_scopes: ScopeSet::parse("a"),
            requested_scopes: ScopeSet::parse("a"),
            updated_at: 1,
        }
    }

    fn files_under(dir: &std::path::Path) -> String {
        let mut all = String::new();
        for sub in ["tokens", "clients"] {
            if let Ok(rd) = std::fs::read_dir(dir.join(sub)) {
                for f in rd {
                    all.push_str(&std::fs::read_to_string(f.unwrap().path()).unwrap());
                }
            }
        }
        all
    }

    #[test]
    fn c27_secrets_go_to_the_keyring_and_never_to_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        s.save_tokens(&record()).unwrap();
        s.save_client(&ClientRecord {
            schema: SCHEMA_VERSION,
            issuer: "https://as.example".into(),
            client_id: "c".into(),
            client_secret: Some(ClientSecret::new("cs-keyring-secret")),
            token_endpoint_auth_method: "client_secret_basic".into(),
            redirect_uris: vec![],
            kind: RegistrationKind::Dynamic,
            secret_expires_at: None,
            updated_at: 1,
        })
        .unwrap();
        let on_disk = files_under(dir.path());
        assert!(!on_disk.contains("keyring-secret"), "{on_disk}");
        assert!(on_disk.contains(IN_KEYRING));
        assert_eq!(s.load_tokens(&record().key).unwrap().unwrap(), record());
        assert_eq!(s.list_tokens().unwrap(), vec![record()]);
        let c = s.load_client("https://as.example").unwrap().unwrap();
        assert_eq!(c.client_secret.unwrap().expose(), "cs-keyring-secret");
    }

    #[test]
    fn a_record_whose_secret_the_keyring_lost_reads_as_logged_out() {
        let dir = tempfile::tempdir().unwrap();
        store(dir.path()).save_tokens(&record()).unwrap();
        // A new keyring (as after the user wiped it): the file alone must not yield a token.
        let other = store(dir.path());
        assert!(other.load_tokens(&record().key).unwrap().is_none());
        assert!(other.list_tokens().unwrap().is_empty());
    }

    #[test]
    fn delete_removes_both_halves() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        s.save_tokens(&record()).unwrap();
        s.delete_tokens(&record().key).unwrap();
        assert!(s.load_tokens(&record().key).unwrap().is_none());
        assert!(s.files.load_tokens(&record().key).unwrap().is_none());
        assert!(
            s.get(&format!("tokens:{}", token_file_stem(&record().key)))
                .unwrap()
                .is_none()
        );
    }
}
