//! The live grants, for administrators (`admin::list_grants`, `admin::revoke_grant`; issue
//! "connected apps"): one per refresh-token family; revoking one ends its refresh and access
//! tokens (RFC 7009 §2) and the remembered consent, on SQLite and PostgreSQL.

use mcpauth_authserver::{AuthServerError, admin};

use crate::support::{
    CONSENT_AGAIN, Db, REDIRECT, RESOURCE, TestServer, USER, authorization, both_backends, claims,
    code_flow_tokens, introspect, login_to_consent, token_request,
};

both_backends! {
    /// A code flow makes one grant, listed with its user, client, scope and resource; a
    /// refresh keeps it one grant (newer `last_used_at`); revoking it ends our refresh, the
    /// access token and the consent, and it is listed no more.
    async fn g1_grants_are_listed_and_revoked(db) {
        let ts = TestServer::start(db, |_| {}).await;
        ts.add_user().await;
        let client_id = ts.register_public_client(&[REDIRECT]).await;
        assert!(admin::list_grants(ts.store(), None).await.unwrap().is_empty());
        let body = code_flow_tokens(&ts, &client_id).await;
        let grants = admin::list_grants(ts.store(), Some(USER)).await.unwrap();
        assert_eq!(grants.len(), 1, "{grants:?}");
        let g = &grants[0];
        assert_eq!(g.username.as_deref(), Some(USER));
        assert_eq!(g.client_id, client_id);
        assert_eq!(g.client_name.as_deref(), Some("Test Client"));
        assert_eq!(g.scope, "mcp:read mcp:write");
        assert_eq!(g.user_id, claims(body["access_token"].as_str().unwrap())["sub"]);
        assert!(g.expires_at > g.granted_at);

        let (status, next) = token_request(
            &ts,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", body["refresh_token"].as_str().unwrap()),
                ("client_id", &client_id),
                ("scope", "mcp:read"),
            ],
        )
        .await;
        assert_eq!(status, 200, "{next}");
        let grants = admin::list_grants(ts.store(), None).await.unwrap();
        assert_eq!(grants.len(), 1, "a refresh is the same grant: {grants:?}");
        // RFC 6749 §6: a narrower refresh narrows the access token, not the grant.
        assert_eq!(grants[0].scope, "mcp:read mcp:write");
        assert!(grants[0].last_used_at >= grants[0].granted_at);

        let revoked = admin::revoke_grant(ts.store(), &grants[0].id).await.unwrap();
        assert_eq!(revoked.id, grants[0].id);
        assert!(admin::list_grants(ts.store(), None).await.unwrap().is_empty());
        let (status, err) = token_request(
            &ts,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", next["refresh_token"].as_str().unwrap()),
                ("client_id", &client_id),
            ],
        )
        .await;
        assert_eq!((status, err["error"].as_str()), (400, Some("invalid_grant")), "{err}");
        let jti = claims(next["access_token"].as_str().unwrap())["jti"].as_str().unwrap().to_owned();
        assert!(ts.server.access_token_revoked(&jti), "the access token goes too");

        // The consent went too: signing in again, the consent page asks as the first time
        // (before the revocation it said the client was allowed before).
        let a = authorization(&ts, &client_id, REDIRECT, &[]);
        let (_, html) = login_to_consent(&ts, &a.url).await;
        assert!(html.contains("name=\"decision\""), "{html}");
        assert!(!html.contains(CONSENT_AGAIN), "the consent was forgotten: {html}");
    }
}

/// Unknown or already revoked grants and unknown users are clear errors, and change nothing.
#[tokio::test]
async fn g2_unknown_grants_and_users_are_not_found() {
    let db = Db::sqlite();
    let ts = TestServer::start(&db, |_| {}).await;
    ts.add_user().await;
    let client_id = ts.register_public_client(&[REDIRECT]).await;
    code_flow_tokens(&ts, &client_id).await;
    let err = admin::revoke_grant(ts.store(), "no-such-grant")
        .await
        .unwrap_err();
    assert!(
        matches!(err, AuthServerError::NotFound { what: "grant", .. }),
        "{err}"
    );
    let err = admin::list_grants(ts.store(), Some("nobody"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, AuthServerError::NotFound { what: "user", .. }),
        "{err}"
    );
    let id = admin::list_grants(ts.store(), None).await.unwrap()[0]
        .id
        .clone();
    admin::revoke_grant(ts.store(), &id).await.unwrap();
    let again = admin::revoke_grant(ts.store(), &id).await.unwrap_err();
    assert!(matches!(again, AuthServerError::NotFound { .. }), "{again}");
}

both_backends! {
    /// Removing a user or a client ends what they hold at once: the refresh tokens and the
    /// access tokens of their grants (RFC 7009 §2; the gateway refuses them, introspection
    /// says inactive), not only the refresh tokens.
    async fn g3_removing_a_user_or_client_revokes_its_access_tokens(db) {
        let ts = TestServer::start(db, |_| {}).await;
        ts.add_user().await;
        let rs = ts.add_resource_server(&[RESOURCE]).await;
        let client_id = ts.register_public_client(&[REDIRECT]).await;
        let jti = |body: &serde_json::Value| {
            claims(body["access_token"].as_str().unwrap())["jti"].as_str().unwrap().to_owned()
        };
        let body = code_flow_tokens(&ts, &client_id).await;
        admin::remove_user(ts.store(), USER).await.unwrap();
        assert!(ts.server.access_token_revoked(&jti(&body)), "the user's access token");
        let token = body["access_token"].as_str().unwrap();
        assert_eq!(introspect(&ts, &rs, token).await["active"], false);

        ts.add_user().await;
        let body = code_flow_tokens(&ts, &client_id).await;
        admin::remove_client(ts.store(), &client_id).await.unwrap();
        assert!(ts.server.access_token_revoked(&jti(&body)), "the client's access token");
        let token = body["access_token"].as_str().unwrap();
        assert_eq!(introspect(&ts, &rs, token).await["active"], false);
    }
}
