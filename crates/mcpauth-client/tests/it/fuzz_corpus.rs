//! The fuzz targets' seed corpora and minimised crashes (`fuzz/seeds/<target>`,
//! `fuzz/regressions/<target>`) run through the same functions as `cargo fuzz`.

use std::path::Path;

use mcpauth_client::fuzzing;
use mcpauth_core::fuzzing::replay;

#[test]
fn sse() {
    let fuzz_dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz"));
    replay(fuzz_dir, "sse", fuzzing::sse);
}
