//! Client ID metadata documents fetched over real HTTPS (MCP SPEC A9, A10, C11;
//! draft-ietf-oauth-client-id-metadata-document, "CIMD draft"): a local TLS server with a
//! self-signed certificate that the fetch policy trusts, on an allow-listed 127.0.0.0/8.

use serde_json::{Value, json};

use crate::support::*;

/// A CIMD document for `url` (CIMD draft §4.1: `client_id` equals the URL).
fn document(url: &str, name: &str, redirect_uris: &[&str]) -> Value {
    json!({
        "client_id": url,
        "client_name": name,
        "redirect_uris": redirect_uris,
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
    })
}

/// GETs an authorization URL without a cookie: the status, any `Location`, and the page.
async fn authorize_page(url: &str) -> (u16, Option<String>, String) {
    let resp = http().get(url).send().await.unwrap();
    let status = resp.status().as_u16();
    let location = resp
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_owned());
    (status, location, resp.text().await.unwrap())
}

/// The warning of the consent page for localhost redirect URIs (A10).
const LOCALHOST_WARNING: &str = "This application receives the answer on your own computer";

both_backends! {
    /// A9, A10, C11 (CIMD draft §4, §6.5): a URL client id is resolved by fetching its document
    /// over HTTPS; the consent page names the client from the document, shows the document URL
    /// and the redirect host, and warns because the only redirect URI is on localhost; the code
    /// is redeemed for a token issued to the URL client id. `Cache-Control: max-age=3600` keeps
    /// the document for the whole flow and for a second authorization, which shows the consent
    /// page again (a public client on localhost: security finding 7): one fetch in all. A
    /// document whose redirect URI is a public https host gets no localhost warning; a redirect
    /// URI the document does not list gets an error page, not a redirect (A8, A9).
    async fn a9_a10_cimd_client_completes_the_code_flow(db) {
        let docs = DocServer::start().await;
        let url = docs.url("/clients/native.json");
        docs.serve_json("/clients/native.json",
            &document(&url, "Doc Native Client", &[REDIRECT]), Some("public, max-age=3600"));
        let web_url = docs.url("/clients/web.json");
        docs.serve_json("/clients/web.json",
            &document(&web_url, "Doc Web Client", &["https://app.example.net/cb"]),
            Some("max-age=3600"));
        let ts = TestServer::start(db, |c| docs.trust(c)).await;
        ts.add_user().await;

        let a = authorization(&ts, &url, REDIRECT, &[]);
        let (cookie, html) = login_to_consent(&ts, &a.url).await;
        assert_eq!(docs.hits("/clients/native.json"), 1, "the document was fetched");
        assert!(html.contains("Allow <bdi>Doc Native Client</bdi>?"), "A9: the name from the document: {html}");
        assert!(html.contains(&url), "the document URL is shown: {html}");
        assert!(html.contains("<p class=\"host\">127.0.0.1:53682</p>"), "A10: the redirect host: {html}");
        assert!(html.contains(LOCALHOST_WARNING), "A10: localhost redirect warning: {html}");
        let resp = post_consent(&ts, &cookie, &html, "allow").await;
        assert_eq!(resp.status(), 303);
        let p = location_params(&resp);
        assert_eq!((p["state"].as_str(), p["iss"].as_str()), (a.state.as_str(), ts.issuer.as_str()));
        let (status, body) = token_request(&ts, &[
            ("grant_type", "authorization_code"), ("code", &p["code"]),
            ("redirect_uri", REDIRECT), ("code_verifier", &a.verifier),
            ("client_id", &url), ("resource", RESOURCE),
        ]).await;
        assert_eq!(status, 200, "{body}");
        let c = claims(body["access_token"].as_str().unwrap());
        assert_eq!(c["client_id"], url.as_str());
        assert_eq!(c["aud"], RESOURCE);

        // Within max-age: a second authorization and its token request use the cached
        // document. The client is public on localhost: the consent page again, one click.
        let again = authorization(&ts, &url, REDIRECT, &[]);
        let resp = http().get(&again.url).header("cookie", &cookie).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let html = resp.text().await.unwrap();
        assert!(html.contains(CONSENT_AGAIN) && html.contains(LOCALHOST_WARNING), "{html}");
        let resp = post_consent(&ts, &cookie, &html, "allow").await;
        assert_eq!(resp.status(), 303);
        let p = location_params(&resp);
        let (status, body) = token_request(&ts, &[
            ("grant_type", "authorization_code"), ("code", &p["code"]),
            ("redirect_uri", REDIRECT), ("code_verifier", &again.verifier),
            ("client_id", &url), ("resource", RESOURCE),
        ]).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(docs.hits("/clients/native.json"), 1, "A9: cached for max-age, not refetched");

        // A public https redirect host: shown, and no localhost warning.
        let a = authorization(&ts, &web_url, "https://app.example.net/cb", &[]);
        let (_, html) = login_to_consent(&ts, &a.url).await;
        assert!(html.contains("Allow <bdi>Doc Web Client</bdi>?"), "{html}");
        assert!(html.contains("<p class=\"host\">app.example.net</p>"), "{html}");
        assert!(!html.contains(LOCALHOST_WARNING), "{html}");

        // A9: the redirect URI must be one the document lists.
        let a = authorization(&ts, &url, "http://127.0.0.1:53682/elsewhere", &[]);
        let (status, location, html) = authorize_page(&a.url).await;
        assert_eq!((status, location), (400, None));
        assert!(html.contains("redirect URI is not registered"), "{html}");
    }

    /// Security finding 7, RFC 8252 §8.6, A10: a public CIMD client whose redirect URI is https
    /// on its document's own host is identified by that host, so a second authorization uses
    /// the remembered consent (302 with a code that redeems); a public CIMD client whose https
    /// redirect URI is on another host gets the consent page again.
    async fn sec7_cimd_client_on_its_own_https_host_keeps_consent_rfc8252_8_6(db) {
        let docs = DocServer::start().await;
        let url = docs.url("/clients/own.json");
        let own = docs.url("/cb");
        docs.serve_json("/clients/own.json", &document(&url, "Own Host Client", &[&own]),
            Some("max-age=3600"));
        let other_url = docs.url("/clients/other.json");
        let other = "https://app.example.net/cb";
        docs.serve_json("/clients/other.json", &document(&other_url, "Other Host Client", &[other]),
            Some("max-age=3600"));
        let ts = TestServer::start(db, |c| docs.trust(c)).await;
        ts.add_user().await;

        let a = authorization(&ts, &url, &own, &[]);
        let (_, cookie) = browser_flow(&ts, &a.url).await;
        let again = authorization(&ts, &url, &own, &[]);
        let resp = http().get(&again.url).header("cookie", &cookie).send().await.unwrap();
        assert_eq!(resp.status(), 302, "remembered consent");
        assert!(resp.headers()["location"].to_str().unwrap().starts_with(&own));
        let p = location_params(&resp);
        let (status, body) = token_request(&ts, &[
            ("grant_type", "authorization_code"), ("code", &p["code"]),
            ("redirect_uri", &own), ("code_verifier", &again.verifier),
            ("client_id", &url), ("resource", RESOURCE),
        ]).await;
        assert_eq!(status, 200, "{body}");

        let a = authorization(&ts, &other_url, other, &[]);
        let (_, cookie) = browser_flow(&ts, &a.url).await;
        let again = authorization(&ts, &other_url, other, &[]);
        let resp = http().get(&again.url).header("cookie", &cookie).send().await.unwrap();
        assert_eq!(resp.status(), 200, "the consent page again");
        let html = resp.text().await.unwrap();
        assert!(html.contains(CONSENT_AGAIN), "{html}");
        assert!(html.contains("<p class=\"host\">app.example.net</p>"), "A10: {html}");
    }

    /// Security finding 12, A9, A10 (RFC 7591 §2 `client_name`, CIMD draft §4.1): a document
    /// whose `client_name` could disguise the client (a bidi override, a zero-width space,
    /// 5,000 characters) is refused with an error page saying what is wrong (never a redirect,
    /// never the name), and `invalid_client` at the token endpoint; a document with an
    /// ordinary non-ASCII name is used and its name shown.
    async fn sec12_cimd_document_with_a_spoofing_client_name_is_refused(db) {
        let docs = DocServer::start().await;
        let ts = TestServer::start(db, |c| docs.trust(c)).await;
        ts.add_user().await;
        let long = "A".repeat(5000);
        for (path, name, says) in [
            ("/rlo.json", "Good App\u{202E}ppA liveE", "U+202E"),
            ("/zwsp.json", "Good\u{200B}App", "U+200B"),
            ("/long.json", long.as_str(), "at most 100 characters"),
        ] {
            let url = docs.url(path);
            docs.serve_json(path, &document(&url, name, &[REDIRECT]), None);
            let a = authorization(&ts, &url, REDIRECT, &[]);
            let (status, location, html) = authorize_page(&a.url).await;
            assert_eq!((status, location), (400, None), "an error page, not a redirect");
            assert!(html.contains("client_name") && html.contains(says), "{html}");
            assert!(!html.contains(name) && !html.contains("Good"), "the name is not shown: {html}");
            let (status, body) = token_request(&ts, &[
                ("grant_type", "authorization_code"), ("client_id", &url), ("code", "x"),
                ("redirect_uri", REDIRECT), ("code_verifier", &a.verifier),
            ]).await;
            assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")), "{body}");
        }

        let url = docs.url("/cafe.json");
        docs.serve_json("/cafe.json", &document(&url, "Café Łódź 日本", &[REDIRECT]), None);
        let a = authorization(&ts, &url, REDIRECT, &[]);
        let (_, html) = login_to_consent(&ts, &a.url).await;
        assert!(html.contains("Café Łódź 日本"), "{html}");
    }

    /// A9 (CIMD draft §4.3, RFC 9111 §5.2.2): the HTTP cache headers decide how long a document
    /// is kept. After two seconds a `max-age=1` document is fetched again while a
    /// `max-age=3600` one is not; a `no-store` document is fetched on every use.
    async fn a9_cimd_cache_control_decides_when_the_document_is_refetched(db) {
        let docs = DocServer::start().await;
        let ts = TestServer::start(db, |c| docs.trust(c)).await;
        let mut urls = Vec::new();
        for (path, cc) in [("/short.json", "max-age=1"), ("/long.json", "max-age=3600"),
                           ("/none.json", "no-store")] {
            let url = docs.url(path);
            docs.serve_json(path, &document(&url, "Cached", &[REDIRECT]), Some(cc));
            urls.push((path, url));
        }
        let open = |url: String| {
            let a = authorization(&ts, &url, REDIRECT, &[]);
            async move { assert_eq!(authorize_page(&a.url).await.0, 200) }
        };
        for (_, url) in &urls {
            open(url.clone()).await;
        }
        assert_eq!(docs.hits("/short.json"), 1);
        assert_eq!(docs.hits("/long.json"), 1);
        let no_store = docs.hits("/none.json");
        assert!(no_store >= 1);
        tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
        for (_, url) in &urls {
            open(url.clone()).await;
        }
        assert_eq!(docs.hits("/short.json"), 2, "max-age=1 has expired: refetched");
        assert_eq!(docs.hits("/long.json"), 1, "max-age=3600 is still fresh: not refetched");
        assert!(docs.hits("/none.json") > no_store, "no-store: fetched on every use");
    }

    /// A9, C11 (CIMD draft §4.1, §6): a document whose `client_id` is not its own URL is refused
    /// with an error page naming the mismatch (never a redirect to the document's redirect
    /// URIs), and the token endpoint answers `invalid_client`; a document larger than the
    /// fetch limit is refused likewise, as is one that is not served (404), both saying only
    /// that the document could not be fetched (security finding 10).
    async fn a9_cimd_mismatched_or_oversized_document_is_refused(db) {
        let docs = DocServer::start().await;
        let ts = TestServer::start(db, |c| docs.trust(c)).await;

        let url = docs.url("/mismatch.json");
        docs.serve_json("/mismatch.json",
            &document("https://other.example/client.json", "Impostor", &[REDIRECT]), None);
        let a = authorization(&ts, &url, REDIRECT, &[]);
        let (status, location, html) = authorize_page(&a.url).await;
        assert_eq!((status, location), (400, None), "an error page, not a redirect");
        assert!(html.contains("differs from the document URL"), "{html}");
        assert!(!html.contains("Impostor"), "{html}");
        assert_eq!(docs.hits("/mismatch.json"), 1, "it was fetched and then refused");
        let (status, body) = token_request(&ts, &[
            ("grant_type", "authorization_code"), ("client_id", &url), ("code", "x"),
            ("redirect_uri", REDIRECT), ("code_verifier", &a.verifier),
        ]).await;
        assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")), "{body}");
        assert!(body["error_description"].as_str().unwrap().contains("differs from the document URL"));

        // Valid in every respect but its size (the default limit is 64 KiB).
        let url = docs.url("/big.json");
        let mut big = document(&url, "Big", &[REDIRECT]);
        big["logo_uri"] = json!(format!("https://app.example.net/{}", "a".repeat(70 * 1024)));
        docs.serve_json("/big.json", &big, None);
        let a = authorization(&ts, &url, REDIRECT, &[]);
        let (status, location, html) = authorize_page(&a.url).await;
        assert_eq!((status, location), (400, None));
        assert!(html.contains(NOT_FETCHED) && !html.contains("65536"), "{html}");
        assert_eq!(docs.hits("/big.json"), 1);

        let url = docs.url("/missing.json");
        let a = authorization(&ts, &url, REDIRECT, &[]);
        let (status, location, html) = authorize_page(&a.url).await;
        assert_eq!((status, location), (400, None));
        assert!(html.contains(NOT_FETCHED) && !html.contains("404"), "{html}");
    }
}
