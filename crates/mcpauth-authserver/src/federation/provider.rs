//! Upstream identity providers users may sign in with (OpenID Connect, or plain OAuth 2.0 with
//! a user endpoint), and who of their accounts may.

use mcpauth_core::ClientSecret;
use mcpauth_core::url_policy::{is_loopback, parse_url};
use serde_json::Value;

use crate::error::AuthServerError;

/// An upstream identity provider (SPEC F1-F8): users sign in there and become local users
/// named `NAME:SUB`. Consent stays ours (SPEC F7).
#[derive(Clone, Debug)]
pub struct IdentityProvider {
    /// URL-safe id (`a-z`, `0-9`, `-`, `_`; 1 to 32 characters): the prefix of its users' names.
    pub name: String,
    /// Shown on the login page's button.
    pub display_name: String,
    /// OpenID Connect or plain OAuth 2.0, with what each needs.
    pub kind: ProviderKind,
    /// Our client id at the provider.
    pub client_id: String,
    /// Our client secret at the provider.
    pub client_secret: ClientSecret,
    /// Scopes requested (for OpenID Connect, `openid` is always sent too).
    pub scopes: Vec<String>,
    /// Who may sign in.
    pub allow: AllowRules,
}

/// How a provider signs users in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProviderKind {
    /// OpenID Connect: discovery at `{issuer}/.well-known/openid-configuration`, an ID token.
    Oidc {
        /// The OIDC issuer.
        issuer: String,
    },
    /// Plain OAuth 2.0 (RFC 6749, e.g. GitHub): configured endpoints, the account read from a
    /// user endpoint with the access token.
    OAuth2(OAuth2Endpoints),
}

/// How a plain OAuth 2.0 provider authenticates us at its token endpoint (RFC 6749 §2.3.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TokenAuth {
    /// `client_secret_basic`: HTTP Basic.
    #[default]
    Basic,
    /// `client_secret_post`: in the form.
    Post,
}

/// A plain OAuth 2.0 provider's endpoints and where its user endpoint's JSON holds the account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuth2Endpoints {
    /// Where the browser signs in (RFC 6749 §3.1).
    pub authorization_endpoint: String,
    /// Where the code is exchanged (RFC 6749 §3.2).
    pub token_endpoint: String,
    /// Answers the signed-in account as a JSON object, e.g. `https://api.github.com/user`.
    pub userinfo_endpoint: String,
    /// Answers the account's addresses as `[{"email", "primary", "verified"}]`, e.g.
    /// `https://api.github.com/user/emails`: the only source of a verified e-mail address.
    pub emails_endpoint: Option<String>,
    /// The user endpoint's member holding the stable account id (a string or an integer).
    pub subject_field: String,
    /// The user endpoint's member holding the (unverified) e-mail address.
    pub email_field: String,
    /// The user endpoint's member holding the account name shown on error pages, e.g. `login`.
    pub name_field: Option<String>,
    /// How we authenticate at the token endpoint.
    pub token_auth: TokenAuth,
}

impl OAuth2Endpoints {
    /// The three endpoints, the subject in `id`, the e-mail address in `email`, Basic
    /// authentication, and no emails endpoint.
    pub fn new(
        authorization_endpoint: impl Into<String>,
        token_endpoint: impl Into<String>,
        userinfo_endpoint: impl Into<String>,
    ) -> Self {
        Self {
            authorization_endpoint: authorization_endpoint.into(),
            token_endpoint: token_endpoint.into(),
            userinfo_endpoint: userinfo_endpoint.into(),
            emails_endpoint: None,
            subject_field: "id".into(),
            email_field: "email".into(),
            name_field: None,
            token_auth: TokenAuth::Basic,
        }
    }

