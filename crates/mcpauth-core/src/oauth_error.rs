//! OAuth error responses (RFC 6749 §4.1.2.1 and §5.2, RFC 6750 §3.1, RFC 7591 §3.2.2,
//! RFC 8628 §3.5, RFC 8707 §2).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An OAuth `error` code. Unknown codes are kept verbatim in [`ErrorCode::Other`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    /// `invalid_request`
    InvalidRequest,
    /// `invalid_client`
    InvalidClient,
    /// `invalid_grant`
    InvalidGrant,
    /// `unauthorized_client`
    UnauthorizedClient,
    /// `unsupported_grant_type`
    UnsupportedGrantType,
    /// `invalid_scope`
    InvalidScope,
    /// `access_denied`
    AccessDenied,
    /// `unsupported_response_type`
    UnsupportedResponseType,
    /// `server_error`
    ServerError,
    /// `temporarily_unavailable`
    TemporarilyUnavailable,
    /// `invalid_target` (RFC 8707 §2)
    InvalidTarget,
    /// `invalid_token` (RFC 6750 §3.1)
    InvalidToken,
    /// `insufficient_scope` (RFC 6750 §3.1)
    InsufficientScope,
    /// `invalid_redirect_uri` (RFC 7591 §3.2.2)
    InvalidRedirectUri,
    /// `invalid_client_metadata` (RFC 7591 §3.2.2)
    InvalidClientMetadata,
    /// `authorization_pending` (RFC 8628 §3.5)
    AuthorizationPending,
    /// `slow_down` (RFC 8628 §3.5)
    SlowDown,
    /// `expired_token` (RFC 8628 §3.5)
    ExpiredToken,
    /// Any other code, verbatim.
    Other(String),
}

const CODES: &[(&str, ErrorCode)] = &[
    ("invalid_request", ErrorCode::InvalidRequest),
    ("invalid_client", ErrorCode::InvalidClient),
    ("invalid_grant", ErrorCode::InvalidGrant),
    ("unauthorized_client", ErrorCode::UnauthorizedClient),
    ("unsupported_grant_type", ErrorCode::UnsupportedGrantType),
    ("invalid_scope", ErrorCode::InvalidScope),
    ("access_denied", ErrorCode::AccessDenied),
    (
        "unsupported_response_type",
        ErrorCode::UnsupportedResponseType,
    ),
    ("server_error", ErrorCode::ServerError),
    ("temporarily_unavailable", ErrorCode::TemporarilyUnavailable),
    ("invalid_target", ErrorCode::InvalidTarget),
    ("invalid_token", ErrorCode::InvalidToken),
    ("insufficient_scope", ErrorCode::InsufficientScope),
    ("invalid_redirect_uri", ErrorCode::InvalidRedirectUri),
    ("invalid_client_metadata", ErrorCode::InvalidClientMetadata),
    ("authorization_pending", ErrorCode::AuthorizationPending),
    ("slow_down", ErrorCode::SlowDown),
    ("expired_token", ErrorCode::ExpiredToken),
];

impl ErrorCode {
    /// The wire form of the code.
    pub fn as_str(&self) -> &str {
        match self {
            ErrorCode::Other(s) => s,
            known => CODES
                .iter()
                .find(|(_, c)| c == known)
                .map(|(s, _)| *s)
                .unwrap_or("server_error"),
        }
    }

    /// Parses a wire code.
    pub fn parse(s: &str) -> ErrorCode {
        CODES
            .iter()
            .find(|(name, _)| *name == s)
            .map(|(_, c)| c.clone())
            .unwrap_or_else(|| ErrorCode::Other(s.to_owned()))
    }

    /// Whether retrying later may succeed (the stored credentials must be kept).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ErrorCode::ServerError | ErrorCode::TemporarilyUnavailable | ErrorCode::SlowDown
        )
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(ErrorCode::parse(&s))
    }
}

/// An OAuth error response body or redirect (RFC 6749 §5.2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthError {
    /// The error code.
    pub error: ErrorCode,
    /// Human-readable text from the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
    /// A page about the error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_uri: Option<String>,
}

impl OAuthError {
    /// An error with just a code.
    pub fn new(error: ErrorCode) -> Self {
        Self {
            error,
            error_description: None,
            error_uri: None,
        }
    }
}

/// Server-supplied text as shown to people and logs: on one line, without control characters
/// (terminal escapes included), and at most `max` characters.
fn shown(text: &str, max: usize) -> String {
    text.chars().filter(|c| !c.is_control()).take(max).collect()
}

impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The code comes from the server too: RFC 6749 §5.2 allows no control characters in it,
        // but nothing stops a server from sending them.
        f.write_str(&shown(self.error.as_str(), 100))?;
        if let Some(d) = &self.error_description {
            write!(f, " ({})", shown(d, 300))?;
        }
        Ok(())
    }
}

impl std::error::Error for OAuthError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for (s, c) in CODES {
            assert_eq!(ErrorCode::parse(s), *c);
            assert_eq!(c.as_str(), *s);
        }
        assert_eq!(ErrorCode::parse("weird").as_str(), "weird");
    }

    #[test]
    fn parses_rfc6749_error_body() {
        let e: OAuthError =
            serde_json::from_str(r#"{"error":"invalid_grant","error_description":"expired\n"}"#)
                .unwrap();
        assert_eq!(e.error, ErrorCode::InvalidGrant);
        assert_eq!(e.to_string(), "invalid_grant (expired)");
    }

    #[test]
    fn control_characters_of_a_server_error_code_are_not_shown() {
        let e: OAuthError =
            serde_json::from_str(r#"{"error":"bad\u001b[2J\ncode","error_description":"x\r"}"#)
                .unwrap();
        assert_eq!(e.to_string(), "bad[2Jcode (x)");
        assert_eq!(
            e.error.as_str(),
            "bad\u{1b}[2J\ncode",
            "the wire form is kept"
        );
    }
}
