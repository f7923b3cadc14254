//! The one error type of `mcpauth-client`.

use std::path::PathBuf;

use mcpauth_core::{CoreError, OAuthError};

/// Everything that can go wrong on the client side of MCP authorization.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// A parsing or validation rule of `mcpauth-core` was broken.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// A connection was made but the request could not be completed or its answer not read
    /// (timeout, broken connection, unreadable body). Made by [`ClientError::request_failed`].
    #[error("{context}: {}", causes(.error))]
    Transport {
        /// What was being done, with the URL.
        context: String,
        /// The underlying error, without its URL (the context has it). Its causes are in the
        /// message, so it is not also the `source`: each is shown once.
        error: reqwest::Error,
    },
    /// No connection could be made, so nothing was sent: connection refused, no route to the
    /// host, a name that does not resolve, a failed TLS handshake, a connection timeout. Made by
    /// [`ClientError::request_failed`].
    #[error("cannot reach {url}: {reason}")]
    Unreachable {
        /// The URL requested.
        url: String,
        /// Why, in a few words ("connection refused").
        reason: String,
    },
    /// A response larger than the limit for its kind.
    #[error("{url} answered with more than {limit} bytes; refusing to read it")]
    BodyTooLarge {
        /// The URL.
        url: String,
        /// The limit in bytes.
        limit: usize,
    },
    /// An event of a `text/event-stream` grew past the parser's limit
    /// ([`SseParser::with_max_event_bytes`](crate::sse::SseParser::with_max_event_bytes)).
    #[error("an event of the server's event stream is larger than {limit} bytes; refusing it")]
    EventTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// An HTTP status the flow cannot go on with.
    #[error("{context}: {url} answered HTTP {status}{}", body_hint(.body))]
    UnexpectedStatus {
        /// What was being done.
        context: &'static str,
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
        /// The start of the body, for diagnostics (never a token response).
        body: String,
    },
    /// An OAuth error response from the authorization server (RFC 6749 §5.2).
    #[error("{context}: the authorization server answered {error} (HTTP {status})")]
    OAuth {
        /// What was being done.
        context: &'static str,
        /// The HTTP status.
        status: u16,
        /// The error.
        error: OAuthError,
    },
    /// Discovery found no usable authorization server; the report says what was tried.
    #[error("discovery failed: {reason}")]
    Discovery {
        /// Why.
        reason: String,
    },
    /// The authorization server does not advertise PKCE S256 (MCP SPEC C28).
    #[error(
        "the authorization server {issuer} does not advertise PKCE S256 in \
         code_challenge_methods_supported (MCP SPEC C28); it cannot be used safely"
    )]
    PkceUnsupported {
        /// The issuer.
        issuer: String,
    },
    /// No way to obtain a client id (MCP SPEC C8-C9).
    #[error(
        "no client registration is possible with {issuer}: {reason}. Pre-register a client and \
         pass its id (MCP SPEC C9, C13)"
    )]
    NoRegistration {
        /// The issuer.
        issuer: String,
        /// What is missing.
        reason: String,
    },
    /// A pre-registered client was configured for another authorization server (MCP SPEC C15).
    #[error(
        "the pre-registered client is bound to {configured}, but the MCP server now uses {actual} \
         (MCP SPEC C15); register a client with {actual}"
    )]
    StaticClientIssuerMismatch {
        /// The issuer the static client was registered with.
        configured: String,
        /// The issuer discovery found.
        actual: String,
    },
    /// A grant or flow is not possible with this configuration.
    #[error("{0}")]
    Config(String),
    /// The resource accepts only DPoP-bound tokens (RFC 9728 §2
    /// `dpop_bound_access_tokens_required`) and this client cannot get one, so no new token can
    /// help (SPEC D1).
    #[error(
        "{resource} accepts only DPoP-bound access tokens (RFC 9449; its metadata says \
         dpop_bound_access_tokens_required), and {why}"
    )]
    DpopRequired {
        /// The MCP server.
        resource: String,
        /// Why this client cannot bind its tokens, and what to do.
        why: String,
    },
    /// Interactive authorization is needed but the caller forbade it.
    #[error("a new authorization is needed for {resource}; log in first")]
    LoginRequired {
        /// The MCP server.
        resource: String,
    },
    /// The authorization front end failed or was cancelled.
    #[error("authorization failed: {0}")]
    Authorization(String),
    /// The authorization server answered `access_denied` or `invalid_scope` (RFC 6749
    /// §4.1.2.1) to an authorization request that carried no `scope` (or only `offline_access`):
    /// many identity providers (Entra ID, Okta, Google) refuse such requests.
    #[error(
        "the authorization server refused the authorization request: {0}. The request carried \
         no scope (offline_access aside), and many identity providers refuse a request without \
         one: ask the MCP server's operator to publish its scopes (scopes_supported; mcpauth \
         gateway --scope SCOPE), or give them yourself with --scope \"SCOPE …\""
    )]
    RefusedWithoutScope(OAuthError),
    /// The workload token could not be read, or is not a JWT (SEP-1933, SPEC W1). The token
    /// itself is never part of the message.
    #[error("{source_name} {reason}; no token was requested (SEP-1933)")]
    WorkloadToken {
        /// Where the token was to come from ("the workload token file /run/token").
        source_name: String,
        /// What went wrong ("is empty", "failed (exit status: 3)").
        reason: String,
    },
    /// The authorization server refused the workload token (SEP-1933, SPEC W1). It is not sent
    /// again and no other grant is tried.
    #[error(
        "the authorization server {issuer} refused the workload identity token: {error} (HTTP \
         {status}). It was not retried and no other grant was tried (SEP-1933, SPEC W1): check \
         the token's issuer, audience and expiry against the server's trust configuration"
    )]
    AssertionRefused {
        /// The authorization server.
        issuer: String,
        /// The HTTP status.
        status: u16,
        /// Its error (shown without control characters).
        error: OAuthError,
    },
    /// The authorization server's metadata lists grant types, and not the one configured.
    #[error(
        "the authorization server {issuer} does not list {grant} in grant_types_supported (it \
         supports: {}); this grant cannot be used with it", listed(.supported)
    )]
    GrantUnsupported {
        /// The authorization server.
        issuer: String,
        /// The grant type that was wanted.
        grant: &'static str,
        /// What the server lists.
        supported: Vec<String>,
    },
    /// Too many authorization attempts for one resource and operation (MCP SPEC C26).
    #[error(
        "gave up after {attempts} authorization attempts for {resource} (MCP SPEC C26): the server \
         keeps refusing the token"
    )]
    RetryLimit {
        /// The MCP server.
        resource: String,
        /// How many attempts were made.
        attempts: u32,
    },
    /// Reading or writing the token store failed.
    #[error("token store {path}: {source}")]
    StoreIo {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A store file readable or writable by group or others (MCP SPEC C27).
    #[error(
        "token store file {path} has mode {mode:o}; refusing to use a file that others can read \
         (MCP SPEC C27). Fix it with: chmod 600 {path}"
    )]
    StorePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A store file that does not parse.
    #[error("token store file {path} is corrupt: {reason}")]
    StoreCorrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An MCP request failed after authentication (HTTP status or JSON-RPC error).
    #[error("MCP {method}: {detail}")]
    Mcp {
        /// The JSON-RPC method.
        method: String,
        /// What went wrong.
        detail: String,
    },
    /// The OS keyring failed or is unavailable (feature `keyring`).
    #[cfg(feature = "keyring")]
    #[error("OS keyring: {0}")]
    Keyring(String),
    /// A signing key for `private_key_jwt` or an assertion that could not be used.
    #[error("signing key: {0}")]
    Key(String),
    /// A DPoP key could not be made, read or used to sign a proof (RFC 9449, SPEC D1-D3).
    #[error("DPoP: {0}")]
    Dpop(#[from] mcpauth_core::dpop::DpopError),
}

