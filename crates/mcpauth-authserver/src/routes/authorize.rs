//! The authorization endpoint and its login and consent forms (OAuth 2.1 §4.1; MCP SPEC A4, A8,
//! A10). An unknown client or a redirect URI that is not registered gets an error page, never a
//! redirect; every other error goes back to the client with `state` and RFC 9207 `iss`.
//!
//! The browser is identified by a random session cookie; a pending request is stored bound to
//! its hash, and each form's CSRF token is a hash of the cookie and the request id, so a form
//! can only be posted by the browser it was shown to.
//!
//! Consent is remembered per user, client and scope set, but it answers without a page only for
//! a client whose identity is assured (RFC 8252 §8.6, security finding 7): one that
//! authenticates at the token endpoint, or a public client whose redirect URI is claimed https
//! (for a client ID metadata document: https on the document's own origin). Anyone can claim a
//! public client's id with a loopback or private-use redirect URI and their own PKCE challenge,
//! so such a client gets the consent page every time, noting the earlier approval.

use crate::audit::audit;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mcpauth_core::url_policy::is_loopback;
use mcpauth_core::{ErrorCode, OAuthError, ScopeSet, constant_time_eq, pkce::S256};
use serde::{Deserialize, Serialize};

use super::{AppState, PeerIp};
use crate::clients::{
    self, Client, ClientKind, LookupError, is_loopback_redirect, redirect_uri_allowed,
};
use crate::error::AuthServerError;
use crate::federation;
use crate::pages::{ConsentPage, LoginPage, ProviderLink, error_page, render};
use crate::params::{Params, oauth_error};
use crate::passwords;
use crate::rate_limit::Bucket;
use crate::secrets::{digest_b64, hash_secret, now, random_bytes_b64, random_secret};
use crate::server::Shared;
use crate::store::{NO_PASSWORD, NewCode};
use crate::tokens::{check_resource, check_scope};

/// Whether `v` has the form of a base64url SHA-256 digest (43 characters): a PKCE challenge or
/// a JWK thumbprint.
fn is_sha256_b64url(v: &str) -> bool {
    v.len() == 43
        && v.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
}

/// How long a pending request waits for login and consent.
const REQUEST_TTL: i64 = 600;

/// A validated authorization request waiting for the user: from `/authorize`, or a device
/// authorization whose user code was entered on the verification page (then `redirect_uri`,
/// `state` and `code_challenge` are empty: nothing is redirected).
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Pending {
    pub client_id: String,
    pub redirect_uri: String,
    pub state: Option<String>,
    pub code_challenge: String,
    pub scope: String,
    pub resource: Option<String>,
    /// The DPoP key the code is bound to (RFC 9449 §10): the token request must prove it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_jkt: Option<String>,
    /// The device authorization this request decides (RFC 8628 §3.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<PendingDevice>,
    /// A sign-in for the account page, for no client: after it, the account page.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub account: bool,
}

