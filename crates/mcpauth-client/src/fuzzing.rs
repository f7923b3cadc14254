//! Fuzz-target bodies for what this crate parses from servers besides the documents of
//! `mcpauth-core`. Not a public API: the cargo-fuzz targets under `fuzz/` and the corpus replay
//! tests call these same functions (see `mcpauth_core::fuzzing`).

use crate::sse::{SseEvent, SseParser};

/// A `text/event-stream` body, fed to [`SseParser`] whole, split in two at a point the first
/// byte picks, and byte by byte: the events must not depend on how the bytes arrived, and an
/// event `id` never holds NUL (WHATWG HTML §9.2.6).
pub fn sse(data: &[u8]) {
    // Fuzz inputs are far below the parser's event limit.
    let push = |p: &mut SseParser, bytes: &[u8]| p.push(bytes).expect("within the event limit");
    let whole = push(&mut SseParser::default(), data);
    let split = data
        .first()
        .map_or(0, |&b| usize::from(b) % (data.len() + 1));
    let mut p = SseParser::default();
    let mut halves = push(&mut p, &data[..split]);
    halves.extend(push(&mut p, &data[split..]));
    assert_eq!(halves, whole);
    if data.len() <= 512 {
        let mut p = SseParser::default();
        let bytewise: Vec<SseEvent> = data.iter().flat_map(|b| push(&mut p, &[*b])).collect();
        assert_eq!(bytewise, whole);
    }
    for event in &whole {
        assert!(!event.id.as_deref().unwrap_or_default().contains('\0'));
    }
}
