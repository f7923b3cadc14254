//! What the federation tests share: a browser going from our authorization endpoint through a
//! provider's button and authorization page back to our callback, the callback request, the
//! checks of a refused sign-in, and the count of stored upstream logins.

use mcpauth_authserver::federation::callback_uri;

use crate::support::{REDIRECT, TestServer, authorization, cookie_from, http, open_login};

/// The `href` of the login page's button for `name`.
pub(crate) fn button(html: &str, name: &str) -> String {
    let marker = format!("data-idp=\"{name}\" href=\"");
    let at = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no button in {html}"))
        + marker.len();
    html[at..][..html[at..].find('"').unwrap()]
        .replace("&#38;", "&")
        .replace("&amp;", "&")
}

pub(crate) fn location(resp: &reqwest::Response) -> String {
    resp.headers()["location"].to_str().unwrap().to_owned()
}

/// A browser at the provider's callback: the authorization URL, the session cookie, and the
/// callback URL the provider sent it to.
pub(crate) struct AtCallback {
    pub verifier: String,
    /// The authorization request sent to the provider.
    pub at_idp: String,
    pub cookie: String,
    pub callback: String,
}

/// A browser from our authorization endpoint through the login page's button for the provider
/// `name` (whose authorization endpoint starts with `at`) back to our callback.
pub(crate) async fn browse_to_callback(
    ts: &TestServer,
    client_id: &str,
    name: &str,
    at: &str,
) -> AtCallback {
    let a = authorization(ts, client_id, REDIRECT, &[]);
    let (cookie, html) = open_login(&a.url).await;
    assert!(html.contains("Sign in with"), "{html}");
    let start = http()
        .get(button(&html, name))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 302, "{}", start.text().await.unwrap());
    let at_idp = location(&start);
    assert!(at_idp.starts_with(at), "{at_idp}");
    let back = http().get(&at_idp).send().await.unwrap();
    assert_eq!(back.status(), 302);
    let callback = location(&back);
    assert!(
        callback.starts_with(&callback_uri(ts.server.config())),
        "{callback}"
    );
    AtCallback {
        verifier: a.verifier,
        at_idp,
        cookie,
        callback,
    }
}

pub(crate) async fn get_callback(url: &str, cookie: Option<&str>) -> (u16, String, Option<String>) {
    let mut req = http().get(url);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let cookie = cookie_from(&resp);
    (status, resp.text().await.unwrap(), cookie)
}

/// Asserts an error page that says `says`, and that no code was issued (no redirect).
pub(crate) fn refused(got: &(u16, String, Option<String>), status: u16, says: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    assert!(got.1.contains(says), "expected {says:?} in {}", got.1);
    assert!(
        !got.1.contains("name=\"decision\""),
        "no consent form: {}",
        got.1
    );
}

/// How many upstream logins are stored (waiting for their callback).
pub(crate) async fn upstream_logins(db_url: &str) -> i64 {
    let pool = sqlx::AnyPool::connect(db_url).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM upstream_logins")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    n
}

/// Replaces (or, with `None`, removes) one query parameter of `url`.
pub(crate) fn with_param(url: &str, name: &str, value: Option<&str>) -> String {
    let mut u = url::Url::parse(url).unwrap();
    let pairs: Vec<(String, String)> = u
        .query_pairs()
        .filter(|(k, _)| k != name)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    u.query_pairs_mut().clear().extend_pairs(&pairs);
    if let Some(v) = value {
        u.query_pairs_mut().append_pair(name, v);
    }
    u.to_string()
}
