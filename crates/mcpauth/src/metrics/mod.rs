//! Prometheus metrics for `serve` and `gateway` (`--metrics-bind ADDR`, off by default), in the
//! text exposition format on a listener of their own, so that the MCP and OAuth ports never
//! serve them. Recorded with the `metrics` crate; counters and gauges rendered by
//! `metrics-exporter-prometheus`, the latency histograms by [`buckets`].
//!
//! What is counted comes from three places: [`HttpMetricsLayer`] on the public routers (requests
//! by route template, method and status, and their latency), the security events the libraries
//! already emit on the audit target (tokens issued, refresh-token reuse, sign-ins, …), and TRACE
//! events on the target `mcpauth::metrics` (token checks by result, rate-limit refusals), which
//! cost nothing unless this module's tracing layer is installed. Labels take only fixed values:
//! never a token, secret, user, client id, address or raw path.

mod buckets;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{OnceLock, RwLock};
use std::task::{Context, Poll};
use std::time::Instant;

use anyhow::Context as _;

use axum::extract::MatchedPath;
use axum::http::Request;
use axum::response::{IntoResponse, Response};
use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::Context as LayerContext;

/// The target of the libraries' metric events.
pub const METRICS_TARGET: &str = "mcpauth::metrics";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
/// Whether metrics are on: [`EventFilter`] passes events only then.
static ON: AtomicBool = AtomicBool::new(false);
/// The counters the events feed, registered once metrics are on.
static EVENT_COUNTERS: OnceLock<EventCounters> = OnceLock::new();

/// The counters of one metric, one per value of its label and `other` last: registered once,
/// since the recorder's lookup by labels on every event would cost more than the counting.
struct Labeled {
    values: &'static [&'static str],
    counters: Vec<Counter>,
}

impl Labeled {
    fn new(name: &'static str, label: &'static str, values: &'static [&'static str]) -> Self {
        let counters = values
            .iter()
            .chain(["other"].iter())
            .map(|v| metrics::counter!(name, label => *v))
            .collect();
        Labeled { values, counters }
    }

    fn add(&self, value: &str) {
        let i = self
            .values
            .iter()
            .position(|v| *v == value)
            .unwrap_or(self.values.len());
        self.counters[i].increment(1);
    }
}

struct EventCounters {
    verifications: Labeled,
    rate_limited: Labeled,
    audit: Labeled,
    issued: Labeled,
    reuse: Counter,
}

/// Installs the process-wide recorder (once) and serves `/metrics` on `bind`; returns the bound
/// address. Until this runs, every metric is a no-op.
pub async fn serve(bind: &str) -> anyhow::Result<SocketAddr> {
    let handle = match HANDLE.get() {
        Some(h) => h.clone(),
        None => {
            // Counters and gauges; the histograms are ours (see `buckets`).
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder)
                .map_err(|e| anyhow::anyhow!("cannot install the metrics recorder: {e}"))?;
            EVENT_COUNTERS.get_or_init(|| EventCounters {
                verifications: Labeled::new(
                    "mcpauth_token_verifications_total",
                    "result",
                    &RESULTS,
                ),
                rate_limited: Labeled::new("mcpauth_rate_limited_total", "bucket", &BUCKET_NAMES),
                audit: Labeled::new("mcpauth_audit_events_total", "event", &AUDIT_EVENTS),
                issued: Labeled::new("mcpauth_tokens_issued_total", "grant_type", &GRANTS),
                reuse: metrics::counter!("mcpauth_refresh_reuse_detected_total"),
            });
            ON.store(true, Ordering::Relaxed);
            HANDLE.get_or_init(|| handle).clone()
        }
    };
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen for metrics on {bind}"))?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let handle = handle.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    handle.render() + "\n" + &buckets::render(),
                )
                    .into_response()
            }
        }),
    );
    tokio::spawn(async move {
        // The same timeouts and connection cap as the public listeners: a scraper that never
        // finishes its request cannot hold the listener.
        let limits = mcpauth_authserver::ConnectionLimits {
            max_connections: 64,
            ..Default::default()
        };
        let forever = std::future::pending::<()>();
        if let Err(e) = mcpauth_authserver::serve_router(listener, app, limits, forever).await {
            tracing::warn!(error = %e, "the metrics listener stopped");
        }
    });
    Ok(addr)
}

/// `mcpauth_http_requests_total{route, method, status}` and
/// `mcpauth_http_request_duration_seconds{route, method}` of every route it wraps (a tower layer
/// rather than `axum::middleware::from_fn`, which clones the route and boxes a future per
/// request). The route is the matched template (`/token`, `/mcp`), `unmatched` for anything
/// else.
#[derive(Clone, Copy, Debug)]
pub struct HttpMetricsLayer;

impl<S> tower::Layer<S> for HttpMetricsLayer {
    type Service = HttpMetrics<S>;

