//! The paste front end: the user opens the URL anywhere and pastes back where the browser ended
//! up (the full redirect URL, or just its query). Also [`LoopbackOrPaste`], which races a
//! loopback listener against a pasted answer, for SSH sessions and containers.

use std::sync::Arc;

use mcpauth_core::AuthorizationCode;
use mcpauth_core::authorization_response::AuthorizationResponse;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader};

use crate::ClientError;
use crate::authorize::{BoxFuture, FrontEnd, PendingRedirect, Presenter};
use crate::loopback::{Loopback, state_of};

/// Where pasted answers come from (stdin, or a reader in tests).
pub struct PasteInput {
    reader: tokio::sync::Mutex<Box<dyn AsyncBufRead + Send + Unpin>>,
}

impl std::fmt::Debug for PasteInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasteInput")
    }
}

impl PasteInput {
    /// Reads from the process's standard input.
    pub fn stdin() -> Self {
        Self::from_reader(BufReader::new(tokio::io::stdin()))
    }

    /// Reads from `reader`.
    pub fn from_reader(reader: impl AsyncBufRead + Send + Unpin + 'static) -> Self {
        Self {
            reader: tokio::sync::Mutex::new(Box::new(reader)),
        }
    }

    /// Reads lines until one holds an answer, and parses it. A bare code is taken as belonging to
    /// this flow (its `state` cannot be checked), so it is refused by the RFC 9207 check when the
    /// server sends `iss` (MCP SPEC C19): paste the whole URL then.
    pub async fn read_response(
        &self,
        expected_state: &str,
    ) -> Result<AuthorizationResponse, ClientError> {
        let mut reader = self.reader.lock().await;
        loop {
            let mut line = String::new();
            let n = reader.read_line(&mut line).await.map_err(|e| {
                ClientError::Authorization(format!("reading the pasted answer: {e}"))
            })?;
            if n == 0 {
                return Err(ClientError::Authorization(
                    "the input ended before an answer was pasted".into(),
                ));
            }
            if let Some(r) = parse_pasted(line.trim(), expected_state)? {
                return Ok(r);
            }
        }
    }
}

/// Parses one pasted line: a redirect URL, a query string, or a bare code. `None` for a blank line.
pub fn parse_pasted(
    text: &str,
    expected_state: &str,
) -> Result<Option<AuthorizationResponse>, ClientError> {
    if text.is_empty() {
        return Ok(None);
    }
    if text.starts_with("http://") || text.starts_with("https://") {
        return Ok(Some(AuthorizationResponse::from_redirect_url(text)?));
    }
    if text.contains('=') {
        return Ok(Some(AuthorizationResponse::from_query(
            text.trim_start_matches('?'),
        )));
    }
    if text.chars().any(char::is_whitespace) {
        return Err(ClientError::Authorization(
            "that is neither a URL nor a code; paste the whole address the browser ended up at"
                .into(),
        ));
    }
    Ok(Some(AuthorizationResponse {
        code: Some(AuthorizationCode::new(text)),
        state: Some(expected_state.to_owned()),
        ..Default::default()
    }))
}

/// Paste only: nothing listens at the redirect URI.
#[derive(Clone, Debug)]
pub struct Paste {
    redirect_uri: String,
    presenter: Arc<dyn Presenter>,
    input: Arc<PasteInput>,
}

impl Paste {
    /// A paste front end announcing `redirect_uri`.
    pub fn new(
        redirect_uri: impl Into<String>,
        presenter: Arc<dyn Presenter>,
        input: Arc<PasteInput>,
    ) -> Self {
        Self {
            redirect_uri: redirect_uri.into(),
            presenter,
            input,
        }
    }
}

impl FrontEnd for Paste {
    fn prepare(&self) -> BoxFuture<'_, Result<Box<dyn PendingRedirect>, ClientError>> {
        let pending: Box<dyn PendingRedirect> = Box::new(self.clone());
        Box::pin(async move { Ok(pending) })
    }
}

impl PendingRedirect for Paste {
    fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    fn complete(
        self: Box<Self>,
        authorization_url: String,
    ) -> BoxFuture<'static, Result<AuthorizationResponse, ClientError>> {
        Box::pin(async move {
            self.presenter.show_authorization_url(&authorization_url);
            self.presenter.ask_for_redirect();
            let r = self
                .input
                .read_response(&state_of(&authorization_url))
                .await;
            self.presenter.done();
            r
        })
    }
}

/// A loopback listener and a paste prompt at once; whichever answers first wins.
#[derive(Clone, Debug)]
pub struct LoopbackOrPaste {
    loopback: Loopback,
    presenter: Arc<dyn Presenter>,
    input: Arc<PasteInput>,
}

impl LoopbackOrPaste {
    /// Combines `loopback` with pasted answers from `input`.
    pub fn new(loopback: Loopback, presenter: Arc<dyn Presenter>, input: Arc<PasteInput>) -> Self {
        Self {
            loopback,
            presenter,
            input,
        }
    }
}

impl FrontEnd for LoopbackOrPaste {
    fn resume<'a>(
        &'a self,
        redirect_uri: &'a str,
        state: &'a str,
        timeout: std::time::Duration,
    ) -> BoxFuture<'a, Result<Option<AuthorizationResponse>, ClientError>> {
        self.loopback.resume(redirect_uri, state, timeout)
    }

    fn prepare(&self) -> BoxFuture<'_, Result<Box<dyn PendingRedirect>, ClientError>> {
        self.prepare_reusing(&[])
    }

    fn prepare_reusing<'a>(
        &'a self,
        registered: &'a [String],
    ) -> BoxFuture<'a, Result<Box<dyn PendingRedirect>, ClientError>> {
        Box::pin(async move {
            let pending = self.loopback.bind_reusing(registered).await?;
            let redirect_uri = pending.redirect_uri().to_owned();
            Ok(Box::new(PendingEither {
                pending,
                redirect_uri,
                presenter: Arc::clone(&self.presenter),
                input: Arc::clone(&self.input),
            }) as Box<dyn PendingRedirect>)
        })
    }
}

struct PendingEither {
    pending: crate::loopback::PendingLoopback,
    redirect_uri: String,
    presenter: Arc<dyn Presenter>,
    input: Arc<PasteInput>,
}

impl PendingRedirect for PendingEither {
    fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    fn complete(
        self: Box<Self>,
        authorization_url: String,
    ) -> BoxFuture<'static, Result<AuthorizationResponse, ClientError>> {
        Box::pin(async move {
            let state = state_of(&authorization_url);
            self.presenter.show_authorization_url(&authorization_url);
            self.presenter.ask_for_redirect();
            let r = tokio::select! {
                r = self.pending.receive(state.clone()) => r,
                r = self.input.read_response(&state) => r,
            };
            self.presenter.done();
            r
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pasted_forms() {
        let r = parse_pasted("http://127.0.0.1:9/cb?code=c1&state=s", "s")
            .unwrap()
            .unwrap();
        assert_eq!(r.code.unwrap().expose(), "c1");
        let r = parse_pasted("?code=c2&state=x&iss=i", "s")
            .unwrap()
            .unwrap();
        assert_eq!(
            (r.state.as_deref(), r.iss.as_deref()),
            (Some("x"), Some("i"))
        );
        let r = parse_pasted("c3", "s").unwrap().unwrap();
        assert_eq!(r.state.as_deref(), Some("s"));
        assert!(parse_pasted("", "s").unwrap().is_none());
        assert!(parse_pasted("not a code", "s").is_err());
    }
}
