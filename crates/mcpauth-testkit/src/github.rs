//! A GitHub-style plain OAuth 2.0 provider on 127.0.0.1 for federation tests, with GitHub's
//! quirks: no OpenID Connect; `/login/oauth/authorize` approves at once (302 with `code` and
//! `state`, no `iss`); `/login/oauth/access_token` takes Basic or form client authentication and
//! PKCE, answers JSON only to `Accept: application/json` (form-encoded otherwise) and answers
//! errors with 200; `/user` wants a `User-Agent` and has a numeric `id` and `email: null`;
//! `/user/emails` lists `{email, primary, verified}`. [`GithubFault`] makes one thing go wrong;
//! [`GithubProvider::stop`] takes it down.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::upstream::{AuthRequest, ClientAuth, Codes, Server, client_auth, random, redirect_back};

/// The one thing the provider does wrong.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GithubFault {
    /// Nothing.
    #[default]
    None,
    /// `/login/oauth/authorize` sends back another `state` than it was given.
    WrongState,
    /// `/login/oauth/authorize` sends back no `state`.
    NoState,
    /// `/login/oauth/authorize` redirects back with `error=access_denied` (the user said no).
    AccessDenied,
    /// `/user/emails` says the primary address is not verified.
    EmailUnverified,
    /// `/user` shows the address as `email` (the user made it public); `/user/emails` says it
    /// is not verified.
    PublicEmail,
    /// `/user` answers a 1 MiB JSON object.
    HugeUser,
}

/// The account the provider signs in.
#[derive(Clone, Debug)]
pub struct GithubUser {
    /// The numeric `id`.
    pub id: u64,
    /// The `login`.
    pub login: String,
    /// The primary address, listed by `/user/emails` only (`/user` says `email: null`).
    pub email: String,
}

struct Inner {
    fault: GithubFault,
    user: GithubUser,
    /// Access tokens issued.
    tokens: HashSet<String>,
    /// How the client authenticated at the last successful token request.
    last_auth: Option<ClientAuth>,
}

/// A running GitHub-style provider.
#[derive(Clone)]
pub struct GithubProvider {
    /// `http://127.0.0.1:PORT`: both "github.com" and "api.github.com".
    pub base: String,
    /// The OAuth app's client id.
    pub client_id: String,
    /// The OAuth app's client secret.
    pub client_secret: String,
    codes: Codes,
    server: Server,
    inner: Arc<Mutex<Inner>>,
}

impl GithubProvider {
    /// Starts a provider on 127.0.0.1:0 that signs in `user`.
    pub async fn start(user: GithubUser) -> GithubProvider {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gh = GithubProvider {
            base: format!("http://{}", listener.local_addr().unwrap()),
            client_id: format!("Iv1.{}", &random()[..16]),
            client_secret: random(),
            codes: Codes::default(),
            server: Server::default(),
            inner: Arc::new(Mutex::new(Inner {
                fault: GithubFault::None,
                user,
                tokens: HashSet::new(),
                last_auth: None,
            })),
        };
        let app = Router::new()
            .route("/login/oauth/authorize", get(authorize))
            .route("/login/oauth/access_token", post(access_token))
            .route("/user", get(user_endpoint))
            .route("/user/emails", get(emails))
            .with_state(gh.clone());
        gh.server.serve(listener, app);
        gh
    }

    /// The authorization endpoint (GitHub: `https://github.com/login/oauth/authorize`).
    pub fn authorization_endpoint(&self) -> String {
        format!("{}/login/oauth/authorize", self.base)
    }

    /// The token endpoint (GitHub: `https://github.com/login/oauth/access_token`).
    pub fn token_endpoint(&self) -> String {
        format!("{}/login/oauth/access_token", self.base)
    }

    /// The user endpoint (GitHub: `https://api.github.com/user`).
    pub fn user_endpoint(&self) -> String {
        format!("{}/user", self.base)
    }

    /// The emails endpoint (GitHub: `https://api.github.com/user/emails`).
    pub fn emails_endpoint(&self) -> String {
        format!("{}/user/emails", self.base)
    }

    /// Makes the provider do `fault` from now on.
    pub fn set_fault(&self, fault: GithubFault) {
        self.inner.lock().unwrap().fault = fault;
    }

    /// How many access tokens it issued.
    pub fn tokens_issued(&self) -> usize {
        self.inner.lock().unwrap().tokens.len()
    }