/// The device authorization a [`Pending`] request decides.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct PendingDevice {
    /// SHA-256 of the device code.
    pub hash: String,
    /// The user code as shown (`XXXX-XXXX`).
    pub user_code: String,
}

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
fn redirect_with(redirect_uri: &str, pairs: &[(&str, &str)]) -> Option<String> {
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
fn error_redirect(
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

/// `GET /authorize`.
pub(crate) async fn authorize(
    State(shared): AppState,
    PeerIp(ip): PeerIp,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if !shared.allow(Bucket::Authorize, &ip) {
        return too_many();
    }
    let bad = |m: &str| error_page(StatusCode::BAD_REQUEST, "Invalid authorization request", m);
    let params = match Params::parse(query.unwrap_or_default().as_bytes()) {
        Ok(p) => p,
        Err(e) => {
            return bad(e
                .error_description
                .as_deref()
                .unwrap_or("malformed request"));
        }
    };
    let Some(client_id) = params.get("client_id") else {
        return bad("The request has no client_id.");
    };
    let client = match clients::resolve(&shared, client_id).await {
        Ok(c) => c,
        Err(LookupError::Unknown) => return bad("The application is not registered here."),
        Err(LookupError::Document(d)) => {
            return bad(&format!(
                "The application's metadata document could not be used: {d}"
            ));
        }
        // Why is in the server log only (security finding 10).
        Err(LookupError::NotFetched) => {
            return bad(
                "The application's metadata document could not be fetched. The authorization \
                 server's log says why.",
            );
        }
        Err(LookupError::Internal(e)) => return internal(e),
    };
    let registered = &client.metadata.redirect_uris;
    let redirect_uri = match params.get("redirect_uri") {
        Some(r) => r.to_owned(),
        None if registered.len() == 1 => registered[0].clone(),
        None => return bad("The request has no redirect_uri."),
    };
    if !redirect_uri_allowed(registered, &redirect_uri) {
        return bad("The redirect URI is not registered for this application.");
    }
    let state = params.get("state").map(str::to_owned);
    let fail = |e: OAuthError| {
        error_redirect(
            &shared,
            &redirect_uri,
            state.as_deref(),
            &e,
            StatusCode::FOUND,
        )
    };
    if params.get("response_type") != Some("code") {
        return fail(oauth_error(
            ErrorCode::UnsupportedResponseType,
            "response_type must be code",
        ));
    }
    let Some(challenge) = params.get("code_challenge") else {
        return fail(oauth_error(
            ErrorCode::InvalidRequest,
            "code_challenge is required (PKCE, OAuth 2.1 §4.1.1)",
        ));
    };
    if params.get("code_challenge_method") != Some(S256) {
        return fail(oauth_error(
            ErrorCode::InvalidRequest,
            "code_challenge_method must be S256; plain is not accepted",
        ));
    }
    if !is_sha256_b64url(challenge) {
        return fail(oauth_error(
            ErrorCode::InvalidRequest,
            "code_challenge must be a base64url SHA-256 (43 characters)",
        ));
    }
    if !client.allows_grant("authorization_code") {
        return fail(oauth_error(
            ErrorCode::UnauthorizedClient,
            "the client is not registered for the authorization code grant",
        ));
    }
    let scope = match check_scope(&shared, &client, params.get("scope")) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let resource = match check_resource(&shared, params.get("resource")) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let dpop_jkt = params.get("dpop_jkt");
    if dpop_jkt.is_some_and(|j| !is_sha256_b64url(j)) {
        return fail(oauth_error(
            ErrorCode::InvalidRequest,
            "dpop_jkt must be the base64url SHA-256 JWK thumbprint of the DPoP key (RFC 9449 §10)",
        ));
    }
    let pending = Pending {
        client_id: client.client_id.clone(),
        redirect_uri: redirect_uri.clone(),
        state: state.clone(),
        code_challenge: challenge.to_owned(),
        scope: scope.to_string(),
        resource,
        dpop_jkt: dpop_jkt.map(str::to_owned),
        device: None,
        account: false,
    };
    let prompt = params.get("prompt").unwrap_or("");
    let cookie = session_cookie(&headers, cookie_name(&shared));
    let force_login = prompt.split(' ').any(|p| p == "login");
    let (user, via) = match signed_in(&shared, cookie.as_deref().filter(|_| !force_login)).await {
        Ok(s) => s,
        Err(e) => return internal(e),
    };
    if prompt.split(' ').any(|p| p == "none") {
        // OIDC Core §3.1.2.6: the provider cannot be visited without a page.
        if via.is_some() {
            return fail(OAuthError::new(ErrorCode::Other("login_required".into())));
        }
        let Some(user) = &user else {
            return fail(OAuthError::new(ErrorCode::Other("login_required".into())));
        };
        // Without a page, only remembered consent for an assured client can answer (RFC 8252
        // §8.6); anything else needs the page (OIDC Core §3.1.2.6).
        return match has_consent(&shared, user, &pending).await {
            Ok(true) if identity_assured(&client, &redirect_uri) => {
                finish(&shared, &pending, user, StatusCode::FOUND, None).await
            }
            Ok(_) => fail(OAuthError::new(ErrorCode::Other("consent_required".into()))),
            Err(e) => internal(e),
        };
    }
    let mut consented_before = false;
    if let Some(user) = &user
        && prompt.is_empty()
        && via.is_none()
    {
        match has_consent(&shared, user, &pending).await {
            // RFC 8252 §8.6: remembered consent answers only for an assured client.
            Ok(true) if identity_assured(&client, &redirect_uri) => {
                return finish(&shared, &pending, user, StatusCode::FOUND, None).await;
            }
            Ok(c) => consented_before = c,
            Err(e) => return internal(e),
        }
    }
    begin(
        &shared,
        cookie,
        user.as_deref(),
        via,
        &pending,
        consented_before,
    )
    .await
}

/// Who the browser with session `cookie` is signed in as, and the identity provider they signed
/// in at. SPEC F2: every grant of a federated user keeps upstream tokens of its own, so such a
/// session goes back through the provider (silently, with the provider's session); a user of a
/// provider no longer configured signs in again on the login page.
pub(crate) async fn signed_in(
    shared: &Shared,
    cookie: Option<&str>,
) -> Result<(Option<String>, Option<String>), AuthServerError> {
    let user = match cookie {
        Some(sid) => shared.store.session_user(&hash_secret(sid), now()).await?,
        None => None,
    };
    let via = match &user {
        Some(u) => shared.store.user_provider(u).await?,
        None => None,
    };
    Ok(match via {
        Some(p) if !shared.config.identity_providers.iter().any(|i| i.name == p) => (None, None),
        via => (user, via),
    })
}

/// Stores `pending` for the browser (a new session cookie when it has none) and shows what comes
/// next: the identity provider for a session signed in there, the consent page for a signed-in
/// user, else the login page.
pub(crate) async fn begin(
    shared: &Shared,
    cookie: Option<String>,
    user: Option<&str>,
    via: Option<String>,
    pending: &Pending,
    consented_before: bool,
) -> Response {
    let now = now();
    let (sid, new_cookie) = match cookie {
        Some(sid) => (sid, false),
        None => (random_secret(), true),
    };
    let request_id = random_bytes_b64(18);
    let json = serde_json::to_string(&pending).unwrap_or_default();
    if let Err(e) = shared
        .store
        .insert_request(&request_id, &hash_secret(&sid), &json, now + REQUEST_TTL)
        .await
    {
        return internal(e);
    }
    let mut resp = match (user, via) {
        (Some(_), Some(idp)) => {
            let csrf = csrf_token(&sid, &request_id);
            redirect(
                StatusCode::FOUND,
                &federation::start_url(shared, &request_id, &csrf, &idp),
            )
        }
        (Some(user_id), None) => {
            consent_page(
                shared,
                pending,
                &request_id,
                &sid,
                user_id,
                consented_before,
            )
            .await
        }
        (None, _) => login_page(shared, pending, &request_id, &sid, "", None).await,
    };
    if new_cookie {
        resp.headers_mut()
            .append(header::SET_COOKIE, set_cookie(shared, &sid, None));
    }
    resp
}

async fn login_page(
    shared: &Shared,
    pending: &Pending,
    request_id: &str,
    sid: &str,
    username: &str,
    error: Option<&str>,
) -> Response {
    // The account page's sign-in is for no client.
    let name = match pending.account {
        true => None,
        false => Some(
            clients::resolve(shared, &pending.client_id)
                .await
                .map(|c| c.display_name().to_owned())
                .unwrap_or_else(|_| pending.client_id.clone()),
        ),
    };
    let csrf = csrf_token(sid, request_id);
    let providers: Vec<ProviderLink<'_>> = shared
        .config
        .identity_providers
        .iter()
        .map(|p| ProviderLink {
            name: &p.name,
            display_name: &p.display_name,
            href: federation::start_url(shared, request_id, &csrf, &p.name),
        })
        .collect();
    // Providers only, and only one: no page to choose on.
    if !shared.config.password_login && error.is_none() && providers.len() == 1 {
        return redirect(StatusCode::FOUND, &providers[0].href);
    }
    let action = shared.config.endpoint("/authorize/login");
    let status = if error.is_some() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    render(
        status,
        &LoginPage {
            action: &action,
            request_id,
            csrf: &csrf,
            client_name: name.as_deref(),
            username,
            error,
            password_login: shared.config.password_login,
            providers,
        },
    )
}

/// The host (and port) the user will be sent to, or the scheme of a private-use URI.
pub(crate) fn redirect_host(uri: &str) -> String {
    match url::Url::parse(uri) {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            (None, _) => format!("{}:", u.scheme()),
        },
        Err(_) => uri.to_owned(),
    }
}

/// The consent form; `consented_before`: the user approved this client and scope set before,
/// but that approval cannot answer for it (see [`identity_assured`]).
async fn consent_page(
    shared: &Shared,
    pending: &Pending,
    request_id: &str,
    sid: &str,
    user_id: &str,
    consented_before: bool,
) -> Response {
    let client = match clients::resolve(shared, &pending.client_id).await {
        Ok(c) => c,
        Err(_) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "Unknown application",
                "The application is no longer registered.",
            );
        }
    };
    let username = match shared.store.user_by_id(user_id).await {
        Ok(Some(u)) => u.username,
        Ok(None) => String::new(),
        Err(e) => return internal(e),
    };
    let is_document = client.kind == ClientKind::MetadataDocument;
    let action = shared.config.endpoint("/authorize/consent");
    let scope = ScopeSet::parse(&pending.scope);
    render(
        StatusCode::OK,
        &ConsentPage {
            action: &action,
            request_id,
            csrf: &csrf_token(sid, request_id),
            client_name: client.display_name(),
            client_url: is_document.then_some(client.client_id.as_str()),
            username: &username,
            redirect_host: &redirect_host(&pending.redirect_uri),
            localhost_warning: is_document && is_loopback_redirect(&pending.redirect_uri),
            consented_before,
            scopes: scope.iter().collect(),
            resource: pending.resource.as_deref(),
            device_code: pending.device.as_ref().map(|d| d.user_code.as_str()),
        },
    )
}

