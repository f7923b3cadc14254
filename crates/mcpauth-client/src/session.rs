//! A `Session` hands out fresh access tokens for one MCP server: the stored token while it has
//! more than a minute left, else a refresh, else a new authorization. Within a process one task
//! at a time does the work (single flight); across processes the store's lock is taken and the
//! store re-read before a refresh, so a rotating refresh token is spent once.

use std::sync::Arc;
use std::time::Duration;

use mcpauth_core::authorization_response::Expected;
use mcpauth_core::dpop::DpopKey;
use mcpauth_core::resource::check_prm_resource;
use mcpauth_core::www_authenticate::BearerChallenge;
use mcpauth_core::{
    AccessToken, DpopPrivateKey, ErrorCode, ScopeSet, TokenResponse, TokenType, pkce,
    random_urlsafe,
};

use crate::ClientError;
use crate::authorize::{AuthorizationRequest, FrontEnd, Presenter, authorization_url};
use crate::cross_app::CrossAppAccess;
use crate::discovery::{self, Discovered, DiscoveryOptions, DiscoveryReport};
use crate::dpop::{self, Nonces, Prover};
use crate::flow::{self, InFlight, Lease, Turn};
use crate::grants::{DEVICE_CODE_GRANT, SigningKey, TokenEndpoint};
use crate::http::OAuthHttp;
use crate::registration::{ClientSettings, configured_client, obtain_client};
use crate::store::{
    ClientRecord, FlowRecord, RegistrationKind, SCHEMA_VERSION, StoreKey, TokenRecord, TokenStore,
    now_unix,
};
use crate::workload::{self, WorkloadIdentity};

/// How the session obtains new tokens.
#[derive(Clone, Debug)]
pub enum Grant {
    /// Authorization code with PKCE through a front end (browser, paste, headless).
    AuthorizationCode(Arc<dyn FrontEnd>),
    /// Client credentials (RFC 6749 §4.4) for machines; needs a confidential client.
    ClientCredentials,
    /// The device authorization grant (RFC 8628): the user approves on another device.
    DeviceCode(Arc<dyn Presenter>),
    /// Enterprise-managed cross-app access: an ID-JAG from the enterprise IdP, then the RFC 7523
    /// JWT bearer grant (MCP SPEC A13).
    CrossApp(Arc<CrossAppAccess>),
    /// Workload identity federation (SEP-1933, SPEC W1): the platform's JWT for the workload,
    /// read again for every new token, as an RFC 7523 JWT bearer grant.
    Workload(Arc<WorkloadIdentity>),
}

/// What to send as RFC 8707 `resource`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ResourceParam {
    /// The PRM `resource`, or the canonical server URI without PRM (MCP SPEC C21).
    #[default]
    Discovered,
    /// A fixed value.
    Override(String),
    /// Do not send `resource` (for servers that reject it).
    Omit,
}

/// Configuration of a [`Session`].
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// The MCP server URL.
    pub server_url: String,
    /// How to get a client id.
    pub client: ClientSettings,
    /// How to get tokens.
    pub grant: Grant,
    /// Scopes to request instead of the ones discovery suggests.
    pub scopes: Option<ScopeSet>,
    /// The `resource` parameter.
    pub resource: ResourceParam,
    /// Refuse servers that do not advertise PKCE S256 (MCP SPEC C28). Only turn off for a
    /// server known to support it without saying so.
    pub require_s256: bool,
    /// Discovery options.
    pub discovery: DiscoveryOptions,
    /// Extra authorization request parameters.
    pub authorize_params: Vec<(String, String)>,
    /// The key for `private_key_jwt`.
    pub signing_key: Option<SigningKey>,
    /// Whether a new authorization may be started when no token can be refreshed.
    pub interactive: bool,
    /// A token with less than this left is refreshed first.
    pub refresh_margin: Duration,
    /// Bind tokens to a DPoP key when the authorization server supports it (RFC 9449, SPEC
    /// D1-D3); `false` is `--no-dpop`.
    pub dpop: bool,
    /// With an authorization code grant: use the device authorization grant (RFC 8628)
    /// instead, shown by this presenter, when the authorization server offers it. For a machine
    /// with no browser and no terminal to paste a redirect into (SPEC V1).
    pub device_fallback: Option<Arc<dyn Presenter>>,
}

impl SessionConfig {
    /// Defaults: dynamic registration, discovered scopes and resource, S256 required,
    /// interactive, 60 s margin.
    pub fn new(server_url: impl Into<String>, grant: Grant) -> Self {
        Self {
            server_url: server_url.into(),
            client: ClientSettings::default(),
            grant,
            scopes: None,
            resource: ResourceParam::Discovered,
            require_s256: true,
            discovery: DiscoveryOptions::default(),
            authorize_params: Vec::new(),
            signing_key: None,
            interactive: true,
            refresh_margin: Duration::from_secs(60),
            dpop: true,
            device_fallback: None,
        }
    }
}

/// `MCP_CLIENT_ID`: with it, the default configuration uses client credentials (DESIGN.md
/// "Conventions users already rely on").
pub const ENV_CLIENT_ID: &str = "MCP_CLIENT_ID";
/// `MCP_CLIENT_SECRET`: the secret that goes with [`ENV_CLIENT_ID`].
pub const ENV_CLIENT_SECRET: &str = "MCP_CLIENT_SECRET";
/// `MCPAUTH_CLIENT_SECRET`: mcpauth's own spelling of the secret; wins over `MCP_CLIENT_SECRET`.
pub const ENV_MCPAUTH_CLIENT_SECRET: &str = "MCPAUTH_CLIENT_SECRET";

