//! Validating the authorization response that comes back to the redirect URI: RFC 9207 `iss`
//! (MCP SPEC C18-C20), `state` (C29), then `error` or `code` (RFC 6749 §4.1.2).
//!
//! ```
//! use mcpauth_core::authorization_response::{AuthorizationResponse, Expected};
//! let r = AuthorizationResponse::from_redirect_url(
//!     "http://127.0.0.1:7777/callback?code=abc&state=s1&iss=https%3A%2F%2Fas.example").unwrap();
//! let expected = Expected { state: "s1", issuer: "https://as.example", iss_supported: true };
//! assert_eq!(r.validate(&expected).unwrap().expose(), "abc");
//! ```

use crate::oauth_error::{ErrorCode, OAuthError};
use crate::{AuthorizationCode, CoreError, constant_time_eq, url_policy::parse_url};

/// The parameters of an authorization response, not yet validated.
#[derive(Clone, Debug, Default)]
pub struct AuthorizationResponse {
    /// `code`
    pub code: Option<AuthorizationCode>,
    /// `state`
    pub state: Option<String>,
    /// `iss` (RFC 9207)
    pub iss: Option<String>,
    /// `error`
    pub error: Option<String>,
    /// `error_description`
    pub error_description: Option<String>,
    /// `error_uri`
    pub error_uri: Option<String>,
}

/// What the client recorded before redirecting (MCP SPEC C18).
#[derive(Clone, Copy, Debug)]
pub struct Expected<'a> {
    /// The `state` sent.
    pub state: &'a str,
    /// The validated `issuer` of the authorization server metadata.
    pub issuer: &'a str,
    /// The metadata's `authorization_response_iss_parameter_supported`.
    pub iss_supported: bool,
}

impl AuthorizationResponse {
    /// Reads the response from the full redirect URL (query component).
    pub fn from_redirect_url(url: &str) -> Result<Self, CoreError> {
        let url = parse_url(url)?;
        Ok(Self::from_query(url.query().unwrap_or_default()))
    }

    /// Reads the response from an `application/x-www-form-urlencoded` query string. When a
    /// parameter repeats, the first value wins.
    pub fn from_query(query: &str) -> Self {
        let mut r = Self::default();
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            let slot = match k.as_ref() {
                "state" => &mut r.state,
                "iss" => &mut r.iss,
                "error" => &mut r.error,
                "error_description" => &mut r.error_description,
                "error_uri" => &mut r.error_uri,
                "code" => {
                    if r.code.is_none() {
                        r.code = Some(AuthorizationCode::new(v.into_owned()));
                    }
                    continue;
                }
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(v.into_owned());
            }
        }
        r
    }

    /// Applies, in order: the RFC 9207 §2.4 table of MCP SPEC C19 with byte-exact comparison
    /// (C20), the `state` check (C29), then `error`, then `code`. On an `iss` or `state` failure
    /// the response's `error` members are neither returned nor shown (C20).
    pub fn validate(self, expected: &Expected<'_>) -> Result<AuthorizationCode, CoreError> {
        match (&self.iss, expected.iss_supported) {
            (Some(iss), _) if iss != expected.issuer => {
                return Err(CoreError::IssMismatch {
                    expected: expected.issuer.to_owned(),
                    found: iss.clone(),
                });
            }
            (None, true) => return Err(CoreError::IssMissing),
            _ => {}
        }
        let state_ok = self
            .state
            .as_deref()
            .is_some_and(|s| constant_time_eq(s.as_bytes(), expected.state.as_bytes()));
        if !state_ok {
            return Err(CoreError::StateMismatch);
        }
        if let Some(error) = self.error {
            return Err(CoreError::AuthorizationRefused(OAuthError {
                error: ErrorCode::parse(&error),
                error_description: self.error_description,
                error_uri: self.error_uri,
            }));
        }
        self.code.ok_or(CoreError::MissingCode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISS: &str = "https://as.example/tenant";

    fn check(query: &str, supported: bool) -> Result<AuthorizationCode, CoreError> {
        AuthorizationResponse::from_query(query).validate(&Expected {
            state: "st",
            issuer: ISS,
            iss_supported: supported,
        })
    }

    #[test]
    fn c19_supported_and_present_is_compared() {
        let q = "code=c&state=st&iss=https%3A%2F%2Fas.example%2Ftenant";
        assert_eq!(check(q, true).unwrap().expose(), "c");
        assert!(matches!(
            check("code=c&state=st&iss=https%3A%2F%2Fevil.example", true),
            Err(CoreError::IssMismatch { .. })
        ));
    }

    #[test]
    fn c19_supported_and_absent_is_rejected() {
        assert!(matches!(
            check("code=c&state=st", true),
            Err(CoreError::IssMissing)
        ));
    }

    #[test]
    fn c19_unadvertised_but_present_is_compared() {
        assert!(
            check(
                "code=c&state=st&iss=https%3A%2F%2Fas.example%2Ftenant",
                false
            )
            .is_ok()
        );
        assert!(matches!(
            check("code=c&state=st&iss=https%3A%2F%2Fother", false),
            Err(CoreError::IssMismatch { .. })
        ));
    }

    #[test]
    fn c19_neither_proceeds() {
        assert!(check("code=c&state=st", false).is_ok());
    }

    #[test]
    fn c20_no_normalisation_before_comparison() {
        for variant in [
            "HTTPS%3A%2F%2Fas.example%2Ftenant",
            "https%3A%2F%2FAS.example%2Ftenant",
            "https%3A%2F%2Fas.example%3A443%2Ftenant",
            "https%3A%2F%2Fas.example%2Ftenant%2F",
            "https%3A%2F%2Fas.example%2Ftenant%2F.",
        ] {
            let q = format!("code=c&state=st&iss={variant}");
            assert!(
                matches!(check(&q, true), Err(CoreError::IssMismatch { .. })),
                "{variant}"
            );
        }
    }

    #[test]
    fn c20_error_of_mismatched_issuer_is_not_surfaced() {
        let e = check(
            "error=access_denied&error_description=click%20evil&state=st&iss=https%3A%2F%2Fevil",
            true,
        )
        .unwrap_err();
        assert!(!e.to_string().contains("click evil"), "{e}");
        assert!(matches!(e, CoreError::IssMismatch { .. }));
    }

    #[test]
    fn c29_state_mismatch_is_rejected() {
        assert!(matches!(
            check("code=c&state=other", false),
            Err(CoreError::StateMismatch)
        ));
        assert!(matches!(
            check("code=c", false),
            Err(CoreError::StateMismatch)
        ));
    }

    #[test]
    fn error_redirect_is_a_clear_error() {
        let e = check(
            "error=access_denied&error_description=user%20said%20no&state=st",
            false,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "the authorization server refused the authorization request: access_denied (user said no)"
        );
        assert!(matches!(
            check("state=st", false),
            Err(CoreError::MissingCode)
        ));
    }
}
