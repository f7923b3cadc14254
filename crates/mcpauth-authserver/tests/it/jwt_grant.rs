//! The JWT bearer grant (RFC 7523) for trusted issuers, over HTTP, with the test OpenID provider
//! of mcpauth-testkit as the issuer (discovery and JWKS on 127.0.0.1): workload identity tokens
//! (SEP-1933, SPEC W2) and ID-JAGs (Enterprise-Managed Authorization §5, SPEC E1-E3). Every bad
//! assertion is a clear `invalid_grant` (or `invalid_target` / `invalid_scope`) and issues
//! nothing.

use mcpauth_authserver::federation::ClaimRule;
use mcpauth_authserver::{IdJagRule, TrustKind, TrustedIssuer, UserMapping, WorkloadRule};
use mcpauth_core::dpop::DpopKey;
use mcpauth_testkit::{IdpUser, OidcProvider};
use serde_json::{Value, json};

use crate::support::*;

const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const ID_JAG_TYP: &str = "oauth-id-jag+jwt";

async fn issuer() -> OidcProvider {
    OidcProvider::start(IdpUser {
        sub: "unused".into(),
        email: "unused@example.com".into(),
        extra: json!({}),
    })
    .await
}

fn workload_rule() -> WorkloadRule {
    WorkloadRule {
        audience: None,
        subject: Some("repo:acme/tools:*".into()),
        claims: vec![ClaimRule::parse("environment=prod").unwrap()],
        scopes: vec!["mcp:read".into(), "mcp:write".into()],
    }
}

/// A server trusting `ci` (workloads) and `corp` (ID-JAGs, linked users), both at `idp`.
async fn start(db: &Db, ci: &OidcProvider, corp: &OidcProvider) -> TestServer {
    let (ci, corp) = (ci.issuer.clone(), corp.issuer.clone());
    TestServer::start(db, move |c| {
        c.scopes_supported = vec!["mcp:read".into(), "mcp:write".into()];
        c.trusted_issuers = vec![
            TrustedIssuer {
                name: "ci".into(),
                issuer: ci,
                jwks_uri: None,
                kind: TrustKind::Workload(workload_rule()),
            },
            TrustedIssuer {
                name: "corp".into(),
                issuer: corp,
                jwks_uri: None,
                kind: TrustKind::IdJag(IdJagRule {
                    users: UserMapping::Linked,
                    scopes: Vec::new(),
                }),
            },
        ];
    })
    .await
}

fn now() -> i64 {
    mcpauth_core::dpop::unix_now()
}

/// Claims of a good workload token for `ts`.
fn workload_claims(ts: &TestServer) -> Value {
    json!({
        "sub": "repo:acme/tools:ref:refs/heads/main",
        "aud": ts.issuer,
        "environment": "prod",
        "repository": "acme/tools",
        "jti": mcpauth_core::random_urlsafe(12).unwrap(),
        "iat": now(),
        "exp": now() + 300,
    })
}

async fn workload_grant(ts: &TestServer, assertion: &str, extra: &[(&str, &str)]) -> (u16, Value) {
    let mut form = vec![("grant_type", JWT_BEARER), ("assertion", assertion)];
    form.extend_from_slice(extra);
    token_request(ts, &form).await
}

