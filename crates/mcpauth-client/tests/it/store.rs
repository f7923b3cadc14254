//! Token store behaviour through the public API (MCP SPEC C27 secure token storage; C7 and C15
//! separate state per authorization server).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use mcpauth_client::ClientError;
use mcpauth_client::store::{
    ClientRecord, FileStore, MemoryStore, RegistrationKind, SCHEMA_VERSION, StoreKey, TokenRecord,
    TokenStore,
};
use mcpauth_core::{AccessToken, ClientSecret, RefreshToken, ScopeSet};

/// Generous bound for "this should happen": exceeding it fails the test instead of hanging.
const PATIENCE: Duration = Duration::from_secs(60);

fn key() -> StoreKey {
    StoreKey {
        resource: "https://mcp.example.com/mcp".into(),
        issuer: "https://auth.example.com".into(),
        client_id: "client-1".into(),
    }
}

fn token_record(key: StoreKey, access: &str) -> TokenRecord {
    TokenRecord {
        schema: SCHEMA_VERSION,
        key,
        access_token: AccessToken::new(access),
        token_type: "Bearer".into(),
        dpop_key: None,
        refresh_token: Some(RefreshToken::new("rt-secret-1")),
        expires_at: Some(1_900_000_000),
        granted_scopes: ScopeSet::parse("read write"),
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
        token_endpoint_auth_method: "client_secret_basic".into(),
        redirect_uris: vec!["http://127.0.0.1:33418/callback".into()],
        kind: RegistrationKind::Dynamic,
        secret_expires_at: Some(0),
        updated_at: 1_800_000_000,
    }
}

/// The one `*.json` file under `dir`.
fn only_json_file(dir: &Path) -> PathBuf {
    let files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files.into_iter().next().unwrap()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[cfg(unix)]
fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Saves, reloads, lists and deletes through `store`.
fn exercise_round_trip(store: &dyn TokenStore) {
    let record = token_record(key(), "at-secret-1");
    store.save_tokens(&record).unwrap();
    assert_eq!(store.load_tokens(&key()).unwrap(), Some(record.clone()));
    let replaced = token_record(key(), "at-secret-2");
    store.save_tokens(&replaced).unwrap();
    assert_eq!(store.load_tokens(&key()).unwrap(), Some(replaced.clone()));
    assert_eq!(store.list_tokens().unwrap(), [replaced]);

    let client = client_record("https://auth.example.com");
    store.save_client(&client).unwrap();
    assert_eq!(
        store.load_client("https://auth.example.com").unwrap(),
        Some(client)
    );

    store.delete_tokens(&key()).unwrap();
    assert_eq!(store.load_tokens(&key()).unwrap(), None);
    assert!(store.list_tokens().unwrap().is_empty());
    store.delete_tokens(&key()).unwrap(); // deleting nothing is fine
    store.delete_client("https://auth.example.com").unwrap();
    assert_eq!(store.load_client("https://auth.example.com").unwrap(), None);
    store.delete_client("https://auth.example.com").unwrap();
}

#[test]
fn c27_file_store_round_trips_tokens_and_clients() {
    let tmp = tempfile::tempdir().unwrap();
    exercise_round_trip(&FileStore::new(tmp.path()));
}

#[test]
fn c27_memory_store_round_trips_tokens_and_clients() {
    exercise_round_trip(&MemoryStore::new());
}

#[test]
fn c27_file_store_records_survive_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("nested").join("store");
    let record = token_record(key(), "at-secret-1");
    let client = client_record("https://auth.example.com");
    {
        let first = FileStore::new(&dir);
        first.save_tokens(&record).unwrap();
        first.save_client(&client).unwrap();
    }
    let second = FileStore::new(&dir);
    assert_eq!(second.load_tokens(&key()).unwrap(), Some(record.clone()));
    assert_eq!(second.list_tokens().unwrap(), [record]);
    assert_eq!(
        second.load_client("https://auth.example.com").unwrap(),
        Some(client)
    );
}

