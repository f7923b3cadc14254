//! Workload identity federation (SEP-1933, SPEC W1): a client with no person and no browser (a CI
//! job, a Kubernetes pod) presents the JWT its platform issued it to the MCP authorization server
//! with the RFC 7523 JWT bearer grant: no registration, no client secret, no refresh token. Each
//! new access token takes a workload token read again at that moment, because platforms rotate
//! them (Kubernetes projected service-account tokens, GitHub Actions OIDC tokens).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use mcpauth_core::{Assertion, AuthorizationServerMetadata, ScopeSet, TokenResponse};
use tokio::io::AsyncReadExt;

use crate::ClientError;
use crate::dpop::Prover;
use crate::grants::{JWT_BEARER_GRANT, Resource, TokenEndpoint};
use crate::http::OAuthHttp;
use crate::registration::auth_method;
use crate::store::{ClientRecord, RegistrationKind, SCHEMA_VERSION, now_unix};

/// The largest workload token read from a file or a command (real ones are a few KiB).
pub const MAX_TOKEN_BYTES: u64 = 64 * 1024;
/// How long a token command may run.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the workload token comes from. Read again for every new grant.
#[derive(Clone)]
pub enum WorkloadSource {
    /// A file, re-read on every use (a Kubernetes projected token is rewritten in place).
    File(PathBuf),
    /// A command run with `sh -c`; its standard output, trimmed, is the token. Its standard
    /// error goes to ours.
    Command(String),
    /// A token held in memory (library callers that fetch it themselves).
    Value(Assertion),
}

impl std::fmt::Debug for WorkloadSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WorkloadSource::File(p) => f.debug_tuple("File").field(p).finish(),
            WorkloadSource::Command(c) => f.debug_tuple("Command").field(c).finish(),
            WorkloadSource::Value(_) => f.write_str("Value(<redacted>)"),
        }
    }
}

impl std::fmt::Display for WorkloadSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WorkloadSource::File(p) => write!(f, "the workload token file {}", p.display()),
            WorkloadSource::Command(c) => write!(f, "the workload token command {c:?}"),
            WorkloadSource::Value(_) => f.write_str("the workload token"),
        }
    }
}

/// What the workload identity grant needs.
#[derive(Clone, Debug)]
pub struct WorkloadIdentity {
    /// Where the workload JWT comes from.
    pub source: WorkloadSource,
    /// A client id to send with the grant, for authorization servers that want one (RFC 7523
    /// §3.1 makes client authentication optional); no secret ever goes with it (SPEC W1).
    pub client_id: Option<String>,
}

impl WorkloadIdentity {
    /// A workload identity from `source`, without a client id.
    pub fn new(source: WorkloadSource) -> Self {
        Self {
            source,
            client_id: None,
        }
    }

    /// Reads the workload token now: the file again, the command run again.
    pub async fn assertion(&self) -> Result<Assertion, ClientError> {
        let raw = match &self.source {
            WorkloadSource::Value(a) => a.expose().to_owned(),
            WorkloadSource::File(path) => read_file(path, &self.source).await?,
            WorkloadSource::Command(command) => run_command(command, &self.source).await?,
        };
        let token = raw.trim();
        check_shape(token).map_err(|reason| ClientError::WorkloadToken {
            source_name: self.source.to_string(),
            reason: reason.into(),
        })?;
        Ok(Assertion::new(token))
    }
}

/// SPEC W1: the authorization server must take the JWT bearer grant. When its metadata lists
/// grant types and this one is not among them, the grant is refused before the token is read.
pub fn check_supported(metadata: &AuthorizationServerMetadata) -> Result<(), ClientError> {
    match &metadata.grant_types_supported {
        Some(grants) if !grants.iter().any(|g| g == JWT_BEARER_GRANT) => {
            Err(ClientError::GrantUnsupported {
                issuer: metadata.issuer.clone(),
                grant: JWT_BEARER_GRANT,
                supported: grants.clone(),
            })
        }
        _ => Ok(()),
    }
}

/// SPEC W1: the JWT bearer grant as `client` with the workload token as read now, `resource`
/// and the optional `scope`; no registration and no secret. A refusal is final: the token is not
/// sent again and no other grant is tried. No refresh token is kept: a new access token takes a
/// new workload token (SEP-1933).
pub(crate) async fn grant(
    identity: &WorkloadIdentity,
    http: &OAuthHttp,
    metadata: &AuthorizationServerMetadata,
    client: &ClientRecord,
    scope: Option<&ScopeSet>,
    resource: Resource<'_>,
    dpop: Option<Prover<'_>>,
) -> Result<TokenResponse, ClientError> {
    check_supported(metadata)?;
    let assertion = identity.assertion().await?;
    let endpoint = TokenEndpoint {
        http,
        metadata,
        client,
        signing_key: None,
        dpop,
    };
    match endpoint.jwt_bearer(&assertion, scope, resource).await {
        Ok(mut tokens) => {
            tokens.refresh_token = None;
            Ok(tokens)
        }
        Err(ClientError::OAuth { status, error, .. }) if !error.error.is_transient() => {
            Err(ClientError::AssertionRefused {
                issuer: metadata.issuer.clone(),
                status,
                error,
            })
        }
        Err(e) => Err(e),
    }
}

