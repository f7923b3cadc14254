//! Integration tests of `mcpauth-authserver`: the real server on 127.0.0.1:0, driven over HTTP
//! with reqwest (redirects off), against SQLite and PostgreSQL.
//!
//! # How the PostgreSQL variants run (never a silent pass)
//! Every backend-dependent case is generated twice by [`both_backends!`]: `…::sqlite` (a temp
//! file) and `…::postgres` (a fresh database `mcpauth_test_<random>` created on the server named
//! by `MCPAUTH_TEST_DATABASE_URL`, dropped afterwards).
//! - Built with `MCPAUTH_TEST_DATABASE_URL` set (the build script sets `cfg(mcpauth_pg)`), the
//!   PostgreSQL variants run like any other test:
//!   `MCPAUTH_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo test -p mcpauth-authserver`
//! - Built without it, they are `#[ignore]`d and cargo reports them as *ignored*.
//! - A PostgreSQL variant that runs without the variable (e.g. `--include-ignored`) fails: it
//!   can never report a check it did not make as passed.

mod support;

mod account;
mod cimd;
mod client_expiry;
mod clients;
mod code_flow;
mod device;
mod dpop;
mod federation;
mod federation_github;
mod federation_session;
mod federation_support;
mod fuzz_corpus;
mod grants;
mod hostile;
mod interop;
mod jwt_grant;
mod listen;
mod metadata;
mod multi_instance;
mod refresh;
mod tokens;
