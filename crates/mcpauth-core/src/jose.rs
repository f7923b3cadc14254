//! Which signature algorithm a JSON Web Key may verify (RFC 7517 §4, RFC 7518 §3.1, RFC 8037
//! §3.1), decided from the key's own `kty`, `crv`, `alg` and `use` and a list of algorithms the
//! caller accepts. The one rule for every place that verifies a JWT with keys from a JWK set
//! (access tokens at a resource server, client assertions at the token endpoint):
//!
//! - only asymmetric keys: EC P-256 and P-384, OKP Ed25519, RSA; never `oct` (a symmetric key
//!   published in a JWK set would turn the set into a shared HMAC secret);
//! - an `alg` member must be an asymmetric signature algorithm of the key's type;
//! - only algorithms in the caller's list (e.g. the advertised
//!   `token_endpoint_auth_signing_alg_values_supported`, RFC 8414 §2).
//!
//! The token header's `alg` only picks among the algorithms returned here; it is never trusted
//! on its own (RFC 8725 §3.1).
//!
//! ```
//! use mcpauth_core::jose::{JwkError, JwkParams, JwsAlgorithm, signature_algorithms};
//! let ec = JwkParams { kty: "EC", crv: Some("P-256"), alg: None, key_use: None };
//! assert_eq!(signature_algorithms(&ec, &JwsAlgorithm::ALL), Ok(vec![JwsAlgorithm::ES256]));
//! let oct = JwkParams { kty: "oct", crv: None, alg: Some("HS256"), key_use: None };
//! assert_eq!(signature_algorithms(&oct, &JwsAlgorithm::ALL), Err(JwkError::Symmetric));
//! ```

use std::fmt;

use serde_json::Value;

/// A JWS algorithm with an asymmetric key (RFC 7518 §3.1, RFC 8037 §3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JwsAlgorithm {
    /// ECDSA with P-256 and SHA-256.
    ES256,
    /// ECDSA with P-384 and SHA-384.
    ES384,
    /// EdDSA (Ed25519 keys only here).
    EdDSA,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
}

impl JwsAlgorithm {
    /// Every algorithm of this type.
    pub const ALL: [JwsAlgorithm; 9] = [
        JwsAlgorithm::ES256,
        JwsAlgorithm::ES384,
        JwsAlgorithm::EdDSA,
        JwsAlgorithm::RS256,
        JwsAlgorithm::RS384,
        JwsAlgorithm::RS512,
        JwsAlgorithm::PS256,
        JwsAlgorithm::PS384,
        JwsAlgorithm::PS512,
    ];

    /// The algorithm's name (its `alg` value).
    pub fn as_str(self) -> &'static str {
        match self {
            JwsAlgorithm::ES256 => "ES256",
            JwsAlgorithm::ES384 => "ES384",
            JwsAlgorithm::EdDSA => "EdDSA",
            JwsAlgorithm::RS256 => "RS256",
            JwsAlgorithm::RS384 => "RS384",
            JwsAlgorithm::RS512 => "RS512",
            JwsAlgorithm::PS256 => "PS256",
            JwsAlgorithm::PS384 => "PS384",
            JwsAlgorithm::PS512 => "PS512",
        }
    }

    /// The algorithm named `name` (case-sensitive, RFC 7515 §4.1.1), if it is one of these.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == name)
    }
}

impl fmt::Display for JwsAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The members of a JWK that decide what it may verify.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JwkParams<'a> {
    /// `kty` (RFC 7517 §4.1); empty when absent.
    pub kty: &'a str,
    /// `crv` (RFC 7518 §6.2.1.1, RFC 8037 §2).
    pub crv: Option<&'a str>,
    /// `alg` (RFC 7517 §4.4).
    pub alg: Option<&'a str>,
    /// `use` (RFC 7517 §4.2).
    pub key_use: Option<&'a str>,
}

