//! The device authorization grant (RFC 8628, SPEC V1-V2) for clients without a browser: the
//! device authorization endpoint hands out a device code (a secret the client polls with) and a
//! user code; the user enters the user code on the verification page, signs in (password or
//! identity provider, the login page of `/authorize`) and allows or denies on the consent page,
//! which warns about remote phishing (§5.4) and is shown every time; the token endpoint answers
//! the polls with `authorization_pending`, `slow_down` (the interval grows by 5 s), `access_denied`
//! or `expired_token`, then issues the tokens once.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mcpauth_core::{ErrorCode, constant_time_eq};
use serde::Deserialize;
use serde_json::json;

use super::authorize::{
    Pending, PendingDevice, begin, cookie_name, csrf_token, internal, session_cookie, set_cookie,
    signed_in, too_many,
};
use super::token::{NewGrant, finish_grant, start_grant};
use super::{AppState, PeerIp, authenticated, no_store_json};
use crate::audit::audit;
use crate::client_auth::TokenError;
use crate::clients::{self, Client};
use crate::pages::{DevicePage, DonePage, error_page, render};
use crate::params::{Params, invalid_request, oauth_error};
use crate::rate_limit::Bucket;
use crate::secrets::{hash_secret, now, random_bytes_b64, random_secret};
use crate::server::Shared;
use crate::store::{DeviceStatus, NewDevice, Poll};
use crate::tokens::{check_resource, check_scope};

/// The device code grant type (RFC 8628 §3.4).
pub(crate) const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// The user code alphabet: 20 consonants, no vowels (no words) and no look-alikes (RFC 8628
/// §6.1): 8 characters give 20^8 ≈ 2.6·10^10 codes, with sign-in attempts rate-limited.
const USER_CODE_ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";
const USER_CODE_LEN: usize = 8;

/// The CSRF token of the verification form: bound to the browser's cookie.
const FORM_ID: &str = "device";

/// A new user code, without its dash.
fn new_user_code() -> String {
    let mut code = String::with_capacity(USER_CODE_LEN);
    let mut bytes = [0u8; 32];
    while code.len() < USER_CODE_LEN {
        getrandom::fill(&mut bytes).expect("the operating system's random number generator failed");
        // Rejection sampling: 240 = 12 * 20, so every character is equally likely.
        for b in bytes.iter().filter(|b| **b < 240) {
            if code.len() < USER_CODE_LEN {
                code.push(USER_CODE_ALPHABET[usize::from(*b % 20)] as char);
            }
        }
    }
    code
}

/// `ABCDEFGH` as shown to the user: `ABCD-EFGH`.
fn display(code: &str) -> String {
    format!("{}-{}", &code[..4], &code[4..])
}

/// What the user typed, normalised (case, dashes and spaces ignored, RFC 8628 §6.1), or `None`
/// when it cannot be a user code.
fn normalise(typed: &str) -> Option<String> {
    let code: String = typed
        .chars()
        .filter(|c| !matches!(c, '-' | ' ' | '\t'))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (code.len() == USER_CODE_LEN && code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)))
        .then_some(code)
}

