//! The token endpoint (RFC 6749 §3.2): `authorization_code` with PKCE (single use; a replay
//! revokes what the code issued), `refresh_token` (rotation for every client, reuse detection
//! revoking the family, a grace window for the same client's lost response or concurrent
//! refreshes while the successor is unused; MCP SPEC A6) and
//! `client_credentials` (confidential clients; MCP SPEC A12). With a DPoP proof (RFC 9449 §5,
//! SPEC D6) the access token is bound to the proof's key (`cnf.jkt`, `token_type: DPoP`), and a
//! public client's grant too: each refresh of it needs a proof by the same key.

use crate::audit::audit;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use mcpauth_core::{
    AccessToken, ErrorCode, PkceVerifier, RefreshToken, ScopeSet, TokenResponse, TokenType,
    constant_time_eq, pkce,
};

use super::device::DEVICE_GRANT;
use super::{AppState, PeerIp, no_store_json};
use crate::client_auth::{TokenError, authenticate};
use crate::clients::{self, Client};
use crate::dpop::{invalid_proof, proof_key};
use crate::jwt_grant::JWT_BEARER_GRANT;
use crate::params::{Params, invalid_request, oauth_error};
use crate::rate_limit::Bucket;
use crate::secrets::{hash_secret, now, random_secret, seal, unseal};
use crate::server::Shared;
use crate::store::{NewRefresh, RefreshRow, Spend, Spent};
use crate::tokens::{audience, check_resource, check_scope, issue_access_token};
use crate::vault::VaultError;
use mcpauth_core::dpop;

/// `POST /token`.
pub(crate) async fn token(
    State(shared): AppState,
    PeerIp(ip): PeerIp,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut response = match handle(&shared, &ip, &headers, &body).await {
        Ok(r) => r,
        Err(e) => axum::response::IntoResponse::into_response(e),
    };
    // RFC 9449 §8, §8.2: the nonce for the next proof, on every answer (SPEC D7).
    if let Some(nonces) = &shared.nonces
        && let Ok(v) = HeaderValue::from_str(&nonces.current(now()))
    {
        response.headers_mut().insert(DPOP_NONCE, v);
    }
    response
}

/// The response header carrying a nonce (RFC 9449 §8.1).
const DPOP_NONCE: &str = "dpop-nonce";

