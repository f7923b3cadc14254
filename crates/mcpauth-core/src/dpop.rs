//! DPoP (RFC 9449, MCP SEP-1932, SPEC D1-D7) without I/O: the client's key and proofs, and the
//! checks a resource server or an authorization server makes on a received proof.
//!
//! - [`DpopKey`]: a P-256 key pair (ES256), created with the operating system's CSPRNG, stored as
//!   PKCS#8 (a secret: redacted `Debug`), with its public JWK and RFC 7638 thumbprint; it signs
//!   proofs (RFC 9449 §4.2, SPEC D1).
//! - [`check_proof`]: every check of RFC 9449 §4.3 that needs no state (SPEC D4). The caller keeps
//!   the `jti` replay cache (the proof's `jti` and `iat` are returned for it) and compares the
//!   returned thumbprint with the token's `cnf.jkt` ([`thumbprint_matches`]).
//! - [`NonceIssuer`]: stateless server-provided nonces (RFC 9449 §8, §9; SPEC D7).
//!
//! ```
//! use mcpauth_core::dpop::{DpopKey, ProofCheck, check_proof};
//! let key = DpopKey::generate().unwrap();
//! let proof = key.proof("POST", "https://mcp.example.com/mcp?x=1", Some("tok"), None).unwrap();
//! let check = ProofCheck::new("POST", "https://mcp.example.com/mcp", 1_700_000_000);
//! let ok = check_proof(&[&proof], &check.with_access_token("tok").at(proof_iat(&proof)));
//! assert_eq!(ok.unwrap().jkt, key.thumbprint());
//! # fn proof_iat(p: &str) -> i64 { mcpauth_core::dpop::unverified_iat(p).unwrap() }
//! ```

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::constant_time_eq;
use crate::jose::{JwkParams, JwsAlgorithm, signature_algorithms};

/// The `typ` of a DPoP proof (RFC 9449 §4.2).
pub const PROOF_TYP: &str = "dpop+jwt";
/// How far `iat` may be in the past or the future, in seconds (SPEC D4: ±5 minutes).
pub const DEFAULT_IAT_WINDOW: i64 = 300;
/// Longest proof accepted, in bytes: an RSA-8192 public key and the claims fit well below this.
pub const MAX_PROOF_BYTES: usize = 8 * 1024;
/// Longest `jti` accepted, in bytes (the caller keeps them in a replay cache).
pub const MAX_JTI_BYTES: usize = 256;
/// Longest `nonce` accepted, in bytes.
pub const MAX_NONCE_BYTES: usize = 512;

