//! Incremental `text/event-stream` parsing (WHATWG HTML §9.2.6), as MCP's Streamable HTTP
//! transport uses it: `data` lines joined per event, with the event `id` (for `Last-Event-ID`
//! resumption) and the server's `retry` delay.
//!
//! ```
//! use mcpauth_client::sse::SseParser;
//! let mut p = SseParser::default();
//! let events = p.push(b"id: 7\nretry: 500\ndata: {\"a\":\ndata: 1}\n\n");
//! assert_eq!(events[0].data, "{\"a\":\n1}");
//! assert_eq!((events[0].id.as_deref(), events[0].retry), (Some("7"), Some(500)));
//! ```

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

/// Feeds bytes in, takes complete events out.
#[derive(Debug, Default)]
pub struct SseParser {
    buffer: Vec<u8>,
    current: SseEvent,
    has_data: bool,
}

impl SseParser {
    /// Adds `bytes`; returns the events they completed.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        self.buffer.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(pos) = self.buffer.iter().position(|&b| b == b'\n') {
            let raw: Vec<u8> = self.buffer.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&raw);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                let event = std::mem::take(&mut self.current);
                if self.has_data || event.id.is_some() || event.retry.is_some() {
                    out.push(event);
                }
                self.has_data = false;
                continue;
            }
            if line.starts_with(':') {
                continue;
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
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_and_crlf() {
        let mut p = SseParser::default();
        assert!(p.push(b"event: message\r\ndata: {\"x\"").is_empty());
        let e = p.push(b":1}\r\n\r\n: comment\n\ndata\n\n");
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].data, "{\"x\":1}");
        assert_eq!(e[0].event.as_deref(), Some("message"));
        assert_eq!(e[1].data, "");
    }

    #[test]
    fn id_only_events_update_the_resume_point() {
        let mut p = SseParser::default();
        let e = p.push(b"id: 42\n\n");
        assert_eq!(
            e,
            vec![SseEvent {
                id: Some("42".into()),
                ..Default::default()
            }]
        );
    }
}