async fn handle(
    shared: &Shared,
    ip: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, TokenError> {
    if !shared.allow(Bucket::TokenIp, ip) {
        return Err(TokenError::rate_limited());
    }
    let params = Params::parse(body)?;
    let grant_type = params
        .get("grant_type")
        .ok_or_else(|| invalid_request("grant_type is required"))?;
    let endpoint = shared.config.endpoint("/token");
    if grant_type == JWT_BEARER_GRANT && !shared.config.trusted_issuers.is_empty() {
        let (answer, client_id) =
            crate::jwt_grant::token(shared, headers, &params, &endpoint).await?;
        let client_id = client_id.as_str();
        audit!("token.issued", grant_type, client_id, ip, dpop = false);
        return Ok(answer);
    }
    if !matches!(
        grant_type,
        "authorization_code" | "refresh_token" | "client_credentials" | DEVICE_GRANT
    ) {
        return Err(oauth_error(
            ErrorCode::UnsupportedGrantType,
            "supported grant types: authorization_code, refresh_token, client_credentials, \
             urn:ietf:params:oauth:grant-type:device_code",
        )
        .into());
    }
    let client = authenticate(shared, headers, &params, &endpoint).await?;
    let jkt = proof_key(shared, headers, &endpoint).await?;
    let jkt = jkt.as_deref();
    if jkt.is_none() && client.metadata.dpop_bound_access_tokens == Some(true) {
        return Err(invalid_proof(
            "the client registered dpop_bound_access_tokens: every token request needs a DPoP \
             proof (RFC 9449 §5.2)",
        ));
    }
    clients::slide_expiry(shared, &client).await?;
    if !shared.allow(Bucket::TokenClient, &client.client_id) {
        return Err(TokenError::rate_limited());
    }
    if !client.allows_grant(grant_type) {
        return Err(oauth_error(
            ErrorCode::UnauthorizedClient,
            &format!("the client is not registered for the {grant_type} grant"),
        )
        .into());
    }
    let answer = match grant_type {
        "authorization_code" => authorization_code(shared, &client, &params, jkt).await,
        "refresh_token" => refresh_token(shared, &client, &params, jkt).await,
        DEVICE_GRANT => super::device::token(shared, &client, &params, jkt).await,
        _ => client_credentials(shared, &client, &params, jkt).await,
    };
    if answer.is_ok() {
        let dpop = jkt.is_some();
        let client_id = client.client_id.as_str();
        if grant_type == "refresh_token" {
            audit!("token.refreshed", client_id, ip, dpop);
        } else {
            audit!("token.issued", grant_type, client_id, ip, dpop);
        }
    }
    answer
}

fn invalid_grant(description: &str) -> TokenError {
    oauth_error(ErrorCode::InvalidGrant, description).into()
}

pub(crate) fn respond(
    access: String,
    expires_in: u64,
    refresh: Option<String>,
    scope: &ScopeSet,
    jkt: Option<&str>,
) -> Response {
    let body = TokenResponse {
        access_token: AccessToken::new(access),
        // RFC 9449 §5: a bound token is of type DPoP.
        token_type: if jkt.is_some() {
            TokenType::DPoP
        } else {
            TokenType::Bearer
        },
        expires_in: Some(expires_in),
        refresh_token: refresh.map(RefreshToken::new),
        scope: (!scope.is_empty()).then(|| scope.to_string()),
        issued_token_type: None,
        extra: Default::default(),
    };
    no_store_json(StatusCode::OK, &body)
}

/// Whether a PKCE verifier has the RFC 7636 §4.1 form.
fn verifier_well_formed(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~'))
}

async fn authorization_code(
    shared: &Shared,
    client: &Client,
    params: &Params,
    jkt: Option<&str>,
) -> Result<Response, TokenError> {
    let code = params
        .get("code")
        .ok_or_else(|| invalid_request("code is required"))?;
    let verifier = params.get("code_verifier").ok_or_else(|| {
        invalid_request("code_verifier is required: PKCE is mandatory (OAuth 2.1 §4.1.3)")
    })?;
    let redirect_uri = params
        .get("redirect_uri")
        .ok_or_else(|| invalid_request("redirect_uri is required"))?;
    let code_hash = hash_secret(code);
    let store = &shared.store;
    let Some(row) = store.code(&code_hash).await? else {
        return Err(invalid_grant("unknown authorization code"));
    };
    if row.client_id != client.client_id {
        return Err(invalid_grant("the code was issued to another client"));
    }
    let now = now();
    let family_until = now + shared.config.refresh_token_ttl.as_secs() as i64;
    if row.used_at.is_some() {
        // A replayed code: revoke everything it issued (OAuth 2.1 §4.1.3).
        store
            .revoke_family(&row.family_id, now, family_until)
            .await?;
        tracing::warn!(client_id = %client.client_id, "authorization code replay; tokens revoked");
        return Err(invalid_grant(
            "the authorization code was already used; the tokens issued from it are revoked",
        ));
    }
    if row.expires_at <= now {
        return Err(invalid_grant("the authorization code has expired"));
    }
    let challenge_ok = verifier_well_formed(verifier)
        && constant_time_eq(
            pkce::challenge_s256(&PkceVerifier::new(verifier)).as_bytes(),
            row.code_challenge.as_bytes(),
        );
    if row.redirect_uri != redirect_uri || !challenge_ok {
        // Burn the code: one attempt only.
        store.spend_code(&code_hash, now).await?;
        return Err(invalid_grant(if challenge_ok {
            "redirect_uri differs from the authorization request"
        } else {
            "PKCE verification failed: code_verifier does not match code_challenge (S256)"
        }));
    }
    if let Some(r) = params.get("resource")
        && row.resource.as_deref() != Some(r)
    {
        store.spend_code(&code_hash, now).await?;
        return Err(oauth_error(
            ErrorCode::InvalidTarget,
            "resource differs from the authorization request (RFC 8707)",
        )
        .into());
    }
    // RFC 9449 §10: a code bound to a key (dpop_jkt) needs a proof by that key. Refused without
    // spending the code: someone else holding it cannot take it from its client.
    let bound = store.family_key(&row.family_id).await?;
    if let Some(bound) = &bound
        && !jkt.is_some_and(|k| dpop::thumbprint_matches(k, bound))
    {
        return Err(invalid_grant(if jkt.is_some() {
            "the DPoP proof's key is not the one the authorization request bound (dpop_jkt)"
        } else {
            "the authorization request bound the code to a DPoP key (dpop_jkt): the token \
             request needs a DPoP proof by that key"
        }));
    }
    let grant = NewGrant {
        user_id: &row.user_id,
        family_id: &row.family_id,
        scope: &row.scope,
        resource: row.resource.as_deref(),
    };
    // The refresh token goes in before the code is spent, so that a concurrent replay that
    // revokes the family also catches it.
    let refresh = start_grant(shared, client, &grant, jkt, bound.is_some()).await?;
    if !store.spend_code(&code_hash, now).await? {
        store
            .revoke_family(&row.family_id, now, family_until)
            .await?;
        return Err(invalid_grant(
            "the authorization code was already used; the tokens issued from it are revoked",
        ));
    }
    finish_grant(shared, client, &grant, jkt, refresh).await
}

/// A grant the user just allowed: an authorization code's, or a device authorization's.
pub(crate) struct NewGrant<'a> {
    pub user_id: &'a str,
    pub family_id: &'a str,
    pub scope: &'a str,
    pub resource: Option<&'a str>,
}