/// Sorted, space-separated: the key under which consent is remembered.
fn consent_key(scope: &str) -> String {
    let set = ScopeSet::parse(scope);
    let mut v: Vec<&str> = set.iter().collect();
    v.sort_unstable();
    v.join(" ")
}

/// Whether the client's identity is assured well enough for remembered consent to answer
/// without the page (RFC 8252 §8.6: "unless the identity of the client can be proven, the
/// request SHOULD be processed as if no previous request had been approved"). A confidential
/// client proves it at the token endpoint, where the code is useless without its credentials;
/// a public client only through a claimed https redirect URI (see [`claimed_https_redirect`]).
fn identity_assured(client: &Client, redirect_uri: &str) -> bool {
    client.is_confidential() || claimed_https_redirect(client.kind, &client.client_id, redirect_uri)
}

/// Whether `redirect_uri` is an https URI that only the client can receive: for a client ID
/// metadata document, one on the document's own origin (whoever serves the document there
/// receives the code; MCP SPEC A10); for any other client, one on a host that is not loopback.
/// Loopback and private-use redirect URIs can be claimed by any program on the user's
/// machine (RFC 8252 §8.6, §8.7), and http is never claimed.
fn claimed_https_redirect(kind: ClientKind, client_id: &str, redirect_uri: &str) -> bool {
    let Ok(redirect) = url::Url::parse(redirect_uri) else {
        return false;
    };
    if redirect.scheme() != "https" {
        return false;
    }
    match kind {
        // A loopback document origin is only fetched when an operator allow-lists it (A10).
        ClientKind::MetadataDocument => {
            url::Url::parse(client_id).is_ok_and(|doc| doc.origin() == redirect.origin())
        }
        ClientKind::Static | ClientKind::Dynamic => !is_loopback(&redirect),
    }
}

