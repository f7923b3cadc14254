//! Registered clients and cached client ID metadata documents, with a short-lived in-memory
//! cache of resolved clients.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sqlx::Row;

use super::{Store, is_unique_violation};
use crate::clients::Client;
use crate::error::AuthServerError;

/// How long a resolved client is served from memory.
const CLIENT_CACHE_TTL: Duration = Duration::from_secs(5);

/// Above this many entries the cache is emptied (client ids come from requests).
const CLIENT_CACHE_MAX: usize = 10_000;

/// Recently resolved clients, so that a busy client does not cost a query on every token
/// request. Adding, replacing or removing a client through any clone of the [`Store`] (the
/// admin functions, registration, a refreshed metadata document) drops its entry at once. A
/// change made by another process or instance on the same database (`mcpauth clients remove`
/// while `mcpauth serve` runs, or a second instance on PostgreSQL) is seen here within
/// [`CLIENT_CACHE_TTL`]: that is the bounded staleness of a removed client or secret. (The same
/// bound covers a lookup that read the row just before a local removal and stores it just
/// after.)
#[derive(Debug, Default)]
pub(crate) struct ClientCache {
    entries: Mutex<HashMap<String, (Client, Instant)>>,
}

impl ClientCache {
    fn get(&self, client_id: &str) -> Option<Client> {
        let entries = self.entries.lock().unwrap();
        let (client, until) = entries.get(client_id)?;
        (Instant::now() < *until).then(|| client.clone())
    }

    fn put(&self, client: &Client, max_age: Duration) {
        if max_age.is_zero() {
            return; // e.g. a `no-store` metadata document
        }
        let mut entries = self.entries.lock().unwrap();
        if entries.len() >= CLIENT_CACHE_MAX {
            entries.clear();
        }
        let until = Instant::now() + max_age.min(CLIENT_CACHE_TTL);
        entries.insert(client.client_id.clone(), (client.clone(), until));
    }

    fn forget(&self, client_id: &str) {
        self.entries.lock().unwrap().remove(client_id);
    }
}

/// A client as stored; `metadata` is RFC 7591 client metadata JSON.
#[derive(Clone, Debug)]
pub(crate) struct ClientRow {
    pub client_id: String,
    pub kind: String,
    pub auth_method: String,
    pub secret_hash: Option<String>,
    pub metadata: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
}

fn client(row: &sqlx::any::AnyRow) -> Result<ClientRow, sqlx::Error> {
    Ok(ClientRow {
        client_id: row.try_get("client_id")?,
        kind: row.try_get("kind")?,
        auth_method: row.try_get("auth_method")?,
        secret_hash: row.try_get("secret_hash")?,
        metadata: row.try_get("metadata")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
    })
}

impl Store {
    /// A client resolved within the last few seconds (see [`ClientCache`]).
    pub(crate) fn cached_client(&self, client_id: &str) -> Option<Client> {
        self.clients.get(client_id)
    }

    /// Remembers a resolved client for at most `max_age` (and at most [`CLIENT_CACHE_TTL`]).
    pub(crate) fn cache_client(&self, client: &Client, max_age: Duration) {
        self.clients.put(client, max_age);
    }

    pub(crate) async fn insert_client(&self, c: &ClientRow) -> Result<(), AuthServerError> {
        self.insert_resource_server(c, &[]).await
    }