#[test]
fn c7_c15_records_are_kept_apart_per_issuer_and_client() {
    let tmp = tempfile::tempdir().unwrap();
    for store in [
        &FileStore::new(tmp.path()) as &dyn TokenStore,
        &MemoryStore::new(),
    ] {
        let other_issuer = StoreKey {
            issuer: "https://other-auth.example.com".into(),
            ..key()
        };
        let other_client = StoreKey {
            client_id: "client-2".into(),
            ..key()
        };
        store
            .save_tokens(&token_record(key(), "at-secret-1"))
            .unwrap();
        store
            .save_tokens(&token_record(other_issuer.clone(), "at-secret-2"))
            .unwrap();
        assert_eq!(store.load_tokens(&other_client).unwrap(), None);
        assert_eq!(
            store.load_tokens(&key()).unwrap().unwrap().access_token,
            AccessToken::new("at-secret-1")
        );
        assert_eq!(
            store
                .load_tokens(&other_issuer)
                .unwrap()
                .unwrap()
                .access_token,
            AccessToken::new("at-secret-2")
        );
        assert_eq!(store.list_tokens().unwrap().len(), 2);

        store
            .save_client(&client_record("https://auth.example.com"))
            .unwrap();
        assert_eq!(
            store.load_client("https://other-auth.example.com").unwrap(),
            None
        );
    }
}

#[cfg(unix)]
#[test]
fn c27_files_are_0600_in_0700_directories() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let store = FileStore::new(&dir);
    store
        .save_tokens(&token_record(key(), "at-secret-1"))
        .unwrap();
    store
        .save_client(&client_record("https://auth.example.com"))
        .unwrap();
    drop(store.lock(&key()).unwrap());
    assert_eq!(mode(&dir), 0o700);
    for sub in ["tokens", "clients", "locks"] {
        assert_eq!(mode(&dir.join(sub)), 0o700, "{sub}");
    }
    assert_eq!(mode(&only_json_file(&dir.join("tokens"))), 0o600);
    assert_eq!(mode(&only_json_file(&dir.join("clients"))), 0o600);
    for lock in fs::read_dir(dir.join("locks")).unwrap() {
        assert_eq!(mode(&lock.unwrap().path()), 0o600);
    }
}

#[cfg(unix)]
#[test]
fn c27_group_readable_files_are_refused_with_a_chmod_hint() {
    let tmp = tempfile::tempdir().unwrap();
    let store = FileStore::new(tmp.path());
    store
        .save_tokens(&token_record(key(), "at-secret-1"))
        .unwrap();
    store
        .save_client(&client_record("https://auth.example.com"))
        .unwrap();
    let token_file = only_json_file(&tmp.path().join("tokens"));
    chmod(&token_file, 0o644);

    let err = store.load_tokens(&key()).unwrap_err();
    assert!(
        matches!(&err, ClientError::StorePermissions { path, mode: 0o644 } if *path == token_file),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("chmod 600"), "{message}");
    assert!(
        message.contains(&token_file.display().to_string()),
        "{message}"
    );
    assert!(!message.contains("at-secret-1"), "{message}");
    // Listing refuses it too rather than skipping it.
    assert!(matches!(
        store.list_tokens(),
        Err(ClientError::StorePermissions { .. })
    ));
    // Other-readable only, and client files, are refused the same way.
    chmod(&token_file, 0o604);
    assert!(matches!(
        store.load_tokens(&key()),
        Err(ClientError::StorePermissions { mode: 0o604, .. })
    ));
    let client_file = only_json_file(&tmp.path().join("clients"));
    chmod(&client_file, 0o640);
    assert!(matches!(
        store.load_client("https://auth.example.com"),
        Err(ClientError::StorePermissions { .. })
    ));
    // Fixing the mode as the message says makes it readable again.
    chmod(&token_file, 0o600);
    assert!(store.load_tokens(&key()).unwrap().is_some());
}