async fn has_consent(
    shared: &Shared,
    user_id: &str,
    pending: &Pending,
) -> Result<bool, AuthServerError> {
    let wanted = ScopeSet::parse(&pending.scope);
    Ok(shared
        .store
        .consents(user_id, &pending.client_id)
        .await?
        .iter()
        .any(|granted| ScopeSet::parse(granted).is_superset(&wanted)))
}

/// Issues the code and redirects back with `code`, `state` and `iss`. When the sign-in of the
/// request `request_id` was at an identity provider, the grant family the code starts keeps its
/// upstream tokens (SPEC F2).
async fn finish(
    shared: &Shared,
    pending: &Pending,
    user_id: &str,
    status: StatusCode,
    request_id: Option<&str>,
) -> Response {
    let code = random_secret();
    let now = now();
    let family = random_bytes_b64(16);
    if let Some(id) = request_id
        && !shared.config.identity_providers.is_empty()
    {
        let until = now + shared.config.refresh_token_ttl.as_secs() as i64;
        if let Err(e) = shared.store.attach_upstream_grant(id, &family, until).await {
            return internal(e);
        }
    }
    if let Some(jkt) = &pending.dpop_jkt {
        let until = now + shared.config.refresh_token_ttl.as_secs() as i64;
        if let Err(e) = shared.store.bind_family_key(&family, jkt, until).await {
            return internal(e);
        }
    }
    let stored = shared
        .store
        .insert_code(&NewCode {
            code_hash: &hash_secret(&code),
            client_id: &pending.client_id,
            user_id,
            redirect_uri: &pending.redirect_uri,
            code_challenge: &pending.code_challenge,
            resource: pending.resource.as_deref(),
            scope: &pending.scope,
            family_id: &family,
            created_at: now,
            expires_at: now + shared.config.code_ttl.as_secs() as i64,
        })
        .await;
    if let Err(e) = stored {
        return internal(e);
    }
    let mut pairs = vec![("code", code.as_str())];
    if let Some(s) = &pending.state {
        pairs.push(("state", s));
    }
    pairs.push(("iss", &shared.config.issuer));
    match redirect_with(&pending.redirect_uri, &pairs) {
        Some(loc) => redirect(status, &loc),
        None => error_page(
            StatusCode::BAD_REQUEST,
            "Invalid request",
            "Bad redirect URI.",
        ),
    }
}

