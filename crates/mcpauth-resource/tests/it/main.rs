//! Integration tests of `mcpauth-resource`: a real `mcpauth-authserver` (SQLite in memory) and
//! a hand-rolled issuer as token sources, the protected axum app on 127.0.0.1:0, driven over
//! HTTP with reqwest. Test names cite MCP SPEC requirement ids.

mod support;

mod dpop;
mod fuzz_corpus;
mod introspection;
mod jwt;
mod layer;
mod origin;
mod prm;
