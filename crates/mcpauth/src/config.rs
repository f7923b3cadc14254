//! The `mcpServers` JSON that MCP clients use (Claude Desktop, Cursor, mcpo), including mcpo's
//! `oauth` block. Unknown keys are kept and warned about, never an error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use mcpauth_core::ClientMetadata;
use serde::Deserialize;
use serde_json::Value;

/// A config file.
#[derive(Debug, Deserialize)]
pub struct ConfigFile {
    /// The servers by name (other top-level keys belong to the MCP client and are ignored).
    #[serde(rename = "mcpServers")]
    pub servers: BTreeMap<String, ServerEntry>,
}

/// One server.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ServerEntry {
    /// The MCP endpoint of an HTTP server.
    #[serde(default)]
    pub url: Option<String>,
    /// Extra HTTP headers; `${VAR}` is replaced from the environment.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The stdio command (stdio servers get no OAuth: MCP SPEC §0).
    #[serde(default)]
    pub command: Option<String>,
    /// mcpo's OAuth settings.
    #[serde(default)]
    pub oauth: Option<OAuthBlock>,
    /// Anything else.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// mcpo's `oauth` block, plus mcpauth's own keys.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct OAuthBlock {
    /// The server's base URL; used as the authorization server issuer when it is on another
    /// origin than `url` (mcpo).
    #[serde(default)]
    pub server_url: Option<String>,
    /// The local callback port (mcpo default 3030).
    #[serde(default)]
    pub callback_port: Option<u16>,
    /// `false` means the paste flow (mcpo).
    #[serde(default)]
    pub use_loopback: Option<bool>,
    /// `file` or `memory` (mcpo).
    #[serde(default)]
    pub storage_type: Option<String>,
    /// Client metadata for registration (mcpo).
    #[serde(default)]
    pub client_metadata: Option<ClientMetadata>,
    /// A pre-registered client id (mcpauth).
    #[serde(default)]
    pub client_id: Option<String>,
    /// A file with the client secret (mcpauth).
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// This client's metadata document URL (mcpauth).
    #[serde(default)]
    pub client_metadata_url: Option<String>,
    /// Scopes to request (mcpauth).
    #[serde(default)]
    pub scope: Option<String>,
    /// A file with the workload's JWT for workload identity federation (mcpauth; SEP-1933).
    #[serde(default)]
    pub workload_token_file: Option<PathBuf>,
    /// A command printing the workload's JWT (mcpauth; SEP-1933).
    #[serde(default)]
    pub workload_token_command: Option<String>,
    /// Anything else.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

// By explicit path, so that it resolves the same where the fuzz crate includes this file.
#[cfg(test)]
#[path = "config/fuzz_target.rs"]
mod fuzz_target;

/// The mcpo default callback port.
pub const MCPO_CALLBACK_PORT: u16 = 3030;

impl ConfigFile {
    /// Reads and parses a config file, warning about keys mcpauth does not use.
    pub fn load(path: &Path) -> anyhow::Result<ConfigFile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the config file {}", path.display()))?;
        let file: ConfigFile = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not an mcpServers config file (expected {{\"mcpServers\": {{\"name\": {{\"url\": …}}}}}})",
                path.display()
            )
        })?;
        for (name, entry) in &file.servers {
            for key in entry.extra.keys() {
                if !matches!(
                    key.as_str(),
                    "type"
                        | "args"
                        | "env"
                        | "disabled"
                        | "alwaysAllow"
                        | "autoApprove"
                        | "timeout"
                        | "transport"
                ) {
                    tracing::warn!(server = %name, key = %key, "ignoring an unknown key in the config file");
                }
            }
            if let Some(o) = &entry.oauth {
                for key in o.extra.keys() {
                    tracing::warn!(server = %name, key = %key, "ignoring an unknown oauth key in the config file");
                }
            }
        }
        Ok(file)
    }

    /// The entry called `name`, which must have a URL.
    pub fn http_server(&self, name: &str) -> anyhow::Result<(String, &ServerEntry)> {
        let Some(entry) = self.servers.get(name) else {
            let names: Vec<&str> = self.servers.keys().map(String::as_str).collect();
            bail!(
                "no server named {name:?} in the config file (it has: {})",
                names.join(", ")
            );
        };
        match &entry.url {
            Some(url) => Ok((url.clone(), entry)),
            None if entry.command.is_some() => bail!(
                "the server {name:?} is a stdio server; stdio transports get no OAuth (MCP \
                 authorization §Protocol Requirements): give it credentials in its environment"
            ),
            None => bail!("the server {name:?} in the config file has no \"url\""),
        }
    }

    /// Every server with a URL, by name.
    pub fn http_servers(&self) -> Vec<(String, String, &ServerEntry)> {
        self.servers
            .iter()
            .filter_map(|(n, e)| e.url.clone().map(|u| (n.clone(), u, e)))
            .collect()
    }
}

