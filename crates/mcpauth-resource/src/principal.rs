//! Who a verified access token speaks for, and how handlers get at it.

use std::sync::Arc;

use mcpauth_core::ScopeSet;
use serde_json::{Map, Value};

/// The subject, client and grant behind a verified access token.
///
/// The layer puts an `Arc<Principal>` in the request extensions; read it with [`principal`] or
/// the [`Authenticated`] extractor. It never holds the token itself, so `Debug` is safe to log.
/// Bind server-side handles (MCP sessions, subscriptions) to [`Principal::key`] (MCP SPEC S12).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Principal {
    /// `sub`: the user (or, for `client_credentials`, usually the client).
    pub subject: String,
    /// `client_id` (RFC 9068 §2.2; `azp` or `appid` where that is what the server sends).
    pub client_id: Option<String>,
    /// The granted scopes (`scope`, or `scp` for servers such as Entra and Okta).
    pub scopes: ScopeSet,
    /// `exp`, in Unix seconds.
    pub expires_at: Option<u64>,
    /// `iss`: the authorization server that issued the token.
    pub issuer: String,
    /// `aud`: the audiences of the token (one of them is this resource).
    pub audience: Vec<String>,
    /// Every claim of the token (or member of the introspection response).
    pub claims: Map<String, Value>,
}

impl Principal {
    /// A principal with just a subject and an issuer; set the other fields as needed (for
    /// callers writing their own [`TokenVerifier`](crate::TokenVerifier)).
    pub fn new(subject: impl Into<String>, issuer: impl Into<String>) -> Self {
        Self {
            subject: subject.into(),
            client_id: None,
            scopes: ScopeSet::new(),
            expires_at: None,
            issuer: issuer.into(),
            audience: Vec::new(),
            claims: Map::new(),
        }
    }

    /// A stable identity to bind server-side state to (MCP SPEC S12): `(issuer, subject)`, since
    /// subjects are only unique per issuer.
    pub fn key(&self) -> (&str, &str) {
        (&self.issuer, &self.subject)
    }

    /// Builds a principal from JWT claims or an introspection response (RFC 9068 §2.2, RFC 7662
    /// §2.2). The caller has already checked `iss`, `aud` and the times.
    pub(crate) fn from_claims(claims: Map<String, Value>) -> Result<Self, String> {
        let str_claim = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
        let client_id = str_claim("client_id")
            .or_else(|| str_claim("azp"))
            .or_else(|| str_claim("appid"));
        let subject = str_claim("sub")
            .or_else(|| client_id.clone())
            .ok_or("the token has neither `sub` nor `client_id`")?;
        let issuer = str_claim("iss").ok_or("the token has no `iss`")?;
        let scopes = match claims.get("scope").or_else(|| claims.get("scp")) {
            None => ScopeSet::new(),
            Some(Value::String(s)) => ScopeSet::parse(s),
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            Some(_) => return Err("`scope` is neither a string nor an array".into()),
        };
        let audience = match claims.get("aud") {
            None => Vec::new(),
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or("`aud` holds a non-string")?,
            Some(_) => return Err("`aud` is neither a string nor an array".into()),
        };
        let expires_at = match claims.get("exp") {
            None => None,
            Some(v) => Some(
                v.as_u64()
                    .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
                    .ok_or("`exp` is not a number")?,
            ),
        };
        Ok(Self {
            subject,
            client_id,
            scopes,
            expires_at,
            issuer,
            audience,
            claims,
        })
    }
}

/// The principal the [`BearerAuthLayer`](crate::BearerAuthLayer) verified for this request.
///
/// ```
/// # let req = http::Request::new(());
/// if let Some(p) = mcpauth_resource::principal(&req) {
///     println!("{} via {:?}", p.subject, p.client_id);
/// }
/// ```
pub fn principal<B>(req: &http::Request<B>) -> Option<&Principal> {
    req.extensions().get::<Arc<Principal>>().map(|p| &**p)
}

/// An axum extractor for the verified principal: `async fn h(Authenticated(p): Authenticated)`.
///
/// Without the layer in front of the handler the extraction fails with 500 (a setup error,
/// not the client's). `Option<Authenticated>` never fails.
#[derive(Clone, Debug)]
pub struct Authenticated(pub Arc<Principal>);

impl std::ops::Deref for Authenticated {
    type Target = Principal;
    fn deref(&self) -> &Principal {
        &self.0
    }
}

impl<S: Sync> axum_core::extract::FromRequestParts<S> for Authenticated {
    type Rejection = (http::StatusCode, &'static str);

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Arc<Principal>>()
            .cloned()
            .map(Authenticated)
            .ok_or((
                http::StatusCode::INTERNAL_SERVER_ERROR,
                "no authenticated principal: is BearerAuthLayer in front of this handler?",
            ))
    }
}

impl<S: Sync> axum_core::extract::OptionalFromRequestParts<S> for Authenticated {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Arc<Principal>>()
            .cloned()
            .map(Authenticated))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn debug_never_shows_the_token() {
        // The principal is built from claims only; make sure nothing token-like sneaks in.
        let token = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
        let claims =
            json!({"iss": "https://as", "sub": "alice", "scope": "a b", "aud": "r", "exp": 5});
        let p = Principal::from_claims(claims.as_object().unwrap().clone()).unwrap();
        let dbg = format!("{p:?}");
        assert!(!dbg.contains(token) && !dbg.contains("eyJ"), "{dbg}");
        assert!(dbg.contains("alice"));
    }

    #[test]
    fn scp_arrays_and_client_id_fallbacks() {
        let claims = json!({"iss": "i", "azp": "c1", "scp": ["x", "y"], "aud": ["a", "b"]});
        let p = Principal::from_claims(claims.as_object().unwrap().clone()).unwrap();
        assert_eq!(p.subject, "c1");
        assert_eq!(p.client_id.as_deref(), Some("c1"));
        assert_eq!(p.scopes.to_string(), "x y");
        assert_eq!(p.audience, ["a", "b"]);
        assert!(Principal::from_claims(json!({"iss": "i"}).as_object().unwrap().clone()).is_err());
    }
}