    fn urls(&self) -> impl Iterator<Item = (&'static str, &String)> {
        [
            ("authorization_endpoint", Some(&self.authorization_endpoint)),
            ("token_endpoint", Some(&self.token_endpoint)),
            ("userinfo_endpoint", Some(&self.userinfo_endpoint)),
            ("emails_endpoint", self.emails_endpoint.as_ref()),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
    }
}

/// Checks that `value` is an https URL (http only on loopback) without a fragment.
fn check_url(provider: &str, what: &str, value: &str) -> Result<(), AuthServerError> {
    let url = parse_url(value)?;
    if !(url.scheme() == "https" || (url.scheme() == "http" && is_loopback(&url))) {
        return Err(AuthServerError::Config(format!(
            "identity provider {provider:?}: the {what} {value:?} must be https (http only on a \
             loopback host)"
        )));
    }
    if url.fragment().is_some() {
        return Err(AuthServerError::Config(format!(
            "identity provider {provider:?}: the {what} {value:?} must have no fragment"
        )));
    }
    Ok(())
}

impl IdentityProvider {
    /// An OpenID Connect provider with the default scopes (`openid email profile`) and no allow
    /// rule yet.
    pub fn new(
        name: impl Into<String>,
        issuer: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: ClientSecret,
    ) -> Self {
        let name = name.into();
        Self {
            display_name: name.clone(),
            name,
            kind: ProviderKind::Oidc {
                issuer: issuer.into(),
            },
            client_id: client_id.into(),
            client_secret,
            scopes: vec!["openid".into(), "email".into(), "profile".into()],
            allow: AllowRules::default(),
        }
    }

    /// A plain OAuth 2.0 provider with no scopes and no allow rule yet.
    pub fn oauth2(
        name: impl Into<String>,
        endpoints: OAuth2Endpoints,
        client_id: impl Into<String>,
        client_secret: ClientSecret,
    ) -> Self {
        let name = name.into();
        Self {
            display_name: name.clone(),
            name,
            kind: ProviderKind::OAuth2(endpoints),
            client_id: client_id.into(),
            client_secret,
            scopes: Vec::new(),
            allow: AllowRules::default(),
        }
    }

    /// Where users sign in: the OIDC issuer, or the OAuth 2.0 authorization endpoint.
    pub fn location(&self) -> &str {
        match &self.kind {
            ProviderKind::Oidc { issuer } => issuer,
            ProviderKind::OAuth2(e) => &e.authorization_endpoint,
        }
    }

    /// Checks the name, the issuer or endpoints (https, or http on loopback) and that some rule
    /// says who may sign in.
    pub fn validate(&self) -> Result<(), AuthServerError> {
        let bad = |m: String| Err(AuthServerError::Config(m));
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 32
            && self
                .name
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_');
        if !name_ok {
            return bad(format!(
                "identity provider name {:?}: use 1 to 32 of a-z, 0-9, '-' and '_'",
                self.name
            ));
        }
        match &self.kind {
            ProviderKind::Oidc { issuer } => {
                check_url(&self.name, "issuer", issuer)?;
                if parse_url(issuer)?.query().is_some() {
                    return bad(format!(
                        "identity provider {:?}: the issuer {issuer:?} must have no query",
                        self.name
                    ));
                }
            }
            ProviderKind::OAuth2(e) => {
                for (what, url) in e.urls() {
                    check_url(&self.name, what, url)?;
                }
                for (what, field) in [
                    ("subject_field", Some(&e.subject_field)),
                    ("email_field", Some(&e.email_field)),
                    ("name_field", e.name_field.as_ref()),
                ] {
                    if field.is_some_and(|f| f.is_empty()) {
                        return bad(format!(
                            "identity provider {:?}: {what} is empty",
                            self.name
                        ));
                    }
                }
            }
        }
        if self.client_id.is_empty() {
            return bad(format!(
                "identity provider {:?}: client_id is empty",
                self.name
            ));
        }
        if self.allow.is_empty() {
            return bad(format!(
                "identity provider {:?} has no allow rule, so every account of {} could sign in: \
                 add --idp-allow-domain, --idp-allow-email or --idp-allow-claim, or say \
                 --idp-allow-any if that is what you want",
                self.name,
                self.location()
            ));
        }
        for c in &self.allow.claims {
            if c.name.is_empty() || matches!(c.name.as_str(), "iss" | "aud" | "nonce") {
                return bad(format!(
                    "identity provider {:?}: {:?} cannot be an allow-list claim",
                    self.name, c.name
                ));
            }
        }
        Ok(())
    }
}

/// Which of a provider's accounts may sign in: any that matches one rule. E-mail rules only
/// match a verified address (`email_verified: true`, OIDC Core §5.1).
#[derive(Clone, Debug, Default)]
pub struct AllowRules {
    /// Every account (must be said explicitly).
    pub any: bool,
    /// E-mail domains, e.g. `example.com` (exact, case-insensitive).
    pub domains: Vec<String>,
    /// Exact e-mail addresses (case-insensitive).
    pub emails: Vec<String>,
    /// Claim requirements.
    pub claims: Vec<ClaimRule>,
}

/// A claim that must equal `value`, or, for an array claim such as `groups`, contain it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimRule {
    /// The claim name, e.g. `hd` or `groups`.
    pub name: String,
    /// The required value (string claims; booleans and numbers compare by their JSON text).
    pub value: String,
}