    /// How the client authenticated at the last token request that got a token.
    pub fn last_client_auth(&self) -> Option<ClientAuth> {
        self.inner.lock().unwrap().last_auth
    }

    /// Takes the provider down: its port refuses connections from now on.
    pub async fn stop(&self) {
        self.server.stop().await;
    }

    fn fault(&self) -> GithubFault {
        self.inner.lock().unwrap().fault
    }

    /// Whether `headers` carry one of its access tokens and a `User-Agent` (GitHub's API
    /// refuses requests without one).
    /// Whether `token` is an access token it issued.
    pub fn issued(&self, token: &str) -> bool {
        self.inner.lock().unwrap().tokens.contains(token)
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        headers.contains_key(header::USER_AGENT)
            && token.is_some_and(|t| self.inner.lock().unwrap().tokens.contains(t))
    }
}

async fn authorize(
    State(gh): State<GithubProvider>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let req = match AuthRequest::parse(&q, &gh.client_id) {
        Ok(r) => r,
        Err(refusal) => return refusal.into_response(),
    };
    let redirect_uri = req.redirect_uri.clone();
    let state = match gh.fault() {
        GithubFault::WrongState => Some(random()),
        GithubFault::NoState => None,
        _ => req.state.clone(),
    };
    let mut pairs = if gh.fault() == GithubFault::AccessDenied {
        vec![
            ("error", "access_denied".to_owned()),
            (
                "error_description",
                "The user has denied your application access.".to_owned(),
            ),
        ]
    } else {
        vec![("code", gh.codes.issue(req))]
    };
    if let Some(s) = state {
        pairs.push(("state", s));
    }
    let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    redirect_back(&redirect_uri, &pairs)
}

/// GitHub answers JSON only when asked; otherwise `application/x-www-form-urlencoded`.
fn answer(headers: &HeaderMap, body: Value) -> Response {
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    if wants_json {
        return Json(body).into_response();
    }
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in body.as_object().into_iter().flatten() {
        form.append_pair(k, v.as_str().unwrap_or_default());
    }
    (
        [(header::CONTENT_TYPE, "application/x-www-form-urlencoded")],
        form.finish(),
    )
        .into_response()
}

async fn access_token(
    State(gh): State<GithubProvider>,
    headers: HeaderMap,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    // GitHub answers these errors with 200 and an `error` member.
    let Some(auth) = client_auth(&headers, &f, &gh.client_id, &gh.client_secret) else {
        return answer(&headers, json!({"error": "incorrect_client_credentials"}));
    };
    if gh.codes.redeem(&f).is_none() {
        return answer(&headers, json!({"error": "bad_verification_code"}));
    }
    let token = format!("gho_{}", random());
    {
        let mut inner = gh.inner.lock().unwrap();
        inner.tokens.insert(token.clone());
        inner.last_auth = Some(auth);
    }
    answer(
        &headers,
        json!({"access_token": token, "token_type": "bearer", "scope": "read:user,user:email"}),
    )
}

async fn user_endpoint(State(gh): State<GithubProvider>, headers: HeaderMap) -> Response {
    if !gh.authorized(&headers) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"message": "Bad credentials"})),
        )
            .into_response();
    }
    let u = gh.inner.lock().unwrap().user.clone();
    let email = (gh.fault() == GithubFault::PublicEmail).then_some(u.email);
    let bio = if gh.fault() == GithubFault::HugeUser {
        "x".repeat(1 << 20)
    } else {
        String::new()
    };
    Json(json!({
        "login": u.login, "id": u.id, "type": "User", "name": null, "email": email,
        "html_url": format!("https://github.com/{}", u.login), "bio": bio,
    }))
    .into_response()
}

async fn emails(State(gh): State<GithubProvider>, headers: HeaderMap) -> Response {
    if !gh.authorized(&headers) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"message": "Bad credentials"})),
        )
            .into_response();
    }
    let u = gh.inner.lock().unwrap().user.clone();
    let verified = !matches!(
        gh.fault(),
        GithubFault::EmailUnverified | GithubFault::PublicEmail
    );
    Json(json!([
        {"email": u.email, "primary": true, "verified": verified, "visibility": "private"},
        {"email": format!("{}+{}@users.noreply.github.com", u.id, u.login), "primary": false,
            "verified": true, "visibility": null},
    ]))
    .into_response()
}
