//! The answers the layer gives instead of calling the handler (RFC 6750 §3, RFC 9728 §5.1,
//! MCP SPEC S2-S3, S6-S7, S9), with every `WWW-Authenticate` parameter quoted by
//! [`mcpauth_core::www_authenticate::Challenge`].

use axum_core::body::Body;
use http::{HeaderValue, Response, StatusCode, header};
use mcpauth_core::ScopeSet;
use mcpauth_core::www_authenticate::Challenge;
use serde_json::json;

/// RFC 6750 §3 allows only printable ASCII without `"` and `\` in `error_description`.
fn description_chars(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '"' => '\'',
            '\\' => '/',
            c if (' '..='~').contains(&c) => c,
            _ => '?',
        })
        .take(200)
        .collect()
}

/// A scope set without `offline_access` (MCP SPEC S9) and without values a scope token may
/// not hold (RFC 6749 §3.3).
fn challenge_scope(scope: &ScopeSet) -> String {
    scope
        .iter()
        .filter(|s| *s != "offline_access")
        .filter(|s| {
            s.chars()
                .all(|c| ('!'..='~').contains(&c) && c != '"' && c != '\\')
        })
        .collect::<ScopeSet>()
        .to_string()
}

/// A Bearer challenge response. `error` is `None` when the request carried no credentials
/// (RFC 6750 §3.1: no error code then).
pub(crate) fn bearer(
    status: StatusCode,
    resource_metadata: &str,
    scope: &ScopeSet,
    error: Option<(&str, &str)>,
) -> Response<Body> {
    let mut params = vec![("resource_metadata", resource_metadata.to_owned())];
    let scope = challenge_scope(scope);
    if !scope.is_empty() {
        params.push(("scope", scope));
    }
    challenge_response(status, Challenge::bearer(), error, params)
}

/// A `DPoP` challenge response (RFC 9449 §7.1): `algs`, the metadata URL, and the error if any
/// (`invalid_token`, `invalid_dpop_proof`, `use_dpop_nonce`).
pub(crate) fn dpop_challenge(
    status: StatusCode,
    resource_metadata: &str,
    algs: &str,
    error: Option<(&str, &str)>,
) -> Response<Body> {
    let mut ch = Challenge::bearer();
    ch.scheme = "DPoP".into();
    let params = vec![
        ("algs", algs.to_owned()),
        ("resource_metadata", resource_metadata.to_owned()),
    ];
    challenge_response(status, ch, error, params)
}

/// `ch` with `error` and `error_description` first, then `params`, in `WWW-Authenticate`, and
/// the error in a JSON body.
fn challenge_response(
    status: StatusCode,
    mut ch: Challenge,
    error: Option<(&str, &str)>,
    params: Vec<(&str, String)>,
) -> Response<Body> {
    let mut body = serde_json::Map::new();
    if let Some((code, description)) = error {
        let description = description_chars(description);
        ch = ch
            .with("error", code)
            .with("error_description", description.clone());
        body.insert("error".into(), json!(code));
        body.insert("error_description".into(), json!(description));
    }
    for (name, value) in params {
        ch = ch.with(name, value);
    }
    let scheme = HeaderValue::from_str(&ch.scheme).unwrap_or(HeaderValue::from_static("Bearer"));
    // A resource_metadata URL that is not a valid header value: keep the bare scheme.
    let value = HeaderValue::from_str(&ch.to_string()).unwrap_or(scheme);
    let mut resp = json_response(status, &serde_json::Value::Object(body));
    resp.headers_mut().insert(header::WWW_AUTHENTICATE, value);
    resp
}

/// A JSON response (`no-store`: these answers depend on the credentials).
pub(crate) fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    let mut resp = Response::new(Body::from(body.to_string()));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// An id-less JSON-RPC error (`{"jsonrpc":"2.0","error":{…}}`) with an HTTP status, as the
/// Streamable HTTP transport allows for refused requests (MCP SPEC S11).
pub(crate) fn jsonrpc_error(status: StatusCode, code: i64, message: &str) -> Response<Body> {
    json_response(
        status,
        &json!({"jsonrpc": "2.0", "error": {"code": code, "message": message}}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s7_quoting_and_no_offline_access() {
        let r = bearer(
            StatusCode::FORBIDDEN,
            "https://h/.well-known/oauth-protected-resource/mcp",
            &ScopeSet::parse("a offline_access b"),
            Some(("insufficient_scope", "needs \"a\"\nand b")),
        );
        let v = r.headers()[header::WWW_AUTHENTICATE].to_str().unwrap();
        assert_eq!(
            v,
            r#"Bearer error="insufficient_scope", error_description="needs 'a'?and b", resource_metadata="https://h/.well-known/oauth-protected-resource/mcp", scope="a b""#
        );
        let parsed = mcpauth_core::www_authenticate::parse(v).unwrap();
        assert_eq!(parsed.len(), 1);
    }
}
