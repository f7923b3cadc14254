//! [`FileStore`]: a directory of JSON files, private (0600 files in 0700 directories), durable
//! (temp file + fsync + rename + directory fsync) and locked across processes (MCP SPEC C27).
//!
//! Layout under the store directory:
//!
//! ```text
//! tokens/<hex sha256(resource \0 issuer \0 client_id)>.json
//! clients/<hex sha256(issuer)>.json
//! locks/<hex sha256(resource \0 issuer \0 client_id)>.lock   (sidecar lock files, never deleted)
//! ```
//!
//! Files are found by the hash of their key, but the key stored inside must match: a record
//! under the wrong name is reported as corrupt. Temporary files start with `.tmp-` and are
//! ignored by readers, so a crash between writing and renaming leaves the previous record in
//! place.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::{
    ClientRecord, FlowRecord, SCHEMA_VERSION, StoreKey, StoreLock, TokenRecord, TokenStore,
};
use crate::ClientError;

/// The environment variable that overrides the platform data directory.
const HOME_ENV: &str = "MCPAUTH_HOME";
/// Prefix of temporary files; readers skip every name starting with a dot.
const TEMP_PREFIX: &str = ".tmp-";
/// Records are a few kilobytes; anything far larger is not ours.
const MAX_RECORD_BYTES: u64 = 1024 * 1024;

/// A [`TokenStore`] in a directory of JSON files, shared safely between processes.
///
/// ```no_run
/// use mcpauth_client::store::{FileStore, TokenStore};
/// let store = FileStore::default_location()?;
/// for record in store.list_tokens()? {
///     println!("{} via {}", record.key.resource, record.key.issuer);
/// }
/// # Ok::<(), mcpauth_client::ClientError>(())
/// ```
pub struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    /// A store rooted at `dir`; nothing is created until the first write or lock.
    pub fn new(dir: impl Into<PathBuf>) -> FileStore {
        FileStore { dir: dir.into() }
    }

    /// The store at `$MCPAUTH_HOME` if set, else in the platform data directory
    /// (`~/.local/share/mcpauth` on Linux, `~/Library/Application Support/mcpauth` on macOS).
    pub fn default_location() -> Result<FileStore, ClientError> {
        location(std::env::var_os(HOME_ENV)).map(FileStore::new)
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn tokens_dir(&self) -> PathBuf {
        self.dir.join("tokens")
    }

    fn clients_dir(&self) -> PathBuf {
        self.dir.join("clients")
    }

    fn flows_dir(&self) -> PathBuf {
        self.dir.join("flows")
    }

    fn flow_path(&self, key: &StoreKey) -> PathBuf {
        self.flows_dir()
            .join(format!("{}.json", token_file_stem(key)))
    }

    fn locks_dir(&self) -> PathBuf {
        self.dir.join("locks")
    }

    fn token_path(&self, key: &StoreKey) -> PathBuf {
        self.tokens_dir()
            .join(format!("{}.json", token_file_stem(key)))
    }

    fn client_path(&self, issuer: &str) -> PathBuf {
        self.clients_dir()
            .join(format!("{}.json", client_file_stem(issuer)))
    }

    /// Creates (or tightens) the store directory and `sub`, returning `sub`'s path.
    fn private_subdir(&self, sub: PathBuf) -> Result<PathBuf, ClientError> {
        ensure_private_dir(&self.dir)?;
        ensure_private_dir(&sub)?;
        Ok(sub)
    }
}

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStore").field("dir", &self.dir).finish()
    }
}

impl TokenStore for FileStore {
    fn load_tokens(&self, key: &StoreKey) -> Result<Option<TokenRecord>, ClientError> {
        let path = self.token_path(key);
        match read_record::<TokenRecord>(&path)? {
            Some(record) if record.key != *key => Err(corrupt(
                &path,
                format!(
                    "it holds the tokens of resource {} / issuer {} / client {}, not of the \
                     key its name was derived from; move it away and log in again",
                    record.key.resource, record.key.issuer, record.key.client_id
                ),
            )),
            other => Ok(other),
        }
    }

    fn save_tokens(&self, record: &TokenRecord) -> Result<(), ClientError> {
        let dir = self.private_subdir(self.tokens_dir())?;
        write_private_json(&dir, &self.token_path(&record.key), record)
    }

