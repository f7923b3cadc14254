//! Login sessions, pending authorization requests and remembered consents.

use sqlx::Row;

use super::Store;
use crate::error::AuthServerError;

impl Store {
    pub(crate) async fn insert_session(
        &self,
        session_hash: &str,
        user_id: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<(), AuthServerError> {
        sqlx::query(
            "INSERT INTO login_sessions (session_hash, user_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(session_hash)
        .bind(user_id)
        .bind(now)
        .bind(expires_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The user of a live session.
    pub(crate) async fn delete_session(&self, session_hash: &str) -> Result<(), AuthServerError> {
        sqlx::query("DELETE FROM login_sessions WHERE session_hash = $1")
            .bind(session_hash)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    pub(crate) async fn session_user(
        &self,
        session_hash: &str,
        now: i64,
    ) -> Result<Option<String>, AuthServerError> {
        Ok(sqlx::query_scalar(
            "SELECT user_id FROM login_sessions WHERE session_hash = $1 AND expires_at > $2",
        )
        .bind(session_hash)
        .bind(now)
        .fetch_optional(self.pool())
        .await?)
    }

    pub(crate) async fn insert_request(
        &self,
        id: &str,
        browser_hash: &str,
        request_json: &str,
        expires_at: i64,
    ) -> Result<(), AuthServerError> {
        sqlx::query(
            "INSERT INTO authorization_requests (id, browser_hash, request, expires_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(browser_hash)
        .bind(request_json)
        .bind(expires_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// A live pending request made by this browser, as JSON.
    pub(crate) async fn request(
        &self,
        id: &str,
        browser_hash: &str,
        now: i64,
    ) -> Result<Option<String>, AuthServerError> {
        Ok(sqlx::query_scalar(
            "SELECT request FROM authorization_requests \
             WHERE id = $1 AND browser_hash = $2 AND expires_at > $3",
        )
        .bind(id)
        .bind(browser_hash)
        .bind(now)
        .fetch_optional(self.pool())
        .await?)
    }

    /// Moves a pending request to a new browser binding (after login changed the cookie).
    pub(crate) async fn rebind_request(
        &self,
        id: &str,
        browser_hash: &str,
    ) -> Result<(), AuthServerError> {
        sqlx::query("UPDATE authorization_requests SET browser_hash = $1 WHERE id = $2")
            .bind(browser_hash)
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Deletes a pending request; false when it was already gone (used once).
    pub(crate) async fn take_request(&self, id: &str) -> Result<bool, AuthServerError> {
        let n = sqlx::query("DELETE FROM authorization_requests WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    pub(crate) async fn insert_consent(
        &self,
        user_id: &str,
        client_id: &str,
        scope: &str,
        now: i64,
    ) -> Result<(), AuthServerError> {
        sqlx::query(
            "INSERT INTO consents (user_id, client_id, scope, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (user_id, client_id, scope) DO NOTHING",
        )
        .bind(user_id)
        .bind(client_id)
        .bind(scope)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The scope sets this user granted this client.
    pub(crate) async fn consents(
        &self,
        user_id: &str,
        client_id: &str,
    ) -> Result<Vec<String>, AuthServerError> {
        let rows = sqlx::query("SELECT scope FROM consents WHERE user_id = $1 AND client_id = $2")
            .bind(user_id)
            .bind(client_id)
            .fetch_all(self.pool())
            .await?;
        Ok(rows
            .iter()
            .map(|r| r.try_get("scope"))
            .collect::<Result<_, _>>()?)
    }
}
