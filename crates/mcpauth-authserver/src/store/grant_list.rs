//! The live grants, for administration (`mcpauth grants`): one per refresh-token family that
//! still holds a refresh token neither revoked nor expired, and their revocation.

use std::collections::BTreeMap;

use sqlx::Row;

use super::Store;
use crate::error::AuthServerError;

/// A live grant: everything issued from one authorization (a refresh-token family).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct GrantRow {
    pub family_id: String,
    pub client_id: String,
    pub user_id: String,
    /// `None` when the user is gone.
    pub username: Option<String>,
    /// The scope granted (RFC 6749 §6: a refresh token keeps it).
    pub scope: String,
    pub resource: Option<String>,
    /// When the first refresh token was issued.
    pub granted_at: i64,
    /// When the newest was (at the code exchange or the last refresh).
    pub last_used_at: i64,
    /// When the newest expires.
    pub expires_at: i64,
}

/// The live refresh tokens with their users' names (`$1`: now).
macro_rules! live_refresh_tokens {
    () => {
        "SELECT r.family_id, r.client_id, r.user_id, u.username, r.scope, r.resource, \
         r.created_at, r.expires_at FROM refresh_tokens r LEFT JOIN users u ON u.id = r.user_id \
         WHERE r.revoked_at IS NULL AND r.expires_at > $1"
    };
}

impl Store {
    /// The live grants of `user_id` (all users with `None`), oldest first.
    pub(crate) async fn live_grants(
        &self,
        user_id: Option<&str>,
        now: i64,
    ) -> Result<Vec<GrantRow>, AuthServerError> {
        let rows = match user_id {
            Some(u) => {
                sqlx::query(concat!(live_refresh_tokens!(), " AND r.user_id = $2"))
                    .bind(now)
                    .bind(u)
                    .fetch_all(self.pool())
                    .await?
            }
            None => {
                sqlx::query(live_refresh_tokens!())
                    .bind(now)
                    .fetch_all(self.pool())
                    .await?
            }
        };
        let mut families: BTreeMap<String, GrantRow> = BTreeMap::new();
        for r in &rows {
            let created: i64 = r.try_get("created_at")?;
            let row = GrantRow {
                family_id: r.try_get("family_id")?,
                client_id: r.try_get("client_id")?,
                user_id: r.try_get("user_id")?,
                username: r.try_get("username")?,
                scope: r.try_get("scope")?,
                resource: r.try_get("resource")?,
                granted_at: created,
                last_used_at: created,
                expires_at: r.try_get("expires_at")?,
            };
            match families.get_mut(&row.family_id) {
                None => {
                    families.insert(row.family_id.clone(), row);
                }
                Some(g) => {
                    g.granted_at = g.granted_at.min(created);
                    if created >= g.last_used_at {
                        g.last_used_at = created;
                        g.scope = row.scope;
                        g.resource = row.resource;
                        g.expires_at = g.expires_at.max(row.expires_at);
                    }
                }
            }
        }
        let mut grants: Vec<GrantRow> = families.into_values().collect();
        grants.sort_by(|a, b| (a.granted_at, &a.family_id).cmp(&(b.granted_at, &b.family_id)));
        Ok(grants)
    }

    /// Revokes the live grant `family_id` (its refresh and access tokens, RFC 7009 §2) and the
    /// consent its user gave its client, so that the client has to ask again. `None` when no
    /// live grant has that id.
    pub(crate) async fn revoke_grant(
        &self,
        family_id: &str,
        now: i64,
    ) -> Result<Option<GrantRow>, AuthServerError> {
        let found = sqlx::query(
            "SELECT user_id FROM refresh_tokens WHERE family_id = $1 AND revoked_at IS NULL \
             AND expires_at > $2 LIMIT 1",
        )
        .bind(family_id)
        .bind(now)
        .fetch_optional(self.pool())
        .await?;
        let Some(found) = found else {
            return Ok(None);
        };
        let user_id: String = found.try_get("user_id")?;
        let Some(grant) = self
            .live_grants(Some(&user_id), now)
            .await?
            .into_iter()
            .find(|g| g.family_id == family_id)
        else {
            return Ok(None);
        };
        self.revoke_family(family_id, now, grant.expires_at).await?;
        sqlx::query("DELETE FROM consents WHERE user_id = $1 AND client_id = $2")
            .bind(&grant.user_id)
            .bind(&grant.client_id)
            .execute(self.pool())
            .await?;
        Ok(Some(grant))
    }

    /// Revokes every live grant of the user `user_id` (`by_user`) or of the client `client_id`
    /// (not `by_user`): refresh and access tokens alike (RFC 7009 §2), as removing the user or
    /// the client must.
    pub(crate) async fn revoke_grants_of(
        &self,
        by_user: bool,
        id: &str,
        now: i64,
    ) -> Result<(), AuthServerError> {
        let query = if by_user {
            sqlx::query(
                "SELECT family_id, MAX(expires_at) AS until FROM refresh_tokens \
                 WHERE user_id = $1 AND revoked_at IS NULL GROUP BY family_id",
            )
        } else {
            sqlx::query(
                "SELECT family_id, MAX(expires_at) AS until FROM refresh_tokens \
                 WHERE client_id = $1 AND revoked_at IS NULL GROUP BY family_id",
            )
        };
        for row in query.bind(id).fetch_all(self.pool()).await? {
            let family: String = row.try_get("family_id")?;
            let until: i64 = row.try_get("until")?;
            self.revoke_family(&family, now, until.max(now)).await?;
        }
        Ok(())
    }
}
