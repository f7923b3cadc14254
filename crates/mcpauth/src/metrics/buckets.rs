//! Latency histograms with fixed buckets, counted with atomics as they are recorded and rendered
//! in the Prometheus text format beside the exporter's counters and gauges.
//!
//! `metrics-exporter-prometheus` keeps every histogram sample until an upkeep folds it into its
//! buckets; at ~15k requests/s that storage and folding cost about 4% of the gateway's CPU per
//! request (bench/gateway.sh --mode metrics). Here a sample is a bucket search among 12 bounds
//! and three atomic additions, and nothing is kept.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use metrics::{Histogram, HistogramFn};

/// Bucket upper bounds, in seconds: 0.5 ms to 10 s (and `+Inf`).
pub const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 10.0,
];

/// One series: the count per bucket (not cumulative; the last is `+Inf`), the sum in
/// nanoseconds, and the count.
#[derive(Debug, Default)]
struct Buckets {
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl HistogramFn for Buckets {
    fn record(&self, seconds: f64) {
        let i = BUCKETS
            .iter()
            .position(|le| seconds <= *le)
            .unwrap_or(BUCKETS.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        // Durations: never negative; saturating for a value beyond u64 nanoseconds.
        let nanos = (seconds.max(0.0) * 1e9) as u64;
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}

/// A registered series: its metric name and rendered labels (`k="v",…`).
struct Series {
    name: &'static str,
    labels: String,
    buckets: Arc<Buckets>,
}

fn registry() -> &'static RwLock<Vec<Series>> {
    static ALL: OnceLock<RwLock<Vec<Series>>> = OnceLock::new();
    ALL.get_or_init(RwLock::default)
}

/// A new series of the histogram `name` with `labels` (fixed values only; escaped here).
/// Register each series once and keep the handle: registering is not meant for every sample.
pub fn histogram(name: &'static str, labels: &[(&str, &str)]) -> Histogram {
    let mut rendered = String::new();
    for (k, v) in labels {
        if !rendered.is_empty() {
            rendered.push(',');
        }
        let _ = write!(rendered, "{k}=\"{}\"", escape(v));
    }
    let buckets = Arc::new(Buckets::default());
    registry()
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .push(Series {
            name,
            labels: rendered,
            buckets: Arc::clone(&buckets),
        });
    Histogram::from_arc(buckets)
}

/// A label value in the text format: `\`, `"` and line feeds escaped.
fn escape(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

/// Every series in the Prometheus text format (0.0.4): `_bucket` lines (cumulative, `le` ending
/// with `+Inf`), `_sum` and `_count`, with one `# TYPE` line per metric.
pub fn render() -> String {
    let all = registry().read().unwrap_or_else(|e| e.into_inner());
    let mut names: Vec<&str> = all.iter().map(|s| s.name).collect();
    names.sort_unstable();
    names.dedup();
    let mut out = String::new();
    for name in names {
        let _ = writeln!(out, "# TYPE {name} histogram");
        for s in all.iter().filter(|s| s.name == name) {
            let sep = if s.labels.is_empty() { "" } else { "," };
            let mut cumulative = 0;
            for (i, le) in BUCKETS
                .iter()
                .map(|b| b.to_string())
                .chain(["+Inf".into()])
                .enumerate()
            {
                cumulative += s.buckets.counts[i].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "{name}_bucket{{{}{sep}le=\"{le}\"}} {cumulative}",
                    s.labels
                );
            }
            let sum = s.buckets.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
            let braces = if s.labels.is_empty() {
                String::new()
            } else {
                format!("{{{}}}", s.labels)
            };
            let _ = writeln!(out, "{name}_sum{braces} {sum}");
            let _ = writeln!(
                out,
                "{name}_count{braces} {}",
                s.buckets.count.load(Ordering::Relaxed)
            );
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_land_in_cumulative_buckets_with_sum_and_count() {
        let h = histogram(
            "test_latency_seconds",
            &[("route", "/a\"b"), ("method", "GET")],
        );
        for v in [0.0001, 0.002, 0.002, 20.0] {
            h.record(v);
        }
        let text = render();
        let line = |s: &str| text.lines().any(|l| l == s);
        let labels = r#"route="/a\"b",method="GET""#;
        assert!(line("# TYPE test_latency_seconds histogram"), "{text}");
        assert!(
            line(&format!(
                "test_latency_seconds_bucket{{{labels},le=\"0.0005\"}} 1"
            )),
            "{text}"
        );
        assert!(
            line(&format!(
                "test_latency_seconds_bucket{{{labels},le=\"0.001\"}} 1"
            )),
            "{text}"
        );
        assert!(
            line(&format!(
                "test_latency_seconds_bucket{{{labels},le=\"0.0025\"}} 3"
            )),
            "{text}"
        );
        assert!(
            line(&format!(
                "test_latency_seconds_bucket{{{labels},le=\"10\"}} 3"
            )),
            "{text}"
        );
        assert!(
            line(&format!(
                "test_latency_seconds_bucket{{{labels},le=\"+Inf\"}} 4"
            )),
            "{text}"
        );
        assert!(
            line(&format!("test_latency_seconds_count{{{labels}}} 4")),
            "{text}"
        );
        assert!(
            line(&format!("test_latency_seconds_sum{{{labels}}} 20.0041")),
            "{text}"
        );
    }
}
