//! Persistent state over SQLite or PostgreSQL, with runtime queries (no compile-time checked
//! macros, no database at build time) through sqlx's `Any` driver. The schema is written in the
//! SQL both backends share, so every query here runs unchanged on both; `$1` placeholders work
//! on SQLite too.
//!
//! Every state change that must happen once (spending a code, rotating a refresh token) is a
//! single conditional `UPDATE … WHERE used_at IS NULL` whose row count (or `RETURNING` rows)
//! decides the winner, so several server instances on one PostgreSQL database stay correct
//! without locks. Refresh rotations are committed in batches (`rotation.rs`).

mod clients;
mod device;
mod dpop;
mod federation;
mod grant_list;
mod grants;
mod keys;
mod revoked;
mod rotation;
mod sessions;
mod users;
mod vault;

use std::borrow::Cow;
#[cfg(unix)]
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{Executor, SqlStr};

use clients::ClientCache;
pub(crate) use clients::ClientRow;
pub(crate) use device::{DeviceStatus, NewDevice, Poll};
pub(crate) use federation::{NO_PASSWORD, UpstreamLogin};
pub(crate) use grant_list::GrantRow;
pub(crate) use grants::{NewCode, NewRefresh, RefreshRow};
pub(crate) use keys::KeyRow;
use rotation::Rotator;
pub(crate) use rotation::{Spend, Spent};
pub(crate) use users::UserRow;
pub(crate) use vault::UpstreamGrant;

use crate::error::AuthServerError;
use crate::secrets::now;

/// The database backend behind a [`Store`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// SQLite (a file, or `sqlite::memory:`).
    Sqlite,
    /// PostgreSQL (several server instances may share one database).
    Postgres,
}

/// The server's database: users, clients, codes, refresh tokens, consents, sessions and signing
/// keys. Cheap to clone (a connection pool).
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    clients: Arc<ClientCache>,
    rotator: Arc<Rotator>,
    revoked: Arc<revoked::Revoked>,
}

/// The embedded migrations. Each is one portable file that both backends run; a
/// backend-specific step would be added here with a `match backend`.
fn migrator(_backend: Backend) -> Migrator {
    let migration = |version, name, sql| {
        Migration::new(
            version,
            Cow::Borrowed(name),
            MigrationType::Simple,
            SqlStr::from_static(sql),
            false,
        )
    };
    Migrator::with_migrations(vec![
        migration(1, "init", include_str!("../../migrations/0001_init.sql")),
        migration(
            2,
            "introspection",
            include_str!("../../migrations/0002_introspection.sql"),
        ),
        migration(
            3,
            "federation",
            include_str!("../../migrations/0003_federation.sql"),
        ),
        migration(4, "vault", include_str!("../../migrations/0004_vault.sql")),
        migration(5, "dpop", include_str!("../../migrations/0005_dpop.sql")),
        migration(
            6,
            "server_secrets",
            include_str!("../../migrations/0006_server_secrets.sql"),
        ),
        migration(
            7,
            "device",
            include_str!("../../migrations/0007_device.sql"),
        ),
        migration(
            8,
            "revocation_sync",
            include_str!("../../migrations/0008_revocation_sync.sql"),
        ),
    ])
}