/// Server-supplied names on one line, without control characters (terminal escapes included).
fn listed(names: &[String]) -> String {
    names
        .iter()
        .map(|n| n.chars().filter(|c| !c.is_control()).take(100).collect())
        .collect::<Vec<String>>()
        .join(", ")
}

fn body_hint(body: &str) -> String {
    if body.is_empty() {
        String::new()
    } else {
        format!(": {body}")
    }
}

/// An error and its causes, each once: "a: b: c".
fn causes(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Why no connection could be made, in a few words: the innermost cause, with the usual
/// operating system errors named plainly ("connection refused", not "Connection refused (os
/// error 111)").
fn connect_reason(error: &reqwest::Error) -> String {
    use std::io::ErrorKind;
    if error.is_timeout() {
        return "timed out".into();
    }
    let mut cause: &dyn std::error::Error = error;
    while let Some(next) = cause.source() {
        cause = next;
        let plain = match cause
            .downcast_ref::<std::io::Error>()
            .map(std::io::Error::kind)
        {
            Some(ErrorKind::ConnectionRefused) => "connection refused",
            Some(ErrorKind::ConnectionReset) => "connection reset",
            Some(ErrorKind::HostUnreachable) => "no route to the host",
            Some(ErrorKind::NetworkUnreachable) => "network unreachable",
            Some(ErrorKind::TimedOut) => "timed out",
            _ => continue,
        };
        return plain.into();
    }
    cause.to_string()
}

impl ClientError {
    /// The error of a request (`what`: "request", "MCP request") that got no response:
    /// [`ClientError::Unreachable`] when no connection could be made, else
    /// [`ClientError::Transport`].
    pub fn request_failed(what: &str, error: reqwest::Error) -> Self {
        let Some(url) = error.url().map(ToString::to_string) else {
            return ClientError::Transport {
                context: what.to_owned(),
                error,
            };
        };
        if error.is_connect() {
            return ClientError::Unreachable {
                reason: connect_reason(&error),
                url,
            };
        }
        ClientError::Transport {
            context: format!("{what} to {url}"),
            error: error.without_url(),
        }
    }

    /// Whether the failure may go away on retry (MCP SPEC: keep stored credentials then).
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Transport { .. } | ClientError::Unreachable { .. } => true,
            ClientError::UnexpectedStatus { status, .. } => *status >= 500 || *status == 429,
            ClientError::OAuth { status, error, .. } => {
                error.error.is_transient() || *status >= 500 || *status == 429
            }
            _ => false,
        }
    }
}