    fn layer(&self, inner: S) -> HttpMetrics<S> {
        HttpMetrics { inner }
    }
}

/// The service of [`HttpMetricsLayer`].
#[derive(Clone, Debug)]
pub struct HttpMetrics<S> {
    inner: S,
}

impl<S, B> tower::Service<Request<B>> for HttpMetrics<S>
where
    S: tower::Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Timed<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let route = req.extensions().get::<MatchedPath>().cloned();
        let method = method_label(req.method());
        Timed {
            inner: self.inner.call(req),
            route,
            method,
            start: Instant::now(),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`HttpMetrics`]: counts and times the answer when it is ready.
    pub struct Timed<F> {
        #[pin]
        inner: F,
        route: Option<MatchedPath>,
        method: &'static str,
        start: Instant,
    }
}

impl<F, E> Future for Timed<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = std::task::ready!(this.inner.poll(cx));
        if let Ok(resp) = &out {
            let route = this.route.as_ref().map_or("unmatched", MatchedPath::as_str);
            let series = http_series(route, this.method, resp.status().as_u16());
            series.count.increment(1);
            series.time.record(this.start.elapsed().as_secs_f64());
        }
        Poll::Ready(out)
    }
}

/// One route, method and status's series, registered once and kept for the life of the process
/// (routes, methods and statuses are few): the recorder's lookup by labels on every request
/// would cost more than the request's own routing.
struct HttpSeries {
    route: String,
    method: &'static str,
    status: u16,
    count: Counter,
    time: Histogram,
}

fn http_series(route: &str, method: &'static str, status: u16) -> &'static HttpSeries {
    static SERIES: OnceLock<RwLock<Vec<&'static HttpSeries>>> = OnceLock::new();
    let series = SERIES.get_or_init(RwLock::default);
    let find = |all: &[&'static HttpSeries]| {
        all.iter()
            .find(|s| s.status == status && s.method == method && s.route == route)
            .copied()
    };
    if let Some(found) = find(&series.read().unwrap_or_else(|e| e.into_inner())) {
        return found;
    }
    let mut all = series.write().unwrap_or_else(|e| e.into_inner());
    if let Some(found) = find(&all) {
        return found;
    }
    let count = metrics::counter!("mcpauth_http_requests_total", "route" => route.to_owned(), "method" => method, "status" => status.to_string());
    // The histogram's labels are route and method: statuses of one route share it.
    let time = match all.iter().find(|s| s.method == method && s.route == route) {
        Some(s) => s.time.clone(),
        None => buckets::histogram(
            "mcpauth_http_request_duration_seconds",
            &[("route", route), ("method", method)],
        ),
    };
    let new: &'static HttpSeries = Box::leak(Box::new(HttpSeries {
        route: route.to_owned(),
        method,
        status,
        count,
        time,
    }));
    all.push(new);
    new
}

fn method_label(m: &axum::http::Method) -> &'static str {
    match m.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        "HEAD" => "HEAD",
        _ => "other",
    }
}

/// A request of the gateway to its HTTP upstream: `mcpauth_upstream_requests_total{kind="http",
/// outcome}` (`ok`, or `error`: unreachable or 5xx) and
/// `mcpauth_upstream_request_duration_seconds{kind="http"}`. The series are registered once (a
/// lookup by labels per request would cost more than the counting).
pub fn upstream(ok: bool, started: Instant) {
    static SERIES: OnceLock<(Counter, Counter, Histogram)> = OnceLock::new();
    if !ON.load(Ordering::Relaxed) {
        return;
    }
    let (ok_count, error_count, time) = SERIES.get_or_init(|| {
        let count = |outcome: &'static str| {
            metrics::counter!("mcpauth_upstream_requests_total", "kind" => "http", "outcome" => outcome)
        };
        let time =
            buckets::histogram("mcpauth_upstream_request_duration_seconds", &[("kind", "http")]);
        (count("ok"), count("error"), time)
    });
    if ok { ok_count } else { error_count }.increment(1);
    time.record(started.elapsed().as_secs_f64());
}

/// `mcpauth_stdio_processes`: stdio upstream processes alive (`delta` +1 at start, -1 when
/// reaped).
pub fn stdio_processes(delta: f64) {
    metrics::gauge!("mcpauth_stdio_processes").increment(delta);
}

/// The tracing layer that turns the libraries' events into metrics.
pub struct EventMetrics;

/// The fields of an event this layer reads, each mapped at once to a value of its fixed set
/// (`other` for anything else: a free-text value never becomes a label); every other field is
/// ignored. Nothing is allocated.
#[derive(Default)]
struct Fields {
    event: Option<&'static str>,
    counter: Option<&'static str>,
    grant_type: Option<&'static str>,
    result: Option<&'static str>,
    bucket: Option<&'static str>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        let (slot, allowed): (_, &[&'static str]) = match field.name() {
            "event" => (&mut self.event, &AUDIT_EVENTS),
            "counter" => (&mut self.counter, &COUNTERS),
            "grant_type" => (&mut self.grant_type, &GRANTS),
            "result" => (&mut self.result, &RESULTS),
            "bucket" => (&mut self.bucket, &BUCKET_NAMES),
            _ => return,
        };
        *slot = Some(known(value, allowed));
    }

    fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
}

