//! Access-token signing keys (ES256 by default, EdDSA as an option), kept in the database so
//! every instance signs with the same key; the JWKS with the current and previous public keys;
//! and verification of our own tokens with the key's algorithm, never the header's alone.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::config::SigningAlg;
use crate::error::AuthServerError;
use crate::secrets::{digest_b64, now};
use crate::store::{KeyRow, Store};

/// How often the key set is re-read from the database (to follow a rotation made elsewhere).
const RELOAD_EVERY: Duration = Duration::from_secs(60);

enum Signer {
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// A usable key.
pub(crate) struct LoadedKey {
    pub kid: String,
    pub alg: SigningAlg,
    signer: Signer,
    decoding: DecodingKey,
    pub jwk: Value,
}

struct Keys {
    current: Arc<LoadedKey>,
    all: Vec<Arc<LoadedKey>>,
}

/// The signing keys of this server.
pub(crate) struct KeyRing {
    store: Store,
    alg: SigningAlg,
    keys: Mutex<(Arc<Keys>, Instant)>,
    rng: SystemRandom,
}

crate::redacted_debug!(KeyRing);

fn crypto(e: impl std::fmt::Display) -> AuthServerError {
    AuthServerError::Crypto(e.to_string())
}

/// Generates a key pair and its stored form (status `current`).
pub(crate) fn generate(alg: SigningAlg) -> Result<KeyRow, AuthServerError> {
    let rng = SystemRandom::new();
    let pkcs8 = match alg {
        SigningAlg::Es256 => EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(crypto)?
            .as_ref()
            .to_vec(),
        SigningAlg::EdDsa => Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(crypto)?
            .as_ref()
            .to_vec(),
    };
    let loaded = load_key(alg, &pkcs8)?;
    Ok(KeyRow {
        kid: loaded.kid,
        alg: alg.as_str().to_owned(),
        private_pkcs8: STANDARD.encode(&pkcs8),
        public_jwk: loaded.jwk.to_string(),
        status: "current".into(),
        created_at: now(),
    })
}

/// Builds the signer, verifier and JWK of a PKCS#8 private key. The kid is the RFC 7638
/// thumbprint.
fn load_key(alg: SigningAlg, pkcs8: &[u8]) -> Result<LoadedKey, AuthServerError> {
    let (signer, thumb_input, mut jwk, decoding) = match alg {
        SigningAlg::Es256 => {
            let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
                .map_err(crypto)?;
            let point = kp.public_key().as_ref();
            if point.len() != 65 || point[0] != 4 {
                return Err(crypto("unexpected P-256 public key encoding"));
            }
            let x = URL_SAFE_NO_PAD.encode(&point[1..33]);
            let y = URL_SAFE_NO_PAD.encode(&point[33..]);
            let thumb = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
            let decoding = DecodingKey::from_ec_components(&x, &y).map_err(crypto)?;
            let jwk = json!({"kty": "EC", "crv": "P-256", "x": x, "y": y});
            (Signer::Ec(kp), thumb, jwk, decoding)
        }
        SigningAlg::EdDsa => {
            let kp = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(crypto)?;
            let x = URL_SAFE_NO_PAD.encode(kp.public_key().as_ref());
            let thumb = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
            let decoding = DecodingKey::from_ed_components(&x).map_err(crypto)?;
            let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": x});
            (Signer::Ed(kp), thumb, jwk, decoding)
        }
    };
    let kid = digest_b64(&[&thumb_input]);
    jwk["kid"] = json!(kid);
    jwk["use"] = json!("sig");
    jwk["alg"] = json!(alg.as_str());
    Ok(LoadedKey {
        kid,
        alg,
        signer,
        decoding,
        jwk,
    })
}

fn load_row(row: &KeyRow) -> Result<LoadedKey, AuthServerError> {
    let alg = SigningAlg::parse(&row.alg)
        .ok_or_else(|| crypto(format!("unknown key algorithm {:?}", row.alg)))?;
    let pkcs8 = STANDARD.decode(&row.private_pkcs8).map_err(crypto)?;
    load_key(alg, &pkcs8)
}

impl KeyRing {
    /// Loads the keys, generating the first one when the database has none.
    pub(crate) async fn load(store: Store, alg: SigningAlg) -> Result<KeyRing, AuthServerError> {
        let keys = read_keys(&store, alg).await?;
        Ok(KeyRing {
            store,
            alg,
            keys: Mutex::new((keys, Instant::now())),
            rng: SystemRandom::new(),
        })
    }

    async fn current_keys(&self, max_age: Duration) -> Result<Arc<Keys>, AuthServerError> {
        let (keys, at) = self.keys.lock().unwrap().clone();
        if at.elapsed() < max_age {
            return Ok(keys);
        }
        let fresh = read_keys(&self.store, self.alg).await?;
        *self.keys.lock().unwrap() = (fresh.clone(), Instant::now());
        Ok(fresh)
    }

