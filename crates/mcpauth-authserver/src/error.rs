//! The one error type of `mcpauth-authserver` (for setup and admin operations; protocol errors
//! are answered on the wire as OAuth errors).

use mcpauth_core::CoreError;

/// Everything that can go wrong outside the OAuth wire protocol.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthServerError {
    /// The configuration is unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The database failed or refused a statement.
    #[error("database error: {0}")]
    Database(DatabaseError),
    /// Applying the embedded migrations failed.
    #[error("database migration failed: {0}")]
    Migrate(MigrationError),
    /// The database URL names a backend this build does not support.
    #[error(
        "unsupported database URL {0:?}: use sqlite://PATH?mode=rwc, sqlite::memory: or postgres://…"
    )]
    UnsupportedDatabase(String),
    /// A SQLite database file, or its `-wal` or `-shm`, that group or others can access
    /// (security finding 4: it holds the signing keys and password hashes).
    #[error(
        "the database file {path} has mode {mode:o}; it holds signing keys and password hashes, so \
         a file that group or others can access is refused. Fix it with: chmod 600 {path}"
    )]
    InsecureDatabaseFile {
        /// The file.
        path: std::path::PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A SQLite database file that could not be created or examined.
    #[error("the database file {path}: {error}")]
    DatabaseFile {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error (shown in the message, so not also a `source`).
        error: std::io::Error,
    },
    /// The vault key file (SPEC F5) could not be created or read, is not 32 bytes of base64url,
    /// or group or others can access it.
    #[error("the vault key file {path}: {reason}")]
    VaultKey {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong (no key material).
        reason: String,
    },
    /// A key could not be generated, parsed or used.
    #[error("cryptographic failure: {0}")]
    Crypto(String),
    /// Hashing a password failed.
    #[error("password hashing failed: {0}")]
    Password(String),
    /// A user, client or key that does not exist.
    #[error("no {what} named {name:?}")]
    NotFound {
        /// "user", "client", ...
        what: &'static str,
        /// The name asked for.
        name: String,
    },
    /// A user or client that already exists.
    #[error("a {what} named {name:?} already exists")]
    AlreadyExists {
        /// "user", "client", ...
        what: &'static str,
        /// The name.
        name: String,
    },
    /// Invalid input to an admin operation (e.g. a bad redirect URI).
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// What was invalid.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// A URL or document failed a rule of `mcpauth-core`.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// Serving failed (binding, accepting).
    #[error("server I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// A database failure. Opaque: the database driver's error type is not part of this crate's
/// API (code review finding 8), so a driver upgrade is no breaking change; `Display` and
/// `source` say what happened.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct DatabaseError(pub(crate) sqlx::Error);

/// A failure applying the embedded migrations (opaque, like [`DatabaseError`]).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct MigrationError(pub(crate) sqlx::migrate::MigrateError);

impl From<sqlx::Error> for AuthServerError {
    fn from(e: sqlx::Error) -> Self {
        AuthServerError::Database(DatabaseError(e))
    }
}

impl From<sqlx::migrate::MigrateError> for AuthServerError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        AuthServerError::Migrate(MigrationError(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Code review finding 8: the public error carries our opaque type, not the driver's, and
    /// still says what happened.
    #[test]
    fn review8_database_errors_are_opaque_and_still_explain() {
        let e: AuthServerError = sqlx::Error::PoolTimedOut.into();
        let AuthServerError::Database(inner) = &e else {
            panic!("{e:?}");
        };
        let _: &DatabaseError = inner;
        assert!(e.to_string().starts_with("database error: "), "{e}");
        assert!(e.to_string().contains("timed out"), "{e}");
    }
}
