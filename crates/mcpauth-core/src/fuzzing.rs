//! Fuzz-target bodies for the parsers of network input in this crate, and the corpus replay the
//! other crates share. Not a public API: the cargo-fuzz targets under `fuzz/` and the corpus
//! replay tests (`cargo test`, stable) call the same functions, so a crash found by fuzzing stays
//! a failing test until it is fixed.
//!
//! Each function takes arbitrary bytes, must never panic on them, and asserts properties of
//! what it parsed (round trips, agreement between entry points, the security checks' promises).

use std::path::Path;

use crate::authorization_response::{AuthorizationResponse, Expected};
use crate::device::DeviceAuthorization;
use crate::oauth_error::{ErrorCode, OAuthError};
use crate::registration::check_client_id_url;
use crate::www_authenticate::{BearerChallenge, Challenge, parse};
use crate::{
    AuthorizationServerMetadata, ClientIdMetadataDocument, ClientInformation, CoreError,
    ProtectedResourceMetadata, TokenResponse,
};

/// `WWW-Authenticate` values: formatting a parsed challenge and parsing it again gives the same
/// challenge, alone or in the list; [`BearerChallenge`] agrees with [`parse`] (it reads a
/// `Bearer` challenge, else a `DPoP` one).
pub fn www_authenticate(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let bearer = BearerChallenge::from_headers([text]);
    let Ok(challenges) = parse(text) else {
        assert!(
            bearer.is_err(),
            "BearerChallenge accepted what parse refused"
        );
        return;
    };
    let bearer = bearer.expect("BearerChallenge refused what parse accepted");
    assert_eq!(
        bearer.is_some(),
        challenges
            .iter()
            .any(|c| c.is_bearer() || c.is_scheme("DPoP")),
        "BearerChallenge and parse disagree on whether there is a Bearer or DPoP challenge"
    );
    for challenge in &challenges {
        let formatted = challenge.to_string();
        let again = parse(&formatted)
            .unwrap_or_else(|e| panic!("{formatted:?}, formatted from {challenge:?}: {e}"));
        assert_eq!(again, std::slice::from_ref(challenge), "{formatted:?}");
    }
    let joined = challenges
        .iter()
        .map(Challenge::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    assert_eq!(
        parse(&joined).ok().as_ref(),
        Some(&challenges),
        "{joined:?}"
    );
}

/// Parses `body` with `parse`, and if that works, checks that serialising and parsing again
/// gives the same document.
fn round_trips<T>(body: &[u8], parse: impl Fn(&[u8]) -> Result<T, CoreError>) -> Option<T>
where
    T: serde::Serialize + PartialEq + std::fmt::Debug,
{
    let doc = parse(body).ok()?;
    let json = serde_json::to_vec(&doc).expect("a parsed document serialises");
    let again = parse(&json).unwrap_or_else(|e| panic!("{json:?} does not parse again: {e}"));
    assert_eq!(again, doc);
    Some(doc)
}

/// The URL the client ID metadata document checks are made against.
const CIMD_URL: &str = "https://client.example/mcp-client.json";

/// Discovery and registration documents: authorization server metadata (with and without the
/// issuer check), protected resource metadata, client ID metadata documents and registration
/// responses. Each round-trips through JSON with its unknown members; the issuer and CIMD
/// checks accept exactly what their rules allow.
pub fn metadata(data: &[u8]) {
    if let Some(m) = round_trips(
        data,
        AuthorizationServerMetadata::from_json_located_by_origin,
    ) {
        let checked = AuthorizationServerMetadata::from_json_for_issuer(data, &m.issuer)
            .expect("the metadata is refused for its own issuer");
        assert_eq!(checked, m);
        let other = format!("{}/", m.issuer);
        assert!(matches!(
            AuthorizationServerMetadata::from_json_for_issuer(data, &other),
            Err(CoreError::IssuerMismatch { .. })
        ));
        let _ = (m.supports_s256(), m.iss_parameter_supported());
        let _ = m.supports_auth_method("client_secret_basic");
    }
    round_trips(data, ProtectedResourceMetadata::from_json);
    round_trips(data, ClientInformation::from_json);
    let parse_cimd = |body: &[u8]| ClientIdMetadataDocument::from_json_for_url(body, CIMD_URL);
    if let Some(doc) = round_trips(data, parse_cimd) {
        assert_eq!(doc.client_id, CIMD_URL);
        assert!(doc.metadata.client_name.is_some() && !doc.metadata.redirect_uris.is_empty());
    }
    // The document's own client_id as the URL: accepted only if it is a valid client ID URL.
    if let Ok(serde_json::Value::Object(o)) = serde_json::from_slice(data)
        && let Some(serde_json::Value::String(url)) = o.get("client_id")
        && ClientIdMetadataDocument::from_json_for_url(data, url).is_ok()
    {
        assert!(check_client_id_url(url).is_ok(), "{url:?}");
    }
}

/// Whether `text` is safe to show on one terminal or log line: no control characters.
fn printable(text: &str) -> bool {
    !text.chars().any(char::is_control)
}

/// Token responses, OAuth error bodies and device authorization responses: the first two
/// round-trip, error codes survive [`ErrorCode::parse`], an error's `Display` (shown to people
/// and logged) holds no control characters whatever the server sent, and a device authorization
/// without `interval` polls every 5 s (RFC 8628 §3.2).
pub fn token_response(data: &[u8]) {
    // An unknown member is skipped unchecked, so the response may parse where a JSON value
    // would not (a lone surrogate escape, say).
    if let Ok(d) = DeviceAuthorization::from_json(data)
        && let Ok(serde_json::Value::Object(sent)) = serde_json::from_slice(data)
        && !sent.contains_key("interval")
    {
        assert_eq!(d.interval, 5);
    }
    if let Ok(t) = TokenResponse::from_json(data) {
        let json = serde_json::to_value(&t).expect("a token response serialises");
        let again = TokenResponse::from_json(json.to_string().as_bytes())
            .unwrap_or_else(|e| panic!("{json} does not parse again: {e}"));
        assert_eq!(serde_json::to_value(&again).ok(), Some(json));
    }
    if let Ok(e) = serde_json::from_slice::<OAuthError>(data) {
        assert_eq!(ErrorCode::parse(e.error.as_str()), e.error);
        let json = serde_json::to_vec(&e).expect("an OAuth error serialises");
        assert_eq!(
            serde_json::from_slice::<OAuthError>(&json).ok(),
            Some(e.clone())
        );
        let shown = e.to_string();
        assert!(printable(&shown), "{shown:?}");
    }
}

/// The `state` and issuer the authorization response checks expect.
const STATE: &str = "st";
/// See [`STATE`].
const ISSUER: &str = "https://as.example/tenant";

/// Authorization responses, from a redirect URL or a query: the first value of each parameter
/// wins, and [`AuthorizationResponse::validate`] returns a code only when `iss` (RFC 9207) and
/// `state` match and there is no `error`.
pub fn authorization_response(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let from_url = AuthorizationResponse::from_redirect_url(text);
    let query = match url::Url::parse(text) {
        Ok(u) => {
            assert!(from_url.is_ok(), "a URL is refused: {text:?}");
            u.query().unwrap_or_default().to_owned()
        }
        Err(_) => text.to_owned(),
    };
    let r = AuthorizationResponse::from_query(&query);
    let first = |name: &str| {
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    assert_eq!(r.state, first("state"));
    assert_eq!(r.iss, first("iss"));
    assert_eq!(r.error, first("error"));
    assert_eq!(
        r.code.as_ref().map(|c| c.expose().to_owned()),
        first("code")
    );
    for iss_supported in [false, true] {
        let expected = Expected {
            state: STATE,
            issuer: ISSUER,
            iss_supported,
        };
        let iss_ok = match r.iss.as_deref() {
            Some(iss) => iss == ISSUER,
            None => !iss_supported,
        };
        let state_ok = r.state.as_deref() == Some(STATE);
        match r.clone().validate(&expected) {
            Ok(code) => {
                assert!(iss_ok && state_ok && r.error.is_none());
                assert_eq!(Some(code.expose().to_owned()), first("code"));
            }
            Err(CoreError::IssMismatch { .. } | CoreError::IssMissing) => assert!(!iss_ok),
            Err(CoreError::StateMismatch) => assert!(iss_ok && !state_ok),
            Err(CoreError::AuthorizationRefused(e)) => {
                assert!(iss_ok && state_ok);
                assert_eq!(Some(e.error.as_str().to_owned()), r.error);
            }
            Err(CoreError::MissingCode) => {
                assert!(iss_ok && state_ok && r.error.is_none() && r.code.is_none());
            }
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }
}

/// The request a fuzzed DPoP proof is checked against.
pub const DPOP_URL: &str = "https://mcp.example.com/mcp";
/// The `iat` the DPoP seeds were made at, and the checks' "now".
pub const DPOP_NOW: i64 = 1_800_000_000;
/// The access token presented with a fuzzed DPoP proof.
pub const DPOP_TOKEN: &str = "fuzz-access-token";

/// DPoP proofs (RFC 9449 §4.3, SPEC D4). First byte even: the rest is a proof as received.
/// Odd: the rest is `header JSON \n claims JSON`, signed with a key of this process (its public
/// JWK added to a header without one), so that the checks after the signature see arbitrary
/// headers and claims. An accepted proof must satisfy every rule of RFC 9449 §4.3.
/// Returns whether the proof was accepted.
pub fn dpop_proof(data: &[u8]) -> bool {
    use crate::dpop::{self, DpopError, ProofCheck};
    let Some((&mode, rest)) = data.split_first() else {
        return false;
    };
    let proof = if mode % 2 == 0 {
        let Ok(p) = std::str::from_utf8(rest) else {
            return false;
        };
        p.to_owned()
    } else {
        let split = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        match dpop_signed(&rest[..split], rest.get(split + 1..).unwrap_or_default()) {
            Some(p) => p,
            None => return false,
        }
    };
    let nonces = ["fuzz-nonce"];
    let mut check = ProofCheck::new("POST", DPOP_URL, DPOP_NOW).with_access_token(DPOP_TOKEN);
    if mode & 2 != 0 {
        check.nonces = &nonces;
    }
    let verified = match dpop::check_proof(&[&proof], &check) {
        Ok(v) => v,
        Err(DpopError::Signing(_)) => panic!("checking a proof reported a signing failure"),
        Err(_) => return false,
    };
    let part = |i: usize| -> serde_json::Value {
        let b = base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            proof.trim().split('.').nth(i).expect("three parts"),
        )
        .expect("base64url");
        serde_json::from_slice(&b).expect("JSON")
    };
    let (header, claims) = (part(0), part(1));
    assert_eq!(header["typ"], dpop::PROOF_TYP);
    assert_eq!(header["alg"], verified.algorithm.as_str());
    assert!(
        header["jwk"].get("d").is_none(),
        "a private key was accepted"
    );
    assert_eq!(
        dpop::jwk_thumbprint(&header["jwk"]).ok().as_deref(),
        Some(verified.jkt.as_str())
    );
    assert_eq!(claims["htm"], "POST");
    let htu = claims["htu"].as_str().expect("htu");
    assert!(!htu.contains(['?', '#']));
    assert_eq!(
        dpop::target_uri(htu).as_deref(),
        dpop::target_uri(DPOP_URL).as_deref()
    );
    assert!((verified.iat - DPOP_NOW).abs() <= dpop::DEFAULT_IAT_WINDOW);
    assert_eq!(claims["ath"], dpop::access_token_hash(DPOP_TOKEN));
    assert!(!verified.jti.is_empty() && verified.jti.len() <= dpop::MAX_JTI_BYTES);
    if mode & 2 != 0 {
        assert_eq!(claims["nonce"], "fuzz-nonce");
    }
    true
}

/// `header` and `claims` (JSON) signed as a compact JWS with this process's DPoP key.
fn dpop_signed(header: &[u8], claims: &[u8]) -> Option<String> {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    static KEY: std::sync::OnceLock<crate::dpop::DpopKey> = std::sync::OnceLock::new();
    let key = KEY.get_or_init(|| crate::dpop::DpopKey::generate().expect("a key"));
    let mut header: serde_json::Value = serde_json::from_slice(header).ok()?;
    if let Some(h) = header.as_object_mut() {
        h.entry("jwk").or_insert_with(|| key.public_jwk().clone());
    }
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims)
    );
    Some(format!("{input}.{}", key.sign_for_tests(input.as_bytes())))
}

/// Runs every file of `fuzz/seeds/<target>` and `fuzz/regressions/<target>` (under `fuzz_dir`)
/// through `body`, as the corpus replay tests of each crate do; returns how many files ran.
///
/// # Panics
/// When `body` panics (naming the file), when the seed corpus is empty or missing, or when a
/// directory cannot be read.
pub fn replay(fuzz_dir: &Path, target: &str, body: fn(&[u8])) -> usize {
    let mut files = Vec::new();
    for kind in ["seeds", "regressions"] {
        let dir = fuzz_dir.join(kind).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            assert!(kind == "regressions", "no seed corpus at {}", dir.display());
            continue;
        };
        for entry in entries {
            let path = entry.expect("readable corpus directory").path();
            if path.is_file() {
                files.push(path);
            }
        }
        assert!(
            kind == "regressions" || !files.is_empty(),
            "empty seed corpus {}",
            dir.display()
        );
    }
    files.sort();
    for path in &files {
        let data = std::fs::read(path).expect("readable corpus file");
        let outcome = std::panic::catch_unwind(|| body(&data));
        assert!(
            outcome.is_ok(),
            "fuzz target {target} fails on {}",
            path.display()
        );
    }
    files.len()
}
