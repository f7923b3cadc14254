//! [`MemoryStore`]: a [`TokenStore`] that keeps everything in this process, for tests and for
//! callers that must not persist anything.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use super::{ClientRecord, FlowRecord, StoreKey, StoreLock, TokenRecord, TokenStore};
use crate::ClientError;

/// A [`TokenStore`] in memory: nothing survives the process, and locks exclude only the threads
/// of this process that share this store.
///
/// ```
/// use mcpauth_client::store::{MemoryStore, TokenStore};
/// let store = MemoryStore::new();
/// assert!(store.list_tokens()?.is_empty());
/// # Ok::<(), mcpauth_client::ClientError>(())
/// ```
#[derive(Default)]
pub struct MemoryStore {
    tokens: Mutex<HashMap<StoreKey, TokenRecord>>,
    clients: Mutex<HashMap<String, ClientRecord>>,
    flows: Mutex<HashMap<StoreKey, FlowRecord>>,
    locks: Arc<LockTable>,
}

/// The keys currently locked, and a condition variable signalled whenever one is released.
#[derive(Default)]
struct LockTable {
    held: Mutex<HashSet<StoreKey>>,
    released: Condvar,
}

/// Locks a mutex, ignoring poisoning: every critical section here leaves the data consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Counts only: the records hold tokens and secrets.
        f.debug_struct("MemoryStore")
            .field("tokens", &lock(&self.tokens).len())
            .field("clients", &lock(&self.clients).len())
            .field("locked", &lock(&self.locks.held).len())
            .finish()
    }
}

impl TokenStore for MemoryStore {
    fn load_tokens(&self, key: &StoreKey) -> Result<Option<TokenRecord>, ClientError> {
        Ok(lock(&self.tokens).get(key).cloned())
    }

    fn save_tokens(&self, record: &TokenRecord) -> Result<(), ClientError> {
        lock(&self.tokens).insert(record.key.clone(), record.clone());
        Ok(())
    }

    fn delete_tokens(&self, key: &StoreKey) -> Result<(), ClientError> {
        lock(&self.tokens).remove(key);
        Ok(())
    }

    fn list_tokens(&self) -> Result<Vec<TokenRecord>, ClientError> {
        let mut records: Vec<TokenRecord> = lock(&self.tokens).values().cloned().collect();
        records.sort_by(|a, b| {
            (&a.key.resource, &a.key.issuer, &a.key.client_id).cmp(&(
                &b.key.resource,
                &b.key.issuer,
                &b.key.client_id,
            ))
        });
        Ok(records)
    }

    fn load_client(&self, issuer: &str) -> Result<Option<ClientRecord>, ClientError> {
        Ok(lock(&self.clients).get(issuer).cloned())
    }

    fn save_client(&self, record: &ClientRecord) -> Result<(), ClientError> {
        lock(&self.clients).insert(record.issuer.clone(), record.clone());
        Ok(())
    }

    fn delete_client(&self, issuer: &str) -> Result<(), ClientError> {
        lock(&self.clients).remove(issuer);
        Ok(())
    }

    fn load_flow(&self, key: &StoreKey) -> Result<Option<FlowRecord>, ClientError> {
        Ok(lock(&self.flows).get(key).cloned())
    }

    fn save_flow(&self, record: &FlowRecord) -> Result<(), ClientError> {
        lock(&self.flows).insert(record.key.clone(), record.clone());
        Ok(())
    }

    fn lock(&self, key: &StoreKey) -> Result<Box<dyn StoreLock>, ClientError> {
        let table = &self.locks;
        let mut held = table
            .released
            .wait_while(lock(&table.held), |held| held.contains(key))
            .unwrap_or_else(PoisonError::into_inner);
        held.insert(key.clone());
        Ok(Box::new(MemoryLock {
            table: Arc::clone(&self.locks),
            key: key.clone(),
        }))
    }
}

/// Holds one key of a [`MemoryStore`] locked until dropped.
struct MemoryLock {
    table: Arc<LockTable>,
    key: StoreKey,
}

impl StoreLock for MemoryLock {}