impl SessionConfig {
    /// The library's default configuration: when `MCP_CLIENT_ID` is set, the client credentials
    /// grant with that pre-registered client and the secret from `MCPAUTH_CLIENT_SECRET` or
    /// `MCP_CLIENT_SECRET`; otherwise the authorization code flow through `front_end`.
    pub fn from_env(server_url: impl Into<String>, front_end: Arc<dyn FrontEnd>) -> Self {
        Self::from_lookup(server_url, front_end, |k| std::env::var(k).ok())
    }

    /// [`SessionConfig::from_env`] with the variables read through `lookup`.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// use mcpauth_client::{authorize::Headless, http::{HttpOptions, OAuthHttp}, session::{Grant, SessionConfig}};
    /// let front_end = Arc::new(Headless::new(OAuthHttp::new(HttpOptions::default()).unwrap(), "http://127.0.0.1:1/cb"));
    /// let config = SessionConfig::from_lookup("https://mcp.example/mcp", front_end, |k| {
    ///     (k == "MCP_CLIENT_ID").then(|| "robot".to_owned())
    /// });
    /// assert!(matches!(config.grant, Grant::ClientCredentials));
    /// assert_eq!(config.client.static_client.unwrap().client_id, "robot");
    /// ```
    pub fn from_lookup(
        server_url: impl Into<String>,
        front_end: Arc<dyn FrontEnd>,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Self {
        let Some(client_id) = lookup(ENV_CLIENT_ID).filter(|v| !v.is_empty()) else {
            return Self::new(server_url, Grant::AuthorizationCode(front_end));
        };
        let secret = lookup(ENV_MCPAUTH_CLIENT_SECRET)
            .or_else(|| lookup(ENV_CLIENT_SECRET))
            .filter(|v| !v.is_empty())
            .map(mcpauth_core::ClientSecret::new);
        Self::client_credentials(server_url, client_id, secret)
    }

    /// The client credentials grant (OAuth 2.1 §4.2) as the client `client_id`, registered out
    /// of band (MCP SPEC C13) with `client_secret`, its authentication method chosen from the
    /// authorization server's metadata; for `private_key_jwt`, set the static client's
    /// `auth_method` and [`SessionConfig::signing_key`] instead of a secret.
    ///
    /// ```
    /// use mcpauth_client::session::{Grant, SessionConfig};
    /// use mcpauth_core::ClientSecret;
    /// let config = SessionConfig::client_credentials(
    ///     "https://mcp.example/mcp",
    ///     "robot",
    ///     Some(ClientSecret::new("s3cret")),
    /// );
    /// assert!(matches!(config.grant, Grant::ClientCredentials));
    /// assert_eq!(config.client.static_client.unwrap().client_id, "robot");
    /// ```
    pub fn client_credentials(
        server_url: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: Option<mcpauth_core::ClientSecret>,
    ) -> Self {
        let mut config = Self::new(server_url, Grant::ClientCredentials);
        config.client.static_client = Some(crate::registration::StaticClient {
            client_id: client_id.into(),
            client_secret,
            auth_method: None,
            issuer: None,
        });
        config
    }
}

/// What [`Session::logout`] did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LogoutReport {
    /// The login that was removed.
    #[serde(flatten)]
    pub key: StoreKey,
    /// Which tokens the authorization server revoked (`refresh_token`, `access_token`).
    pub revoked: Vec<&'static str>,
    /// Why revocation did not happen or stopped, if it did not complete.
    pub revocation_error: Option<String>,
}

#[derive(Debug, Default)]
struct Inner {
    discovered: Option<Discovered>,
    client: Option<ClientRecord>,
    record: Option<TokenRecord>,
    probe_report: DiscoveryReport,
    report: DiscoveryReport,
}

/// Fresh access tokens for one MCP server. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    http: OAuthHttp,
    store: Arc<dyn TokenStore>,
    inner: tokio::sync::Mutex<Inner>,
    /// The DPoP nonces of the authorization and resource servers (SPEC D2).
    nonces: Nonces,
}

impl Session {
    /// A session over `store`, using `http` for OAuth calls.
    pub fn new(config: SessionConfig, http: OAuthHttp, store: Arc<dyn TokenStore>) -> Self {
        Self {
            config,
            http,
            store,
            inner: Default::default(),
            nonces: Nonces::default(),
        }
    }

    /// The DPoP nonces this session has been given, per origin (SPEC D2).
    pub fn nonces(&self) -> &Nonces {
        &self.nonces
    }

    /// The headers that present `token` on a `method` request to `url` (see
    /// [`dpop::credential_headers`]).
    pub async fn credential_headers(
        &self,
        token: &AccessToken,
        method: &str,
        url: &str,
    ) -> Result<Vec<(&'static str, String)>, ClientError> {
        let record = self.inner.lock().await.record.clone();
        dpop::credential_headers(record.as_ref(), token, method, url, &self.nonces)
    }

    /// Uses `nonce` in the next DPoP proofs for `url`'s origin: one the server handed out in a
    /// `DPoP-Nonce` header outside this session (RFC 9449 §9), e.g. to a script that sent the
    /// request itself. `false` when it is not a valid nonce ([`dpop::valid_nonce`]) or `url` has
    /// no origin.
    pub fn remember_nonce(&self, url: &str, nonce: &str) -> bool {
        self.nonces.set(url, nonce)
    }

