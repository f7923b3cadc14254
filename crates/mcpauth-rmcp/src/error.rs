//! The error of [`SessionHttpClient`](crate::SessionHttpClient), rmcp's
//! `StreamableHttpError::Client` payload. No variant holds a token or a proof.

use mcpauth_client::ClientError;

/// What can go wrong between rmcp's transport and the MCP server, besides what rmcp's own
/// `StreamableHttpError` variants already say (session expiry, HTTP 429/5xx, body limits,
/// content types).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The default HTTP client could not be built (TLS setup).
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
    /// The request got no answer (connection refused, timeout), or the session could get no
    /// token the server accepts: discovery, registration, the grant or the refresh failed, a
    /// new login is needed but the session is not interactive
    /// ([`ClientError::LoginRequired`]), or the server kept refusing the tokens
    /// ([`ClientError::RetryLimit`], MCP SPEC C26).
    #[error(transparent)]
    Session(#[from] ClientError),
    /// The transport configuration sets `auth_header`: the credentials come from the session
    /// alone (a second `Authorization` header would be ambiguous, RFC 6750 §2).
    #[error(
        "the transport configuration sets auth_header; the session presents its own tokens, so \
         leave auth_header unset"
    )]
    StaticAuthHeader,
    /// The transport was pointed at another URL than the session's MCP server. The session's
    /// tokens are for its server only (RFC 8707; MCP "Token Audience Binding and Validation"),
    /// so nothing was sent.
    #[error(
        "the session holds tokens for {session}, not for {requested}; not sending them there \
         (build the transport with the session's server URL)"
    )]
    OtherServer {
        /// The session's MCP server URL.
        session: String,
        /// The URL the transport asked for.
        requested: String,
    },
    /// The server refused the request with 401 or 403 and the session has nothing more to try:
    /// a 403 for another reason than `insufficient_scope` is final (RFC 6750 §3.1).
    #[error("the MCP server refused the request (HTTP {status}){}", challenge(.www_authenticate))]
    Refused {
        /// The status, 401 or 403.
        status: u16,
        /// Its `WWW-Authenticate` challenge, if any (control characters removed).
        www_authenticate: Option<String>,
    },
    /// The GET of the server's event stream or the DELETE of the MCP session got an
    /// unexpected status.
    #[error("{method} of the MCP endpoint: HTTP {status}")]
    Status {
        /// `GET` or `DELETE`.
        method: &'static str,
        /// The status.
        status: u16,
    },
    /// The response body could not be read (connection lost).
    #[error("reading the MCP server's response: {0}")]
    Body(#[source] reqwest::Error),
    /// An event of the server's event stream was larger than the transport's
    /// `max_sse_event_size`; the stream was dropped.
    #[error("an event of the MCP server's event stream is larger than {limit} bytes; refusing it")]
    EventTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
}

fn challenge(www_authenticate: &Option<String>) -> String {
    match www_authenticate {
        Some(c) => format!(": {c}"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_problem() {
        let refused = Error::Refused {
            status: 403,
            www_authenticate: Some(r#"Bearer error="invalid_token""#.into()),
        };
        assert_eq!(
            refused.to_string(),
            r#"the MCP server refused the request (HTTP 403): Bearer error="invalid_token""#
        );
        let other = Error::OtherServer {
            session: "https://a.example/mcp".into(),
            requested: "https://b.example/mcp".into(),
        };
        assert!(other.to_string().contains("not for https://b.example/mcp"));
    }
}
