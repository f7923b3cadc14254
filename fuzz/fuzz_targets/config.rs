#![no_main]

// The binary has no library target: its config module and the target body beside it are
// compiled here by path (the unused half of the module is the binary's business).
#[allow(dead_code)]
#[path = "../../crates/mcpauth/src/config.rs"]
mod config;
#[path = "../../crates/mcpauth/src/config/fuzz_target.rs"]
mod fuzz_target;

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_target::config(data));
