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
    /// `dpop_bound_access_tokens` (RFC 9449 §5.2): `true` when every token request of this
    /// client carries a DPoP proof, so the authorization server refuses one without.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_bound_access_tokens: Option<bool>,
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
        let Some(name) = &doc.metadata.client_name else {
            return Err(invalid("client_name is missing".into()));
        };
        check_client_name(name)?;
        if doc.metadata.redirect_uris.is_empty() {
            return Err(invalid("redirect_uris is missing".into()));
        }
        Ok(doc)
    }
}

/// The longest `client_name` accepted, in characters (Unicode scalar values): room for any real
/// product name, too little to push the rest of a consent page out of sight (security finding
/// 12).
pub const MAX_CLIENT_NAME_CHARS: usize = 100;

/// Unicode general category Cf (format characters, Unicode 15.1), as inclusive ranges: invisible
/// characters that change how the text around them is shown, such as bidirectional embeddings,
/// overrides and isolates (U+202A–U+202E, U+2066–U+2069), marks (U+200E, U+200F, U+061C),
/// zero-width characters (U+200B–U+200D, U+2060, U+FEFF) and the soft hyphen (U+00AD).
const FORMAT_CHARACTERS: &[(u32, u32)] = &[
    (0x00AD, 0x00AD),
    (0x0600, 0x0605),
    (0x061C, 0x061C),
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x180E, 0x180E),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x2064),
    (0x2066, 0x206F),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
];

/// Whether `c` is an invisible formatting character (Unicode general category Cf), refused in
/// client names and shown escaped by the CLI (security findings 5 and 12).
///
/// ```
/// use mcpauth_core::registration::is_format_character;
/// assert!(is_format_character('\u{202E}') && is_format_character('\u{200B}'));
/// assert!(!is_format_character('a') && !is_format_character('\n'));
/// ```
pub fn is_format_character(c: char) -> bool {
    let cp = u32::from(c);
    FORMAT_CHARACTERS
        .iter()
        .any(|&(lo, hi)| (lo..=hi).contains(&cp))
}

/// Why `c` may not appear in a client name, if it may not.
fn forbidden_in_name(c: char) -> Option<&'static str> {
    if c.is_control() {
        Some("a control character")
    } else if is_format_character(c) {
        Some("an invisible formatting character (Unicode category Cf)")
    } else if c == '\u{2028}' || c == '\u{2029}' {
        Some("a line or paragraph separator")
    } else {
        None
    }
}

/// Checks a `client_name` before it is stored or shown (RFC 7591 §2: the name "to be presented
/// to the end-user"; MCP SPEC A10; security finding 12). Refused: control characters (Unicode
/// category Cc), invisible formatting characters (Cf: bidirectional overrides such as U+202E
/// that make a name read backwards, zero-width characters that make two names look alike, the
/// soft hyphen, ...), line and paragraph separators, a name with nothing visible, and more than
/// [`MAX_CLIENT_NAME_CHARS`] characters. Every script is welcome ("Café Łódź 日本" is fine).
/// The error describes the problem without repeating the name.
///
/// ```
/// use mcpauth_core::registration::check_client_name;
/// assert!(check_client_name("Café Łódź 日本").is_ok());
/// assert!(check_client_name("Good App\u{202E}ppA liveE").is_err());
/// ```
pub fn check_client_name(name: &str) -> Result<(), CoreError> {
    let invalid = |reason: String| Err(CoreError::InvalidClientName { reason });
    let length = name.chars().count();
    if length > MAX_CLIENT_NAME_CHARS {
        return invalid(format!(
            "has {length} characters, more than the {MAX_CLIENT_NAME_CHARS} allowed"
        ));
    }
    if let Some((i, c, what)) = name
        .chars()
        .enumerate()
        .find_map(|(i, c)| forbidden_in_name(c).map(|what| (i, c, what)))
    {
        return invalid(format!(
            "contains U+{:04X}, {what}, at character {}",
            u32::from(c),
            i + 1
        ));
    }
    if name.trim().is_empty() {
        return invalid("has no visible character".into());
    }
    Ok(())
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
    fn sec12_client_names_that_could_spoof_a_consent_page_are_refused() {
        for ok in [
            "Claude Desktop",
            "Café Łódź 日本",
            "עברית",
            "Emoji ❤\u{FE0F} app",
            &"n".repeat(MAX_CLIENT_NAME_CHARS),
        ] {
            assert!(check_client_name(ok).is_ok(), "{ok:?}");
        }
        for (bad, says) in [
            ("Good App\u{202E}ppA liveE", "U+202E"),
            ("\u{2066}x\u{2069}", "U+2066"),
            ("a\u{200E}", "U+200E"),
            ("a\u{200F}", "U+200F"),
            ("Good\u{200B}App", "U+200B"),
            ("a\u{200D}b", "U+200D"),
            ("a\u{2060}b", "U+2060"),
            ("\u{FEFF}a", "U+FEFF"),
            ("soft\u{AD}hyphen", "U+00AD"),
            ("tag\u{E0041}", "U+E0041"),
            ("line\nbreak", "U+000A"),
            ("nul\0", "U+0000"),
            ("del\u{7F}", "U+007F"),
            ("c1\u{9B}", "U+009B"),
            ("line\u{2028}sep", "U+2028"),
            ("", "visible"),
            (" \t ", "U+0009"),
            ("   ", "visible"),
        ] {
            let e = check_client_name(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad:?}: {e}");
            assert!(e.contains("at most 100 characters"), "{e}");
        }
        let e = check_client_name(&"A".repeat(5000))
            .unwrap_err()
            .to_string();
        assert!(e.contains("5000 characters"), "{e}");
        // Characters, not bytes: 100 three-byte characters are fine.
        assert!(check_client_name(&"日".repeat(MAX_CLIENT_NAME_CHARS)).is_ok());
        assert!(check_client_name(&"日".repeat(MAX_CLIENT_NAME_CHARS + 1)).is_err());
    }

    #[test]
    fn sec12_cimd_document_with_a_spoofing_name_is_refused() {
        let doc = format!(
            r#"{{"client_id":"{URL}","client_name":"a\u202eb","redirect_uris":["http://127.0.0.1/cb"]}}"#
        );
        let e = ClientIdMetadataDocument::from_json_for_url(doc.as_bytes(), URL).unwrap_err();
        assert!(matches!(e, CoreError::InvalidClientName { .. }), "{e}");
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
