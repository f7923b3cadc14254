//! Revoked access tokens and grant families, mirrored in memory so that a verifier in the same
//! process (the gateway's embedded server) refuses a revoked token without a database query
//! (security review finding 1; RFC 7009 §2, OAuth 2.1 §4.3.1 family revocation).
//!
//! Revocations made through this process's [`Store`] enter the mirror at once; those of other
//! instances sharing the database arrive with the next [`Store::sync_revocations`] (the server
//! runs it every [`crate::REVOCATION_SYNC`]), which reads only the revocations made since the
//! previous read began, less [`SYNC_SLACK`] (the first read takes every one still valid). A
//! family is kept only as long as an access token issued before its revocation can still be
//! valid (the access-token lifetime).

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicI64, Ordering};

use sqlx::Row;

use super::Store;
use crate::error::AuthServerError;
use crate::secrets::now;

/// How far before the previous read began a read looks again: revocations committed late, or
/// stamped by an instance whose clock is behind, by up to this much are not missed.
pub(crate) const SYNC_SLACK: i64 = 30;

/// The in-memory mirror of the revocation tables.
#[derive(Debug, Default)]
pub(crate) struct Revoked {
    /// Access-token `jti` → the Unix second the token expires.
    tokens: RwLock<HashMap<String, i64>>,
    /// Family id → the Unix second after which no access token of the family is valid.
    families: RwLock<HashMap<String, i64>>,
    /// The longest access-token lifetime of a server on this store, in seconds (0: unknown).
    access_ttl: AtomicI64,
    /// When the last read of the tables began (Unix seconds; 0: never).
    last_sync: AtomicI64,
}

impl Revoked {
    /// Whether the access token with this `jti` is revoked, by itself or with its family (the
    /// `jti` of a family's tokens is `FAMILY.RANDOM`).
    pub(crate) fn contains(&self, jti: &str) -> bool {
        let now = now();
        let live = |map: &RwLock<HashMap<String, i64>>, key: &str| {
            map.read()
                .unwrap_or_else(|e| e.into_inner())
                .get(key)
                .is_some_and(|until| *until >= now)
        };
        live(&self.tokens, jti)
            || jti
                .split_once('.')
                .is_some_and(|(f, _)| live(&self.families, f))
    }

    pub(crate) fn add_token(&self, jti: &str, expires_at: i64) {
        let mut map = self.tokens.write().unwrap_or_else(|e| e.into_inner());
        map.insert(jti.to_owned(), expires_at);
    }

    /// Records a family revoked at `revoked_at`, kept until its access tokens have expired (or
    /// `until` when the access-token lifetime is not known).
    pub(crate) fn add_family(&self, family_id: &str, revoked_at: i64, until: i64) {
        let ttl = self.access_ttl.load(Ordering::Relaxed);
        let keep = if ttl > 0 {
            until.min(revoked_at.saturating_add(ttl))
        } else {
            until
        };
        let mut map = self.families.write().unwrap_or_else(|e| e.into_inner());
        map.insert(family_id.to_owned(), keep);
    }

    /// Drops what has expired.
    fn prune(&self, now: i64) {
        for map in [&self.tokens, &self.families] {
            map.write()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|_, until| *until >= now);
        }
    }
}

impl Store {
    /// Tells the mirror the access-token lifetime of a server using this store, so that it
    /// keeps revoked families no longer than their tokens can live.
    pub(crate) fn note_access_ttl(&self, seconds: u64) {
        let s = i64::try_from(seconds).unwrap_or(i64::MAX);
        self.revoked.access_ttl.fetch_max(s, Ordering::Relaxed);
    }

    /// Whether the access token with this `jti` is revoked, from the in-memory mirror (no
    /// database query).
    pub(crate) fn is_revoked(&self, jti: &str) -> bool {
        self.revoked.contains(jti)
    }

