//! Discovery documents: authorization server metadata (RFC 8414 §2, OpenID Connect Discovery 1.0
//! §3) and protected resource metadata (RFC 9728 §2). Unknown members round-trip in `extra`.

use serde::{Deserialize, Serialize};

use crate::{CoreError, pkce::S256};

type Extra = serde_json::Map<String, serde_json::Value>;

/// Authorization server metadata, from RFC 8414 or OpenID Connect Discovery.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AuthorizationServerMetadata {
    /// The issuer identifier; must equal the issuer the document was fetched for (MCP SPEC C6).
    pub issuer: String,
    /// `authorization_endpoint`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_endpoint: Option<String>,
    /// `token_endpoint`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint: Option<String>,
    /// `jwks_uri`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// `registration_endpoint` (RFC 7591)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_endpoint: Option<String>,
    /// `scopes_supported`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes_supported: Option<Vec<String>>,
    /// `response_types_supported`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_types_supported: Option<Vec<String>>,
    /// `grant_types_supported`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_types_supported: Option<Vec<String>>,
    /// `token_endpoint_auth_methods_supported`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
    /// `token_endpoint_auth_signing_alg_values_supported`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint_auth_signing_alg_values_supported: Option<Vec<String>>,
    /// `revocation_endpoint` (RFC 7009)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_endpoint: Option<String>,
    /// `introspection_endpoint` (RFC 7662)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introspection_endpoint: Option<String>,
    /// `device_authorization_endpoint` (RFC 8628)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_authorization_endpoint: Option<String>,
    /// `code_challenge_methods_supported` (RFC 7636; MCP SPEC C28)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_challenge_methods_supported: Option<Vec<String>>,
    /// `authorization_response_iss_parameter_supported` (RFC 9207 §3; MCP SPEC C19)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_response_iss_parameter_supported: Option<bool>,
    /// `client_id_metadata_document_supported` (MCP SPEC C12)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id_metadata_document_supported: Option<bool>,
    /// Members this type does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

impl AuthorizationServerMetadata {
    /// Parses a metadata document without the issuer check. Only for the MCP 2025-03-26 path,
    /// where the document is located from the MCP server's origin rather than from an issuer;
    /// everywhere else use [`Self::from_json_for_issuer`].
    pub fn from_json_located_by_origin(body: &[u8]) -> Result<Self, CoreError> {
        serde_json::from_slice(body).map_err(|source| CoreError::Json {
            what: "authorization server metadata",
            source,
        })
    }

    /// Parses a metadata document and checks that its `issuer` is `expected_issuer`, byte for byte
    /// (RFC 8414 §3.3, OIDC Discovery §4.3, MCP SPEC C6).
    pub fn from_json_for_issuer(body: &[u8], expected_issuer: &str) -> Result<Self, CoreError> {
        let doc = Self::from_json_located_by_origin(body)?;
        if doc.issuer != expected_issuer {
            return Err(CoreError::IssuerMismatch {
                expected: expected_issuer.to_owned(),
                found: doc.issuer,
            });
        }
        Ok(doc)
    }

    /// Whether PKCE `S256` is advertised (MCP SPEC C28: refuse the server if not).
    pub fn supports_s256(&self) -> bool {
        self.code_challenge_methods_supported
            .as_ref()
            .is_some_and(|m| m.iter().any(|m| m == S256))
    }

    /// Whether the server says it sends `iss` in authorization responses (RFC 9207 §3).
    pub fn iss_parameter_supported(&self) -> bool {
        self.authorization_response_iss_parameter_supported == Some(true)
    }

    /// Whether the server accepts URL client ids (client ID metadata documents, MCP SPEC C12).
    pub fn supports_client_id_metadata_documents(&self) -> bool {
        self.client_id_metadata_document_supported == Some(true)
    }

    /// Whether `scope` is listed in `scopes_supported`.
    pub fn lists_scope(&self, scope: &str) -> bool {
        self.scopes_supported
            .as_ref()
            .is_some_and(|s| s.iter().any(|s| s == scope))
    }

    /// Whether `method` is listed in `token_endpoint_auth_methods_supported`. An absent list means
    /// `client_secret_basic` only (RFC 8414 §2).
    pub fn supports_auth_method(&self, method: &str) -> bool {
        match &self.token_endpoint_auth_methods_supported {
            Some(m) => m.iter().any(|m| m == method),
            None => method == "client_secret_basic",
        }
    }
}

/// OAuth 2.0 protected resource metadata (RFC 9728 §2).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProtectedResourceMetadata {
    /// The resource identifier (RFC 9728 §2, required).
    pub resource: String,
    /// Issuers of the authorization servers that protect the resource (MCP SPEC S1: at least one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_servers: Option<Vec<String>>,
    /// `jwks_uri`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// `scopes_supported` (MCP SPEC S9: without `offline_access`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes_supported: Option<Vec<String>>,
    /// `bearer_methods_supported`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_methods_supported: Option<Vec<String>>,
    /// `resource_name`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_name: Option<String>,
    /// `resource_documentation`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_documentation: Option<String>,
    /// Members this type does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

impl ProtectedResourceMetadata {
    /// Parses a protected resource metadata document.
    pub fn from_json(body: &[u8]) -> Result<Self, CoreError> {
        serde_json::from_slice(body).map_err(|source| CoreError::Json {
            what: "protected resource metadata",
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c6_issuer_must_be_identical() {
        let body = br#"{"issuer":"https://as.example/","token_endpoint":"https://as.example/t"}"#;
        assert!(
            AuthorizationServerMetadata::from_json_for_issuer(body, "https://as.example/").is_ok()
        );
        let e = AuthorizationServerMetadata::from_json_for_issuer(body, "https://as.example")
            .unwrap_err();
        assert!(matches!(e, CoreError::IssuerMismatch { .. }), "{e}");
    }

    #[test]
    fn malformed_metadata_is_a_clear_error() {
        let e =
            AuthorizationServerMetadata::from_json_for_issuer(b"{\"issuer\":5}", "x").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("malformed authorization server metadata"),
            "{e}"
        );
        let e = ProtectedResourceMetadata::from_json(b"[]").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("malformed protected resource metadata"),
            "{e}"
        );
    }

    #[test]
    fn c28_s256_detection() {
        let mut m = AuthorizationServerMetadata::default();
        assert!(!m.supports_s256());
        m.code_challenge_methods_supported = Some(vec!["plain".into()]);
        assert!(!m.supports_s256());
        m.code_challenge_methods_supported = Some(vec!["plain".into(), "S256".into()]);
        assert!(m.supports_s256());
    }

    #[test]
    fn unknown_members_round_trip() {
        let body = r#"{"resource":"https://r","authorization_servers":["https://a"],"x-custom":{"k":[1]}}"#;
        let prm = ProtectedResourceMetadata::from_json(body.as_bytes()).unwrap();
        let back: serde_json::Value = serde_json::to_value(&prm).unwrap();
        assert_eq!(
            back,
            serde_json::from_str::<serde_json::Value>(body).unwrap()
        );
    }
}