fn refused(status: u16, body: &Value, error: &str) -> String {
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some(error)),
        "{body}"
    );
    assert!(body.get("access_token").is_none());
    body["error_description"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

both_backends! {
    /// W2: a workload token of a trusted issuer that matches its rule gets a token for the
    /// workload (`ci:SUB`, client id `ci`), for the resource, with the rule's scopes, no
    /// refresh token; with a DPoP proof it is bound; the metadata offers the grant.
    async fn w2_a_matching_workload_token_gets_an_access_token(db) {
        let (ci, corp) = (issuer().await, issuer().await);
        let ts = start(db, &ci, &corp).await;
        let meta: Value = http().get(ts.url("/.well-known/oauth-authorization-server"))
            .send().await.unwrap().json().await.unwrap();
        assert!(meta["grant_types_supported"].as_array().unwrap().contains(&json!(JWT_BEARER)));
        assert_eq!(meta["authorization_grant_profiles_supported"], json!(["urn:ietf:params:oauth:grant-profile:id-jag"]));

        let (status, body) = workload_grant(&ts, &ci.mint(None, &workload_claims(&ts)), &[]).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["token_type"], "Bearer");
        assert!(body.get("refresh_token").is_none());
        let at = claims(body["access_token"].as_str().unwrap());
        assert_eq!(at["sub"], "ci:repo:acme/tools:ref:refs/heads/main");
        assert_eq!(at["client_id"], "ci");
        assert_eq!(at["aud"], RESOURCE);
        assert_eq!(at["scope"], "mcp:read mcp:write");

        let key = DpopKey::generate().unwrap();
        let proof = key.proof("POST", &ts.url("/token"), None, None).unwrap();
        let assertion = ci.mint(None, &workload_claims(&ts));
        let (status, body) = token_request_with(&ts, &[
            ("grant_type", JWT_BEARER), ("assertion", &assertion), ("scope", "mcp:read"),
        ], &[("dpop", &proof)]).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["token_type"], "DPoP");
        let at = claims(body["access_token"].as_str().unwrap());
        assert_eq!((at["scope"].as_str(), at["cnf"]["jkt"].as_str()), (Some("mcp:read"), Some(key.thumbprint())));
    }

    /// W2: expired, wrong audience, untrusted issuer, replayed jti, a claim or subject the rule
    /// does not match, a forged signature, a scope beyond the rule: each refused clearly.
    async fn w2_bad_workload_tokens_are_refused(db) {
        let (ci, corp) = (issuer().await, issuer().await);
        let ts = start(db, &ci, &corp).await;
        let with = |k: &str, v: Value| {
            let mut c = workload_claims(&ts);
            c[k] = v;
            c
        };
        let stranger = issuer().await;
        for (what, assertion, why) in [
            ("expired", ci.mint(None, &with("exp", json!(now() - 3600))), "expired"),
            ("another audience", ci.mint(None, &with("aud", json!("https://elsewhere.example"))), "another audience"),
            ("untrusted issuer", stranger.mint(None, &workload_claims(&ts)), "not trusted"),
            ("claim rule", ci.mint(None, &with("environment", json!("dev"))), "environment claim"),
            ("subject pattern", ci.mint(None, &with("sub", json!("repo:evil/tools:ref:x"))), "subject"),
            ("forged", ci.mint_forged(None, &workload_claims(&ts)), "signature"),
            ("not yet valid", ci.mint(None, &with("nbf", json!(now() + 3600))), "not valid yet"),
            ("an ID-JAG typ", ci.mint(Some(ID_JAG_TYP), &workload_claims(&ts)), "not ID-JAGs"),
            ("not a JWT", "nonsense".to_owned(), "not a JWT"),
        ] {
            let (status, body) = workload_grant(&ts, &assertion, &[]).await;
            let d = refused(status, &body, "invalid_grant");
            assert!(d.contains(why), "{what}: {d}");
        }
        let once = ci.mint(None, &workload_claims(&ts));
        assert_eq!(workload_grant(&ts, &once, &[]).await.0, 200);
        let (status, body) = workload_grant(&ts, &once, &[]).await;
        assert!(refused(status, &body, "invalid_grant").contains("used before"));
        let (status, body) = workload_grant(&ts, &ci.mint(None, &workload_claims(&ts)), &[("scope", "mcp:admin")]).await;
        refused(status, &body, "invalid_scope");
        let (status, body) = token_request(&ts, &[("grant_type", JWT_BEARER)]).await;
        refused(status, &body, "invalid_request");
    }

    /// E1-E3: an ID-JAG from a trusted IdP, redeemed by the client it names (authenticated),
    /// with and without resource and scope; the user is linked (`corp:SUB`); introspection names
    /// the client and the local user; no refresh token.
    async fn e1_id_jags_are_redeemed_by_their_client(db) {
        let (ci, corp) = (issuer().await, issuer().await);
        let ts = start(db, &ci, &corp).await;
        let client = id_jag_client(&ts).await;
        let rs = ts.add_resource_server(&[RESOURCE]).await;
        let full = id_jag_claims(&ts, &client.0);
        let (status, body) = redeem(&ts, &client, &corp.mint(Some(ID_JAG_TYP), &full), &[]).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.get("refresh_token").is_none());
        assert_eq!(body["scope"], "mcp:read");
        let token = body["access_token"].as_str().unwrap();
        let at = claims(token);
        assert_eq!((at["aud"].as_str(), at["client_id"].as_str()), (Some(RESOURCE), Some(client.0.as_str())));
        let info = introspect(&ts, &rs, token).await;
        assert_eq!(info["active"], true, "{info}");
        assert_eq!(info["client_id"], client.0);
        assert_eq!(info["sub"], at["sub"]);
        let user = ts.store().clone();
        let users = mcpauth_authserver::admin::list_users(&user).await.unwrap();
        assert!(users.iter().any(|u| u.username == "corp:U019488227"), "the user is linked");

        // Without resource and scope in the ID-JAG: the server's resource, the request's scope.
        let mut bare = id_jag_claims(&ts, &client.0);
        bare.as_object_mut().unwrap().remove("resource");
        bare.as_object_mut().unwrap().remove("scope");
        let (status, body) = redeem(&ts, &client, &corp.mint(Some(ID_JAG_TYP), &bare), &[("scope", "mcp:write")]).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(claims(body["access_token"].as_str().unwrap())["aud"], RESOURCE);
        assert_eq!(body["scope"], "mcp:write");
        // The intersection of the ID-JAG's scope and the request's.
        let (status, body) = redeem(&ts, &client, &corp.mint(Some(ID_JAG_TYP), &id_jag_claims(&ts, &client.0)), &[("scope", "mcp:read mcp:write")]).await;
        assert_eq!((status, body["scope"].as_str()), (200, Some("mcp:read")), "{body}");
    }

    /// E1-E3 refusals: a resource we do not serve (invalid_target), no scope in common
    /// (invalid_scope), a forged signature, an untrusted IdP, another client's ID-JAG, a wrong
    /// typ, a replayed jti, our audience missing, a public client.
    async fn e2_bad_id_jags_are_refused(db) {
        let (ci, corp) = (issuer().await, issuer().await);
        let ts = start(db, &ci, &corp).await;
        let client = id_jag_client(&ts).await;
        let with = |k: &str, v: Value| {
            let mut c = id_jag_claims(&ts, &client.0);
            c[k] = v;
            c
        };
        let jag = |c: &Value| corp.mint(Some(ID_JAG_TYP), c);
        let (status, body) = redeem(&ts, &client, &jag(&with("resource", json!("https://other.example/mcp"))), &[]).await;
        refused(status, &body, "invalid_target");
        let (status, body) = redeem(&ts, &client, &jag(&with("scope", json!("mcp:read"))), &[("scope", "mcp:write")]).await;
        refused(status, &body, "invalid_scope");
        let stranger = issuer().await;
        for (what, assertion, why) in [
            ("forged", corp.mint_forged(Some(ID_JAG_TYP), &id_jag_claims(&ts, &client.0)), "signature"),
            ("untrusted", stranger.mint(Some(ID_JAG_TYP), &id_jag_claims(&ts, &client.0)), "not trusted"),
            ("another client", jag(&with("client_id", json!("someone-else"))), "another client"),
            ("plain typ", corp.mint(None, &id_jag_claims(&ts, &client.0)), "oauth-id-jag+jwt"),
            ("another audience", jag(&with("aud", json!(RESOURCE))), "another audience"),
            ("no jti", jag(&with("jti", Value::Null)), "jti"),
            ("expired", jag(&with("exp", json!(now() - 600))), "expired"),
        ] {
            let (status, body) = redeem(&ts, &client, &assertion, &[]).await;
            let d = refused(status, &body, "invalid_grant");
            assert!(d.contains(why), "{what}: {d}");
        }
        let once = jag(&id_jag_claims(&ts, &client.0));
        assert_eq!(redeem(&ts, &client, &once, &[]).await.0, 200);
        let (status, body) = redeem(&ts, &client, &once, &[]).await;
        assert!(refused(status, &body, "invalid_grant").contains("used before"));

        let public = ts.register_public_client(&[REDIRECT]).await;
        let (status, body) = token_request(&ts, &[
            ("grant_type", JWT_BEARER), ("client_id", &public),
            ("assertion", &jag(&id_jag_claims(&ts, &public))),
        ]).await;
        refused(status, &body, "unauthorized_client");
    }

    /// E3: with `users = existing`, the ID-JAG's sub must be a local username.
    async fn e3_existing_user_mapping(db) {
        let corp = issuer().await;
        let corp_issuer = corp.issuer.clone();
        let ts = TestServer::start(db, move |c| {
            c.trusted_issuers = vec![TrustedIssuer {
                name: "corp".into(),
                issuer: corp_issuer,
                jwks_uri: None,
                kind: TrustKind::IdJag(IdJagRule { users: UserMapping::Existing, scopes: Vec::new() }),
            }];
        })
        .await;
        ts.add_user().await;
        let client = id_jag_client(&ts).await;
        let mut c = id_jag_claims(&ts, &client.0);
        c["sub"] = json!(USER);
        let (status, body) = redeem(&ts, &client, &corp.mint(Some(ID_JAG_TYP), &c), &[]).await;
        assert_eq!(status, 200, "{body}");
        c["sub"] = json!("nobody");
        c["jti"] = json!("another");
        let (status, body) = redeem(&ts, &client, &corp.mint(Some(ID_JAG_TYP), &c), &[]).await;
        assert!(refused(status, &body, "invalid_grant").contains("no user"));
    }
}

