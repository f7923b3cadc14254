//! Signing keys: the current one signs, the previous one stays in the JWKS.

use sqlx::Row;

use super::{Store, is_unique_violation};
use crate::error::{AuthServerError, DatabaseError};

/// A signing key as stored (the private key is PKCS#8, base64).
#[derive(Clone)]
pub(crate) struct KeyRow {
    pub kid: String,
    pub alg: String,
    pub private_pkcs8: String,
    pub public_jwk: String,
    pub status: String,
    pub created_at: i64,
}

impl std::fmt::Debug for KeyRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRow")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Keys that are `current` or `previous`, current first.
    pub(crate) async fn active_keys(&self) -> Result<Vec<KeyRow>, AuthServerError> {
        self.keys_where(
            "SELECT * FROM signing_keys WHERE status IN ('current', 'previous') \
             ORDER BY created_at DESC, kid",
        )
        .await
    }

    /// Every key, including retired ones, current first.
    pub(crate) async fn all_keys(&self) -> Result<Vec<KeyRow>, AuthServerError> {
        self.keys_where("SELECT * FROM signing_keys ORDER BY created_at DESC, kid")
            .await
    }

    async fn keys_where(&self, sql: &'static str) -> Result<Vec<KeyRow>, AuthServerError> {
        let rows = sqlx::query(sql).fetch_all(self.pool()).await?;
        let mut keys = rows
            .iter()
            .map(|r| {
                Ok(KeyRow {
                    kid: r.try_get("kid")?,
                    alg: r.try_get("alg")?,
                    private_pkcs8: r.try_get("private_pkcs8")?,
                    public_jwk: r.try_get("public_jwk")?,
                    status: r.try_get("status")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        keys.sort_by_key(|k| k.status != "current");
        Ok(keys)
    }

    /// Inserts `key` as the first current key; false when another instance was quicker.
    pub(crate) async fn insert_first_key(&self, key: &KeyRow) -> Result<bool, AuthServerError> {
        match self.insert_key(key).await {
            Ok(()) => Ok(true),
            Err(AuthServerError::Database(DatabaseError(e))) if is_unique_violation(&e) => {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    async fn insert_key(&self, key: &KeyRow) -> Result<(), AuthServerError> {
        sqlx::query(
            "INSERT INTO signing_keys (kid, alg, private_pkcs8, public_jwk, status, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&key.kid)
        .bind(&key.alg)
        .bind(&key.private_pkcs8)
        .bind(&key.public_jwk)
        .bind(&key.status)
        .bind(key.created_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Retires the previous key, demotes the current one and makes `key` current, in one
    /// transaction.
    pub(crate) async fn rotate_keys(&self, key: &KeyRow) -> Result<(), AuthServerError> {
        let mut tx = self.pool().begin().await?;
        for sql in [
            "UPDATE signing_keys SET status = 'retired' WHERE status = 'previous'",
            "UPDATE signing_keys SET status = 'previous' WHERE status = 'current'",
        ] {
            sqlx::query(sql).execute(&mut *tx).await?;
        }
        sqlx::query(
            "INSERT INTO signing_keys (kid, alg, private_pkcs8, public_jwk, status, created_at) \
             VALUES ($1, $2, $3, $4, 'current', $5)",
        )
        .bind(&key.kid)
        .bind(&key.alg)
        .bind(&key.private_pkcs8)
        .bind(&key.public_jwk)
        .bind(key.created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
