//! `WWW-Authenticate` parsing and formatting (RFC 9110 §11.6.1, RFC 6750 §3, RFC 9728 §5.1).
//!
//! A header value may hold several challenges, each with a token68 or comma-separated
//! `name=value` parameters whose values are tokens or quoted strings.
//!
//! ```
//! use mcpauth_core::www_authenticate::{parse, Challenge};
//! let c = parse(r#"Basic realm="x", Bearer error="insufficient_scope", scope="a b""#).unwrap();
//! assert_eq!(c.len(), 2);
//! let bearer = c.iter().find(|c| c.is_bearer()).unwrap();
//! assert_eq!(bearer.param("scope"), Some("a b"));
//! let out = Challenge::bearer().with("scope", "a b").to_string();
//! assert_eq!(out, r#"Bearer scope="a b""#);
//! ```

use std::fmt;

use crate::CoreError;

/// One authentication challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// The auth scheme as sent (compare with [`Challenge::is_scheme`]).
    pub scheme: String,
    /// A token68 in place of parameters, if the challenge has one.
    pub token68: Option<String>,
    /// The parameters in order, values unquoted.
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// A `Bearer` challenge with no parameters yet.
    pub fn bearer() -> Self {
        Self {
            scheme: "Bearer".into(),
            token68: None,
            params: Vec::new(),
        }
    }

    /// Adds a parameter (builder style).
    pub fn with(mut self, name: &str, value: impl Into<String>) -> Self {
        self.params.push((name.to_owned(), value.into()));
        self
    }

    /// Whether the scheme is `scheme`, ignoring case (RFC 9110 §11.1).
    pub fn is_scheme(&self, scheme: &str) -> bool {
        self.scheme.eq_ignore_ascii_case(scheme)
    }

    /// Whether this is a `Bearer` challenge (RFC 6750 §3).
    pub fn is_bearer(&self) -> bool {
        self.is_scheme("Bearer")
    }

    /// The first parameter named `name`, ignoring case (RFC 9110 §11.2).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl fmt::Display for Challenge {
    /// Formats the challenge with every parameter value as a quoted string.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.scheme)?;
        if let Some(t) = &self.token68 {
            return write!(f, " {t}");
        }
        for (i, (name, value)) in self.params.iter().enumerate() {
            f.write_str(if i == 0 { " " } else { ", " })?;
            write!(f, "{name}=\"")?;
            for c in value.chars() {
                if c == '"' || c == '\\' {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
            f.write_str("\"")?;
        }
        Ok(())
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_token68_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)
}

/// HTAB, SP, VCHAR or obs-text: what a quoted string may hold, raw or escaped.
fn is_qdtext_or_pair(b: u8) -> bool {
    b == b'\t' || b >= 0x20 && b != 0x7f
}

struct Cursor<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn skip_ws_and_commas(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.pos += 1;
        }
    }

    fn token(&mut self) -> &str {
        let start = self.pos;
        while self.peek().is_some_and(is_tchar) {
            self.pos += 1;
        }
        // tchar is ASCII, so the slice is valid UTF-8.
        std::str::from_utf8(&self.s[start..self.pos]).unwrap_or_default()
    }

    fn err(&self, reason: &'static str) -> CoreError {
        CoreError::WwwAuthenticate {
            position: self.pos,
            reason,
        }
    }

    fn quoted_string(&mut self) -> Result<String, CoreError> {
        self.pos += 1; // opening quote
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err(self.err("unterminated quoted string")),
                Some(b'"') => {
                    self.pos += 1;
                    return String::from_utf8(out).map_err(|_| self.err("invalid UTF-8"));
                }
                Some(b'\\') => {
                    self.pos += 1;
                    // quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text ) (RFC 9110 §5.6.4): a
                    // control character cannot be smuggled in by escaping it.
                    match self.peek() {
                        None => return Err(self.err("dangling escape")),
                        Some(c) if is_qdtext_or_pair(c) => out.push(c),
                        Some(_) => return Err(self.err("control character in quoted string")),
                    }
                    self.pos += 1;
                }
                Some(c) if is_qdtext_or_pair(c) => {
                    out.push(c);
                    self.pos += 1;
                }
                Some(_) => return Err(self.err("control character in quoted string")),
            }
        }
    }
}

