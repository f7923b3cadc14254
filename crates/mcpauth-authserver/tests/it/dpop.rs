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

/// A token request with `DPoP: proof` (when given): status, the `DPoP-Nonce` answered, body.
async fn token_with_nonce(
    ts: &TestServer,
    form: &[(&str, &str)],
    proof: Option<&str>,
) -> (u16, Option<String>, serde_json::Value) {
    let mut req = http().post(ts.url("/token")).form(form);
    if let Some(p) = proof {
        req = req.header("dpop", p);
    }
    let resp = req.send().await.unwrap();
    let nonce = resp
        .headers()
        .get("dpop-nonce")
        .map(|v| v.to_str().unwrap().to_owned());
    (resp.status().as_u16(), nonce, resp.json().await.unwrap())
}

fn cc_form(client: &(String, String)) -> [(&str, &str); 4] {
    [
        ("grant_type", "client_credentials"),
        ("client_id", &client.0),
        ("client_secret", &client.1),
        ("resource", RESOURCE),
    ]
}

/// The code of a logged-in authorization request with `extra` parameters, and its verifier.
async fn code_with(ts: &TestServer, client_id: &str, extra: &[(&str, &str)]) -> (String, String) {
    let a = authorization(ts, client_id, REDIRECT, extra);
    let (resp, _) = browser_flow(ts, &a.url).await;
    (location_params(&resp)["code"].clone(), a.verifier)
}

