//! The audit log's file (`--audit-log`). A request that emits an event copies its JSON line
//! ([`crate::audit_json`]) into a buffer; a thread of its own writes the buffer out, all lines
//! gathered since its last write in one `write(2)`: at once when it was idle, else [`BATCH`]
//! after its last write. Before, each request wrote its line itself under a lock, waiting for the
//! system call; writing each line from the thread at once cost more CPU than that (a wake-up and a
//! system call per line). Lines are never reordered or interleaved, and the buffer is written out
//! when the process ends ([`AuditFile::flush`]). A crash loses at most the lines of the last
//! [`BATCH`].

use std::fs::File;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

/// The longest a line waits for the writing thread while it is busy (the most a crash loses).
pub const BATCH: std::time::Duration = std::time::Duration::from_millis(50);

/// Past this many bytes waiting (a disk slower than the events), a request writes them itself:
/// the memory held stays bounded and the requests are slowed instead.
const MAX_PENDING: usize = 4 << 20;

/// The audit log's file, written by a thread of its own ([`crate::audit_json`] makes the lines).
#[derive(Clone, Debug)]
pub struct AuditFile(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    /// Lines not written yet.
    pending: Mutex<Vec<u8>>,
    /// Signalled when `pending` stops being empty.
    dirty: Condvar,
    /// The file; held while taking `pending` and writing it, so writes keep their order.
    file: Mutex<File>,
    /// A write error was reported on stderr (once).
    reported: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// Writes what is pending (under the file's lock, taken first).
    fn write_out(&self) {
        let mut file = lock(&self.file);
        let lines = std::mem::take(&mut *lock(&self.pending));
        if lines.is_empty() {
            return;
        }
        if let Err(e) = file.write_all(&lines)
            && !self.reported.swap(true, Ordering::Relaxed)
        {
            eprintln!("mcpauth: cannot write the audit log: {e}; audit events are being lost");
        }
    }
}

impl AuditFile {
    /// Writes the audit log to `file` (opened for appending) from a thread of its own.
    pub fn new(file: File) -> io::Result<Self> {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Vec::with_capacity(64 * 1024)),
            dirty: Condvar::new(),
            file: Mutex::new(file),
            reported: AtomicBool::new(false),
        });
        let writer = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("audit-log".into())
            .spawn(move || {
                loop {
                    {
                        let pending = lock(&writer.pending);
                        let _waiting = writer
                            .dirty
                            .wait_while(pending, |p| p.is_empty())
                            .unwrap_or_else(PoisonError::into_inner);
                    }
                    writer.write_out();
                    // Lines arriving meanwhile go out together.
                    std::thread::sleep(BATCH);
                }
            })?;
        Ok(Self(shared))
    }

    /// Writes out every line emitted so far (at exit).
    pub fn flush(&self) {
        self.0.write_out();
    }

    /// Adds one line (with its newline) for the thread to write.
    pub fn write_line(&self, line: &[u8]) {
        let full = {
            let mut pending = lock(&self.0.pending);
            let was_empty = pending.is_empty();
            pending.extend_from_slice(line);
            if was_empty {
                self.0.dirty.notify_one();
            }
            pending.len() > MAX_PENDING
        };
        if full {
            self.0.write_out();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn audit_file() -> (tempfile::TempDir, std::path::PathBuf, AuditFile) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let file = File::create(&path).unwrap();
        (dir, path, AuditFile::new(file).unwrap())
    }

    /// Lines from many threads arrive whole and each once; `flush` leaves nothing behind.
    #[test]
    fn lines_from_many_threads_arrive_whole_and_once() {
        let (_dir, path, audit) = audit_file();
        std::thread::scope(|s| {
            for t in 0..8 {
                let audit = audit.clone();
                s.spawn(move || {
                    for i in 0..500 {
                        let line = format!(
                            "{{\"thread\":{t},\"i\":{i},\"pad\":\"{}\"}}\n",
                            "x".repeat(i % 90)
                        );
                        audit.write_line(line.as_bytes());
                    }
                });
            }
        });
        audit.flush();
        let text = std::fs::read_to_string(&path).unwrap();
        let mut seen = std::collections::HashSet::new();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(
                seen.insert((v["thread"].as_u64(), v["i"].as_u64())),
                "twice: {line}"
            );
        }
        assert_eq!(seen.len(), 8 * 500);
    }

    /// The writing thread writes a line out without anyone flushing (a crash loses little).
    #[test]
    fn a_line_reaches_the_file_without_a_flush() {
        let (_dir, path, audit) = audit_file();
        audit.write_line(b"{\"event\":\"x\"}\n");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::fs::read_to_string(&path).unwrap().is_empty() {
            assert!(std::time::Instant::now() < deadline, "not written in 10 s");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"event\":\"x\"}\n"
        );
    }
}
