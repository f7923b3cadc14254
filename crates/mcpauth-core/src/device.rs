//! The device authorization response (RFC 8628 §3.2).
//!
//! ```
//! use mcpauth_core::device::DeviceAuthorization;
//! let d = DeviceAuthorization::from_json(br#"{"device_code":"d","user_code":"WDJB-MJHT",
//!     "verification_uri":"https://as.example/device","expires_in":"1800"}"#).unwrap();
//! assert_eq!(d.interval, 5);
//! assert_eq!(d.expires_in, 1800);
//! ```

use serde::{Deserialize, Deserializer};

use crate::{CoreError, DeviceCode};

/// What the device authorization endpoint returns.
#[derive(Clone, Debug, Deserialize)]
pub struct DeviceAuthorization {
    /// The code the client polls with (a secret).
    pub device_code: DeviceCode,
    /// The code the user types.
    pub user_code: String,
    /// Where the user goes.
    pub verification_uri: String,
    /// The same with the user code filled in, if offered.
    #[serde(default)]
    pub verification_uri_complete: Option<String>,
    /// Lifetime of the codes in seconds.
    #[serde(deserialize_with = "seconds")]
    pub expires_in: u64,
    /// Seconds between polls (RFC 8628 §3.2: 5 when absent).
    #[serde(default = "five", deserialize_with = "seconds")]
    pub interval: u64,
}

fn five() -> u64 {
    5
}

fn seconds<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    use serde::de::Error;
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| D::Error::custom("must be a non-negative integer")),
        serde_json::Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| D::Error::custom("must be a non-negative integer")),
        _ => Err(D::Error::custom("must be a number")),
    }
}

impl DeviceAuthorization {
    /// Parses a device authorization response.
    pub fn from_json(body: &[u8]) -> Result<Self, CoreError> {
        serde_json::from_slice(body).map_err(|source| CoreError::Json {
            what: "device authorization response",
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_fields_are_clear_errors() {
        let e = DeviceAuthorization::from_json(
            br#"{"device_code":"d","user_code":"u","expires_in":5}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("verification_uri"), "{e}");
        assert!(!format!("{:?}", DeviceAuthorization::from_json(
            br#"{"device_code":"secret-dc","user_code":"u","verification_uri":"https://x/d","expires_in":5}"#
        ).unwrap()).contains("secret-dc"));
    }
}
