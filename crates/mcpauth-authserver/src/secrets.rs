//! Random values, hashes of high-entropy secrets, and time.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// Seconds since the Unix epoch.
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// 32 random bytes, base64url: codes, refresh tokens, client secrets, session ids.
pub(crate) fn random_secret() -> String {
    random_bytes_b64(32)
}

/// `n` random bytes, base64url.
pub(crate) fn random_bytes_b64(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    // The OS CSPRNG failing is unrecoverable for a security server.
    getrandom::fill(&mut bytes).expect("the operating system's random number generator failed");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// SHA-256 of a high-entropy secret, hex: how codes, refresh tokens, client secrets and session
/// ids are stored (a fast hash is enough for 256-bit random values).
pub(crate) fn hash_secret(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// base64url of SHA-256 of the parts joined by NUL: CSRF tokens and key ids.
pub(crate) fn digest_b64(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update([0u8]);
        }
        h.update(p.as_bytes());
    }
    URL_SAFE_NO_PAD.encode(h.finalize())
}

/// Encrypts `plaintext` under a key derived from `key_material` (AES-256-GCM, random nonce):
/// a rotated refresh token's successor is kept this way, readable only by whoever presents the
/// rotated token again within the grace window.
pub(crate) fn seal(key_material: &str, plaintext: &str) -> String {
    use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
    let key = seal_key(key_material);
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).expect("32-byte key"));
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).expect("the operating system's random number generator failed");
    let mut data = plaintext.as_bytes().to_vec();
    key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut data)
        .expect("AES-GCM sealing cannot fail for small inputs");
    let mut out = nonce.to_vec();
    out.extend_from_slice(&data);
    URL_SAFE_NO_PAD.encode(out)
}

/// Reverses [`seal`]; `None` for a wrong key or tampered data.
pub(crate) fn unseal(key_material: &str, sealed: &str) -> Option<String> {
    use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
    let raw = URL_SAFE_NO_PAD.decode(sealed).ok()?;
    if raw.len() < NONCE_LEN {
        return None;
    }
    let (nonce, data) = raw.split_at(NONCE_LEN);
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &seal_key(key_material)).ok()?);
    let mut data = data.to_vec();
    let plain = key
        .open_in_place(
            Nonce::try_assume_unique_for_key(nonce).ok()?,
            Aad::empty(),
            &mut data,
        )
        .ok()?;
    String::from_utf8(plain.to_vec()).ok()
}

fn seal_key(key_material: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"mcpauth refresh successor v1\0");
    h.update(key_material.as_bytes());
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_and_hashes_stable() {
        assert_ne!(random_secret(), random_secret());
        assert_eq!(random_secret().len(), 43);
        assert_eq!(hash_secret("abc"), hash_secret("abc"));
        assert_eq!(
            hash_secret("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_ne!(digest_b64(&["a", "bc"]), digest_b64(&["ab", "c"]));
    }

    #[test]
    fn sealed_successors_open_only_with_the_old_token() {
        let sealed = seal("old-token", "successor");
        assert_eq!(unseal("old-token", &sealed).as_deref(), Some("successor"));
        assert_eq!(unseal("other", &sealed), None);
        assert_eq!(unseal("old-token", "AAAA"), None);
    }
}