/// The first half of issuing `grant`'s tokens: a public client's grant is bound to the proof's
/// key unless it was bound already (RFC 9449 §5, §10), and the refresh token is stored when the
/// client may refresh. The caller then spends what the grant came from and calls
/// [`finish_grant`].
pub(crate) async fn start_grant(
    shared: &Shared,
    client: &Client,
    grant: &NewGrant<'_>,
    jkt: Option<&str>,
    key_bound: bool,
) -> Result<Option<String>, TokenError> {
    let now = now();
    let family_until = now + shared.config.refresh_token_ttl.as_secs() as i64;
    if let Some(jkt) = jkt
        && !key_bound
        && !client.is_confidential()
        && client.allows_grant("refresh_token")
    {
        shared
            .store
            .bind_family_key(grant.family_id, jkt, family_until)
            .await?;
    }
    if !client.allows_grant("refresh_token") {
        return Ok(None);
    }
    let token = random_secret();
    shared
        .store
        .insert_refresh(&NewRefresh {
            token_hash: &hash_secret(&token),
            family_id: grant.family_id,
            client_id: &client.client_id,
            user_id: grant.user_id,
            scope: grant.scope,
            resource: grant.resource,
            created_at: now,
            expires_at: family_until,
        })
        .await?;
    Ok(Some(token))
}

/// The second half: the access token (bound to `jkt` when given) and the token response.
pub(crate) async fn finish_grant(
    shared: &Shared,
    client: &Client,
    grant: &NewGrant<'_>,
    jkt: Option<&str>,
    refresh: Option<String>,
) -> Result<Response, TokenError> {
    let scope = ScopeSet::parse(grant.scope);
    let aud = audience(shared, grant.resource);
    let (access, ttl) = issue_access_token(
        shared,
        grant.user_id,
        &client.client_id,
        &aud,
        &scope,
        Some(grant.family_id),
        jkt,
    )
    .await?;
    Ok(respond(access, ttl, refresh, &scope, jkt))
}

