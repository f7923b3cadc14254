//! One interactive authorization at a time per (resource, issuer), across processes.
//!
//! Desktop MCP clients start several copies of `mcpauth connect` at once and kill them at random.
//! Before an interactive flow, a process takes a lease in the store's flow record (under the
//! store's cross-process lock); others wait for the tokens the holder stores. The holder renews
//! the lease while it lives. If it dies (its pid is gone, or the lease runs out), a survivor
//! takes the flow over: it listens on the same redirect URI and finishes with the stored state
//! and PKCE verifier, without opening another browser tab. New flows are capped per minute so
//! that a host restarting processes in a loop cannot flood the user with tabs.

use std::sync::Arc;
use std::time::Duration;

use crate::ClientError;
use crate::store::{FlowRecord, SCHEMA_VERSION, StoreKey, TokenStore, now_unix};

/// How long a lease runs without renewal.
const LEASE: u64 = 15;
/// How often the holder renews it.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// How often a waiting process looks for the holder's tokens.
const POLL: Duration = Duration::from_millis(300);
/// New interactive flows allowed per resource and issuer per minute.
pub const MAX_FLOWS_PER_MINUTE: usize = 3;
/// How long a flow may take in all.
const FLOW_LIFETIME: u64 = 600;

/// What this process should do.
#[derive(Debug)]
pub(crate) enum Turn {
    /// Run a new flow; the lease is ours.
    Lead(Lease),
    /// Finish the flow a dead process started (its record); the lease is ours.
    TakeOver(Lease, Box<FlowRecord>),
    /// Another process finished a flow meanwhile: use the stored tokens.
    TokensArrived,
}

/// Whether process `pid` is alive. On Linux by `/proc`; elsewhere only the lease tells.
fn pid_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        std::path::Path::new(&format!("/proc/{pid}")).exists()
    } else {
        true
    }
}

enum Decision {
    Wait(u32),
    Lead,
    TakeOver(Box<FlowRecord>),
}

/// Decides under the store lock of `key` (the caller holds it).
fn decide(store: &dyn TokenStore, key: &StoreKey) -> Result<Decision, ClientError> {
    let now = now_unix();
    let me = std::process::id();
    let previous = store.load_flow(key)?;
    if let Some(r) = &previous
        && r.active
        && r.holder_pid != me
        && r.deadline > now
    {
        if r.lease_until > now && pid_alive(r.holder_pid) {
            return Ok(Decision::Wait(r.holder_pid));
        }
        if r.verifier.is_some() && r.redirect_uri.is_some() {
            let mut taken = r.clone();
            taken.holder_pid = me;
            taken.lease_until = now + LEASE;
            store.save_flow(&taken)?;
            return Ok(Decision::TakeOver(Box::new(taken)));
        }
    }
    let mut starts = previous.map(|p| p.recent_starts).unwrap_or_default();
    starts.retain(|t| t + 60 > now);
    if starts.len() >= MAX_FLOWS_PER_MINUTE {
        return Err(ClientError::Authorization(format!(
            "{} logins to {} started in the last minute; not opening another browser tab. \
             Finish the open one, or try again in a minute",
            starts.len(),
            key.resource
        )));
    }
    starts.push(now);
    store.save_flow(&FlowRecord {
        schema: SCHEMA_VERSION,
        key: key.clone(),
        active: true,
        holder_pid: me,
        lease_until: now + LEASE,
        deadline: now + FLOW_LIFETIME,
        client_id: None,
        redirect_uri: None,
        state: None,
        authorization_url: None,
        verifier: None,
        dpop_key: None,
        recent_starts: starts,
    })?;
    Ok(Decision::Lead)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ClientError> + Send + 'static,
) -> Result<T, ClientError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ClientError::Config(format!("store task failed: {e}")))?
}

/// Waits for this process's turn. `tokens_arrived` says whether another process stored fresh
/// tokens this one can use instead of running a flow.
pub(crate) async fn acquire(
    store: Arc<dyn TokenStore>,
    key: StoreKey,
    tokens_arrived: impl Fn() -> Result<bool, ClientError>,
) -> Result<Turn, ClientError> {
    let mut told = false;
    loop {
        // Also before the first decision: a flow that finished just before we got here must not
        // be followed by a second one.
        if tokens_arrived()? {
            return Ok(Turn::TokensArrived);
        }
        let (s, k) = (Arc::clone(&store), key.clone());
        let guard = blocking(move || s.lock(&k)).await?;
        // Again under the lock: a leader stores its tokens before it ends its flow record (which
        // takes this lock), so a flow that ended after the check above shows its tokens here.
        if tokens_arrived()? {
            return Ok(Turn::TokensArrived);
        }
        let decision = decide(store.as_ref(), &key);
        drop(guard);
        match decision? {
            Decision::Lead => return Ok(Turn::Lead(Lease::start(store, key))),
            Decision::TakeOver(r) => return Ok(Turn::TakeOver(Lease::start(store, key), r)),
            Decision::Wait(pid) => {
                if !told {
                    tracing::warn!(
                        "another mcpauth process (pid {pid}) is logging in to {}; waiting for it",
                        key.resource
                    );
                    told = true;
                }
                tokio::time::sleep(POLL).await;
            }
        }
    }
}