both_backends! {
    /// D7, RFC 9449 §8: with nonces on, a proof without the server's nonce, with a made-up one,
    /// one from another server or a stale one gets 400 use_dpop_nonce and a fresh DPoP-Nonce;
    /// a proof with it binds the token; requests without a proof are not affected.
    async fn d7_the_token_endpoint_requires_its_nonce(db) {
        let ts = TestServer::start(db, |c| c.dpop_nonces = true).await;
        let client = ts.add_secret_client().await;
        let key = DpopKey::generate().unwrap();
        let url = ts.url("/token");
        let (status, nonce, body) = token_with_nonce(&ts, &cc_form(&client), Some(&proof(&key, &ts))).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("use_dpop_nonce")), "{body}");
        let nonce = nonce.expect("a use_dpop_nonce answer carries DPoP-Nonce");
        let now = mcpauth_core::dpop::unix_now();
        let stale = ts.store().dpop_nonces().await.unwrap().current(now - 180);
        let foreign = mcpauth_core::dpop::NonceIssuer::random().unwrap().current(now);
        for bad in ["made-up", stale.as_str(), foreign.as_str()] {
            let p = key.proof("POST", &url, None, Some(bad)).unwrap();
            let (status, fresh, body) = token_with_nonce(&ts, &cc_form(&client), Some(&p)).await;
            assert_eq!((status, body["error"].as_str()), (400, Some("use_dpop_nonce")), "{bad}: {body}");
            assert!(fresh.is_some());
        }
        let p = key.proof("POST", &url, None, Some(&nonce)).unwrap();
        let (status, next, body) = token_with_nonce(&ts, &cc_form(&client), Some(&p)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["token_type"], "DPoP");
        assert_eq!(claims(body["access_token"].as_str().unwrap())["cnf"]["jkt"], key.thumbprint());
        assert!(next.is_some(), "every answer carries the current nonce (RFC 9449 §8.2)");
        // The proof was used: the same proof again is a replay even with a good nonce.
        let (status, _, body) = token_with_nonce(&ts, &cc_form(&client), Some(&p)).await;
        assert!(refused_proof(status, &body).contains("already used"));
        let (status, _, body) = token_with_nonce(&ts, &cc_form(&client), None).await;
        assert_eq!((status, body["token_type"].as_str()), (200, Some("Bearer")), "{body}");
    }

    /// D7: instances on one database accept each other's nonces (the key is in the database);
    /// without nonces configured, no DPoP-Nonce is sent and none is needed.
    async fn d7_instances_share_their_nonces(db) {
        let a = TestServer::start(db, |c| c.dpop_nonces = true).await;
        let issuer = a.issuer.clone();
        let b = TestServer::start(db, |c| {
            c.issuer = issuer;
            c.dpop_nonces = true;
        })
        .await;
        let client = a.add_secret_client().await;
        let key = DpopKey::generate().unwrap();
        let (_, nonce, _) = token_with_nonce(&a, &cc_form(&client), None).await;
        // htu is the issuer's token endpoint, which both instances serve.
        let p = key.proof("POST", &a.url("/token"), None, nonce.as_deref()).unwrap();
        let (status, _, body) = token_with_nonce(&b, &cc_form(&client), Some(&p)).await;
        assert_eq!(status, 200, "{body}");
        let plain = TestServer::start(db, |_| {}).await;
        let (status, nonce, body) = token_with_nonce(&plain, &cc_form(&client), Some(&proof(&key, &plain))).await;
        assert_eq!((status, nonce), (200, None), "{body}");
    }

    /// RFC 9449 §10: a code bound with dpop_jkt is exchanged only with a proof by that key; a
    /// refusal does not spend it, so its client can still use it. A malformed dpop_jkt is
    /// invalid_request at /authorize.
    async fn d6_dpop_jkt_binds_the_code_to_the_key(db) {
        let ts = TestServer::start(db, |_| {}).await;
        ts.add_user().await;
        let client_id = ts.register_public_client(&[REDIRECT]).await;
        let key = DpopKey::generate().unwrap();
        let (code, verifier) = code_with(&ts, &client_id, &[("dpop_jkt", key.thumbprint())]).await;
        let form = code_form(&client_id, &code, &verifier);
        let (status, body) = token_request(&ts, &form).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
        assert!(body["error_description"].as_str().unwrap().contains("dpop_jkt"), "{body}");
        let other = DpopKey::generate().unwrap();
        let (status, body) = token_request_with(&ts, &form, &[("dpop", &proof(&other, &ts))]).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
        let (status, body) = token_request_with(&ts, &form, &[("dpop", &proof(&key, &ts))]).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["token_type"], "DPoP");
        assert_eq!(claims(body["access_token"].as_str().unwrap())["cnf"]["jkt"], key.thumbprint());
        // The grant stays bound to that key for refreshes.
        let rt = body["refresh_token"].as_str().unwrap();
        let (status, body) = refresh_with(&ts, &client_id, rt, Some(&proof(&other, &ts))).await;
        refused_proof(status, &body);
        let (status, body) = refresh_with(&ts, &client_id, rt, Some(&proof(&key, &ts))).await;
        assert_eq!(status, 200, "{body}");

        let a = authorization(&ts, &client_id, REDIRECT, &[("dpop_jkt", "not-a-thumbprint")]);
        let resp = http().get(&a.url).send().await.unwrap();
        let params = location_params(&resp);
        assert_eq!(params["error"], "invalid_request", "{params:?}");
        assert!(params["error_description"].contains("dpop_jkt"), "{params:?}");
    }

    /// RFC 9449 §5.2: a client registered with dpop_bound_access_tokens gets no token without a
    /// proof; a value that is not a boolean is invalid_client_metadata.
    async fn d6_dpop_bound_access_tokens_clients_need_a_proof(db) {
        let ts = TestServer::start(db, |_| {}).await;
        ts.add_user().await;
        let register = |bound: serde_json::Value| {
            http().post(ts.url("/register")).json(&serde_json::json!({
                "redirect_uris": [REDIRECT],
                "token_endpoint_auth_method": "none",
                "grant_types": ["authorization_code", "refresh_token"],
                "dpop_bound_access_tokens": bound,
            })).send()
        };
        let resp = register(serde_json::json!("yes")).await.unwrap();
        assert_eq!(resp.status(), 400);
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "invalid_client_metadata", "{body}");
        let resp = register(serde_json::json!(true)).await.unwrap();
        assert_eq!(resp.status(), 201);
        let info: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(info["dpop_bound_access_tokens"], true, "echoed in the registration response");
        let client_id = info["client_id"].as_str().unwrap();
        let (code, verifier) = code_with(&ts, client_id, &[]).await;
        let form = code_form(client_id, &code, &verifier);
        let (status, body) = token_request(&ts, &form).await;
        assert!(refused_proof(status, &body).contains("dpop_bound_access_tokens"));
        let key = DpopKey::generate().unwrap();
        let (status, body) = token_request_with(&ts, &form, &[("dpop", &proof(&key, &ts))]).await;
        assert_eq!((status, body["token_type"].as_str()), (200, Some("DPoP")), "{body}");
    }
}
