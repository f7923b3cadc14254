//! In-memory token buckets keyed by (limit, IP or client id). Per instance: several instances
//! behind a load balancer each enforce the limit. One map and lock per limit, looked up by the
//! borrowed key: a check allocates only for a key seen for the first time, and checks of
//! different limits (a `/token` request makes two) never wait for each other.

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
    /// How many limits there are (the last variant's index + 1).
    const COUNT: usize = Bucket::DeviceIp as usize + 1;

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

/// The buckets, a map per limit (indexed by `Bucket as usize`).
#[derive(Debug, Default)]
pub(crate) struct RateLimiter {
    buckets: [Mutex<HashMap<String, State>>; Bucket::COUNT],
}

/// Above this many keys of one limit, its full buckets are dropped.
const PRUNE_ABOVE: usize = 50_000;

impl RateLimiter {
    /// Takes one token from the bucket of `key`; false when it is empty. `None` never limits.
    pub(crate) fn allow(&self, limit: Option<RateLimit>, bucket: Bucket, key: &str) -> bool {
        let Some(limit) = limit else { return true };
        let now = Instant::now();
        let rate = f64::from(limit.per_minute) / 60.0;
        let burst = f64::from(limit.burst.max(1));
        let mut map = self.buckets[bucket as usize]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if map.len() > PRUNE_ABOVE {
            map.retain(|_, s| s.tokens + now.duration_since(s.at).as_secs_f64() * rate < burst);
        }
        if let Some(state) = map.get_mut(key) {
            return state.take(now, rate, burst);
        }
        // A new key starts with a full bucket (burst >= 1) and takes one token from it.
        map.insert(
            key.to_owned(),
            State {
                tokens: burst - 1.0,
                at: now,
            },
        );
        true
    }
}

impl State {
    /// Refills for the time since the last request, then takes one token if there is one.
    fn take(&mut self, now: Instant, rate: f64, burst: f64) -> bool {
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * rate).min(burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
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

    /// Every limit has a map of its own (`Bucket::COUNT` covers the last one).
    #[test]
    fn every_bucket_counts_on_its_own() {
        let l = RateLimiter::default();
        let limit = Some(RateLimit::new(1, 1));
        let all = [
            Bucket::Authorize,
            Bucket::Login,
            Bucket::TokenIp,
            Bucket::TokenClient,
            Bucket::Register,
            Bucket::DeviceIp,
        ];
        assert_eq!(all.len(), Bucket::COUNT);
        for b in all {
            assert!(l.allow(limit, b, "k"), "{b:?}");
        }
        for b in all {
            assert!(!l.allow(limit, b, "k"), "{b:?}");
        }
    }
}
