//! Discovery of the authorization server for an MCP server (MCP SPEC C1-C6, RFC 9728, RFC 8414,
//! OpenID Connect Discovery 1.0), with the 2025-03-26 fallbacks, recording every URL tried.

use std::fmt;

use mcpauth_core::resource::{canonical_resource, check_prm_resource, origin_of};
use mcpauth_core::url_policy::parse_url;
use mcpauth_core::well_known::{self, MetadataKind};
use mcpauth_core::www_authenticate::BearerChallenge;
use mcpauth_core::{AuthorizationServerMetadata, CoreError, ProtectedResourceMetadata};
use reqwest::header::{HeaderMap, HeaderValue};
use serde::Serialize;

use crate::ClientError;
use crate::http::{Fetched, OAuthHttp};

/// What happened to one URL during discovery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", content = "detail", rename_all = "snake_case")]
pub enum Outcome {
    /// The document was used.
    Accepted,
    /// The document was fetched but refused; the reason cites the rule.
    Rejected(String),
    /// Nothing usable came back (status, network error).
    NotFound(String),
    /// Not a fetch: a value derived without a document (e.g. the 2025-03-26 default endpoints).
    Assumed(String),
    /// Used, with a note of what it said.
    Noted(String),
}

/// One step of discovery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Attempt {
    /// What was looked for.
    pub looking_for: &'static str,
    /// The URL.
    pub url: String,
    /// The HTTP status, when a response came.
    pub status: Option<u16>,
    /// What was concluded.
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// Every URL discovery tried, in order, and why each was accepted or rejected.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DiscoveryReport {
    /// The steps.
    pub attempts: Vec<Attempt>,
}

impl DiscoveryReport {
    fn push(
        &mut self,
        looking_for: &'static str,
        url: &str,
        status: Option<u16>,
        outcome: Outcome,
    ) {
        tracing::debug!(looking_for, url, ?status, ?outcome, "discovery");
        self.attempts.push(Attempt {
            looking_for,
            url: url.to_owned(),
            status,
            outcome,
        });
    }
}

/// One line, without its end: what was looked for, the URL, the status, the verdict and why.
impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self
            .status
            .map(|s| s.to_string())
            .unwrap_or_else(|| "-".into());
        let (verdict, detail) = match &self.outcome {
            Outcome::Accepted => ("accepted", ""),
            Outcome::Rejected(r) => ("rejected", r.as_str()),
            Outcome::NotFound(r) => ("not found", r.as_str()),
            Outcome::Assumed(r) => ("assumed", r.as_str()),
            Outcome::Noted(r) => ("used", r.as_str()),
        };
        write!(
            f,
            "{:<38} {status:>4} {verdict:<9} {}",
            self.looking_for, self.url
        )?;
        if !detail.is_empty() {
            write!(f, "  ({detail})")?;
        }
        Ok(())
    }
}

/// One line per attempt.
impl fmt::Display for DiscoveryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for a in &self.attempts {
            writeln!(f, "{a}")?;
        }
        Ok(())
    }
}

/// The result of discovery.
#[derive(Clone, Debug, Serialize)]
pub struct Discovered {
    /// The MCP server URL discovery started from.
    pub server_url: String,
    /// The RFC 8707 `resource` to send: the PRM `resource` byte for byte, or the canonical server
    /// URI when there is no PRM (MCP SPEC C21).
    pub resource: String,
    /// The protected resource metadata, if the server publishes it.
    pub protected_resource: Option<ProtectedResourceMetadata>,
    /// The validated authorization server metadata.
    pub authorization_server: AuthorizationServerMetadata,
    /// Whether the 2025-03-26 default endpoints were assumed because no metadata exists.
    pub legacy_default_endpoints: bool,
    /// Whether the resource said it takes DPoP proofs with ES256 (see
    /// [`crate::dpop::resource_takes_dpop`]); only then are tokens bound (SPEC D1).
    pub resource_dpop: bool,
}

impl Discovered {
    /// The authorization server's `issuer`.
    pub fn issuer(&self) -> &str {
        &self.authorization_server.issuer
    }

    /// `scopes_supported` of the protected resource metadata, if any.
    pub fn resource_scopes(&self) -> Option<&[String]> {
        self.protected_resource
            .as_ref()
            .and_then(|p| p.scopes_supported.as_deref())
    }
}

/// Options of discovery.
#[derive(Clone, Debug, Default)]
pub struct DiscoveryOptions {
    /// `MCP-Protocol-Version` to send with metadata requests (2025-03-26 §2.3.2), if any.
    pub protocol_version: Option<String>,
    /// Use this authorization server issuer instead of the PRM's first one.
    pub issuer_override: Option<String>,
}