    fn delete_tokens(&self, key: &StoreKey) -> Result<(), ClientError> {
        remove_record(&self.token_path(key))
    }

    fn list_tokens(&self) -> Result<Vec<TokenRecord>, ClientError> {
        let dir = self.tokens_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error(&dir, e)),
        };
        let mut records = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_error(&dir, e))?;
            let file_name = entry.file_name();
            // We only ever write ASCII names; temp files (and other dot files) are skipped.
            let Some(name) = file_name.to_str() else {
                continue;
            };
            if name.starts_with('.') || !name.ends_with(".json") {
                continue;
            }
            let path = entry.path();
            // `None`: deleted since `read_dir` listed it.
            let Some(record) = read_record::<TokenRecord>(&path)? else {
                continue;
            };
            if name != format!("{}.json", token_file_stem(&record.key)) {
                return Err(corrupt(
                    &path,
                    format!(
                        "it holds the tokens of resource {} / issuer {} / client {}, which \
                         belong in another file; move it away and log in again",
                        record.key.resource, record.key.issuer, record.key.client_id
                    ),
                ));
            }
            records.push(record);
        }
        records.sort_by(|a, b| {
            (&a.key.resource, &a.key.issuer, &a.key.client_id).cmp(&(
                &b.key.resource,
                &b.key.issuer,
                &b.key.client_id,
            ))
        });
        Ok(records)
    }

    fn load_client(&self, issuer: &str) -> Result<Option<ClientRecord>, ClientError> {
        let path = self.client_path(issuer);
        match read_record::<ClientRecord>(&path)? {
            Some(record) if record.issuer != issuer => Err(corrupt(
                &path,
                format!(
                    "it holds the client registration with {}, not with {issuer}; move it \
                     away to register again",
                    record.issuer
                ),
            )),
            other => Ok(other),
        }
    }

    fn save_client(&self, record: &ClientRecord) -> Result<(), ClientError> {
        let dir = self.private_subdir(self.clients_dir())?;
        write_private_json(&dir, &self.client_path(&record.issuer), record)
    }

    fn delete_client(&self, issuer: &str) -> Result<(), ClientError> {
        remove_record(&self.client_path(issuer))
    }

    fn load_flow(&self, key: &StoreKey) -> Result<Option<FlowRecord>, ClientError> {
        read_record::<FlowRecord>(&self.flow_path(key))
    }

    fn save_flow(&self, record: &FlowRecord) -> Result<(), ClientError> {
        let dir = self.private_subdir(self.flows_dir())?;
        write_private_json(&dir, &self.flow_path(&record.key), record)
    }

    fn lock(&self, key: &StoreKey) -> Result<Box<dyn StoreLock>, ClientError> {
        let dir = self.private_subdir(self.locks_dir())?;
        let path = dir.join(format!("{}.lock", token_file_stem(key)));
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let file = options.open(&path).map_err(|e| io_error(&path, e))?;
        // An exclusive lock on this open file description: it excludes other processes and
        // other threads of this one alike (each `lock` call opens the file anew).
        loop {
            match file.lock() {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_error(&path, e)),
            }
        }
        Ok(Box::new(FileLock { _file: file }))
    }
}

/// Holds the lock file open; closing it releases the lock.
struct FileLock {
    _file: File,
}

impl StoreLock for FileLock {}

/// Where the store lives, given the value of `MCPAUTH_HOME`.
fn location(home: Option<std::ffi::OsString>) -> Result<PathBuf, ClientError> {
    if let Some(home) = home.filter(|h| !h.is_empty()) {
        return Ok(PathBuf::from(home));
    }
    directories::ProjectDirs::from("", "", "mcpauth")
        .map(|dirs| dirs.data_dir().to_path_buf())
        .ok_or_else(|| {
            ClientError::Config(format!(
                "cannot find a home directory for the token store; set {HOME_ENV} to a \
                 directory only you can read"
            ))
        })
}

/// The file stem of the tokens (and lock) of `key`.
pub(super) fn token_file_stem(key: &StoreKey) -> String {
    let mut hasher = Sha256::new();
    hasher.update(key.resource.as_bytes());
    hasher.update([0]);
    hasher.update(key.issuer.as_bytes());
    hasher.update([0]);
    hasher.update(key.client_id.as_bytes());
    hex(&hasher.finalize())
}