impl ClaimRule {
    /// Parses `NAME=VALUE`.
    pub fn parse(s: &str) -> Result<Self, AuthServerError> {
        match s.split_once('=') {
            Some((n, v)) if !n.is_empty() && !v.is_empty() => Ok(Self {
                name: n.to_owned(),
                value: v.to_owned(),
            }),
            _ => Err(AuthServerError::Config(format!(
                "allow-list claim {s:?}: write NAME=VALUE, e.g. hd=example.com or groups=admins"
            ))),
        }
    }

    pub(crate) fn matches(&self, claims: &serde_json::Map<String, Value>) -> bool {
        let eq = |v: &Value| match v {
            Value::String(s) => *s == self.value,
            Value::Bool(b) => self.value == if *b { "true" } else { "false" },
            Value::Number(n) => self.value == n.to_string(),
            _ => false,
        };
        match claims.get(&self.name) {
            Some(Value::Array(items)) => items.iter().any(eq),
            Some(v) => eq(v),
            None => false,
        }
    }
}

impl AllowRules {
    fn is_empty(&self) -> bool {
        !self.any && self.domains.is_empty() && self.emails.is_empty() && self.claims.is_empty()
    }

    /// Whether the account with these claims may sign in.
    pub(crate) fn allows(&self, claims: &serde_json::Map<String, Value>) -> bool {
        if self.any {
            return true;
        }
        let verified = matches!(claims.get("email_verified"), Some(Value::Bool(true)))
            || matches!(claims.get("email_verified"), Some(Value::String(s)) if s == "true");
        let email = claims
            .get("email")
            .and_then(Value::as_str)
            .filter(|_| verified)
            .map(str::to_ascii_lowercase);
        if let Some(email) = &email {
            if self.emails.iter().any(|e| e.eq_ignore_ascii_case(email)) {
                return true;
            }
            if let Some((_, domain)) = email.rsplit_once('@')
                && self.domains.iter().any(|d| d.eq_ignore_ascii_case(domain))
            {
                return true;
            }
        }
        self.claims.iter().any(|c| c.matches(claims))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn provider() -> IdentityProvider {
        let mut p = IdentityProvider::new(
            "corp",
            "https://idp.example.com",
            "client",
            ClientSecret::new("s"),
        );
        p.allow.domains.push("example.com".into());
        p
    }

    #[test]
    fn f1_provider_config_is_validated() {
        assert!(provider().validate().is_ok());
        let mut p = provider();
        p.allow = AllowRules::default();
        let e = p.validate().unwrap_err().to_string();
        assert!(e.contains("--idp-allow-any"), "{e}");
        p.allow.any = true;
        assert!(p.validate().is_ok());
        for name in ["", "Corp", "a b", "a/b", &"x".repeat(33)] {
            let mut p = provider();
            p.name = name.into();
            assert!(p.validate().is_err(), "{name:?}");
        }
        let mut p = provider();
        let oidc = |issuer: &str| ProviderKind::Oidc {
            issuer: issuer.into(),
        };
        p.kind = oidc("http://idp.example.com");
        assert!(p.validate().is_err());
        p.kind = oidc("https://idp.example.com/?tenant=1");
        assert!(p.validate().unwrap_err().to_string().contains("no query"));
        p.kind = oidc("http://127.0.0.1:9999");
        assert!(p.validate().is_ok());
        assert!(ClaimRule::parse("hd=example.com").is_ok());
        assert!(ClaimRule::parse("hd").is_err());
        assert!(ClaimRule::parse("=x").is_err());
        assert!(!format!("{:?}", provider()).contains("\"s\""));
    }

    fn github() -> IdentityProvider {
        let mut p = IdentityProvider::oauth2(
            "github",
            OAuth2Endpoints::new(
                "https://github.com/login/oauth/authorize",
                "https://github.com/login/oauth/access_token",
                "https://api.github.com/user",
            ),
            "client",
            ClientSecret::new("s"),
        );
        p.allow.any = true;
        p
    }

    fn endpoints(p: &mut IdentityProvider) -> &mut OAuth2Endpoints {
        match &mut p.kind {
            ProviderKind::OAuth2(e) => e,
            ProviderKind::Oidc { .. } => unreachable!("an OAuth 2.0 provider"),
        }
    }

    #[test]
    fn f1_oauth2_provider_endpoints_are_validated() {
        assert!(github().validate().is_ok());
        assert_eq!(
            github().location(),
            "https://github.com/login/oauth/authorize"
        );
        let mut p = github();
        endpoints(&mut p).token_endpoint = "http://github.com/login/oauth/access_token".into();
        let e = p.validate().unwrap_err().to_string();
        assert!(
            e.contains("the token_endpoint") && e.contains("must be https"),
            "{e}"
        );
        let mut p = github();
        endpoints(&mut p).emails_endpoint = Some("https://api.github.com/user/emails#x".into());
        let e = p.validate().unwrap_err().to_string();
        assert!(
            e.contains("emails_endpoint") && e.contains("no fragment"),
            "{e}"
        );
        let mut p = github();
        endpoints(&mut p).userinfo_endpoint = "not a url".into();
        assert!(p.validate().is_err());
        let mut p = github();
        endpoints(&mut p).userinfo_endpoint = "http://127.0.0.1:9/user".into();
        assert!(p.validate().is_ok());
        let mut p = github();
        endpoints(&mut p).subject_field = String::new();
        let e = p.validate().unwrap_err().to_string();
        assert!(e.contains("subject_field is empty"), "{e}");
        let mut p = github();
        endpoints(&mut p).name_field = Some(String::new());
        assert!(p.validate().unwrap_err().to_string().contains("name_field"));
    }

    #[test]
    fn f5_allow_list_rules() {
        let claims = |v: Value| v.as_object().unwrap().clone();
        let mut r = AllowRules::default();
        r.domains.push("example.com".into());
        r.emails.push("Bob@Other.org".into());
        r.claims.push(ClaimRule::parse("groups=admins").unwrap());
        assert!(r.allows(&claims(
            json!({"email": "a@EXAMPLE.com", "email_verified": true})
        )));
        assert!(!r.allows(&claims(json!({"email": "a@example.com"}))));
        assert!(!r.allows(&claims(
            json!({"email": "a@example.com.evil", "email_verified": true})
        )));
        assert!(r.allows(&claims(
            json!({"email": "bob@other.org", "email_verified": "true"})
        )));
        assert!(r.allows(&claims(json!({"groups": ["users", "admins"]}))));
        assert!(!r.allows(&claims(json!({"groups": ["users"]}))));
        assert!(!r.allows(&claims(json!({}))));
        let any = AllowRules {
            any: true,
            ..AllowRules::default()
        };
        assert!(any.allows(&claims(json!({}))));
    }
}
