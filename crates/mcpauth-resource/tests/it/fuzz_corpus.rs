//! The fuzz targets' seed corpora and minimised crashes (`fuzz/seeds/<target>`,
//! `fuzz/regressions/<target>`) run through the same functions as `cargo fuzz`.

use std::path::Path;

use mcpauth_core::fuzzing::replay;
use mcpauth_resource::fuzzing;

fn fuzz_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz"))
}

#[test]
fn jwt() {
    replay(fuzz_dir(), "jwt", |data| {
        fuzzing::jwt(data);
    });
}

/// The signed seeds reach the checks after the signature: the good ones pass them.
#[test]
fn jwt_seeds_signed_with_the_fuzzing_key_verify() {
    let seed = |name: &str| std::fs::read(fuzz_dir().join("seeds/jwt").join(name)).unwrap();
    assert!(fuzzing::jwt(&seed("valid")));
    assert!(fuzzing::jwt(&seed("valid_arrays_and_floats")));
    for refused in [
        "expired",
        "wrong_audience",
        "alg_mismatch",
        "plain_jwt",
        "alg_none",
    ] {
        assert!(!fuzzing::jwt(&seed(refused)), "{refused}");
    }
}

#[test]
fn jwks() {
    replay(fuzz_dir(), "jwks", fuzzing::jwks);
}
