#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mcpauth_client::fuzzing::sse(data));
