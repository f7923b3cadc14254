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
        let rs = a.add_secret_client().await;
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