impl<'a> JwkParams<'a> {
    /// The members of a JWK given as JSON; members that are missing or not strings are `None`
    /// (a missing `kty` is empty, which no rule accepts).
    pub fn from_json(jwk: &'a Value) -> Self {
        let member = |name: &str| jwk.get(name).and_then(Value::as_str);
        JwkParams {
            kty: member("kty").unwrap_or_default(),
            crv: member("crv"),
            alg: member("alg"),
            key_use: member("use"),
        }
    }
}

/// Why a JWK may not verify signatures here.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwkError {
    /// An `oct` key: a shared secret, never accepted from a JWK set (RFC 8725 §3.1).
    #[error("symmetric (`oct`) keys are never accepted from a JWK set")]
    Symmetric,
    /// A `use` other than `sig` (RFC 7517 §4.2).
    #[error("not a signature key (`use` is {0:?})")]
    NotForSignature(String),
    /// A `kty` other than `EC`, `OKP`, `RSA` and `oct`.
    #[error("unsupported key type {0:?}")]
    UnsupportedKeyType(String),
    /// An `EC` or `OKP` key on a curve without a supported algorithm.
    #[error("unsupported curve {crv:?} for key type {kty}")]
    UnsupportedCurve {
        /// `EC` or `OKP`.
        kty: &'static str,
        /// The key's `crv`, if any.
        crv: Option<String>,
    },
    /// An `alg` that is not an asymmetric signature algorithm (e.g. `HS256`, `none`,
    /// `RSA-OAEP`).
    #[error("`alg` {0:?} is not an asymmetric signature algorithm")]
    UnsupportedAlgorithm(String),
    /// An `alg` that the key's type cannot compute (e.g. `RS256` on an EC key).
    #[error("`alg` {alg} does not match the key type {kty}")]
    AlgorithmMismatch {
        /// The key's `alg`.
        alg: JwsAlgorithm,
        /// Its `kty`.
        kty: &'static str,
    },
    /// The key suits only algorithms the caller does not accept.
    #[error("the key is only for {0}, which is not accepted here")]
    NotAccepted(String),
}

