//! In-memory token buckets keyed by (limit, IP or client id). Per instance: several instances
//! behind a load balancer each enforce the limit.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use crate::config::RateLimit;

/// Which limit a key belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Bucket {
    Authorize,
    Login,
    TokenIp,
    TokenClient,
    Register,
    DeviceIp,
}

impl Bucket {
    /// A stable name, for metrics.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Bucket::Authorize => "authorize",
            Bucket::Login => "login",
            Bucket::TokenIp => "token_ip",
            Bucket::TokenClient => "token_client",
            Bucket::Register => "register",
            Bucket::DeviceIp => "device",
        }
    }
}

#[derive(Debug)]
struct State {
    tokens: f64,
    at: Instant,
}

/// The buckets.
#[derive(Debug, Default)]
pub(crate) struct RateLimiter {
    buckets: Mutex<HashMap<(Bucket, String), State>>,
}

/// Above this many keys, full buckets are dropped.
const PRUNE_ABOVE: usize = 50_000;

impl RateLimiter {
    /// Takes one token from the bucket of `key`; false when it is empty. `None` never limits.
    pub(crate) fn allow(&self, limit: Option<RateLimit>, bucket: Bucket, key: &str) -> bool {
        let Some(limit) = limit else { return true };
        let now = Instant::now();
        let rate = f64::from(limit.per_minute) / 60.0;
        let burst = f64::from(limit.burst.max(1));
        let mut map = self.buckets.lock().unwrap();
        if map.len() > PRUNE_ABOVE {
            map.retain(|_, s| s.tokens + now.duration_since(s.at).as_secs_f64() * rate < burst);
        }
        let state = map.entry((bucket, key.to_owned())).or_insert(State {
            tokens: burst,
            at: now,
        });
        state.tokens =
            (state.tokens + now.duration_since(state.at).as_secs_f64() * rate).min(burst);
        state.at = now;
        if state.tokens >= 1.0 {
            state.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_refuses() {
        let l = RateLimiter::default();
        let limit = Some(RateLimit::new(3, 1));
        for _ in 0..3 {
            assert!(l.allow(limit, Bucket::Register, "1.2.3.4"));
        }
        assert!(!l.allow(limit, Bucket::Register, "1.2.3.4"));
        assert!(l.allow(limit, Bucket::Register, "5.6.7.8"));
        assert!(l.allow(limit, Bucket::Login, "1.2.3.4"));
        assert!(l.allow(None, Bucket::Register, "1.2.3.4"));
    }
}