/// The `refresh_token` grant (OAuth 2.1 §4.3, MCP SPEC A6). Every refresh rotates: the
/// presented token is spent and a successor issued (OAuth 2.1 §4.3.1). A spent token presented
/// again is a reuse (RFC 9700 §4.14.2) and revokes the whole family (every refresh token and,
/// through the jti prefix, every access token of the grant), with one exception, the lost
/// response: see [`grace_successor`] for when the replay gets the same successor instead.
async fn refresh_token(
    shared: &Shared,
    client: &Client,
    params: &Params,
    jkt: Option<&str>,
) -> Result<Response, TokenError> {
    let presented = params
        .get("refresh_token")
        .ok_or_else(|| invalid_request("refresh_token is required"))?;
    let hash = hash_secret(presented);
    let store = &shared.store;
    if !client.is_confidential() {
        check_bound_key(shared, &hash, jkt).await?;
    }
    let requested = params.get("scope").map(ScopeSet::parse);
    let resource = params.get("resource");
    let now = now();
    let family_until = now + shared.config.refresh_token_ttl.as_secs() as i64;
    if requested.is_some() {
        // A narrower scope is checked against the grant before the token is spent. A spent
        // token is judged as a reuse below, whatever it asks for.
        let row = store.refresh(&hash).await?;
        if row.as_ref().is_none_or(|r| r.used_at.is_none()) {
            check_refresh(row.as_ref(), client, requested.as_ref(), resource, now)?;
        }
    }
    if !shared.config.identity_providers.is_empty() {
        check_upstream(shared, client, &hash, now).await?;
    }
    // The common case in one step: spend the token if this refresh may spend it (its own
    // client, not spent, revoked or expired, the same resource) and store the successor.
    let successor = random_secret();
    let successor_hash = hash_secret(&successor);
    let spent = store
        .spend_refresh(Spend {
            token_hash: hash.clone(),
            client_id: client.client_id.clone(),
            resource: resource.map(str::to_owned),
            now,
            successor_sealed: seal(presented, &successor),
            successor_hash,
            successor_expires_at: family_until,
        })
        .await?;
    if let Some(grant) = spent {
        let scope = requested.unwrap_or_else(|| ScopeSet::parse(&grant.scope));
        return issue(shared, &grant, &client.client_id, &scope, successor, jkt).await;
    }
    // Not spent: the stored token says why.
    let row = match store.refresh(&hash).await? {
        Some(row) if row.used_at.is_some() => row,
        // Unknown, or unspent but another client's, revoked, expired or for another resource:
        // refused, and an unspent token stays usable by its own client.
        row => {
            check_refresh(row.as_ref(), client, requested.as_ref(), resource, now)?;
            return Err(invalid_grant("the refresh token could not be used"));
        }
    };
    if row.revoked_at.is_some() {
        return Err(invalid_grant("the refresh token was revoked"));
    }
    if let Some(successor) = grace_successor(shared, &row, client, presented, now).await? {
        // The lost response: a new access token and the same successor. The request itself
        // must still be valid (scope, resource, expiry); a refusal here revokes nothing.
        let scope = check_refresh(Some(&row), client, requested.as_ref(), resource, now)?;
        let grant = Spent {
            family_id: row.family_id,
            user_id: row.user_id,
            scope: row.scope,
            resource: row.resource,
        };
        return issue(shared, &grant, &client.client_id, &scope, successor, jkt).await;
    }
    // A reuse (OAuth 2.1 §4.3.1, RFC 9700 §4.14.2): by another client, after the grace window,
    // or after the successor was used. Either the legitimate client or an attacker holds a
    // newer token, and we cannot tell which: revoke the whole family.
    store
        .revoke_family(&row.family_id, now, family_until)
        .await?;
    tracing::warn!(client_id = %client.client_id, "refresh token reuse; family revoked");
    audit!(
        "refresh.reuse_detected",
        client_id = client.client_id.as_str(),
        grant_id = row.family_id.as_str(),
        user_id = row.user_id.as_str()
    );
    Err(invalid_grant(
        "the refresh token was already used; every token of this grant is revoked",
    ))
}