    /// SPEC D1, RFC 9728 §2: a resource that demands DPoP-bound tokens refuses every token this
    /// client could get without a key, so no authorization is tried (one clear error, not a
    /// login per retry).
    fn check_can_bind(&self, d: &Discovered) -> Result<(), ClientError> {
        if !dpop::resource_requires_dpop(d.protected_resource.as_ref()) {
            return Ok(());
        }
        match dpop::cannot_bind(self.config.dpop, &d.authorization_server) {
            Some(why) => Err(ClientError::DpopRequired {
                resource: self.config.server_url.clone(),
                why,
            }),
            None => Ok(()),
        }
    }

    /// A new DPoP key for new tokens, if DPoP is on and both servers take it (SPEC D1).
    fn new_dpop_key(&self, d: &Discovered) -> Result<Option<DpopKey>, ClientError> {
        dpop::new_key(self.config.dpop, &d.authorization_server, d.resource_dpop)
    }

    fn prover<'a>(&'a self, key: Option<&'a DpopKey>) -> Option<Prover<'a>> {
        key.map(|key| Prover {
            key,
            nonces: &self.nonces,
        })
    }

    /// Stores `record` on the blocking pool: the file store writes, fsyncs and renames, which
    /// must not stall an async worker thread (code review finding 8).
    async fn save_tokens(&self, record: &TokenRecord) -> Result<(), ClientError> {
        let record = record.clone();
        self.on_store(move |store| store.save_tokens(&record)).await
    }

    /// Deletes the tokens stored under `key`, on the blocking pool like [`Self::save_tokens`].
    async fn delete_tokens(&self, key: &StoreKey) -> Result<(), ClientError> {
        let key = key.clone();
        self.on_store(move |store| store.delete_tokens(&key)).await
    }

