//! Fuzz-target bodies for what the token endpoint parses before it looks anything up. Not a
//! public API: the corpus replay tests call these functions, and the fuzz crate compiles this
//! file, `params.rs` and `basic_auth.rs` by path (so that fuzzing does not build the database
//! drivers); keep all three free of other `crate::` paths.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use mcpauth_core::ErrorCode;

use crate::basic_auth;
use crate::params::Params;

/// Whether every `%` of `raw` starts a two-hex-digit escape.
fn escapes_well_formed(raw: &str) -> bool {
    let b = raw.as_bytes();
    b.iter().enumerate().all(|(i, &c)| {
        c != b'%'
            || b.get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    })
}

/// A token request: the bytes up to the first `\n` are the `Authorization` header value, the
/// rest the `application/x-www-form-urlencoded` body.
///
/// - Body (RFC 6749 §3.2): a repeated parameter is refused with `invalid_request`, and a
///   refusal calls a parameter repeated only if one is; what is accepted reads back as sent,
///   an empty value as absent.
/// - `Authorization: Basic` (RFC 6749 §2.3.1): credentials come out only for the `Basic`
///   scheme, and only when both halves are well-formed form-encoded text.
pub fn token_request(data: &[u8]) {
    let (authorization, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&data[..0], data),
    };
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
    let repeated = pairs
        .iter()
        .enumerate()
        .any(|(i, (k, _))| pairs[..i].iter().any(|(seen, _)| seen == k));
    match Params::parse(body) {
        Ok(params) => {
            assert!(!repeated, "a repeated parameter was accepted");
            for (k, v) in &pairs {
                assert_eq!(params.get(k), Some(v.as_str()).filter(|v| !v.is_empty()));
            }
        }
        Err(e) => {
            assert_eq!(e.error, ErrorCode::InvalidRequest);
            let said = e.error_description.unwrap_or_default();
            assert!(repeated || !said.contains("repeated"), "{said}");
        }
    }
    let Ok(authorization) = std::str::from_utf8(authorization) else {
        return;
    };
    let basic = authorization
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"));
    match basic_auth::credentials(authorization) {
        None => assert!(basic.is_none(), "a Basic header was ignored"),
        Some(Err(())) => assert!(basic.is_some()),
        Some(Ok((id, secret))) => {
            let (_, encoded) = basic.expect("credentials from a Basic header");
            let decoded = STANDARD.decode(encoded.trim()).expect("valid base64");
            let decoded = String::from_utf8(decoded).expect("valid UTF-8");
            let (raw_id, raw_secret) = decoded.split_once(':').expect("a colon");
            assert!(
                escapes_well_formed(raw_id) && escapes_well_formed(raw_secret),
                "malformed escapes accepted: {decoded:?} gave {id:?} and {secret:?}"
            );
        }
    }
}
