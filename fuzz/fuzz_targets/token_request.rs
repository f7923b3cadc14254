#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mcpauth_authserver::fuzzing::token_request(data));
