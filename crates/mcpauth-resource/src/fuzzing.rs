//! Fuzz-target bodies for the bearer-token checks of this crate. Not a public API: the cargo-fuzz
//! targets under `fuzz/` and the corpus replay tests call these same functions (see
//! `mcpauth_core::fuzzing`).
//!
//! The verifier under test is a real [`JwtVerifier`] whose JWK sets are preloaded, so nothing
//! touches the network: it trusts [`ISSUER`] (one Ed25519 key, `kid` [`KID`]) and another
//! issuer without keys, for the audience [`AUDIENCE`], with the default 60 s leeway and strict
//! `typ`.

use std::future::Future;
use std::pin::pin;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde_json::{Value, json};

use crate::jwks::algorithms_for;
use crate::{JwtVerifier, Principal, ResourceError, TokenVerifier};

/// The issuer whose key signs the fuzzed tokens.
pub const ISSUER: &str = "https://as.example";
/// A second trusted issuer, without keys (so that the verifier reads `iss` before the signature).
pub const OTHER_ISSUER: &str = "https://other.example";
/// The audience the verifier accepts.
pub const AUDIENCE: &str = "https://mcp.example/mcp";
/// The `kid` of [`ISSUER`]'s key.
pub const KID: &str = "fuzz";

/// A throwaway Ed25519 key made for the fuzz targets: the only verifier that trusts it is the
/// one built here.
const SIGNING_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIEQ7P/AuG2wOKjlarnH1RFkTvu4e76lyG+FS7T5DLpHQ
-----END PRIVATE KEY-----
";
/// The public half of [`SIGNING_KEY_PEM`] (JWK `x`).
const PUBLIC_X: &str = "OrUTrYG-WnCdCjH8fgOrWEj3XX3pFw2H-lynlQ7i-4Q";

/// The clock leeway of the verifier (its default), plus a second for the time the check takes.
const LEEWAY: u64 = 61;

struct Fixture {
    verifier: JwtVerifier,
    signing: EncodingKey,
    public: DecodingKey,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let never = Duration::from_secs(365 * 24 * 3600);
        let verifier = JwtVerifier::builder()
            .issuer_with_jwks(ISSUER, "https://as.example/jwks")
            .issuer_with_jwks(OTHER_ISSUER, "https://other.example/jwks")
            .audience(AUDIENCE)
            .jwks_refetch_interval(never)
            .jwks_max_age(never)
            .cache(Duration::ZERO, 0)
            .build()
            .expect("the fuzzing verifier builds");
        let jwks = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": PUBLIC_X, "kid": KID}]});
        let keys = verifier.issuer_keys(ISSUER).expect("trusted issuer");
        keys.preload(keys.keys_of(&jwks).expect("the fuzzing JWK set parses"));
        let other = verifier.issuer_keys(OTHER_ISSUER).expect("trusted issuer");
        other.preload(Vec::new());
        let jwk: Jwk = serde_json::from_value(jwks["keys"][0].clone()).expect("a JWK");
        Fixture {
            verifier,
            signing: EncodingKey::from_ed_pem(SIGNING_KEY_PEM.as_bytes()).expect("an Ed25519 key"),
            public: DecodingKey::from_jwk(&jwk).expect("an Ed25519 JWK"),
        }
    })
}

/// Polls `f` once: with preloaded keys, verification never waits for I/O.
fn now_or_never<T>(f: impl Future<Output = T>) -> T {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("token verification waited for I/O"),
    }
}

/// Unix seconds now.
fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// A JWS compact serialisation of `header` and `claims` (taken as bytes, whatever they are),
/// signed with the fuzzing key.
fn signed(header: &[u8], claims: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let signature =
        jsonwebtoken::crypto::sign(input.as_bytes(), &fixture().signing, Algorithm::EdDSA)
            .expect("Ed25519 signing");
    format!("{input}.{signature}")
}