/// The client a workload grant is made as: the configured id with no authentication, or none at
/// all (SPEC W1: no registration).
pub(crate) fn client(
    identity: &WorkloadIdentity,
    metadata: &AuthorizationServerMetadata,
) -> ClientRecord {
    ClientRecord {
        schema: SCHEMA_VERSION,
        issuer: metadata.issuer.clone(),
        client_id: identity.client_id.clone().unwrap_or_default(),
        client_secret: None,
        token_endpoint_auth_method: auth_method::NONE.into(),
        redirect_uris: Vec::new(),
        kind: RegistrationKind::PreRegistered,
        secret_expires_at: None,
        updated_at: now_unix(),
    }
}

fn failed(source: &WorkloadSource, reason: String) -> ClientError {
    ClientError::WorkloadToken {
        source_name: source.to_string(),
        reason,
    }
}

async fn read_file(path: &std::path::Path, source: &WorkloadSource) -> Result<String, ClientError> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| failed(source, format!("cannot be read: {e}")))?;
    let mut bytes = Vec::new();
    file.take(MAX_TOKEN_BYTES + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| failed(source, format!("cannot be read: {e}")))?;
    text_of(bytes, source)
}

async fn run_command(command: &str, source: &WorkloadSource) -> Result<String, ClientError> {
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| failed(source, format!("could not be started: {e}")))?;
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| failed(source, "has no standard output".into()))?;
    let run = async {
        let mut bytes = Vec::new();
        (&mut stdout)
            .take(MAX_TOKEN_BYTES + 1)
            .read_to_end(&mut bytes)
            .await?;
        let status = child.wait().await?;
        Ok::<_, std::io::Error>((bytes, status))
    };
    let (bytes, status) = tokio::time::timeout(COMMAND_TIMEOUT, run)
        .await
        .map_err(|_| {
            failed(
                source,
                format!("did not finish within {} s", COMMAND_TIMEOUT.as_secs()),
            )
        })?
        .map_err(|e| failed(source, format!("failed: {e}")))?;
    if !status.success() {
        return Err(failed(source, format!("failed ({status})")));
    }
    text_of(bytes, source)
}

fn text_of(bytes: Vec<u8>, source: &WorkloadSource) -> Result<String, ClientError> {
    if bytes.len() as u64 > MAX_TOKEN_BYTES {
        return Err(failed(
            source,
            format!("gave more than {MAX_TOKEN_BYTES} bytes; that is not a workload token"),
        ));
    }
    String::from_utf8(bytes).map_err(|_| failed(source, "gave text that is not UTF-8".into()))
}

/// A JWT in compact serialization (RFC 7519 §7.2): three (JWS) or five (JWE) base64url parts.
/// Anything else is refused here rather than sent (and never shown: it may be a secret).
fn check_shape(token: &str) -> Result<(), &'static str> {
    if token.is_empty() {
        return Err("is empty");
    }
    let parts: Vec<&str> = token.split('.').collect();
    let base64url = |p: &&str| {
        p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if !matches!(parts.len(), 3 | 5) || !parts.iter().all(base64url) || parts[0].is_empty() {
        return Err("does not hold a JWT (RFC 7519 compact serialization)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn w1_only_a_compact_jwt_is_sent() {
        assert!(check_shape("eyJh.eyJz.c2ln").is_ok());
        assert!(check_shape("eyJh.eyJz.").is_ok());
        assert!(check_shape("a.b.c.d.e").is_ok());
        assert_eq!(check_shape(""), Err("is empty"));
        for bad in ["token", "a.b", "a.b c.d", "a.b.c\nd.e.f", ".b.c", "a.b.c.d"] {
            assert!(check_shape(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn w1_debug_of_a_held_token_is_redacted() {
        let source = WorkloadSource::Value(Assertion::new("eyJh.eyJz.c2ln"));
        assert!(!format!("{source:?}").contains("eyJ"));
        assert!(!format!("{source}").contains("eyJ"));
        let identity = WorkloadIdentity::new(source);
        assert!(!format!("{identity:?}").contains("eyJ"));
    }

    #[test]
    fn w1_grant_must_be_listed_when_grants_are_listed() {
        let mut m = AuthorizationServerMetadata {
            issuer: "https://as.example".into(),
            ..Default::default()
        };
        assert!(check_supported(&m).is_ok());
        m.grant_types_supported = Some(vec!["authorization_code".into()]);
        let e = check_supported(&m).unwrap_err().to_string();
        assert!(
            e.contains("authorization_code") && e.contains(JWT_BEARER_GRANT),
            "{e}"
        );
        m.grant_types_supported = Some(vec![JWT_BEARER_GRANT.into()]);
        assert!(check_supported(&m).is_ok());
    }
}
