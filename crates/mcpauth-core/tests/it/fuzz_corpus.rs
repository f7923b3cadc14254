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

#[test]
fn dpop_proof() {
    replay(fuzz_dir(), "dpop_proof", |data| {
        fuzzing::dpop_proof(data);
    });
}

/// The seeds reach past the signature: the good ones are accepted, each broken one refused.
#[test]
fn dpop_proof_seeds_reach_the_checks() {
    let seed = |name: &str| std::fs::read(fuzz_dir().join("seeds/dpop_proof").join(name)).unwrap();
    for good in ["valid", "signed_valid", "signed_valid_nonce"] {
        assert!(fuzzing::dpop_proof(&seed(good)), "{good}");
    }
    for bad in [
        "signed_private_key",
        "signed_htu_query",
        "signed_stale",
        "signed_hs256",
        "signed_no_nonce",
        "valid_wrong_ath",
    ] {
        assert!(!fuzzing::dpop_proof(&seed(bad)), "{bad}");
    }
}
