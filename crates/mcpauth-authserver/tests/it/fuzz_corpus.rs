//! The fuzz targets' seed corpora and minimised crashes (`fuzz/seeds/<target>`,
//! `fuzz/regressions/<target>`) run through the same functions as `cargo fuzz`.

use std::path::Path;

use mcpauth_authserver::fuzzing;
use mcpauth_core::fuzzing::replay;

#[test]
fn token_request() {
    let fuzz_dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz"));
    replay(fuzz_dir, "token_request", fuzzing::token_request);
}
