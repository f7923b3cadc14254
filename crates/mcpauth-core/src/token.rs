//! Token endpoint responses (RFC 6749 §5.1, RFC 8693 §2.2.1), parsed leniently where real servers
//! deviate: `expires_in` as a string, `token_type` in any case.
//!
//! ```
//! use mcpauth_core::{TokenResponse, TokenType};
//! let t = TokenResponse::from_json(br#"{"access_token":"a","token_type":"bearer","expires_in":"3600"}"#).unwrap();
//! assert_eq!(t.token_type, TokenType::Bearer);
//! assert_eq!(t.expires_in, Some(3600));
//! ```

use serde::{Deserialize, Deserializer, Serialize};

use crate::{AccessToken, CoreError, RefreshToken};

/// The `token_type` of a token response, compared case-insensitively (RFC 6749 §7.1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub enum TokenType {
    /// `Bearer` (RFC 6750).
    Bearer,
    /// `DPoP` (RFC 9449).
    #[serde(rename = "DPoP")]
    DPoP,
    /// `N_A` (RFC 8693 §2.2.1), used for ID-JAGs and other non-access tokens.
    #[serde(rename = "N_A")]
    NotApplicable,
    /// Anything else, verbatim.
    #[serde(untagged)]
    Other(String),
}

impl<'de> Deserialize<'de> for TokenType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(match s.to_ascii_lowercase().as_str() {
            "bearer" => TokenType::Bearer,
            "dpop" => TokenType::DPoP,
            "n_a" => TokenType::NotApplicable,
            _ => TokenType::Other(s),
        })
    }
}

/// A successful token response.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TokenResponse {
    /// The access token (or, for RFC 8693, the issued token).
    pub access_token: AccessToken,
    /// How to present the token.
    pub token_type: TokenType,
    /// Lifetime in seconds.
    #[serde(
        default,
        deserialize_with = "lenient_seconds",
        skip_serializing_if = "Option::is_none"
    )]
    pub expires_in: Option<u64>,
    /// A refresh token, if one was issued (MCP SPEC C25: never assume one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<RefreshToken>,
    /// The granted scope, when it differs from the requested one (RFC 6749 §5.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// RFC 8693 §2.2.1 `issued_token_type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_token_type: Option<String>,
    /// Members this type does not model.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl TokenResponse {
    /// Parses a token response body.
    pub fn from_json(body: &[u8]) -> Result<Self, CoreError> {
        serde_json::from_slice(body).map_err(|source| CoreError::Json {
            what: "token response",
            source,
        })
    }
}

/// Checks that an access token is a plain RFC 6750 §2.1 `b64token`,
/// `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`: the only form a Bearer
/// `Authorization` header can carry, and one that can go to a terminal or a script as is
/// (security finding 9: a server's token with escape sequences or line breaks is refused). The
/// error does not repeat the token.
///
/// ```
/// use mcpauth_core::token::check_b64token;
/// assert!(check_b64token("eyJhbGciOiJFUzI1NiJ9.e30.c2ln-_~+/==").is_ok());
/// assert!(check_b64token("at\x1b]52;c;cHduZWQ=\x07").is_err());
/// ```
pub fn check_b64token(token: &str) -> Result<(), CoreError> {
    let body = token.trim_end_matches('=');
    let plain = !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        });
    if plain {
        Ok(())
    } else {
        Err(CoreError::InvalidDocument {
            what: "token response",
            reason: "its access_token is not an RFC 6750 §2.1 b64token (letters, digits and \
                     -._~+/ then any '=')"
                .into(),
        })
    }
}

/// Accepts a non-negative integer, a float (rounded down) or a string holding one.
fn lenient_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    use serde::de::Error;
    let v = Option::<serde_json::Value>::deserialize(d)?;
    match v {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Number(n)) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
            .map(Some)
            .ok_or_else(|| D::Error::custom("expires_in must be a non-negative number")),
        Some(serde_json::Value::String(s)) => s
            .trim()
            .parse::<u64>()
            .map(Some)
            .map_err(|_| D::Error::custom("expires_in must be a non-negative number")),
        Some(_) => Err(D::Error::custom("expires_in must be a number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerates_string_expiry_and_case() {
        let t = TokenResponse::from_json(
            br#"{"access_token":"a","token_type":"BEARER","expires_in":" 60 ","refresh_token":"r","x":1}"#,
        )
        .unwrap();
        assert_eq!(t.token_type, TokenType::Bearer);
        assert_eq!(t.expires_in, Some(60));
        assert_eq!(t.refresh_token.unwrap().expose(), "r");
        assert_eq!(t.extra["x"], 1);
    }

    #[test]
    fn missing_access_token_is_a_clear_error() {
        let e = TokenResponse::from_json(br#"{"token_type":"Bearer"}"#).unwrap_err();
        assert!(e.to_string().contains("access_token"), "{e}");
    }

    #[test]
    fn negative_expiry_is_refused() {
        assert!(
            TokenResponse::from_json(
                br#"{"access_token":"a","token_type":"Bearer","expires_in":-5}"#
            )
            .is_err()
        );
    }

    #[test]
    fn sec9_b64token_is_the_rfc_6750_grammar() {
        for good in [
            "a",
            "at-1",
            "AZaz09-._~+/",
            "abc=",
            "abc==",
            "x.y.z",
            "+/==",
        ] {
            assert!(check_b64token(good).is_ok(), "{good:?}");
        }
        for bad in [
            "",
            "=",
            "==",
            "a=b",
            "a b",
            "a\tb",
            "a\nb",
            "a\r\nAuthorization: x",
            "at\x1b[2J",
            "at\x07",
            "a\u{202E}b",
            "a\u{9b}b",
            "é",
            "a,b",
            "a\"b",
            "a;b",
            "a:b",
        ] {
            let e = check_b64token(bad).unwrap_err();
            assert!(matches!(e, CoreError::InvalidDocument { .. }), "{bad:?}");
            assert!(e.to_string().contains("b64token"), "{e}");
        }
    }

    #[test]
    fn debug_redacts_tokens() {
        let t = TokenResponse::from_json(
            br#"{"access_token":"topsecret","token_type":"Bearer","refresh_token":"alsosecret"}"#,
        )
        .unwrap();
        let d = format!("{t:?}");
        assert!(!d.contains("topsecret") && !d.contains("alsosecret"));
    }
}
