//! The audit log: security events as `tracing` events of the target [`AUDIT_TARGET`], each with
//! a stable `event` name and the fields that say who and what (users by id and name, clients by
//! id, the peer's IP address), never a token, code, verifier, secret or password. The binary
//! writes them as JSON lines with an RFC 3339 timestamp (`mcpauth --audit-log FILE`).
//!
//! Events: `signin.succeeded`, `signin.failed`, `consent.granted`, `consent.denied`,
//! `client.registered`, `token.issued`, `token.refreshed`, `token.revoked`,
//! `refresh.reuse_detected`, `user.added`, `user.removed`, `client.added`, `client.removed`,
//! `key.rotated`, `grant.revoked`; the resource layer adds `access.refused`.

/// The `tracing` target of audit events.
pub const AUDIT_TARGET: &str = "mcpauth::audit";

/// Emits the audit event `$name` with `tracing` fields.
macro_rules! audit {
    ($name:literal $(, $($fields:tt)*)?) => {
        ::tracing::info!(target: "mcpauth::audit", event = $name $(, $($fields)*)?)
    };
}
pub(crate) use audit;
