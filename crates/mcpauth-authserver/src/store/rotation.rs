//! Refresh-token rotation with group commit (MCP SPEC A6). Every refresh spends one token and
//! stores its successor (OAuth 2.1 §4.3.1); done one by one, each costs a transaction (a commit, and on
//! SQLite several hops to the database thread), which bounds the token endpoint far below what
//! signing the access token costs. Here the token endpoint queues its rotation and a writer
//! task takes everything queued (up to [`MAX_BATCH`]) and rotates it with one statement and one
//! commit:
//!
//! - the spend is one conditional `UPDATE … FROM (VALUES …) … WHERE used_at IS NULL` whose
//!   `RETURNING` rows are the winners, so several writers, or several server instances on one
//!   PostgreSQL database, still spend each token at most once;
//! - the conditions a client may fail (another client's token, revoked, expired, a different
//!   `resource`) are in the `WHERE` too, so a token is spent only when the refresh succeeds;
//! - each caller gets its own answer; a batch that one row may have failed (a constraint it
//!   violates, a value the database refuses) is retried one rotation at a time, so one bad row
//!   never fails the others; a batch that failed for a reason every row shares (the pool timed
//!   out or is closed, I/O, a lost connection) fails whole at once with that error;
//! - the writers are supervised: one that ended (it panicked, or the runtime it ran on shut
//!   down) is replaced by the next rotation, and the rotations it held fail with an error rather
//!   than wait.
//!
//! A token that is not spent here is judged by the token endpoint (`routes/token.rs`): a spent
//! token presented again revokes its family (OAuth 2.1 §4.3.1, RFC 9700 §4.14.2), unless it is
//! the same client within the grace window and the successor stored here is still unused;
//! then that successor (sealed with the spent token, `successor_sealed`) is returned again.

use std::collections::{HashMap, HashSet};
use std::fmt::Write;
use std::sync::{Arc, PoisonError, Weak};

use sqlx::any::AnyRow;
use sqlx::error::ErrorKind;
use sqlx::{AnyPool, AssertSqlSafe, Row};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{Backend, Store};
use crate::error::{AuthServerError, DatabaseError};

/// Rotations waiting for a writer; beyond this many, callers wait.
const QUEUE: usize = 4096;

/// At most this many rotations in one statement (7 parameters each).
const MAX_BATCH: usize = 64;

/// One refresh token to spend and the successor to store, from the token endpoint.
#[derive(Debug)]
pub(crate) struct Spend {
    /// SHA-256 of the presented token.
    pub token_hash: String,
    /// The authenticated client: the token must be its own.
    pub client_id: String,
    /// The `resource` of the request, if any: the token's must be the same (RFC 8707).
    pub resource: Option<String>,
    /// The time of the request: the token must not have expired by then.
    pub now: i64,
    pub successor_hash: String,
    /// The successor sealed with the presented token (for the grace window).
    pub successor_sealed: String,
    pub successor_expires_at: i64,
}

/// What a spent refresh token granted: its successor carries the same.
#[derive(Debug)]
pub(crate) struct Spent {
    pub family_id: String,
    pub user_id: String,
    pub scope: String,
    pub resource: Option<String>,
}

type Answer = Result<Option<Spent>, AuthServerError>;

struct Job {
    spend: Spend,
    reply: oneshot::Sender<Answer>,
}

/// The queue of rotations and its writers, started on first use (in the runtime that uses it)
/// and restarted by the rotation after one ended.
#[derive(Debug, Default)]
pub(crate) struct Rotator {
    state: std::sync::Mutex<Option<Writers>>,
}

/// A queue and the writers that take from it.
#[derive(Debug)]
struct Writers {
    queue: mpsc::Sender<Job>,
    /// Held by the writers only: when the last one ends, the jobs still queued are dropped (their
    /// callers get an error) instead of waiting for a writer that may never come.
    receiver: Weak<Mutex<mpsc::Receiver<Job>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Rotator {
    /// The queue, with all its writers running: writers that ended are replaced, and when none
    /// is left the queue (closed by then) is replaced too.
    fn queue(&self, pool: &AnyPool, backend: Backend) -> mpsc::Sender<Job> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let live = state
            .as_mut()
            .and_then(|w| w.receiver.upgrade().map(|rx| (w, rx)));
        let (writers_now, receiver) = match live {
            Some((w, rx)) => {
                w.tasks.retain(|task| !task.is_finished());
                (w, rx)
            }
            None => {
                let (tx, rx) = mpsc::channel(QUEUE);
                let rx = Arc::new(Mutex::new(rx));
                let fresh = state.insert(Writers {
                    queue: tx,
                    receiver: Arc::downgrade(&rx),
                    tasks: Vec::new(),
                });
                (fresh, rx)
            }
        };
        while writers_now.tasks.len() < writers(backend) {
            let task = tokio::spawn(writer(pool.clone(), backend, receiver.clone()));
            writers_now.tasks.push(task);
        }
        writers_now.queue.clone()
    }
}

