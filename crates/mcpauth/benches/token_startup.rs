//! Whole-process time of `mcpauth token URL` with a cached fresh token, beside `true` (the floor
//! of starting a process), measured in the same run. Target (issue: the CLI): under 5 ms.
//!
//! Run with `cargo bench -p mcpauth --bench token_startup`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mcpauth_client::store::{
    FileStore, SCHEMA_VERSION, StoreKey, TokenRecord, TokenStore, now_unix,
};
use mcpauth_core::{AccessToken, ScopeSet};

const URL: &str = "https://mcp.example.invalid/mcp";
const RUNS: usize = 300;
const TARGET: Duration = Duration::from_millis(5);

fn time(cmd: &mut Command) -> Duration {
    let start = Instant::now();
    let status = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("spawn");
    let elapsed = start.elapsed();
    assert!(status.success(), "{cmd:?} failed");
    elapsed
}

fn stats(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[v.len() * 95 / 100])
}

fn main() {
    let home = tempfile::tempdir().unwrap();
    FileStore::new(home.path())
        .save_tokens(&TokenRecord {
            schema: SCHEMA_VERSION,
            key: StoreKey {
                resource: URL.into(),
                issuer: "https://as.example.invalid".into(),
                client_id: "bench".into(),
            },
            access_token: AccessToken::new("bench-token"),
            token_type: "Bearer".into(),
            dpop_key: None,
            refresh_token: None,
            expires_at: Some(now_unix() + 3600),
            granted_scopes: ScopeSet::parse("mcp:read"),
            requested_scopes: ScopeSet::parse("mcp:read"),
            updated_at: now_unix(),
        })
        .unwrap();
    let bin = env!("CARGO_BIN_EXE_mcpauth");
    let mut token = Command::new(bin);
    token
        .args(["token", URL])
        .env("MCPAUTH_HOME", home.path())
        .env_remove("MCP_CLIENT_ID");
    let mut floor = Command::new("true");
    for _ in 0..20 {
        time(&mut token);
        time(&mut floor);
    }
    let (mut t, mut f) = (Vec::with_capacity(RUNS), Vec::with_capacity(RUNS));
    for _ in 0..RUNS {
        t.push(time(&mut token));
        f.push(time(&mut floor));
    }
    let ((tm, t95), (fm, f95)) = (stats(t), stats(f));
    println!("mcpauth token (cached): median {tm:?}, p95 {t95:?}");
    println!("true (process floor):   median {fm:?}, p95 {f95:?}");
    println!(
        "ratio {:.1}x the floor; {:?} above it; target < {TARGET:?}: {}",
        tm.as_secs_f64() / fm.as_secs_f64(),
        tm.saturating_sub(fm),
        if tm < TARGET { "met" } else { "NOT met" }
    );
}
