//! The children's limits and environment: the session caps, the idle timeout and the
//! allow-listed environment (MCP SPEC C33).

use std::ffi::OsString;
use std::time::Duration;

use anyhow::bail;

use crate::cli::GatewayArgs;

/// Sessions one user may hold at once, unless told otherwise.
const DEFAULT_MAX_SESSIONS_PER_USER: usize = 8;
/// Sessions all users together may hold at once, unless told otherwise.
const DEFAULT_MAX_SESSIONS: usize = 64;
/// Seconds a session may go without a request before it ends, unless told otherwise.
const DEFAULT_SESSION_IDLE_TIMEOUT: u64 = 600;
/// The gateway's environment variables a child gets (MCP SPEC C33): what programs need to find
/// programs, their home and temporary directory, their user, locale, terminal and time zone,
/// and on Windows the system's directories. Nothing else, in particular none of the gateway's
/// secrets or settings (MCPAUTH_*); more with `--upstream-env`.
const ENV_ALLOWED: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "LC_MESSAGES",
    "TERM",
    "TZ",
    "TMPDIR",
    "TMP",
    "TEMP",
    "SYSTEMROOT",
    "SYSTEMDRIVE",
    "WINDIR",
    "COMSPEC",
    "PATHEXT",
    "USERPROFILE",
    "APPDATA",
    "LOCALAPPDATA",
    "PROGRAMDATA",
    "PROGRAMFILES",
];

/// Limits and environment of the children. Not `Debug`: `--upstream-env` values may be
/// secrets.
pub struct Options {
    /// Sessions one user (issuer and subject) may hold at once.
    pub max_sessions_per_user: usize,
    /// Sessions all users together may hold at once.
    pub max_sessions: usize,
    /// How long a session may go without a request before it ends.
    pub idle_timeout: Duration,
    /// The children's whole environment.
    pub env: Vec<(String, OsString)>,
}

impl Options {
    /// The options from the gateway's flags (already completed from its settings file): the
    /// defaults, the allow-listed part of this process's environment, and `--upstream-env`.
    pub fn from_args(args: &GatewayArgs) -> anyhow::Result<Self> {
        let mut env: Vec<(String, OsString)> = ENV_ALLOWED
            .iter()
            .filter_map(|name| Some(((*name).to_owned(), std::env::var_os(name)?)))
            .collect();
        for spec in &args.upstream_env {
            let (name, value) = match spec.split_once('=') {
                Some((name, value)) => (name, Some(OsString::from(value))),
                None => (spec.as_str(), std::env::var_os(spec)),
            };
            if name.is_empty() || name.contains('\0') {
                bail!("--upstream-env takes NAME or NAME=VALUE, not {spec:?}");
            }
            let Some(value) = value else {
                tracing::warn!(%name, "--upstream-env {name}: not set in the gateway's environment; not passed on");
                continue;
            };
            env.retain(|(n, _)| n != name);
            env.push((name.to_owned(), value));
        }
        Ok(Self {
            max_sessions_per_user: args
                .max_sessions_per_user
                .unwrap_or(DEFAULT_MAX_SESSIONS_PER_USER)
                .max(1),
            max_sessions: args.max_sessions.unwrap_or(DEFAULT_MAX_SESSIONS).max(1),
            idle_timeout: Duration::from_secs(
                args.session_idle_timeout
                    .unwrap_or(DEFAULT_SESSION_IDLE_TIMEOUT)
                    .max(1),
            ),
            env,
        })
    }
}
