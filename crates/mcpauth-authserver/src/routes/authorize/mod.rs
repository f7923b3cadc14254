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

mod browser;
mod consent;
mod forms;

pub(crate) use browser::{
    cookie_name, csrf_token, internal, redirect, session_cookie, set_cookie, too_many,
};
use browser::{error_redirect, redirect_with};
use consent::{consent_key, has_consent, identity_assured};
pub(crate) use forms::{consent, federated_login, login};

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
