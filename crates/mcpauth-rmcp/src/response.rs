//! What rmcp's transport is told about a response the session's 401/403 loop has let through.
//! The rules are those of rmcp 3.11's own reqwest client (whose helpers are private to rmcp),
//! so the transport behaves the same over [`SessionHttpClient`](crate::SessionHttpClient):
//! session expiry, HTTP 429/5xx metadata, JSON-RPC errors in 4xx/5xx bodies, the `server/discover`
//! fallback of older servers, body limits and content types.

use std::borrow::Cow;

use futures::stream::BoxStream;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use rmcp::model::{
    ClientJsonRpcMessage, ClientRequest, ErrorData, JsonRpcMessage, ServerJsonRpcMessage,
};
use rmcp::transport::streamable_http_client::{
    HttpStatusError, SseError, StreamableHttpError, StreamableHttpPostResponse,
    StreamableHttpResponseLimits,
};
use sse_stream::Sse;

use crate::{Error, SESSION_ID, sse};

type Failure = StreamableHttpError<Error>;

const EVENT_STREAM: &str = "text/event-stream";
const JSON: &str = "application/json";
/// Bytes of an unparsable JSON body quoted in an error.
const PREVIEW: usize = 256;

/// Whether a `Content-Type` names `expected`, ignoring case and parameters (RFC 9110 §8.3.1).
fn media_type_is(value: Option<&HeaderValue>, expected: &str) -> bool {
    value
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case(expected))
}

/// The final 401 or 403 as an error (RFC 6750 §3.1: a 403 other than `insufficient_scope`, or
/// a 401 the session could not answer, is the server's last word).
fn refused(response: &reqwest::Response) -> Option<Failure> {
    let status = response.status();
    if status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN {
        return None;
    }
    let www_authenticate = response
        .headers()
        .get(WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().filter(|c| !c.is_control()).take(512).collect());
    Some(StreamableHttpError::Client(Error::Refused {
        status: status.as_u16(),
        www_authenticate,
    }))
}

/// HTTP 429 and 5xx as rmcp's body-free status error, with a raw `Retry-After`.
fn status_error(response: &reqwest::Response) -> Option<HttpStatusError> {
    let status = response.status();
    if status != StatusCode::TOO_MANY_REQUESTS && !status.is_server_error() {
        return None;
    }
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Some(HttpStatusError::new(status.as_u16(), retry_after))
}

/// The whole body, refused past `max` bytes (counted before parsing).
async fn read_bounded(response: &mut reqwest::Response, max: usize) -> Result<Vec<u8>, Failure> {
    let too_large = || StreamableHttpError::ResponseBodyTooLarge { max_size: max };
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| StreamableHttpError::Client(Error::Body(e)))?
    {
        if chunk.len() > max - body.len() {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// At most `max` bytes of the body, for a diagnostic; the rest is not read.
async fn read_prefix(response: &mut reqwest::Response, max: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < max {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let n = chunk.len().min(max - body.len());
                body.extend_from_slice(&chunk[..n]);
            }
            Ok(None) => break,
            Err(_) if body.is_empty() => return b"<failed to read response body>".to_vec(),
            Err(_) => break,
        }
    }
    body
}

fn text(body: &[u8]) -> String {
    String::from_utf8_lossy(body).into_owned()
}

/// A failed `server/discover` without a session: older servers refuse the method with some
/// 4xx. Handed to rmcp as a JSON-RPC error with the request's id (the server's own error when
/// the body has one), so rmcp falls back to the older lifecycle. 401 and 403 keep their path.
fn legacy_discover(
    message: &ClientJsonRpcMessage,
    session_was_attached: bool,
    status: StatusCode,
    body: &[u8],
) -> Option<StreamableHttpPostResponse> {
    if session_was_attached
        || !status.is_client_error()
        || matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)
    {
        return None;
    }
    let JsonRpcMessage::Request(request) = message else {
        return None;
    };
    if !matches!(request.request, ClientRequest::DiscoverRequest(_)) {
        return None;
    }
    let error = match serde_json::from_slice::<ServerJsonRpcMessage>(body) {
        Ok(JsonRpcMessage::Error(error)) => error.error,
        _ => ErrorData::invalid_request(
            format!(
                "server/discover rejected with HTTP {status}: {}",
                text(body)
            ),
            None,
        ),
    };
    Some(StreamableHttpPostResponse::Json(
        ServerJsonRpcMessage::error(error, Some(request.id.clone())),
        None,
    ))
}

