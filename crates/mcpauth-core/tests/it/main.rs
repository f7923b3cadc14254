//! Integration tests of `mcpauth-core`.

mod properties;