/// Members that only a private JWK has (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037 §2).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Why a proof was refused, or a proof could not be made. Every refusal is
/// `invalid_dpop_proof`, except a missing or stale nonce ([`DpopError::UseNonce`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DpopError {
    /// No `DPoP` header (RFC 9449 §4.3 item 1).
    #[error("the request has no DPoP proof")]
    Missing,
    /// More than one `DPoP` header (RFC 9449 §4.3 item 1).
    #[error("the request has more than one DPoP header")]
    Multiple,
    /// Not a compact JWS with a JSON header and claims (RFC 9449 §4.3 item 2).
    #[error("the DPoP proof is not a well-formed JWT: {0}")]
    Malformed(&'static str),
    /// `typ` is not `dpop+jwt` (RFC 9449 §4.3 item 4).
    #[error("the DPoP proof's typ is not dpop+jwt")]
    Typ,
    /// `alg` is `none`, symmetric, unknown or not accepted (RFC 9449 §4.3 item 5).
    #[error("the DPoP proof's alg {0:?} is not accepted (asymmetric algorithms only)")]
    Algorithm(String),
    /// The `jwk` header is missing, private, or cannot verify `alg` (RFC 9449 §4.3 items 6, 7).
    #[error("the DPoP proof's jwk is unusable: {0}")]
    Key(String),
    /// The signature does not verify with the `jwk` (RFC 9449 §4.3 item 6).
    #[error("the DPoP proof's signature does not verify with its jwk")]
    Signature,
    /// A required claim is missing or not of its type (RFC 9449 §4.3 item 3).
    #[error("the DPoP proof has no valid {0} claim")]
    Claim(&'static str),
    /// `htm` is not the request's method (RFC 9449 §4.3 item 8).
    #[error("the DPoP proof's htm is not the request's method")]
    Method,
    /// `htu` is not the request's URI, or has a query or a fragment (RFC 9449 §4.2, §4.3 item 9).
    #[error("the DPoP proof's htu is not this request's URI (without query and fragment)")]
    Uri,
    /// `iat` is outside the accepted window (RFC 9449 §4.3 item 11).
    #[error("the DPoP proof's iat is more than {0} s away from now")]
    Iat(i64),
    /// `ath` is missing or not the hash of the presented token (RFC 9449 §4.3 item 12).
    #[error("the DPoP proof's ath is not the hash of the access token")]
    AccessTokenHash,
    /// The server requires a nonce and the proof has none, or an old one (RFC 9449 §8, §9):
    /// answer `use_dpop_nonce` with a fresh `DPoP-Nonce`.
    #[error("the DPoP proof must carry the server's current nonce")]
    UseNonce,
    /// A proof could not be made (key or randomness failure).
    #[error("cannot make a DPoP proof: {0}")]
    Signing(&'static str),
}

impl DpopError {
    /// The OAuth error code to answer with (RFC 9449 §7.1, §8, §12.2).
    pub fn error_code(&self) -> &'static str {
        match self {
            DpopError::UseNonce => "use_dpop_nonce",
            _ => "invalid_dpop_proof",
        }
    }
}

/// A client's DPoP key: ECDSA P-256 with SHA-256 (ES256), the algorithm every DPoP server
/// supports. `Debug` never shows the private key.
pub struct DpopKey {
    pair: EcdsaKeyPair,
    /// The public JWK, members in RFC 7638 order.
    jwk: Value,
    thumbprint: String,
}

impl fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopKey")
            .field("jkt", &self.thumbprint)
            .finish_non_exhaustive()
    }
}

impl DpopKey {
    /// A new key from the operating system's CSPRNG.
    pub fn generate() -> Result<Self, DpopError> {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .map_err(|_| DpopError::Signing("key generation failed"))?;
        Self::from_pair(pair)
    }

    /// The key stored as PKCS#8 DER by [`DpopKey::to_pkcs8`].
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, DpopError> {
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
            .map_err(|_| DpopError::Signing("not a PKCS#8 P-256 private key"))?;
        Self::from_pair(pair)
    }