impl Store {
    /// Opens (creating when the URL allows it) and migrates the database at `url`:
    /// `sqlite://PATH?mode=rwc`, `sqlite::memory:` or `postgres://USER@HOST:PORT/DB`.
    pub async fn connect(url: &str) -> Result<Store, AuthServerError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(AuthServerError::UnsupportedDatabase(redact_url(url)));
        };
        let memory = url.contains(":memory:") || url.contains("mode=memory");
        let mut options = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(10));
        options = match (backend, memory) {
            // Every connection to an in-memory database is a new database: keep exactly one.
            (Backend::Sqlite, true) => options
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None),
            (Backend::Sqlite, false) => options.max_connections(4),
            (Backend::Postgres, _) => options.max_connections(16),
        };
        if backend == Backend::Sqlite {
            options = options.after_connect(|conn, _| {
                Box::pin(async move {
                    // WAL makes NORMAL durable against crashes (not power loss of the last
                    // commits) and lets readers run beside the writer.
                    conn.execute("PRAGMA synchronous = NORMAL").await?;
                    Ok(())
                })
            });
        }
        #[cfg(unix)]
        if backend == Backend::Sqlite && !memory {
            protect_sqlite_file(url)?;
        }
        let pool = options.connect(url).await?;
        if backend == Backend::Sqlite && !memory {
            pool.execute("PRAGMA journal_mode = WAL").await?;
        }
        migrator(backend).run(&pool).await?;
        Ok(Store {
            pool,
            backend,
            clients: Arc::default(),
            rotator: Arc::default(),
            revoked: Arc::default(),
        })
    }

    /// Which backend this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes the pool (waits for checked-out connections).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Deletes expired codes, refresh tokens, sessions, pending requests, revocation records,
    /// assertion ids, DPoP proofs and bindings, cached client metadata documents, and dynamically registered clients whose
    /// registration expired, with their consents. Returns the number of rows removed.
    pub async fn purge_expired(&self) -> Result<u64, AuthServerError> {
        let now = now();
        let mut removed = 0;
        for sql in [
            "DELETE FROM authorization_codes WHERE expires_at < $1",
            "DELETE FROM refresh_tokens WHERE expires_at < $1",
            "DELETE FROM revoked_families WHERE expires_at < $1",
            "DELETE FROM revoked_access_tokens WHERE expires_at < $1",
            "DELETE FROM client_assertion_jtis WHERE expires_at < $1",
            "DELETE FROM login_sessions WHERE expires_at < $1",
            "DELETE FROM authorization_requests WHERE expires_at < $1",
            "DELETE FROM upstream_logins WHERE expires_at < $1",
            "DELETE FROM dpop_proofs WHERE expires_at < $1",
            "DELETE FROM dpop_families WHERE expires_at < $1",
            "DELETE FROM device_codes WHERE expires_at < $1",
            "DELETE FROM upstream_grants WHERE expires_at < $1",
            "DELETE FROM consents WHERE client_id IN (SELECT client_id FROM clients \
             WHERE kind = 'dynamic' AND expires_at <= $1)",
            "DELETE FROM clients WHERE kind = 'metadata_document' AND expires_at < $1",
            // Expired at `expires_at` itself, as `clients::resolve` sees it.
            "DELETE FROM clients WHERE kind = 'dynamic' AND expires_at <= $1",
        ] {
            removed += sqlx::query(sql)
                .bind(now)
                .execute(&self.pool)
                .await?
                .rows_affected();
        }
        Ok(removed)
    }
}

/// Keeps the SQLite file behind `url` to its owner (security finding 4: it holds the signing keys
/// and password hashes). When sqlx would create it (`mode=rwc`), creates it first with mode 0600,
/// whatever the umask; SQLite gives the `-wal` and `-shm` files it writes beside it the main
/// file's mode. Refuses an existing file, `-wal` or `-shm` that group or others can access.
#[cfg(unix)]
fn protect_sqlite_file(url: &str) -> Result<(), AuthServerError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

    use sqlx::ConnectOptions;
    use sqlx::sqlite::SqliteConnectOptions;

    // An unparseable URL is left to sqlx, which refuses it with its own reason.
    let Some(options) = url::Url::parse(url)
        .ok()
        .and_then(|u| SqliteConnectOptions::from_url(&u).ok())
    else {
        return Ok(());
    };
    let sqlx_mode = options
        .to_url_lossy()
        .query_pairs()
        .find_map(|(k, v)| (k == "mode").then(|| v.into_owned()));
    if sqlx_mode.as_deref() == Some("memory") {
        return Ok(());
    }
    let path = options.get_filename();
    let file_error = |path: &Path, error| AuthServerError::DatabaseFile {
        path: path.to_owned(),
        error,
    };
    if sqlx_mode.as_deref() == Some("rwc") {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            // The umask may have taken bits away; set exactly 0600.
            Ok(file) => file
                .set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(|e| file_error(path, e))?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(file_error(path, e)),
        }
    }
    for file in [
        path.to_owned(),
        companion(path, "-wal"),
        companion(path, "-shm"),
    ] {
        match std::fs::metadata(&file) {
            Ok(m) if m.permissions().mode() & 0o077 != 0 => {
                return Err(AuthServerError::InsecureDatabaseFile {
                    mode: m.permissions().mode() & 0o7777,
                    path: file,
                });
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(file_error(&file, e)),
        }
    }
    Ok(())
}

