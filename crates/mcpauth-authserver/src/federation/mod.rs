//! Federation (SPEC F1-F8): users sign in at an upstream identity provider, OpenID Connect or
//! plain OAuth 2.0 (e.g. GitHub), instead of (or beside) a local password. The login page links
//! to `/idp/start`, which stores an upstream login (state, PKCE verifier and, for OIDC, nonce,
//! bound to the browser's session cookie and the pending authorization request) and redirects
//! to the provider; the provider sends the browser back to the one redirect URI
//! `/idp/callback`, which takes that record once, exchanges the code, checks the ID token (OIDC)
//! or reads the user endpoint (OAuth 2.0), applies the provider's allow-list, finds or creates
//! the local user `NAME:SUB` and continues exactly like a password sign-in, to our consent page
//! (SPEC F7).

mod oauth2;
pub(crate) mod oidc;
mod provider;
pub(crate) mod session;
pub(crate) mod upstream;

use crate::audit::audit;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mcpauth_core::constant_time_eq;
use sha2::{Digest, Sha256};

pub use provider::{
    AllowRules, ClaimRule, IdentityProvider, OAuth2Endpoints, ProviderKind, TokenAuth,
};

use crate::pages::error_page;
use crate::params::Params;
use crate::rate_limit::Bucket;
use crate::routes::authorize::{
    cookie_name, csrf_token, federated_login, internal, redirect, session_cookie, too_many,
};
use crate::routes::{AppState, PeerIp};
use crate::secrets::{hash_secret, now, random_bytes_b64, random_secret, seal, unseal};
use crate::server::Shared;
use crate::store::{UpstreamGrant, UpstreamLogin};
use oidc::ProviderMetadata;
use upstream::{CodeGrant, UpstreamError};

/// How long a sign-in at a provider may take.
const UPSTREAM_TTL: i64 = 600;

/// The redirect URI to register at every provider.
pub fn callback_uri(config: &crate::Config) -> String {
    config.endpoint("/idp/callback")
}

/// The URL of the login page's button for `idp`.
pub(crate) fn start_url(shared: &Shared, request_id: &str, csrf: &str, idp: &str) -> String {
    let mut url = shared.config.endpoint("/idp/start?");
    url.push_str(
        &url::form_urlencoded::Serializer::new(String::new())
            .append_pair("request_id", request_id)
            .append_pair("csrf", csrf)
            .append_pair("idp", idp)
            .finish(),
    );
    url
}

fn refuse(m: &str) -> Response {
    error_page(StatusCode::FORBIDDEN, "Sign-in refused", m)
}

fn expired() -> Response {
    error_page(
        StatusCode::BAD_REQUEST,
        "Sign-in expired",
        "This sign-in has expired or was already used. Start again from the application.",
    )
}

fn upstream_failed(idp: &IdentityProvider, e: &UpstreamError) -> Response {
    tracing::warn!(provider = %idp.name, error = %e, "signing in at an identity provider failed");
    error_page(
        StatusCode::BAD_GATEWAY,
        "Sign-in failed",
        &format!("Signing in with {} failed: {e}.", idp.display_name),
    )
}

/// A provider with what it takes to talk to it.
enum Discovered<'a> {
    /// OpenID Connect, with its discovery document.
    Oidc {
        issuer: &'a str,
        meta: ProviderMetadata,
    },
    /// Plain OAuth 2.0, with its configured endpoints.
    OAuth2(&'a OAuth2Endpoints),
}

impl Discovered<'_> {
    fn authorization_endpoint(&self) -> &str {
        match self {
            Discovered::Oidc { meta, .. } => &meta.authorization_endpoint,
            Discovered::OAuth2(e) => &e.authorization_endpoint,
        }
    }
}

/// Fetches (or takes from the cache) an OIDC provider's discovery document.
async fn discover<'a>(
    shared: &Shared,
    idp: &'a IdentityProvider,
) -> Result<Discovered<'a>, UpstreamError> {
    Ok(match &idp.kind {
        ProviderKind::Oidc { issuer } => Discovered::Oidc {
            issuer,
            meta: shared.upstream.metadata(issuer).await?,
        },
        ProviderKind::OAuth2(e) => Discovered::OAuth2(e),
    })
}

