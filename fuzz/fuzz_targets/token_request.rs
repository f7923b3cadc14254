#![no_main]

// The parsing modules of mcpauth-authserver, compiled by path: depending on the crate would build
// its database drivers and templates, minutes of the fuzz step's budget.
#[allow(dead_code)]
#[path = "../../crates/mcpauth-authserver/src/basic_auth.rs"]
mod basic_auth;
#[path = "../../crates/mcpauth-authserver/src/fuzzing.rs"]
mod fuzzing;
#[allow(dead_code)]
#[path = "../../crates/mcpauth-authserver/src/params.rs"]
mod params;

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzzing::token_request(data));
