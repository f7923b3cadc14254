//! Prometheus metrics for `serve` and `gateway` (`--metrics-bind ADDR`, off by default), in the
//! text exposition format on a listener of their own, so that the MCP and OAuth ports never
//! serve them. Recorded with the `metrics` crate; rendered by `metrics-exporter-prometheus`.
//!
//! What is counted comes from three places: an axum middleware on the public routers (requests by
//! route template, method and status, and their latency), the security events the libraries
//! already emit on the audit target (tokens issued, refresh-token reuse, sign-ins, …), and TRACE
//! events on the target `mcpauth::metrics` (token checks by result, rate-limit refusals), which
//! cost nothing unless this module's tracing layer is installed. Labels take only fixed values:
//! never a token, secret, user, client id, address or raw path.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Instant;

use anyhow::Context;
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::Context as LayerContext;

/// The target of the libraries' metric events.
pub const METRICS_TARGET: &str = "mcpauth::metrics";

/// Latency buckets, in seconds: 0.5 ms to 10 s.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 10.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder (once) and serves `/metrics` on `bind`; returns the bound
/// address. Until this runs, every metric is a no-op.
pub async fn serve(bind: &str) -> anyhow::Result<SocketAddr> {
    let handle = match HANDLE.get() {
        Some(h) => h.clone(),
        None => {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &BUCKETS)
                .context("the metrics' histogram buckets")?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder)
                .map_err(|e| anyhow::anyhow!("cannot install the metrics recorder: {e}"))?;
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
                    handle.render(),
                )
                    .into_response()
            }
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "the metrics listener stopped");
        }
    });
    Ok(addr)
}

/// Axum middleware: `mcpauth_http_requests_total{route, method, status}` and
/// `mcpauth_http_request_duration_seconds{route, method}`. The route is the matched template
/// (`/token`, `/mcp`), `unmatched` for anything else.
pub async fn http(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = method_label(req.method());
    let start = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::counter!("mcpauth_http_requests_total", "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!("mcpauth_http_request_duration_seconds", "route" => route, "method" => method)
        .record(start.elapsed().as_secs_f64());
    resp
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

/// An upstream request of the gateway: `mcpauth_upstream_requests_total{kind, outcome}` and
/// `mcpauth_upstream_request_duration_seconds{kind}` (`kind`: `http` or `stdio`; `outcome`:
/// `ok` or `error`).
pub fn upstream(kind: &'static str, ok: bool, started: Instant) {
    let outcome = if ok { "ok" } else { "error" };
    metrics::counter!("mcpauth_upstream_requests_total", "kind" => kind, "outcome" => outcome)
        .increment(1);
    metrics::histogram!("mcpauth_upstream_request_duration_seconds", "kind" => kind)
        .record(started.elapsed().as_secs_f64());
}

/// `mcpauth_stdio_processes`: stdio upstream processes alive (`delta` +1 at start, -1 when
/// reaped).
pub fn stdio_processes(delta: f64) {
    metrics::gauge!("mcpauth_stdio_processes").increment(delta);
}

/// The tracing layer that turns the libraries' events into metrics.
pub struct EventMetrics;

/// The fields of an event this layer reads; every other field is ignored.
#[derive(Default)]
struct Fields {
    event: Option<String>,
    counter: Option<String>,
    grant_type: Option<String>,
    result: Option<String>,
    bucket: Option<String>,
    error: Option<String>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        let slot = match field.name() {
            "event" => &mut self.event,
            "counter" => &mut self.counter,
            "grant_type" => &mut self.grant_type,
            "result" => &mut self.result,
            "bucket" => &mut self.bucket,
            "error" => &mut self.error,
            _ => return,
        };
        // Only short identifiers: a free-text value never becomes a label.
        if value.len() <= 64
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b))
        {
            *slot = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
}

/// A label value from a fixed set, or `other`.
fn known(value: Option<String>, allowed: &[&'static str]) -> &'static str {
    value
        .and_then(|v| allowed.iter().find(|a| **a == v).copied())
        .unwrap_or("other")
}

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
const BUCKET_NAMES: [&str; 5] = ["authorize", "login", "token_ip", "token_client", "register"];
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
        let target = event.metadata().target();
        let mut f = Fields::default();
        event.record(&mut f);
        if target == METRICS_TARGET {
            match f.counter.as_deref() {
                Some("token_verifications") => {
                    let result = known(f.result, &RESULTS);
                    metrics::counter!("mcpauth_token_verifications_total", "result" => result)
                        .increment(1);
                }
                Some("rate_limited") => {
                    let bucket = known(f.bucket, &BUCKET_NAMES);
                    metrics::counter!("mcpauth_rate_limited_total", "bucket" => bucket)
                        .increment(1);
                }
                _ => {}
            }
            return;
        }
        let name = known(f.event.clone(), &AUDIT_EVENTS);
        metrics::counter!("mcpauth_audit_events_total", "event" => name).increment(1);
        match f.event.as_deref() {
            Some("token.issued") => {
                let grant = known(f.grant_type, &GRANTS);
                metrics::counter!("mcpauth_tokens_issued_total", "grant_type" => grant)
                    .increment(1);
            }
            Some("token.refreshed") => {
                metrics::counter!("mcpauth_tokens_issued_total", "grant_type" => "refresh_token")
                    .increment(1);
            }
            Some("refresh.reuse_detected") => {
                metrics::counter!("mcpauth_refresh_reuse_detected_total").increment(1);
            }
            _ => {}
        }
    }
}

/// The targets [`EventMetrics`] listens to: the audit events and the metric events.
pub fn event_filter() -> tracing_subscriber::filter::Targets {
    tracing_subscriber::filter::Targets::new()
        .with_target(mcpauth_authserver::AUDIT_TARGET, tracing::Level::INFO)
        .with_target(METRICS_TARGET, tracing::Level::TRACE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_take_only_known_values() {
        assert_eq!(known(Some("ok".into()), &RESULTS), "ok");
        assert_eq!(known(Some("eyJhbGciOi".into()), &RESULTS), "other");
        assert_eq!(known(None, &GRANTS), "other");
    }
}