/// Writers running at once: one for SQLite (it has one writer anyway), a few for PostgreSQL so
/// that a batch waiting for its commit does not hold up the next.
fn writers(backend: Backend) -> usize {
    match backend {
        Backend::Sqlite => 1,
        Backend::Postgres => 4,
    }
}

impl Store {
    /// Spends the refresh token `spend.token_hash` and stores its successor, atomically, if the
    /// token exists, belongs to `spend.client_id`, is neither spent nor revoked nor expired at
    /// `spend.now` and (when the request names one) was granted for `spend.resource`. Returns
    /// what the token granted, or `None` when any of that does not hold: then nothing changed
    /// and the caller looks the token up to say why.
    pub(crate) async fn spend_refresh(&self, spend: Spend) -> Answer {
        let queue = self.rotator.queue(&self.pool, self.backend);
        let (reply, answer) = oneshot::channel();
        // Either fails only when the writers ended (panicked, or their runtime shut down) with
        // this rotation queued or taken: it fails now, and the next rotation has new writers.
        queue
            .send(Job { spend, reply })
            .await
            .map_err(|_| sqlx::Error::WorkerCrashed)?;
        answer.await.map_err(|_| sqlx::Error::WorkerCrashed)?
    }
}

async fn writer(pool: AnyPool, backend: Backend, queue: Arc<Mutex<mpsc::Receiver<Job>>>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        if queue.lock().await.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return; // every Store clone is gone
        }
        run(&pool, backend, std::mem::take(&mut batch)).await;
    }
}

/// Rotates one batch and answers each caller.
async fn run(pool: &AnyPool, backend: Backend, batch: Vec<Job>) {
    // A token asked for twice in one batch: the first request decides; the others find it
    // spent (or not spendable) once the batch is committed, like a concurrent request would.
    let mut seen = HashSet::new();
    let (unique, repeats): (Vec<Job>, Vec<Job>) = batch
        .into_iter()
        .partition(|job| seen.insert(job.spend.token_hash.clone()));
    let spends: Vec<&Spend> = unique.iter().map(|job| &job.spend).collect();
    match rotate(pool, backend, &spends).await {
        Ok(mut spent) => {
            for job in unique {
                let answer = spent.remove(&job.spend.token_hash);
                let _ = job.reply.send(Ok(answer));
            }
        }
        Err(e) if unique.len() > 1 && row_level(&e, backend) => {
            tracing::warn!(error = %e, size = unique.len(), "batched refresh rotation failed; retrying one by one");
            let mut jobs = unique.into_iter();
            while let Some(job) = jobs.next() {
                let answer = rotate(pool, backend, &[&job.spend])
                    .await
                    .map(|mut spent| spent.remove(&job.spend.token_hash));
                if let Err(e) = &answer
                    && !row_level(e, backend)
                {
                    // The pool or the connection failed meanwhile: the rest would fail alike.
                    fail(jobs.by_ref().chain(repeats), e);
                    let _ = job.reply.send(answer);
                    return;
                }
                let _ = job.reply.send(answer);
            }
        }
        Err(e) => {
            // Every rotation would fail alike (or there is only one): each caller is told now.
            fail(unique.into_iter().chain(repeats), &e);
            return;
        }
    }
    for job in repeats {
        let _ = job.reply.send(Ok(None));
    }
}

/// Answers every job of `jobs` with (a copy of) `e`.
fn fail(jobs: impl Iterator<Item = Job>, e: &AuthServerError) {
    for job in jobs {
        let _ = job.reply.send(Err(again(e)));
    }
}

