//! Integration tests of the `mcpauth` binary: the real executable against a real authorization
//! server on 127.0.0.1, with a scripted "browser" (an HTTP client that follows the authorization
//! redirect to the loopback listener).

mod audit;
mod cli;
mod client_dpop;
mod common;
mod connect;
mod connect_eras;
mod device;
mod federation;
mod gateway;
mod gateway_external;
mod gateway_stdio;
mod gateway_stdio_eras;
mod grants;
mod metrics;
mod serve;
mod upstream_token;
mod workload;
mod workload_serve;
