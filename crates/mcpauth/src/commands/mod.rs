//! One function per command.

mod admin;
mod connect;
mod discover;
pub mod federation;
mod login;
mod logout;
mod mcp;
mod serve;
mod status;
mod token;
pub mod trust;

pub use admin::{clients, grants, keys, users};
pub use connect::connect;
pub use discover::discover;
pub use login::login;
pub use logout::logout;
pub use mcp::{call, tools};
pub use serve::{open_store, redact_url, serve, shutdown_signal};
pub use status::status;
pub use token::{DpopNeedsRequest, token};

use mcpauth_client::store::{TokenRecord, now_unix};
use serde_json::{Value, json};

/// "in 59 min", "3 h ago", "never".
pub fn relative(expires_at: Option<u64>) -> String {
    let Some(at) = expires_at else {
        return "no expiry".into();
    };
    let now = now_unix();
    let (d, future) = if at >= now {
        (at - now, true)
    } else {
        (now - at, false)
    };
    let amount = match d {
        0..60 => format!("{d} s"),
        60..7200 => format!("{} min", d / 60),
        7200..172_800 => format!("{} h", d / 3600),
        _ => format!("{} days", d / 86400),
    };
    if future {
        format!("in {amount}")
    } else {
        format!("{amount} ago")
    }
}

/// A record as JSON for `--json` output, without any token value.
pub fn record_json(r: &TokenRecord) -> Value {
    json!({
        "resource": r.key.resource,
        "issuer": r.key.issuer,
        "client_id": r.key.client_id,
        "token_type": r.token_type,
        "scopes": r.granted_scopes.iter().collect::<Vec<_>>(),
        "requested_scopes": r.requested_scopes.iter().collect::<Vec<_>>(),
        "expires_at": r.expires_at,
        "expired": r.expires_at.is_some_and(|t| t <= now_unix()),
        "refresh_token": r.refresh_token.is_some(),
        "updated_at": r.updated_at,
    })
}
