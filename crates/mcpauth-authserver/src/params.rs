//! Request parameters from a query string or an `application/x-www-form-urlencoded` body, with
//! RFC 6749 §3.1 rules: a parameter sent twice is an error, an empty value counts as absent.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use mcpauth_core::{ErrorCode, OAuthError};

/// The most parameters one request may carry; OAuth requests have fewer than twenty.
pub(crate) const MAX_PARAMS: usize = 64;

/// Parsed parameters.
#[derive(Debug, Default)]
pub(crate) struct Params(HashMap<String, String>);

impl Params {
    /// Parses `input` in one pass; a repeated parameter, or more than [`MAX_PARAMS`], is
    /// `invalid_request` (code review finding 1: each key was compared with every earlier one).
    pub(crate) fn parse(input: &[u8]) -> Result<Params, OAuthError> {
        let mut out = HashMap::new();
        for (k, v) in url::form_urlencoded::parse(input) {
            if out.len() == MAX_PARAMS {
                return Err(invalid_request(&format!(
                    "more than {MAX_PARAMS} parameters"
                )));
            }
            match out.entry(k.into_owned()) {
                Entry::Occupied(e) => {
                    let name: String = e.key().chars().take(64).collect();
                    return Err(invalid_request(&format!("parameter {name} is repeated")));
                }
                Entry::Vacant(e) => {
                    e.insert(v.into_owned());
                }
            }
        }
        Ok(Params(out))
    }

    /// A parameter's value; empty values are treated as absent.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
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

    #[test]
    fn review1_too_many_parameters_are_refused() {
        let many: Vec<String> = (0..=MAX_PARAMS).map(|i| format!("k{i}=v")).collect();
        let e = Params::parse(many.join("&").as_bytes()).unwrap_err();
        assert_eq!(e.error, ErrorCode::InvalidRequest);
        assert!(e.error_description.unwrap().contains("more than 64"));
        let enough = many[..MAX_PARAMS].join("&");
        assert_eq!(
            Params::parse(enough.as_bytes()).unwrap().get("k63"),
            Some("v")
        );
    }
}
