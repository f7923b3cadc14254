//! Hostile request bodies before authentication (code review findings): the server answers
//! them with a clear error and stays responsive for other clients.

use crate::support::{Db, TestServer, http};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review1_a_body_of_distinct_parameters_is_refused_and_others_are_served() {
    let db = Db::sqlite();
    let ts = TestServer::start(&db, |_| {}).await;
    // ~11,000 distinct short keys in 64 KiB: quadratic parsing took 117 ms of CPU per request.
    let mut body = String::new();
    let mut i = 0u32;
    while body.len() < 64 * 1024 - 16 {
        body.push_str(&format!("{i:x}=&"));
        i += 1;
    }
    let hostile: Vec<_> = (0..8)
        .map(|_| {
            let (url, body) = (ts.url("/token"), body.clone());
            tokio::spawn(async move {
                http()
                    .post(url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body)
                    .send()
                    .await
                    .unwrap()
            })
        })
        .collect();
    assert_eq!(
        http()
            .get(ts.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    for h in hostile {
        let resp = h.await.unwrap();
        assert_eq!(resp.status(), 400);
        let err: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(err["error"], "invalid_request");
        assert!(
            err["error_description"]
                .as_str()
                .unwrap()
                .contains("more than 64 parameters"),
            "{err}"
        );
    }
}