/// `GET /idp/start?request_id&csrf&idp`: stores the upstream login and redirects to the
/// provider: the authorization code grant with PKCE S256 and `state` (RFC 6749 §4.1.1, RFC 7636
/// §4.3), and for OIDC `openid` and a `nonce` (OIDC Core §3.1.2.1).
pub(crate) async fn start(
    State(shared): AppState,
    PeerIp(ip): PeerIp,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if !shared.allow(Bucket::Authorize, &ip) {
        return too_many();
    }
    let Ok(params) = Params::parse(query.unwrap_or_default().as_bytes()) else {
        return refuse("The link is malformed.");
    };
    let (Some(request_id), Some(csrf), Some(name)) = (
        params.get("request_id"),
        params.get("csrf"),
        params.get("idp"),
    ) else {
        return refuse("The link is incomplete.");
    };
    let Some(sid) = session_cookie(&headers, cookie_name(&shared)) else {
        return refuse(
            "Your browser did not send the session cookie. Enable cookies and start again.",
        );
    };
    if !constant_time_eq(csrf.as_bytes(), csrf_token(&sid, request_id).as_bytes()) {
        return refuse(
            "The link's security token is missing or wrong (cross-site request forgery protection).",
        );
    }
    let Some(idp) = shared
        .config
        .identity_providers
        .iter()
        .find(|p| p.name == name)
    else {
        return refuse("There is no such identity provider.");
    };
    let sid_hash = hash_secret(&sid);
    match shared.store.request(request_id, &sid_hash, now()).await {
        Ok(Some(_)) => {}
        Ok(None) => return expired(),
        Err(e) => return internal(e),
    }
    let found = match discover(&shared, idp).await {
        Ok(m) => m,
        Err(e) => return upstream_failed(idp, &e),
    };
    let oidc = matches!(found, Discovered::Oidc { .. });
    let state = random_secret();
    // No nonce without an ID token (plain OAuth 2.0): an empty one is sealed.
    let nonce = if oidc { random_secret() } else { String::new() };
    let verifier = random_secret();
    // The nonce and verifier are sealed under the state, which only the browser and the
    // provider see: the database alone cannot complete the sign-in.
    let record = UpstreamLogin {
        state_hash: hash_secret(&state),
        request_id: request_id.to_owned(),
        browser_hash: sid_hash,
        provider: idp.name.clone(),
        nonce_sealed: seal(&state, &nonce),
        verifier_sealed: seal(&state, &verifier),
        expires_at: now() + UPSTREAM_TTL,
    };
    if let Err(e) = shared.store.insert_upstream_login(&record).await {
        return internal(e);
    }
    let mut scopes = if oidc { vec!["openid"] } else { Vec::new() };
    for s in &idp.scopes {
        if !scopes.contains(&s.as_str()) {
            scopes.push(s);
        }
    }
    let Ok(mut url) = url::Url::parse(found.authorization_endpoint()) else {
        return upstream_failed(
            idp,
            &UpstreamError::Metadata("bad authorization_endpoint".into()),
        );
    };
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", &idp.client_id)
            .append_pair("redirect_uri", &callback_uri(&shared.config));
        if !scopes.is_empty() {
            q.append_pair("scope", &scopes.join(" "));
        }
        q.append_pair("state", &state);
        if oidc {
            q.append_pair("nonce", &nonce);
        }
        q.append_pair(
            "code_challenge",
            &URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())),
        )
        .append_pair("code_challenge_method", "S256");
    }
    redirect(StatusCode::FOUND, url.as_str())
}