/// `PATH-wal` or `PATH-shm`: the files SQLite keeps beside the database in WAL mode.
#[cfg(unix)]
fn companion(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The URL without its password, for error messages.
fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        // Unparseable: it may still hold a password, so none of it is shown (review finding 8).
        Err(_) => "(an unparseable URL)".into(),
    }
}

/// Whether a database error is a unique-constraint violation.
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// The outcome of an INSERT whose key may exist: `true` when the row went in, `false` when the
/// key was there already (a unique violation), the error otherwise.
pub(crate) fn first_insert(
    inserted: Result<sqlx::any::AnyQueryResult, sqlx::Error>,
) -> Result<bool, AuthServerError> {
    match inserted {
        Ok(_) => Ok(true),
        Err(e) if is_unique_violation(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_sqlite_migrates_and_purges() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        assert_eq!(store.backend(), Backend::Sqlite);
        assert_eq!(store.purge_expired().await.unwrap(), 0);
        // Migrating twice is a no-op.
        migrator(Backend::Sqlite).run(store.pool()).await.unwrap();
    }

    #[test]
    fn review8_an_unparseable_database_url_is_redacted_whole() {
        assert_eq!(
            redact_url("postgres://u:s3cret@[bad/db"),
            "(an unparseable URL)"
        );
        assert_eq!(
            redact_url("postgres://u:s3cret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
    }

    /// Security finding 4: the database holds the signing keys and password hashes, so a new
    /// file, and the `-wal` and `-shm` files SQLite writes beside it, are readable by the owner
    /// only.
    #[cfg(unix)]
    #[tokio::test]
    async fn sec4_a_new_sqlite_database_and_its_wal_and_shm_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("as.db");
        let store = Store::connect(&format!("sqlite://{}?mode=rwc", path.display()))
            .await
            .unwrap();
        // The migrations wrote through the WAL: both companions exist while it is open.
        for file in [&path, &companion(&path, "-wal"), &companion(&path, "-shm")] {
            let mode = std::fs::metadata(file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", file.display());
        }
        store.close().await;
    }

    /// Security finding 4: an existing database (or a companion file) that others can read is
    /// refused, with the command that fixes it.
    #[cfg(unix)]
    #[tokio::test]
    async fn sec4_a_group_or_world_readable_database_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("as.db");
        let url = format!("sqlite://{}?mode=rwc", path.display());
        Store::connect(&url).await.unwrap().close().await;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Store::connect(&url).await.unwrap_err();
        assert!(
            matches!(&e, AuthServerError::InsecureDatabaseFile { path: p, mode: 0o644 } if *p == path),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .contains(&format!("chmod 600 {}", path.display())),
            "{e}"
        );
        // After the fix it opens; a stray world-readable WAL is refused the same way.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        Store::connect(&url).await.unwrap().close().await;
        let stray = companion(&path, "-wal");
        std::fs::write(&stray, b"").unwrap();
        std::fs::set_permissions(&stray, std::fs::Permissions::from_mode(0o604)).unwrap();
        let e = Store::connect(&url).await.unwrap_err();
        assert!(
            e.to_string()
                .contains(&format!("chmod 600 {}", stray.display())),
            "{e}"
        );
    }

    #[tokio::test]
    async fn unknown_scheme_is_refused() {
        let e = Store::connect("mysql://u:pw@h/db").await.unwrap_err();
        assert!(e.to_string().contains("unsupported database URL"), "{e}");
        assert!(!e.to_string().contains("pw"), "{e}");
    }
}
