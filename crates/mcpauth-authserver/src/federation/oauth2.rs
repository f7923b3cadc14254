//! The upstream plain OAuth 2.0 client (RFC 6749; GitHub is the common one): the token request,
//! then the account read from the user endpoint with the access token (RFC 6750 §2.1). There is
//! no ID token, so nothing is signed: the subject and e-mail address come from configured
//! members of the user endpoint's JSON, and an address counts as verified only when the emails
//! endpoint says so (`verified: true`) — never because the user endpoint shows it.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::OAuth2Endpoints;
use super::upstream::{CodeGrant, Identity, Upstream, UpstreamError, UpstreamTokens};
use crate::federation::IdentityProvider;

/// Longest accepted subject (as OIDC Core §2 bounds `sub`).
const MAX_SUBJECT: usize = 255;

/// One entry of the emails endpoint's list (GitHub's `GET /user/emails`).
#[derive(Debug, Deserialize)]
struct Email {
    email: String,
    #[serde(default)]
    primary: bool,
    #[serde(default)]
    verified: bool,
}

/// The account id in `field`: a string of 1 to [`MAX_SUBJECT`] printable ASCII characters, or
/// an integer (GitHub's `id`), written in decimal.
fn subject(user: &Map<String, Value>, field: &str) -> Result<String, UpstreamError> {
    let sub = match user.get(field) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) if n.is_u64() || n.is_i64() => n.to_string(),
        _ => {
            return Err(UpstreamError::UserInfo(
                "the subject field is missing or neither a string nor an integer",
            ));
        }
    };
    if sub.is_empty() || sub.len() > MAX_SUBJECT || !sub.bytes().all(|c| c.is_ascii_graphic()) {
        return Err(UpstreamError::UserInfo(
            "the subject is empty, too long or has characters other than printable ASCII",
        ));
    }
    Ok(sub)
}

/// The claims the allow-list sees: the user endpoint's members, with `email` the configured
/// field's (unverified) value, `name` the configured name field's, and `email_verified: true`
/// only with the primary address the emails endpoint says is verified.
fn claims(
    mut user: Map<String, Value>,
    endpoints: &OAuth2Endpoints,
    emails: Option<Vec<Email>>,
) -> Map<String, Value> {
    let email = user.get(&endpoints.email_field).cloned();
    let name = endpoints
        .name_field
        .as_ref()
        .and_then(|f| user.get(f).cloned());
    user.remove("email_verified");
    user.remove("email");
    if let Some(e @ Value::String(_)) = email {
        user.insert("email".into(), e);
    }
    if let Some(n @ Value::String(_)) = name {
        user.insert("name".into(), n);
    }
    if let Some(verified) = emails
        .into_iter()
        .flatten()
        .find(|e| e.primary && e.verified)
    {
        user.insert("email".into(), Value::String(verified.email));
        user.insert("email_verified".into(), Value::Bool(true));
    }
    user
}

impl Upstream {
    /// Exchanges `grant` at the token endpoint, then reads the account from the user endpoint
    /// (and the emails endpoint, when configured) with the access token.
    pub(crate) async fn sign_in_oauth2(
        &self,
        idp: &IdentityProvider,
        endpoints: &OAuth2Endpoints,
        grant: &CodeGrant<'_>,
    ) -> Result<Identity, UpstreamError> {
        let body = self
            .token_request(idp, &endpoints.token_endpoint, endpoints.token_auth, grant)
            .await?;
        let tokens = UpstreamTokens::from_response(&body, crate::secrets::now(), None)
            .ok_or_else(|| UpstreamError::Token("the answer has no access_token".into()))?;
        let access_token = tokens.access_token.clone();
        let user: Value = self
            .user_json(&endpoints.userinfo_endpoint, &access_token)
            .await?;
        let Value::Object(user) = user else {
            return Err(UpstreamError::UserInfo("the answer is not a JSON object"));
        };
        let sub = subject(&user, &endpoints.subject_field)?;
        let emails = match &endpoints.emails_endpoint {
            Some(url) => Some(self.user_json(url, &access_token).await?),
            None => None,
        };
        Ok(Identity {
            sub,
            claims: claims(user, endpoints, emails),
            tokens: Some(tokens),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn github() -> OAuth2Endpoints {
        let mut e = OAuth2Endpoints::new(
            "https://a.example",
            "https://t.example",
            "https://u.example",
        );
        e.name_field = Some("login".into());
        e
    }

    #[test]
    fn f6_oauth2_subject_is_a_string_or_an_integer() {
        let user = object(
            json!({"id": 583231, "uid": "u-1", "neg": -3, "f": 1.5, "b": true,
            "empty": "", "space": "a b", "long": "x".repeat(256)}),
        );
        assert_eq!(subject(&user, "id").unwrap(), "583231");
        assert_eq!(subject(&user, "uid").unwrap(), "u-1");
        assert_eq!(subject(&user, "neg").unwrap(), "-3");
        for bad in ["f", "b", "empty", "space", "long", "missing"] {
            assert!(subject(&user, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn f5_oauth2_email_is_verified_only_by_the_emails_endpoint() {
        let user = || {
            object(json!({"id": 1, "login": "ada", "email": "ada@example.com",
            "email_verified": true}))
        };
        // The user endpoint's own `email_verified` is not believed.
        let c = claims(user(), &github(), None);
        assert_eq!(c["email"], "ada@example.com");
        assert_eq!(c["name"], "ada");
        assert!(!c.contains_key("email_verified"));
        let list = |primary: bool, verified: bool| {
            Some(vec![
                Email {
                    email: "ada@work.example".into(),
                    primary,
                    verified,
                },
                Email {
                    email: "1+ada@users.noreply.github.com".into(),
                    primary: false,
                    verified: true,
                },
            ])
        };
        let c = claims(user(), &github(), list(true, true));
        assert_eq!(c["email"], "ada@work.example");
        assert_eq!(c["email_verified"], true);
        // A verified secondary address does not stand in for an unverified primary one.
        for (primary, verified) in [(true, false), (false, true)] {
            let c = claims(user(), &github(), list(primary, verified));
            assert_eq!(c["email"], "ada@example.com");
            assert!(!c.contains_key("email_verified"));
        }
        let mut e = github();
        e.email_field = "mail".into();
        let c = claims(
            object(json!({"id": 1, "email": "x@y", "mail": null})),
            &e,
            None,
        );
        assert!(!c.contains_key("email"), "{c:?}");
    }
}
