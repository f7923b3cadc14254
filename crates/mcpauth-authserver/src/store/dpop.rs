//! DPoP state shared by every instance (RFC 9449 §5, §8, §10, §11.1; SPEC D6-D7): the proofs
//! already used at the token endpoint, the key a grant is bound to, and the nonce key.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use mcpauth_core::dpop::NonceIssuer;

use super::{Store, first_insert};
use crate::error::AuthServerError;
use crate::secrets::{now, random_bytes_b64};

/// The name of the DPoP nonce key in `server_secrets`.
const NONCE_SECRET: &str = "dpop-nonce";

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
        first_insert(inserted)
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

    /// The DPoP nonce issuer of every instance on this database (RFC 9449 §8, §9; SPEC D7):
    /// an authorization server and the gateways sharing its database hand out and accept the
    /// same nonces.
    pub async fn dpop_nonces(&self) -> Result<NonceIssuer, AuthServerError> {
        let secret = self.server_secret(NONCE_SECRET).await?;
        NonceIssuer::new(&secret).map_err(|e| AuthServerError::Invalid {
            what: "DPoP nonce secret",
            reason: e.to_string(),
        })
    }

    /// The shared secret `name` (32 bytes): made by the first instance that asks, the same for
    /// every instance on this database afterwards.
    pub(crate) async fn server_secret(&self, name: &str) -> Result<Vec<u8>, AuthServerError> {
        sqlx::query(
            "INSERT INTO server_secrets (name, secret, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(random_bytes_b64(32))
        .bind(now())
        .execute(self.pool())
        .await?;
        let stored: String =
            sqlx::query_scalar("SELECT secret FROM server_secrets WHERE name = $1")
                .bind(name)
                .fetch_one(self.pool())
                .await?;
        URL_SAFE_NO_PAD
            .decode(stored)
            .ok()
            .filter(|s| s.len() >= 32)
            .ok_or_else(|| AuthServerError::Invalid {
                what: "stored server secret",
                reason: format!("{name} is not 32 bytes of base64url"),
            })
    }
}