    /// Reads the revocations other instances made since the last read into the mirror, and
    /// drops expired entries; the number of revocations read.
    pub(crate) async fn sync_revocations(&self) -> Result<usize, AuthServerError> {
        let now = now();
        // Moved on only after a read succeeded: a failed one is made up by the next.
        let last = self.revoked.last_sync.load(Ordering::Relaxed);
        let since = if last > 0 {
            last.saturating_sub(SYNC_SLACK)
        } else {
            0
        };
        let tokens = sqlx::query(
            "SELECT jti, expires_at FROM revoked_access_tokens \
             WHERE revoked_at >= $1 AND expires_at >= $2",
        )
        .bind(since)
        .bind(now)
        .fetch_all(self.pool())
        .await?;
        let read = tokens.len();
        for row in tokens {
            self.revoked.add_token(
                &row.try_get::<String, _>("jti")?,
                row.try_get("expires_at")?,
            );
        }
        let ttl = self.revoked.access_ttl.load(Ordering::Relaxed);
        let since = if ttl > 0 {
            since.max(now.saturating_sub(ttl))
        } else {
            since
        };
        let families = sqlx::query(
            "SELECT family_id, revoked_at, expires_at FROM revoked_families \
             WHERE revoked_at >= $1 AND expires_at >= $2",
        )
        .bind(since)
        .bind(now)
        .fetch_all(self.pool())
        .await?;
        let read = read + families.len();
        for row in families {
            self.revoked.add_family(
                &row.try_get::<String, _>("family_id")?,
                row.try_get("revoked_at")?,
                row.try_get("expires_at")?,
            );
        }
        self.revoked.prune(now);
        self.revoked.last_sync.fetch_max(now, Ordering::Relaxed);
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A revocation as another instance sharing the database makes it.
    async fn revoked_elsewhere(store: &Store, jti: &str, revoked_at: i64, expires_at: i64) {
        sqlx::query(
            "INSERT INTO revoked_access_tokens (jti, expires_at, revoked_at) VALUES ($1, $2, $3)",
        )
        .bind(jti)
        .bind(expires_at)
        .bind(revoked_at)
        .execute(store.pool())
        .await
        .unwrap();
    }

    /// Issue 17 (found by bench/soak.sh): every sync re-read every revoked token still valid, so
    /// its cost grew with the revocation rate times the access-token lifetime. Now the first
    /// read takes them all, and later ones only those made since the previous read began (less
    /// the slack).
    #[tokio::test]
    async fn issue17_a_sync_reads_only_the_revocations_made_since_the_last_one() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        let now = now();
        revoked_elsewhere(&store, "an-hour-ago", now - 3600, now + 3600).await;
        revoked_elsewhere(&store, "expired", now - 7200, now - 1).await;
        assert_eq!(store.sync_revocations().await.unwrap(), 1);
        assert!(store.is_revoked("an-hour-ago"));
        revoked_elsewhere(&store, "just-now", now, now + 3600).await;
        revoked_elsewhere(&store, "late-commit", now - SYNC_SLACK + 1, now + 3600).await;
        assert_eq!(
            store.sync_revocations().await.unwrap(),
            2,
            "not the old one again"
        );
        assert!(store.is_revoked("just-now") && store.is_revoked("late-commit"));
        assert!(
            store.is_revoked("an-hour-ago"),
            "still known from the first read"
        );
        assert!(!store.is_revoked("expired"));
    }

    #[test]
    fn tokens_and_families_are_revoked_until_their_expiry() {
        let r = Revoked::default();
        let now = now();
        r.add_token("t1", now + 60);
        r.add_token("t0", now - 1);
        r.access_ttl.store(3600, Ordering::Relaxed);
        r.add_family("fam", now, now + 30 * 86400);
        assert!(r.contains("t1"));
        assert!(!r.contains("t0"), "expired entries do not count");
        assert!(
            r.contains("fam.abc"),
            "a family's tokens are revoked with it"
        );
        assert!(!r.contains("fam"), "a bare family id is not a token id");
        assert!(!r.contains("other.abc"));
        // Kept only as long as the family's access tokens can live.
        assert_eq!(r.families.read().unwrap()["fam"], now + 3600);
        r.prune(now + 3601);
        assert!(r.families.read().unwrap().is_empty());
        assert!(r.tokens.read().unwrap().is_empty());
    }
}
