//! A response body as the `text/event-stream` events rmcp reads (WHATWG HTML §9.2.6), parsed by
//! mcpauth-client's [`SseParser`] with rmcp's per-event size limit.
//!
//! rmcp stops reading a stream for good after an oversized event only when the error is its own
//! (private) one; after [`Error::EventTooLarge`] it treats the stream as broken and may
//! reconnect by its retry policy, with `Last-Event-ID` when it has one.

use std::collections::VecDeque;

use futures::StreamExt;
use futures::stream::BoxStream;
use mcpauth_client::sse::{SseEvent, SseParser};
use rmcp::transport::streamable_http_client::SseError;
use sse_stream::Sse;

use crate::Error;

struct Reading {
    response: reqwest::Response,
    parser: SseParser,
    ready: VecDeque<SseEvent>,
    max_event_bytes: usize,
}

fn to_sse(event: SseEvent) -> Sse {
    Sse {
        event: event.event,
        data: (!event.data.is_empty()).then_some(event.data),
        id: event.id,
        retry: event.retry,
    }
}

/// The events of `response`. An event larger than `max_event_bytes`, or a broken connection,
/// ends the stream with an error.
pub(crate) fn events(
    response: reqwest::Response,
    max_event_bytes: usize,
) -> BoxStream<'static, Result<Sse, SseError>> {
    let start = Reading {
        response,
        parser: SseParser::with_max_event_bytes(max_event_bytes),
        ready: VecDeque::new(),
        max_event_bytes,
    };
    futures::stream::unfold(Some(start), |state| async move {
        let mut s = state?;
        loop {
            // The parser bounds what it holds between chunks; an event that arrived whole in
            // one chunk is measured here.
            let failure = match s.ready.pop_front() {
                Some(event) if event.data.len() <= s.max_event_bytes => {
                    return Some((Ok(to_sse(event)), Some(s)));
                }
                Some(_) => Error::EventTooLarge {
                    limit: s.max_event_bytes,
                },
                None => match s.response.chunk().await {
                    Ok(Some(bytes)) => match s.parser.push(&bytes) {
                        Ok(events) => {
                            s.ready.extend(events);
                            continue;
                        }
                        // The parser's only error is an event past the limit.
                        Err(_) => Error::EventTooLarge {
                            limit: s.max_event_bytes,
                        },
                    },
                    Ok(None) => return None,
                    Err(e) => Error::Body(e),
                },
            };
            return Some((Err(SseError::Body(Box::new(failure))), None));
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(text: &'static str) -> reqwest::Response {
        reqwest::Response::from(http::Response::new(text))
    }

    #[tokio::test]
    async fn events_keep_their_fields() {
        let text = "id: 1\nretry: 500\n\n: keep-alive\nevent: message\ndata: {\"a\":\ndata: 1}\n\n";
        let events: Vec<_> = events(body(text), 1024).collect().await;
        let events: Vec<Sse> = events.into_iter().map(Result::unwrap).collect();
        assert_eq!(events.len(), 2);
        assert_eq!(
            (
                events[0].id.as_deref(),
                events[0].retry,
                events[0].data.as_deref()
            ),
            (Some("1"), Some(500), None)
        );
        assert_eq!(events[1].event.as_deref(), Some("message"));
        assert_eq!(events[1].data.as_deref(), Some("{\"a\":\n1}"));
    }

    #[tokio::test]
    async fn an_event_past_the_limit_ends_the_stream_with_an_error() {
        let text = "data: 0123456789abcdef0123456789abcdef\n\ndata: next\n\n";
        let mut stream = events(body(text), 16);
        match stream.next().await {
            Some(Err(SseError::Body(e))) => assert!(e.to_string().contains("16 bytes"), "{e}"),
            other => panic!("{other:?}"),
        }
        assert!(stream.next().await.is_none());
    }
}