/// `GET /idp/callback`: the provider's answer (OIDC Core §3.1.2.5, §3.1.2.6).
pub(crate) async fn callback(
    State(shared): AppState,
    PeerIp(ip): PeerIp,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if !shared.allow(Bucket::Authorize, &ip) {
        return too_many();
    }
    let Ok(params) = Params::parse(query.unwrap_or_default().as_bytes()) else {
        return refuse("The identity provider's answer is malformed.");
    };
    let Some(state) = params.get("state") else {
        return refuse("The identity provider's answer has no state.");
    };
    // Single use: the record is deleted as it is read (SPEC S14).
    let record = match shared.store.take_upstream_login(&hash_secret(state)).await {
        Ok(Some(r)) if r.expires_at > now() => r,
        Ok(_) => return expired(),
        Err(e) => return internal(e),
    };
    // Bound to the browser that started it.
    let sid = match session_cookie(&headers, cookie_name(&shared)) {
        Some(sid)
            if constant_time_eq(hash_secret(&sid).as_bytes(), record.browser_hash.as_bytes()) =>
        {
            sid
        }
        _ => {
            return refuse(
                "This sign-in was started in another browser. Start again from the application in \
                 this one.",
            );
        }
    };
    let Some(idp) = shared
        .config
        .identity_providers
        .iter()
        .find(|p| p.name == record.provider)
    else {
        return refuse("The identity provider is no longer configured.");
    };
    let found = match discover(&shared, idp).await {
        Ok(m) => m,
        Err(e) => return upstream_failed(idp, &e),
    };
    // RFC 9207 §2.4: compare `iss` when present, require it when advertised; on a mismatch
    // nothing else of the answer is used. A plain OAuth 2.0 provider has no issuer to compare.
    if let Discovered::Oidc { issuer, meta } = &found {
        match params.get("iss") {
            Some(iss) if iss != *issuer => {
                return refuse(
                    "The answer came from another issuer than the identity provider (RFC 9207).",
                );
            }
            None if meta.authorization_response_iss_parameter_supported => {
                return refuse("The identity provider's answer has no iss (RFC 9207).");
            }
            _ => {}
        }
    }
    if let Some(error) = params.get("error") {
        let shown: String = error
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect();
        return error_page(
            StatusCode::FORBIDDEN,
            "Sign-in not completed",
            &format!("{} did not sign you in ({shown}).", idp.display_name),
        );
    }
    let Some(code) = params.get("code") else {
        return refuse("The identity provider's answer has no code.");
    };
    let (Some(nonce), Some(verifier)) = (
        unseal(state, &record.nonce_sealed),
        unseal(state, &record.verifier_sealed),
    ) else {
        return expired();
    };
    let grant = CodeGrant {
        code,
        redirect_uri: &callback_uri(&shared.config),
        verifier: &verifier,
    };
    let signed_in = match &found {
        Discovered::Oidc { issuer, meta } => {
            shared
                .upstream
                .sign_in(idp, issuer, meta, &grant, &nonce)
                .await
        }
        Discovered::OAuth2(endpoints) => {
            shared.upstream.sign_in_oauth2(idp, endpoints, &grant).await
        }
    };
    let identity = match signed_in {
        Ok(i) => i,
        Err(e) => return upstream_failed(idp, &e),
    };
    if !idp.allow.allows(&identity.claims) {
        let account = ["email", "name"]
            .iter()
            .find_map(|k| identity.claims.get(*k).and_then(|v| v.as_str()))
            .unwrap_or(&identity.sub);
        tracing::info!(provider = %idp.name, sub = %identity.sub, "account not on the allow-list");
        audit!(
            "signin.failed",
            method = "provider",
            provider = idp.name.as_str(),
            subject = identity.sub.as_str(),
            reason = "not on the allow-list",
            ip = ip.as_str()
        );
        return error_page(
            StatusCode::FORBIDDEN,
            "Not allowed",
            &format!(
                "The {} account {account} is not allowed to sign in here. Ask the operator to \
                 allow it, or sign in with another account.",
                idp.display_name
            ),
        );
    }
    let username = format!("{}:{}", idp.name, identity.sub);
    let user_id = match shared.store.federated_user(&idp.name, &username).await {
        Ok(Some(id)) => id,
        Ok(None) => {
            let id = random_bytes_b64(16);
            match shared
                .store
                .insert_federated_user(&id, &username, &idp.name, now())
                .await
            {
                Ok(()) => id,
                Err(e) => return internal(e),
            }
        }
        Err(e) => return internal(e),
    };
    // SPEC F2: the upstream tokens wait, sealed, for the code of this request.
    if let Some(mut tokens) = identity.tokens {
        let claim = |k: &str| {
            identity
                .claims
                .get(k)
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        };
        tokens.email = claim("email");
        tokens.name = claim("name");
        let id = random_bytes_b64(16);
        let grant = UpstreamGrant {
            sealed: shared.vault_key.seal(&id, &tokens),
            id,
            request_id: record.request_id.clone(),
            provider: idp.name.clone(),
            subject: identity.sub.clone(),
        };
        let until = now() + shared.config.session_ttl.as_secs() as i64;
        if let Err(e) = shared
            .store
            .insert_upstream_grant(&grant, now(), until)
            .await
        {
            return internal(e);
        }
    }
    audit!(
        "signin.succeeded",
        method = "provider",
        provider = idp.name.as_str(),
        user_id = user_id.as_str(),
        username = username.as_str(),
        ip = ip.as_str()
    );
    federated_login(&shared, &record.request_id, &sid, &user_id).await
}
