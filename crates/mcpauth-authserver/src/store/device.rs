//! Device authorizations (RFC 8628, SPEC V1-V2): made at the device authorization endpoint,
//! decided on the verification page, polled and spent at the token endpoint. Every change is
//! one conditional UPDATE, so instances sharing the database agree on each code's state.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, first_insert};
use crate::error::AuthServerError;

/// A new device authorization.
#[derive(Debug)]
pub(crate) struct NewDevice<'a> {
    pub device_hash: &'a str,
    /// Without its dash, upper case.
    pub user_code: &'a str,
    pub client_id: &'a str,
    pub scope: &'a str,
    pub resource: Option<&'a str>,
    pub interval: i64,
    pub created_at: i64,
    pub expires_at: i64,
}

/// Where a device authorization stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DeviceStatus {
    /// Waiting for the user.
    Pending,
    /// The user allowed it; the tokens are not issued yet.
    Approved,
    /// The user denied it.
    Denied,
    /// Its tokens were issued.
    Used,
}

impl DeviceStatus {
    fn parse(s: &str) -> DeviceStatus {
        match s {
            "approved" => DeviceStatus::Approved,
            "denied" => DeviceStatus::Denied,
            "used" => DeviceStatus::Used,
            _ => DeviceStatus::Pending,
        }
    }
}

/// A stored device authorization.
#[derive(Debug)]
pub(crate) struct DeviceRow {
    pub device_hash: String,
    pub user_code: String,
    pub client_id: String,
    pub scope: String,
    pub resource: Option<String>,
    pub status: DeviceStatus,
    pub user_id: Option<String>,
    pub family_id: Option<String>,
    pub expires_at: i64,
}

fn device_row(row: &AnyRow) -> Result<DeviceRow, sqlx::Error> {
    Ok(DeviceRow {
        device_hash: row.try_get("device_hash")?,
        user_code: row.try_get("user_code")?,
        client_id: row.try_get("client_id")?,
        scope: row.try_get("scope")?,
        resource: row.try_get("resource")?,
        status: DeviceStatus::parse(&row.try_get::<String, _>("status")?),
        user_id: row.try_get("user_id")?,
        family_id: row.try_get("family_id")?,
        expires_at: row.try_get("expires_at")?,
    })
}

/// What a poll of the token endpoint found (RFC 8628 §3.5).
#[derive(Debug)]
pub(crate) enum Poll {
    /// Polled sooner than the interval allows: the interval grew by 5 s (`slow_down`).
    TooSoon,
    /// The authorization as it stands.
    Row(DeviceRow),
}

impl Store {
    /// Stores a new device authorization; `false` when its user code is taken (make another).
    pub(crate) async fn insert_device(&self, d: &NewDevice<'_>) -> Result<bool, AuthServerError> {
        let inserted = sqlx::query(
            "INSERT INTO device_codes (device_hash, user_code, client_id, scope, resource, \
             status, poll_interval, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, $8)",
        )
        .bind(d.device_hash)
        .bind(d.user_code)
        .bind(d.client_id)
        .bind(d.scope)
        .bind(d.resource)
        .bind(d.interval)
        .bind(d.created_at)
        .bind(d.expires_at)
        .execute(self.pool())
        .await;
        first_insert(inserted)
    }

    /// The pending, unexpired device authorization with this user code.
    pub(crate) async fn pending_device(
        &self,
        user_code: &str,
        now: i64,
    ) -> Result<Option<DeviceRow>, AuthServerError> {
        let row = sqlx::query(
            "SELECT * FROM device_codes WHERE user_code = $1 AND status = 'pending' \
             AND expires_at > $2",
        )
        .bind(user_code)
        .bind(now)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.as_ref().map(device_row).transpose()?)
    }

    /// Records the user's decision on a pending, unexpired authorization: approved for
    /// `user_id` with the grant `family_id`, or denied (`None`). `false` when it was no longer
    /// pending (decided in another tab, or expired).
    pub(crate) async fn decide_device(
        &self,
        device_hash: &str,
        approved: Option<(&str, &str)>,
        now: i64,
    ) -> Result<bool, AuthServerError> {
        let (status, user, family) = match approved {
            Some((u, f)) => ("approved", Some(u), Some(f)),
            None => ("denied", None, None),
        };
        let n = sqlx::query(
            "UPDATE device_codes SET status = $1, user_id = $2, family_id = $3 \
             WHERE device_hash = $4 AND status = 'pending' AND expires_at > $5",
        )
        .bind(status)
        .bind(user)
        .bind(family)
        .bind(device_hash)
        .bind(now)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// A poll of the device code at `now_ms` (Unix milliseconds; RFC 8628 §3.4-§3.5): one more
    /// than half a second sooner than the interval after the previous poll grows the interval
    /// by 5 s and is [`Poll::TooSoon`]; otherwise the poll time is recorded and the
    /// authorization returned. `None` for an unknown code.
    pub(crate) async fn poll_device(
        &self,
        device_hash: &str,
        now_ms: i64,
    ) -> Result<Option<Poll>, AuthServerError> {
        let slowed = sqlx::query(
            "UPDATE device_codes SET poll_interval = poll_interval + 5, last_poll_at = $1 \
             WHERE device_hash = $2 AND last_poll_at IS NOT NULL \
             AND $1 - last_poll_at < poll_interval * 1000 - 500",
        )
        .bind(now_ms)
        .bind(device_hash)
        .execute(self.pool())
        .await?
        .rows_affected();
        if slowed == 1 {
            return Ok(Some(Poll::TooSoon));
        }
        sqlx::query("UPDATE device_codes SET last_poll_at = $1 WHERE device_hash = $2")
            .bind(now_ms)
            .bind(device_hash)
            .execute(self.pool())
            .await?;
        let row = sqlx::query("SELECT * FROM device_codes WHERE device_hash = $1")
            .bind(device_hash)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.as_ref().map(device_row).transpose()?.map(Poll::Row))
    }

    /// Marks an approved authorization used; `false` when it was not approved (a second
    /// exchange, or a concurrent one).
    pub(crate) async fn spend_device(&self, device_hash: &str) -> Result<bool, AuthServerError> {
        let n = sqlx::query(
            "UPDATE device_codes SET status = 'used' WHERE device_hash = $1 AND status = 'approved'",
        )
        .bind(device_hash)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(n == 1)
    }
}
