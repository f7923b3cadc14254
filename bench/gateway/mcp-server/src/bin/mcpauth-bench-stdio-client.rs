//! The direct baseline of bench/gateway.sh's stdio mode: a local MCP client that spawns a stdio
//! server and drives it with the same `tools/call echo` as wrk sends through the gateway, as
//! fast as it can with a fixed number of requests in flight (pipelined, unique ids: JSON-RPC
//! 2.0 §4 lets a client send requests without waiting for answers).
//!
//!   mcpauth-bench-stdio-client [--warmup S] [--duration S] [--in-flight N] -- COMMAND ARGS…
//!
//! It sends `initialize` and `notifications/initialized` (MCP basic/lifecycle), then keeps N
//! `tools/call` requests in flight: one new request per answer. After the warm-up, for
//! `--duration` seconds, it counts the answers, records each one's latency (request written
//! to the answer read) and the CPU ticks (utime + stime, /proc/PID/stat) of itself and of the
//! server. It prints one line on stdout:
//!
//!   RESULT CALLS SECONDS P99_MS CLIENT_TICKS SERVER_TICKS
//!
//! and exits 1 on any wrong answer, a server that ends, or no answer for 30 s.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long the server may go without answering before the run fails.
const STALL: Duration = Duration::from_secs(30);

struct Args {
    warmup: f64,
    duration: f64,
    in_flight: usize,
    command: Vec<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        warmup: 3.0,
        duration: 10.0,
        in_flight: 32,
        command: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--warmup" => args.warmup = number(&value("--warmup")?)?,
            "--duration" => args.duration = number(&value("--duration")?)?,
            "--in-flight" => {
                args.in_flight = value("--in-flight")?
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or("--in-flight takes a positive integer")?;
            }
            "--" => {
                args.command = it.by_ref().collect();
                break;
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if args.command.is_empty() {
        return Err("no server command after --".into());
    }
    if args.duration <= 0.0 {
        return Err("--duration must be positive".into());
    }
    Ok(args)
}

fn number(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && *n >= 0.0)
        .ok_or(format!("not a number of seconds: {s:?}"))
}

/// utime + stime of a process, in clock ticks (proc(5): fields 14 and 15 of /proc/PID/stat).
fn cpu_ticks(pid: &str) -> io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces; the fields after it start at the last ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| io::Error::other("unexpected /proc/PID/stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| -> io::Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| io::Error::other("unexpected /proc/PID/stat"))
    };
    Ok(tick(11)? + tick(12)?)
}

fn tools_call(id: u64) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"hello"}}}}}}"#
    )
}

/// The id of a `tools/call` answer carrying the echoed text, or why it is not one.
fn echoed(line: &str) -> Result<u64, String> {
    let answer: Value = serde_json::from_str(line).map_err(|e| format!("not JSON ({e})"))?;
    let text = answer["result"]["content"][0]["text"].as_str();
    match (answer["id"].as_u64(), text) {
        (Some(id), Some(text)) if text.contains("hello") => Ok(id),
        _ => Err("not the echo of a tools/call".into()),
    }
}

