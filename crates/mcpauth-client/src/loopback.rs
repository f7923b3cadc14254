//! The loopback front end (RFC 8252 §7.3): a one-shot HTTP listener on 127.0.0.1 receives the
//! redirect from the user's browser.
//!
//! The listener binds before registration so the redirect URI is known, answers only its path
//! (other requests get 404 and are otherwise ignored), shows a small result page, and closes.

use std::sync::Arc;
use std::time::Duration;

use mcpauth_core::authorization_response::AuthorizationResponse;
use mcpauth_core::constant_time_eq;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::ClientError;
use crate::authorize::{BoxFuture, FrontEnd, PendingRedirect, Presenter};

/// Largest request head read from the browser.
const MAX_HEAD: usize = 16 * 1024;

/// Most connections served at once; further ones are closed unanswered.
const MAX_CONNECTIONS: usize = 16;

/// Where the listener binds and which path it answers.
#[derive(Clone, Debug)]
pub struct LoopbackOptions {
    /// Host to bind and to name in the redirect URI: `127.0.0.1` (default), `localhost` or `[::1]`.
    pub host: String,
    /// Port; 0 picks a free one (RFC 8252 §7.3 lets loopback redirect ports vary).
    pub port: u16,
    /// The callback path.
    pub path: String,
    /// How long to wait for the browser.
    pub timeout: Duration,
}

impl Default for LoopbackOptions {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 0,
            path: "/callback".into(),
            timeout: Duration::from_secs(300),
        }
    }
}

impl LoopbackOptions {
    /// Takes host, port and path from a configured redirect URI such as
    /// `http://localhost:3030/callback` (the port is pinned then).
    pub fn from_redirect_uri(uri: &str, timeout: Duration) -> Result<Self, ClientError> {
        let url = url::Url::parse(uri)
            .map_err(|e| ClientError::Config(format!("redirect URI {uri:?}: {e}")))?;
        if url.scheme() != "http" || !mcpauth_core::url_policy::is_loopback(&url) {
            return Err(ClientError::Config(format!(
                "redirect URI {uri:?} is not an http loopback URI, so no local listener can receive it; \
                 use the paste flow for it"
            )));
        }
        Ok(Self {
            host: url.host_str().unwrap_or("127.0.0.1").to_owned(),
            port: url.port_or_known_default().unwrap_or(80),
            path: url.path().to_owned(),
            timeout,
        })
    }
}

/// Receives the authorization response on a loopback listener.
#[derive(Clone, Debug)]
pub struct Loopback {
    options: LoopbackOptions,
    presenter: Arc<dyn Presenter>,
}

impl Loopback {
    /// A loopback front end that shows URLs through `presenter`.
    pub fn new(options: LoopbackOptions, presenter: Arc<dyn Presenter>) -> Self {
        Self { options, presenter }
    }

    /// Binds the listener (used by [`FrontEnd::prepare`] and by front ends that combine this one).
    pub async fn bind(&self) -> Result<PendingLoopback, ClientError> {
        self.bind_reusing(&[]).await
    }

    /// Binds like [`bind`](Self::bind); when any port will do (port 0), first tries the port of
    /// a `registered` redirect URI with this host and path, so a registration made with it
    /// matches exactly and is reused (RFC 8252 §7.3 lets loopback ports vary, but not every
    /// server allows that). A taken port falls back to a free one.
    pub async fn bind_reusing(
        &self,
        registered: &[String],
    ) -> Result<PendingLoopback, ClientError> {
        let o = &self.options;
        let bind_host = o.host.trim_start_matches('[').trim_end_matches(']');
        let bind_host = if bind_host.eq_ignore_ascii_case("localhost") {
            "127.0.0.1"
        } else {
            bind_host
        };
        if o.port == 0 {
            for port in registered
                .iter()
                .filter_map(|uri| self.registered_port(uri))
            {
                if let Ok(listener) = TcpListener::bind((bind_host, port)).await {
                    return Ok(self.pending(listener, port));
                }
            }
        }
        let listener = TcpListener::bind((bind_host, o.port)).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                ClientError::Config(format!(
                    "the callback port {} on {} is in use by another program. Stop that program, or \
                     pick another port with --port (and register http://{}:PORT{} with the \
                     authorization server if it pins redirect URIs), or use --port 0 for any free port",
                    o.port, o.host, o.host, o.path
                ))
            } else {
                ClientError::Config(format!("cannot listen on {}:{}: {e}", o.host, o.port))
            }
        })?;
        let port = listener
            .local_addr()
            .map_err(|e| ClientError::Config(format!("listener address: {e}")))?
            .port();
        Ok(self.pending(listener, port))
    }

    /// The port of `uri` when it is an http redirect URI of this host and path.
    fn registered_port(&self, uri: &str) -> Option<u16> {
        let url = url::Url::parse(uri).ok()?;
        let o = &self.options;
        let same = url.scheme() == "http"
            && url
                .host_str()
                .is_some_and(|h| h.eq_ignore_ascii_case(&o.host))
            && url.path() == o.path
            && url.query().is_none();
        url.port().filter(|&p| same && p != 0)
    }

    fn pending(&self, listener: TcpListener, port: u16) -> PendingLoopback {
        let o = &self.options;
        PendingLoopback {
            listener,
            redirect_uri: format!("http://{}:{port}{}", o.host, o.path),
            path: o.path.clone(),
            timeout: o.timeout,
            presenter: Arc::clone(&self.presenter),
        }
    }
}

