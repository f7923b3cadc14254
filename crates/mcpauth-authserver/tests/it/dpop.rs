//! DPoP at the authorization server (RFC 9449 §5-§6, SPEC D6): metadata, proofs at /token for
//! every grant, `cnf.jkt` in access tokens and introspection, `token_type: DPoP`, public clients'
//! grants bound to the key, replayed and mismatched proofs refused. Proofs are made with
//! mcpauth-core's `DpopKey`, as the client does.

use mcpauth_core::dpop::DpopKey;

use crate::support::*;

async fn refresh_with(
    ts: &TestServer,
    client_id: &str,
    token: &str,
    proof: Option<&str>,
) -> (u16, serde_json::Value) {
    let headers: Vec<(&str, &str)> = proof.map(|p| ("dpop", p)).into_iter().collect();
    token_request_with(
        ts,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", client_id),
            ("refresh_token", token),
        ],
        &headers,
    )
    .await
}

fn proof(key: &DpopKey, ts: &TestServer) -> String {
    key.proof("POST", &ts.url("/token"), None, None).unwrap()
}

fn refused_proof(status: u16, body: &serde_json::Value) -> String {
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_dpop_proof", "{body}");
    body["error_description"].as_str().unwrap().to_owned()
}

/// Client credentials with an optional proof.
async fn cc(
    ts: &TestServer,
    client: &(String, String),
    proof: Option<&str>,
) -> (u16, serde_json::Value) {
    let headers: Vec<(&str, &str)> = proof.map(|p| ("dpop", p)).into_iter().collect();
    token_request_with(
        ts,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &client.0),
            ("client_secret", &client.1),
            ("resource", RESOURCE),
        ],
        &headers,
    )
    .await
}

both_backends! {
    /// D6: the metadata lists asymmetric proof algorithms only.
    async fn d6_metadata_advertises_asymmetric_proof_algorithms(db) {
        let ts = TestServer::start(db, |_| {}).await;
        let meta: serde_json::Value = http()
            .get(ts.url("/.well-known/oauth-authorization-server"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let algs: Vec<&str> = meta["dpop_signing_alg_values_supported"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(algs.contains(&"ES256"), "{algs:?}");
        assert!(!algs.iter().any(|a| *a == "none" || a.starts_with("HS")), "{algs:?}");
    }

    /// D6: a public client's code exchange with a proof gets a DPoP-bound access token, and its
    /// grant is bound to the key: a refresh needs a proof by that key (none, or another key, is
    /// refused without spending the refresh token).
    async fn d6_a_public_clients_grant_is_bound_to_its_key(db) {
        let ts = TestServer::start(db, |_| {}).await;
        ts.add_user().await;
        let client_id = ts.register_public_client(&[REDIRECT]).await;
        let key = DpopKey::generate().unwrap();
        let p = proof(&key, &ts);
        let tokens = code_flow_tokens_with(&ts, &client_id, &[("dpop", &p)]).await;
        assert_eq!(tokens["token_type"], "DPoP", "{tokens}");
        let at = claims(tokens["access_token"].as_str().unwrap());
        assert_eq!(at["cnf"]["jkt"], key.thumbprint());
        let rt = tokens["refresh_token"].as_str().unwrap();

        let (status, body) = refresh_with(&ts, &client_id, rt, None).await;
        assert!(refused_proof(status, &body).contains("DPoP-bound"));
        let other = DpopKey::generate().unwrap();
        let (status, body) = refresh_with(&ts, &client_id, rt, Some(&proof(&other, &ts))).await;
        assert!(refused_proof(status, &body).contains("another DPoP key"));
        let (status, body) = refresh_with(&ts, &client_id, rt, Some(&proof(&key, &ts))).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["token_type"], "DPoP");
        assert_eq!(claims(body["access_token"].as_str().unwrap())["cnf"]["jkt"], key.thumbprint());
        // The successor is bound too (the binding is the grant's).
        let rt2 = body["refresh_token"].as_str().unwrap();
        let (status, body) = refresh_with(&ts, &client_id, rt2, None).await;
        refused_proof(status, &body);
    }

    /// RFC 9449 §11.1: a proof is used once, at any instance (the database remembers it).
    async fn d6_a_replayed_proof_is_refused(db) {
        let ts = TestServer::start(db, |_| {}).await;
        let client = ts.add_secret_client().await;
        let key = DpopKey::generate().unwrap();
        let p = proof(&key, &ts);
        let (status, body) = cc(&ts, &client, Some(&p)).await;
        assert_eq!(status, 200, "{body}");
        let (status, body) = cc(&ts, &client, Some(&p)).await;
        assert!(refused_proof(status, &body).contains("already used"));
    }

    /// D6 with RFC 9449 §4.3: a proof for another URI or method, stale, or two of them.
    async fn d6_proofs_for_another_request_are_refused(db) {
        let ts = TestServer::start(db, |_| {}).await;
        let client = ts.add_secret_client().await;
        let key = DpopKey::generate().unwrap();
        let now = mcpauth_core::dpop::unverified_iat(&proof(&key, &ts)).unwrap();
        for bad in [
            key.proof("POST", &ts.url("/authorize"), None, None).unwrap(),
            key.proof("GET", &ts.url("/token"), None, None).unwrap(),
            key.proof_at("POST", &ts.url("/token"), None, None, now - 3600).unwrap(),
            "garbage".to_owned(),
        ] {
            let (status, body) = cc(&ts, &client, Some(&bad)).await;
            refused_proof(status, &body);
        }
        let headers = [("dpop", proof(&key, &ts)), ("dpop", proof(&key, &ts))];
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let (status, body) = token_request_with(
            &ts,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &client.0),
                ("client_secret", &client.1),
                ("resource", RESOURCE),
            ],
            &headers,
        )
        .await;
        assert!(refused_proof(status, &body).contains("more than one"));
    }

    /// D6: client credentials with a proof give a bound token whose introspection names the key
    /// (RFC 9449 §6.2); without a proof the token is a bearer token, as before.
    async fn d6_introspection_returns_the_binding(db) {
        let ts = TestServer::start(db, |_| {}).await;
        let client = ts.add_secret_client().await;
        let rs = ts.add_resource_server(&[RESOURCE]).await;
        let key = DpopKey::generate().unwrap();
        let (status, body) = cc(&ts, &client, Some(&proof(&key, &ts))).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["token_type"], "DPoP");
        let info = introspect(&ts, &rs, body["access_token"].as_str().unwrap()).await;
        assert_eq!(info["active"], true, "{info}");
        assert_eq!(info["token_type"], "DPoP");
        assert_eq!(info["cnf"]["jkt"], key.thumbprint());
        let (status, body) = cc(&ts, &client, None).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["token_type"], "Bearer");
        let info = introspect(&ts, &rs, body["access_token"].as_str().unwrap()).await;
        assert!(info.get("cnf").is_none(), "{info}");
    }
}