/// RFC 9449 §5 (SPEC D6): a public client's grant bound to a DPoP key is refreshed only with a
/// proof by that key. Checked before anything is spent, so a refusal costs the holder nothing.
async fn check_bound_key(
    shared: &Shared,
    token_hash: &str,
    jkt: Option<&str>,
) -> Result<(), TokenError> {
    let Some(row) = shared.store.refresh(token_hash).await? else {
        return Ok(());
    };
    let Some(bound) = shared.store.family_key(&row.family_id).await? else {
        return Ok(());
    };
    match jkt {
        Some(k) if constant_time_eq(k.as_bytes(), bound.as_bytes()) => Ok(()),
        Some(_) => Err(invalid_proof(
            "the refresh token is bound to another DPoP key (RFC 9449 §5)",
        )),
        None => Err(invalid_proof(
            "the refresh token is DPoP-bound: send a DPoP proof by its key (RFC 9449 §5)",
        )),
    }
}

/// Session binding (SPEC F3, F4): before a usable refresh token of a grant that started at an
/// identity provider is spent, the provider's grant must still hold: its access token is
/// renewed when due. The provider ending the session revokes our family (the vault did) and
/// refuses the refresh; a provider that cannot be reached leaves everything as it was
/// (RFC 6749 §5.2 `temporarily_unavailable`, 503), so the client may retry with the same token.
async fn check_upstream(
    shared: &Shared,
    client: &Client,
    hash: &str,
    now: i64,
) -> Result<(), TokenError> {
    let Some(row) = shared.store.refresh(hash).await? else {
        return Ok(());
    };
    let usable = row.used_at.is_none()
        && row.revoked_at.is_none()
        && row.expires_at > now
        && row.client_id == client.client_id;
    if !usable {
        return Ok(());
    }
    match crate::federation::session::fresh(shared, &row.family_id).await {
        Ok(_) => {
            // The upstream tokens live as long as the family they belong to.
            let until = now + shared.config.refresh_token_ttl.as_secs() as i64;
            Ok(shared
                .store
                .touch_upstream_grant(&row.family_id, until)
                .await?)
        }
        Err(VaultError::NoUpstreamGrant) => Ok(()),
        Err(VaultError::Ended) => Err(invalid_grant(
            "the identity provider ended the session (the account was removed or its access \
             revoked); every token of this grant is revoked, sign in again",
        )),
        Err(VaultError::Unavailable(_)) => Err(TokenError::bad(oauth_error(
            ErrorCode::TemporarilyUnavailable,
            "the identity provider could not be reached to renew the session; nothing was \
             changed, try again later",
        ))),
        Err(VaultError::Store(e)) => Err(TokenError::internal(e)),
    }
}

/// Everything a refresh request must satisfy but the token being unspent; returns the scope to
/// issue (the requested one, at most the granted one; RFC 6749 §6).
fn check_refresh(
    row: Option<&RefreshRow>,
    client: &Client,
    requested: Option<&ScopeSet>,
    resource: Option<&str>,
    now: i64,
) -> Result<ScopeSet, TokenError> {
    let Some(row) = row else {
        return Err(invalid_grant("unknown refresh token"));
    };
    if row.client_id != client.client_id {
        return Err(invalid_grant(
            "the refresh token was issued to another client",
        ));
    }
    if row.revoked_at.is_some() {
        return Err(invalid_grant("the refresh token was revoked"));
    }
    if row.expires_at <= now {
        return Err(invalid_grant("the refresh token has expired"));
    }
    let granted = ScopeSet::parse(&row.scope);
    if let Some(s) = requested
        && !granted.is_superset(s)
    {
        return Err(oauth_error(
            ErrorCode::InvalidScope,
            "the requested scope exceeds the original grant",
        )
        .into());
    }
    if let Some(r) = resource
        && row.resource.as_deref() != Some(r)
    {
        return Err(oauth_error(
            ErrorCode::InvalidTarget,
            "resource differs from the original grant (RFC 8707)",
        )
        .into());
    }
    Ok(requested.cloned().unwrap_or(granted))
}

