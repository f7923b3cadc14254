//! Integration tests of `mcpauth-client`, one module per area.

mod processes;
mod session;
mod store;