/// The answer to a POST of `message` (MCP Streamable HTTP transport, "Sending Messages to the
/// Server").
pub(crate) async fn post(
    mut response: reqwest::Response,
    message: &ClientJsonRpcMessage,
    session_was_attached: bool,
    limits: StreamableHttpResponseLimits,
) -> Result<StreamableHttpPostResponse, Failure> {
    if let Some(refused) = refused(&response) {
        return Err(refused);
    }
    let status = response.status();
    if matches!(status, StatusCode::ACCEPTED | StatusCode::NO_CONTENT) {
        return Ok(StreamableHttpPostResponse::Accepted);
    }
    // "The server MAY terminate the session at any time, after which it MUST respond to
    // requests containing that session ID with HTTP 404 Not Found."
    if status == StatusCode::NOT_FOUND && session_was_attached {
        return Err(StreamableHttpError::SessionExpired);
    }
    let content_type = response.headers().get(CONTENT_TYPE).cloned();
    let is_json = media_type_is(content_type.as_ref(), JSON);
    let status_error = status_error(&response);
    if let Some(error) = status_error.as_ref()
        && (!is_json || status == StatusCode::TOO_MANY_REQUESTS)
    {
        return Err(HttpStatusError::new(error.status, error.retry_after.clone()).into());
    }
    let session_id = response
        .headers()
        .get(SESSION_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // Notifications, responses and errors wait for no reply.
    let awaits_no_response = !matches!(message, JsonRpcMessage::Request(_));
    if status.is_success() && response.content_length() == Some(0) && awaits_no_response {
        return Ok(StreamableHttpPostResponse::Accepted);
    }
    if !status.is_success() {
        let body = if is_json {
            match read_bounded(&mut response, limits.max_json_response_size).await {
                Ok(body) => {
                    if let Ok(error @ JsonRpcMessage::Error(_)) =
                        serde_json::from_slice::<ServerJsonRpcMessage>(&body)
                    {
                        return Ok(
                            legacy_discover(message, session_was_attached, status, &body)
                                .unwrap_or(StreamableHttpPostResponse::Json(error, session_id)),
                        );
                    }
                    body[..body.len().min(limits.max_error_response_size)].to_vec()
                }
                Err(too_large @ StreamableHttpError::ResponseBodyTooLarge { .. }) => {
                    return Err(status_error.map(Into::into).unwrap_or(too_large));
                }
                Err(_) => b"<failed to read response body>".to_vec(),
            }
        } else {
            read_prefix(&mut response, limits.max_error_response_size).await
        };
        if let Some(answer) = legacy_discover(message, session_was_attached, status, &body) {
            return Ok(answer);
        }
        if let Some(error) = status_error {
            return Err(error.into());
        }
        return Err(StreamableHttpError::UnexpectedServerResponse(Cow::Owned(
            format!("HTTP {status}: {}", text(&body)),
        )));
    }
    if media_type_is(content_type.as_ref(), EVENT_STREAM) {
        let events = sse::events(response, limits.max_sse_event_size);
        return Ok(StreamableHttpPostResponse::Sse(events, session_id));
    }
    if is_json {
        let body = read_bounded(&mut response, limits.max_json_response_size).await?;
        return match serde_json::from_slice::<ServerJsonRpcMessage>(&body) {
            Ok(parsed) => Ok(StreamableHttpPostResponse::Json(parsed, session_id)),
            Err(_) if awaits_no_response => Ok(StreamableHttpPostResponse::Accepted),
            Err(e) => Err(StreamableHttpError::UnexpectedServerResponse(Cow::Owned(
                format!(
                    "could not parse JSON response as ServerJsonRpcMessage: {e}: {}",
                    text(&body[..body.len().min(PREVIEW)])
                ),
            ))),
        };
    }
    if awaits_no_response {
        // Nothing in the body is needed; some servers answer a notification with a bare 200.
        return Ok(StreamableHttpPostResponse::Accepted);
    }
    Err(StreamableHttpError::UnexpectedContentType(
        content_type.map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
    ))
}

/// The answer to the GET that opens the server's event stream (MCP Streamable HTTP transport,
/// "Listening for Messages from the Server": 405 when the server offers none).
pub(crate) fn stream(
    response: reqwest::Response,
    max_event_bytes: usize,
) -> Result<BoxStream<'static, Result<Sse, SseError>>, Failure> {
    let status = response.status();
    if status == StatusCode::METHOD_NOT_ALLOWED {
        return Err(StreamableHttpError::ServerDoesNotSupportSse);
    }
    if let Some(refused) = refused(&response) {
        return Err(refused);
    }
    if let Some(error) = status_error(&response) {
        return Err(error.into());
    }
    if !status.is_success() {
        return Err(StreamableHttpError::Client(Error::Status {
            method: "GET",
            status: status.as_u16(),
        }));
    }
    let content_type = response.headers().get(CONTENT_TYPE);
    if !media_type_is(content_type, EVENT_STREAM) && !media_type_is(content_type, JSON) {
        return Err(StreamableHttpError::UnexpectedContentType(
            content_type.map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
        ));
    }
    Ok(sse::events(response, max_event_bytes))
}