/// A form post: the browser's cookie, the CSRF check and the pending request it belongs to.
struct FormPost {
    params: Params,
    sid: String,
    request_id: String,
    pending: Pending,
}

async fn check_form(
    shared: &Shared,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<FormPost, Response> {
    let refuse = |m: &str| error_page(StatusCode::FORBIDDEN, "Request refused", m);
    let params = Params::parse(body).map_err(|_| refuse("The form is malformed."))?;
    let sid = session_cookie(headers, cookie_name(shared)).ok_or_else(|| {
        refuse("Your browser did not send the session cookie. Enable cookies and start again.")
    })?;
    let request_id = params
        .get("request_id")
        .ok_or_else(|| refuse("The form is incomplete."))?
        .to_owned();
    let csrf_ok = params
        .get("csrf")
        .is_some_and(|c| constant_time_eq(c.as_bytes(), csrf_token(&sid, &request_id).as_bytes()));
    if !csrf_ok {
        return Err(refuse(
            "The form's security token is missing or wrong (cross-site request forgery protection).",
        ));
    }
    let json = shared
        .store
        .request(&request_id, &hash_secret(&sid), now())
        .await
        .map_err(internal)?
        .ok_or_else(|| {
            error_page(
                StatusCode::BAD_REQUEST,
                "Sign-in expired",
                "This sign-in request has expired or was already used. Start again from the application.",
            )
        })?;
    let pending: Pending = serde_json::from_str(&json).map_err(|e| {
        internal(AuthServerError::Invalid {
            what: "stored request",
            reason: e.to_string(),
        })
    })?;
    Ok(FormPost {
        params,
        sid,
        request_id,
        pending,
    })
}

/// `POST /authorize/login`.
pub(crate) async fn login(
    State(shared): AppState,
    PeerIp(ip): PeerIp,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !shared.allow(Bucket::Authorize, &ip) {
        return too_many();
    }
    if !shared.config.password_login {
        return error_page(
            StatusCode::FORBIDDEN,
            "Password sign-in is off",
            "Sign in with one of the identity providers on the sign-in page.",
        );
    }
    let form = match check_form(&shared, &headers, &body).await {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    let username = form.params.get("username").unwrap_or("").to_owned();
    let password = form.params.get("password").unwrap_or("").to_owned();
    if !shared.allow(Bucket::Login, &ip) {
        return too_many();
    }
    let user = match shared.store.user_by_name(&username).await {
        // A user an identity provider signs in has no password: like an unknown user.
        Ok(u) => u.filter(|u| u.password_hash != NO_PASSWORD),
        Err(e) => return internal(e),
    };
    // Verify against a dummy hash for unknown users so both cases take as long.
    let phc = user
        .as_ref()
        .map(|u| u.password_hash.clone())
        .unwrap_or_else(|| shared.dummy_password_hash.clone());
    // Review finding 3: each check holds the hash's memory (19 MiB by default), so only
    // `max_concurrent_password_checks` run at once; the permit lives as long as the check, even
    // when the browser goes away.
    let wait = shared.config.password_check_wait;
    let Ok(Ok(permit)) =
        tokio::time::timeout(wait, shared.password_checks.clone().acquire_owned()).await
    else {
        let mut resp = login_page(
            &shared,
            &form.pending,
            &form.request_id,
            &form.sid,
            &username,
            Some("Too many sign-ins at once. Try again in a moment."),
        )
        .await;
        // RFC 9110 §15.6.4, §10.2.3.
        *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return resp;
    };
    let ok = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        passwords::verify(&password, &phc)
    })
    .await
    .unwrap_or(false);
    let known_user = user.as_ref().map(|u| u.id.clone());
    let Some(user) = user.filter(|_| ok) else {
        // Only a known user's id: an unknown name may be a password typed in the wrong field.
        let user_id = known_user.as_deref().unwrap_or("");
        let known_user = known_user.is_some();
        audit!(
            "signin.failed",
            method = "password",
            known_user,
            user_id,
            ip
        );
        return login_page(
            &shared,
            &form.pending,
            &form.request_id,
            &form.sid,
            &username,
            Some("Wrong username or password."),
        )
        .await;
    };
    audit!(
        "signin.succeeded",
        method = "password",
        user_id = user.id.as_str(),
        username = user.username.as_str(),
        ip
    );
    after_login(&shared, &form.request_id, &form.pending, &user.id).await
}

