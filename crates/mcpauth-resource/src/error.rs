//! The one error type of `mcpauth-resource`.

use http::StatusCode;

/// Everything that can go wrong while configuring a protected resource or verifying a token.
///
/// [`TokenVerifier`](crate::TokenVerifier)s return it; [`ResourceError::status`] says how the
/// layer answers (401 `invalid_token`, or 503 when the token could not be checked at all).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResourceError {
    /// The token is malformed, badly signed, of the wrong type, or otherwise not acceptable
    /// (RFC 6750 §3.1 `invalid_token`; MCP SPEC S4).
    #[error("invalid access token: {reason}")]
    InvalidToken {
        /// Why it was refused (sent as `error_description`; never contains the token).
        reason: String,
    },
    /// The token has expired (or is not yet valid), beyond the allowed clock leeway (MCP SPEC S4).
    #[error("the access token has expired or is not yet valid")]
    Expired,
    /// The token was not issued for this resource: none of its audiences is one of ours
    /// (RFC 8707 §2, RFC 9068 §4; MCP SPEC S4-S5).
    #[error("the access token was not issued for this resource (its audience does not name it)")]
    WrongAudience,
    /// The token comes from an issuer this resource does not trust (RFC 9068 §4).
    #[error("the access token was issued by an authorization server this resource does not trust")]
    WrongIssuer,
    /// The authorization server says the token is not active (RFC 7662 §2.2).
    #[error("the access token is not active")]
    Inactive,
    /// The token could not be checked right now: the key set or the introspection endpoint is
    /// unreachable or answered nonsense. Answered with 503, not 401, so that clients do not
    /// throw away a token that may be good.
    #[error("cannot verify access tokens right now: {what}: {reason}")]
    Unavailable {
        /// What was being fetched (e.g. "the JWK set of `https://as.example`").
        what: String,
        /// What went wrong.
        reason: String,
    },
    /// The configuration was refused (e.g. an `http://` issuer that is not on loopback).
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// The error a [`TokenVerifier`](crate::TokenVerifier) returns (the crate's one error type).
pub type VerifyError = ResourceError;

impl ResourceError {
    /// An [`ResourceError::InvalidToken`] with `reason`.
    pub fn invalid(reason: impl Into<String>) -> Self {
        ResourceError::InvalidToken {
            reason: reason.into(),
        }
    }

    /// The HTTP status the layer answers with: 503 for [`ResourceError::Unavailable`] and
    /// [`ResourceError::Config`], 401 for everything about the token itself (MCP SPEC S4, S6).
    pub fn status(&self) -> StatusCode {
        match self {
            ResourceError::Unavailable { .. } | ResourceError::Config(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    pub(crate) fn config(e: impl std::fmt::Display) -> Self {
        ResourceError::Config(e.to_string())
    }

    pub(crate) fn unavailable(what: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        ResourceError::Unavailable {
            what: what.into(),
            reason: reason.to_string(),
        }
    }
}
