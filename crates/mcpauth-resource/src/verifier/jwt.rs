//! RFC 9068 JWT access tokens, verified with the issuer's published keys (MCP SPEC S4-S5).

use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use super::{TokenCache, TokenVerifier, VerifyFuture};
use crate::jwks::{IssuerKeys, Lookup, RefetchPolicy};
use crate::{Principal, ResourceError};

/// Verifies JWT access tokens (RFC 9068) locally against the JWK sets of trusted issuers.
///
/// - Keys come from the issuer's metadata `jwks_uri` (RFC 8414, then OpenID Discovery), or an
///   explicit JWK set URL; fetched over HTTPS (plain HTTP only on loopback) with time and size
///   limits; refetched when a token names an unknown `kid` (at most once per
///   [`jwks_refetch_interval`](JwtVerifierBuilder::jwks_refetch_interval)) and when older than
///   [`jwks_max_age`](JwtVerifierBuilder::jwks_max_age).
/// - The algorithm comes from the key (`kty`, `crv`, `alg`), never from the token header alone:
///   `alg: none`, HMAC algorithms and any header `alg` the key does not allow are refused.
/// - `exp` and `nbf` with a leeway (60 s by default); `iss` compared byte for byte (see
///   [`JwtVerifierBuilder::accept_issuer_trailing_slash`] for the one variant); `aud` must
///   contain one of the configured audiences (mandatory, MCP SPEC S4-S5); the JOSE `typ` must be
///   `at+jwt` (RFC 9068 §4) unless [`accept_plain_jwt`](JwtVerifierBuilder::accept_plain_jwt).
/// - Verified tokens are remembered by SHA-256 (never the token) until their `exp`, at most
///   [`cache`](JwtVerifierBuilder::cache) long, so repeated requests skip the signature check.
///
/// ```no_run
/// # fn f() -> Result<(), mcpauth_resource::ResourceError> {
/// let verifier = mcpauth_resource::JwtVerifier::builder()
///     .issuer("https://auth.example.com")
///     .audience("https://mcp.example.com/mcp")
///     .build()?;
/// # Ok(()) }
/// ```
pub struct JwtVerifier {
    issuers: Vec<IssuerKeys>,
    audiences: Vec<String>,
    accept_plain_jwt: bool,
    cache: TokenCache,
    cache_ttl: u64,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field(
                "issuers",
                &self.issuers.iter().map(|i| &i.issuer).collect::<Vec<_>>(),
            )
            .field("audiences", &self.audiences)
            .field("accept_plain_jwt", &self.accept_plain_jwt)
            .finish_non_exhaustive()
    }
}

/// Builds a [`JwtVerifier`]; at least one issuer and one audience are required.
#[derive(Debug)]
pub struct JwtVerifierBuilder {
    issuers: Vec<(String, Option<String>)>,
    audiences: Vec<String>,
    issuer_slash_variant: bool,
    accept_plain_jwt: bool,
    leeway: Duration,
    refetch: RefetchPolicy,
    cache_ttl: Duration,
    cache_entries: usize,
    http: Option<reqwest::Client>,
}

impl JwtVerifier {
    /// A builder with the defaults: 60 s leeway, strict `typ`, JWK refetch at most every 30 s
    /// and at least every 10 min, a verified-token cache of 5 min and 10 000 entries.
    pub fn builder() -> JwtVerifierBuilder {
        JwtVerifierBuilder {
            issuers: Vec::new(),
            audiences: Vec::new(),
            issuer_slash_variant: false,
            accept_plain_jwt: false,
            leeway: Duration::from_secs(60),
            refetch: RefetchPolicy {
                min_interval: Duration::from_secs(30),
                max_age: Duration::from_secs(600),
            },
            cache_ttl: Duration::from_secs(300),
            cache_entries: 10_000,
            http: None,
        }
    }

    /// Fetches every issuer's keys now, so that a misconfiguration shows at startup rather
    /// than on the first request.
    pub async fn prefetch(&self) -> Result<(), ResourceError> {
        for i in &self.issuers {
            i.refetch(true).await?;
        }
        Ok(())
    }

    /// The key cache of the trusted issuer `issuer`.
    pub(crate) fn issuer_keys(&self, issuer: &str) -> Option<&IssuerKeys> {
        self.issuers.iter().find(|i| i.issuer == issuer)
    }