/// Whether `e` may be the fault of one row of a batch, so that the rotations are retried one by
/// one: a constraint a row violates, or a value the database refused (PostgreSQL SQLSTATE
/// classes 22 and 23; SQLite's constraint, type-mismatch and too-big results). Anything else
/// (the pool timed out or is closed, I/O, a lost connection, a locked database) would fail every
/// retry alike, each waiting as long again.
fn row_level(e: &AuthServerError, backend: Backend) -> bool {
    let AuthServerError::Database(DatabaseError(e)) = e else {
        return false;
    };
    match e {
        sqlx::Error::Database(db) => {
            let constraint = matches!(
                db.kind(),
                ErrorKind::UniqueViolation
                    | ErrorKind::ForeignKeyViolation
                    | ErrorKind::NotNullViolation
                    | ErrorKind::CheckViolation
                    | ErrorKind::ExclusionViolation
            );
            let code = db.code();
            let code = code.as_deref().unwrap_or_default();
            constraint
                || match backend {
                    Backend::Postgres => code.starts_with("22") || code.starts_with("23"),
                    // The primary result code is the low byte of the extended one:
                    // SQLITE_TOOBIG 18, SQLITE_CONSTRAINT 19, SQLITE_MISMATCH 20.
                    Backend::Sqlite => code
                        .parse::<u32>()
                        .is_ok_and(|c| matches!(c & 0xff, 18..=20)),
                }
        }
        sqlx::Error::Encode(_) | sqlx::Error::Decode(_) | sqlx::Error::ColumnDecode { .. } => true,
        _ => false,
    }
}

/// A copy of a batch's error for each of its callers (`sqlx::Error` is not `Clone`): the same
/// variant where it carries no payload, the same I/O error kind and message, otherwise the
/// message.
fn again(e: &AuthServerError) -> AuthServerError {
    let copy = match e {
        AuthServerError::Database(DatabaseError(sqlx::Error::PoolTimedOut)) => {
            sqlx::Error::PoolTimedOut
        }
        AuthServerError::Database(DatabaseError(sqlx::Error::PoolClosed)) => {
            sqlx::Error::PoolClosed
        }
        AuthServerError::Database(DatabaseError(sqlx::Error::WorkerCrashed)) => {
            sqlx::Error::WorkerCrashed
        }
        AuthServerError::Database(DatabaseError(sqlx::Error::Io(io))) => {
            sqlx::Error::Io(std::io::Error::new(io.kind(), io.to_string()))
        }
        other => sqlx::Error::AnyDriverError(other.to_string().into()),
    };
    copy.into()
}

/// `($1, …, $7), ($8, …)`: `rows` tuples of `width` numbered placeholders.
fn placeholders(rows: usize, width: usize) -> String {
    let mut sql = String::new();
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for col in 0..width {
            let sep = if col == 0 { "" } else { ", " };
            let _ = write!(sql, "{sep}${}", row * width + col + 1);
        }
        sql.push(')');
    }
    sql
}

/// The spend itself, shared by both backends: the winners are the rows it returns.
const SPEND: &str = "UPDATE refresh_tokens SET used_at = req.k_now, successor_hash = req.k_new, \
     successor_sealed = req.k_sealed FROM req WHERE token_hash = req.k_old \
     AND client_id = req.k_client AND used_at IS NULL AND revoked_at IS NULL \
     AND expires_at > req.k_now AND (req.k_resource IS NULL OR resource = req.k_resource) \
     RETURNING token_hash, family_id, user_id, scope, resource";

/// Columns of successor rows.
const SUCCESSOR_COLUMNS: &str =
    "token_hash, family_id, client_id, user_id, scope, resource, created_at, expires_at";