/// `value` if it is one of `allowed`, else `other`.
fn known(value: &str, allowed: &[&'static str]) -> &'static str {
    allowed
        .iter()
        .find(|a| **a == value)
        .copied()
        .unwrap_or("other")
}

const COUNTERS: [&str; 2] = ["token_verifications", "rate_limited"];

const GRANTS: [&str; 6] = [
    "authorization_code",
    "refresh_token",
    "client_credentials",
    "urn:ietf:params:oauth:grant-type:device_code",
    "urn:ietf:params:oauth:grant-type:jwt-bearer",
    "urn:ietf:params:oauth:grant-type:token-exchange",
];
const RESULTS: [&str; 9] = [
    "ok",
    "expired",
    "bad_audience",
    "bad_issuer",
    "revoked",
    "invalid",
    "insufficient_scope",
    "dpop_refused",
    "unavailable",
];
const BUCKET_NAMES: [&str; 6] = [
    "authorize",
    "login",
    "token_ip",
    "token_client",
    "register",
    "device",
];
const AUDIT_EVENTS: [&str; 20] = [
    "signin.succeeded",
    "signin.failed",
    "signout",
    "consent.granted",
    "consent.denied",
    "client.registered",
    "token.issued",
    "token.refreshed",
    "token.revoked",
    "refresh.reuse_detected",
    "user.added",
    "user.removed",
    "client.added",
    "client.removed",
    "key.rotated",
    "grant.revoked",
    "access.refused",
    "account.app_removed",
    "device.authorization_started",
    "device.code_refused",
];

impl<S: Subscriber> tracing_subscriber::Layer<S> for EventMetrics {
    fn on_event(&self, event: &Event<'_>, _: LayerContext<'_, S>) {
        let Some(c) = EVENT_COUNTERS.get() else {
            return;
        };
        let mut f = Fields::default();
        event.record(&mut f);
        if event.metadata().target() == METRICS_TARGET {
            match f.counter {
                Some("token_verifications") => c.verifications.add(f.result.unwrap_or("other")),
                Some("rate_limited") => c.rate_limited.add(f.bucket.unwrap_or("other")),
                _ => {}
            }
            return;
        }
        c.audit.add(f.event.unwrap_or("other"));
        match f.event {
            Some("token.issued") => c.issued.add(f.grant_type.unwrap_or("other")),
            Some("token.refreshed") => c.issued.add("refresh_token"),
            Some("refresh.reuse_detected") => c.reuse.increment(1),
            _ => {}
        }
    }
}

/// The filter of [`EventMetrics`]: the audit events (INFO) and the metric events (TRACE), and
/// those only once metrics are on. Every other callsite is never asked again.
pub struct EventFilter;

fn wanted(meta: &Metadata<'_>) -> bool {
    (meta.target() == mcpauth_authserver::AUDIT_TARGET && *meta.level() <= Level::INFO)
        || meta.target() == METRICS_TARGET
}

impl<S> tracing_subscriber::layer::Filter<S> for EventFilter {
    fn enabled(&self, meta: &Metadata<'_>, _: &LayerContext<'_, S>) -> bool {
        ON.load(Ordering::Relaxed) && wanted(meta)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        if wanted(meta) {
            Interest::sometimes()
        } else {
            Interest::never()
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::TRACE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_take_only_known_values() {
        assert_eq!(known("ok", &RESULTS), "ok");
        assert_eq!(known("eyJhbGciOi", &RESULTS), "other");
        assert_eq!(known("", &GRANTS), "other");
    }

    /// A route answered with two statuses is two request counters but one latency histogram
    /// (its labels are route and method): a second histogram with the same labels would be a
    /// duplicate series, which Prometheus refuses for the whole scrape.
    #[test]
    fn one_latency_histogram_per_route_and_method() {
        let ok = http_series("/test-dup", "POST", 200);
        let bad = http_series("/test-dup", "POST", 400);
        assert!(!std::ptr::eq(ok, bad), "one series per status");
        ok.time.record(0.001);
        bad.time.record(0.002);
        let text = buckets::render();
        let counts: Vec<&str> = text
            .lines()
            .filter(|l| {
                l.starts_with("mcpauth_http_request_duration_seconds_count{")
                    && l.contains(r#"route="/test-dup""#)
            })
            .collect();
        assert_eq!(
            counts,
            [r#"mcpauth_http_request_duration_seconds_count{route="/test-dup",method="POST"} 2"#],
            "{text}"
        );
    }
}
