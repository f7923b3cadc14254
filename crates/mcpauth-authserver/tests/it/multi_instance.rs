//! Two server instances on one database (the PostgreSQL deployment; SQLite files work too).

use std::time::Duration;

use crate::support::*;

both_backends! {
    /// A code issued by one instance is redeemed at the other, and a refresh-token reuse at one
    /// instance is detected although the rotation happened at the other.
    async fn two_instances_share_codes_and_detect_refresh_reuse(db) {
        let a = TestServer::start(db, |c| c.refresh_grace = Duration::ZERO).await;
        // One issuer for both, as behind a load balancer; `b` is reached at its own address.
        let issuer = a.issuer.clone();
        let b = TestServer::start(db, |c| {
            c.refresh_grace = Duration::ZERO;
            c.issuer = issuer;
        })
        .await;
        a.add_user().await;
        let client_id = a.register_public_client(&[REDIRECT]).await;
        let auth = authorization(&a, &client_id, REDIRECT, &[]);
        let (resp, _) = browser_flow(&a, &auth.url).await;
        let code = location_params(&resp)["code"].clone();
        let (status, t) = token_request(&b, &[
            ("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", REDIRECT),
            ("code_verifier", &auth.verifier), ("client_id", &client_id),
        ]).await;
        assert_eq!(status, 200, "{t}");
        // Both instances sign with the same key.
        let rs = a.add_resource_server(&[RESOURCE]).await;
        assert_eq!(introspect(&a, &rs, t["access_token"].as_str().unwrap()).await["active"], true);
        let rt1 = t["refresh_token"].as_str().unwrap();
        let (status, t2) = token_request(&a, &[
            ("grant_type", "refresh_token"), ("client_id", &client_id), ("refresh_token", rt1),
        ]).await;
        assert_eq!(status, 200);
        let (status, body) = token_request(&b, &[
            ("grant_type", "refresh_token"), ("client_id", &client_id), ("refresh_token", rt1),
        ]).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));
        let (status, _) = token_request(&a, &[
            ("grant_type", "refresh_token"), ("client_id", &client_id),
            ("refresh_token", t2["refresh_token"].as_str().unwrap()),
        ]).await;
        assert_eq!(status, 400, "the family is revoked on both instances");
    }
}

/// Waits (up to 10 s, five times the sync interval) for `server` to know `jti` is revoked.
async fn sees_revoked(server: &TestServer, jti: &str) -> bool {
    for _ in 0..100 {
        if server.server.access_token_revoked(jti) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

async fn revoke(ts: &TestServer, form: &[(&str, &str)], basic: Option<&(String, String)>) {
    let mut req = http().post(ts.url("/revoke")).form(form);
    if let Some((id, secret)) = basic {
        req = req.basic_auth(id, Some(secret));
    }
    assert_eq!(req.send().await.unwrap().status(), 200);
}

both_backends! {
    /// Security finding 1 (RFC 7009 §2): the in-process revocation check used by the gateway's
    /// embedded verifier knows a revocation at once on the instance that made it, and on the
    /// other instances of a shared database within the sync interval.
    async fn sec1_revocations_reach_every_instance_in_memory(db) {
        let a = TestServer::start(db, |_| {}).await;
        let issuer = a.issuer.clone();
        let b = TestServer::start(db, |c| c.issuer = issuer).await;
        a.add_user().await;

        // A grant revoked through its refresh token (what `mcpauth logout` does).
        let client_id = a.register_public_client(&[REDIRECT]).await;
        let t = code_flow_tokens(&a, &client_id).await;
        let jti = claims(t["access_token"].as_str().unwrap())["jti"].as_str().unwrap().to_owned();
        assert!(!a.server.access_token_revoked(&jti));
        assert!(!b.server.access_token_revoked(&jti));
        revoke(&a, &[("token", t["refresh_token"].as_str().unwrap()), ("client_id", &client_id)], None).await;
        assert!(a.server.access_token_revoked(&jti), "the revoking instance knows at once");
        assert!(sees_revoked(&b, &jti).await, "the other instance learns it from the database");

        // One access token revoked by itself, at the other instance.
        let robot = a.add_secret_client().await;
        let (status, cc) = token_request(&b, &[
            ("grant_type", "client_credentials"), ("client_id", &robot.0),
            ("client_secret", &robot.1), ("resource", RESOURCE),
        ]).await;
        assert_eq!(status, 200, "{cc}");
        let at = cc["access_token"].as_str().unwrap();
        let jti = claims(at)["jti"].as_str().unwrap().to_owned();
        assert!(!a.server.access_token_revoked(&jti));
        revoke(&b, &[("token", at), ("token_type_hint", "access_token")], Some(&robot)).await;
        assert!(b.server.access_token_revoked(&jti));
        assert!(sees_revoked(&a, &jti).await);

        // A server started after the revocations knows them from the start.
        let issuer = a.issuer.clone();
        let c = TestServer::start(db, |c| c.issuer = issuer).await;
        assert!(c.server.access_token_revoked(&jti));
    }
}
