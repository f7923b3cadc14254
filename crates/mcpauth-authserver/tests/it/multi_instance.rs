//! Two server instances on one database (the PostgreSQL deployment; SQLite files work too),
//! reached at their own addresses or behind one URL ([`Balanced`], a round-robin proxy).

use std::time::Duration;

use mcpauth_authserver::admin::{self, NewClient};
use mcpauth_authserver::{AuthMethod, SigningAlg};
use mcpauth_core::dpop::DpopKey;

use crate::support::*;

/// A client-credentials token request of `client` at `ts`, with the DPoP `proof` if any.
async fn client_credentials(
    ts: &TestServer,
    client: &(String, String),
    proof: Option<&str>,
) -> (u16, serde_json::Value) {
    let headers: Vec<(&str, &str)> = proof.map(|p| ("dpop", p)).into_iter().collect();
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", client.0.as_str()),
        ("client_secret", client.1.as_str()),
        ("resource", RESOURCE),
    ];
    token_request_with(ts, &form, &headers).await
}

/// The `kid` in a JWT's header.
fn kid(jwt: &str) -> String {
    jsonwebtoken::decode_header(jwt).unwrap().kid.unwrap()
}

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

both_backends! {
    /// Issue 17 (several instances behind one URL): the browser flow moves between instances
    /// at every step (login page, login form, consent form), so sessions and pending requests
    /// are shared; the code and the refresh tokens work at whichever instance gets them, and a
    /// reused refresh token is detected there.
    async fn lb1_a_code_flow_across_instances(db) {
        let lb = Balanced::start(db, |c| c.refresh_grace = Duration::ZERO).await;
        let ts = &lb.front;
        ts.add_user().await;
        let client_id = ts.register_public_client(&[REDIRECT]).await;
        let body = code_flow_tokens(ts, &client_id).await;
        let refresh = |token: String| {
            let client_id = client_id.clone();
            async move {
                token_request(ts, &[
                    ("grant_type", "refresh_token"), ("client_id", &client_id),
                    ("refresh_token", &token),
                ]).await
            }
        };
        let first = body["refresh_token"].as_str().unwrap().to_owned();
        let (status, next) = refresh(first.clone()).await;
        assert_eq!(status, 200, "{next}");
        let (status, again) = refresh(next["refresh_token"].as_str().unwrap().to_owned()).await;
        assert_eq!(status, 200, "{again}");
        let (status, reused) = refresh(first).await;
        assert_eq!((status, reused["error"].as_str()), (400, Some("invalid_grant")), "{reused}");
        let hits = lb.hits();
        assert!(hits.iter().all(|h| *h >= 3), "both instances served the flow: {hits:?}");
    }

    /// Issue 17: a key rotation on the shared database (`mcpauth keys rotate`) reaches every
    /// instance at its periodic reload (run here at once): both publish the new key and sign
    /// with it.
    async fn lb2_key_rotation_reaches_every_instance(db) {
        let lb = Balanced::start(db, |_| {}).await;
        let client = lb.front.add_secret_client().await;
        let (_, before) = client_credentials(&lb.front, &client, None).await;
        let old = kid(before["access_token"].as_str().unwrap());
        let rotated = admin::rotate_keys(lb.front.store(), SigningAlg::Es256).await.unwrap();
        assert_ne!(rotated.kid, old);
        for i in &lb.instances {
            i.server.reload_keys().await.unwrap();
        }
        for i in &lb.instances {
            let jwks: serde_json::Value =
                http().get(i.url("/jwks")).send().await.unwrap().json().await.unwrap();
            let kids: Vec<&str> =
                jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
            assert!(kids.contains(&rotated.kid.as_str()) && kids.contains(&old.as_str()), "{kids:?}");
            let (status, t) = client_credentials(i, &client, None).await;
            assert_eq!(status, 200, "{t}");
            assert_eq!(kid(t["access_token"].as_str().unwrap()), rotated.kid);
        }
    }

    /// Issue 17, RFC 7523 §3 and RFC 9449 §11.1: a private_key_jwt assertion or a DPoP proof
    /// used at one instance is refused at the other (their `jti` caches are in the database).
    async fn lb3_assertion_and_proof_replays_are_refused_across_instances(db) {
        let lb = Balanced::start(db, |_| {}).await;
        let (a, b) = (&lb.instances[0], &lb.instances[1]);
        let (pkcs8, jwk) = ec_key("k1");
        let mut c = NewClient::new(AuthMethod::PrivateKeyJwt);
        c.client_id = Some("jwt-robot".into());
        c.jwks = Some(serde_json::json!({"keys": [jwk]}));
        admin::add_client(a.store(), c).await.unwrap();
        let assertion = assertion(&pkcs8, "k1", "jwt-robot", &lb.front.issuer, "once");
        let form = [
            ("grant_type", "client_credentials"),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ("client_assertion", assertion.as_str()),
        ];
        let (status, body) = token_request(a, &form).await;
        assert_eq!(status, 200, "{body}");
        let (status, body) = token_request(b, &form).await;
        assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")), "{body}");

        let client = lb.front.add_secret_client().await;
        let key = DpopKey::generate().unwrap();
        let proof = key.proof("POST", &lb.front.url("/token"), None, None).unwrap();
        let (status, body) = client_credentials(a, &client, Some(&proof)).await;
        assert_eq!((status, body["token_type"].as_str()), (200, Some("DPoP")), "{body}");
        let (status, body) = client_credentials(b, &client, Some(&proof)).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_dpop_proof")), "{body}");
    }
}