/// The algorithms `jwk` may verify, among `accepted` (in the order of [`JwsAlgorithm::ALL`]):
/// those its type allows, or only its `alg` when it names one. Never empty when `Ok`.
pub fn signature_algorithms(
    jwk: &JwkParams<'_>,
    accepted: &[JwsAlgorithm],
) -> Result<Vec<JwsAlgorithm>, JwkError> {
    use JwsAlgorithm::*;
    if let Some(u) = jwk.key_use.filter(|u| *u != "sig") {
        return Err(JwkError::NotForSignature(u.to_owned()));
    }
    let (kty, by_type): (&'static str, &[JwsAlgorithm]) = match jwk.kty {
        "EC" => match jwk.crv {
            Some("P-256") => ("EC", &[ES256]),
            Some("P-384") => ("EC", &[ES384]),
            crv => {
                return Err(JwkError::UnsupportedCurve {
                    kty: "EC",
                    crv: crv.map(str::to_owned),
                });
            }
        },
        "OKP" => match jwk.crv {
            Some("Ed25519") => ("OKP", &[EdDSA]),
            crv => {
                return Err(JwkError::UnsupportedCurve {
                    kty: "OKP",
                    crv: crv.map(str::to_owned),
                });
            }
        },
        "RSA" => ("RSA", &[RS256, RS384, RS512, PS256, PS384, PS512]),
        "oct" => return Err(JwkError::Symmetric),
        other => return Err(JwkError::UnsupportedKeyType(other.to_owned())),
    };
    let allowed: Vec<JwsAlgorithm> = match jwk.alg {
        None => by_type.to_vec(),
        Some(name) => {
            let alg = JwsAlgorithm::from_name(name)
                .ok_or_else(|| JwkError::UnsupportedAlgorithm(name.to_owned()))?;
            if !by_type.contains(&alg) {
                return Err(JwkError::AlgorithmMismatch { alg, kty });
            }
            vec![alg]
        }
    };
    let usable: Vec<JwsAlgorithm> = allowed
        .iter()
        .copied()
        .filter(|a| accepted.contains(a))
        .collect();
    if usable.is_empty() {
        let names: Vec<&str> = allowed.iter().map(|a| a.as_str()).collect();
        return Err(JwkError::NotAccepted(names.join(", ")));
    }
    Ok(usable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn algs(jwk: Value, accepted: &[JwsAlgorithm]) -> Result<Vec<JwsAlgorithm>, JwkError> {
        signature_algorithms(&JwkParams::from_json(&jwk), accepted)
    }

    #[test]
    fn the_key_type_decides_and_alg_narrows() {
        use JwsAlgorithm::*;
        let all = &JwsAlgorithm::ALL;
        assert_eq!(
            algs(json!({"kty": "EC", "crv": "P-256"}), all),
            Ok(vec![ES256])
        );
        assert_eq!(
            algs(json!({"kty": "EC", "crv": "P-384"}), all),
            Ok(vec![ES384])
        );
        assert_eq!(
            algs(
                json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig"}),
                all
            ),
            Ok(vec![EdDSA])
        );
        assert_eq!(
            algs(json!({"kty": "RSA"}), all),
            Ok(vec![RS256, RS384, RS512, PS256, PS384, PS512])
        );
        assert_eq!(
            algs(json!({"kty": "RSA", "alg": "PS384"}), all),
            Ok(vec![PS384])
        );
        // Only the caller's algorithms (e.g. the advertised ones).
        assert_eq!(
            algs(json!({"kty": "RSA"}), &[ES256, RS256]),
            Ok(vec![RS256])
        );
        assert_eq!(
            algs(json!({"kty": "RSA", "alg": "PS256"}), &[ES256, RS256]),
            Err(JwkError::NotAccepted("PS256".into()))
        );
        assert_eq!(
            algs(json!({"kty": "EC", "crv": "P-384"}), &[ES256]),
            Err(JwkError::NotAccepted("ES384".into()))
        );
    }

    #[test]
    fn symmetric_keys_and_foreign_algorithms_are_refused() {
        let all = &JwsAlgorithm::ALL;
        assert_eq!(
            algs(json!({"kty": "oct", "k": "c2VjcmV0", "alg": "HS256"}), all),
            Err(JwkError::Symmetric)
        );
        assert_eq!(algs(json!({"kty": "oct"}), all), Err(JwkError::Symmetric));
        assert_eq!(
            algs(json!({"kty": "EC", "crv": "P-256", "alg": "HS256"}), all),
            Err(JwkError::UnsupportedAlgorithm("HS256".into()))
        );
        assert_eq!(
            algs(json!({"kty": "EC", "crv": "P-256", "alg": "none"}), all),
            Err(JwkError::UnsupportedAlgorithm("none".into()))
        );
        assert_eq!(
            algs(json!({"kty": "EC", "crv": "P-256", "alg": "RS256"}), all),
            Err(JwkError::AlgorithmMismatch {
                alg: JwsAlgorithm::RS256,
                kty: "EC"
            })
        );
        assert_eq!(
            algs(json!({"kty": "EC", "crv": "P-256", "use": "enc"}), all),
            Err(JwkError::NotForSignature("enc".into()))
        );
        assert!(matches!(
            algs(json!({"kty": "EC", "crv": "secp256k1"}), all),
            Err(JwkError::UnsupportedCurve { kty: "EC", .. })
        ));
        assert!(matches!(
            algs(json!({"kty": "OKP", "crv": "X25519"}), all),
            Err(JwkError::UnsupportedCurve { kty: "OKP", .. })
        ));
        assert_eq!(
            algs(json!({"crv": "P-256"}), all),
            Err(JwkError::UnsupportedKeyType(String::new()))
        );
    }

    #[test]
    fn names_round_trip() {
        for a in JwsAlgorithm::ALL {
            assert_eq!(JwsAlgorithm::from_name(a.as_str()), Some(a));
        }
        assert_eq!(JwsAlgorithm::from_name("es256"), None);
        assert_eq!(JwsAlgorithm::from_name("HS256"), None);
    }
}