/// The answer to the DELETE that ends the MCP session (MCP Streamable HTTP transport, "Session
/// Management": 405 when the server does not let clients end sessions).
pub(crate) fn delete(response: &reqwest::Response) -> Result<(), Failure> {
    let status = response.status();
    if status == StatusCode::METHOD_NOT_ALLOWED || status.is_success() {
        return Ok(());
    }
    if let Some(refused) = refused(response) {
        return Err(refused);
    }
    Err(StreamableHttpError::Client(Error::Status {
        method: "DELETE",
        status: status.as_u16(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, headers: &[(&str, &str)], body: &'static str) -> reqwest::Response {
        let mut builder = http_response(status);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        reqwest::Response::from(builder.body(body).unwrap())
    }

    fn http_response(status: u16) -> http::response::Builder {
        http::Response::builder().status(status)
    }

    fn request(method: &str) -> ClientJsonRpcMessage {
        serde_json::from_value(serde_json::json!({
            "jsonrpc": "2.0", "id": 7, "method": method, "params": {}
        }))
        .unwrap()
    }

    fn notification() -> ClientJsonRpcMessage {
        serde_json::from_value(serde_json::json!({
            "jsonrpc": "2.0", "method": "notifications/initialized"
        }))
        .unwrap()
    }

    async fn answer(
        r: reqwest::Response,
        m: &ClientJsonRpcMessage,
        session: bool,
    ) -> Result<StreamableHttpPostResponse, Failure> {
        post(r, m, session, StreamableHttpResponseLimits::default()).await
    }

    #[tokio::test]
    async fn a_json_answer_is_parsed_and_keeps_the_session_id() {
        let body = r#"{"jsonrpc":"2.0","id":7,"result":{}}"#;
        let r = response(
            200,
            &[
                ("content-type", "Application/JSON; charset=utf-8"),
                (SESSION_ID, "s-1"),
            ],
            body,
        );
        match answer(r, &request("ping"), false).await.unwrap() {
            StreamableHttpPostResponse::Json(JsonRpcMessage::Response(_), Some(id)) => {
                assert_eq!(id, "s-1")
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn accepted_not_found_and_rate_limits_map_to_rmcps_variants() {
        let r = response(202, &[], "");
        assert!(matches!(
            answer(r, &notification(), true).await,
            Ok(StreamableHttpPostResponse::Accepted)
        ));
        let r = response(200, &[("content-type", "text/plain")], "ok");
        assert!(matches!(
            answer(r, &notification(), true).await,
            Ok(StreamableHttpPostResponse::Accepted)
        ));
        let r = response(404, &[], "");
        assert!(matches!(
            answer(r, &request("ping"), true).await,
            Err(StreamableHttpError::SessionExpired)
        ));
        let r = response(429, &[("retry-after", "3")], "slow down");
        match answer(r, &request("ping"), true).await {
            Err(StreamableHttpError::HttpStatus(e)) => {
                assert_eq!((e.status, e.retry_after.as_deref()), (429, Some("3")))
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_json_rpc_error_in_a_4xx_body_reaches_the_caller() {
        let body = r#"{"jsonrpc":"2.0","id":7,"error":{"code":-32600,"message":"no"}}"#;
        let r = response(400, &[("content-type", "application/json")], body);
        assert!(matches!(
            answer(r, &request("ping"), true).await,
            Ok(StreamableHttpPostResponse::Json(
                JsonRpcMessage::Error(_),
                _
            ))
        ));
        let r = response(400, &[("content-type", "text/plain")], "bad request");
        match answer(r, &request("ping"), true).await {
            Err(StreamableHttpError::UnexpectedServerResponse(text)) => {
                assert!(
                    text.contains("400") && text.contains("bad request"),
                    "{text}"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn an_older_servers_refusal_of_discover_gets_the_request_id() {
        let r = response(400, &[("content-type", "text/plain")], "unknown method");
        match answer(r, &request("server/discover"), false).await {
            Ok(StreamableHttpPostResponse::Json(JsonRpcMessage::Error(e), None)) => {
                assert_eq!(e.id, Some(rmcp::model::RequestId::Number(7)));
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_final_403_is_refused_with_its_challenge() {
        let challenge = r#"Bearer error="invalid_token""#;
        let r = response(403, &[("www-authenticate", challenge)], "");
        match answer(r, &request("ping"), true).await {
            Err(StreamableHttpError::Client(Error::Refused {
                status: 403,
                www_authenticate: Some(c),
            })) => assert_eq!(c, challenge),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn bodies_past_the_limit_are_refused() {
        let mut limits = StreamableHttpResponseLimits::default();
        limits.max_json_response_size = 8;
        let body = r#"{"jsonrpc":"2.0","id":7,"result":{}}"#;
        let r = response(200, &[("content-type", "application/json")], body);
        assert!(matches!(
            post(r, &request("ping"), true, limits).await,
            Err(StreamableHttpError::ResponseBodyTooLarge { max_size: 8 })
        ));
    }

    #[test]
    fn get_and_delete_statuses() {
        let r = response(405, &[], "");
        assert!(matches!(
            stream(r, 1024),
            Err(StreamableHttpError::ServerDoesNotSupportSse)
        ));
        let r = response(200, &[("content-type", "text/html")], "");
        assert!(matches!(
            stream(r, 1024),
            Err(StreamableHttpError::UnexpectedContentType(Some(_)))
        ));
        assert!(delete(&response(405, &[], "")).is_ok());
        assert!(matches!(
            delete(&response(500, &[], "")),
            Err(StreamableHttpError::Client(Error::Status {
                method: "DELETE",
                status: 500
            }))
        ));
    }
}