/// A confidential client registered for the jwt-bearer grant: (id, secret).
async fn id_jag_client(ts: &TestServer) -> (String, String) {
    use mcpauth_authserver::AuthMethod;
    use mcpauth_authserver::admin::{self, NewClient};
    let mut c = NewClient::new(AuthMethod::SecretPost);
    c.grant_types = vec![JWT_BEARER.into()];
    let created = admin::add_client(ts.store(), c).await.unwrap();
    (
        created.info.client_id,
        created.client_secret.unwrap().expose().to_owned(),
    )
}

fn id_jag_claims(ts: &TestServer, client_id: &str) -> Value {
    json!({
        "sub": "U019488227",
        "aud": ts.issuer,
        "resource": RESOURCE,
        "client_id": client_id,
        "scope": "mcp:read",
        "jti": mcpauth_core::random_urlsafe(12).unwrap(),
        "iat": now(),
        "exp": now() + 300,
    })
}

async fn redeem(
    ts: &TestServer,
    client: &(String, String),
    assertion: &str,
    extra: &[(&str, &str)],
) -> (u16, Value) {
    let mut form = vec![
        ("grant_type", JWT_BEARER),
        ("assertion", assertion),
        ("client_id", client.0.as_str()),
        ("client_secret", client.1.as_str()),
    ];
    form.extend_from_slice(extra);
    token_request(ts, &form).await
}

