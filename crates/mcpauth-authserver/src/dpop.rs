//! DPoP at the token endpoint (RFC 9449 §5, SPEC D6): the proof of a token request is checked
//! ([`mcpauth_core::dpop::check_proof`], no `ath`), carries this server's nonce when nonces are
//! on (§8, SPEC D7), is used once across every instance (the database remembers it for its
//! `iat` window), and its key binds the tokens issued.

use axum::http::HeaderMap;
use mcpauth_core::ErrorCode;
use mcpauth_core::dpop::{self, DEFAULT_IAT_WINDOW, DpopError, ProofCheck};
use mcpauth_core::jose::JwsAlgorithm;
use sha2::{Digest, Sha256};

use crate::client_auth::TokenError;
use crate::params::oauth_error;
use crate::secrets::now;
use crate::server::Shared;

/// The proof algorithms accepted and advertised (`dpop_signing_alg_values_supported`):
/// asymmetric only, never `none` or HMAC (RFC 9449 §5.1).
pub(crate) const DPOP_ALGORITHMS: [JwsAlgorithm; 9] = JwsAlgorithm::ALL;

/// The error of a refused proof (RFC 9449 §5, §12.2): 400 `invalid_dpop_proof`.
pub(crate) fn invalid_proof(description: &str) -> TokenError {
    TokenError::bad(oauth_error(
        ErrorCode::Other("invalid_dpop_proof".into()),
        description,
    ))
}

/// The error of a proof that failed `check`: 400 `use_dpop_nonce` for a missing or stale nonce
/// (RFC 9449 §8; the response carries a fresh `DPoP-Nonce`), else `invalid_dpop_proof`.
fn refused(e: &DpopError) -> TokenError {
    TokenError::bad(oauth_error(
        ErrorCode::Other(e.error_code().into()),
        &e.to_string(),
    ))
}

/// The key thumbprint of the request's DPoP proof, or `None` without one. A proof that fails a
/// check, or was used before, is refused.
pub(crate) async fn proof_key(
    shared: &Shared,
    headers: &HeaderMap,
    endpoint: &str,
) -> Result<Option<String>, TokenError> {
    let mut values = Vec::new();
    for v in headers.get_all("dpop") {
        values.push(
            v.to_str()
                .map_err(|_| invalid_proof("the DPoP header is not ASCII"))?,
        );
    }
    if values.is_empty() {
        return Ok(None);
    }
    let now = now();
    let accepted = shared.nonces.as_ref().map(|n| n.accepted(now));
    let accepted: Vec<&str> = accepted.iter().flatten().map(String::as_str).collect();
    let mut check = ProofCheck::new("POST", endpoint, now);
    check.algorithms = &DPOP_ALGORITHMS;
    check.nonces = &accepted;
    let proof = dpop::check_proof(&values, &check).map_err(|e| refused(&e))?;
    let hash = Sha256::new()
        .chain_update(proof.jkt.as_bytes())
        .chain_update([0])
        .chain_update(proof.jti.as_bytes())
        .finalize();
    let hash = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, hash);
    if !shared
        .store
        .dpop_first_use(&hash, proof.iat + DEFAULT_IAT_WINDOW + 1)
        .await?
    {
        return Err(invalid_proof(
            "the DPoP proof was already used (RFC 9449 §11.1)",
        ));
    }
    Ok(Some(proof.jkt))
}