#[test]
fn c27_a_crash_before_the_rename_leaves_the_old_record() {
    let tmp = tempfile::tempdir().unwrap();
    let store = FileStore::new(tmp.path());
    let record = token_record(key(), "at-secret-1");
    store.save_tokens(&record).unwrap();
    let tokens = tmp.path().join("tokens");
    let target = only_json_file(&tokens);
    // What a writer that died between write and rename leaves behind: a private temp file,
    // half written, next to the intact record.
    let name = target.file_name().unwrap().to_str().unwrap();
    for leftover in [format!(".tmp-{name}"), ".tmp-Ab12Cd.partial".to_string()] {
        let path = tokens.join(leftover);
        fs::write(&path, b"{\"schema\": 1, \"access_token\": \"at-sec").unwrap();
        #[cfg(unix)]
        chmod(&path, 0o600);
    }

    let reopened = FileStore::new(tmp.path());
    assert_eq!(reopened.load_tokens(&key()).unwrap(), Some(record.clone()));
    assert_eq!(reopened.list_tokens().unwrap(), [record]);
    // The next save still works and replaces only the record.
    let newer = token_record(key(), "at-secret-2");
    reopened.save_tokens(&newer).unwrap();
    assert_eq!(reopened.list_tokens().unwrap(), [newer]);
}

/// Asserts that `err` is `StoreCorrupt` naming `path` with a reason containing `needle`.
fn assert_corrupt(err: &ClientError, path: &Path, needle: &str) {
    match err {
        ClientError::StoreCorrupt { path: p, reason } => {
            assert_eq!(p, path);
            assert!(reason.contains(needle), "{reason}");
        }
        other => panic!("expected StoreCorrupt, got {other:?}"),
    }
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn c27_corrupt_json_is_reported_with_its_path_and_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let store = FileStore::new(tmp.path());
    store
        .save_tokens(&token_record(key(), "at-secret-1"))
        .unwrap();
    let path = only_json_file(&tmp.path().join("tokens"));
    let garbage = b"{\"schema\": 1, \"resource\": ";
    fs::write(&path, garbage).unwrap();

    let err = store.load_tokens(&key()).unwrap_err();
    // serde_json's message, with its position.
    assert_corrupt(&err, &path, "line 1");
    assert!(matches!(
        store.list_tokens(),
        Err(ClientError::StoreCorrupt { .. })
    ));
    assert_eq!(
        fs::read(&path).unwrap(),
        garbage,
        "a read must not touch it"
    );

    // Well-formed JSON of the wrong shape: serde's message names the problem.
    fs::write(&path, b"{\"schema\": 1}").unwrap();
    let err = store.load_tokens(&key()).unwrap_err();
    assert_corrupt(&err, &path, "missing field");
    assert!(path.exists());
}

#[test]
fn c27_a_record_from_a_newer_mcpauth_is_reported_and_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let store = FileStore::new(tmp.path());
    store
        .save_tokens(&token_record(key(), "at-secret-1"))
        .unwrap();
    store
        .save_client(&client_record("https://auth.example.com"))
        .unwrap();
    let newer = SCHEMA_VERSION + 1;

    // A future layout may change fields too: the version is what gets reported.
    let token_path = only_json_file(&tmp.path().join("tokens"));
    let mut value: serde_json::Value =
        serde_json::from_slice(&fs::read(&token_path).unwrap()).unwrap();
    value["schema"] = newer.into();
    value["access_token"] = serde_json::json!({ "sealed": "at-secret-1" });
    let bytes = serde_json::to_vec_pretty(&value).unwrap();
    fs::write(&token_path, &bytes).unwrap();
    let err = store.load_tokens(&key()).unwrap_err();
    assert_corrupt(&err, &token_path, "newer mcpauth");
    assert_corrupt(&err, &token_path, &format!("version {newer}"));
    assert!(matches!(
        store.list_tokens(),
        Err(ClientError::StoreCorrupt { .. })
    ));
    assert_eq!(
        fs::read(&token_path).unwrap(),
        bytes,
        "never rewritten by a read"
    );

    let client_path = only_json_file(&tmp.path().join("clients"));
    let mut value: serde_json::Value =
        serde_json::from_slice(&fs::read(&client_path).unwrap()).unwrap();
    value["schema"] = newer.into();
    fs::write(&client_path, serde_json::to_vec(&value).unwrap()).unwrap();
    let err = store.load_client("https://auth.example.com").unwrap_err();
    assert_corrupt(&err, &client_path, "newer mcpauth");
    assert!(client_path.exists());
}