/// What a survivor needs to finish a flow.
#[derive(Debug)]
pub(crate) struct InFlight {
    pub client_id: String,
    pub redirect_uri: String,
    pub state: String,
    pub authorization_url: String,
    pub verifier: mcpauth_core::PkceVerifier,
    pub dpop_key: Option<mcpauth_core::DpopPrivateKey>,
}

/// This process's lease on a flow, renewed in the background until [`Lease::finish`] or drop.
#[derive(Debug)]
pub(crate) struct Lease {
    store: Arc<dyn TokenStore>,
    key: StoreKey,
    heartbeat: tokio::task::JoinHandle<()>,
}

impl Lease {
    fn start(store: Arc<dyn TokenStore>, key: StoreKey) -> Lease {
        let (s, k) = (Arc::clone(&store), key.clone());
        let heartbeat = tokio::spawn(async move {
            loop {
                tokio::time::sleep(HEARTBEAT).await;
                let (s, k) = (Arc::clone(&s), k.clone());
                let renewed = blocking(move || {
                    update_if_ours(s.as_ref(), &k, |r| r.lease_until = now_unix() + LEASE)
                })
                .await;
                if let Err(e) = renewed {
                    tracing::debug!(error = %e, "renewing the flow lease failed");
                }
            }
        });
        Lease {
            store,
            key,
            heartbeat,
        }
    }

    /// Records what a survivor needs to finish the flow (before the browser is sent off).
    pub(crate) async fn record(&self, flow: InFlight) -> Result<(), ClientError> {
        let (s, k) = (Arc::clone(&self.store), self.key.clone());
        blocking(move || {
            update_if_ours(s.as_ref(), &k, |rec| {
                rec.client_id = Some(flow.client_id);
                rec.redirect_uri = Some(flow.redirect_uri);
                rec.state = Some(flow.state);
                rec.authorization_url = Some(flow.authorization_url);
                rec.verifier = Some(flow.verifier);
                rec.dpop_key = flow.dpop_key;
            })
        })
        .await
    }

    /// Ends the flow (success or failure): waiting processes stop waiting; the secrets go.
    pub(crate) async fn finish(self) {
        self.heartbeat.abort();
        let (s, k) = (Arc::clone(&self.store), self.key.clone());
        let ended = blocking(move || {
            update_if_ours(s.as_ref(), &k, |r| {
                r.active = false;
                r.state = None;
                r.verifier = None;
                r.dpop_key = None;
                r.authorization_url = None;
            })
        })
        .await;
        if let Err(e) = ended {
            tracing::debug!(error = %e, "ending the flow record failed");
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // A cancelled flow stops renewing; its lease runs out and others may go on.
        self.heartbeat.abort();
    }
}

/// Applies `f` to the flow record if this process still holds it.
fn update_if_ours(
    store: &dyn TokenStore,
    key: &StoreKey,
    f: impl FnOnce(&mut FlowRecord),
) -> Result<(), ClientError> {
    let _guard = store.lock(key)?;
    if let Some(mut r) = store.load_flow(key)?
        && r.holder_pid == std::process::id()
    {
        f(&mut r);
        store.save_flow(&r)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn key() -> StoreKey {
        StoreKey {
            resource: "https://mcp.example/mcp".into(),
            issuer: "https://as.example".into(),
            client_id: String::new(),
        }
    }

    #[test]
    fn a_live_holder_makes_others_wait() {
        let store = MemoryStore::new();
        let mut r = match decide(&store, &key()).unwrap() {
            Decision::Lead => store.load_flow(&key()).unwrap().unwrap(),
            _ => panic!("the first caller leads"),
        };
        // Pretend the holder is another live process (pid 1 always exists on Linux).
        r.holder_pid = 1;
        store.save_flow(&r).unwrap();
        assert!(matches!(decide(&store, &key()).unwrap(), Decision::Wait(1)));
    }

    #[test]
    fn a_dead_holders_flow_is_taken_over() {
        let store = MemoryStore::new();
        assert!(matches!(decide(&store, &key()).unwrap(), Decision::Lead));
        let mut r = store.load_flow(&key()).unwrap().unwrap();
        r.holder_pid = u32::MAX; // no such process
        r.lease_until = now_unix() + 60;
        r.redirect_uri = Some("http://127.0.0.1:1/callback".into());
        r.verifier = Some(mcpauth_core::PkceVerifier::new("v"));
        store.save_flow(&r).unwrap();
        match decide(&store, &key()).unwrap() {
            Decision::TakeOver(t) => assert_eq!(t.holder_pid, std::process::id()),
            _ => panic!("expected a takeover"),
        }
    }

    #[test]
    fn new_flows_are_capped_per_minute() {
        let store = MemoryStore::new();
        for _ in 0..MAX_FLOWS_PER_MINUTE {
            assert!(matches!(decide(&store, &key()).unwrap(), Decision::Lead));
            let mut r = store.load_flow(&key()).unwrap().unwrap();
            r.active = false;
            store.save_flow(&r).unwrap();
        }
        let e = decide(&store, &key()).err().unwrap();
        assert!(
            e.to_string().contains("not opening another browser tab"),
            "{e}"
        );
    }
}