/// The file stem of the client registration with `issuer`.
pub(super) fn client_file_stem(issuer: &str) -> String {
    hex(&Sha256::digest(issuer.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn io_error(path: &Path, source: io::Error) -> ClientError {
    ClientError::StoreIo {
        path: path.to_path_buf(),
        source,
    }
}

fn corrupt(path: &Path, reason: impl Into<String>) -> ClientError {
    ClientError::StoreCorrupt {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Creates `dir` (and missing parents) with mode 0700, or tightens an existing one to 0700.
fn ensure_private_dir(dir: &Path) -> Result<(), ClientError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|e| io_error(dir, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir)
            .map_err(|e| io_error(dir, e))?
            .permissions()
            .mode();
        // Also covers a umask that took owner bits away from a directory we just made.
        if mode & 0o777 != 0o700 {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                .map_err(|e| io_error(dir, e))?;
        }
    }
    Ok(())
}

/// Makes a rename or removal in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), ClientError> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_error(dir, e))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Replaces `target` (in `dir`) with `value` as pretty JSON, atomically and durably: a crash
/// leaves either the old file or the new one, never a torn one.
fn write_private_json<T: Serialize>(
    dir: &Path,
    target: &Path,
    value: &T,
) -> Result<(), ClientError> {
    let mut json = serde_json::to_vec_pretty(value).map_err(|e| io_error(target, e.into()))?;
    json.push(b'\n');
    let mut temp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .suffix(".partial")
        .tempfile_in(dir)
        .map_err(|e| io_error(dir, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        temp.as_file()
            .set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(|e| io_error(temp.path(), e))?;
    }
    temp.write_all(&json)
        .and_then(|()| temp.as_file().sync_all())
        .map_err(|e| io_error(temp.path(), e))?;
    // On failure the temp file is removed when `PersistError` drops.
    temp.persist(target)
        .map_err(|e| io_error(target, e.error))?;
    sync_dir(dir)
}

/// Removes a record file; a missing one is not an error.
fn remove_record(path: &Path) -> Result<(), ClientError> {
    match fs::remove_file(path) {
        Ok(()) => match path.parent() {
            Some(dir) => sync_dir(dir),
            None => Ok(()),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error(path, e)),
    }
}

/// Reads one record: `None` if the file does not exist; an error if others may read it, if it
/// does not parse, or if a newer mcpauth wrote it. Never modifies the file.
fn read_record<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, ClientError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(path, e)),
    };
    // The metadata of the file we opened, not of whatever the path names a moment later.
    let metadata = file.metadata().map_err(|e| io_error(path, e))?;
    if !metadata.is_file() {
        return Err(corrupt(path, "it is not a regular file"));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(ClientError::StorePermissions {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    let mut bytes = Vec::new();
    file.take(MAX_RECORD_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io_error(path, e))?;
    if bytes.len() as u64 > MAX_RECORD_BYTES {
        return Err(corrupt(
            path,
            format!("it is larger than {MAX_RECORD_BYTES} bytes"),
        ));
    }
    parse_record(path, &bytes).map(Some)
}

/// Parses a record, checking its schema version before its shape so that a record from a newer
/// mcpauth is reported as such rather than as a parse error.
fn parse_record<T: DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T, ClientError> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| corrupt(path, format!("it is not valid JSON: {e}")))?;
    match value.get("schema").and_then(serde_json::Value::as_u64) {
        None => return Err(corrupt(path, "it has no numeric `schema` field")),
        Some(schema) if schema > u64::from(SCHEMA_VERSION) => {
            return Err(corrupt(
                path,
                format!(
                    "it was written by a newer mcpauth (record schema version {schema}; this \
                     build reads up to version {SCHEMA_VERSION}). The file was left as it is: \
                     upgrade mcpauth, or set {HOME_ENV} to use another store"
                ),
            ));
        }
        Some(_) => {}
    }
    serde_json::from_value(value).map_err(|e| corrupt(path, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{RegistrationKind, now_unix};
    use mcpauth_core::{AccessToken, ClientSecret, RefreshToken, ScopeSet};

    fn key() -> StoreKey {
        StoreKey {
            resource: "https://mcp.example.com/mcp".into(),
            issuer: "https://auth.example.com".into(),
            client_id: "client-1".into(),
        }
    }

    fn token_record(key: StoreKey) -> TokenRecord {
        TokenRecord {
            schema: SCHEMA_VERSION,
            key,
            access_token: AccessToken::new("at-secret-1"),
            token_type: "Bearer".into(),
            dpop_key: None,
            refresh_token: Some(RefreshToken::new("rt-secret-1")),
            expires_at: Some(now_unix() + 3600),
            granted_scopes: ScopeSet::parse("read write"),
            requested_scopes: ScopeSet::parse("read"),
            updated_at: now_unix(),
        }
    }

    fn client_record(issuer: &str) -> ClientRecord {
        ClientRecord {
            schema: SCHEMA_VERSION,
            issuer: issuer.into(),
            client_id: "client-1".into(),
            client_secret: Some(ClientSecret::new("cs-secret-1")),
            token_endpoint_auth_method: "client_secret_basic".into(),
            redirect_uris: vec!["http://127.0.0.1/callback".into()],
            kind: RegistrationKind::Dynamic,
            secret_expires_at: None,
            updated_at: now_unix(),
        }
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn c27_file_names_are_the_sha256_of_the_key_and_stay_stable() {
        // Changing these names would orphan every stored login: they are part of the layout.
        assert_eq!(
            token_file_stem(&key()),
            "d6a389f1fc40e4e26b994378f699d502fc57a91514698747c20d0ed0deba8b05"
        );
        assert_eq!(
            client_file_stem("https://auth.example.com"),
            "1ce18487e0b9bfefc8259d779bfe98742d3cb9bcb19af96d0cd63e1274b168a2"
        );
        let store = FileStore::new("/s");
        assert_eq!(
            store.token_path(&key()),
            Path::new(
                "/s/tokens/d6a389f1fc40e4e26b994378f699d502fc57a91514698747c20d0ed0deba8b05.json"
            )
        );
        assert_eq!(
            store.client_path("https://auth.example.com"),
            Path::new(
                "/s/clients/1ce18487e0b9bfefc8259d779bfe98742d3cb9bcb19af96d0cd63e1274b168a2.json"
            )
        );
    }

    #[test]
    fn c7_every_key_field_changes_the_file_name() {
        let base = token_file_stem(&key());
        let mut other = key();
        other.resource.push('/');
        assert_ne!(token_file_stem(&other), base);
        let mut other = key();
        other.issuer.push('/');
        assert_ne!(token_file_stem(&other), base);
        let mut other = key();
        other.client_id.push('2');
        assert_ne!(token_file_stem(&other), base);
        // The separator keeps field boundaries: moving a character across one changes the name.
        let shifted = StoreKey {
            resource: "https://mcp.example.com/mcph".into(),
            issuer: "ttps://auth.example.com".into(),
            client_id: "client-1".into(),
        };
        assert_ne!(token_file_stem(&shifted), base);
    }

    #[test]
    fn mcpauth_home_overrides_the_platform_directory() {
        assert_eq!(
            location(Some("/tmp/mcpauth-home".into())).unwrap(),
            Path::new("/tmp/mcpauth-home")
        );
        // Unset or empty: the platform data directory (when a home directory is known).
        if let Some(dirs) = directories::ProjectDirs::from("", "", "mcpauth") {
            assert_eq!(location(None).unwrap(), dirs.data_dir());
            assert_eq!(location(Some("".into())).unwrap(), dirs.data_dir());
        }
    }

    #[test]
    fn debug_shows_only_the_directory() {
        let store = FileStore::new("/some/dir");
        assert_eq!(format!("{store:?}"), "FileStore { dir: \"/some/dir\" }");
        assert_eq!(store.dir(), Path::new("/some/dir"));
    }

    #[test]
    fn reads_create_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let store = FileStore::new(tmp.path().join("store"));
        assert!(store.load_tokens(&key()).unwrap().is_none());
        assert!(
            store
                .load_client("https://auth.example.com")
                .unwrap()
                .is_none()
        );
        assert!(store.list_tokens().unwrap().is_empty());
        store.delete_tokens(&key()).unwrap();
        store.delete_client("https://auth.example.com").unwrap();
        assert!(!store.dir().exists());
    }

    #[test]
    fn c27_save_leaves_no_temp_file_behind() {
        let tmp = tempfile::tempdir().unwrap();
        let store = FileStore::new(tmp.path());
        store.save_tokens(&token_record(key())).unwrap();
        store.save_tokens(&token_record(key())).unwrap();
        let names: Vec<_> = fs::read_dir(store.tokens_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, [format!("{}.json", token_file_stem(&key()))]);
    }

    #[cfg(unix)]
    #[test]
    fn c27_existing_wide_directories_are_tightened_to_0700() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("store");
        fs::create_dir_all(root.join("tokens")).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(root.join("tokens"), fs::Permissions::from_mode(0o777)).unwrap();
        let store = FileStore::new(&root);
        store.save_tokens(&token_record(key())).unwrap();
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(&root.join("tokens")), 0o700);
        drop(store.lock(&key()).unwrap());
        assert_eq!(mode(&root.join("locks")), 0o700);
        let lock_file = root
            .join("locks")
            .join(format!("{}.lock", token_file_stem(&key())));
        assert_eq!(mode(&lock_file), 0o600);
    }

    #[cfg(unix)]
    #[test]
    fn c27_save_replaces_an_insecure_file_with_a_private_one() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let store = FileStore::new(tmp.path());
        store.save_tokens(&token_record(key())).unwrap();
        let path = store.token_path(&key());
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            store.load_tokens(&key()),
            Err(ClientError::StorePermissions { mode: 0o644, .. })
        ));
        store.save_tokens(&token_record(key())).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert!(store.load_tokens(&key()).unwrap().is_some());
    }

    #[test]
    fn c7_a_record_under_another_keys_name_is_corrupt() {
        let tmp = tempfile::tempdir().unwrap();
        let store = FileStore::new(tmp.path());
        let mut other = key();
        other.issuer = "https://evil.example.com".into();
        store.save_tokens(&token_record(other.clone())).unwrap();
        fs::rename(store.token_path(&other), store.token_path(&key())).unwrap();
        let err = store.load_tokens(&key()).unwrap_err();
        assert!(
            matches!(&err, ClientError::StoreCorrupt { path, reason }
                if *path == store.token_path(&key()) && reason.contains("https://evil.example.com")),
            "{err}"
        );
        let err = store.list_tokens().unwrap_err();
        assert!(matches!(err, ClientError::StoreCorrupt { .. }), "{err}");

        store
            .save_client(&client_record("https://evil.example.com"))
            .unwrap();
        fs::rename(
            store.client_path("https://evil.example.com"),
            store.client_path("https://auth.example.com"),
        )
        .unwrap();
        let err = store.load_client("https://auth.example.com").unwrap_err();
        assert!(matches!(err, ClientError::StoreCorrupt { .. }), "{err}");
    }

    #[test]
    fn c27_a_record_without_schema_is_corrupt() {
        let tmp = tempfile::tempdir().unwrap();
        let store = FileStore::new(tmp.path());
        store.save_tokens(&token_record(key())).unwrap();
        let path = store.token_path(&key());
        let mut value: serde_json::Value =
            serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        value.as_object_mut().unwrap().remove("schema");
        fs::write(&path, serde_json::to_vec(&value).unwrap()).unwrap();
        let err = store.load_tokens(&key()).unwrap_err();
        assert!(
            matches!(&err, ClientError::StoreCorrupt { reason, .. } if reason.contains("schema")),
            "{err}"
        );
    }

    #[test]
    fn c27_a_directory_in_place_of_a_record_is_corrupt() {
        let tmp = tempfile::tempdir().unwrap();
        let store = FileStore::new(tmp.path());
        fs::create_dir_all(store.token_path(&key())).unwrap();
        let err = store.load_tokens(&key()).unwrap_err();
        assert!(matches!(err, ClientError::StoreCorrupt { .. }), "{err}");
    }

    #[test]
    fn c27_an_oversized_record_is_corrupt() {
        let tmp = tempfile::tempdir().unwrap();
        let store = FileStore::new(tmp.path());
        store.save_tokens(&token_record(key())).unwrap();
        let path = store.token_path(&key());
        fs::write(&path, vec![b' '; MAX_RECORD_BYTES as usize + 1]).unwrap();
        let err = store.load_tokens(&key()).unwrap_err();
        assert!(
            matches!(&err, ClientError::StoreCorrupt { reason, .. } if reason.contains("larger")),
            "{err}"
        );
    }
}
