//! Sets `cfg(mcpauth_pg)` when `MCPAUTH_TEST_DATABASE_URL` is set at build time, so that the
//! PostgreSQL variants of the integration tests run instead of being reported as ignored.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(mcpauth_pg)");
    println!("cargo::rerun-if-env-changed=MCPAUTH_TEST_DATABASE_URL");
    if std::env::var("MCPAUTH_TEST_DATABASE_URL").is_ok_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=mcpauth_pg");
    }
}