/// Spends the tokens of `spends` that may be spent and stores their successors, atomically;
/// returns the spent ones by token hash. The token hashes must be distinct ([`run`] sees to
/// it): a token listed twice is spent once, but both requests' successors would be stored.
async fn rotate(
    pool: &AnyPool,
    backend: Backend,
    spends: &[&Spend],
) -> Result<HashMap<String, Spent>, AuthServerError> {
    let req = format!(
        "WITH req(k_old, k_client, k_resource, k_new, k_sealed, k_now, k_until) AS (VALUES {})",
        placeholders(spends.len(), 7)
    );
    let sql = match backend {
        // One statement (no transaction around it): the successors are inserted by a
        // data-modifying CTE, so one round trip and one commit.
        Backend::Postgres => format!(
            "{req}, spent AS ({SPEND}), born AS (INSERT INTO refresh_tokens ({SUCCESSOR_COLUMNS}) \
             SELECT req.k_new, spent.family_id, req.k_client, spent.user_id, spent.scope, \
             spent.resource, req.k_now, req.k_until FROM spent JOIN req ON req.k_old = \
             spent.token_hash) SELECT token_hash, family_id, user_id, scope, resource FROM spent"
        ),
        // SQLite has no data-modifying CTEs: the successors follow in the same transaction.
        Backend::Sqlite => format!("{req} {SPEND}"),
    };
    // Dynamic only in the number of placeholder tuples; every value is bound.
    let mut query = sqlx::query(AssertSqlSafe(sql));
    for s in spends {
        query = query
            .bind(s.token_hash.as_str())
            .bind(s.client_id.as_str())
            .bind(s.resource.as_deref())
            .bind(s.successor_hash.as_str())
            .bind(s.successor_sealed.as_str())
            .bind(s.now)
            .bind(s.successor_expires_at);
    }
    if backend == Backend::Postgres {
        return spent_by_hash(query.fetch_all(pool).await?);
    }
    let mut tx = pool.begin().await?;
    let spent = spent_by_hash(query.fetch_all(&mut *tx).await?)?;
    let born: Vec<&&Spend> = spends
        .iter()
        .filter(|s| spent.contains_key(&s.token_hash))
        .collect();
    if !born.is_empty() {
        let sql = format!(
            "INSERT INTO refresh_tokens ({SUCCESSOR_COLUMNS}) VALUES {}",
            placeholders(born.len(), 8)
        );
        let mut insert = sqlx::query(AssertSqlSafe(sql));
        for s in born {
            let grant = &spent[&s.token_hash];
            insert = insert
                .bind(s.successor_hash.as_str())
                .bind(grant.family_id.as_str())
                .bind(s.client_id.as_str())
                .bind(grant.user_id.as_str())
                .bind(grant.scope.as_str())
                .bind(grant.resource.as_deref())
                .bind(s.now)
                .bind(s.successor_expires_at);
        }
        insert.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(spent)
}

fn spent_by_hash(rows: Vec<AnyRow>) -> Result<HashMap<String, Spent>, AuthServerError> {
    rows.into_iter()
        .map(|row| {
            Ok((
                row.try_get("token_hash")?,
                Spent {
                    family_id: row.try_get("family_id")?,
                    user_id: row.try_get("user_id")?,
                    scope: row.try_get("scope")?,
                    resource: row.try_get("resource")?,
                },
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spend(old: &str, successor: &str) -> Spend {
        Spend {
            token_hash: old.into(),
            client_id: "client".into(),
            resource: None,
            now: 1,
            successor_hash: successor.into(),
            successor_sealed: "sealed".into(),
            successor_expires_at: 100,
        }
    }

    /// One rotation that fails (its successor collides with a stored token) fails alone: the
    /// batch is retried one by one, the other token is rotated, the failing one stays unspent.
    #[tokio::test]
    async fn a_failing_rotation_does_not_fail_its_batch() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        for hash in ["a", "b", "taken"] {
            store
                .insert_refresh(&crate::store::NewRefresh {
                    token_hash: hash,
                    family_id: hash,
                    client_id: "client",
                    user_id: "user",
                    scope: "mcp",
                    resource: None,
                    created_at: 0,
                    expires_at: 100,
                })
                .await
                .unwrap();
        }
        // Both are queued before the writer runs (one thread), so they share a batch.
        let (a, b) = tokio::join!(
            store.spend_refresh(spend("a", "a2")),
            store.spend_refresh(spend("b", "taken"))
        );
        assert_eq!(a.unwrap().unwrap().family_id, "a");
        // The successor's primary key collides (review finding 14: the error, not any error).
        assert!(
            matches!(&b, Err(AuthServerError::Database(DatabaseError(e))) if crate::store::is_unique_violation(e)),
            "{b:?}"
        );
        assert!(store.refresh("a").await.unwrap().unwrap().used_at.is_some());
        assert!(store.refresh("a2").await.unwrap().is_some());
        assert!(store.refresh("b").await.unwrap().unwrap().used_at.is_none());
        // A repeat in one batch: the first spends the token, the second is told it did not.
        let (first, again) = tokio::join!(
            store.spend_refresh(spend("b", "b2")),
            store.spend_refresh(spend("b", "b3"))
        );
        assert!(first.unwrap().is_some());
        assert!(again.unwrap().is_none());
        assert!(store.refresh("b3").await.unwrap().is_none());
    }

    /// A job for [`run`] and where its answer comes.
    fn job(old: &str, successor: &str) -> (Job, oneshot::Receiver<Answer>) {
        let (reply, answer) = oneshot::channel();
        let spend = spend(old, successor);
        (Job { spend, reply }, answer)
    }

    /// A pool error fails the whole batch at once, without retrying it one rotation at a time:
    /// with the pool's one connection held, the batch times out acquiring; once the first caller
    /// has its answer the connection is free, and a retry would now reach the database, yet the
    /// second caller has the pool's error too. A closed pool fails every caller alike.
    async fn review6_a_pool_error_fails_the_batch_at_once(url: &str, backend: Backend) {
        sqlx::any::install_default_drivers();
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(std::time::Duration::from_millis(300))
            .connect(url)
            .await
            .unwrap();
        let held = pool.acquire().await.unwrap();
        let (a, a_answer) = job("a", "a2");
        let (b, b_answer) = job("b", "b2");
        let batch = tokio::spawn({
            let pool = pool.clone();
            async move { run(&pool, backend, vec![a, b]).await }
        });
        let a = a_answer.await.unwrap();
        drop(held);
        let b = b_answer.await.unwrap();
        batch.await.unwrap();
        for answer in [a, b] {
            assert!(
                matches!(
                    answer,
                    Err(AuthServerError::Database(DatabaseError(
                        sqlx::Error::PoolTimedOut
                    )))
                ),
                "{answer:?}"
            );
        }

        pool.close().await;
        let (jobs, answers): (Vec<_>, Vec<_>) = [("c", "c2"), ("d", "d2"), ("c", "c3")]
            .into_iter()
            .map(|(old, new)| job(old, new))
            .unzip();
        run(&pool, backend, jobs).await;
        for answer in answers {
            let answer = answer.await.unwrap();
            assert!(
                matches!(
                    answer,
                    Err(AuthServerError::Database(DatabaseError(
                        sqlx::Error::PoolClosed
                    )))
                ),
                "{answer:?}"
            );
        }
    }

    #[tokio::test]
    async fn review6_a_pool_error_fails_the_batch_at_once_sqlite() {
        review6_a_pool_error_fails_the_batch_at_once("sqlite::memory:", Backend::Sqlite).await;
    }

    /// A store whose pool is closed answers every waiting rotation with that error, promptly.
    #[tokio::test]
    async fn review6_a_closed_store_fails_every_rotation() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        store.close().await;
        let (a, b, c) = tokio::time::timeout(std::time::Duration::from_secs(60), async {
            tokio::join!(
                store.spend_refresh(spend("a", "a2")),
                store.spend_refresh(spend("b", "b2")),
                store.spend_refresh(spend("c", "c2"))
            )
        })
        .await
        .expect("rotations on a closed pool waited");
        for answer in [a, b, c] {
            assert!(
                matches!(
                    answer,
                    Err(AuthServerError::Database(DatabaseError(
                        sqlx::Error::PoolClosed
                    )))
                ),
                "{answer:?}"
            );
        }
    }

    #[tokio::test]
    #[cfg_attr(
        not(mcpauth_pg),
        ignore = "needs PostgreSQL: build and run with MCPAUTH_TEST_DATABASE_URL set"
    )]
    async fn review6_a_pool_error_fails_the_batch_at_once_postgres() {
        let url = std::env::var("MCPAUTH_TEST_DATABASE_URL").expect(
            "MCPAUTH_TEST_DATABASE_URL is not set: this test must not pass without running",
        );
        review6_a_pool_error_fails_the_batch_at_once(&url, Backend::Postgres).await;
    }

    /// Writers that ended (here: the runtime they ran on shut down) are replaced by the next
    /// rotation, which neither fails nor waits for them.
    #[test]
    fn review6_a_writer_that_ended_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/mcpauth.db?mode=rwc", dir.path().display());
        let runtime = || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
        };
        let first = runtime();
        let store = first.block_on(async {
            let store = Store::connect(&url).await.unwrap();
            for hash in ["a", "b"] {
                store
                    .insert_refresh(&crate::store::NewRefresh {
                        token_hash: hash,
                        family_id: hash,
                        client_id: "client",
                        user_id: "user",
                        scope: "mcp",
                        resource: None,
                        created_at: 0,
                        expires_at: 100,
                    })
                    .await
                    .unwrap();
            }
            assert!(
                store
                    .spend_refresh(spend("a", "a2"))
                    .await
                    .unwrap()
                    .is_some()
            );
            store
        });
        drop(first);
        runtime().block_on(async {
            let spent = tokio::time::timeout(
                std::time::Duration::from_secs(60),
                store.spend_refresh(spend("b", "b2")),
            )
            .await
            .expect("a rotation waited for a writer that is gone");
            assert_eq!(spent.unwrap().unwrap().family_id, "b");
        });
    }

    #[test]
    fn placeholders_are_numbered_row_by_row() {
        assert_eq!(placeholders(1, 2), "($1, $2)");
        assert_eq!(placeholders(2, 3), "($1, $2, $3), ($4, $5, $6)");
    }
}
