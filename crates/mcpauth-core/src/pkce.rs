//! PKCE with S256 (RFC 7636, OAuth 2.1 §4.1.1, MCP SPEC C28).
//!
//! ```
//! use mcpauth_core::pkce::{challenge_s256, new_verifier};
//! let verifier = new_verifier().unwrap();
//! assert_eq!(verifier.expose().len(), 43);
//! assert_eq!(challenge_s256(&verifier).len(), 43);
//! ```

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::{CoreError, PkceVerifier, random_urlsafe};

/// The only code challenge method mcpauth uses (MCP SPEC C28).
pub const S256: &str = "S256";

/// A fresh verifier: 32 random bytes, base64url (43 characters of the RFC 7636 §4.1 alphabet).
pub fn new_verifier() -> Result<PkceVerifier, CoreError> {
    random_urlsafe(32).map(PkceVerifier::new)
}

/// `BASE64URL(SHA256(verifier))` (RFC 7636 §4.2).
pub fn challenge_s256(verifier: &PkceVerifier) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.expose().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b_vector() {
        let v = PkceVerifier::new("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
        assert_eq!(
            challenge_s256(&v),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn verifiers_are_unique_and_in_alphabet() {
        let a = new_verifier().unwrap();
        let b = new_verifier().unwrap();
        assert_ne!(a, b);
        assert!(
            a.expose()
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
    }
}
