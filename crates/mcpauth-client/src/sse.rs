//! Incremental `text/event-stream` parsing (WHATWG HTML §9.2.6), as MCP's Streamable HTTP
//! transport uses it: `data` lines joined per event, with the event `id` (for `Last-Event-ID`
//! resumption) and the server's `retry` delay.
//!
//! ```
//! use mcpauth_client::sse::SseParser;
//! let mut p = SseParser::default();
//! let events = p.push(b"id: 7\nretry: 500\ndata: {\"a\":\ndata: 1}\n\n").unwrap();
//! assert_eq!(events[0].data, "{\"a\":\n1}");
//! assert_eq!((events[0].id.as_deref(), events[0].retry), (Some("7"), Some(500)));
//! ```

use std::time::Duration;

use crate::ClientError;

/// One dispatched event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event` type, if any (`message` when absent).
    pub event: Option<String>,
    /// The `data` lines joined with `\n`.
    pub data: String,
    /// The `id`, if the event set one.
    pub id: Option<String>,
    /// A `retry` delay in milliseconds, if the event carried one.
    pub retry: Option<u64>,
}

/// The default limit on one event (its pending line and data): 16 MiB, room for a large tool
/// result while a server cannot make the client hold unbounded memory.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// The shortest and longest reconnection delay taken from a server's `retry` field: a server
/// can neither make the client hammer it nor stall the stream for hours.
pub const RETRY_BOUNDS: (Duration, Duration) =
    (Duration::from_millis(250), Duration::from_secs(60));

/// The reconnection delay for a server's `retry` value in milliseconds, within [`RETRY_BOUNDS`].
pub fn retry_delay(ms: u64) -> Duration {
    Duration::from_millis(ms).clamp(RETRY_BOUNDS.0, RETRY_BOUNDS.1)
}

/// Feeds bytes in, takes complete events out. Each byte is scanned once, however the stream
/// is split into chunks, and one event may hold at most the configured number of bytes.
#[derive(Debug)]
pub struct SseParser {
    buffer: Vec<u8>,
    /// How much of `buffer` is known to hold no line end.
    scanned: usize,
    current: SseEvent,
    has_data: bool,
    max_event_bytes: usize,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::with_max_event_bytes(DEFAULT_MAX_EVENT_BYTES)
    }
}

impl SseParser {
    /// A parser that refuses events larger than `max` bytes.
    pub fn with_max_event_bytes(max: usize) -> Self {
        Self {
            buffer: Vec::new(),
            scanned: 0,
            current: SseEvent::default(),
            has_data: false,
            max_event_bytes: max,
        }
    }

    /// Adds `bytes`; returns the events they completed, or [`ClientError::EventTooLarge`] once an
    /// event outgrows the limit (the stream should then be dropped).
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, ClientError> {
        self.buffer.extend_from_slice(bytes);
        let mut out = Vec::new();
        let mut start = 0;
        while let Some(offset) = self.buffer[self.scanned.max(start)..]
            .iter()
            .position(|&b| b == b'\n')
        {
            let end = self.scanned.max(start) + offset;
            let line = String::from_utf8_lossy(&self.buffer[start..end]).into_owned();
            start = end + 1;
            self.scanned = start;
            self.line(line.trim_end_matches('\r'), &mut out);
        }
        self.buffer.drain(..start);
        self.scanned = self.buffer.len();
        if self.buffer.len() + self.current.data.len() > self.max_event_bytes {
            self.buffer.clear();
            self.scanned = 0;
            self.current = SseEvent::default();
            self.has_data = false;
            return Err(ClientError::EventTooLarge {
                limit: self.max_event_bytes,
            });
        }
        Ok(out)
    }

    /// Takes one line (without its line end).
    fn line(&mut self, line: &str, out: &mut Vec<SseEvent>) {
        if line.is_empty() {
            let event = std::mem::take(&mut self.current);
            if self.has_data || event.id.is_some() || event.retry.is_some() {
                out.push(event);
            }
            self.has_data = false;
            return;
        }
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.current.data.push('\n');
                }
                self.current.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.current.event = Some(value.to_owned()),
            "id" if !value.contains('\0') => self.current.id = Some(value.to_owned()),
            "retry" => self.current.retry = value.parse().ok(),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_and_crlf() {
        let mut p = SseParser::default();
        assert!(
            p.push(b"event: message\r\ndata: {\"x\"")
                .unwrap()
                .is_empty()
        );
        let e = p.push(b":1}\r\n\r\n: comment\n\ndata\n\n").unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].data, "{\"x\":1}");
        assert_eq!(e[0].event.as_deref(), Some("message"));
        assert_eq!(e[1].data, "");
    }

    #[test]
    fn id_only_events_update_the_resume_point() {
        let mut p = SseParser::default();
        let e = p.push(b"id: 42\n\n").unwrap();
        assert_eq!(
            e,
            vec![SseEvent {
                id: Some("42".into()),
                ..Default::default()
            }]
        );
    }

    #[test]
    fn review5_an_event_past_the_limit_is_refused() {
        let mut p = SseParser::with_max_event_bytes(64);
        // A line that never ends, in small chunks.
        let mut refused = false;
        for _ in 0..100 {
            if p.push(b"data: xxxxxxxxxx").is_err() {
                refused = true;
                break;
            }
        }
        assert!(refused, "the parser held an unbounded line");
        // Many data lines of one event count together.
        let mut p = SseParser::with_max_event_bytes(64);
        let r = p.push(&b"data: 0123456789\n".repeat(10));
        assert!(
            matches!(r, Err(ClientError::EventTooLarge { limit: 64 })),
            "{r:?}"
        );
        // Events within the limit pass, one after the other.
        let mut p = SseParser::with_max_event_bytes(64);
        let events = p.push(&b"data: 0123456789\n\n".repeat(20)).unwrap();
        assert_eq!(events.len(), 20);
    }

    #[test]
    fn review5_a_long_line_in_small_chunks_is_scanned_once() {
        // Byte by byte, a 1 MiB line: rescanning the buffer per chunk would be ~5e11 steps.
        let mut p = SseParser::default();
        for _ in 0..(1 << 20) {
            assert!(p.push(b"x").unwrap().is_empty());
        }
        assert_eq!(p.scanned, 1 << 20);
        let e = p.push(b"\n\n").unwrap();
        assert!(e.is_empty(), "a field named xxx… is ignored");
    }

    #[test]
    fn review5_retry_is_clamped() {
        assert_eq!(retry_delay(0), Duration::from_millis(250));
        assert_eq!(retry_delay(1500), Duration::from_millis(1500));
        assert_eq!(retry_delay(u64::MAX), Duration::from_secs(60));
    }
}