    fn check_typ(&self, typ: Option<&str>) -> Result<(), ResourceError> {
        let ok = match typ {
            Some(t) if t.eq_ignore_ascii_case("at+jwt") => true,
            Some(t) if t.eq_ignore_ascii_case("application/at+jwt") => true,
            Some(t) if self.accept_plain_jwt => {
                t.eq_ignore_ascii_case("JWT") || t.eq_ignore_ascii_case("application/jwt")
            }
            None => self.accept_plain_jwt,
            Some(_) => false,
        };
        if ok {
            Ok(())
        } else {
            Err(ResourceError::invalid(
                "not an access token: the JWT `typ` must be `at+jwt` (RFC 9068 §4)",
            ))
        }
    }

    fn issuer_of(&self, token: &str) -> Result<&IssuerKeys, ResourceError> {
        if let [only] = self.issuers.as_slice() {
            return Ok(only);
        }
        #[derive(serde::Deserialize)]
        struct Iss {
            iss: Option<String>,
        }
        let claims: Iss = jsonwebtoken::dangerous::insecure_decode(token)
            .map(|d| d.claims)
            .map_err(|_| ResourceError::invalid("malformed JWT"))?;
        let iss = claims.iss.ok_or(ResourceError::WrongIssuer)?;
        self.issuers
            .iter()
            .find(|i| i.accepts(&iss))
            .ok_or(ResourceError::WrongIssuer)
    }

    async fn verify_uncached(&self, token: &str) -> Result<Principal, ResourceError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            ResourceError::invalid(
                "malformed JWT or unsupported `alg` (`none` and unknown algorithms are refused)",
            )
        })?;
        if matches!(
            header.alg,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        ) {
            return Err(ResourceError::invalid(
                "symmetric (HS*) signatures are never accepted",
            ));
        }
        self.check_typ(header.typ.as_deref())?;
        let issuer = self.issuer_of(token)?;
        let keys = match issuer.lookup(header.kid.as_deref(), header.alg).await? {
            Lookup::Keys(k) => k,
            Lookup::AlgMismatch => {
                return Err(ResourceError::invalid(
                    "the header `alg` is not the algorithm of the signing key",
                ));
            }
            Lookup::Unknown => {
                return Err(ResourceError::invalid(
                    "signed by a key the issuer does not publish",
                ));
            }
        };
        let mut last = ResourceError::invalid("bad signature");
        for key in keys {
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &key.validation) {
                Ok(data) => return self.principal(issuer, data.claims),
                Err(e) => {
                    last = match e.kind() {
                        ErrorKind::ExpiredSignature | ErrorKind::ImmatureSignature => {
                            ResourceError::Expired
                        }
                        ErrorKind::InvalidAudience => ResourceError::WrongAudience,
                        ErrorKind::MissingRequiredClaim(c) if c == "aud" => {
                            ResourceError::WrongAudience
                        }
                        ErrorKind::InvalidIssuer => ResourceError::WrongIssuer,
                        ErrorKind::MissingRequiredClaim(c) => {
                            ResourceError::invalid(format!("the `{c}` claim is missing"))
                        }
                        ErrorKind::InvalidSignature => ResourceError::invalid("bad signature"),
                        ErrorKind::InvalidAlgorithm => ResourceError::invalid(
                            "the header `alg` is not the algorithm of the signing key",
                        ),
                        ErrorKind::InvalidClaimFormat(c) => {
                            ResourceError::invalid(format!("the `{c}` claim is malformed"))
                        }
                        _ => ResourceError::invalid("malformed JWT"),
                    };
                    if !matches!(e.kind(), ErrorKind::InvalidSignature) {
                        break;
                    }
                }
            }
        }
        Err(last)
    }

    /// The principal of verified `claims`, after the checks `jsonwebtoken` does loosely: `iss`
    /// must be a string the issuer accepts, and `aud` must name one of our audiences.
    fn principal(
        &self,
        issuer: &IssuerKeys,
        claims: Map<String, Value>,
    ) -> Result<Principal, ResourceError> {
        if !claims
            .get("iss")
            .and_then(Value::as_str)
            .is_some_and(|iss| issuer.accepts(iss))
        {
            return Err(ResourceError::WrongIssuer);
        }
        let p = Principal::from_claims(claims).map_err(ResourceError::invalid)?;
        if !p.audience.iter().any(|a| self.audiences.contains(a)) {
            return Err(ResourceError::WrongAudience);
        }
        if p.expires_at.is_none() {
            return Err(ResourceError::invalid("the `exp` claim is missing"));
        }
        Ok(p)
    }
}

