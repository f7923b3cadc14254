//! Client credentials in an `Authorization: Basic` header (RFC 6749 §2.3.1): base64 of
//! `client_id:client_secret`, each form-encoded. Pure parsing (the fuzz crate compiles this file
//! by path): no `crate::` paths here.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Decodes `application/x-www-form-urlencoded` text (RFC 6749 §2.3.1 encodes the Basic
/// credentials with it).
fn form_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                // Two hex digits: `from_str_radix` alone would also take a sign (`%+1`).
                let hex = bytes.get(i + 1..i + 3)?;
                let digit = |b: u8| char::from(b).to_digit(16);
                out.push(u8::try_from(digit(hex[0])? * 16 + digit(hex[1])?).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// The credentials of an `Authorization` header value: `None` unless its scheme is `Basic`,
/// `Err` if the credentials are malformed.
pub(crate) fn credentials(authorization: &str) -> Option<Result<(String, String), ()>> {
    let (scheme, rest) = authorization.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD
        .decode(rest.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok());
    Some(
        decoded
            .as_deref()
            .and_then(|d| d.split_once(':'))
            .and_then(|(id, secret)| Some((form_decode(id)?, form_decode(secret)?)))
            .ok_or(()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_decoded() {
        let creds = STANDARD.encode("my%3Aclient:s%2Bcr+t%25");
        let (id, secret) = credentials(&format!("Basic {creds}")).unwrap().unwrap();
        assert_eq!(id, "my:client");
        assert_eq!(secret, "s+cr t%");
        assert!(credentials("Basic !!!").unwrap().is_err());
        for bad in ["a:%+25", "a:%-1", "a:%4", "%zz:b"] {
            let header = format!("Basic {}", STANDARD.encode(bad));
            assert!(credentials(&header).unwrap().is_err(), "{bad}");
        }
        assert!(credentials("Bearer x").is_none());
    }
}
