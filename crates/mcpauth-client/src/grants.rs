//! Token endpoint requests (RFC 6749 §3.2, §4.1.3, §4.4, §6; RFC 8693; RFC 7523) with client
//! authentication `none`, `client_secret_basic`, `client_secret_post` or `private_key_jwt`.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mcpauth_core::device::DeviceAuthorization;
use mcpauth_core::dpop::DpopError;
use mcpauth_core::{
    Assertion, AuthorizationCode, AuthorizationServerMetadata, ErrorCode, PkceVerifier,
    RefreshToken, ScopeSet, TokenResponse, TokenType, random_urlsafe,
};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderValue};
use serde::Serialize;

use crate::ClientError;
use crate::dpop::{self, Prover};
use crate::http::{Fetched, OAuthHttp};
use crate::registration::auth_method;
use crate::store::{ClientRecord, now_unix};

/// RFC 7523 §2.2 client assertion type.
const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// RFC 7523 §2.1 grant type.
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// RFC 8628 §3.4 grant type.
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// RFC 8693 §2.1 grant type.
pub const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// A private key for `private_key_jwt` (RFC 7523 §2.2) and its algorithm.
#[derive(Clone)]
pub struct SigningKey {
    key: EncodingKey,
    alg: Algorithm,
    kid: Option<String>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Reads a PEM private key; `alg` is `ES256` (default), `ES384`, `EdDSA` or `RS256`.
    pub fn from_pem(
        pem: &str,
        alg: Option<&str>,
        kid: Option<String>,
    ) -> Result<Self, ClientError> {
        let bad = |e: jsonwebtoken::errors::Error| ClientError::Key(e.to_string());
        let (key, alg) = match alg.unwrap_or("ES256") {
            "ES256" => (
                EncodingKey::from_ec_pem(pem.as_bytes()).map_err(bad)?,
                Algorithm::ES256,
            ),
            "ES384" => (
                EncodingKey::from_ec_pem(pem.as_bytes()).map_err(bad)?,
                Algorithm::ES384,
            ),
            "EdDSA" => (
                EncodingKey::from_ed_pem(pem.as_bytes()).map_err(bad)?,
                Algorithm::EdDSA,
            ),
            "RS256" => (
                EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(bad)?,
                Algorithm::RS256,
            ),
            other => return Err(ClientError::Key(format!("unsupported algorithm {other:?}"))),
        };
        Ok(Self { key, alg, kid })
    }

    /// Signs the RFC 7523 §3 client assertion: `iss` = `sub` = client id, `aud` = `audience`,
    /// a short lifetime and a unique `jti`.
    pub fn client_assertion(
        &self,
        client_id: &str,
        audience: &str,
    ) -> Result<Assertion, ClientError> {
        #[derive(Serialize)]
        struct Claims<'a> {
            iss: &'a str,
            sub: &'a str,
            aud: &'a str,
            iat: u64,
            exp: u64,
            jti: String,
        }
        let now = now_unix();
        let claims = Claims {
            iss: client_id,
            sub: client_id,
            aud: audience,
            iat: now,
            exp: now + 300,
            jti: random_urlsafe(16)?,
        };
        let mut header = Header::new(self.alg);
        header.kid = self.kid.clone();
        jsonwebtoken::encode(&header, &claims, &self.key)
            .map(Assertion::new)
            .map_err(|e| ClientError::Key(e.to_string()))
    }
}

/// A token endpoint and the client that talks to it.
#[derive(Debug, Clone, Copy)]
pub struct TokenEndpoint<'a> {
    /// The HTTP client.
    pub http: &'a OAuthHttp,
    /// The authorization server's metadata.
    pub metadata: &'a AuthorizationServerMetadata,
    /// The client registration.
    pub client: &'a ClientRecord,
    /// The key for `private_key_jwt`, if the client uses it.
    pub signing_key: Option<&'a SigningKey>,
    /// Signs a DPoP proof for every token request when set (RFC 9449 §5, SPEC D1).
    pub dpop: Option<Prover<'a>>,
}