impl TokenVerifier for JwtVerifier {
    fn verify<'a>(&'a self, token: &'a str) -> VerifyFuture<'a> {
        Box::pin(
            self.cache
                .get_or_verify(token, self.cache_ttl, self.verify_uncached(token)),
        )
    }
}

impl JwtVerifierBuilder {
    /// Trusts tokens from `issuer` (compared byte for byte with `iss`); its keys are found
    /// through its metadata `jwks_uri` (RFC 8414 §3, then OpenID Discovery).
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuers.push((issuer.into(), None));
        self
    }

    /// Trusts tokens from `issuer`, with its keys at `jwks_url` (no metadata lookup).
    pub fn issuer_with_jwks(
        mut self,
        issuer: impl Into<String>,
        jwks_url: impl Into<String>,
    ) -> Self {
        self.issuers.push((issuer.into(), Some(jwks_url.into())));
        self
    }

    /// Accepts tokens whose `aud` contains `audience`: this resource's URI (RFC 8707), or
    /// another identifier the authorization server uses for it (e.g. an Entra application id
    /// URI or GUID). Call it once per accepted value.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// Also accepts `iss` (and a metadata `issuer`) that differs from a configured issuer only
    /// by one trailing slash, e.g. `https://tenant.auth0.com/` for `https://tenant.auth0.com`.
    /// Off by default: issuers are compared byte for byte (MCP SPEC C6 spirit, no silent
    /// normalisation). Prefer configuring the issuer exactly as the server spells it.
    pub fn accept_issuer_trailing_slash(mut self, yes: bool) -> Self {
        self.issuer_slash_variant = yes;
        self
    }

    /// Also accepts the JOSE `typ` `JWT` (or none), for servers such as Entra ID and Auth0
    /// that do not mark access tokens as `at+jwt` (RFC 9068 §2.1). Off by default: the strict
    /// check keeps ID tokens and other JWTs from being used as access tokens.
    pub fn accept_plain_jwt(mut self, yes: bool) -> Self {
        self.accept_plain_jwt = yes;
        self
    }

    /// Clock leeway for `exp` and `nbf` (default 60 s).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// The least time between two refetches of a JWK set caused by unknown key ids (default
    /// 30 s), so that tokens with made-up `kid`s cannot make us hammer the issuer.
    pub fn jwks_refetch_interval(mut self, interval: Duration) -> Self {
        self.refetch.min_interval = interval;
        self
    }

    /// How old a JWK set may grow before it is refetched (default 10 min), so that keys the
    /// issuer withdrew stop being trusted.
    pub fn jwks_max_age(mut self, age: Duration) -> Self {
        self.refetch.max_age = age;
        self
    }

    /// The verified-token cache: how long a token is remembered at most (never past its
    /// `exp`) and how many tokens; `max_entries == 0` turns it off.
    pub fn cache(mut self, ttl: Duration, max_entries: usize) -> Self {
        self.cache_ttl = ttl;
        self.cache_entries = max_entries;
        self
    }

    /// The HTTP client for metadata and JWK sets (default: rustls, no redirects, 10 s).
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// Checks the configuration: at least one issuer and one audience, and only HTTPS (or
    /// loopback HTTP) URLs.
    pub fn build(self) -> Result<JwtVerifier, ResourceError> {
        if self.issuers.is_empty() {
            return Err(ResourceError::Config(
                "a JWT verifier needs at least one trusted issuer".into(),
            ));
        }
        if self.audiences.is_empty() || self.audiences.iter().any(String::is_empty) {
            return Err(ResourceError::Config(
                "a JWT verifier needs this resource's URI as audience (MCP SPEC S4-S5)".into(),
            ));
        }
        let http = match self.http {
            Some(c) => c,
            None => crate::fetch::client()?,
        };
        let mut base = Validation::new(Algorithm::ES256);
        base.leeway = self.leeway.as_secs();
        base.validate_exp = true;
        base.validate_nbf = true;
        base.validate_aud = true;
        base.set_audience(&self.audiences);
        base.set_required_spec_claims(&["exp", "iss", "aud"]);
        let issuers = self
            .issuers
            .into_iter()
            .map(|(iss, jwks)| {
                IssuerKeys::new(
                    iss,
                    jwks,
                    self.issuer_slash_variant,
                    base.clone(),
                    self.refetch,
                    http.clone(),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(JwtVerifier {
            issuers,
            audiences: self.audiences,
            accept_plain_jwt: self.accept_plain_jwt,
            cache: TokenCache::new(self.cache_entries),
            cache_ttl: self.cache_ttl.as_secs(),
        })
    }
}
