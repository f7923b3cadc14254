//! The environment a stdio MCP server's per-session process starts with for its user (issue 12
//! part 3, SPEC F8): `--upstream-token-env NAME` puts the user's identity provider token in
//! NAME, and `--identity-header` puts a signed identity assertion in `MCPAUTH_IDENTITY`. The
//! process keeps what it started with: a session longer than the token's lifetime must be
//! restarted (a new MCP session) to get a fresh one.

use std::ffi::OsString;

use axum::response::Response;
use mcpauth_authserver::AuthServer;

use super::proxy::{json_rpc_error, upstream_access};

/// The variable holding the identity assertion of a stdio process's user.
pub const IDENTITY_ENV: &str = "MCPAUTH_IDENTITY";

/// What a new process of a user gets. Not `Debug`-printed with values: they are secrets.
#[derive(Debug)]
pub struct SessionEnv {
    /// `--upstream-token-env NAME`.
    pub token_env: Option<String>,
    /// `--identity-header`: the `aud` of the assertion (`stdio:COMMAND`).
    pub identity_audience: Option<String>,
    /// The embedded authorization server.
    pub server: AuthServer,
}

impl SessionEnv {
    /// The variables for a process started by the subject `sub` with the access token `jti`,
    /// or the answer to give instead of starting it.
    pub async fn values(
        &self,
        jti: Option<String>,
        sub: &str,
    ) -> Result<Vec<(String, OsString)>, Response> {
        let mut env = Vec::new();
        if let Some(name) = &self.token_env {
            let access = upstream_access(&self.server, jti.as_deref()).await?;
            env.push((name.clone(), OsString::from(access.access_token())));
        }
        if let Some(aud) = &self.identity_audience {
            let jwt = self
                .server
                .identity_token(sub, jti.as_deref(), aud)
                .await
                .map_err(|e| {
                    tracing::error!(error = %e, "signing the identity assertion failed");
                    json_rpc_error(
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                        "internal error",
                    )
                })?;
            env.push((IDENTITY_ENV.to_owned(), OsString::from(jwt)));
        }
        Ok(env)
    }
}