/// `POST /device_authorization` (RFC 8628 §3.1-§3.2).
pub(crate) async fn device_authorization(
    State(shared): AppState,
    PeerIp(ip): PeerIp,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match authorize_device(&shared, &ip, &headers, &body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn authorize_device(
    shared: &Shared,
    ip: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, TokenError> {
    let (params, client) =
        authenticated(shared, ip, headers, body, "/device_authorization").await?;
    if !shared.allow(Bucket::TokenClient, &client.client_id) {
        return Err(TokenError::rate_limited());
    }
    if !client.allows_grant(DEVICE_GRANT) {
        return Err(oauth_error(
            ErrorCode::UnauthorizedClient,
            "the client is not registered for the device code grant",
        )
        .into());
    }
    let scope = check_scope(shared, &client, params.get("scope"))?;
    let resource = check_resource(shared, params.get("resource"))?;
    // Only requests that would store a pending authorization count.
    if !shared.allow(Bucket::DeviceIp, ip) {
        return Err(TokenError::rate_limited());
    }
    let device_code = random_secret();
    let device_hash = hash_secret(&device_code);
    let now = now();
    let ttl = shared.config.device_code_ttl.as_secs() as i64;
    let interval = shared.config.device_interval.as_secs().max(1) as i64;
    let scope = scope.to_string();
    // A clash with a live user code is rare (2.6·10^10 codes): try a few.
    for _ in 0..4 {
        let user_code = new_user_code();
        let stored = shared
            .store
            .insert_device(&NewDevice {
                device_hash: &device_hash,
                user_code: &user_code,
                client_id: &client.client_id,
                scope: &scope,
                resource: resource.as_deref(),
                interval,
                created_at: now,
                expires_at: now + ttl,
            })
            .await?;
        if stored {
            let uri = shared.config.endpoint("/device");
            let shown = display(&user_code);
            let complete = format!("{uri}?user_code={shown}");
            let client_id = client.client_id.as_str();
            audit!("device.authorization_started", client_id, ip);
            return Ok(no_store_json(
                StatusCode::OK,
                &json!({
                    "device_code": device_code,
                    "user_code": shown,
                    "verification_uri": uri,
                    "verification_uri_complete": complete,
                    "expires_in": ttl,
                    "interval": interval,
                }),
            ));
        }
    }
    Err(TokenError::internal("no free user code after four tries"))
}

/// The query of `GET /device`.
#[derive(Debug, Deserialize)]
pub(crate) struct DeviceQuery {
    user_code: Option<String>,
}

/// The verification page with `user_code` filled in and `error` shown; sets a session cookie
/// when the browser has none (the form's CSRF token is bound to it).
fn device_page(
    shared: &Shared,
    headers: &HeaderMap,
    user_code: &str,
    error: Option<&str>,
) -> Response {
    let (sid, new_cookie) = match session_cookie(headers, cookie_name(shared)) {
        Some(sid) => (sid, false),
        None => (random_secret(), true),
    };
    let action = shared.config.endpoint("/device");
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let mut resp = render(
        status,
        &DevicePage {
            action: &action,
            csrf: &csrf_token(&sid, FORM_ID),
            user_code,
            error,
        },
    );
    if new_cookie {
        resp.headers_mut()
            .append(header::SET_COOKIE, set_cookie(shared, &sid, None));
    }
    resp
}

/// `GET /device` (RFC 8628 §3.3): the user code form, filled in from `verification_uri_complete`.
pub(crate) async fn page(
    State(shared): AppState,
    PeerIp(ip): PeerIp,
    headers: HeaderMap,
    Query(q): Query<DeviceQuery>,
) -> Response {
    if !shared.allow(Bucket::Authorize, &ip) {
        return too_many();
    }
    let typed = q.user_code.unwrap_or_default();
    // Only a well-formed code is echoed back into the form.
    let shown = normalise(&typed).map(|c| display(&c)).unwrap_or_default();
    device_page(&shared, &headers, &shown, None)
}

/// `POST /device`: the user code entered. A live one starts sign-in and consent for its device
/// authorization, like `/authorize` does for a browser client.
pub(crate) async fn enter(
    State(shared): AppState,
    PeerIp(ip): PeerIp,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Guessing user codes is guessing passwords: the sign-in limit applies.
    if !shared.allow(Bucket::Login, &ip) {
        return too_many();
    }
    let refuse = |m: &str| error_page(StatusCode::FORBIDDEN, "Request refused", m);
    let Ok(params) = Params::parse(&body) else {
        return refuse("The form is malformed.");
    };
    let Some(sid) = session_cookie(&headers, cookie_name(&shared)) else {
        return refuse(
            "Your browser did not send the session cookie. Enable cookies and start again.",
        );
    };
    let csrf_ok = params
        .get("csrf")
        .is_some_and(|c| constant_time_eq(c.as_bytes(), csrf_token(&sid, FORM_ID).as_bytes()));
    if !csrf_ok {
        return refuse(
            "The form's security token is missing or wrong (cross-site request forgery protection).",
        );
    }
    let typed = params.get("user_code").unwrap_or("");
    let row = match normalise(typed) {
        Some(code) => match shared.store.pending_device(&code, now()).await {
            Ok(row) => row,
            Err(e) => return internal(e),
        },
        None => None,
    };
    let Some(row) = row else {
        audit!("device.code_refused", ip);
        return device_page(
            &shared,
            &headers,
            "",
            Some(
                "That code is not valid. It may have expired or been used already: check the code your device shows now.",
            ),
        );
    };
    if clients::resolve(&shared, &row.client_id).await.is_err() {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Unknown application",
            "The application that asked is no longer registered.",
        );
    }
    let pending = Pending {
        client_id: row.client_id.clone(),
        scope: row.scope.clone(),
        resource: row.resource.clone(),
        device: Some(PendingDevice {
            hash: row.device_hash.clone(),
            user_code: display(&row.user_code),
        }),
        ..Pending::default()
    };
    let (user, via) = match signed_in(&shared, Some(&sid)).await {
        Ok(s) => s,
        Err(e) => return internal(e),
    };
    begin(&shared, Some(sid), user.as_deref(), via, &pending, false).await
}

/// The user's answer on the consent page for the device authorization `device` (called by the
/// consent form's handler, which checked the form and took the request).
pub(crate) async fn decided(
    shared: &Shared,
    pending: &Pending,
    device: &PendingDevice,
    user: &str,
    allow: bool,
    request_id: &str,
    ip: &str,
) -> Response {
    let client_id = pending.client_id.as_str();
    let now = now();
    if !allow {
        audit!(
            "consent.denied",
            user_id = user,
            client_id,
            ip,
            device = true
        );
        return match shared.store.decide_device(&device.hash, None, now).await {
            Ok(_) => done(
                "Device not connected",
                "You denied the request: the device gets no access.",
            ),
            Err(e) => internal(e),
        };
    }
    let family = random_bytes_b64(16);
    // SPEC F2: a user signed in at an identity provider keeps its tokens with this grant.
    if !shared.config.identity_providers.is_empty() {
        let until = now + shared.config.refresh_token_ttl.as_secs() as i64;
        if let Err(e) = shared
            .store
            .attach_upstream_grant(request_id, &family, until)
            .await
        {
            return internal(e);
        }
    }
    match shared
        .store
        .decide_device(&device.hash, Some((user, &family)), now)
        .await
    {
        Ok(true) => {
            let scope = pending.scope.as_str();
            audit!(
                "consent.granted",
                user_id = user,
                client_id,
                scope,
                ip,
                device = true
            );
            done(
                "Device connected",
                "Return to your device: it continues on its own.",
            )
        }
        Ok(false) => error_page(
            StatusCode::BAD_REQUEST,
            "Code expired",
            "This code expired or was already answered. Start again on your device.",
        ),
        Err(e) => internal(e),
    }
}

fn done(title: &str, message: &str) -> Response {
    render(StatusCode::OK, &DonePage { title, message })
}

/// The device code grant at the token endpoint (RFC 8628 §3.4-§3.5).
pub(crate) async fn token(
    shared: &Shared,
    client: &Client,
    params: &Params,
    jkt: Option<&str>,
) -> Result<Response, TokenError> {
    let code = params
        .get("device_code")
        .ok_or_else(|| invalid_request("device_code is required"))?;
    let hash = hash_secret(code);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let pending = |code: &str, why: &str| -> TokenError {
        oauth_error(ErrorCode::Other(code.into()), why).into()
    };
    let row = match shared.store.poll_device(&hash, now_ms).await? {
        None => return Err(invalid_grant("unknown device code")),
        Some(Poll::TooSoon) => {
            return Err(pending(
                "slow_down",
                "polled sooner than the interval: wait 5 seconds longer between polls from now on",
            ));
        }
        Some(Poll::Row(row)) => row,
    };
    if row.client_id != client.client_id {
        return Err(invalid_grant(
            "the device code was issued to another client",
        ));
    }
    match row.status {
        DeviceStatus::Used => {
            return Err(invalid_grant("the device code was already exchanged"));
        }
        DeviceStatus::Denied => {
            return Err(oauth_error(ErrorCode::AccessDenied, "the user denied the request").into());
        }
        _ if row.expires_at <= now() => {
            return Err(pending(
                "expired_token",
                "the device code expired: start a new device authorization",
            ));
        }
        DeviceStatus::Pending => {
            return Err(pending(
                "authorization_pending",
                "the user has not answered yet",
            ));
        }
        DeviceStatus::Approved => {}
    }
    let (Some(user_id), Some(family_id)) = (&row.user_id, &row.family_id) else {
        return Err(TokenError::internal(
            "an approved device code without a user",
        ));
    };
    let grant = NewGrant {
        user_id,
        family_id,
        scope: &row.scope,
        resource: row.resource.as_deref(),
    };
    let refresh = start_grant(shared, client, &grant, jkt, false).await?;
    if !shared.store.spend_device(&hash).await? {
        let until = now() + shared.config.refresh_token_ttl.as_secs() as i64;
        shared.store.revoke_family(family_id, now(), until).await?;
        return Err(invalid_grant("the device code was already exchanged"));
    }
    finish_grant(shared, client, &grant, jkt, refresh).await
}

fn invalid_grant(description: &str) -> TokenError {
    oauth_error(ErrorCode::InvalidGrant, description).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_user_codes_use_the_alphabet_and_are_typed_loosely() {
        for _ in 0..200 {
            let c = new_user_code();
            assert_eq!(c.len(), USER_CODE_LEN);
            assert!(c.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)), "{c}");
            assert_eq!(normalise(&display(&c)).as_deref(), Some(c.as_str()));
            assert_eq!(
                normalise(&display(&c).to_lowercase()).as_deref(),
                Some(c.as_str())
            );
        }
        assert_eq!(normalise(" bcdf - ghjk ").as_deref(), Some("BCDFGHJK"));
        for bad in [
            "",
            "BCDF-GHJ",
            "BCDF-GHJKL",
            "ABCD-EFGH",
            "BCDF-GHJ1",
            "<script>",
        ] {
            assert_eq!(normalise(bad), None, "{bad}");
        }
    }
}
