//! The upstream token vault's rows (SPEC F2-F5): one per sign-in at an identity provider,
//! attached to the grant family its authorization code starts and deleted with it.

use sqlx::Row;

use super::Store;
use crate::error::AuthServerError;

/// A stored upstream grant; `sealed` opens only with the vault key
/// ([`Vault`](crate::vault::Vault)).
pub(crate) struct UpstreamGrant {
    pub id: String,
    /// The authorization request the sign-in belongs to, until its code is issued.
    pub request_id: String,
    pub provider: String,
    /// The account's subject at the provider.
    pub subject: String,
    pub sealed: String,
}

crate::redacted_debug!(UpstreamGrant);

impl Store {
    /// Stores a sign-in's upstream grant, not yet attached to a family, replacing an earlier
    /// sign-in's for the same request.
    pub(crate) async fn insert_upstream_grant(
        &self,
        g: &UpstreamGrant,
        now: i64,
        expires_at: i64,
    ) -> Result<(), AuthServerError> {
        sqlx::query("DELETE FROM upstream_grants WHERE request_id = $1")
            .bind(&g.request_id)
            .execute(self.pool())
            .await?;
        sqlx::query(
            "INSERT INTO upstream_grants (id, request_id, provider, subject, sealed, created_at, \
             expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&g.id)
        .bind(&g.request_id)
        .bind(&g.provider)
        .bind(&g.subject)
        .bind(&g.sealed)
        .bind(now)
        .bind(expires_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Attaches the upstream grant of the authorization request `request_id` to `family_id`,
    /// kept until `expires_at`; whether there was one.
    pub(crate) async fn attach_upstream_grant(
        &self,
        request_id: &str,
        family_id: &str,
        expires_at: i64,
    ) -> Result<bool, AuthServerError> {
        Ok(sqlx::query(
            "UPDATE upstream_grants SET family_id = $1, expires_at = $2, request_id = NULL \
             WHERE request_id = $3 AND family_id IS NULL",
        )
        .bind(family_id)
        .bind(expires_at)
        .bind(request_id)
        .execute(self.pool())
        .await?
        .rows_affected()
            == 1)
    }

    /// The upstream grant of `family_id`, if its sign-in was at an identity provider.
    pub(crate) async fn upstream_grant(
        &self,
        family_id: &str,
    ) -> Result<Option<UpstreamGrant>, AuthServerError> {
        let row = sqlx::query(
            "SELECT id, provider, subject, sealed FROM upstream_grants WHERE family_id = $1",
        )
        .bind(family_id)
        .fetch_optional(self.pool())
        .await?;
        let Some(r) = row else {
            return Ok(None);
        };
        Ok(Some(UpstreamGrant {
            id: r.try_get("id")?,
            request_id: String::new(),
            provider: r.try_get("provider")?,
            subject: r.try_get("subject")?,
            sealed: r.try_get("sealed")?,
        }))
    }

    /// Replaces the sealed tokens of `id` when they are still `old` (a concurrent refresh that
    /// stored first wins); whether this one stored.
    pub(crate) async fn update_upstream_grant(
        &self,
        id: &str,
        old: &str,
        sealed: &str,
        expires_at: i64,
    ) -> Result<bool, AuthServerError> {
        Ok(sqlx::query(
            "UPDATE upstream_grants SET sealed = $1, expires_at = $2 WHERE id = $3 AND sealed = $4",
        )
        .bind(sealed)
        .bind(expires_at)
        .bind(id)
        .bind(old)
        .execute(self.pool())
        .await?
        .rows_affected()
            == 1)
    }

    /// Keeps the upstream grant of `family_id` until `expires_at` (the family was refreshed).
    pub(crate) async fn touch_upstream_grant(
        &self,
        family_id: &str,
        expires_at: i64,
    ) -> Result<(), AuthServerError> {
        sqlx::query("UPDATE upstream_grants SET expires_at = $1 WHERE family_id = $2")
            .bind(expires_at)
            .bind(family_id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Deletes the upstream grant of `family_id` (the family was revoked).
    pub(crate) async fn delete_upstream_grant(
        &self,
        family_id: &str,
    ) -> Result<(), AuthServerError> {
        sqlx::query("DELETE FROM upstream_grants WHERE family_id = $1")
            .bind(family_id)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}
