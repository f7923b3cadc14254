//! Metadata (RFC 8414, OpenID Discovery; MCP SPEC A2, A4, A5, A12) and the JWKS.

use mcpauth_core::AuthorizationServerMetadata;

use crate::support::*;

async fn get_json(url: &str) -> (u16, serde_json::Value) {
    let resp = http().get(url).send().await.unwrap();
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or_default(),
    )
}

both_backends! {
    /// A2, A4, A5, A12: both documents at the root, with S256, iss support, CIMD support and
    /// every endpoint; the JWKS has public keys only; CORS is open on metadata.
    async fn a2_a4_a5_metadata_and_jwks(db) {
        let ts = TestServer::start(db, |_| {}).await;
        for path in ["/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"] {
            let body = http().get(ts.url(path)).send().await.unwrap().bytes().await.unwrap();
            let m = AuthorizationServerMetadata::from_json_for_issuer(&body, &ts.issuer).unwrap();
            assert!(m.supports_s256());
            assert_eq!(m.code_challenge_methods_supported, Some(vec!["S256".into()]));
            assert!(m.iss_parameter_supported());
            assert!(m.supports_client_id_metadata_documents());
            assert!(m.supports_auth_method("private_key_jwt"));
            assert!(m.supports_auth_method("client_secret_basic"));
            assert!(m.supports_auth_method("none"));
            assert_eq!(m.token_endpoint, Some(ts.url("/token")));
            assert_eq!(m.registration_endpoint, Some(ts.url("/register")));
            assert_eq!(m.revocation_endpoint, Some(ts.url("/revoke")));
            assert_eq!(m.introspection_endpoint, Some(ts.url("/introspect")));
            assert_eq!(m.jwks_uri, Some(ts.url("/jwks")));
            assert!(m.token_endpoint_auth_signing_alg_values_supported.unwrap().contains(&"ES256".into()));
            assert!(m.grant_types_supported.unwrap().contains(&"client_credentials".into()));
        }
        let resp = http().get(ts.url("/.well-known/oauth-authorization-server"))
            .header("origin", "https://app.example").send().await.unwrap();
        assert_eq!(resp.headers()["access-control-allow-origin"], "*");
        let (s, jwks) = get_json(&ts.url("/jwks")).await;
        assert_eq!(s, 200);
        let k = &jwks["keys"][0];
        assert_eq!((k["kty"].as_str(), k["alg"].as_str()), (Some("EC"), Some("ES256")));
        assert!(k.get("d").is_none());
        assert_eq!(get_json(&ts.url("/healthz")).await.0, 200);
    }

    /// RFC 8414 §3.1: an issuer with a path serves path-inserted metadata (and OpenID's
    /// path-appended form), not the root one; endpoints live below the path.
    async fn a2_metadata_is_path_aware(db) {
        let ts = TestServer::start(db, |c| c.issuer.push_str("/tenant1")).await;
        let origin = ts.issuer.trim_end_matches("/tenant1").to_owned();
        for path in [
            "/.well-known/oauth-authorization-server/tenant1",
            "/.well-known/openid-configuration/tenant1",
            "/tenant1/.well-known/openid-configuration",
        ] {
            let (s, m) = get_json(&format!("{origin}{path}")).await;
            assert_eq!(s, 200, "{path}");
            assert_eq!(m["issuer"], ts.issuer);
            assert_eq!(m["token_endpoint"], format!("{}/token", ts.issuer));
        }
        assert_eq!(get_json(&format!("{origin}/.well-known/oauth-authorization-server")).await.0, 404);
        assert_eq!(get_json(&ts.url("/jwks")).await.0, 200);
    }

    /// EdDSA signing as an option; a rotated key set keeps the previous key published.
    async fn eddsa_signing_and_key_rotation(db) {
        let ts = TestServer::start(db, |c| c.signing_alg = mcpauth_authserver::SigningAlg::EdDsa).await;
        let rs = ts.add_resource_server(&[RESOURCE]).await;
        let (_, t) = token_request(&ts, &[
            ("grant_type", "client_credentials"), ("client_id", &rs.0), ("client_secret", &rs.1),
        ]).await;
        let at = t["access_token"].as_str().unwrap().to_owned();
        assert_eq!(jwt_header(&at)["alg"], "EdDSA");
        mcpauth_authserver::admin::rotate_keys(ts.store(), mcpauth_authserver::SigningAlg::Es256)
            .await.unwrap();
        ts.server.reload_keys().await.unwrap();
        let (_, jwks) = get_json(&ts.url("/jwks")).await;
        assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
        assert_eq!(introspect(&ts, &rs, &at).await["active"], true, "old key still verifies");
        let (_, t) = token_request(&ts, &[
            ("grant_type", "client_credentials"), ("client_id", &rs.0), ("client_secret", &rs.1),
        ]).await;
        assert_eq!(jwt_header(t["access_token"].as_str().unwrap())["alg"], "ES256");
    }
}
