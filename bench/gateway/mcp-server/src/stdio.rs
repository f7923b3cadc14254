//! The stdio transport (MCP basic/transports §stdio): one JSON-RPC message per line on stdin,
//! one answer per request line on stdout, nothing else on stdout. Notifications (no `id`) get
//! no answer (JSON-RPC 2.0 §4.1); a line that is not JSON gets a parse error with a null id
//! (JSON-RPC 2.0 §5.1). Answers are flushed once no further request is already buffered, so a
//! client that pipelines requests gets its answers in few writes, as from any buffered server.

use std::io::{self, BufRead, BufReader, BufWriter, Write};

use serde_json::{Value, json};

use crate::handler;

/// Serves stdin until it closes.
pub fn serve() -> io::Result<()> {
    // Its own buffer (larger than stdin's, which then reads straight into it), to see whether
    // another request is already buffered.
    let mut input = BufReader::with_capacity(1 << 16, io::stdin().lock());
    let mut output = BufWriter::new(io::stdout().lock());
    let mut line = String::new();
    loop {
        line.clear();
        if input.read_line(&mut line)? == 0 {
            return output.flush();
        }
        let text = line.trim();
        if !text.is_empty() {
            let answer = match serde_json::from_str::<Value>(text) {
                Ok(req) if req.get("id").is_none() => None,
                Ok(req) => Some(handler::answer(&req)),
                Err(_) => Some(json!({"jsonrpc": "2.0", "id": null,
                    "error": {"code": -32700, "message": "parse error"}})),
            };
            if let Some(answer) = answer {
                serde_json::to_writer(&mut output, &answer)?;
                output.write_all(b"\n")?;
            }
        }
        if input.buffer().is_empty() {
            output.flush()?;
        }
    }
}