impl FrontEnd for Loopback {
    fn prepare(&self) -> BoxFuture<'_, Result<Box<dyn PendingRedirect>, ClientError>> {
        self.prepare_reusing(&[])
    }

    fn prepare_reusing<'a>(
        &'a self,
        registered: &'a [String],
    ) -> BoxFuture<'a, Result<Box<dyn PendingRedirect>, ClientError>> {
        Box::pin(async move {
            Ok(Box::new(self.bind_reusing(registered).await?) as Box<dyn PendingRedirect>)
        })
    }

    fn resume<'a>(
        &'a self,
        redirect_uri: &'a str,
        state: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Option<AuthorizationResponse>, ClientError>> {
        Box::pin(resume_at(
            redirect_uri,
            state,
            timeout,
            Arc::clone(&self.presenter),
        ))
    }
}

/// Listens at the exact `redirect_uri` of an interrupted flow; `None` if it cannot be bound.
pub(crate) async fn resume_at(
    redirect_uri: &str,
    state: &str,
    timeout: Duration,
    presenter: Arc<dyn Presenter>,
) -> Result<Option<AuthorizationResponse>, ClientError> {
    let Ok(options) = LoopbackOptions::from_redirect_uri(redirect_uri, timeout) else {
        return Ok(None);
    };
    let Ok(pending) = Loopback::new(options, presenter).bind().await else {
        return Ok(None);
    };
    tracing::warn!(
        "continuing the login another mcpauth process started (it stopped): waiting for the \
         browser at {redirect_uri}"
    );
    pending.receive(state.to_owned()).await.map(Some)
}

/// A bound listener waiting for one redirect.
#[derive(Debug)]
pub struct PendingLoopback {
    listener: TcpListener,
    redirect_uri: String,
    path: String,
    timeout: Duration,
    presenter: Arc<dyn Presenter>,
}

impl PendingLoopback {
    /// Waits for the browser's redirect, without showing anything.
    pub async fn receive(
        self,
        expected_state: String,
    ) -> Result<AuthorizationResponse, ClientError> {
        // Connections are served side by side, so a stray or slow one (a port scan, a
        // browser's speculative connection) cannot hold up the real redirect.
        let wait = async {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    accepted = self.listener.accept() => {
                        let (stream, _) = accepted.map_err(|e| {
                            ClientError::Authorization(format!("callback listener: {e}"))
                        })?;
                        if connections.len() >= MAX_CONNECTIONS {
                            continue;
                        }
                        let (path, state) = (self.path.clone(), expected_state.clone());
                        connections.spawn(async move { handle(stream, &path, &state).await });
                    }
                    Some(done) = connections.join_next(), if !connections.is_empty() => {
                        if let Ok(Some(r)) = done {
                            return Ok(r);
                        }
                    }
                }
            }
        };
        tokio::time::timeout(self.timeout, wait)
            .await
            .map_err(|_| {
                ClientError::Authorization(format!(
                    "no answer from the browser within {} s",
                    self.timeout.as_secs()
                ))
            })?
    }
}