    /// Inserts a client and, atomically with it, the resources it may introspect tokens for
    /// (none: an ordinary client; security finding 8).
    pub(crate) async fn insert_resource_server(
        &self,
        c: &ClientRow,
        resources: &[String],
    ) -> Result<(), AuthServerError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "INSERT INTO clients (client_id, kind, auth_method, secret_hash, metadata, created_at, \
             expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&c.client_id)
        .bind(&c.kind)
        .bind(&c.auth_method)
        .bind(&c.secret_hash)
        .bind(&c.metadata)
        .bind(c.created_at)
        .bind(c.expires_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                AuthServerError::AlreadyExists {
                    what: "client",
                    name: c.client_id.clone(),
                }
            } else {
                e.into()
            }
        })?;
        for resource in resources {
            sqlx::query(
                "INSERT INTO introspection_resources (client_id, resource) VALUES ($1, $2)",
            )
            .bind(&c.client_id)
            .bind(resource)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.clients.forget(&c.client_id);
        Ok(())
    }

    /// The resources whose access tokens `client_id` may introspect; empty unless an
    /// administrator made it a resource server.
    pub(crate) async fn introspection_resources(
        &self,
        client_id: &str,
    ) -> Result<Vec<String>, AuthServerError> {
        Ok(sqlx::query_scalar(
            "SELECT resource FROM introspection_resources WHERE client_id = $1 ORDER BY resource",
        )
        .bind(client_id)
        .fetch_all(self.pool())
        .await?)
    }

    /// Every resource server's resources, by client id.
    pub(crate) async fn all_introspection_resources(
        &self,
    ) -> Result<HashMap<String, Vec<String>>, AuthServerError> {
        let rows = sqlx::query(
            "SELECT client_id, resource FROM introspection_resources ORDER BY client_id, resource",
        )
        .fetch_all(self.pool())
        .await?;
        let mut all: HashMap<String, Vec<String>> = HashMap::new();
        for row in rows {
            all.entry(row.try_get("client_id")?)
                .or_default()
                .push(row.try_get("resource")?);
        }
        Ok(all)
    }

    /// Stores a freshly fetched client ID metadata document, replacing an older copy.
    pub(crate) async fn upsert_metadata_document(
        &self,
        c: &ClientRow,
    ) -> Result<(), AuthServerError> {
        sqlx::query(
            "INSERT INTO clients (client_id, kind, auth_method, secret_hash, metadata, created_at, \
             expires_at) VALUES ($1, 'metadata_document', $2, NULL, $3, $4, $5) \
             ON CONFLICT (client_id) DO UPDATE SET auth_method = $2, metadata = $3, \
             created_at = $4, expires_at = $5 WHERE clients.kind = 'metadata_document'",
        )
        .bind(&c.client_id)
        .bind(&c.auth_method)
        .bind(&c.metadata)
        .bind(c.created_at)
        .bind(c.expires_at)
        .execute(self.pool())
        .await?;
        self.clients.forget(&c.client_id);
        Ok(())
    }

    /// Sets a dynamic client's expiry to `expires_at` unless it is already `stale_before` or
    /// later (another request or instance moved it first), and forgets the cached copy.
    pub(crate) async fn slide_client_expiry(
        &self,
        client_id: &str,
        expires_at: i64,
        stale_before: i64,
    ) -> Result<(), AuthServerError> {
        sqlx::query(
            "UPDATE clients SET expires_at = $1 WHERE client_id = $2 AND kind = 'dynamic' \
             AND (expires_at IS NULL OR expires_at < $3)",
        )
        .bind(expires_at)
        .bind(client_id)
        .bind(stale_before)
        .execute(self.pool())
        .await?;
        self.clients.forget(client_id);
        Ok(())
    }

    pub(crate) async fn client(
        &self,
        client_id: &str,
    ) -> Result<Option<ClientRow>, AuthServerError> {
        let row = sqlx::query("SELECT * FROM clients WHERE client_id = $1")
            .bind(client_id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.as_ref().map(client).transpose()?)
    }

    pub(crate) async fn list_clients(&self) -> Result<Vec<ClientRow>, AuthServerError> {
        let rows = sqlx::query("SELECT * FROM clients ORDER BY created_at, client_id")
            .fetch_all(self.pool())
            .await?;
        Ok(rows.iter().map(client).collect::<Result<_, _>>()?)
    }

    /// Removes a client and revokes what it holds. Returns whether it existed.
    pub(crate) async fn delete_client(&self, client_id: &str) -> Result<bool, AuthServerError> {
        self.revoke_grants_of(false, client_id, crate::secrets::now())
            .await?;
        for sql in [
            "DELETE FROM consents WHERE client_id = $1",
            "DELETE FROM authorization_codes WHERE client_id = $1",
            "DELETE FROM device_codes WHERE client_id = $1",
            "DELETE FROM introspection_resources WHERE client_id = $1",
        ] {
            sqlx::query(sql)
                .bind(client_id)
                .execute(self.pool())
                .await?;
        }
        let n = sqlx::query("DELETE FROM clients WHERE client_id = $1")
            .bind(client_id)
            .execute(self.pool())
            .await?
            .rows_affected();
        self.clients.forget(client_id);
        Ok(n > 0)
    }
}
