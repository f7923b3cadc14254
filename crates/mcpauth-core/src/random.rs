//! Cryptographic randomness for `state`, PKCE verifiers and other unguessable values.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::CoreError;

/// `n` bytes from the operating system's CSPRNG, base64url-encoded without padding.
///
/// ```
/// let state = mcpauth_core::random_urlsafe(32).unwrap();
/// assert_eq!(state.len(), 43);
/// ```
pub fn random_urlsafe(n: usize) -> Result<String, CoreError> {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).map_err(CoreError::Random)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}