    /// Runs `op` on the store on the blocking pool.
    async fn on_store<T: Send + 'static>(
        &self,
        op: impl FnOnce(&dyn TokenStore) -> Result<T, ClientError> + Send + 'static,
    ) -> Result<T, ClientError> {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || op(store.as_ref()))
            .await
            .map_err(|e| ClientError::Config(format!("token store task failed: {e}")))?
    }

    /// The configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// What discovery has tried so far (for diagnostics).
    pub async fn discovery_report(&self) -> DiscoveryReport {
        let inner = self.inner.lock().await;
        let mut report = inner.probe_report.clone();
        report
            .attempts
            .extend(inner.report.attempts.iter().cloned());
        report
    }

    /// The result of the last discovery, if one ran.
    pub async fn discovered(&self) -> Option<Discovered> {
        self.inner.lock().await.discovered.clone()
    }

    /// A stored token that is still fresh, without any network request.
    pub async fn cached_token(&self) -> Result<Option<AccessToken>, ClientError> {
        let mut inner = self.inner.lock().await;
        if inner.record.is_none() {
            inner.record = self.find_stored(None)?;
        }
        Ok(inner
            .record
            .as_ref()
            .filter(|r| self.is_fresh(r))
            .map(|r| r.access_token.clone()))
    }

    /// A fresh access token: cached, else refreshed, else newly authorized (when interactive or
    /// a machine grant is configured).
    pub async fn access_token(&self) -> Result<AccessToken, ClientError> {
        let mut inner = self.inner.lock().await;
        if inner.record.is_none() {
            inner.record = self.find_stored(None)?;
        }
        if let Some(r) = inner.record.as_ref().filter(|r| self.is_fresh(r)) {
            return Ok(r.access_token.clone());
        }
        let challenge = if inner.discovered.is_none() {
            let challenge = self.probe(&mut inner).await?;
            self.discover(&mut inner, challenge.as_ref()).await?;
            challenge
        } else {
            None
        };
        if let Some(token) = self.try_refresh(&mut inner).await? {
            return Ok(token);
        }
        let challenged = challenge.and_then(|c| c.scope).map(|s| ScopeSet::parse(&s));
        self.authorize_new(&mut inner, challenged).await
    }

    /// The stored record this session uses, if any.
    pub async fn current_record(&self) -> Option<TokenRecord> {
        self.inner.lock().await.record.clone()
    }

    /// Revokes the stored tokens at the authorization server (RFC 7009) when it has a revocation
    /// endpoint, then deletes them. Revocation problems are reported, not fatal: the local copy
    /// is deleted either way.
    pub async fn logout(&self) -> Result<Option<LogoutReport>, ClientError> {
        let mut inner = self.inner.lock().await;
        let Some(record) = inner.record.clone().or(self.find_stored(None)?) else {
            return Ok(None);
        };
        let mut report = LogoutReport {
            key: record.key.clone(),
            revoked: Vec::new(),
            revocation_error: None,
        };
        let revoke = async {
            let challenge = self.probe(&mut inner).await?;
            self.discover(&mut inner, challenge.as_ref()).await?;
            let d = inner
                .discovered
                .clone()
                .ok_or_else(|| ClientError::Discovery {
                    reason: "no discovery result".into(),
                })?;
            if d.issuer() != record.key.issuer {
                return Err(ClientError::Config(format!(
                    "the server now uses {}, not {}; not revoking there",
                    d.issuer(),
                    record.key.issuer
                )));
            }
            let client = self.client_for(&inner, &record.key)?.ok_or_else(|| {
                ClientError::Config("the client registration is gone; cannot revoke".into())
            })?;
            let endpoint = TokenEndpoint {
                http: &self.http,
                metadata: &d.authorization_server,
                client: &client,
                signing_key: self.config.signing_key.as_ref(),
                dpop: None,
            };
            // RFC 7009 §2.1: the refresh token first, which also ends its access tokens.
            if let Some(rt) = &record.refresh_token {
                if !endpoint.revoke(rt.expose(), "refresh_token").await? {
                    return Err(ClientError::Config(
                        "the authorization server has no revocation endpoint".into(),
                    ));
                }
                report.revoked.push("refresh_token");
            }
            if !endpoint
                .revoke(record.access_token.expose(), "access_token")
                .await?
            {
                return Err(ClientError::Config(
                    "the authorization server has no revocation endpoint".into(),
                ));
            }
            report.revoked.push("access_token");
            Ok(())
        };
        if let Err(e) = revoke.await {
            report.revocation_error = Some(e.to_string());
        }
        self.delete_tokens(&record.key).await?;
        inner.record = None;
        Ok(Some(report))
    }

    async fn probe(&self, inner: &mut Inner) -> Result<Option<BearerChallenge>, ClientError> {
        let mut report = DiscoveryReport::default();
        let challenge = discovery::probe(&self.http, &self.config.server_url, &mut report).await;
        inner.probe_report = report;
        challenge
    }

    /// Handles a 401 for a request sent with `rejected` (MCP SPEC C4): discovery runs again with
    /// the challenge; the first attempt refreshes when it can, later ones authorize anew.
    pub async fn on_unauthorized(
        &self,
        challenge: Option<&BearerChallenge>,
        rejected: Option<&AccessToken>,
        attempt: u32,
    ) -> Result<AccessToken, ClientError> {
        let mut inner = self.inner.lock().await;
        // Another task may already have replaced the rejected token.
        if let Some(r) = inner.record.as_ref().filter(|r| self.is_fresh(r))
            && rejected.is_some_and(|t| *t != r.access_token)
        {
            return Ok(r.access_token.clone());
        }
        // The challenge replaces any earlier probe.
        inner.probe_report = DiscoveryReport::default();
        self.discover(&mut inner, challenge).await?;
        if let Some(d) = &inner.discovered {
            self.check_can_bind(d)?;
        }
        if inner.record.is_none() {
            inner.record = self.find_stored(inner.discovered.as_ref())?;
            if let Some(r) = inner.record.as_ref().filter(|r| self.is_fresh(r))
                && rejected.is_none_or(|t| *t != r.access_token)
            {
                return Ok(r.access_token.clone());
            }
        }
        if attempt <= 1 {
            if let Some(r) = inner.record.as_mut() {
                // The server refused this token: it must not be handed out again.
                r.expires_at = Some(0);
            }
            if let Some(token) = self.try_refresh(&mut inner).await? {
                return Ok(token);
            }
        }
        let challenged = challenge
            .and_then(|c| c.scope.as_deref())
            .map(ScopeSet::parse);
        self.authorize_new(&mut inner, challenged).await
    }

    /// Handles a 403 `insufficient_scope` (MCP SPEC C26): authorizes again with the union of the
    /// scopes requested before and the challenged ones.
    pub async fn on_insufficient_scope(
        &self,
        challenge: &BearerChallenge,
        rejected: Option<&AccessToken>,
    ) -> Result<AccessToken, ClientError> {
        let mut inner = self.inner.lock().await;
        let challenged = ScopeSet::parse(challenge.scope.as_deref().unwrap_or_default());
        // Concurrent 403s: another task may already hold a token with these scopes.
        if let Some(r) = inner.record.as_ref().filter(|r| self.is_fresh(r))
            && rejected.is_some_and(|t| *t != r.access_token)
            && r.granted_scopes.is_superset(&challenged)
        {
            return Ok(r.access_token.clone());
        }
        if inner.discovered.is_none() {
            self.discover(&mut inner, Some(challenge)).await?;
        }
        self.authorize_new(&mut inner, Some(challenged)).await
    }

    fn is_fresh(&self, r: &TokenRecord) -> bool {
        r.expires_at
            .is_none_or(|t| t > now_unix() + self.config.refresh_margin.as_secs())
    }

    /// The `resource` to send, given discovery.
    fn resource_param<'a>(&'a self, d: &'a Discovered) -> Option<&'a str> {
        match &self.config.resource {
            ResourceParam::Discovered => Some(&d.resource),
            ResourceParam::Override(r) => Some(r),
            ResourceParam::Omit => None,
        }
    }

    /// The resource under which tokens are stored.
    fn resource_key<'a>(&'a self, d: &'a Discovered) -> &'a str {
        self.resource_param(d).unwrap_or(&d.resource)
    }

    /// The newest stored record for this server (and, once discovered, its resource and issuer).
    fn find_stored(&self, d: Option<&Discovered>) -> Result<Option<TokenRecord>, ClientError> {
        let static_issuer = self
            .config
            .client
            .static_client
            .as_ref()
            .and_then(|s| s.issuer.as_deref());
        let records = self.store.list_tokens()?;
        let now = now_unix();
        Ok(records
            .into_iter()
            .filter(|r| match d {
                Some(d) => r.key.resource == self.resource_key(d) && r.key.issuer == d.issuer(),
                None => match &self.config.resource {
                    ResourceParam::Override(res) => r.key.resource == *res,
                    _ => check_prm_resource(&r.key.resource, &self.config.server_url).is_ok(),
                },
            })
            .filter(|r| static_issuer.is_none_or(|i| r.key.issuer == i))
            .filter(|r| {
                self.config
                    .client
                    .static_client
                    .as_ref()
                    .is_none_or(|s| s.client_id == r.key.client_id)
            })
            // A dead record (refresh token refused, access token expired) of an older
            // registration never hides a live one, whatever their times.
            .max_by_key(|r| {
                let live = r.refresh_token.is_some() || r.expires_at.is_none_or(|t| t > now);
                (r.key.resource.len(), live, r.updated_at)
            }))
    }

    async fn discover(
        &self,
        inner: &mut Inner,
        challenge: Option<&BearerChallenge>,
    ) -> Result<(), ClientError> {
        let mut report = DiscoveryReport::default();
        let result = discovery::discover(
            &self.http,
            &self.config.server_url,
            challenge,
            &self.config.discovery,
            &mut report,
        )
        .await;
        inner.report = report;
        let d = result?;
        // MCP SPEC C7, C15, C24: nothing from another authorization server is reused.
        if inner
            .client
            .as_ref()
            .is_some_and(|c| c.issuer != d.issuer())
        {
            inner.client = None;
        }
        if inner
            .record
            .as_ref()
            .is_some_and(|r| r.key.issuer != d.issuer() || r.key.resource != self.resource_key(&d))
        {
            inner.record = None;
        }
        inner.discovered = Some(d);
        Ok(())
    }

    /// The client registration `key`'s tokens were issued to, if it is still known.
    fn client_for(
        &self,
        inner: &Inner,
        key: &StoreKey,
    ) -> Result<Option<ClientRecord>, ClientError> {
        if let Some(c) = inner
            .client
            .as_ref()
            .filter(|c| c.client_id == key.client_id)
        {
            return Ok(Some(c.clone()));
        }
        if let Some(d) = &inner.discovered
            && let Some(c) = configured_client(&d.authorization_server, &self.config.client, None)?
            && c.client_id == key.client_id
        {
            return Ok(Some(c));
        }
        Ok(self
            .store
            .load_client(&key.issuer)?
            .filter(|c| c.client_id == key.client_id))
    }

    /// Refreshes under the store lock. `Ok(None)` when there is nothing to refresh with or the
    /// refresh token was definitively refused (then only the refresh token is dropped).
    async fn try_refresh(&self, inner: &mut Inner) -> Result<Option<AccessToken>, ClientError> {
        let Some(record) = inner.record.clone() else {
            return Ok(None);
        };
        if record.refresh_token.is_none() {
            return Ok(None);
        }
        let Some(d) = inner.discovered.clone() else {
            return Ok(None);
        };
        let Some(client) = self.client_for(inner, &record.key)? else {
            return Ok(None);
        };
        let store = Arc::clone(&self.store);
        let key = record.key.clone();
        let _guard = tokio::task::spawn_blocking(move || store.lock(&key))
            .await
            .map_err(|e| ClientError::Config(format!("store lock task failed: {e}")))??;
        // Another process may have refreshed while we waited: use its result.
        let latest = self
            .store
            .load_tokens(&record.key)?
            .unwrap_or(record.clone());
        if self.is_fresh(&latest) && latest.access_token != record.access_token {
            tracing::debug!("another process refreshed the token; using it");
            let token = latest.access_token.clone();
            inner.record = Some(latest);
            inner.client = Some(client);
            return Ok(Some(token));
        }
        let Some(refresh_token) = latest.refresh_token.clone() else {
            inner.record = Some(latest);
            return Ok(None);
        };
        // SPEC D3: a bound refresh token is refreshed with the same key.
        let dpop_key = latest.dpop_key.as_ref().map(dpop::load_key).transpose()?;
        let endpoint = TokenEndpoint {
            http: &self.http,
            metadata: &d.authorization_server,
            client: &client,
            signing_key: self.config.signing_key.as_ref(),
            dpop: self.prover(dpop_key.as_ref()),
        };
        match endpoint
            .refresh(&refresh_token, None, self.resource_param(&d))
            .await
        {
            Ok(t) => {
                let mut new = self.record_from(
                    latest.key.clone(),
                    t,
                    latest.requested_scopes.clone(),
                    Some(&latest),
                    latest.dpop_key.clone(),
                );
                if new.refresh_token.is_none() {
                    // RFC 6749 §6: no new refresh token means the old one stays valid.
                    new.refresh_token = Some(refresh_token);
                }
                self.save_tokens(&new).await?;
                let token = new.access_token.clone();
                inner.record = Some(new);
                inner.client = Some(client);
                Ok(Some(token))
            }
            Err(ClientError::OAuth { error, .. })
                if error.error == ErrorCode::InvalidGrant
                    || error.error.as_str() == dpop::INVALID_DPOP_PROOF =>
            {
                // SPEC D3: a refused proof on refresh also means a new authorization.
                tracing::info!(
                    "the refresh token was refused ({}); dropping it",
                    error.error.as_str()
                );
                let mut kept = latest;
                kept.refresh_token = None;
                kept.expires_at = Some(0);
                self.save_tokens(&kept).await?;
                inner.record = Some(kept);
                Ok(None)
            }
            Err(ClientError::OAuth { error, .. })
                if error.error == ErrorCode::InvalidClient
                    && client.kind == RegistrationKind::Dynamic =>
            {
                // A stale registration: its tokens die with it; the new flow registers again.
                tracing::info!(
                    "the authorization server no longer knows our client; registering again"
                );
                self.store.delete_client(&latest.key.issuer)?;
                self.delete_tokens(&latest.key).await?;
                inner.record = None;
                inner.client = None;
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn record_from(
        &self,
        key: StoreKey,
        t: TokenResponse,
        requested: ScopeSet,
        previous: Option<&TokenRecord>,
        dpop_key: Option<DpopPrivateKey>,
    ) -> TokenRecord {
        let granted = match &t.scope {
            Some(s) => ScopeSet::parse(s),
            None => previous
                .map(|p| p.granted_scopes.clone())
                .filter(|g| !g.is_empty())
                .unwrap_or_else(|| requested.clone()),
        };
        TokenRecord {
            schema: SCHEMA_VERSION,
            key,
            access_token: t.access_token,
            // SPEC D3: presented as the server issued it.
            token_type: if t.token_type == TokenType::DPoP {
                dpop::TOKEN_TYPE
            } else {
                "Bearer"
            }
            .into(),
            dpop_key,
            refresh_token: t.refresh_token,
            expires_at: t.expires_in.map(|e| now_unix().saturating_add(e)),
            granted_scopes: granted,
            requested_scopes: requested,
            updated_at: now_unix(),
        }
    }

    /// Scope selection (MCP SPEC C16, C17, C25, C26).
    fn select_scopes(
        &self,
        inner: &Inner,
        d: &Discovered,
        challenged: Option<ScopeSet>,
    ) -> ScopeSet {
        let mut scopes = if let Some(explicit) = &self.config.scopes {
            explicit.clone()
        } else if let Some(c) = challenged.filter(|c| !c.is_empty()) {
            // C16: the challenge is authoritative for the current operation.
            c
        } else if let Some(s) = d.resource_scopes() {
            s.iter().cloned().collect()
        } else {
            ScopeSet::new()
        };
        if let Some(prev) = &inner.record {
            // C16/C26: keep what was requested before when authorizing again.
            scopes = prev.requested_scopes.union(&scopes);
        }
        if matches!(
            self.config.grant,
            Grant::AuthorizationCode(_) | Grant::DeviceCode(_)
        ) && d.authorization_server.lists_scope("offline_access")
        {
            // C25 / SEP-2207: only when the authorization server lists it.
            scopes.insert("offline_access");
        }
        scopes
    }

    /// Runs a new authorization and stores the tokens.
    async fn authorize_new(
        &self,
        inner: &mut Inner,
        challenged: Option<ScopeSet>,
    ) -> Result<AccessToken, ClientError> {
        let d = match inner.discovered.clone() {
            Some(d) => d,
            None => {
                self.discover(inner, None).await?;
                inner
                    .discovered
                    .clone()
                    .ok_or_else(|| ClientError::Discovery {
                        reason: "no discovery result".into(),
                    })?
            }
        };
        self.check_can_bind(&d)?;
        if matches!(
            self.config.grant,
            Grant::AuthorizationCode(_) | Grant::DeviceCode(_)
        ) && !self.config.interactive
        {
            return Err(ClientError::LoginRequired {
                resource: self.config.server_url.clone(),
            });
        }
        let scopes = self.select_scopes(inner, &d, challenged);
        // One interactive flow per resource and issuer across processes (see `flow`).
        let lease = if matches!(
            self.config.grant,
            Grant::AuthorizationCode(_) | Grant::DeviceCode(_)
        ) {
            let key = StoreKey {
                resource: self.resource_key(&d).to_owned(),
                issuer: d.issuer().to_owned(),
                client_id: String::new(),
            };
            // New tokens, not the ones this process already holds (a step-up needs more).
            let held = inner.record.as_ref().map(|r| r.access_token.clone());
            let arrived = || {
                Ok(self
                    .find_stored(Some(&d))?
                    .is_some_and(|r| self.is_fresh(&r) && Some(&r.access_token) != held.as_ref()))
            };
            match flow::acquire(Arc::clone(&self.store), key, arrived).await? {
                Turn::TokensArrived => {
                    let record = self.find_stored(Some(&d))?.ok_or_else(|| {
                        ClientError::Authorization("the other process's tokens vanished".into())
                    })?;
                    let token = record.access_token.clone();
                    inner.record = Some(record);
                    return Ok(token);
                }
                Turn::TakeOver(lease, flow) => {
                    match self.take_over(inner, &d, &flow, &scopes).await {
                        Ok(Some(token)) => {
                            lease.finish().await;
                            return Ok(token);
                        }
                        Ok(None) => Some(lease),
                        Err(e) => {
                            lease.finish().await;
                            return Err(e);
                        }
                    }
                }
                Turn::Lead(lease) => Some(lease),
            }
        } else {
            None
        };
        let result = self
            .grant_with_retry(inner, &d, &scopes, lease.as_ref())
            .await;
        if let Some(lease) = lease {
            lease.finish().await;
        }
        result
    }

    /// Runs the grant, registering again once if the registration turned out to be stale.
    async fn grant_with_retry(
        &self,
        inner: &mut Inner,
        d: &Discovered,
        scopes: &ScopeSet,
        lease: Option<&Lease>,
    ) -> Result<AccessToken, ClientError> {
        let mut retried_registration = false;
        loop {
            match self.run_grant(inner, d, scopes, lease).await {
                Err(ClientError::OAuth { error, .. })
                    if error.error == ErrorCode::InvalidClient
                        && !retried_registration
                        && inner
                            .client
                            .as_ref()
                            .is_some_and(|c| c.kind == RegistrationKind::Dynamic) =>
                {
                    // A stale registration: register again, once.
                    tracing::info!(
                        "the authorization server no longer knows our client; registering again"
                    );
                    self.store.delete_client(d.issuer())?;
                    inner.client = None;
                    retried_registration = true;
                }
                Err(e) => return Err(e),
                Ok((client, tokens, dpop_key)) => {
                    let key = StoreKey {
                        resource: self.resource_key(d).to_owned(),
                        issuer: d.issuer().to_owned(),
                        client_id: client.client_id.clone(),
                    };
                    let record = self.record_from(key, tokens, scopes.clone(), None, dpop_key);
                    self.save_tokens(&record).await?;
                    // The login this one replaces, under an older registration, is dead.
                    if let Some(old) = inner.record.as_ref().filter(|o| {
                        o.key != record.key
                            && o.key.resource == record.key.resource
                            && o.key.issuer == record.key.issuer
                    }) {
                        self.delete_tokens(&old.key).await?;
                    }
                    let token = record.access_token.clone();
                    inner.record = Some(record);
                    inner.client = Some(client);
                    return Ok(token);
                }
            }
        }
    }

    /// Finishes a flow a dead process started: receives its redirect at the same URI and
    /// exchanges the code with its verifier. `Ok(None)` when that is not possible here.
    async fn take_over(
        &self,
        inner: &mut Inner,
        d: &Discovered,
        flow: &FlowRecord,
        scopes: &ScopeSet,
    ) -> Result<Option<AccessToken>, ClientError> {
        let Grant::AuthorizationCode(front_end) = &self.config.grant else {
            return Ok(None);
        };
        let (Some(redirect_uri), Some(state), Some(verifier), Some(client_id)) = (
            flow.redirect_uri.as_deref(),
            flow.state.as_deref(),
            flow.verifier.as_ref(),
            flow.client_id.as_deref(),
        ) else {
            return Ok(None);
        };
        if let Some(url) = &flow.authorization_url {
            // No new tab (the user has the page open), but the address again in case it closed.
            tracing::warn!("if the login page was closed, open it again:\n\n  {url}\n");
        }
        let remaining = Duration::from_secs(flow.deadline.saturating_sub(now_unix()));
        let Some(response) = front_end.resume(redirect_uri, state, remaining).await? else {
            return Ok(None);
        };
        let meta = &d.authorization_server;
        let code = response
            .validate(&Expected {
                state,
                issuer: &meta.issuer,
                iss_supported: meta.iss_parameter_supported(),
            })
            .map_err(|e| refusal(e, scopes))?;
        let key = StoreKey {
            resource: self.resource_key(d).to_owned(),
            issuer: d.issuer().to_owned(),
            client_id: client_id.to_owned(),
        };
        let client = self.client_for(inner, &key)?.ok_or_else(|| {
            ClientError::Authorization("the interrupted login's client registration is gone".into())
        })?;
        // The key the dead process bound the code to (dpop_jkt), else a new one.
        let dpop_key = match &flow.dpop_key {
            Some(k) => Some(dpop::load_key(k)?),
            None => self.new_dpop_key(d)?,
        };
        let tokens = TokenEndpoint {
            http: &self.http,
            metadata: meta,
            client: &client,
            signing_key: self.config.signing_key.as_ref(),
            dpop: self.prover(dpop_key.as_ref()),
        }
        .exchange_code(&code, verifier, redirect_uri, self.resource_param(d))
        .await?;
        let stored = dpop_key.as_ref().map(dpop::store_key).transpose()?;
        let record = self.record_from(key, tokens, scopes.clone(), None, stored);
        self.save_tokens(&record).await?;
        let token = record.access_token.clone();
        inner.record = Some(record);
        inner.client = Some(client);
        Ok(Some(token))
    }

    async fn run_grant(
        &self,
        inner: &mut Inner,
        d: &Discovered,
        scopes: &ScopeSet,
        lease: Option<&Lease>,
    ) -> Result<(ClientRecord, TokenResponse, Option<DpopPrivateKey>), ClientError> {
        let meta = &d.authorization_server;
        // SPEC D1: a new key for new tokens, stored with them (D3).
        let dpop_key = self.new_dpop_key(d)?;
        let stored = dpop_key.as_ref().map(dpop::store_key).transpose()?;
        let prover = self.prover(dpop_key.as_ref());
        let resource = self.resource_param(d);
        let scope = (!scopes.is_empty()).then_some(scopes);
        // SPEC V1: no browser and no terminal here, and the server offers the device grant.
        let grant = match (&self.config.grant, &self.config.device_fallback) {
            (Grant::AuthorizationCode(_), Some(presenter))
                if meta.device_authorization_endpoint.is_some() =>
            {
                tracing::info!("no browser or terminal here: using the device authorization grant");
                Grant::DeviceCode(Arc::clone(presenter))
            }
            (grant, _) => grant.clone(),
        };
        match &grant {
            Grant::ClientCredentials | Grant::CrossApp(_) => {
                let client = obtain_client(
                    &self.http,
                    self.store.as_ref(),
                    d,
                    &self.config.client,
                    None,
                    &["client_credentials"],
                )
                .await?;
                inner.client = Some(client.clone());
                let endpoint = TokenEndpoint {
                    http: &self.http,
                    metadata: meta,
                    client: &client,
                    signing_key: self.config.signing_key.as_ref(),
                    dpop: prover,
                };
                let tokens = match &self.config.grant {
                    Grant::CrossApp(xaa) => {
                        let id_jag = xaa.id_jag(&self.http, meta, resource, scope).await?;
                        endpoint.jwt_bearer(&id_jag, scope, resource).await?
                    }
                    _ => endpoint.client_credentials(scope, resource).await?,
                };
                Ok((client, tokens, stored))
            }
            Grant::Workload(identity) => {
                let client = workload::client(identity, meta);
                let tokens =
                    workload::grant(identity, &self.http, meta, &client, scope, resource, prover)
                        .await?;
                inner.client = Some(client.clone());
                Ok((client, tokens, stored))
            }
            Grant::DeviceCode(presenter) => {
                let client = obtain_client(
                    &self.http,
                    self.store.as_ref(),
                    d,
                    &self.config.client,
                    None,
                    &[DEVICE_CODE_GRANT],
                )
                .await?;
                inner.client = Some(client.clone());
                let endpoint = TokenEndpoint {
                    http: &self.http,
                    metadata: meta,
                    client: &client,
                    signing_key: self.config.signing_key.as_ref(),
                    dpop: prover,
                };
                let device = endpoint.device_authorization(scope, resource).await?;
                presenter.show_device_code(&device);
                let tokens = endpoint.poll_device(&device, resource).await;
                presenter.done();
                Ok((client, tokens?, stored))
            }
            Grant::AuthorizationCode(front_end) => {
                if self.config.require_s256 && !meta.supports_s256() {
                    return Err(ClientError::PkceUnsupported {
                        issuer: meta.issuer.clone(),
                    });
                }
                let endpoint_url = meta.authorization_endpoint.as_deref().ok_or_else(|| {
                    ClientError::Config(format!(
                        "the authorization server {} has no authorization_endpoint",
                        meta.issuer
                    ))
                })?;
                // RFC 8252 §7.3: the stored registration's loopback port, when free, so that
                // registration is reused (servers that compare redirect URIs exactly).
                let registered = self
                    .store
                    .load_client(d.issuer())?
                    .filter(|c| c.kind == RegistrationKind::Dynamic)
                    .map(|c| c.redirect_uris)
                    .unwrap_or_default();
                let pending = front_end.prepare_reusing(&registered).await?;
                let redirect_uri = pending.redirect_uri().to_owned();
                let client = obtain_client(
                    &self.http,
                    self.store.as_ref(),
                    d,
                    &self.config.client,
                    Some(&redirect_uri),
                    &["authorization_code"],
                )
                .await?;
                inner.client = Some(client.clone());
                let state = random_urlsafe(32)?;
                let verifier = pkce::new_verifier()?;
                let challenge = pkce::challenge_s256(&verifier);
                let scope_string = scopes.to_string();
                let url = authorization_url(
                    &AuthorizationRequest {
                        endpoint: endpoint_url,
                        client_id: &client.client_id,
                        redirect_uri: &redirect_uri,
                        scope: Some(&scope_string),
                        state: &state,
                        code_challenge: &challenge,
                        resource,
                        // RFC 9449 §10: the code is bound to the key the tokens will be.
                        dpop_jkt: dpop_key.as_ref().map(DpopKey::thumbprint),
                        extra: &self.config.authorize_params,
                    },
                    self.http.options().allow_insecure_http,
                )?;
                // MCP SPEC C18: the issuer, state and verifier are fixed before redirecting (and
                // shared with the other processes, so one of them can finish if this one dies).
                if let Some(lease) = lease {
                    lease
                        .record(InFlight {
                            client_id: client.client_id.clone(),
                            redirect_uri: redirect_uri.clone(),
                            state: state.clone(),
                            authorization_url: url.clone(),
                            verifier: verifier.clone(),
                            dpop_key: stored.clone(),
                        })
                        .await?;
                }
                let response = pending.complete(url).await?;
                let code = response
                    .validate(&Expected {
                        state: &state,
                        issuer: &meta.issuer,
                        iss_supported: meta.iss_parameter_supported(),
                    })
                    .map_err(|e| refusal(e, scopes))?;
                let endpoint = TokenEndpoint {
                    http: &self.http,
                    metadata: meta,
                    client: &client,
                    signing_key: self.config.signing_key.as_ref(),
                    dpop: prover,
                };
                let tokens = endpoint
                    .exchange_code(&code, &verifier, &redirect_uri, resource)
                    .await?;
                Ok((client, tokens, stored))
            }
        }
    }
}

/// The error of an authorization response: an `access_denied` or `invalid_scope` answer to a
/// request that carried no `scope` but perhaps `offline_access` (which asks for a refresh token,
/// not for access) becomes [`ClientError::RefusedWithoutScope`], which names the likely cause
/// and the fix (RFC 6749 §4.1.2.1).
fn refusal(e: mcpauth_core::CoreError, scopes: &ScopeSet) -> ClientError {
    match e {
        mcpauth_core::CoreError::AuthorizationRefused(err)
            if scopes.iter().all(|s| s == "offline_access")
                && matches!(err.error, ErrorCode::AccessDenied | ErrorCode::InvalidScope) =>
        {
            ClientError::RefusedWithoutScope(err)
        }
        e => e.into(),
    }
}
