//! Server-provided DPoP nonces (RFC 9449 §8 at the authorization server, §9 at the resource
//! server; SPEC D7) without server state: a nonce is the time slot it was made in and a MAC of
//! that slot under the server's secret. Every instance holding the same secret makes and
//! accepts the same nonces, so several instances behind a load balancer need no shared cache;
//! a proof's `jti` is still used once (the replay cache), the nonce only limits how far ahead a
//! proof can be made (RFC 9449 §11.2).

use std::fmt;

use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::DpopError;

/// How long one nonce slot lasts, in seconds: a nonce is accepted for two to three slots (the
/// one it was made in, the next, and one slot early for instances whose clocks differ).
pub const DEFAULT_NONCE_PERIOD: i64 = 60;
/// The shortest secret accepted, in bytes.
pub const MIN_NONCE_SECRET_BYTES: usize = 32;

/// Domain separation: the MAC input of a nonce starts with this label.
const LABEL: &[u8] = b"mcpauth DPoP nonce v1\0";
/// MAC bytes kept in a nonce (128 bits).
const TAG_BYTES: usize = 16;

/// Makes the current nonce and tells which nonces are accepted. `Debug` never shows the secret.
pub struct NonceIssuer {
    key: hmac::Key,
    period: i64,
}

impl fmt::Debug for NonceIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NonceIssuer")
            .field("period", &self.period)
            .finish_non_exhaustive()
    }
}

impl NonceIssuer {
    /// An issuer keyed with `secret` (at least [`MIN_NONCE_SECRET_BYTES`] bytes, e.g. one kept
    /// in the database that every instance shares), slots of [`DEFAULT_NONCE_PERIOD`].
    pub fn new(secret: &[u8]) -> Result<Self, DpopError> {
        if secret.len() < MIN_NONCE_SECRET_BYTES {
            return Err(DpopError::Signing(
                "the nonce secret is shorter than 32 bytes",
            ));
        }
        Ok(Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            period: DEFAULT_NONCE_PERIOD,
        })
    }

    /// An issuer with a new random secret (one instance: nonces die with the process).
    pub fn random() -> Result<Self, DpopError> {
        let mut secret = [0u8; 32];
        SystemRandom::new()
            .fill(&mut secret)
            .map_err(|_| DpopError::Signing("no randomness"))?;
        Self::new(&secret)
    }

    /// The same issuer with slots of `seconds` (at least one).
    pub fn with_period(mut self, seconds: i64) -> Self {
        self.period = seconds.max(1);
        self
    }

    /// The nonce to hand out at `now` (Unix seconds), in `DPoP-Nonce` (RFC 9449 §8.1).
    pub fn current(&self, now: i64) -> String {
        self.nonce(now.div_euclid(self.period))
    }

    /// The nonces a proof may carry at `now`: those of the previous, the current and the next
    /// slot.
    pub fn accepted(&self, now: i64) -> [String; 3] {
        let slot = now.div_euclid(self.period);
        [self.nonce(slot), self.nonce(slot - 1), self.nonce(slot + 1)]
    }

    fn nonce(&self, slot: i64) -> String {
        let slot = slot.to_be_bytes();
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(LABEL);
        ctx.update(&slot);
        let tag = ctx.sign();
        let mut bytes = [0u8; 8 + TAG_BYTES];
        bytes[..8].copy_from_slice(&slot);
        bytes[8..].copy_from_slice(&tag.as_ref()[..TAG_BYTES]);
        URL_SAFE_NO_PAD.encode(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn d7_a_nonce_is_accepted_in_its_slot_and_the_next_then_refused() {
        let n = NonceIssuer::new(&[7; 32]).unwrap();
        let made = n.current(1_000);
        // 32 characters of base64url: 8 bytes of slot, 16 of MAC.
        assert_eq!(made.len(), 32);
        assert!(
            made.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        assert_eq!(n.current(1_019), made, "the same slot gives the same nonce");
        for t in [1_000, 1_019, 1_020, 1_079] {
            assert!(n.accepted(t).contains(&made), "accepted at {t}");
        }
        assert!(
            !n.accepted(1_080).contains(&made),
            "two slots later it is stale"
        );
        // One slot early (another instance's clock a little behind) is accepted, two are not.
        assert!(n.accepted(959).contains(&made));
        assert!(!n.accepted(899).contains(&made));
    }

    #[test]
    fn d7_nonces_depend_on_the_secret_and_short_secrets_are_refused() {
        let a = NonceIssuer::new(&[1; 32]).unwrap();
        let b = NonceIssuer::new(&[2; 32]).unwrap();
        assert_ne!(a.current(5_000), b.current(5_000));
        assert!(!b.accepted(5_000).contains(&a.current(5_000)));
        assert!(NonceIssuer::new(&[1; 31]).is_err());
        let r = NonceIssuer::random().unwrap();
        assert!(!format!("{r:?}").contains("key"));
    }

    #[test]
    fn d7_the_period_sets_the_lifetime() {
        let n = NonceIssuer::new(&[3; 32]).unwrap().with_period(10);
        let made = n.current(100);
        assert!(n.accepted(119).contains(&made));
        assert!(!n.accepted(120).contains(&made));
    }
}