    fn from_pair(pair: EcdsaKeyPair) -> Result<Self, DpopError> {
        // The uncompressed point: 0x04 || X (32 bytes) || Y (32 bytes) (SEC 1 §2.3.3).
        let point = pair.public_key().as_ref();
        if point.len() != 65 || point[0] != 4 {
            return Err(DpopError::Signing("unexpected public key encoding"));
        }
        let jwk = json!({
            "crv": "P-256",
            "kty": "EC",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..]),
        });
        let thumbprint =
            jwk_thumbprint(&jwk).map_err(|_| DpopError::Signing("cannot hash the public key"))?;
        Ok(Self {
            pair,
            jwk,
            thumbprint,
        })
    }

    /// The private key as PKCS#8 v1 DER, to store with the tokens bound to it (a secret).
    pub fn to_pkcs8(&self) -> Result<Vec<u8>, DpopError> {
        self.pair
            .to_pkcs8v1()
            .map(|d| d.as_ref().to_vec())
            .map_err(|_| DpopError::Signing("cannot serialise the key"))
    }

    /// The public key as a JWK (`kty`, `crv`, `x`, `y`).
    pub fn public_jwk(&self) -> &Value {
        &self.jwk
    }

    /// The RFC 7638 SHA-256 thumbprint of the public key: the `jkt` tokens are bound to.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// The JWS algorithm of this key.
    pub fn algorithm(&self) -> JwsAlgorithm {
        JwsAlgorithm::ES256
    }

    /// The base64url signature of `input` (fuzzing and tests build malformed proofs with it).
    #[doc(hidden)]
    pub fn sign_for_tests(&self, input: &[u8]) -> String {
        self.pair
            .sign(&SystemRandom::new(), input)
            .map(|s| URL_SAFE_NO_PAD.encode(s.as_ref()))
            .unwrap_or_default()
    }

    /// A proof for one request (RFC 9449 §4.2, SPEC D1): a fresh random `jti`, `htm` = `method`,
    /// `htu` = `url` without query and fragment, `iat` = now, `ath` when sent with an access
    /// token, and the server's `nonce` when it gave one.
    pub fn proof(
        &self,
        method: &str,
        url: &str,
        access_token: Option<&str>,
        nonce: Option<&str>,
    ) -> Result<String, DpopError> {
        self.proof_at(method, url, access_token, nonce, unix_now())
    }

    /// [`DpopKey::proof`] with a given `iat` (for tests of the receiving side).
    pub fn proof_at(
        &self,
        method: &str,
        url: &str,
        access_token: Option<&str>,
        nonce: Option<&str>,
        iat: i64,
    ) -> Result<String, DpopError> {
        let htu = target_uri(url).ok_or(DpopError::Uri)?;
        let jti = crate::random_urlsafe(16).map_err(|_| DpopError::Signing("no randomness"))?;
        let header = json!({ "typ": PROOF_TYP, "alg": "ES256", "jwk": self.jwk });
        let mut claims = json!({ "jti": jti, "htm": method, "htu": htu, "iat": iat });
        if let Some(token) = access_token {
            claims["ath"] = Value::String(access_token_hash(token));
        }
        if let Some(n) = nonce {
            claims["nonce"] = Value::String(n.to_owned());
        }
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .map_err(|_| DpopError::Signing("signing failed"))?;
        Ok(format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        ))
    }
}

/// `ath`: base64url(SHA-256(the access token's ASCII)) (RFC 9449 §4.2).
pub fn access_token_hash(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()))
}

/// The RFC 7638 SHA-256 thumbprint of a public JWK: the required members of its `kty` in
/// lexicographic order, no whitespace. Fails for other key types or missing members.
pub fn jwk_thumbprint(jwk: &Value) -> Result<String, DpopError> {
    let member = |name: &'static str| {
        jwk.get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| DpopError::Key(format!("no {name} member")))
    };
    let required: &[&'static str] = match member("kty")? {
        "EC" => &["crv", "kty", "x", "y"],
        "OKP" => &["crv", "kty", "x"],
        "RSA" => &["e", "kty", "n"],
        other => {
            return Err(DpopError::Key(format!("unsupported key type {other:?}")));
        }
    };
    let mut canonical = String::from("{");
    for (i, name) in required.iter().enumerate() {
        if i > 0 {
            canonical.push(',');
        }
        // serde_json escapes exactly as JSON requires (RFC 7638 §3.3).
        canonical.push_str(&Value::String((*name).to_owned()).to_string());
        canonical.push(':');
        canonical.push_str(&Value::String(member(name)?.to_owned()).to_string());
    }
    canonical.push('}');
    Ok(URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes())))
}

/// Whether a proof's thumbprint is the token's `cnf.jkt` (RFC 9449 §6.1, §4.3 item 13).
pub fn thumbprint_matches(proof_jkt: &str, token_jkt: &str) -> bool {
    constant_time_eq(proof_jkt.as_bytes(), token_jkt.as_bytes())
}

/// The URI a proof's `htu` names for `url`: scheme, authority and path, normalised (RFC 3986
/// §6.2.2-6.2.3: lower-case scheme and host, no default port, `/` for an empty path), without
/// query and fragment. `None` for anything but an absolute http(s) URL.
pub fn target_uri(url: &str) -> Option<String> {
    let mut u = url::Url::parse(url).ok()?;
    if !matches!(u.scheme(), "http" | "https") || u.host().is_none() {
        return None;
    }
    u.set_query(None);
    u.set_fragment(None);
    Some(u.into())
}