/// Runs discovery for `server_url`, using the `resource_metadata` of a 401 challenge when there
/// is one. Every URL tried is appended to `report`, also when discovery fails.
pub async fn discover(
    http: &OAuthHttp,
    server_url: &str,
    challenge: Option<&BearerChallenge>,
    options: &DiscoveryOptions,
    report: &mut DiscoveryReport,
) -> Result<Discovered, ClientError> {
    let mut headers = HeaderMap::new();
    if let Some(v) = &options.protocol_version
        && let Ok(v) = HeaderValue::from_str(v)
    {
        headers.insert("mcp-protocol-version", v);
    }
    let prm = find_protected_resource(http, server_url, challenge, &headers, report).await?;
    let (issuer, resource, legacy_origin) = match &prm {
        Some(p) => {
            let issuer = match &options.issuer_override {
                Some(i) => i.clone(),
                None => p
                    .authorization_servers
                    .as_ref()
                    .and_then(|a| a.first().cloned())
                    .ok_or_else(|| ClientError::Discovery {
                        reason: "the protected resource metadata lists no authorization_servers \
                                 (RFC 9728 §2, MCP SPEC S1)"
                            .into(),
                    })?,
            };
            (issuer, p.resource.clone(), false)
        }
        None => {
            // 2025-03-26: the authorization base URL is the MCP server URL without its path.
            let origin = origin_of(&parse_url(server_url)?);
            let issuer = options.issuer_override.clone().unwrap_or(origin);
            (issuer, canonical_resource(server_url)?, true)
        }
    };
    // MCP SPEC C30: refuse a plain-http issuer up front rather than as "no metadata found".
    http.check_url(&issuer)?;
    let (authorization_server, legacy_default_endpoints) =
        match find_authorization_server(http, &issuer, legacy_origin, &headers, report).await? {
            Some(m) => (m, false),
            None if legacy_origin => (legacy_defaults(&issuer, report)?, true),
            None => {
                return Err(ClientError::Discovery {
                    reason: format!(
                        "no usable authorization server metadata for issuer {issuer} \
                         (RFC 8414, OpenID Connect Discovery; MCP SPEC C5)"
                    ),
                });
            }
        };
    let resource_dpop = crate::dpop::resource_takes_dpop(prm.as_ref(), challenge);
    Ok(Discovered {
        server_url: server_url.to_owned(),
        resource,
        protected_resource: prm,
        authorization_server,
        legacy_default_endpoints,
        resource_dpop,
    })
}

const PRM: &str = "protected resource metadata";

/// Sends one unauthenticated MCP request (`ping`) to learn the server's 401 challenge (MCP SPEC
/// C3-C4), recording it. `None` when the server answers without a `Bearer` challenge. A server
/// that cannot be reached is [`ClientError::Unreachable`] here, at the first request, rather
/// than a failure of some later guess (the 2025-03-26 fallback endpoints are on the same host).
pub async fn probe(
    http: &OAuthHttp,
    server_url: &str,
    report: &mut DiscoveryReport,
) -> Result<Option<BearerChallenge>, ClientError> {
    const WHAT: &str = "401 challenge (WWW-Authenticate)";
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 0, "method": "ping"});
    let fetched = match http.post_json(server_url, &body).await {
        Ok(f) => f,
        Err(e @ (ClientError::Core(_) | ClientError::Unreachable { .. })) => return Err(e),
        Err(e) => {
            report.push(WHAT, server_url, None, Outcome::NotFound(e.to_string()));
            return Ok(None);
        }
    };
    let status = fetched.status.as_u16();
    let challenge = BearerChallenge::from_headers(
        fetched
            .headers
            .get_all(reqwest::header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    );
    let outcome = match &challenge {
        Ok(Some(c)) => match &c.resource_metadata {
            Some(url) => Outcome::Noted(format!("resource_metadata={url}")),
            None => Outcome::Noted("Bearer challenge without resource_metadata".into()),
        },
        Ok(None) => Outcome::NotFound(format!("HTTP {status} without a Bearer challenge")),
        Err(e) => Outcome::Rejected(e.to_string()),
    };
    report.push(WHAT, server_url, Some(status), outcome);
    Ok(challenge.ok().flatten())
}

