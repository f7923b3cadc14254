//! Integration tests of `mcpauth-core`.

mod fuzz_corpus;
mod properties;
