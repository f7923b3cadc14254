#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mcpauth_core::fuzzing::dpop_proof(data);
});