/// Replaces `${VAR}` with the variable's value; an unset variable is an error naming it.
pub fn expand_env(value: &str, lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            bail!("unterminated ${{ in {value:?}");
        };
        let name = &after[..end];
        let v =
            lookup(name).with_context(|| format!("the environment variable {name} is not set"))?;
        out.push_str(&v);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Parses `Name: value` header lines, replacing `${VAR}` from the environment. Every value is
/// marked sensitive: headers given here often carry credentials, and `Debug` must not show them.
pub fn parse_headers<'a>(
    lines: impl IntoIterator<Item = &'a str>,
) -> anyhow::Result<reqwest::header::HeaderMap> {
    use reqwest::header::{HeaderName, HeaderValue};
    let mut map = reqwest::header::HeaderMap::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            bail!("a header must look like `Name: value`, not {line:?}");
        };
        let value = expand_env(value.trim(), |n| std::env::var(n).ok())
            .with_context(|| format!("header {}", name.trim()))?;
        let name = HeaderName::try_from(name.trim())
            .with_context(|| format!("bad header name {:?}", name.trim()))?;
        let mut value =
            HeaderValue::try_from(value).with_context(|| format!("bad value for header {name}"))?;
        value.set_sensitive(true);
        map.append(name, value);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mcpo_example_parses() {
        let json = r#"{"mcpServers": {
            "legacy-oauth-server": {"type": "streamable-http", "url": "http://localhost:8000/mcp",
              "oauth": {"server_url": "http://localhost:8000", "storage_type": "file",
                "client_metadata": {"client_name": "My MCPO Client", "redirect_uris": ["http://localhost:3030/callback"],
                  "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"]}}},
            "local": {"command": "npx", "args": ["x"]}}}"#;
        let file: ConfigFile = serde_json::from_str(json).unwrap();
        let (url, entry) = file.http_server("legacy-oauth-server").unwrap();
        assert_eq!(url, "http://localhost:8000/mcp");
        let oauth = entry.oauth.as_ref().unwrap();
        assert_eq!(
            oauth.client_metadata.as_ref().unwrap().redirect_uris,
            ["http://localhost:3030/callback"]
        );
        assert!(
            file.http_server("local")
                .unwrap_err()
                .to_string()
                .contains("stdio")
        );
        assert!(
            file.http_server("nope")
                .unwrap_err()
                .to_string()
                .contains("local")
        );
        assert_eq!(file.http_servers().len(), 1);
    }

    #[test]
    fn missing_url_is_a_clear_error() {
        let file: ConfigFile =
            serde_json::from_str(r#"{"mcpServers": {"x": {"oauth": {}}}}"#).unwrap();
        assert_eq!(
            file.http_server("x").unwrap_err().to_string(),
            "the server \"x\" in the config file has no \"url\""
        );
    }

    #[test]
    fn headers_parse_hide_their_values_and_bad_ones_are_clear() {
        let h = parse_headers(["X-Api-Key:  abc ", "Authorization: Bearer s3cret"]).unwrap();
        assert_eq!(h["x-api-key"], "abc");
        assert!(
            !format!("{h:?}").contains("s3cret"),
            "header values stay out of Debug"
        );
        let e = parse_headers(["no colon"]).unwrap_err();
        assert!(e.to_string().contains("Name: value"), "{e}");
        assert!(parse_headers(["X: ${MCPAUTH_SURELY_UNSET_VAR}"]).is_err());
    }

    #[test]
    fn fuzz_corpus_replays() {
        let fuzz_dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz"));
        mcpauth_core::fuzzing::replay(fuzz_dir, "config", super::fuzz_target::config);
    }

    #[test]
    fn env_expansion() {
        let env = |k: &str| (k == "TOKEN").then(|| "abc".to_owned());
        assert_eq!(expand_env("Bearer ${TOKEN}!", env).unwrap(), "Bearer abc!");
        assert!(
            expand_env("${MISSING}", env)
                .unwrap_err()
                .to_string()
                .contains("MISSING")
        );
        assert!(expand_env("${TOKEN", env).is_err());
    }
}