/// What must hold whenever the verifier accepts `token`: a genuine signature by the trusted
/// key, `alg` `EdDSA` and `typ` `at+jwt` in the header, `iss` the issuer, `aud` naming this
/// resource, `exp` present and not past, `nbf` (if any) not in the future.
fn check_accepted(token: &str, p: &Principal) {
    let (input, signature) = token.rsplit_once('.').expect("a JWS has three parts");
    let genuine = jsonwebtoken::crypto::verify(
        signature,
        input.as_bytes(),
        &fixture().public,
        Algorithm::EdDSA,
    );
    assert!(
        matches!(genuine, Ok(true)),
        "accepted without a genuine signature"
    );
    let (header, claims) = input.split_once('.').expect("a JWS has three parts");
    let decode = |part: &str| -> Value {
        let bytes = URL_SAFE_NO_PAD.decode(part).expect("accepted base64url");
        serde_json::from_slice(&bytes).expect("accepted JSON")
    };
    let (header, claims) = (decode(header), decode(claims));
    assert_eq!(header["alg"], "EdDSA");
    let typ = header["typ"]
        .as_str()
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(
        typ == "at+jwt" || typ == "application/at+jwt",
        "typ {typ:?}"
    );
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(p.issuer, ISSUER);
    assert!(p.audience.iter().any(|a| a == AUDIENCE));
    let aud_ok = match &claims["aud"] {
        Value::String(a) => a == AUDIENCE,
        Value::Array(a) => a.iter().any(|a| a == AUDIENCE),
        _ => false,
    };
    assert!(aud_ok, "aud {}", claims["aud"]);
    let exp = p.expires_at.expect("accepted without exp");
    assert!(exp + LEEWAY >= now(), "accepted although expired at {exp}");
    assert!(claims["exp"].is_number());
    if let Some(nbf) = claims.get("nbf") {
        let nbf = nbf.as_f64().expect("accepted with a non-numeric nbf");
        assert!(nbf <= (now() + LEEWAY) as f64, "accepted before nbf {nbf}");
    }
}

/// JWT access tokens (RFC 9068) through [`JwtVerifier`]. The first byte picks the mode: even,
/// the rest is the token as sent; odd, the rest is `header JSON` `\n` `claims JSON`, signed with
/// the trusted key, so that the checks after the signature see arbitrary headers and claims.
/// Either way, an accepted token must satisfy everything RFC 9068 and MCP SPEC S4-S5 require.
/// Returns whether the token was accepted.
pub fn jwt(data: &[u8]) -> bool {
    let Some((&mode, rest)) = data.split_first() else {
        return false;
    };
    let token = if mode % 2 == 0 {
        let Ok(token) = std::str::from_utf8(rest) else {
            return false;
        };
        token.to_owned()
    } else {
        let split = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        signed(&rest[..split], rest.get(split + 1..).unwrap_or_default())
    };
    match now_or_never(fixture().verifier.verify(&token)) {
        Ok(p) => {
            check_accepted(&token, &p);
            true
        }
        Err(e @ (ResourceError::Unavailable { .. } | ResourceError::Config(_))) => {
            panic!("verification failed with {e:?} instead of refusing the token")
        }
        Err(_) => false,
    }
}

/// JWK sets (RFC 7517 §5) as fetched from an issuer: a key is kept only for signature
/// algorithms its type allows, never symmetric, and only the `alg` it names if it names one.
pub fn jwks(data: &[u8]) {
    let Ok(doc) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let issuer = fixture()
        .verifier
        .issuer_keys(ISSUER)
        .expect("trusted issuer");
    let Ok(keys) = issuer.keys_of(&doc) else {
        assert!(!doc["keys"].is_array());
        return;
    };
    let given = doc["keys"].as_array().expect("a keys array");
    assert!(keys.len() <= given.len());
    for key in &keys {
        assert!(!key.algorithms.is_empty());
        assert_eq!(key.validation.algorithms, key.algorithms);
        assert!(
            !key.algorithms
                .iter()
                .any(|a| matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512))
        );
        let same_kid = || {
            given
                .iter()
                .filter(|g| g["kid"].as_str() == key.kid.as_deref())
                .filter_map(|g| serde_json::from_value::<Jwk>(g.clone()).ok())
        };
        assert!(
            same_kid().any(|jwk| algorithms_for(&jwk).ok().as_ref() == Some(&key.algorithms)),
            "a key whose algorithms its JWK does not give: {:?}",
            key.algorithms
        );
    }
}
