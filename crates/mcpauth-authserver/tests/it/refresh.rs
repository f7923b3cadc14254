//! Refresh-token rotation, reuse detection and the grace window (MCP SPEC A6, OAuth 2.1 §4.3.1).

use std::time::Duration;

use crate::support::*;

async fn refresh(ts: &TestServer, client_id: &str, token: &str) -> (u16, serde_json::Value) {
    token_request(
        ts,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", client_id),
            ("refresh_token", token),
        ],
    )
    .await
}

both_backends! {
    /// A6: every refresh rotates; reusing a spent token outside the grace window revokes the
    /// whole family, the newest token included.
    async fn a6_refresh_rotation_and_reuse_revokes_the_family(db) {
        let ts = TestServer::start(db, |c| c.refresh_grace = Duration::ZERO).await;
        ts.add_user().await;
        let client_id = ts.register_public_client(&[REDIRECT]).await;
        let first = code_flow_tokens(&ts, &client_id).await;
        let rt1 = first["refresh_token"].as_str().unwrap();
        let (status, second) = refresh(&ts, &client_id, rt1).await;
        assert_eq!(status, 200, "{second}");
        let rt2 = second["refresh_token"].as_str().unwrap();
        assert_ne!(rt1, rt2, "rotated");
        assert_eq!(claims(second["access_token"].as_str().unwrap())["aud"], RESOURCE);
        let (status, third) = refresh(&ts, &client_id, rt2).await;
        assert_eq!(status, 200);
        let rt3 = third["refresh_token"].as_str().unwrap();
        // Reuse of rt1: refused, and rt3 dies with the family.
        let (status, body) = refresh(&ts, &client_id, rt1).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));
        let (status, body) = refresh(&ts, &client_id, rt3).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
    }

    /// A6: within the grace window a spent token returns the same successor (two concurrent
    /// refreshes of one token both succeed), and the family stays valid.
    async fn a6_reuse_inside_the_grace_window_returns_the_same_successor(db) {
        let ts = TestServer::start(db, |c| c.refresh_grace = Duration::from_secs(60)).await;
        ts.add_user().await;
        let client_id = ts.register_public_client(&[REDIRECT]).await;
        let first = code_flow_tokens(&ts, &client_id).await;
        let rt1 = first["refresh_token"].as_str().unwrap();
        let (a, b) = tokio::join!(refresh(&ts, &client_id, rt1), refresh(&ts, &client_id, rt1));
        assert_eq!((a.0, b.0), (200, 200), "{} {}", a.1, b.1);
        assert_eq!(a.1["refresh_token"], b.1["refresh_token"], "the same successor");
        let (status, again) = refresh(&ts, &client_id, rt1).await;
        assert_eq!(status, 200);
        assert_eq!(again["refresh_token"], a.1["refresh_token"]);
        let (status, next) = refresh(&ts, &client_id, a.1["refresh_token"].as_str().unwrap()).await;
        assert_eq!(status, 200, "{next}");
        // Once the successor is spent too, the old token is a plain reuse.
        let (status, _) = refresh(&ts, &client_id, rt1).await;
        assert_eq!(status, 400);
    }

    /// Security finding 6, A6 (OAuth 2.1 §4.3.1, RFC 9700 §4.14.2): the grace window is for
    /// the client that lost a response. A spent token presented by another client, even within
    /// the window and with the successor unused, is a reuse: refused, and the family revoked.
    async fn sec6_refresh_reuse_by_another_client_revokes_family_a6(db) {
        let ts = TestServer::start(db, |c| c.refresh_grace = Duration::from_secs(60)).await;
        ts.add_user().await;
        let rs = ts.add_resource_server(&[RESOURCE]).await;
        let client_id = ts.register_public_client(&[REDIRECT]).await;
        let other = ts.register_public_client(&[REDIRECT]).await;
        let first = code_flow_tokens(&ts, &client_id).await;
        let rt0 = first["refresh_token"].as_str().unwrap();
        let (status, second) = refresh(&ts, &client_id, rt0).await;
        assert_eq!(status, 200, "{second}");
        let rt1 = second["refresh_token"].as_str().unwrap();
        let at1 = second["access_token"].as_str().unwrap();
        let (status, body) = refresh(&ts, &other, rt0).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
        assert!(body.get("refresh_token").is_none(), "{body}");
        let (status, body) = refresh(&ts, &client_id, rt1).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
        assert_eq!(introspect(&ts, &rs, at1).await["active"], false, "family revoked");
    }

    /// Security finding 6, A6 (OAuth 2.1 §4.3.1, RFC 9700 §4.14.2): once the successor has
    /// been rotated itself, presenting the first token again (even within the grace window)
    /// revokes the whole family: the newest refresh token and its access tokens die too.
    async fn sec6_refresh_reuse_after_successor_used_revokes_family_a6(db) {
        let ts = TestServer::start(db, |c| c.refresh_grace = Duration::from_secs(60)).await;
        ts.add_user().await;
        let rs = ts.add_resource_server(&[RESOURCE]).await;
        let client_id = ts.register_public_client(&[REDIRECT]).await;
        let first = code_flow_tokens(&ts, &client_id).await;
        let rt0 = first["refresh_token"].as_str().unwrap();
        let (status, second) = refresh(&ts, &client_id, rt0).await;
        assert_eq!(status, 200, "{second}");
        let rt1 = second["refresh_token"].as_str().unwrap();
        let (status, third) = refresh(&ts, &client_id, rt1).await;
        assert_eq!(status, 200, "{third}");
        let rt2 = third["refresh_token"].as_str().unwrap();
        let at2 = third["access_token"].as_str().unwrap();
        assert_eq!(introspect(&ts, &rs, at2).await["active"], true);
        let (status, body) = refresh(&ts, &client_id, rt0).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
        assert!(body.get("refresh_token").is_none(), "{body}");
        assert_eq!(introspect(&ts, &rs, at2).await["active"], false, "rt2's access token revoked");
        let (status, body) = refresh(&ts, &client_id, rt2).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "rt2 revoked: {body}");
    }

    /// Security finding 6, A6: the lost-response case. The same client presents the spent
    /// token within the grace window while its successor is unused: it gets that successor
    /// again with a new access token, and the family stays valid.
    async fn sec6_refresh_reuse_within_grace_with_successor_unused_gets_it_and_a_new_access_token_a6(db) {
        let ts = TestServer::start(db, |c| c.refresh_grace = Duration::from_secs(60)).await;
        ts.add_user().await;
        let rs = ts.add_resource_server(&[RESOURCE]).await;
        let client_id = ts.register_public_client(&[REDIRECT]).await;
        let first = code_flow_tokens(&ts, &client_id).await;
        let rt0 = first["refresh_token"].as_str().unwrap();
        let (status, lost) = refresh(&ts, &client_id, rt0).await;
        assert_eq!(status, 200, "{lost}");
        let (status, retry) = refresh(&ts, &client_id, rt0).await;
        assert_eq!(status, 200, "{retry}");
        assert_eq!(retry["refresh_token"], lost["refresh_token"], "the same successor");
        assert_ne!(retry["access_token"], lost["access_token"], "a new access token");
        for at in [&lost["access_token"], &retry["access_token"]] {
            assert_eq!(introspect(&ts, &rs, at.as_str().unwrap()).await["active"], true);
        }
        let (status, next) = refresh(&ts, &client_id, retry["refresh_token"].as_str().unwrap()).await;
        assert_eq!(status, 200, "{next}");
    }

    /// A6: a refresh token presented by another client is refused.
    async fn a6_wrong_client_on_refresh_is_refused(db) {
        let ts = TestServer::start(db, |_| {}).await;
        ts.add_user().await;
        let client_id = ts.register_public_client(&[REDIRECT]).await;
        let other = ts.register_public_client(&[REDIRECT]).await;
        let first = code_flow_tokens(&ts, &client_id).await;
        let rt = first["refresh_token"].as_str().unwrap();
        let (status, body) = refresh(&ts, &other, rt).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));
        // Scope may narrow but not widen.
        let (status, body) = token_request(&ts, &[
            ("grant_type", "refresh_token"), ("client_id", &client_id),
            ("refresh_token", rt), ("scope", "mcp:read admin"),
        ]).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_scope")));
        let (status, body) = token_request(&ts, &[
            ("grant_type", "refresh_token"), ("client_id", &client_id),
            ("refresh_token", rt), ("scope", "mcp:read"),
        ]).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["scope"], "mcp:read");
    }

    /// A6 under load: many concurrent refreshes of one token rotate it once. Within the grace
    /// window every one gets the same successor; without it exactly one succeeds.
    async fn a6_a_burst_of_refreshes_of_one_token_rotates_it_once(db) {
        for (grace, expect_ok) in [(60, 8), (0, 1)] {
            let ts = TestServer::start(db, |c| c.refresh_grace = Duration::from_secs(grace)).await;
            ts.add_user().await;
            let client_id = ts.register_public_client(&[REDIRECT]).await;
            let first = code_flow_tokens(&ts, &client_id).await;
            let rt = first["refresh_token"].as_str().unwrap();
            let mut burst = tokio::task::JoinSet::new();
            for _ in 0..8 {
                let request = http().post(ts.url("/token")).form(&[
                    ("grant_type", "refresh_token"), ("client_id", client_id.as_str()),
                    ("refresh_token", rt),
                ]);
                burst.spawn(async move {
                    let resp = request.send().await.unwrap();
                    (resp.status().as_u16(), resp.json::<serde_json::Value>().await.unwrap())
                });
            }
            let answers = burst.join_all().await;
            let ok: Vec<_> = answers.iter().filter(|(s, _)| *s == 200).collect();
            assert_eq!(ok.len(), expect_ok, "grace {grace}: {answers:?}");
            assert!(ok.iter().all(|(_, b)| b["refresh_token"] == ok[0].1["refresh_token"]));
        }
    }

    /// A refresh that fails (no token, an unknown one, another resource (RFC 8707 §2), a wider
    /// scope) says why and leaves the token unspent: the client can still refresh with it.
    async fn a6_a_refused_refresh_does_not_spend_the_token(db) {
        let ts = TestServer::start(db, |c| c.refresh_grace = Duration::ZERO).await;
        ts.add_user().await;
        let client_id = ts.register_public_client(&[REDIRECT]).await;
        let first = code_flow_tokens(&ts, &client_id).await;
        let rt = first["refresh_token"].as_str().unwrap();
        let (status, body) = token_request(&ts, &[
            ("grant_type", "refresh_token"), ("client_id", &client_id),
        ]).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_request")), "{body}");
        assert!(body["error_description"].as_str().unwrap().contains("refresh_token is required"));
        let (status, body) = refresh(&ts, &client_id, "not-a-token-we-issued").await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
        assert_eq!(body["error_description"], "unknown refresh token");
        let (status, body) = token_request(&ts, &[
            ("grant_type", "refresh_token"), ("client_id", &client_id),
            ("refresh_token", rt), ("resource", "http://127.0.0.1:9000/other"),
        ]).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_target")), "{body}");
        let (status, body) = token_request(&ts, &[
            ("grant_type", "refresh_token"), ("client_id", &client_id),
            ("refresh_token", rt), ("resource", RESOURCE), ("scope", "mcp:read admin"),
        ]).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_scope")), "{body}");
        let (status, body) = token_request(&ts, &[
            ("grant_type", "refresh_token"), ("client_id", &client_id),
            ("refresh_token", rt), ("resource", RESOURCE),
        ]).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(claims(body["access_token"].as_str().unwrap())["aud"], RESOURCE);
        assert_eq!(body["scope"], first["scope"]);
    }

    /// An expired refresh token is refused (and stays refused).
    async fn a6_an_expired_refresh_token_is_refused(db) {
        let ts = TestServer::start(db, |c| c.refresh_token_ttl = Duration::from_secs(1)).await;
        ts.add_user().await;
        let client_id = ts.register_public_client(&[REDIRECT]).await;
        let first = code_flow_tokens(&ts, &client_id).await;
        let rt = first["refresh_token"].as_str().unwrap();
        tokio::time::sleep(Duration::from_millis(2100)).await;
        for _ in 0..2 {
            let (status, body) = refresh(&ts, &client_id, rt).await;
            assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
            assert!(body["error_description"].as_str().unwrap().contains("expired"), "{body}");
        }
    }

    /// Refreshes of many tokens at once (committed together in batches): each gets its own
    /// successor, every successor works, and every old token is spent.
    async fn a6_concurrent_refreshes_of_many_tokens_each_rotate(db) {
        let ts = TestServer::start(db, |c| c.refresh_grace = Duration::ZERO).await;
        ts.add_user().await;
        // One client per token: consent is remembered per client, and the helper consents.
        let mut tokens = Vec::new();
        for _ in 0..12 {
            let client_id = ts.register_public_client(&[REDIRECT]).await;
            let t = code_flow_tokens(&ts, &client_id).await;
            tokens.push((client_id, t["refresh_token"].as_str().unwrap().to_owned()));
        }
        let burst = |tokens: Vec<(String, String)>| {
            let mut set = tokio::task::JoinSet::new();
            for (i, (client_id, rt)) in tokens.into_iter().enumerate() {
                let request = http().post(ts.url("/token")).form(&[
                    ("grant_type", "refresh_token"), ("client_id", client_id.as_str()),
                    ("refresh_token", rt.as_str()),
                ]);
                set.spawn(async move {
                    let resp = request.send().await.unwrap();
                    (i, resp.status().as_u16(), resp.json::<serde_json::Value>().await.unwrap())
                });
            }
            set.join_all()
        };
        let mut answers = burst(tokens.clone()).await;
        answers.sort_by_key(|(i, _, _)| *i);
        assert!(answers.iter().all(|(_, s, _)| *s == 200), "{answers:?}");
        let successors: Vec<(String, String)> = answers
            .iter()
            .zip(&tokens)
            .map(|((_, _, b), (c, _))| (c.clone(), b["refresh_token"].as_str().unwrap().to_owned()))
            .collect();
        let distinct: std::collections::HashSet<_> = successors.iter().map(|(_, t)| t).collect();
        assert_eq!(distinct.len(), successors.len());
        assert!(successors.iter().all(|(_, s)| tokens.iter().all(|(_, t)| t != s)));
        let again = burst(successors).await;
        assert!(again.iter().all(|(_, s, _)| *s == 200), "{again:?}");
        let reused = burst(tokens).await;
        assert!(
            reused.iter().all(|(_, s, b)| *s == 400 && b["error"] == "invalid_grant"),
            "{reused:?}"
        );
    }

    /// A client removed through the store is refused at once, although its record was cached
    /// by the token request before.
    async fn removing_a_client_takes_effect_at_once(db) {
        let ts = TestServer::start(db, |_| {}).await;
        let (id, secret) = ts.add_secret_client().await;
        let form = [
            ("grant_type", "client_credentials"), ("client_id", id.as_str()),
            ("client_secret", secret.as_str()),
        ];
        let (status, body) = token_request(&ts, &form).await;
        assert_eq!(status, 200, "{body}");
        mcpauth_authserver::admin::remove_client(ts.store(), &id).await.unwrap();
        let (status, body) = token_request(&ts, &form).await;
        assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")));
    }
}
