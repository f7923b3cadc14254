//! The one error type of `mcpauth-core`.

use crate::oauth_error::OAuthError;

/// Everything that can go wrong while parsing or validating OAuth and MCP authorization data.
///
/// Every variant names the rule that was broken so that callers can show an actionable message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// A JSON document did not parse or lacked a required member.
    #[error("malformed {what}: {source}")]
    Json {
        /// Which document (e.g. "authorization server metadata").
        what: &'static str,
        /// The parser's complaint.
        #[source]
        source: serde_json::Error,
    },
    /// A document is well-formed JSON but breaks a rule of its specification.
    #[error("invalid {what}: {reason}")]
    InvalidDocument {
        /// Which document.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Authorization server metadata whose `issuer` differs from the issuer used to fetch it
    /// (RFC 8414 §3.3, OIDC Discovery §4.3, MCP SPEC C6).
    #[error(
        "authorization server metadata names issuer {found:?} but was fetched for issuer {expected:?}; \
         RFC 8414 §3.3 forbids using it (MCP SPEC C6)"
    )]
    IssuerMismatch {
        /// The issuer the metadata URL was built from.
        expected: String,
        /// The `issuer` member of the document.
        found: String,
    },
    /// A `client_name` that could disguise the client where it is shown to the user (security
    /// finding 12); see [`check_client_name`](crate::registration::check_client_name).
    #[error(
        "client_name {reason}; it is shown to users when they are asked to allow the client, so \
         it must be plain visible text of at most {max} characters",
        max = crate::registration::MAX_CLIENT_NAME_CHARS
    )]
    InvalidClientName {
        /// What is wrong with it, without the name itself.
        reason: String,
    },
    /// A string that should be an absolute URL is not one.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// The offending value.
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// An OAuth endpoint that is neither HTTPS nor on a loopback host (OAuth 2.1 §1.5, MCP SPEC C30).
    #[error(
        "refusing {url:?}: OAuth endpoints must use https unless they are on a loopback host \
         (OAuth 2.1 §1.5, MCP SPEC C30)"
    )]
    InsecureUrl {
        /// The offending URL.
        url: String,
    },
    /// A `WWW-Authenticate` header that does not follow RFC 9110 §11.6.1.
    #[error("malformed WWW-Authenticate header at byte {position}: {reason}")]
    WwwAuthenticate {
        /// Byte offset of the problem.
        position: usize,
        /// What was expected there.
        reason: &'static str,
    },
    /// The authorization server advertises `authorization_response_iss_parameter_supported` but the
    /// response has no `iss` (RFC 9207 §2.4, MCP SPEC C19).
    #[error(
        "the authorization response has no `iss` although the authorization server advertises \
         authorization_response_iss_parameter_supported (RFC 9207 §2.4, MCP SPEC C19); refusing it"
    )]
    IssMissing,
    /// The `iss` of an authorization response differs from the issuer the flow was started with
    /// (RFC 9207 §2.4, MCP SPEC C19-C20). Any `error` in that response is deliberately not shown.
    #[error(
        "the authorization response comes from issuer {found:?}, not {expected:?} (RFC 9207 §2.4, \
         MCP SPEC C19-C20): possible mix-up attack; refusing it"
    )]
    IssMismatch {
        /// The issuer recorded before redirecting.
        expected: String,
        /// The `iss` the response carried.
        found: String,
    },
    /// The `state` of an authorization response does not match the one sent (MCP SPEC C29).
    #[error(
        "the authorization response's state does not match the request (MCP SPEC C29); refusing it"
    )]
    StateMismatch,
    /// The authorization server answered the authorization request with an error.
    #[error("the authorization server refused the authorization request: {0}")]
    AuthorizationRefused(OAuthError),
    /// An authorization response with neither `code` nor `error`.
    #[error("the authorization response carries no `code`")]
    MissingCode,
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed: {0}")]
    Random(getrandom::Error),
}
