//! [rmcp](https://docs.rs/rmcp) (the official Rust MCP SDK) clients authorized by an
//! [`mcpauth_client::session::Session`].
//!
//! rmcp's Streamable HTTP client transport sends its HTTP requests through a
//! [`StreamableHttpClient`]. [`SessionHttpClient`] is one: every request (the JSON-RPC POSTs,
//! the GET of the server's event stream and the DELETE that ends the MCP session) goes out with
//! the session's credentials, exactly as [`AuthenticatedClient`] sends them:
//!
//! - `Authorization: Bearer` in the header, never the query (RFC 6750 §2.1, MCP SPEC C23), or
//!   for a DPoP-bound token `Authorization: DPoP` with a fresh proof for that request's method
//!   and URL (RFC 9449 §7.1, SPEC D1);
//! - on 401 `use_dpop_nonce` one replay with the resource server's nonce (RFC 9449 §9, D2);
//! - on any other 401 a refreshed or newly authorized token and a replay (RFC 6750 §3.1,
//!   MCP SPEC C4); on 403 `insufficient_scope` a step-up to the union of the scopes and a
//!   replay (C26); at most three authorization attempts per request.
//!
//! The tokens come from the session with whatever store (file with cross-process locking,
//! keyring, memory) and grant (browser or headless authorization code, device, client
//! credentials, ...) it was built with; rmcp itself never sees one.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use mcpauth_client::http::{HttpOptions, OAuthHttp};
//! use mcpauth_client::session::{Session, SessionConfig};
//! use mcpauth_client::store::FileStore;
//! use mcpauth_core::ClientSecret;
//! use rmcp::ServiceExt;
//!
//! let secret = std::env::var("MCP_CLIENT_SECRET").ok().map(ClientSecret::new);
//! let config = SessionConfig::client_credentials("https://mcp.example.com/mcp", "robot", secret);
//! let http = OAuthHttp::new(HttpOptions::default())?;
//! let session = Session::new(config, http, Arc::new(FileStore::default_location()?));
//! let client = ().serve(mcpauth_rmcp::transport(Arc::new(session))?).await?;
//! let tools = client.list_all_tools().await?;
//! # Ok(()) }
//! ```
//!
//! Responses are turned into what rmcp's transport expects the way rmcp's own reqwest client
//! does (its helpers are private to rmcp), with the same body limits.
//!
//! [`AuthenticatedClient`]: mcpauth_client::authed::AuthenticatedClient

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use mcpauth_client::authed::AuthenticatedClient;
use mcpauth_client::session::Session;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use rmcp::model::ClientJsonRpcMessage;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::{
    SseError, StreamableHttpClient, StreamableHttpClientTransportConfig, StreamableHttpError,
    StreamableHttpPostResponse, StreamableHttpResponseLimits,
};
use sse_stream::Sse;

mod error;
mod response;
mod sse;

pub use error::Error;

/// The `Mcp-Session-Id` header (MCP Streamable HTTP transport, "Session Management").
const SESSION_ID: &str = "mcp-session-id";
/// The `Last-Event-ID` header that resumes a stream (MCP Streamable HTTP transport,
/// "Resumability and Redelivery").
const LAST_EVENT_ID: &str = "last-event-id";
/// What every request accepts, as rmcp's own client sends it (MCP Streamable HTTP transport,
/// "Sending Messages to the Server": both types listed).
const ACCEPT_BOTH: &str = "text/event-stream, application/json";
/// Connection timeout of the default HTTP client. There is no overall timeout: an event stream
/// lives as long as the MCP session.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Request headers the transport's custom headers may not set: rmcp's own reserved ones
/// (`MCP-Protocol-Version` passes, rmcp sets it after initialization) and the credentials,
/// which come from the session alone.
const RESERVED: [&str; 5] = ["accept", SESSION_ID, LAST_EVENT_ID, "authorization", "dpop"];

/// rmcp's [`StreamableHttpClient`] over a [`Session`]: each request carries the session's
/// credentials and goes through its 401/403 handling (see the [crate] documentation).
///
/// Cheap to clone (rmcp clones it for every stream reconnection).
#[derive(Clone)]
pub struct SessionHttpClient {
    authed: AuthenticatedClient,
}

impl std::fmt::Debug for SessionHttpClient {
    // Never the tokens: only which server this client speaks to.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionHttpClient")
            .field("server_url", &self.session().config().server_url)
            .finish_non_exhaustive()
    }
}

impl SessionHttpClient {
    /// A client for the session's MCP server over a new HTTP client that follows no redirects
    /// (a token and a proof are for one URL: RFC 9449 §4.2 `htu`) and gives up connecting
    /// after 10 s.
    pub fn new(session: Arc<Session>) -> Result<Self, Error> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("mcpauth-rmcp/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(Error::HttpClient)?;
        Ok(Self::with_http(session, http))
    }

    /// A client over `http` (for proxies, extra root certificates, timeouts). Build it without
    /// redirects to other origins: they would carry the credentials elsewhere.
    pub fn with_http(session: Arc<Session>, http: reqwest::Client) -> Self {
        Self {
            authed: AuthenticatedClient::new(session, http),
        }
    }