/// The successor of the spent refresh token `row` when presenting it again is the lost-response
/// case rather than a reuse (MCP SPEC A6; OAuth 2.1 §4.3.1 and RFC 9700 §4.14.2 leave room
/// for it). The client refreshed, the response got lost (or several of its requests raced)
/// and it retries with the token it still has. That is assumed only when all of these hold:
///
/// - the presenter is the token's holder ([`same_holder`]);
/// - the token was spent at most `refresh_grace` ago (default 30 s; zero turns this off);
/// - its successor has been neither used nor revoked: the client never received it, or is
///   about to. Once the successor has been rotated, its holder has moved on, so presenting
///   the old token can only be a replay.
///
/// The answer is then a new access token and that same successor, never a new one: the
/// family stays a single chain, and the first use of the successor ends the window.
async fn grace_successor(
    shared: &Shared,
    row: &RefreshRow,
    client: &Client,
    presented: &str,
    now: i64,
) -> Result<Option<String>, TokenError> {
    let grace = shared.config.refresh_grace.as_secs() as i64;
    let (Some(used_at), Some(sealed), Some(successor_hash)) =
        (row.used_at, &row.successor_sealed, &row.successor_hash)
    else {
        return Ok(None);
    };
    if grace == 0 || now - used_at > grace || !same_holder(row, client) {
        return Ok(None);
    }
    let Some(successor) = shared.store.refresh(successor_hash).await? else {
        return Ok(None);
    };
    if successor.used_at.is_some() || successor.revoked_at.is_some() {
        return Ok(None);
    }
    Ok(unseal(presented, sealed))
}

/// Whether the presenter of a spent refresh token is the one it was issued to, the first
/// condition of the grace window: the same client (RFC 6749 §6 binds a refresh token to its
/// client). This is the one place that decides it, so a refresh token bound to a DPoP key
/// (MCP SPEC D6, RFC 9449 §5) adds its condition here: the proof's key must be that key.
fn same_holder(row: &RefreshRow, client: &Client) -> bool {
    row.client_id == client.client_id
}

async fn issue(
    shared: &Shared,
    grant: &Spent,
    client_id: &str,
    scope: &ScopeSet,
    refresh: String,
    jkt: Option<&str>,
) -> Result<Response, TokenError> {
    let aud = audience(shared, grant.resource.as_deref());
    let (access, ttl) = issue_access_token(
        shared,
        &grant.user_id,
        client_id,
        &aud,
        scope,
        Some(&grant.family_id),
        jkt,
    )
    .await?;
    Ok(respond(access, ttl, Some(refresh), scope, jkt))
}

async fn client_credentials(
    shared: &Shared,
    client: &Client,
    params: &Params,
    jkt: Option<&str>,
) -> Result<Response, TokenError> {
    if !client.is_confidential() {
        return Err(oauth_error(
            ErrorCode::UnauthorizedClient,
            "client_credentials needs a confidential client",
        )
        .into());
    }
    let scope = check_scope(shared, client, params.get("scope"))?;
    let resource = check_resource(shared, params.get("resource"))?;
    let aud = audience(shared, resource.as_deref());
    let (access, ttl) = issue_access_token(
        shared,
        &client.client_id,
        &client.client_id,
        &aud,
        &scope,
        None,
        jkt,
    )
    .await?;
    Ok(respond(access, ttl, None, &scope, jkt))
}
