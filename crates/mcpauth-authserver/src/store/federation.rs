//! Upstream logins in progress (SPEC F1-F8) and the users identity providers sign in.

use sqlx::Row;

use super::{Store, is_unique_violation};
use crate::error::AuthServerError;

/// The password hash of users an identity provider signs in: matches no password (not a PHC
/// string), and the login form treats such a user as unknown.
pub(crate) const NO_PASSWORD: &str = "!";

/// A sign-in at an identity provider, waiting for its callback: single-use, bound to the
/// browser session and the pending authorization request.
pub(crate) struct UpstreamLogin {
    /// SHA-256 of the `state` sent to the provider.
    pub state_hash: String,
    pub request_id: String,
    /// SHA-256 of the browser's session cookie.
    pub browser_hash: String,
    pub provider: String,
    /// The OIDC `nonce`, sealed under the state ([`seal`](crate::secrets::seal)).
    pub nonce_sealed: String,
    /// The PKCE verifier, sealed under the state.
    pub verifier_sealed: String,
    pub expires_at: i64,
}

crate::redacted_debug!(UpstreamLogin);

impl Store {
    pub(crate) async fn insert_upstream_login(
        &self,
        l: &UpstreamLogin,
    ) -> Result<(), AuthServerError> {
        sqlx::query(
            "INSERT INTO upstream_logins (state_hash, request_id, browser_hash, provider, nonce, \
             pkce_verifier, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&l.state_hash)
        .bind(&l.request_id)
        .bind(&l.browser_hash)
        .bind(&l.provider)
        .bind(&l.nonce_sealed)
        .bind(&l.verifier_sealed)
        .bind(l.expires_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Deletes and returns the upstream login with this state hash (single use).
    pub(crate) async fn take_upstream_login(
        &self,
        state_hash: &str,
    ) -> Result<Option<UpstreamLogin>, AuthServerError> {
        let row = sqlx::query(
            "DELETE FROM upstream_logins WHERE state_hash = $1 RETURNING state_hash, request_id, \
             browser_hash, provider, nonce, pkce_verifier, expires_at",
        )
        .bind(state_hash)
        .fetch_optional(self.pool())
        .await?;
        let Some(r) = row else {
            return Ok(None);
        };
        Ok(Some(UpstreamLogin {
            state_hash: r.try_get("state_hash")?,
            request_id: r.try_get("request_id")?,
            browser_hash: r.try_get("browser_hash")?,
            provider: r.try_get("provider")?,
            nonce_sealed: r.try_get("nonce")?,
            verifier_sealed: r.try_get("pkce_verifier")?,
            expires_at: r.try_get("expires_at")?,
        }))
    }

    /// The id of the user `username` that `provider` signed in before.
    pub(crate) async fn federated_user(
        &self,
        provider: &str,
        username: &str,
    ) -> Result<Option<String>, AuthServerError> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM users WHERE username = $1 AND external_provider = $2",
        )
        .bind(username)
        .bind(provider)
        .fetch_optional(self.pool())
        .await?)
    }

    /// The identity provider that signs in the user `user_id`, or `None` for a local user.
    pub(crate) async fn user_provider(
        &self,
        user_id: &str,
    ) -> Result<Option<String>, AuthServerError> {
        Ok(
            sqlx::query_scalar("SELECT external_provider FROM users WHERE id = $1")
                .bind(user_id)
                .fetch_optional(self.pool())
                .await?
                .flatten(),
        )
    }

    /// Adds a user signed in by `provider`, with the password hash [`NO_PASSWORD`].
    pub(crate) async fn insert_federated_user(
        &self,
        id: &str,
        username: &str,
        provider: &str,
        now: i64,
    ) -> Result<(), AuthServerError> {
        sqlx::query(
            "INSERT INTO users (id, username, password_hash, created_at, external_provider) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(username)
        .bind(NO_PASSWORD)
        .bind(now)
        .bind(provider)
        .execute(self.pool())
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                AuthServerError::AlreadyExists {
                    what: "user",
                    name: username.to_owned(),
                }
            } else {
                e.into()
            }
        })?;
        Ok(())
    }
}