/// Signed in at an identity provider (SPEC F1-F8): continues the pending request `request_id`
/// of the browser whose session cookie is `sid` like a password sign-in.
pub(crate) async fn federated_login(
    shared: &Shared,
    request_id: &str,
    sid: &str,
    user_id: &str,
) -> Response {
    let json = match shared
        .store
        .request(request_id, &hash_secret(sid), now())
        .await
    {
        Ok(Some(j)) => j,
        Ok(None) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "Sign-in expired",
                "This sign-in request has expired or was already used. Start again from the application.",
            );
        }
        Err(e) => return internal(e),
    };
    let pending: Pending = match serde_json::from_str(&json) {
        Ok(p) => p,
        Err(e) => {
            return internal(AuthServerError::Invalid {
                what: "stored request",
                reason: e.to_string(),
            });
        }
    };
    after_login(shared, request_id, &pending, user_id).await
}

/// After a sign-in, password or identity provider: a new session id (no session fixation) that
/// the pending request follows, then the consent page (or remembered consent for an assured
/// client).
async fn after_login(
    shared: &Shared,
    request_id: &str,
    pending: &Pending,
    user_id: &str,
) -> Response {
    // A new session id on login (no session fixation); the pending request follows it.
    let sid = random_secret();
    let sid_hash = hash_secret(&sid);
    let now = now();
    let ttl = shared.config.session_ttl.as_secs();
    let stored = async {
        shared
            .store
            .insert_session(&sid_hash, user_id, now, now + ttl as i64)
            .await?;
        shared.store.rebind_request(request_id, &sid_hash).await
    };
    if let Err(e) = stored.await {
        return internal(e);
    }
    let p = pending;
    if p.account {
        let mut resp = match shared.store.take_request(request_id).await {
            Ok(_) => redirect(StatusCode::SEE_OTHER, &shared.config.endpoint("/account")),
            Err(e) => internal(e),
        };
        resp.headers_mut()
            .append(header::SET_COOKIE, set_cookie(shared, &sid, Some(ttl)));
        return resp;
    }
    let mut resp = match has_consent(shared, user_id, p).await {
        // RFC 8252 §8.6: signing in is no consent; remembered consent answers only for an
        // assured client. A device authorization always asks (RFC 8628 §5.4).
        Ok(true)
            if p.device.is_none()
                && clients::resolve(shared, &p.client_id)
                    .await
                    .is_ok_and(|c| identity_assured(&c, &p.redirect_uri)) =>
        {
            match shared.store.take_request(request_id).await {
                Ok(_) => finish(shared, p, user_id, StatusCode::SEE_OTHER, Some(request_id)).await,
                Err(e) => internal(e),
            }
        }
        Ok(consented_before) => {
            consent_page(shared, p, request_id, &sid, user_id, consented_before).await
        }
        Err(e) => internal(e),
    };
    resp.headers_mut()
        .append(header::SET_COOKIE, set_cookie(shared, &sid, Some(ttl)));
    resp
}

