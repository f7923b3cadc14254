//! The login and consent forms posted back to `/authorize/login` and `/authorize/consent`, and
//! what follows a sign-in (password or identity provider).

use super::*;

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
        return crate::routes::device::decided(
            &shared,
            p,
            device,
            &user,
            allow,
            &form.request_id,
            &ip,
        )
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
