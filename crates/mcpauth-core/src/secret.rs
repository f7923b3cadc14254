//! Secrets as types: redacted `Debug`, no `Display`, constant-time equality.
//!
//! ```
//! use mcpauth_core::AccessToken;
//! let token = AccessToken::new("s3cr3t");
//! assert_eq!(format!("{token:?}"), "AccessToken(<redacted>)");
//! assert_eq!(token.expose(), "s3cr3t");
//! ```

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

macro_rules! secret_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps a secret value.
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            /// The secret itself: call this only where it goes on the wire or into the store.
            pub fn expose(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($name), "(<redacted>)"))
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                constant_time_eq(self.0.as_bytes(), other.0.as_bytes())
            }
        }

        impl Eq for $name {}
    };
}

secret_type!(
    /// An OAuth access token (RFC 6749 §1.4).
    AccessToken
);
secret_type!(
    /// An OAuth refresh token (RFC 6749 §1.5).
    RefreshToken
);
secret_type!(
    /// A client secret issued at registration (RFC 7591 §3.2.1).
    ClientSecret
);
secret_type!(
    /// An authorization code (RFC 6749 §4.1.2).
    AuthorizationCode
);
secret_type!(
    /// A PKCE code verifier (RFC 7636 §4.1).
    PkceVerifier
);
secret_type!(
    /// An assertion such as a signed JWT or an ID-JAG (RFC 7521, RFC 7523).
    Assertion
);
secret_type!(
    /// A device code (RFC 8628 §3.2).
    DeviceCode
);
secret_type!(
    /// A DPoP private key as base64url PKCS#8 DER, stored beside the tokens bound to it
    /// (RFC 9449 §4.2, SPEC D3).
    DpopPrivateKey
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let s = RefreshToken::new("rt-value");
        assert!(!format!("{s:?}").contains("rt-value"));
        assert!(!format!("{:?}", Some(ClientSecret::new("cs-value"))).contains("cs-value"));
    }

    #[test]
    fn equality_compares_values() {
        assert_eq!(AccessToken::new("a"), AccessToken::new("a"));
        assert_ne!(AccessToken::new("a"), AccessToken::new("b"));
        assert_ne!(AccessToken::new("a"), AccessToken::new("ab"));
    }

    #[test]
    fn serde_is_transparent() {
        let json = serde_json::to_string(&AccessToken::new("x")).unwrap();
        assert_eq!(json, "\"x\"");
        let back: AccessToken = serde_json::from_str(&json).unwrap();
        assert_eq!(back.expose(), "x");
    }
}