/// Parses one `WWW-Authenticate` field value into its challenges.
///
/// To parse several header lines, call this once per line (or join them with `", "`).
pub fn parse(value: &str) -> Result<Vec<Challenge>, CoreError> {
    let mut c = Cursor {
        s: value.as_bytes(),
        pos: 0,
    };
    let mut out = Vec::new();
    c.skip_ws_and_commas();
    while c.peek().is_some() {
        let scheme = c.token().to_owned();
        if scheme.is_empty() {
            return Err(c.err("expected an auth scheme"));
        }
        let mut challenge = Challenge {
            scheme,
            token68: None,
            params: Vec::new(),
        };
        let had_space = matches!(c.peek(), Some(b' ' | b'\t'));
        c.skip_ws();
        if had_space {
            parse_params_or_token68(&mut c, &mut challenge)?;
        } else if !matches!(c.peek(), None | Some(b',')) {
            return Err(c.err("expected a space after the auth scheme"));
        }
        out.push(challenge);
        c.skip_ws_and_commas();
    }
    Ok(out)
}

fn parse_params_or_token68(c: &mut Cursor<'_>, ch: &mut Challenge) -> Result<(), CoreError> {
    // token68 = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
    let start = c.pos;
    while c.peek().is_some_and(is_token68_char) {
        c.pos += 1;
    }
    let end = c.pos;
    while c.peek() == Some(b'=') {
        c.pos += 1;
    }
    let with_padding = c.pos;
    c.skip_ws();
    if end > start && matches!(c.peek(), None | Some(b',')) {
        ch.token68 = Some(String::from_utf8_lossy(&c.s[start..with_padding]).into_owned());
        return Ok(());
    }
    c.pos = start;
    loop {
        let save = c.pos;
        let name = c.token().to_owned();
        if name.is_empty() {
            return Err(c.err("expected a parameter name"));
        }
        c.skip_ws();
        if c.peek() != Some(b'=') {
            // Not a parameter: the start of the next challenge.
            c.pos = save;
            return Ok(());
        }
        c.pos += 1;
        c.skip_ws();
        let value = match c.peek() {
            Some(b'"') => c.quoted_string()?,
            _ => {
                let v = c.token().to_owned();
                if v.is_empty() {
                    return Err(c.err("expected a token or quoted string"));
                }
                v
            }
        };
        ch.params.push((name, value));
        c.skip_ws();
        match c.peek() {
            None => return Ok(()),
            Some(b',') => {
                c.skip_ws_and_commas();
                if c.peek().is_none() {
                    return Ok(());
                }
            }
            Some(_) => return Err(c.err("expected a comma between parameters")),
        }
    }
}

/// The `Bearer` parameters an MCP client acts on (RFC 6750 §3, RFC 9728 §5.1).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BearerChallenge {
    /// `error`, e.g. `invalid_token` or `insufficient_scope`.
    pub error: Option<String>,
    /// `error_description`
    pub error_description: Option<String>,
    /// `scope`: the scopes the operation needs (MCP SPEC C16-C17).
    pub scope: Option<String>,
    /// `resource_metadata`: where the protected resource metadata is (MCP SPEC C3).
    pub resource_metadata: Option<String>,
    /// `realm`
    pub realm: Option<String>,
    /// The `algs` of a `DPoP` challenge in the same answer (empty when it names none): the
    /// resource takes DPoP proofs (RFC 9449 §7.1). `None` when it offered no `DPoP` challenge.
    pub dpop_algs: Option<Vec<String>>,
}

