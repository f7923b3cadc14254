//! What the test identity providers (OpenID Connect and GitHub-style OAuth 2.0) share: the
//! authorization request's checks, codes bound to a PKCE challenge and redirect URI (RFC 7636
//! §4.6), client authentication (RFC 6749 §2.3.1), the redirect back, and a server on
//! 127.0.0.1:0 that can be stopped to play "down".

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

/// 24 random URL-safe characters.
pub(crate) fn random() -> String {
    let mut b = [0u8; 18];
    aws_lc_rs::rand::fill(&mut b).expect("randomness");
    URL_SAFE_NO_PAD.encode(b)
}

/// A checked authorization request (RFC 6749 §4.1.1 with PKCE S256).
pub(crate) struct AuthRequest {
    pub redirect_uri: String,
    pub state: Option<String>,
    challenge: String,
    nonce: Option<String>,
}

impl AuthRequest {
    /// Checks the query of an authorization request from `client_id`; a refusal is a 400 with
    /// this reason.
    pub(crate) fn parse(
        q: &HashMap<String, String>,
        client_id: &str,
    ) -> Result<Self, (StatusCode, &'static str)> {
        let get = |k: &str| q.get(k).cloned();
        let bad = |m| Err((StatusCode::BAD_REQUEST, m));
        let (Some(redirect_uri), Some(challenge)) = (get("redirect_uri"), get("code_challenge"))
        else {
            return bad("redirect_uri and code_challenge required");
        };
        if get("client_id").as_deref() != Some(client_id)
            || get("code_challenge_method").as_deref() != Some("S256")
            || get("response_type").as_deref() != Some("code")
            || url::Url::parse(&redirect_uri).is_err()
        {
            return bad("bad authorization request");
        }
        Ok(Self {
            redirect_uri,
            state: get("state"),
            challenge,
            nonce: get("nonce"),
        })
    }
}

/// What a code was issued for.
pub(crate) struct Issued {
    /// The OIDC `nonce` of the authorization request.
    pub nonce: Option<String>,
    challenge: String,
    redirect_uri: String,
}

/// The codes issued and not redeemed yet.
#[derive(Clone, Default)]
pub(crate) struct Codes(Arc<Mutex<HashMap<String, Issued>>>);

impl Codes {
    /// Issues a code for `req`.
    pub(crate) fn issue(&self, req: AuthRequest) -> String {
        let code = random();
        self.0.lock().unwrap().insert(
            code.clone(),
            Issued {
                nonce: req.nonce,
                challenge: req.challenge,
                redirect_uri: req.redirect_uri,
            },
        );
        code
    }

    /// Redeems the form's `code` once, if its `code_verifier` and `redirect_uri` match.
    pub(crate) fn redeem(&self, form: &HashMap<String, String>) -> Option<Issued> {
        let issued = self.0.lock().unwrap().remove(form.get("code")?)?;
        let verifier = form.get("code_verifier")?;
        (URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) == issued.challenge
            && form.get("redirect_uri") == Some(&issued.redirect_uri))
        .then_some(issued)
    }
}

/// How a client authenticated at a token endpoint (RFC 6749 §2.3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// HTTP Basic (`client_secret_basic`).
    Basic,
    /// `client_id` and `client_secret` in the form (`client_secret_post`).
    Post,
}

/// How the request authenticates `client_id` with `secret`, if it does.
pub(crate) fn client_auth(
    headers: &HeaderMap,
    form: &HashMap<String, String>,
    client_id: &str,
    secret: &str,
) -> Option<ClientAuth> {
    let basic = format!("Basic {}", STANDARD.encode(format!("{client_id}:{secret}")));
    match headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        Some(h) if h == basic => Some(ClientAuth::Basic),
        Some(_) => None,
        None => (form.get("client_id").map(String::as_str) == Some(client_id)
            && form.get("client_secret").map(String::as_str) == Some(secret))
        .then_some(ClientAuth::Post),
    }
}

/// A 302 to `redirect_uri` with `pairs` added to its query.
pub(crate) fn redirect_back(redirect_uri: &str, pairs: &[(&str, &str)]) -> Response {
    let mut url = url::Url::parse(redirect_uri).expect("checked by AuthRequest::parse");
    url.query_pairs_mut().extend_pairs(pairs);
    (StatusCode::FOUND, [(header::LOCATION, url.to_string())]).into_response()
}

/// A server on 127.0.0.1 that can be stopped to play "down".
#[derive(Clone, Default)]
pub(crate) struct Server {
    signal: Arc<Notify>,
    task: Arc<tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl Server {
    /// Serves `app` on `listener` until [`Server::stop`].
    pub(crate) fn serve(&self, listener: tokio::net::TcpListener, app: Router) {
        let notified = self.signal.clone();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { notified.notified().await })
                .await
                .unwrap();
        });
        *self.task.try_lock().expect("served once, at start") = Some(task);
    }

    /// Stops the server and returns once its port and connections are closed (idempotent).
    pub(crate) async fn stop(&self) {
        self.signal.notify_one();
        if let Some(task) = self.task.lock().await.take() {
            task.await.expect("the server task ends cleanly");
        }
    }
}
