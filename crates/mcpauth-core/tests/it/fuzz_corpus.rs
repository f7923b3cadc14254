//! The fuzz targets' seed corpora and minimised crashes (`fuzz/seeds/<target>`,
//! `fuzz/regressions/<target>`) run through the same functions as `cargo fuzz`.

use std::path::Path;

use mcpauth_core::fuzzing::{self, replay};

fn fuzz_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz"))
}

#[test]
fn www_authenticate() {
    replay(fuzz_dir(), "www_authenticate", fuzzing::www_authenticate);
}

#[test]
fn metadata() {
    replay(fuzz_dir(), "metadata", fuzzing::metadata);
}

#[test]
fn token_response() {
    replay(fuzz_dir(), "token_response", fuzzing::token_response);
}

#[test]
fn authorization_response() {
    replay(
        fuzz_dir(),
        "authorization_response",
        fuzzing::authorization_response,
    );
}
