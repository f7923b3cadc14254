//! Authorization codes, refresh tokens, revocations and client-assertion ids. Secrets arrive
//! here already hashed.

use sqlx::Row;

use super::{Store, first_insert};
use crate::error::AuthServerError;

/// A new authorization code.
#[derive(Debug)]
pub(crate) struct NewCode<'a> {
    pub code_hash: &'a str,
    pub client_id: &'a str,
    pub user_id: &'a str,
    pub redirect_uri: &'a str,
    pub code_challenge: &'a str,
    pub resource: Option<&'a str>,
    pub scope: &'a str,
    pub family_id: &'a str,
    pub created_at: i64,
    pub expires_at: i64,
}

/// A stored authorization code.
#[derive(Debug)]
pub(crate) struct CodeRow {
    pub client_id: String,
    pub user_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub resource: Option<String>,
    pub scope: String,
    pub family_id: String,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

/// A new refresh token.
#[derive(Debug)]
pub(crate) struct NewRefresh<'a> {
    pub token_hash: &'a str,
    pub family_id: &'a str,
    pub client_id: &'a str,
    pub user_id: &'a str,
    pub scope: &'a str,
    pub resource: Option<&'a str>,
    pub created_at: i64,
    pub expires_at: i64,
}

/// A stored refresh token.
#[derive(Debug)]
pub(crate) struct RefreshRow {
    pub family_id: String,
    pub client_id: String,
    pub user_id: String,
    pub scope: String,
    pub resource: Option<String>,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub successor_hash: Option<String>,
    pub successor_sealed: Option<String>,
    pub revoked_at: Option<i64>,
}

impl Store {
    pub(crate) async fn insert_code(&self, c: &NewCode<'_>) -> Result<(), AuthServerError> {
        sqlx::query(
            "INSERT INTO authorization_codes (code_hash, client_id, user_id, redirect_uri, \
             code_challenge, resource, scope, family_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(c.code_hash)
        .bind(c.client_id)
        .bind(c.user_id)
        .bind(c.redirect_uri)
        .bind(c.code_challenge)
        .bind(c.resource)
        .bind(c.scope)
        .bind(c.family_id)
        .bind(c.created_at)
        .bind(c.expires_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub(crate) async fn code(&self, code_hash: &str) -> Result<Option<CodeRow>, AuthServerError> {
        let row = sqlx::query("SELECT * FROM authorization_codes WHERE code_hash = $1")
            .bind(code_hash)
            .fetch_optional(self.pool())
            .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(CodeRow {
            client_id: row.try_get("client_id")?,
            user_id: row.try_get("user_id")?,
            redirect_uri: row.try_get("redirect_uri")?,
            code_challenge: row.try_get("code_challenge")?,
            resource: row.try_get("resource")?,
            scope: row.try_get("scope")?,
            family_id: row.try_get("family_id")?,
            expires_at: row.try_get("expires_at")?,
            used_at: row.try_get("used_at")?,
        }))
    }

    /// Marks the code used; false when it already was (a replay, or a concurrent redemption).
    pub(crate) async fn spend_code(
        &self,
        code_hash: &str,
        now: i64,
    ) -> Result<bool, AuthServerError> {
        let n = sqlx::query(
            "UPDATE authorization_codes SET used_at = $1 WHERE code_hash = $2 AND used_at IS NULL",
        )
        .bind(now)
        .bind(code_hash)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Revokes everything issued from one authorization code: its refresh tokens and (through
    /// the jti prefix) its access tokens. `until` bounds how long the record is kept.
    pub(crate) async fn revoke_family(
        &self,
        family_id: &str,
        now: i64,
        until: i64,
    ) -> Result<(), AuthServerError> {
        sqlx::query(
            "INSERT INTO revoked_families (family_id, revoked_at, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (family_id) DO NOTHING",
        )
        .bind(family_id)
        .bind(now)
        .bind(until)
        .execute(self.pool())
        .await?;
        sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $1 WHERE family_id = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(family_id)
        .execute(self.pool())
        .await?;
        self.revoked.add_family(family_id, now, until);
        // SPEC F5: the upstream tokens go with the grant.
        self.delete_upstream_grant(family_id).await
    }

    pub(crate) async fn insert_refresh(&self, r: &NewRefresh<'_>) -> Result<(), AuthServerError> {
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, family_id, client_id, user_id, scope, \
             resource, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(r.token_hash)
        .bind(r.family_id)
        .bind(r.client_id)
        .bind(r.user_id)
        .bind(r.scope)
        .bind(r.resource)
        .bind(r.created_at)
        .bind(r.expires_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub(crate) async fn refresh(
        &self,
        token_hash: &str,
    ) -> Result<Option<RefreshRow>, AuthServerError> {
        let row = sqlx::query("SELECT * FROM refresh_tokens WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(self.pool())
            .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(RefreshRow {
            family_id: row.try_get("family_id")?,
            client_id: row.try_get("client_id")?,
            user_id: row.try_get("user_id")?,
            scope: row.try_get("scope")?,
            resource: row.try_get("resource")?,
            expires_at: row.try_get("expires_at")?,
            used_at: row.try_get("used_at")?,
            successor_hash: row.try_get("successor_hash")?,
            successor_sealed: row.try_get("successor_sealed")?,
            revoked_at: row.try_get("revoked_at")?,
        }))
    }

    /// Revokes one access token by `jti` until its expiry.
    pub(crate) async fn revoke_access_token(
        &self,
        jti: &str,
        expires_at: i64,
    ) -> Result<(), AuthServerError> {
        sqlx::query(
            "INSERT INTO revoked_access_tokens (jti, expires_at, revoked_at) VALUES ($1, $2, $3) \
             ON CONFLICT (jti) DO NOTHING",
        )
        .bind(jti)
        .bind(expires_at)
        .bind(crate::secrets::now())
        .execute(self.pool())
        .await?;
        self.revoked.add_token(jti, expires_at);
        Ok(())
    }

    /// Whether an access token was revoked, by itself or with its family.
    pub(crate) async fn access_token_revoked(&self, jti: &str) -> Result<bool, AuthServerError> {
        let family = jti.split_once('.').map(|(f, _)| f).unwrap_or("");
        let n: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM revoked_access_tokens WHERE jti = $1) + \
             (SELECT COUNT(*) FROM revoked_families WHERE family_id = $2)",
        )
        .bind(jti)
        .bind(family)
        .fetch_one(self.pool())
        .await?;
        Ok(n > 0)
    }

    /// Records a client assertion's `jti` (RFC 7523 §3); false when it was seen before.
    pub(crate) async fn use_assertion_jti(
        &self,
        client_id: &str,
        jti: &str,
        expires_at: i64,
    ) -> Result<bool, AuthServerError> {
        first_insert(
            sqlx::query(
                "INSERT INTO client_assertion_jtis (client_id, jti, expires_at) VALUES ($1, $2, $3)",
            )
            .bind(client_id)
            .bind(jti)
            .bind(expires_at)
            .execute(self.pool())
            .await,
        )
    }
}