/// Form parameters of a token endpoint request.
type Form = Vec<(&'static str, String)>;

/// Whether to send RFC 8707 `resource`.
pub type Resource<'a> = Option<&'a str>;

impl TokenEndpoint<'_> {
    fn url(&self) -> Result<&str, ClientError> {
        self.metadata.token_endpoint.as_deref().ok_or_else(|| {
            ClientError::Config(format!(
                "the authorization server {} has no token_endpoint",
                self.metadata.issuer
            ))
        })
    }

    /// Exchanges an authorization code (RFC 6749 §4.1.3 with PKCE, RFC 8707 `resource`).
    pub async fn exchange_code(
        &self,
        code: &AuthorizationCode,
        verifier: &PkceVerifier,
        redirect_uri: &str,
        resource: Resource<'_>,
    ) -> Result<TokenResponse, ClientError> {
        let mut form = vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code.expose().to_owned()),
            ("redirect_uri", redirect_uri.to_owned()),
            ("code_verifier", verifier.expose().to_owned()),
        ];
        push_resource(&mut form, resource);
        self.request("authorization code exchange", form).await
    }

    /// Refreshes (RFC 6749 §6, OAuth 2.1 §4.3). `scope` narrows the grant when given.
    pub async fn refresh(
        &self,
        refresh_token: &RefreshToken,
        scope: Option<&ScopeSet>,
        resource: Resource<'_>,
    ) -> Result<TokenResponse, ClientError> {
        let mut form = vec![
            ("grant_type", "refresh_token".to_owned()),
            ("refresh_token", refresh_token.expose().to_owned()),
        ];
        push_scope(&mut form, scope);
        push_resource(&mut form, resource);
        self.request("refresh", form).await
    }

    /// The client credentials grant (RFC 6749 §4.4).
    pub async fn client_credentials(
        &self,
        scope: Option<&ScopeSet>,
        resource: Resource<'_>,
    ) -> Result<TokenResponse, ClientError> {
        let mut form = vec![("grant_type", "client_credentials".to_owned())];
        push_scope(&mut form, scope);
        push_resource(&mut form, resource);
        self.request("client credentials grant", form).await
    }

    /// Starts a device authorization (RFC 8628 §3.1) at the device authorization endpoint.
    pub async fn device_authorization(
        &self,
        scope: Option<&ScopeSet>,
        resource: Resource<'_>,
    ) -> Result<DeviceAuthorization, ClientError> {
        let url = self
            .metadata
            .device_authorization_endpoint
            .as_deref()
            .ok_or_else(|| {
                ClientError::Config(format!(
                    "the authorization server {} has no device_authorization_endpoint (RFC 8628)",
                    self.metadata.issuer
                ))
            })?;
        let mut form = Vec::new();
        push_scope(&mut form, scope);
        push_resource(&mut form, resource);
        let fetched = self.post(url, form, HeaderMap::new()).await?;
        if !fetched.status.is_success() {
            return Err(error_of(&fetched, "device authorization (RFC 8628)", url));
        }
        Ok(DeviceAuthorization::from_json(&fetched.body)?)
    }

    /// Polls the token endpoint with a device code (RFC 8628 §3.4) until the user approves,
    /// waiting `interval` seconds between polls and 5 s more after each `slow_down` (§3.5).
    pub async fn poll_device(
        &self,
        device: &DeviceAuthorization,
        resource: Resource<'_>,
    ) -> Result<TokenResponse, ClientError> {
        let deadline =
            tokio::time::Instant::now() + std::time::Duration::from_secs(device.expires_in);
        let mut interval = device.interval.max(1);
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(interval)).await;
            if tokio::time::Instant::now() > deadline {
                return Err(ClientError::Authorization(
                    "the device code expired before the user approved (RFC 8628 expired_token)"
                        .into(),
                ));
            }
            let mut form = vec![
                ("grant_type", DEVICE_CODE_GRANT.to_owned()),
                ("device_code", device.device_code.expose().to_owned()),
            ];
            push_resource(&mut form, resource);
            match self.request("device code grant (RFC 8628)", form).await {
                Err(ClientError::OAuth { error, .. })
                    if error.error == ErrorCode::AuthorizationPending => {}
                Err(ClientError::OAuth { error, .. }) if error.error == ErrorCode::SlowDown => {
                    interval += 5
                }
                other => return other,
            }
        }
    }

    /// The JWT bearer grant (RFC 7523 §2.1), e.g. with an ID-JAG.
    pub async fn jwt_bearer(
        &self,
        assertion: &Assertion,
        scope: Option<&ScopeSet>,
        resource: Resource<'_>,
    ) -> Result<TokenResponse, ClientError> {
        let mut form = vec![
            ("grant_type", JWT_BEARER_GRANT.to_owned()),
            ("assertion", assertion.expose().to_owned()),
        ];
        push_scope(&mut form, scope);
        push_resource(&mut form, resource);
        self.request("JWT bearer grant (RFC 7523)", form).await
    }

    /// RFC 8693 token exchange; `params` are the exchange parameters (`subject_token`,
    /// `requested_token_type`, `audience`, ...).
    pub async fn token_exchange(
        &self,
        params: &[(&'static str, String)],
    ) -> Result<TokenResponse, ClientError> {
        let mut form = vec![("grant_type", TOKEN_EXCHANGE_GRANT.to_owned())];
        form.extend(params.iter().cloned());
        self.request("token exchange (RFC 8693)", form).await
    }

    /// Revokes a token at the revocation endpoint (RFC 7009 §2.1), authenticating like at the
    /// token endpoint. `Ok(false)` when the server has no revocation endpoint.
    pub async fn revoke(&self, token: &str, hint: &'static str) -> Result<bool, ClientError> {
        let Some(url) = self.metadata.revocation_endpoint.as_deref() else {
            return Ok(false);
        };
        let form = vec![
            ("token", token.to_owned()),
            ("token_type_hint", hint.to_owned()),
        ];
        let fetched = self.post(url, form, HeaderMap::new()).await?;
        // RFC 7009 §2.2: 200 whether or not the token was valid.
        if fetched.status.is_success() {
            return Ok(true);
        }
        Err(error_of(&fetched, "revocation (RFC 7009)", url))
    }

    /// Adds client authentication to `form`; returns the form and the Basic secret, if any.
    fn authenticate(&self, mut form: Form) -> Result<(Form, Option<&str>), ClientError> {
        let client = self.client;
        let secret = || {
            client.client_secret.as_ref().ok_or_else(|| {
                ClientError::Config(format!(
                    "{} needs a client secret, and none is configured",
                    client.token_endpoint_auth_method
                ))
            })
        };
        let mut basic = None;
        match client.token_endpoint_auth_method.as_str() {
            auth_method::CLIENT_SECRET_BASIC => basic = Some(secret()?.expose()),
            auth_method::CLIENT_SECRET_POST => {
                form.push(("client_id", client.client_id.clone()));
                form.push(("client_secret", secret()?.expose().to_owned()));
            }
            auth_method::PRIVATE_KEY_JWT => {
                let key = self.signing_key.ok_or_else(|| {
                    ClientError::Config("private_key_jwt needs a private key".into())
                })?;
                // RFC 7523 §3: the audience identifies the authorization server; the issuer is
                // the identifier RFC 7523bis recommends and every server accepts.
                let assertion = key.client_assertion(&client.client_id, &self.metadata.issuer)?;
                form.push(("client_id", client.client_id.clone()));
                form.push(("client_assertion_type", JWT_BEARER_ASSERTION.to_owned()));
                form.push(("client_assertion", assertion.expose().to_owned()));
            }
            // RFC 7523 §3.1: client authentication is optional with a JWT grant, and a workload
            // has no client id unless one was configured (SEP-1933, SPEC W1).
            _ if client.client_id.is_empty() => {}
            _ => form.push(("client_id", client.client_id.clone())),
        }
        Ok((form, basic))
    }

    /// POSTs `form` to `url` with client authentication and `extra` headers.
    async fn post(&self, url: &str, form: Form, extra: HeaderMap) -> Result<Fetched, ClientError> {
        let (form, basic) = self.authenticate(form)?;
        let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.http
            .post_form(
                url,
                &pairs,
                basic.map(|s| (self.client.client_id.as_str(), s)),
                extra,
            )
            .await
    }

    /// A token request: with a fresh DPoP proof when DPoP is on, and once more with the server's
    /// nonce after a `use_dpop_nonce` answer (RFC 9449 §8, SPEC D2).
    async fn request(
        &self,
        context: &'static str,
        form: Form,
    ) -> Result<TokenResponse, ClientError> {
        let url = self.url()?;
        let mut nonce_retried = false;
        let fetched = loop {
            let mut extra = HeaderMap::new();
            if let Some(prover) = &self.dpop {
                let proof = prover.proof("POST", url, None)?;
                extra.insert(
                    dpop::DPOP,
                    HeaderValue::from_str(&proof).map_err(|_| {
                        ClientError::Dpop(DpopError::Signing("proof is not a header value"))
                    })?,
                );
            }
            let fetched = self.post(url, form.clone(), extra).await?;
            let Some(prover) = &self.dpop else {
                break fetched;
            };
            let fresh_nonce = prover.nonces.remember(url, &fetched.headers);
            let wants_nonce = fetched.status == StatusCode::BAD_REQUEST
                && fetched
                    .oauth_error()
                    .is_some_and(|e| e.error.as_str() == dpop::USE_DPOP_NONCE);
            if wants_nonce && fresh_nonce && !nonce_retried {
                nonce_retried = true;
                continue;
            }
            break fetched;
        };
        if !fetched.status.is_success() {
            return Err(error_of(&fetched, context, url));
        }
        let token = TokenResponse::from_json(&fetched.body)?;
        // RFC 9449 §5: a DPoP token only when a proof was sent; anything else is unusable.
        let usable = match &token.token_type {
            TokenType::Bearer | TokenType::NotApplicable => true,
            TokenType::DPoP => self.dpop.is_some(),
            _ => false,
        };
        if !usable {
            return Err(ClientError::Config(format!(
                "the authorization server issued a {:?} token, which this request cannot use",
                token.token_type
            )));
        }
        Ok(token)
    }
}

/// The error of a failed OAuth response: the RFC 6749 §5.2 body when there is one.
fn error_of(fetched: &Fetched, context: &'static str, url: &str) -> ClientError {
    match fetched.oauth_error() {
        Some(error) => ClientError::OAuth {
            context,
            status: fetched.status.as_u16(),
            error,
        },
        None => ClientError::UnexpectedStatus {
            context,
            url: url.to_owned(),
            status: fetched.status.as_u16(),
            body: fetched.body_excerpt(),
        },
    }
}

fn push_scope(form: &mut Form, scope: Option<&ScopeSet>) {
    if let Some(s) = scope.filter(|s| !s.is_empty()) {
        form.push(("scope", s.to_string()));
    }
}

fn push_resource(form: &mut Form, resource: Resource<'_>) {
    if let Some(r) = resource {
        form.push(("resource", r.to_owned()));
    }
}
