//! DPoP state shared by every instance (RFC 9449 §5, §11.1; SPEC D6-D7): the proofs already
//! used at the token endpoint, and the key each public client's grant is bound to.

use super::{Store, is_unique_violation};
use crate::error::AuthServerError;

impl Store {
    /// Records a DPoP proof (`proof_hash`: a hash of its key thumbprint and `jti`) until
    /// `expires_at`: `true` the first time, `false` when it was used before (a replay, RFC 9449
    /// §11.1). Every instance sharing the database sees the same answer; the token endpoint
    /// and a gateway's resource checks use it.
    pub async fn dpop_first_use(
        &self,
        proof_hash: &str,
        expires_at: i64,
    ) -> Result<bool, AuthServerError> {
        let inserted =
            sqlx::query("INSERT INTO dpop_proofs (proof_hash, expires_at) VALUES ($1, $2)")
                .bind(proof_hash)
                .bind(expires_at)
                .execute(self.pool())
                .await;
        match inserted {
            Ok(_) => Ok(true),
            Err(e) if is_unique_violation(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Binds the grant `family_id` to the key `jkt` until `expires_at`.
    pub(crate) async fn bind_family_key(
        &self,
        family_id: &str,
        jkt: &str,
        expires_at: i64,
    ) -> Result<(), AuthServerError> {
        sqlx::query("INSERT INTO dpop_families (family_id, jkt, expires_at) VALUES ($1, $2, $3)")
            .bind(family_id)
            .bind(jkt)
            .bind(expires_at)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// The key the grant `family_id` is bound to, if any.
    pub(crate) async fn family_key(
        &self,
        family_id: &str,
    ) -> Result<Option<String>, AuthServerError> {
        Ok(
            sqlx::query_scalar("SELECT jkt FROM dpop_families WHERE family_id = $1")
                .bind(family_id)
                .fetch_optional(self.pool())
                .await?,
        )
    }
}