    /// The session the credentials come from.
    pub fn session(&self) -> &Arc<Session> {
        self.authed.session()
    }

    /// Refuses what would send the session's tokens anywhere but its own MCP server (MCP
    /// "Token Audience Binding and Validation", RFC 8707) or beside a second credential.
    fn check(
        &self,
        uri: &str,
        auth_header: Option<&str>,
    ) -> Result<(), StreamableHttpError<Error>> {
        if auth_header.is_some() {
            return Err(StreamableHttpError::Client(Error::StaticAuthHeader));
        }
        let server = &self.session().config().server_url;
        let same = match (reqwest::Url::parse(uri), reqwest::Url::parse(server)) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        if !same {
            return Err(StreamableHttpError::Client(Error::OtherServer {
                session: server.clone(),
                requested: uri.to_owned(),
            }));
        }
        Ok(())
    }

    /// Sends the request `build` makes through the session's 401/403 loop.
    async fn send<F>(&self, build: F) -> Result<reqwest::Response, StreamableHttpError<Error>>
    where
        F: Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    {
        self.authed
            .send(build)
            .await
            .map_err(|e| StreamableHttpError::Client(Error::Session(e)))
    }
}

/// rmcp's custom headers as a header map, refusing the [`RESERVED`] ones.
fn custom(
    headers: HashMap<HeaderName, HeaderValue>,
) -> Result<HeaderMap, StreamableHttpError<Error>> {
    let mut map = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        if RESERVED
            .iter()
            .any(|r| name.as_str().eq_ignore_ascii_case(r))
        {
            return Err(StreamableHttpError::ReservedHeaderConflict(
                name.to_string(),
            ));
        }
        map.insert(name, value);
    }
    Ok(map)
}

impl StreamableHttpClient for SessionHttpClient {
    type Error = Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Error>> {
        let limits = StreamableHttpResponseLimits::default();
        self.post_message_with_response_limits(
            uri,
            message,
            session_id,
            auth_header,
            custom_headers,
            limits,
        )
        .await
    }

    async fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Error>> {
        let mut limits = StreamableHttpResponseLimits::default();
        limits.max_sse_event_size = max_sse_event_size;
        self.post_message_with_response_limits(
            uri,
            message,
            session_id,
            auth_header,
            custom_headers,
            limits,
        )
        .await
    }

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Error>> {
        self.check(&uri, auth_header.as_deref())?;
        let headers = custom(custom_headers)?;
        // Serialized once: every replay sends the same bytes.
        let body = Bytes::from(serde_json::to_vec(&message)?);
        let response = self
            .send(|http| {
                let mut request = http
                    .post(&*uri)
                    .header(ACCEPT, ACCEPT_BOTH)
                    .header(CONTENT_TYPE, "application/json")
                    .headers(headers.clone())
                    .body(body.clone());
                if let Some(id) = &session_id {
                    request = request.header(SESSION_ID, &**id);
                }
                request
            })
            .await?;
        response::post(response, &message, session_id.is_some(), limits).await
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), StreamableHttpError<Error>> {
        self.check(&uri, auth_header.as_deref())?;
        let headers = custom(custom_headers)?;
        let response = self
            .send(|http| {
                http.delete(&*uri)
                    .headers(headers.clone())
                    .header(SESSION_ID, &*session_id)
            })
            .await?;
        response::delete(&response)
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, StreamableHttpError<Error>> {
        let max = StreamableHttpResponseLimits::default().max_sse_event_size;
        self.get_stream_with_max_sse_event_size(
            uri,
            session_id,
            last_event_id,
            auth_header,
            custom_headers,
            max,
        )
        .await
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, StreamableHttpError<Error>> {
        self.check(&uri, auth_header.as_deref())?;
        let headers = custom(custom_headers)?;
        let response = self
            .send(|http| {
                let mut request = http
                    .get(&*uri)
                    .header(ACCEPT, ACCEPT_BOTH)
                    .headers(headers.clone());
                if let Some(id) = &session_id {
                    request = request.header(SESSION_ID, &**id);
                }
                if let Some(id) = &last_event_id {
                    request = request.header(LAST_EVENT_ID, id);
                }
                request
            })
            .await?;
        response::stream(response, max_sse_event_size)
    }
}

/// rmcp's Streamable HTTP client transport to the session's MCP server
/// ([`SessionConfig::server_url`]) with rmcp's default settings, over
/// [`SessionHttpClient::new`]. For other settings, pass a [`SessionHttpClient`] and your own
/// [`StreamableHttpClientTransportConfig`] (with that same URI, and no `auth_header`) to
/// [`StreamableHttpClientTransport::with_client`].
///
/// [`SessionConfig::server_url`]: mcpauth_client::session::SessionConfig::server_url
pub fn transport(
    session: Arc<Session>,
) -> Result<StreamableHttpClientTransport<SessionHttpClient>, Error> {
    let uri = session.config().server_url.clone();
    let client = SessionHttpClient::new(session)?;
    Ok(StreamableHttpClientTransport::with_client(
        client,
        StreamableHttpClientTransportConfig::with_uri(uri),
    ))
}
