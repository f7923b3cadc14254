//! Client registration documents: RFC 7591 client metadata and registration responses, and
//! client ID metadata documents (MCP SPEC C11).

use serde::{Deserialize, Serialize};

use crate::{ClientSecret, CoreError};

type Extra = serde_json::Map<String, serde_json::Value>;

/// Client metadata (RFC 7591 §2, OIDC Dynamic Client Registration `application_type`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientMetadata {
    /// `redirect_uris`
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redirect_uris: Vec<String>,
    /// `token_endpoint_auth_method`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint_auth_method: Option<String>,
    /// `grant_types` (MCP SPEC C25: include `refresh_token`)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grant_types: Vec<String>,
    /// `response_types`
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub response_types: Vec<String>,
    /// `client_name`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    /// `client_uri`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_uri: Option<String>,
    /// `scope`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// `software_id`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_id: Option<String>,
    /// `software_version`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_version: Option<String>,
    /// `application_type`: `native` or `web` (MCP SPEC C14).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_type: Option<String>,
    /// `jwks_uri`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// `jwks`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<serde_json::Value>,
    /// Members this type does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A client ID metadata document: client metadata whose `client_id` is the URL it is served
/// from (MCP SPEC C11, A9).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClientIdMetadataDocument {
    /// The document's own HTTPS URL.
    pub client_id: String,
    /// The rest of the metadata.
    #[serde(flatten)]
    pub metadata: ClientMetadata,
}

impl ClientIdMetadataDocument {
    /// Parses a document fetched from `url` and checks the rules of MCP SPEC C11/A9: `client_id`
    /// equals the URL exactly, the URL is HTTPS with a path, and `client_name` and
    /// `redirect_uris` are present.
    pub fn from_json_for_url(body: &[u8], url: &str) -> Result<Self, CoreError> {
        let doc: Self = serde_json::from_slice(body).map_err(|source| CoreError::Json {
            what: "client ID metadata document",
            source,
        })?;
        let invalid = |reason: String| CoreError::InvalidDocument {
            what: "client ID metadata document",
            reason,
        };
        if doc.client_id != url {
            return Err(invalid(format!(
                "client_id {:?} differs from the document URL {url:?}",
                doc.client_id
            )));
        }
        check_client_id_url(url)?;
        if doc.metadata.client_name.is_none() {
            return Err(invalid("client_name is missing".into()));
        }
        if doc.metadata.redirect_uris.is_empty() {
            return Err(invalid("redirect_uris is missing".into()));
        }
        Ok(doc)
    }
}

/// Checks that a URL may serve as a client ID: `https` with a non-root path (MCP SPEC C11).
pub fn check_client_id_url(url: &str) -> Result<(), CoreError> {
    let parsed = url::Url::parse(url).map_err(|e| CoreError::InvalidUrl {
        url: url.to_owned(),
        reason: e.to_string(),
    })?;
    if parsed.scheme() != "https" || parsed.path() == "/" || parsed.fragment().is_some() {
        return Err(CoreError::InvalidUrl {
            url: url.to_owned(),
            reason: "a client ID metadata document URL must be https with a path and no fragment \
                     (MCP SPEC C11)"
                .into(),
        });
    }
    Ok(())
}

/// A successful registration response (RFC 7591 §3.2.1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClientInformation {
    /// The issued client identifier.
    pub client_id: String,
    /// The issued secret, for confidential clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<ClientSecret>,
    /// `client_id_issued_at`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id_issued_at: Option<u64>,
    /// `client_secret_expires_at` (0 = never)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_expires_at: Option<u64>,
    /// The registered metadata as the server echoes it.
    #[serde(flatten)]
    pub metadata: ClientMetadata,
}

impl ClientInformation {
    /// Parses a registration response.
    pub fn from_json(body: &[u8]) -> Result<Self, CoreError> {
        serde_json::from_slice(body).map_err(|source| CoreError::Json {
            what: "client registration response",
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://client.example/mcp-client.json";

    #[test]
    fn c11_cimd_client_id_must_equal_url() {
        let ok = format!(
            r#"{{"client_id":"{URL}","client_name":"x","redirect_uris":["http://127.0.0.1/cb"]}}"#
        );
        assert!(ClientIdMetadataDocument::from_json_for_url(ok.as_bytes(), URL).is_ok());
        let e = ClientIdMetadataDocument::from_json_for_url(
            ok.as_bytes(),
            "https://client.example/other",
        )
        .unwrap_err();
        assert!(e.to_string().contains("differs"), "{e}");
    }

    #[test]
    fn c11_cimd_requires_name_and_redirects() {
        let doc = format!(r#"{{"client_id":"{URL}","client_name":"x"}}"#);
        let e = ClientIdMetadataDocument::from_json_for_url(doc.as_bytes(), URL).unwrap_err();
        assert!(e.to_string().contains("redirect_uris"), "{e}");
    }

    #[test]
    fn c11_client_id_url_rules() {
        assert!(check_client_id_url(URL).is_ok());
        assert!(check_client_id_url("http://client.example/x").is_err());
        assert!(check_client_id_url("https://client.example/").is_err());
        assert!(check_client_id_url("https://client.example").is_err());
    }

    #[test]
    fn registration_response_keeps_secret_private() {
        let r = ClientInformation::from_json(
            br#"{"client_id":"c","client_secret":"hidden","redirect_uris":["http://127.0.0.1/cb"],"extra_member":true}"#,
        )
        .unwrap();
        assert_eq!(r.metadata.redirect_uris.len(), 1);
        assert_eq!(r.metadata.extra["extra_member"], true);
        assert!(!format!("{r:?}").contains("hidden"));
    }
}
