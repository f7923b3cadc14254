//! Integration tests of `mcpauth-client`, one module per area.

mod dpop;
mod fuzz_corpus;
mod mcp;
mod processes;
mod session;
mod store;
mod testkit;
mod workload;
