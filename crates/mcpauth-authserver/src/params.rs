//! Request parameters from a query string or an `application/x-www-form-urlencoded` body, with
//! RFC 6749 §3.1 rules: a parameter sent twice is an error, an empty value counts as absent.

use mcpauth_core::{ErrorCode, OAuthError};

/// Parsed parameters.
#[derive(Debug, Default)]
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    /// Parses `input`; a repeated parameter is `invalid_request`.
    pub(crate) fn parse(input: &[u8]) -> Result<Params, OAuthError> {
        let mut out: Vec<(String, String)> = Vec::new();
        for (k, v) in url::form_urlencoded::parse(input) {
            if out.iter().any(|(seen, _)| *seen == k) {
                return Err(invalid_request(&format!("parameter {k} is repeated")));
            }
            out.push((k.into_owned(), v.into_owned()));
        }
        Ok(Params(out))
    }

    /// A parameter's value; empty values are treated as absent.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }
}

/// `invalid_request` with a description.
pub(crate) fn invalid_request(description: &str) -> OAuthError {
    oauth_error(ErrorCode::InvalidRequest, description)
}

/// An OAuth error with a description.
pub(crate) fn oauth_error(code: ErrorCode, description: &str) -> OAuthError {
    OAuthError {
        error: code,
        error_description: Some(description.to_owned()),
        error_uri: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_parameters_are_refused_and_empty_ones_absent() {
        let p = Params::parse(b"a=1&b=&c=x+y%21").unwrap();
        assert_eq!(p.get("a"), Some("1"));
        assert_eq!(p.get("b"), None);
        assert_eq!(p.get("c"), Some("x y!"));
        let e = Params::parse(b"resource=a&resource=b").unwrap_err();
        assert_eq!(e.error, ErrorCode::InvalidRequest);
    }
}
