//! The browser side of the pages: the session cookie, CSRF tokens, redirects and the error
//! answers every page handler shares.

use super::*;

pub(crate) fn cookie_name(shared: &Shared) -> &'static str {
    if shared.config.secure_cookies {
        "__Host-mcpauth_session"
    } else {
        "mcpauth_session"
    }
}

pub(crate) fn session_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
        .filter(|v| v.len() == 43)
}

/// `Set-Cookie` for the session: `__Host-` prefix, `Secure`, `HttpOnly`, `SameSite=Lax`,
/// `Path=/` (the prefix requires them all).
pub(crate) fn set_cookie(shared: &Shared, value: &str, max_age: Option<u64>) -> HeaderValue {
    let mut c = format!(
        "{}={value}; Path=/; HttpOnly; SameSite=Lax",
        cookie_name(shared)
    );
    if shared.config.secure_cookies {
        c.push_str("; Secure");
    }
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    HeaderValue::from_str(&c).expect("cookie is ASCII")
}

pub(crate) fn csrf_token(sid: &str, request_id: &str) -> String {
    digest_b64(&["mcpauth csrf v1", sid, request_id])
}

/// Appends parameters to a redirect URI's query.
pub(super) fn redirect_with(redirect_uri: &str, pairs: &[(&str, &str)]) -> Option<String> {
    let mut url = url::Url::parse(redirect_uri).ok()?;
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in pairs {
            q.append_pair(k, v);
        }
    }
    Some(url.to_string())
}

pub(crate) fn redirect(status: StatusCode, location: &str) -> Response {
    let mut resp = status.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// An error sent back to the client, with `state` and `iss` (RFC 6749 §4.1.2.1, RFC 9207).
pub(super) fn error_redirect(
    shared: &Shared,
    redirect_uri: &str,
    state: Option<&str>,
    e: &OAuthError,
    status: StatusCode,
) -> Response {
    let mut pairs = vec![("error", e.error.as_str())];
    if let Some(d) = &e.error_description {
        pairs.push(("error_description", d));
    }
    if let Some(s) = state {
        pairs.push(("state", s));
    }
    pairs.push(("iss", &shared.config.issuer));
    match redirect_with(redirect_uri, &pairs) {
        Some(loc) => redirect(status, &loc),
        None => error_page(
            StatusCode::BAD_REQUEST,
            "Invalid request",
            "Bad redirect URI.",
        ),
    }
}

pub(crate) fn internal(e: AuthServerError) -> Response {
    tracing::error!(error = %e, "authorization endpoint failed");
    error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "The authorization server could not complete the request.",
    )
}

pub(crate) fn too_many() -> Response {
    error_page(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many attempts",
        "Wait a minute, then try again.",
    )
}