/// What the receiver of a proof expects (RFC 9449 §4.3).
#[derive(Clone, Debug)]
pub struct ProofCheck<'a> {
    /// The request's method.
    pub method: &'a str,
    /// The request's URI as the server is reached (its public URL, not a proxy's inner one).
    pub url: &'a str,
    /// The access token sent with the proof (resource requests): `ath` must be its hash.
    pub access_token: Option<&'a str>,
    /// The nonces the server currently accepts; empty: no nonce required.
    pub nonces: &'a [&'a str],
    /// Accepted algorithms (e.g. the advertised `dpop_signing_alg_values_supported`).
    pub algorithms: &'a [JwsAlgorithm],
    /// Now, in seconds since the Unix epoch.
    pub now: i64,
    /// How far `iat` may be from `now`, in seconds.
    pub iat_window: i64,
}

impl<'a> ProofCheck<'a> {
    /// A check of a request with no access token, no nonce, every asymmetric algorithm and
    /// the default `iat` window, at `now`.
    pub fn new(method: &'a str, url: &'a str, now: i64) -> Self {
        Self {
            method,
            url,
            access_token: None,
            nonces: &[],
            algorithms: &JwsAlgorithm::ALL,
            now,
            iat_window: DEFAULT_IAT_WINDOW,
        }
    }

    /// The same check for a request carrying `token` (`ath` required).
    pub fn with_access_token(mut self, token: &'a str) -> Self {
        self.access_token = Some(token);
        self
    }

    /// The same check at another time.
    pub fn at(mut self, now: i64) -> Self {
        self.now = now;
        self
    }
}

/// A proof that passed every check of [`check_proof`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedProof {
    /// The RFC 7638 thumbprint of the proof's key: compare with the token's `cnf.jkt`.
    pub jkt: String,
    /// The proof's `jti`: the caller refuses one it has seen within the `iat` window.
    pub jti: String,
    /// The proof's `iat`.
    pub iat: i64,
    /// The proof's algorithm.
    pub algorithm: JwsAlgorithm,
}