/// `POST /authorize/consent`.
pub(crate) async fn consent(
    State(shared): AppState,
    PeerIp(ip): PeerIp,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !shared.allow(Bucket::Authorize, &ip) {
        return too_many();
    }
    let form = match check_form(&shared, &headers, &body).await {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    let user = match shared
        .store
        .session_user(&hash_secret(&form.sid), now())
        .await
    {
        Ok(Some(u)) => u,
        Ok(None) => {
            return error_page(
                StatusCode::FORBIDDEN,
                "Not signed in",
                "Your session has ended. Start again from the application.",
            );
        }
        Err(e) => return internal(e),
    };
    match shared.store.take_request(&form.request_id).await {
        Ok(true) => {}
        Ok(false) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "Already answered",
                "This request was already answered.",
            );
        }
        Err(e) => return internal(e),
    }
    let p = &form.pending;
    let client_id = p.client_id.as_str();
    let allow = form.params.get("decision") == Some("allow");
    if let Some(device) = &p.device {
        return super::device::decided(&shared, p, device, &user, allow, &form.request_id, &ip)
            .await;
    }
    if !allow {
        audit!("consent.denied", user_id = user.as_str(), client_id, ip);
        let e = oauth_error(ErrorCode::AccessDenied, "the user denied the request");
        return error_redirect(
            &shared,
            &p.redirect_uri,
            p.state.as_deref(),
            &e,
            StatusCode::SEE_OTHER,
        );
    }
    if let Err(e) = shared
        .store
        .insert_consent(&user, &p.client_id, &consent_key(&p.scope), now())
        .await
    {
        return internal(e);
    }
    audit!(
        "consent.granted",
        user_id = user.as_str(),
        client_id,
        scope = p.scope.as_str(),
        ip
    );
    finish(
        &shared,
        p,
        &user,
        StatusCode::SEE_OTHER,
        Some(&form.request_id),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sec7_only_claimed_https_redirects_assure_a_public_client_rfc8252_8_6() {
        use ClientKind::{Dynamic, MetadataDocument as Doc, Static};
        let doc = "https://app.example.com/oauth/client.json";
        for (kind, redirect, assured) in [
            (Doc, "https://app.example.com/cb", true),
            (Doc, "https://app.example.com:8443/cb", false),
            (Doc, "https://other.example.com/cb", false),
            (Doc, "http://127.0.0.1:5000/cb", false),
            (Doc, "com.example.app:/cb", false),
            (Dynamic, "https://app.example.com/cb", true),
            (Static, "https://app.example.com/cb", true),
            (Dynamic, "https://127.0.0.1/cb", false),
            (Dynamic, "https://localhost/cb", false),
            (Dynamic, "http://127.0.0.1:5000/cb", false),
            (Dynamic, "http://app.example.com/cb", false),
            (Dynamic, "com.example.app:/cb", false),
        ] {
            assert_eq!(
                claimed_https_redirect(kind, doc, redirect),
                assured,
                "{kind:?} {redirect}"
            );
        }
    }
}