async fn find_protected_resource(
    http: &OAuthHttp,
    server_url: &str,
    challenge: Option<&BearerChallenge>,
    headers: &HeaderMap,
    report: &mut DiscoveryReport,
) -> Result<Option<ProtectedResourceMetadata>, ClientError> {
    let mut urls = Vec::new();
    if let Some(u) = challenge.and_then(|c| c.resource_metadata.clone()) {
        urls.push(u);
    }
    for u in well_known::protected_resource_urls(server_url)? {
        if !urls.contains(&u) {
            urls.push(u);
        }
    }
    for url in urls {
        let Some(fetched) = fetch_json(http, PRM, &url, headers, report).await else {
            continue;
        };
        let prm = match ProtectedResourceMetadata::from_json(&fetched.body) {
            Ok(p) => p,
            Err(e) => {
                report.push(PRM, &url, Some(200), Outcome::Rejected(e.to_string()));
                continue;
            }
        };
        // MCP SPEC C21 / RFC 9728 §3.3: refuse before any authorization request.
        if let Err(e) = check_prm_resource(&prm.resource, server_url) {
            report.push(PRM, &url, Some(200), Outcome::Rejected(e.to_string()));
            return Err(e.into());
        }
        if prm.authorization_servers.as_ref().is_none_or(Vec::is_empty) {
            report.push(
                PRM,
                &url,
                Some(200),
                Outcome::Rejected("no authorization_servers (MCP SPEC S1)".into()),
            );
            continue;
        }
        report.push(PRM, &url, Some(200), Outcome::Accepted);
        return Ok(Some(prm));
    }
    Ok(None)
}

/// Fetches the metadata of `issuer` in the order of MCP SPEC C5. With `located_by_origin` (the
/// 2025-03-26 path, no PRM) the URL came from the MCP server's origin, not from an issuer, so
/// the document's `issuer` is accepted when it is on that origin.
async fn find_authorization_server(
    http: &OAuthHttp,
    issuer: &str,
    located_by_origin: bool,
    headers: &HeaderMap,
    report: &mut DiscoveryReport,
) -> Result<Option<AuthorizationServerMetadata>, ClientError> {
    let mut mismatch = None;
    for (url, kind) in well_known::authorization_server_urls(issuer)? {
        let what = match kind {
            MetadataKind::OAuth => "authorization server metadata (RFC 8414)",
            MetadataKind::OpenId => "OpenID configuration",
        };
        let Some(fetched) = fetch_json(http, what, &url, headers, report).await else {
            continue;
        };
        let parsed = if located_by_origin {
            AuthorizationServerMetadata::from_json_located_by_origin(&fetched.body).and_then(|m| {
                same_origin(&m.issuer, issuer)
                    .then_some(m)
                    .ok_or_else(|| CoreError::InvalidDocument {
                        what: "authorization server metadata",
                        reason: format!(
                            "its issuer is not on the MCP server's origin {issuer} (MCP 2025-03-26 §2.3.2)"
                        ),
                    })
            })
        } else {
            AuthorizationServerMetadata::from_json_for_issuer(&fetched.body, issuer)
        };
        match parsed {
            Ok(m) => {
                report.push(what, &url, Some(200), Outcome::Accepted);
                return Ok(Some(m));
            }
            Err(e) => {
                report.push(what, &url, Some(200), Outcome::Rejected(e.to_string()));
                if let CoreError::IssuerMismatch { .. } = e {
                    mismatch.get_or_insert(e);
                }
            }
        }
    }
    // MCP SPEC C6: a document naming another issuer MUST NOT be used, and we do not fall back to
    // guessed endpoints when the server answered with one.
    match mismatch {
        Some(e) => Err(e.into()),
        None => Ok(None),
    }
}

fn same_origin(a: &str, b: &str) -> bool {
    match (parse_url(a), parse_url(b)) {
        (Ok(a), Ok(b)) => a.origin() == b.origin(),
        _ => false,
    }
}

fn legacy_defaults(
    issuer: &str,
    report: &mut DiscoveryReport,
) -> Result<AuthorizationServerMetadata, ClientError> {
    let (authorize, token, register) = well_known::legacy_default_endpoints(issuer)?;
    for url in [&authorize, &token, &register] {
        report.push(
            "default endpoint (MCP 2025-03-26 §2.3.3)",
            url,
            None,
            Outcome::Assumed("no metadata; the 2025-03-26 revision's default path".into()),
        );
    }
    Ok(AuthorizationServerMetadata {
        issuer: issuer.to_owned(),
        authorization_endpoint: Some(authorize),
        token_endpoint: Some(token),
        registration_endpoint: Some(register),
        // 2025-03-26 made PKCE mandatory for every client, so S256 is the only safe assumption.
        code_challenge_methods_supported: Some(vec![mcpauth_core::pkce::S256.into()]),
        ..Default::default()
    })
}

/// GETs one discovery URL; `None` (recorded) when it gives nothing to parse.
async fn fetch_json(
    http: &OAuthHttp,
    what: &'static str,
    url: &str,
    headers: &HeaderMap,
    report: &mut DiscoveryReport,
) -> Option<Fetched> {
    match http.get(url, headers).await {
        Ok(f) if f.status.is_success() => Some(f),
        Ok(f) => {
            report.push(
                what,
                url,
                Some(f.status.as_u16()),
                Outcome::NotFound(format!("HTTP {}", f.status.as_u16())),
            );
            None
        }
        Err(e) => {
            report.push(what, url, None, Outcome::NotFound(e.to_string()));
            None
        }
    }
}
