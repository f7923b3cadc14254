//! The upstream token vault (SPEC F2-F5): every grant that starts with a sign-in at an identity
//! provider keeps that provider's tokens, sealed (AES-256-GCM) under a vault key that is not in
//! the database, so a copy of the database alone opens none of them.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::AuthServerError;
use crate::federation::upstream::UpstreamTokens;
use crate::secrets::{seal, unseal};

/// The 32-byte key sealing upstream tokens at rest. `Debug` shows nothing of it.
#[derive(Clone)]
pub struct VaultKey(String);

crate::redacted_debug!(VaultKey);

impl VaultKey {
    /// A random key, for this process only.
    pub fn random() -> Self {
        Self(crate::secrets::random_bytes_b64(32))
    }

    /// Reads the key in `path` (32 bytes, base64url), creating the file with a new random key
    /// and mode 0600 when it does not exist. Like the SQLite database file (security finding
    /// 4), a file that group or others can access is refused.
    pub fn load_or_create(path: &Path) -> Result<Self, AuthServerError> {
        let fail = |reason: String| AuthServerError::VaultKey {
            path: path.to_owned(),
            reason,
        };
        match create(path) {
            Ok(true) => {}
            Ok(false) => check_mode(path).map_err(fail)?,
            Err(e) => return Err(fail(e.to_string())),
        }
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        let text = text.trim();
        match URL_SAFE_NO_PAD.decode(text) {
            Ok(raw) if raw.len() == 32 => Ok(Self(text.to_owned())),
            _ => Err(fail(
                "it does not hold a key (32 bytes, base64url without padding)".into(),
            )),
        }
    }

    /// The key material of the row `id`: binding the row id means a sealed value copied to
    /// another row does not open.
    fn material(&self, id: &str) -> String {
        format!("mcpauth vault v1\0{}\0{id}", self.0)
    }

    /// Seals `tokens` for the row `id`.
    pub(crate) fn seal(&self, id: &str, tokens: &UpstreamTokens) -> String {
        let json = serde_json::to_string(tokens).expect("the tokens serialize");
        seal(&self.material(id), &json)
    }

    /// Opens what [`VaultKey::seal`] sealed for `id`; `None` under another key or tampered.
    pub(crate) fn open(&self, id: &str, sealed: &str) -> Option<UpstreamTokens> {
        serde_json::from_str(&unseal(&self.material(id), sealed)?).ok()
    }
}

/// Creates `path` with a new key and mode 0600; `Ok(false)` when it exists.
fn create(path: &Path) -> std::io::Result<bool> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(mut file) => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                // The umask may have taken bits away; set exactly 0600.
                file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            }
            file.write_all(VaultKey::random().0.as_bytes())?;
            file.sync_all()?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(unix)]
fn check_mode(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| e.to_string())?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(format!(
            "it has mode {:o}; it seals the upstream tokens, so a file that group or others can \
             access is refused. Fix it with: chmod 600 {}",
            mode & 0o7777,
            path.display()
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_mode(_: &Path) -> Result<(), String> {
    Ok(())
}

/// The default vault key file of a SQLite database file: `PATH.vault-key` beside it.
pub fn default_key_path(database_file: &Path) -> PathBuf {
    let mut name = database_file.as_os_str().to_owned();
    name.push(".vault-key");
    PathBuf::from(name)
}

/// A user's fresh access token at the identity provider they signed in with.
#[derive(Clone)]
pub struct UpstreamAccess {
    /// The provider's configured name.
    pub provider: String,
    /// The account's subject at the provider.
    pub subject: String,
    access_token: String,
}

crate::redacted_debug!(UpstreamAccess);

impl UpstreamAccess {
    pub(crate) fn new(provider: String, subject: String, access_token: String) -> Self {
        Self {
            provider,
            subject,
            access_token,
        }
    }

    /// The provider's access token (a secret: never log it).
    pub fn access_token(&self) -> &str {
        &self.access_token
    }
}

/// Why no upstream access token is available.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The grant did not start with a sign-in at an identity provider (a password user, or a
    /// client credentials token).
    #[error("this grant has no identity provider session (the user did not sign in with one)")]
    NoUpstreamGrant,
    /// The identity provider ended the session (it refused the refresh with `invalid_grant`, or
    /// the token expired and cannot be renewed): the grant is revoked (SPEC F3, F4).
    #[error("the identity provider ended the session; sign in again")]
    Ended,
    /// The identity provider could not be reached: nothing was revoked, try again later.
    #[error("the identity provider is unavailable: {0}")]
    Unavailable(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] AuthServerError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> UpstreamTokens {
        UpstreamTokens {
            access_token: "at-1".into(),
            refresh_token: Some("rt-1".into()),
            expires_at: Some(100),
            scope: Some("repo".into()),
            email: None,
            name: None,
        }
    }

    #[test]
    fn f5_sealed_tokens_open_only_with_the_key_and_their_row() {
        let key = VaultKey::random();
        let sealed = key.seal("row-1", &tokens());
        assert!(!sealed.contains("at-1") && !sealed.contains("rt-1"));
        let opened = key.open("row-1", &sealed).unwrap();
        assert_eq!(opened.access_token, "at-1");
        assert_eq!(opened.refresh_token.as_deref(), Some("rt-1"));
        assert!(key.open("row-2", &sealed).is_none());
        assert!(VaultKey::random().open("row-1", &sealed).is_none());
        assert_eq!(format!("{key:?}"), "VaultKey { .. }");
        assert_eq!(format!("{opened:?}"), "UpstreamTokens { .. }");
    }

    #[cfg(unix)]
    #[test]
    fn f5_the_vault_key_file_is_created_private_and_read_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = default_key_path(&dir.path().join("as.db"));
        assert!(path.ends_with("as.db.vault-key"));
        let key = VaultKey::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = VaultKey::load_or_create(&path).unwrap();
        let sealed = key.seal("r", &tokens());
        assert!(
            again.open("r", &sealed).is_some(),
            "the same key is read back"
        );

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = VaultKey::load_or_create(&path).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");

        let bad = dir.path().join("bad-key");
        std::fs::write(&bad, "not a key").unwrap();
        std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = VaultKey::load_or_create(&bad).unwrap_err().to_string();
        assert!(e.contains("does not hold a key"), "{e}");
        assert!(!e.contains("not a key\""), "{e}");
    }
}
