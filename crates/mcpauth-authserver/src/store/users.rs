//! Users who log in on the login page.

use sqlx::Row;

use super::{Store, is_unique_violation};
use crate::error::AuthServerError;

/// A user as stored.
#[derive(Clone)]
pub(crate) struct UserRow {
    pub id: String,
    pub username: String,
    pub password_hash: String,
    pub created_at: i64,
}

impl std::fmt::Debug for UserRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRow")
            .field("id", &self.id)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

fn user(row: &sqlx::any::AnyRow) -> Result<UserRow, sqlx::Error> {
    Ok(UserRow {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        password_hash: row.try_get("password_hash")?,
        created_at: row.try_get("created_at")?,
    })
}

impl Store {
    pub(crate) async fn insert_user(&self, u: &UserRow) -> Result<(), AuthServerError> {
        sqlx::query(
            "INSERT INTO users (id, username, password_hash, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&u.id)
        .bind(&u.username)
        .bind(&u.password_hash)
        .bind(u.created_at)
        .execute(self.pool())
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                AuthServerError::AlreadyExists {
                    what: "user",
                    name: u.username.clone(),
                }
            } else {
                e.into()
            }
        })?;
        Ok(())
    }

    pub(crate) async fn user_by_name(
        &self,
        username: &str,
    ) -> Result<Option<UserRow>, AuthServerError> {
        let row = sqlx::query("SELECT * FROM users WHERE username = $1")
            .bind(username)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.as_ref().map(user).transpose()?)
    }

    pub(crate) async fn user_by_id(&self, id: &str) -> Result<Option<UserRow>, AuthServerError> {
        let row = sqlx::query("SELECT * FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.as_ref().map(user).transpose()?)
    }

    pub(crate) async fn list_users(&self) -> Result<Vec<UserRow>, AuthServerError> {
        let rows = sqlx::query("SELECT * FROM users ORDER BY username")
            .fetch_all(self.pool())
            .await?;
        Ok(rows.iter().map(user).collect::<Result<_, _>>()?)
    }

    /// Removes the user and their sessions and consents. Returns whether the user existed.
    pub(crate) async fn delete_user(&self, username: &str) -> Result<bool, AuthServerError> {
        let Some(u) = self.user_by_name(username).await? else {
            return Ok(false);
        };
        self.revoke_grants_of(true, &u.id, crate::secrets::now())
            .await?;
        for sql in [
            "DELETE FROM login_sessions WHERE user_id = $1",
            "DELETE FROM consents WHERE user_id = $1",
            "DELETE FROM authorization_codes WHERE user_id = $1",
            "DELETE FROM device_codes WHERE user_id = $1",
            "DELETE FROM users WHERE id = $1",
        ] {
            sqlx::query(sql).bind(&u.id).execute(self.pool()).await?;
        }
        Ok(true)
    }
}
