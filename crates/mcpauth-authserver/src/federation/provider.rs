//! Upstream OpenID Connect providers users may sign in with, and who of their accounts may.

use mcpauth_core::ClientSecret;
use mcpauth_core::url_policy::{is_loopback, parse_url};
use serde_json::Value;

use crate::error::AuthServerError;

/// An upstream OpenID Connect provider (SPEC F1-F8): users sign in there and become local
/// users named `NAME:SUB`. Consent stays ours (SPEC F7).
#[derive(Clone, Debug)]
pub struct IdentityProvider {
    /// URL-safe id (`a-z`, `0-9`, `-`, `_`; 1 to 32 characters): the prefix of its users' names.
    pub name: String,
    /// Shown on the login page's button.
    pub display_name: String,
    /// The OIDC issuer; discovery is `{issuer}/.well-known/openid-configuration`.
    pub issuer: String,
    /// Our client id at the provider.
    pub client_id: String,
    /// Our client secret at the provider.
    pub client_secret: ClientSecret,
    /// Scopes requested (`openid` is always sent).
    pub scopes: Vec<String>,
    /// Who may sign in.
    pub allow: AllowRules,
}

impl IdentityProvider {
    /// A provider with the default scopes (`openid email profile`) and no allow rule yet.
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
            issuer: issuer.into(),
            client_id: client_id.into(),
            client_secret,
            scopes: vec!["openid".into(), "email".into(), "profile".into()],
            allow: AllowRules::default(),
        }
    }

    /// Checks the name, the issuer (https, or http on loopback) and that some rule says who may
    /// sign in.
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
        let url = parse_url(&self.issuer)?;
        if !(url.scheme() == "https" || (url.scheme() == "http" && is_loopback(&url))) {
            return bad(format!(
                "identity provider {:?}: the issuer {:?} must be https (http only on a loopback host)",
                self.name, self.issuer
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return bad(format!(
                "identity provider {:?}: the issuer {:?} must have no query or fragment",
                self.name, self.issuer
            ));
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
                self.name, self.issuer
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

    fn matches(&self, claims: &serde_json::Map<String, Value>) -> bool {
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
        p.issuer = "http://idp.example.com".into();
        assert!(p.validate().is_err());
        p.issuer = "http://127.0.0.1:9999".into();
        assert!(p.validate().is_ok());
        assert!(ClaimRule::parse("hd=example.com").is_ok());
        assert!(ClaimRule::parse("hd").is_err());
        assert!(ClaimRule::parse("=x").is_err());
        assert!(!format!("{:?}", provider()).contains("\"s\""));
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