fn run(args: &Args) -> Result<String, String> {
    let mut child = Command::new(&args.command[0])
        .args(&args.command[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start {:?}: {e}", args.command[0]))?;
    let server = child.id().to_string();
    let mut to = BufWriter::new(child.stdin.take().ok_or("no stdin")?);
    let mut from = BufReader::with_capacity(1 << 16, child.stdout.take().ok_or("no stdout")?);

    // A watchdog: a server that stops answering is killed, so the blocking read ends.
    let progress = Arc::new(AtomicBool::new(true));
    let (watch, pid) = (Arc::clone(&progress), server.clone());
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(STALL);
            if !watch.swap(false, Ordering::Relaxed) {
                eprintln!(
                    "mcpauth-bench-stdio-client: no answer for {STALL:?}; killing the server"
                );
                let _ = Command::new("kill").args(["-KILL", &pid]).status();
                return;
            }
        }
    });

    let io_err = |e: io::Error| format!("talking to the server: {e}");
    let mut line = String::new();
    let read = |from: &mut BufReader<_>, line: &mut String| -> Result<(), String> {
        line.clear();
        match from.read_line(line).map_err(io_err)? {
            0 => Err("the server closed its stdout".into()),
            _ => {
                progress.store(true, Ordering::Relaxed);
                Ok(())
            }
        }
    };
    writeln!(to, r#"{{"jsonrpc":"2.0","id":0,"method":"initialize","params":{{"protocolVersion":"2025-11-25","capabilities":{{}},"clientInfo":{{"name":"mcpauth-bench-stdio-client","version":"0"}}}}}}"#).map_err(io_err)?;
    to.flush().map_err(io_err)?;
    read(&mut from, &mut line)?;
    let init: Value = serde_json::from_str(&line).map_err(|_| format!("initialize: {line}"))?;
    if init["id"] != 0 || !init["result"].is_object() {
        return Err(format!("initialize failed: {}", line.trim()));
    }
    writeln!(
        to,
        r#"{{"jsonrpc":"2.0","method":"notifications/initialized"}}"#
    )
    .map_err(io_err)?;

    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let measure_to = measure_from + Duration::from_secs_f64(args.duration);
    let mut sent: HashMap<u64, Instant> = HashMap::with_capacity(args.in_flight * 2);
    let mut next_id = 1u64;
    for _ in 0..args.in_flight {
        writeln!(to, "{}", tools_call(next_id)).map_err(io_err)?;
        sent.insert(next_id, Instant::now());
        next_id += 1;
    }
    to.flush().map_err(io_err)?;

    let mut window: Option<(Instant, u64, u64)> = None;
    let mut latencies_us: Vec<u64> = Vec::new();
    let mut end: Option<(Instant, u64, u64)> = None;
    while !sent.is_empty() {
        read(&mut from, &mut line)?;
        let now = Instant::now();
        let id = echoed(&line).map_err(|why| format!("{why}: {}", line.trim()))?;
        let at = sent
            .remove(&id)
            .ok_or_else(|| format!("an answer to no request in flight: {}", line.trim()))?;
        if window.is_none() && now >= measure_from {
            window = Some((
                now,
                cpu_ticks("self").map_err(io_err)?,
                cpu_ticks(&server).map_err(io_err)?,
            ));
        }
        if end.is_none() && now >= measure_to {
            end = Some((
                now,
                cpu_ticks("self").map_err(io_err)?,
                cpu_ticks(&server).map_err(io_err)?,
            ));
        }
        if window.is_some() && end.is_none() {
            latencies_us.push(u64::try_from((now - at).as_micros()).unwrap_or(u64::MAX));
        }
        if end.is_none() {
            writeln!(to, "{}", tools_call(next_id)).map_err(io_err)?;
            sent.insert(next_id, Instant::now());
            next_id += 1;
        }
        if from.buffer().is_empty() {
            to.flush().map_err(io_err)?;
        }
    }
    drop(to);
    let _ = child.wait();
    let ((t0, c0, s0), (t1, c1, s1)) = (window.ok_or("no window")?, end.ok_or("no end")?);
    if latencies_us.is_empty() {
        return Err("no answer in the measured window".into());
    }
    latencies_us.sort_unstable();
    let rank = (latencies_us.len() * 99).div_ceil(100).max(1) - 1;
    Ok(format!(
        "RESULT {} {:.3} {:.2} {} {}",
        latencies_us.len(),
        (t1 - t0).as_secs_f64(),
        latencies_us[rank] as f64 / 1000.0,
        c1 - c0,
        s1 - s0
    ))
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("mcpauth-bench-stdio-client: {e}");
            eprintln!(
                "usage: mcpauth-bench-stdio-client [--warmup S] [--duration S] [--in-flight N] -- COMMAND ARGS…"
            );
            std::process::exit(2);
        }
    };
    match run(&args) {
        Ok(result) => println!("{result}"),
        Err(e) => {
            eprintln!("mcpauth-bench-stdio-client: {e}");
            std::process::exit(1);
        }
    }
}