impl BearerChallenge {
    /// Finds the `Bearer` challenge among header values, else a `DPoP` one, whose parameters
    /// mean the same (RFC 9449 §7.1, SPEC D3); `Ok(None)` if there is neither.
    pub fn from_headers<'a>(
        values: impl IntoIterator<Item = &'a str>,
    ) -> Result<Option<Self>, CoreError> {
        let (mut bearer, mut dpop) = (None, None);
        for v in values {
            for ch in parse(v)? {
                if bearer.is_none() && ch.is_bearer() {
                    bearer = Some(Self::of(&ch));
                } else if dpop.is_none() && ch.is_scheme("DPoP") {
                    dpop = Some(ch);
                }
            }
        }
        let dpop_algs = dpop.as_ref().map(|ch| {
            ch.param("algs")
                .unwrap_or_default()
                .split_ascii_whitespace()
                .map(str::to_owned)
                .collect()
        });
        Ok(bearer
            .or_else(|| dpop.as_ref().map(Self::of))
            .map(|b| Self { dpop_algs, ..b }))
    }

    fn of(ch: &Challenge) -> Self {
        let get = |n| ch.param(n).map(str::to_owned);
        Self {
            error: get("error"),
            error_description: get("error_description"),
            scope: get("scope"),
            resource_metadata: get("resource_metadata"),
            realm: get("realm"),
            dpop_algs: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn d3_a_dpop_challenge_is_read_like_a_bearer_one_and_bearer_wins() {
        let dpop =
            r#"DPoP algs="ES256", error="invalid_token", resource_metadata="https://rs/prm""#;
        let b = BearerChallenge::from_headers([dpop]).unwrap().unwrap();
        assert_eq!(b.resource_metadata.as_deref(), Some("https://rs/prm"));
        assert_eq!(b.error.as_deref(), Some("invalid_token"));
        let both = BearerChallenge::from_headers([dpop, r#"Bearer scope="a""#])
            .unwrap()
            .unwrap();
        assert_eq!((both.scope.as_deref(), both.error), (Some("a"), None));
        assert_eq!(both.dpop_algs, Some(vec!["ES256".to_owned()]));
        let bare = BearerChallenge::from_headers([r#"Bearer realm="x", DPoP"#]).unwrap();
        assert_eq!(bare.unwrap().dpop_algs, Some(vec![]));
        let bearer = BearerChallenge::from_headers([r#"Bearer scope="a""#]).unwrap();
        assert_eq!(bearer.unwrap().dpop_algs, None);
        assert_eq!(
            BearerChallenge::from_headers(["Basic realm=x"]).unwrap(),
            None
        );
    }

    #[test]
    fn c4_parses_mcp_401() {
        let v = r#"Bearer resource_metadata="https://mcp.example/.well-known/oauth-protected-resource/mcp", scope="files:read files:write""#;
        let b = BearerChallenge::from_headers([v]).unwrap().unwrap();
        assert_eq!(
            b.resource_metadata.as_deref(),
            Some("https://mcp.example/.well-known/oauth-protected-resource/mcp")
        );
        assert_eq!(b.scope.as_deref(), Some("files:read files:write"));
        assert_eq!(b.error, None);
    }

    #[test]
    fn several_challenges_and_token68() {
        let c = parse("Negotiate abc123==, Bearer realm=api, error=invalid_token,Basic").unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(c[0].token68.as_deref(), Some("abc123=="));
        assert_eq!(c[1].param("REALM"), Some("api"));
        assert_eq!(c[1].param("error"), Some("invalid_token"));
        assert!(c[2].is_scheme("basic") && c[2].params.is_empty());
    }

    #[test]
    fn quoted_pairs_and_bws() {
        let c = parse(r#"bearer  error = "a \"b\" \\c" ,, scope="x""#).unwrap();
        assert!(c[0].is_bearer());
        assert_eq!(c[0].param("error"), Some(r#"a "b" \c"#));
        assert_eq!(c[0].param("scope"), Some("x"));
    }

    #[test]
    fn malformed_headers_are_clear_errors() {
        for bad in [
            r#"Bearer scope="open"#,
            "=x",
            "Bearer a=b c=d",
            "Bearer\"x\"",
            "Bearer error=\"a\\\u{1}\"",
            "Bearer error=\"a\\\u{7f}\"",
        ] {
            let e = parse(bad).unwrap_err();
            assert!(
                e.to_string().starts_with("malformed WWW-Authenticate"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn no_bearer_challenge_is_none() {
        assert_eq!(
            BearerChallenge::from_headers([r#"Basic realm="x""#]).unwrap(),
            None
        );
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(
            params in proptest::collection::vec(("[a-z_]{1,12}", "[ -~]{0,30}"), 0..5)
        ) {
            let mut ch = Challenge::bearer();
            for (n, v) in &params {
                ch = ch.with(n, v.clone());
            }
            let parsed = parse(&ch.to_string()).unwrap();
            prop_assert_eq!(parsed, vec![ch]);
        }

        #[test]
        fn parser_never_panics(s in "\\PC{0,80}") {
            let _ = parse(&s);
        }
    }
}