/// Checks the `DPoP` header values of one request (RFC 9449 §4.3 items 1-12, SPEC D4): exactly
/// one proof, a JWT with `typ: dpop+jwt`, an accepted asymmetric `alg`, a public `jwk` that
/// verifies the signature, `jti`, `htm`, `htu`, `iat` within the window, `ath` when a token is
/// presented, the nonce when one is required. The replay check on `jti` and the `cnf.jkt`
/// comparison are the caller's.
pub fn check_proof(values: &[&str], check: &ProofCheck<'_>) -> Result<VerifiedProof, DpopError> {
    let proof = match values {
        [] => return Err(DpopError::Missing),
        [one] => one.trim(),
        _ => return Err(DpopError::Multiple),
    };
    if proof.len() > MAX_PROOF_BYTES {
        return Err(DpopError::Malformed("too long"));
    }
    let mut parts = proof.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(DpopError::Malformed("not three base64url parts"));
    };
    if s.is_empty() {
        return Err(DpopError::Signature);
    }
    let header = decode_object(h).ok_or(DpopError::Malformed("the header is not a JSON object"))?;
    let claims =
        decode_object(c).ok_or(DpopError::Malformed("the claims are not a JSON object"))?;

    if header.get("typ").and_then(Value::as_str) != Some(PROOF_TYP) {
        return Err(DpopError::Typ);
    }
    let alg_name = header
        .get("alg")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let alg = JwsAlgorithm::from_name(alg_name)
        .filter(|a| check.algorithms.contains(a))
        .ok_or_else(|| DpopError::Algorithm(alg_name.chars().take(32).collect()))?;
    let jwk = header
        .get("jwk")
        .filter(|j| j.is_object())
        .ok_or_else(|| DpopError::Key("no jwk header".into()))?;
    if let Some(m) = PRIVATE_MEMBERS.iter().find(|m| jwk.get(**m).is_some()) {
        return Err(DpopError::Key(format!(
            "it holds the private member {m:?} (RFC 9449 §4.3 item 7)"
        )));
    }
    let usable = signature_algorithms(&JwkParams::from_json(jwk), &[alg])
        .map_err(|e| DpopError::Key(e.to_string()))?;
    if !usable.contains(&alg) {
        return Err(DpopError::Key(format!("it cannot verify {alg}")));
    }
    verify_signature(proof, jwk, alg)?;

    let text = |name: &'static str| {
        claims
            .get(name)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
            .ok_or(DpopError::Claim(name))
    };
    let jti = text("jti")?;
    if jti.len() > MAX_JTI_BYTES {
        return Err(DpopError::Claim("jti"));
    }
    if text("htm")? != check.method {
        return Err(DpopError::Method);
    }
    let htu = text("htu")?;
    // RFC 9449 §4.2: htu is the target URI "without query and fragment parts".
    if htu.contains(['?', '#']) {
        return Err(DpopError::Uri);
    }
    match (target_uri(htu), target_uri(check.url)) {
        (Some(a), Some(b)) if a == b => {}
        _ => return Err(DpopError::Uri),
    }
    let iat = claims
        .get("iat")
        .and_then(Value::as_i64)
        .ok_or(DpopError::Claim("iat"))?;
    if (iat - check.now).abs() > check.iat_window {
        return Err(DpopError::Iat(check.iat_window));
    }
    if let Some(token) = check.access_token {
        let ath = claims
            .get("ath")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !constant_time_eq(ath.as_bytes(), access_token_hash(token).as_bytes()) {
            return Err(DpopError::AccessTokenHash);
        }
    }
    if !check.nonces.is_empty() {
        let nonce = claims
            .get("nonce")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let known = nonce.len() <= MAX_NONCE_BYTES
            && check
                .nonces
                .iter()
                .any(|n| constant_time_eq(n.as_bytes(), nonce.as_bytes()));
        if !known {
            return Err(DpopError::UseNonce);
        }
    }
    Ok(VerifiedProof {
        jkt: jwk_thumbprint(jwk)?,
        jti: jti.to_owned(),
        iat,
        algorithm: alg,
    })
}

/// The `iat` of a proof, read without any check (tests and diagnostics only).
pub fn unverified_iat(proof: &str) -> Option<i64> {
    decode_object(proof.split('.').nth(1)?)?
        .get("iat")
        .and_then(Value::as_i64)
}

fn decode_object(part: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

fn verify_signature(proof: &str, jwk: &Value, alg: JwsAlgorithm) -> Result<(), DpopError> {
    let parsed: jsonwebtoken::jwk::Jwk =
        serde_json::from_value(jwk.clone()).map_err(|_| DpopError::Key("malformed".into()))?;
    let key = jsonwebtoken::DecodingKey::from_jwk(&parsed)
        .map_err(|_| DpopError::Key("malformed".into()))?;
    let alg = alg
        .as_str()
        .parse::<jsonwebtoken::Algorithm>()
        .map_err(|_| DpopError::Algorithm(alg.to_string()))?;
    let mut validation = jsonwebtoken::Validation::new(alg);
    // A proof has no exp, aud or iss; its claims are checked above.
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_aud = false;
    jsonwebtoken::decode::<Value>(proof, &key, &validation)
        .map(|_| ())
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => DpopError::Signature,
            _ => DpopError::Key("it cannot verify the signature".into()),
        })
}

/// Now, in seconds since the Unix epoch (the clock proofs' `iat` is read against).
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[path = "dpop_nonce.rs"]
mod nonce;
pub use nonce::{DEFAULT_NONCE_PERIOD, MIN_NONCE_SECRET_BYTES, NonceIssuer};

#[cfg(test)]
#[path = "dpop_tests.rs"]
mod tests;