    /// Re-reads the keys now (after a rotation by this process).
    pub(crate) async fn reload(&self) -> Result<(), AuthServerError> {
        self.current_keys(Duration::ZERO).await.map(|_| ())
    }

    /// The JWK set: current and previous public keys.
    pub(crate) async fn jwks(&self) -> Result<Value, AuthServerError> {
        let keys = self.current_keys(RELOAD_EVERY).await?;
        Ok(json!({"keys": keys.all.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()}))
    }

    /// The algorithms of the active keys, current first.
    pub(crate) fn algorithms(&self) -> Vec<&'static str> {
        let keys = self.keys.lock().unwrap().0.clone();
        let mut out = vec![keys.current.alg.as_str()];
        for k in &keys.all {
            if !out.contains(&k.alg.as_str()) {
                out.push(k.alg.as_str());
            }
        }
        out
    }

    /// Signs `claims` as a JWT with the current key and header `typ`.
    pub(crate) async fn sign<T: Serialize>(
        &self,
        typ: &str,
        claims: &T,
    ) -> Result<String, AuthServerError> {
        let keys = self.current_keys(RELOAD_EVERY).await?;
        let key = &keys.current;
        let header = json!({"alg": key.alg.as_str(), "typ": typ, "kid": key.kid});
        let mut jwt = URL_SAFE_NO_PAD.encode(header.to_string());
        jwt.push('.');
        jwt.push_str(&URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).map_err(crypto)?));
        let sig = match &key.signer {
            Signer::Ec(kp) => kp
                .sign(&self.rng, jwt.as_bytes())
                .map_err(crypto)?
                .as_ref()
                .to_vec(),
            Signer::Ed(kp) => kp.sign(jwt.as_bytes()).as_ref().to_vec(),
        };
        jwt.push('.');
        jwt.push_str(&URL_SAFE_NO_PAD.encode(sig));
        Ok(jwt)
    }

    /// Verifies a JWT signed by one of our keys: the key is chosen by `kid` and its algorithm is
    /// the only one accepted (so `alg: none` and HS256-with-the-public-key fail); `typ` must
    /// match; `iss` must be `issuer`; `exp` must be in the future. `aud` is left to the caller.
    pub(crate) async fn verify<T: DeserializeOwned>(
        &self,
        token: &str,
        typ: &str,
        issuer: &str,
    ) -> Option<T> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        if header.typ.as_deref() != Some(typ) {
            return None;
        }
        let kid = header.kid?;
        let mut keys = self.current_keys(RELOAD_EVERY).await.ok()?;
        if !keys.all.iter().any(|k| k.kid == kid) {
            // Possibly rotated by another instance.
            keys = self.current_keys(Duration::from_secs(5)).await.ok()?;
        }
        let key = keys.all.iter().find(|k| k.kid == kid)?;
        let alg = match key.alg {
            SigningAlg::Es256 => Algorithm::ES256,
            SigningAlg::EdDsa => Algorithm::EdDSA,
        };
        let mut v = Validation::new(alg);
        v.validate_aud = false;
        v.leeway = 0;
        v.set_issuer(&[issuer]);
        v.set_required_spec_claims(&["exp", "iss", "sub"]);
        jsonwebtoken::decode::<T>(token, &key.decoding, &v)
            .ok()
            .map(|d| d.claims)
    }
}

async fn read_keys(store: &Store, alg: SigningAlg) -> Result<Arc<Keys>, AuthServerError> {
    let mut rows = store.active_keys().await?;
    if rows.is_empty() {
        // First start: generate; a concurrent first start of another instance may win.
        store.insert_first_key(&generate(alg)?).await?;
        rows = store.active_keys().await?;
    }
    let all = rows
        .iter()
        .map(|r| load_row(r).map(Arc::new))
        .collect::<Result<Vec<_>, _>>()?;
    let current = rows
        .iter()
        .position(|r| r.status == "current")
        .map(|i| all[i].clone())
        .or_else(|| all.first().cloned())
        .ok_or_else(|| crypto("no signing key"))?;
    Ok(Arc::new(Keys { current, all }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sign_and_verify_both_algorithms() {
        for alg in [SigningAlg::Es256, SigningAlg::EdDsa] {
            let store = Store::connect("sqlite::memory:").await.unwrap();
            let ring = KeyRing::load(store, alg).await.unwrap();
            let claims = json!({"iss": "https://as", "sub": "u", "exp": now() + 60});
            let jwt = ring.sign("at+jwt", &claims).await.unwrap();
            let back: Value = ring.verify(&jwt, "at+jwt", "https://as").await.unwrap();
            assert_eq!(back["sub"], "u");
            assert!(
                ring.verify::<Value>(&jwt, "JWT", "https://as")
                    .await
                    .is_none()
            );
            assert!(
                ring.verify::<Value>(&jwt, "at+jwt", "https://other")
                    .await
                    .is_none()
            );
            let jwks = ring.jwks().await.unwrap();
            assert_eq!(jwks["keys"][0]["alg"], alg.as_str());
            assert!(jwks["keys"][0].get("d").is_none());
        }
    }
}
