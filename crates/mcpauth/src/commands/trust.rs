//! `[[trusted_issuers]]` in the settings of `serve` and the gateway's embedded server: issuers
//! whose JWTs the JWT bearer grant accepts (RFC 7523): workload identity tokens (SEP-1933, SPEC
//! W2) and enterprise IdPs' ID-JAGs (SPEC E1-E3).
//!
//! ```toml
//! [[trusted_issuers]]
//! name = "github"
//! issuer = "https://token.actions.githubusercontent.com"
//! kind = "workload"
//! subject = "repo:acme/tools:*"
//! claims = ["environment=prod"]
//! scopes = ["mcp:tools"]
//!
//! [[trusted_issuers]]
//! name = "corp"
//! issuer = "https://acme.okta.com"
//! kind = "id-jag"
//! users = "linked"
//! ```

use anyhow::Context;
use mcpauth_authserver::federation::ClaimRule;
use mcpauth_authserver::{IdJagRule, TrustKind, TrustedIssuer, UserMapping, WorkloadRule};
use serde::Deserialize;

/// What a trusted issuer's JWTs are.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum Kind {
    /// Workload identity tokens.
    Workload,
    /// ID-JAGs.
    IdJag,
}

/// How an ID-JAG's `sub` names a user.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum Users {
    #[default]
    Linked,
    Existing,
}

/// One `[[trusted_issuers]]` table.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustSettings {
    name: String,
    issuer: String,
    kind: Kind,
    jwks_uri: Option<String>,
    audience: Option<String>,
    subject: Option<String>,
    #[serde(default)]
    claims: Vec<String>,
    #[serde(default)]
    scopes: Vec<String>,
    users: Option<Users>,
}

/// The trusted issuers the settings describe, checked.
pub fn trusted_issuers(settings: &[TrustSettings]) -> anyhow::Result<Vec<TrustedIssuer>> {
    settings.iter().map(trusted_issuer).collect()
}

fn trusted_issuer(s: &TrustSettings) -> anyhow::Result<TrustedIssuer> {
    let name = &s.name;
    let kind = match s.kind {
        Kind::Workload => {
            if s.users.is_some() {
                anyhow::bail!("trusted issuer {name:?}: `users` is for kind = \"id-jag\"");
            }
            let claims = s
                .claims
                .iter()
                .map(|c| ClaimRule::parse(c))
                .collect::<Result<_, _>>()
                .with_context(|| format!("trusted issuer {name:?}"))?;
            TrustKind::Workload(WorkloadRule {
                audience: s.audience.clone(),
                subject: s.subject.clone(),
                claims,
                scopes: s.scopes.clone(),
            })
        }
        Kind::IdJag => {
            if let Some(member) = [
                ("audience", s.audience.is_some()),
                ("subject", s.subject.is_some()),
                ("claims", !s.claims.is_empty()),
            ]
            .iter()
            .find_map(|(m, set)| set.then_some(m))
            {
                anyhow::bail!(
                    "trusted issuer {name:?}: `{member}` is for kind = \"workload\" (an ID-JAG's \
                     audience is this server and its user is its sub)"
                );
            }
            TrustKind::IdJag(IdJagRule {
                users: match s.users.unwrap_or_default() {
                    Users::Linked => UserMapping::Linked,
                    Users::Existing => UserMapping::Existing,
                },
                scopes: s.scopes.clone(),
            })
        }
    };
    let t = TrustedIssuer {
        name: name.clone(),
        issuer: s.issuer.clone(),
        jwks_uri: s.jwks_uri.clone(),
        kind,
    };
    t.validate()?;
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml: &str) -> anyhow::Result<Vec<TrustedIssuer>> {
        #[derive(Deserialize)]
        struct S {
            trusted_issuers: Vec<TrustSettings>,
        }
        let s: S = toml::from_str(toml)?;
        trusted_issuers(&s.trusted_issuers)
    }

    #[test]
    fn w2_e1_settings_parse_and_bad_ones_say_why() {
        let ok = parse(
            r#"
            [[trusted_issuers]]
            name = "github"
            issuer = "https://token.actions.githubusercontent.com"
            kind = "workload"
            subject = "repo:acme/tools:*"
            claims = ["environment=prod"]
            scopes = ["mcp:tools"]

            [[trusted_issuers]]
            name = "corp"
            issuer = "https://acme.okta.com"
            kind = "id-jag"
            users = "existing"
            "#,
        )
        .unwrap();
        assert_eq!(ok.len(), 2);
        assert!(matches!(&ok[0].kind, TrustKind::Workload(r) if r.claims.len() == 1));
        assert!(matches!(&ok[1].kind, TrustKind::IdJag(r) if r.users == UserMapping::Existing));
        for (bad, why) in [
            (
                r#"[[trusted_issuers]]
                name = "ci"
                issuer = "https://ci.example"
                kind = "workload""#,
                "scopes",
            ),
            (
                r#"[[trusted_issuers]]
                name = "ci"
                issuer = "http://ci.example"
                kind = "workload"
                scopes = ["a"]"#,
                "https",
            ),
            (
                r#"[[trusted_issuers]]
                name = "corp"
                issuer = "https://idp.example"
                kind = "id-jag"
                subject = "x""#,
                "`subject` is for kind",
            ),
            (
                r#"[[trusted_issuers]]
                name = "Bad Name"
                issuer = "https://idp.example"
                kind = "id-jag""#,
                "name",
            ),
            (
                r#"[[trusted_issuers]]
                name = "ci"
                issuer = "https://ci.example"
                kind = "workload"
                claims = ["novalue"]
                scopes = ["a"]"#,
                "NAME=VALUE",
            ),
        ] {
            let e = format!("{:#}", parse(bad).unwrap_err());
            assert!(e.contains(why), "{why}: {e}");
        }
    }
}