/// Holds `key` through `holder`, starts a thread that locks it through `waiter`, and checks
/// that the waiter gets it only after the holder's guard is dropped: the holder sets a flag
/// just before dropping, and the waiter records the flag as soon as it holds the lock.
fn assert_lock_excludes_threads(holder: &dyn TokenStore, waiter: Arc<dyn TokenStore>) {
    let held = holder.lock(&key()).unwrap();
    let released = Arc::new(AtomicBool::new(false));
    let (started_tx, started_rx) = mpsc::channel();
    let (acquired_tx, acquired_rx) = mpsc::channel();
    let thread = {
        let released = Arc::clone(&released);
        std::thread::spawn(move || {
            started_tx.send(()).unwrap();
            let guard = waiter.lock(&key()).unwrap();
            acquired_tx.send(released.load(Ordering::SeqCst)).unwrap();
            drop(guard);
        })
    };
    started_rx.recv().unwrap();
    // Not a timing assertion: this only gives a broken lock the chance to let the waiter in
    // early, which the flag then reveals.
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        acquired_rx.try_recv().is_err(),
        "the lock was taken while held"
    );
    released.store(true, Ordering::SeqCst);
    drop(held);
    let saw_release = acquired_rx
        .recv_timeout(PATIENCE)
        .expect("the waiter never got the lock");
    assert!(saw_release, "the lock was taken before it was released");
    thread.join().unwrap();
    // And it can be taken again once free.
    drop(holder.lock(&key()).unwrap());
}

#[test]
fn c27_file_lock_excludes_other_threads() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(FileStore::new(tmp.path()));
    // The same store instance...
    assert_lock_excludes_threads(&*store, Arc::clone(&store) as Arc<dyn TokenStore>);
    // ...and a second instance on the same directory.
    assert_lock_excludes_threads(&*store, Arc::new(FileStore::new(tmp.path())));
}

#[test]
fn c27_memory_lock_excludes_other_threads() {
    let store = Arc::new(MemoryStore::new());
    assert_lock_excludes_threads(&*store, Arc::clone(&store) as Arc<dyn TokenStore>);
}

#[test]
fn c27_file_locks_on_different_keys_are_independent() {
    let tmp = tempfile::tempdir().unwrap();
    let store = FileStore::new(tmp.path());
    let _held = store.lock(&key()).unwrap();
    let other = StoreKey {
        client_id: "client-2".into(),
        ..key()
    };
    let dir = tmp.path().to_path_buf();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let guard = FileStore::new(dir).lock(&other).unwrap();
        tx.send(()).unwrap();
        drop(guard);
    });
    rx.recv_timeout(PATIENCE)
        .expect("a lock on another key must not wait");
}

const CHILD_DIR_ENV: &str = "MCPAUTH_TEST_LOCK_CHILD_DIR";
const CHILD_MARKER_ENV: &str = "MCPAUTH_TEST_LOCK_CHILD_MARKER";
const CHILD_RELEASE_ENV: &str = "MCPAUTH_TEST_LOCK_CHILD_RELEASE";

