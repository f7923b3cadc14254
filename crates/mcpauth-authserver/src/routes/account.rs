//! The connected-apps page (`/account`): a signed-in user sees each client holding a grant for
//! them (its name, where it returns to, the scopes, when it was allowed and last used) and
//! removes one: the grant's refresh and access tokens are revoked at once (servers sharing the
//! database within two seconds) and the remembered consent goes, so the client must ask again.
//! Sign-in is the login page of `/authorize` (password or identity provider) for no client;
//! the removal form is CSRF-protected with a token bound to the session cookie.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use mcpauth_core::{ScopeSet, constant_time_eq};

use super::authorize::{
    Pending, begin, cookie_name, csrf_token, internal, redirect, redirect_host, session_cookie,
    too_many,
};
use super::{AppState, PeerIp};
use crate::admin;
use crate::audit::audit;
use crate::clients;
use crate::pages::{AccountPage, ConnectedApp, DonePage, error_page, render};
use crate::params::Params;
use crate::rate_limit::Bucket;
use crate::secrets::{hash_secret, now};
use crate::server::Shared;

/// The CSRF token of the removal forms: bound to the session cookie.
const FORM_ID: &str = "account";

/// The user the browser's session cookie is signed in as, and that cookie.
async fn session(
    shared: &Shared,
    headers: &HeaderMap,
) -> Result<Option<(String, String)>, Response> {
    let Some(sid) = session_cookie(headers, cookie_name(shared)) else {
        return Ok(None);
    };
    match shared.store.session_user(&hash_secret(&sid), now()).await {
        Ok(Some(user)) => Ok(Some((user, sid))),
        Ok(None) => Ok(None),
        Err(e) => Err(internal(e)),
    }
}

/// `GET /account`: the page, or the login page first.
pub(crate) async fn page(
    State(shared): AppState,
    PeerIp(ip): PeerIp,
    headers: HeaderMap,
) -> Response {
    if !shared.allow(Bucket::Authorize, &ip) {
        return too_many();
    }
    let (user_id, sid) = match session(&shared, &headers).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            let pending = Pending {
                account: true,
                ..Pending::default()
            };
            let cookie = session_cookie(&headers, cookie_name(&shared));
            return begin(&shared, cookie, None, None, &pending, false).await;
        }
        Err(resp) => return resp,
    };
    match account_page(&shared, &user_id, &sid).await {
        Ok(r) => r,
        Err(e) => internal(e),
    }
}

async fn account_page(
    shared: &Shared,
    user_id: &str,
    sid: &str,
) -> Result<Response, crate::AuthServerError> {
    let username = shared
        .store
        .user_by_id(user_id)
        .await?
        .map(|u| u.username)
        .unwrap_or_default();
    let mut apps = Vec::new();
    for g in shared.store.live_grants(Some(user_id), now()).await? {
        let client = clients::resolve(shared, &g.client_id).await.ok();
        let name = client
            .as_ref()
            .map(|c| c.display_name().to_owned())
            .unwrap_or_else(|| g.client_id.clone());
        let redirect_host = client
            .as_ref()
            .and_then(|c| c.metadata.redirect_uris.first())
            .map(|u| redirect_host(u));
        apps.push(ConnectedApp {
            id: g.family_id,
            name,
            redirect_host,
            scopes: ScopeSet::parse(&g.scope)
                .iter()
                .map(str::to_owned)
                .collect(),
            resource: g.resource,
            granted: utc(g.granted_at),
            last_used: utc(g.last_used_at),
        });
    }
    let action = shared.config.endpoint("/account/revoke");
    Ok(render(
        StatusCode::OK,
        &AccountPage {
            action: &action,
            signout: &shared.config.endpoint("/account/signout"),
            csrf: &csrf_token(sid, FORM_ID),
            username: &username,
            apps,
        },
    ))
}

/// A form posted from the account page: the signed-in user, their session id and the form,
/// after the rate limit and the CSRF check; or the refusal.
async fn form(
    shared: &Shared,
    ip: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(String, String, Params), Response> {
    if !shared.allow(Bucket::Authorize, ip) {
        return Err(too_many());
    }
    let refuse = |m: &str| error_page(StatusCode::FORBIDDEN, "Request refused", m);
    let Some((user_id, sid)) = session(shared, headers).await? else {
        return Err(refuse(
            "You are not signed in. Open the account page again.",
        ));
    };
    let params = Params::parse(body).map_err(|_| refuse("The form is malformed."))?;
    let csrf_ok = params
        .get("csrf")
        .is_some_and(|c| constant_time_eq(c.as_bytes(), csrf_token(&sid, FORM_ID).as_bytes()));
    if !csrf_ok {
        return Err(refuse(
            "The form's security token is missing or wrong (cross-site request forgery protection).",
        ));
    }
    Ok((user_id, sid, params))
}

/// `POST /account/signout`: ends this browser's session here.
pub(crate) async fn signout(
    State(shared): AppState,
    PeerIp(ip): PeerIp,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (user_id, sid, _) = match form(&shared, &ip, &headers, &body).await {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    if let Err(e) = shared.store.delete_session(&hash_secret(&sid)).await {
        return internal(e);
    }
    audit!("signout", user_id = user_id.as_str(), ip);
    render(
        StatusCode::OK,
        &DonePage {
            title: "Signed out",
            message: "You are signed out of this server. The applications you allowed keep their access.",
        },
    )
}

/// `POST /account/revoke`: removes one of the signed-in user's grants, then the page again.
pub(crate) async fn revoke(
    State(shared): AppState,
    PeerIp(ip): PeerIp,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (user_id, _, params) = match form(&shared, &ip, &headers, &body).await {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    let grant = params.get("grant").unwrap_or("");
    // Only a grant of this user: an id of anyone else's is as unknown as a made-up one.
    let live = match shared.store.live_grants(Some(&user_id), now()).await {
        Ok(l) => l,
        Err(e) => return internal(e),
    };
    if !live.iter().any(|g| g.family_id == grant) {
        return error_page(
            StatusCode::NOT_FOUND,
            "Not found",
            "That access was already removed, or is not yours.",
        );
    }
    match admin::revoke_grant(&shared.store, grant).await {
        Ok(g) => {
            let client_id = g.client_id.as_str();
            audit!(
                "account.app_removed",
                user_id = user_id.as_str(),
                client_id,
                ip
            );
            redirect(StatusCode::SEE_OTHER, &shared.config.endpoint("/account"))
        }
        Err(e) => internal(e),
    }
}

/// `at` (Unix seconds) as `YYYY-MM-DD HH:MM UTC`.
fn utc(at: i64) -> String {
    let (year, month, day, hour, minute, _) = mcpauth_core::civil::utc(at);
    format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02} UTC")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_civil_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc(1_796_459_400), "2026-12-05 08:30 UTC");
        assert_eq!(utc(-86_400), "1969-12-31 00:00 UTC");
    }
}