/// E1-E3 interop: mcpauth-client's cross-app access (the ID token exchanged at the IdP for an
/// ID-JAG, RFC 8693; the ID-JAG redeemed here with the JWT bearer grant, RFC 7523) against this
/// server, with the test IdP doing the exchange.
#[tokio::test]
async fn e1_our_client_redeems_an_id_jag_from_a_test_idp() {
    use mcpauth_client::cross_app::CrossAppAccess;
    use mcpauth_client::grants::TokenEndpoint;
    use mcpauth_client::http::{HttpOptions, OAuthHttp};
    use mcpauth_client::store::{ClientRecord, RegistrationKind, SCHEMA_VERSION};
    use mcpauth_core::{Assertion, AuthorizationServerMetadata, ClientSecret, ScopeSet};

    let idp = issuer().await;
    // The database lives as long as the test (its directory goes with it).
    let db = Db::sqlite();
    let ts = start(&db, &issuer().await, &idp).await;
    // The MCP client is registered here under the id the IdP knows it by (Enterprise-Managed
    // Authorization §6.1: that mapping is set up outside the protocol).
    let mut c =
        mcpauth_authserver::admin::NewClient::new(mcpauth_authserver::AuthMethod::SecretBasic);
    c.client_id = Some(idp.client_id.clone());
    c.grant_types = vec![JWT_BEARER.into()];
    let created = mcpauth_authserver::admin::add_client(ts.store(), c)
        .await
        .unwrap();
    let secret = created.client_secret.unwrap();

    let id_token = idp.mint(
        None,
        &json!({"sub": "U7", "aud": idp.client_id, "iat": now(), "exp": now() + 300}),
    );
    let http = OAuthHttp::new(HttpOptions {
        allow_insecure_http: true,
        ..Default::default()
    })
    .unwrap();
    let meta: AuthorizationServerMetadata =
        http_json(&ts.url("/.well-known/oauth-authorization-server")).await;
    let scope = ScopeSet::parse("mcp:read");
    let xaa = CrossAppAccess {
        idp_issuer: idp.issuer.clone(),
        idp_token_endpoint: format!("{}/token", idp.issuer),
        id_token: Assertion::new(id_token),
        idp_client_id: idp.client_id.clone(),
        idp_client_secret: Some(ClientSecret::new(idp.client_secret.clone())),
    };
    let id_jag = xaa
        .id_jag(&http, &meta, Some(RESOURCE), Some(&scope))
        .await
        .unwrap();
    let client = ClientRecord {
        schema: SCHEMA_VERSION,
        issuer: meta.issuer.clone(),
        client_id: idp.client_id.clone(),
        client_secret: Some(ClientSecret::new(secret.expose())),
        token_endpoint_auth_method: "client_secret_basic".into(),
        redirect_uris: Vec::new(),
        kind: RegistrationKind::PreRegistered,
        secret_expires_at: None,
        updated_at: 0,
    };
    let endpoint = TokenEndpoint {
        http: &http,
        metadata: &meta,
        client: &client,
        signing_key: None,
        dpop: None,
    };
    let tokens = endpoint
        .jwt_bearer(&id_jag, Some(&scope), Some(RESOURCE))
        .await
        .unwrap();
    assert!(tokens.refresh_token.is_none());
    let at = claims(tokens.access_token.expose());
    assert_eq!(
        (at["aud"].as_str(), at["scope"].as_str()),
        (Some(RESOURCE), Some("mcp:read"))
    );
    assert_eq!(at["client_id"], idp.client_id);
    // The same ID-JAG again: its jti was used.
    let again = endpoint
        .jwt_bearer(&id_jag, Some(&scope), Some(RESOURCE))
        .await
        .unwrap_err();
    assert!(again.to_string().contains("invalid_grant"), "{again}");
}

async fn http_json<T: serde::de::DeserializeOwned>(url: &str) -> T {
    http().get(url).send().await.unwrap().json().await.unwrap()
}