/// Not a test on its own: the child half of [`c27_file_lock_excludes_other_processes`], which
/// re-runs this test binary with only this function selected (and `--ignored`) and the
/// `MCPAUTH_TEST_LOCK_CHILD_*` variables set. The child takes the lock, creates the marker file,
/// and holds the lock until the release file appears. Ignored in every other run, so that it is
/// never reported as a test that passed.
#[test]
#[ignore = "the child process of c27_file_lock_excludes_other_processes, which runs it"]
fn lock_child_process_helper() {
    let dir = std::env::var_os(CHILD_DIR_ENV)
        .expect("run by c27_file_lock_excludes_other_processes only (it sets the variables)");
    let marker = PathBuf::from(std::env::var_os(CHILD_MARKER_ENV).unwrap());
    let release = PathBuf::from(std::env::var_os(CHILD_RELEASE_ENV).unwrap());
    let guard = FileStore::new(dir).lock(&key()).unwrap();
    fs::write(&marker, b"locked").unwrap();
    let deadline = Instant::now() + PATIENCE;
    while !release.exists() {
        assert!(Instant::now() < deadline, "the parent never released us");
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(guard);
}

/// Kills the child if the parent test fails before waiting for it.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn c27_file_lock_excludes_other_processes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let marker = tmp.path().join("child-locked");
    let release = tmp.path().join("child-release");
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "store::lock_child_process_helper",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_DIR_ENV, &dir)
        .env(CHILD_MARKER_ENV, &marker)
        .env(CHILD_RELEASE_ENV, &release)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);

    let deadline = Instant::now() + PATIENCE;
    while !marker.exists() {
        if let Some(status) = child.0.try_wait().unwrap() {
            panic!("the child exited ({status}) without taking the lock");
        }
        assert!(Instant::now() < deadline, "the child never took the lock");
        std::thread::sleep(Duration::from_millis(10));
    }

    let released = Arc::new(AtomicBool::new(false));
    let (acquired_tx, acquired_rx) = mpsc::channel();
    let waiter = {
        let (dir, released) = (dir.clone(), Arc::clone(&released));
        std::thread::spawn(move || {
            let guard = FileStore::new(dir).lock(&key()).unwrap();
            acquired_tx.send(released.load(Ordering::SeqCst)).unwrap();
            drop(guard);
        })
    };
    // Gives a broken lock the chance to be taken early; the flag then reveals it.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        acquired_rx.try_recv().is_err(),
        "took the lock while another process held it"
    );
    released.store(true, Ordering::SeqCst);
    fs::write(&release, b"").unwrap();
    let saw_release = acquired_rx
        .recv_timeout(PATIENCE)
        .expect("never got the lock after the other process released it");
    assert!(
        saw_release,
        "took the lock before the other process released it"
    );
    waiter.join().unwrap();
    let status = child.0.wait().unwrap();
    assert!(status.success(), "child: {status}");
}

#[test]
fn c27_debug_output_never_shows_secrets() {
    let tmp = tempfile::tempdir().unwrap();
    let file_store = FileStore::new(tmp.path());
    let memory_store = MemoryStore::new();
    let record = token_record(key(), "at-secret-1");
    let client = client_record("https://auth.example.com");
    for store in [&file_store as &dyn TokenStore, &memory_store] {
        store.save_tokens(&record).unwrap();
        store.save_client(&client).unwrap();
        let _guard = store.lock(&key()).unwrap();
        let loaded = store.load_tokens(&key()).unwrap();
        let loaded_client = store.load_client("https://auth.example.com").unwrap();
        for debug in [
            format!("{store:?}"),
            format!("{loaded:?}"),
            format!("{loaded_client:?}"),
            format!("{:?}", store.list_tokens().unwrap()),
        ] {
            for secret in ["at-secret-1", "rt-secret-1", "cs-secret-1"] {
                assert!(!debug.contains(secret), "{debug}");
            }
        }
    }
    // The records do carry them (so the check above is not vacuous).
    assert_eq!(
        file_store
            .load_tokens(&key())
            .unwrap()
            .unwrap()
            .access_token
            .expose(),
        "at-secret-1"
    );
    assert_eq!(
        format!("{memory_store:?}"),
        "MemoryStore { tokens: 1, clients: 1, locked: 0 }"
    );
}