impl PendingRedirect for PendingLoopback {
    fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    fn complete(
        self: Box<Self>,
        authorization_url: String,
    ) -> BoxFuture<'static, Result<AuthorizationResponse, ClientError>> {
        Box::pin(async move {
            let presenter = Arc::clone(&self.presenter);
            presenter.show_authorization_url(&authorization_url);
            let result = self.receive(state_of(&authorization_url)).await;
            presenter.done();
            result
        })
    }
}

/// The `state` parameter of an authorization URL.
pub(crate) fn state_of(authorization_url: &str) -> String {
    url::Url::parse(authorization_url)
        .ok()
        .and_then(|u| {
            u.query_pairs()
                .find(|(k, _)| k == "state")
                .map(|(_, v)| v.into_owned())
        })
        .unwrap_or_default()
}

/// Serves one connection; `Some` when it carried the redirect.
async fn handle(
    mut stream: TcpStream,
    path: &str,
    expected_state: &str,
) -> Option<AuthorizationResponse> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 2048];
    let read = async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
            let n = stream.read(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Some(())
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .ok()??;
    let line = String::from_utf8_lossy(head.split(|&b| b == b'\n').next()?).into_owned();
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next()?, parts.next()?);
    let (req_path, query) = target.split_once('?').unwrap_or((target, ""));
    if method != "GET" || req_path != path {
        let _ = respond(
            &mut stream,
            "404 Not Found",
            "Not found",
            "This is not the callback address.",
        )
        .await;
        return None;
    }
    let response = AuthorizationResponse::from_query(query);
    let state_ok = response
        .state
        .as_deref()
        .is_some_and(|s| constant_time_eq(s.as_bytes(), expected_state.as_bytes()));
    // MCP SPEC C20: never echo the server's error text here; the terminal says what happened.
    let (status, title, text) = match (state_ok, response.code.is_some()) {
        (true, true) => (
            "200 OK",
            "Signed in",
            "You can close this tab and return to the terminal.",
        ),
        (true, false) => (
            "200 OK",
            "Not signed in",
            "The authorization server did not grant access. See the terminal.",
        ),
        (false, _) => (
            "400 Bad Request",
            "Not signed in",
            "This answer does not belong to the login in progress. See the terminal.",
        ),
    };
    let _ = respond(&mut stream, status, title, text).await;
    Some(response)
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    title: &str,
    text: &str,
) -> std::io::Result<()> {
    let body = format!(
        "<!doctype html><html><head><meta charset=utf-8><meta name=viewport content=\"width=device-width\">\
         <title>mcpauth: {title}</title><style>body{{font:16px system-ui,sans-serif;max-width:32em;\
         margin:4em auto;padding:0 1em;color:#222}}h1{{font-size:1.4em}}</style></head>\
         <body><h1>{title}</h1><p>{text}</p></body></html>"
    );
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nContent-Security-Policy: default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'\r\n\
         Referrer-Policy: no-referrer\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Silent;
    impl Presenter for Silent {
        fn show_authorization_url(&self, _: &str) {}
        fn show_device_code(&self, _: &mcpauth_core::device::DeviceAuthorization) {}
    }

    /// Code review finding 8: a stray connection that sends nothing must not hold up the
    /// browser's redirect (before, connections were served one at a time, each for up to 10 s).
    #[tokio::test]
    async fn review8_a_stray_connection_does_not_block_the_redirect() {
        let pending = Loopback::new(LoopbackOptions::default(), Arc::new(Silent))
            .bind()
            .await
            .unwrap();
        let addr = pending
            .redirect_uri
            .trim_start_matches("http://")
            .to_owned();
        let addr = addr.split_once('/').unwrap().0.to_owned();
        let receiving = tokio::spawn(pending.receive("st".into()));
        let _stray = TcpStream::connect(&addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut browser = TcpStream::connect(&addr).await.unwrap();
        browser
            .write_all(b"GET /callback?code=c0de&state=st HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let response = tokio::time::timeout(Duration::from_secs(5), receiving)
            .await
            .expect("the redirect waited behind the stray connection")
            .unwrap()
            .unwrap();
        assert_eq!(response.state.as_deref(), Some("st"));
        assert!(response.code.is_some());
        let mut page = String::new();
        browser.read_to_string(&mut page).await.unwrap();
        assert!(page.starts_with("HTTP/1.1 200 OK"), "{page}");
    }
}
