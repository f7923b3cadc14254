//! User passwords: argon2id PHC strings.

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::config::PasswordParams;
use crate::error::AuthServerError;

fn argon2(p: PasswordParams) -> Result<Argon2<'static>, AuthServerError> {
    let params = Params::new(p.memory_kib, p.iterations, p.parallelism, None)
        .map_err(|e| AuthServerError::Password(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes a password (CPU-heavy: call from a blocking task).
pub(crate) fn hash(password: &str, params: PasswordParams) -> Result<String, AuthServerError> {
    argon2(params)?
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| AuthServerError::Password(e.to_string()))
}

/// Verifies a password against a PHC string, with the parameters the string carries.
pub(crate) fn verify(password: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2id_round_trip() {
        let p = PasswordParams::insecure_for_tests();
        let h = hash("correct horse", p).unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("correct horse", &h));
        assert!(!verify("wrong", &h));
        assert!(!verify("x", "not a hash"));
    }
}
