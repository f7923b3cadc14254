//! Session binding (SPEC F2-F5): a grant that started with a sign-in at an identity provider
//! lives only as long as the provider's grant. Before our refresh token is honoured, and when
//! the gateway asks for the user's upstream token, the upstream access token is renewed when it
//! has expired or is about to; the provider refusing that renewal with `invalid_grant` (the
//! account was removed or its access revoked) revokes our whole grant family at once.

use std::hash::BuildHasher;

use super::upstream::{UpstreamError, UpstreamTokens};
use super::{Discovered, IdentityProvider, discover};
use crate::secrets::now;
use crate::server::Shared;
use crate::store::UpstreamGrant;
use crate::vault::{UpstreamAccess, VaultError};

/// The upstream access token is renewed when it expires within this many seconds.
pub(crate) const RENEW_MARGIN: i64 = 60;

/// Striped locks so that one instance never refreshes the same upstream grant twice at once
/// (a provider that rotates refresh tokens would take the second, stale one for a replay).
pub(crate) struct RefreshLocks {
    stripes: Vec<tokio::sync::Mutex<()>>,
    hasher: std::collections::hash_map::RandomState,
}

crate::redacted_debug!(RefreshLocks);

impl Default for RefreshLocks {
    fn default() -> Self {
        Self {
            stripes: (0..64).map(|_| tokio::sync::Mutex::new(())).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }
}

impl RefreshLocks {
    fn lock(&self, family_id: &str) -> &tokio::sync::Mutex<()> {
        let h = self.hasher.hash_one(family_id);
        &self.stripes[(h % self.stripes.len() as u64) as usize]
    }
}

/// Ends the grant `family_id`: our tokens are revoked (the in-memory mirror at once, so
/// introspection and an embedded gateway refuse them) and the upstream tokens deleted.
async fn end(shared: &Shared, family_id: &str, now: i64) -> VaultError {
    let until = now + shared.config.refresh_token_ttl.as_secs() as i64;
    if let Err(e) = shared.store.revoke_family(family_id, now, until).await {
        return e.into();
    }
    tracing::info!("the identity provider ended a session; its grant is revoked");
    VaultError::Ended
}

/// The user's upstream access token for the grant `family_id`, renewed first when it expires
/// within [`RENEW_MARGIN`] (SPEC F3, F4).
pub(crate) async fn fresh(shared: &Shared, family_id: &str) -> Result<UpstreamAccess, VaultError> {
    let _guard = shared.refresh_locks.lock(family_id).lock().await;
    let Some(row) = shared.store.upstream_grant(family_id).await? else {
        return Err(VaultError::NoUpstreamGrant);
    };
    let now = now();
    // A row sealed under another key (the key file was replaced) cannot be renewed or used:
    // reject rather than guess.
    let Some(tokens) = shared.vault_key.open(&row.id, &row.sealed) else {
        return Err(end(shared, family_id, now).await);
    };
    let due = tokens.expires_at.is_some_and(|t| t - now <= RENEW_MARGIN);
    if !due {
        return Ok(access(row, tokens));
    }
    let Some(refresh_token) = tokens.refresh_token.clone() else {
        if tokens.expires_at.is_some_and(|t| t <= now) {
            // Expired and not renewable (SPEC F4: end the grant when it cannot be renewed).
            return Err(end(shared, family_id, now).await);
        }
        return Ok(access(row, tokens));
    };
    // A provider the operator removed cannot renew anything.
    let Some(idp) = shared
        .config
        .identity_providers
        .iter()
        .find(|p| p.name == row.provider)
    else {
        return Err(end(shared, family_id, now).await);
    };
    match renew(shared, idp, &refresh_token, &tokens, now).await {
        Ok(renewed) => {
            let sealed = shared.vault_key.seal(&row.id, &renewed);
            let until = now + shared.config.refresh_token_ttl.as_secs() as i64;
            shared
                .store
                .update_upstream_grant(&row.id, &row.sealed, &sealed, until)
                .await?;
            Ok(access(row, renewed))
        }
        Err(UpstreamError::GrantEnded) => {
            // Another instance on the same database may have renewed first with the same
            // refresh token, which a rotating provider then refuses: its result stands.
            if let Some(newer) = shared.store.upstream_grant(family_id).await?
                && newer.sealed != row.sealed
                && let Some(tokens) = shared.vault_key.open(&newer.id, &newer.sealed)
            {
                return Ok(access(newer, tokens));
            }
            Err(end(shared, family_id, now).await)
        }
        Err(e) => {
            tracing::warn!(provider = %idp.name, error = %e, "renewing an upstream token failed");
            Err(VaultError::Unavailable(e.to_string()))
        }
    }
}

/// The provider's refresh token grant (RFC 6749 §6).
async fn renew(
    shared: &Shared,
    idp: &IdentityProvider,
    refresh_token: &str,
    previous: &UpstreamTokens,
    now: i64,
) -> Result<UpstreamTokens, UpstreamError> {
    let found = discover(shared, idp).await?;
    let (endpoint, auth) = match &found {
        Discovered::Oidc { meta, .. } => (meta.token_endpoint.as_str(), meta.token_auth()),
        Discovered::OAuth2(e) => (e.token_endpoint.as_str(), e.token_auth),
    };
    let body = shared
        .upstream
        .refresh_request(idp, endpoint, auth, refresh_token)
        .await?;
    UpstreamTokens::from_response(&body, now, Some(previous))
        .ok_or_else(|| UpstreamError::Token("the refresh answer has no access_token".into()))
}

fn access(row: UpstreamGrant, tokens: UpstreamTokens) -> UpstreamAccess {
    UpstreamAccess::new(row.provider, row.subject, tokens.access_token)
}

/// The e-mail address and name the identity provider gave at the sign-in that started the
/// grant `family_id`, without contacting it; `None` without such a sign-in.
pub(crate) async fn identity(
    shared: &Shared,
    family_id: &str,
) -> Result<Option<(Option<String>, Option<String>)>, crate::AuthServerError> {
    let Some(row) = shared.store.upstream_grant(family_id).await? else {
        return Ok(None);
    };
    Ok(shared
        .vault_key
        .open(&row.id, &row.sealed)
        .map(|t| (t.email, t.name)))
}