impl Drop for MemoryLock {
    fn drop(&mut self) {
        lock(&self.table.held).remove(&self.key);
        // Waiters may be waiting for different keys: wake them all to re-check.
        self.table.released.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc;
    use std::time::Duration;

    use mcpauth_core::{AccessToken, ClientSecret, RefreshToken, ScopeSet};

    use super::*;
    use crate::store::{RegistrationKind, SCHEMA_VERSION};

    fn key(n: u32) -> StoreKey {
        StoreKey {
            resource: format!("https://mcp{n}.example.com/mcp"),
            issuer: "https://auth.example.com".into(),
            client_id: "client-1".into(),
        }
    }

    fn token_record(key: StoreKey) -> TokenRecord {
        TokenRecord {
            schema: SCHEMA_VERSION,
            key,
            access_token: AccessToken::new("at-secret-1"),
            token_type: "Bearer".into(),
            dpop_key: None,
            refresh_token: Some(RefreshToken::new("rt-secret-1")),
            expires_at: Some(1_900_000_000),
            granted_scopes: ScopeSet::parse("read"),
            requested_scopes: ScopeSet::parse("read"),
            updated_at: 1_800_000_000,
        }
    }

    fn client_record(issuer: &str) -> ClientRecord {
        ClientRecord {
            schema: SCHEMA_VERSION,
            issuer: issuer.into(),
            client_id: "client-1".into(),
            client_secret: Some(ClientSecret::new("cs-secret-1")),
            token_endpoint_auth_method: "client_secret_post".into(),
            redirect_uris: Vec::new(),
            kind: RegistrationKind::PreRegistered,
            secret_expires_at: None,
            updated_at: 1_800_000_000,
        }
    }

    #[test]
    fn c7_records_round_trip_per_key_and_issuer() {
        let store = MemoryStore::new();
        store.save_tokens(&token_record(key(2))).unwrap();
        store.save_tokens(&token_record(key(1))).unwrap();
        assert_eq!(
            store.load_tokens(&key(1)).unwrap(),
            Some(token_record(key(1)))
        );
        assert_eq!(store.load_tokens(&key(3)).unwrap(), None);
        let listed: Vec<_> = store
            .list_tokens()
            .unwrap()
            .into_iter()
            .map(|r| r.key)
            .collect();
        assert_eq!(listed, [key(1), key(2)]);
        store.delete_tokens(&key(1)).unwrap();
        store.delete_tokens(&key(1)).unwrap();
        assert_eq!(store.load_tokens(&key(1)).unwrap(), None);

        store
            .save_client(&client_record("https://a.example"))
            .unwrap();
        assert_eq!(
            store.load_client("https://a.example").unwrap(),
            Some(client_record("https://a.example"))
        );
        assert_eq!(store.load_client("https://b.example").unwrap(), None);
        store.delete_client("https://a.example").unwrap();
        assert_eq!(store.load_client("https://a.example").unwrap(), None);
    }

    #[test]
    fn c27_lock_blocks_the_same_key_until_the_guard_drops() {
        let store = Arc::new(MemoryStore::new());
        let first = store.lock(&key(1)).unwrap();
        let released = Arc::new(AtomicBool::new(false));
        let (started_tx, started_rx) = mpsc::channel();
        let (acquired_tx, acquired_rx) = mpsc::channel();
        let waiter = {
            let (store, released) = (Arc::clone(&store), Arc::clone(&released));
            std::thread::spawn(move || {
                started_tx.send(()).unwrap();
                let guard = store.lock(&key(1)).unwrap();
                acquired_tx.send(released.load(Ordering::SeqCst)).unwrap();
                drop(guard);
            })
        };
        started_rx.recv().unwrap();
        // Give a broken lock the chance to let the waiter in before the release.
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            acquired_rx.try_recv().is_err(),
            "second lock taken while held"
        );
        released.store(true, Ordering::SeqCst);
        drop(first);
        let saw_release = acquired_rx.recv_timeout(Duration::from_secs(30)).unwrap();
        assert!(
            saw_release,
            "second lock taken before the first was released"
        );
        waiter.join().unwrap();
        assert_eq!(lock(&store.locks.held).len(), 0);
    }

    #[test]
    fn c27_locks_on_different_keys_are_independent() {
        let store = Arc::new(MemoryStore::new());
        let _first = store.lock(&key(1)).unwrap();
        let (tx, rx) = mpsc::channel();
        let other = Arc::clone(&store);
        std::thread::spawn(move || {
            let guard = other.lock(&key(2)).unwrap();
            tx.send(()).unwrap();
            drop(guard);
        });
        rx.recv_timeout(Duration::from_secs(30))
            .expect("a lock on another key must not wait");
    }

    #[test]
    fn c27_debug_shows_counts_not_secrets() {
        let store = MemoryStore::new();
        store.save_tokens(&token_record(key(1))).unwrap();
        store
            .save_client(&client_record("https://a.example"))
            .unwrap();
        let _guard = store.lock(&key(1)).unwrap();
        let debug = format!("{store:?}");
        assert_eq!(debug, "MemoryStore { tokens: 1, clients: 1, locked: 1 }");
    }
}
