//! A per-peer token bucket: each authenticated identity (each EMSE, the HSS) gets its own
//! budget, so that one misbehaving EMSE cannot starve the others (issue 5, hardening).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::pki::PeerIdentity;

/// The budget of one peer: `burst` requests at once, refilled at `per_second`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    /// Sustained requests per second (> 0).
    pub per_second: f64,
    /// Requests that may be made at once after a quiet period (≥ 1).
    pub burst: u32,
}

impl RateLimit {
    /// The default: 500 requests/s sustained, bursts of 1,000 per peer.
    pub const DEFAULT: RateLimit = RateLimit {
        per_second: 500.0,
        burst: 1000,
    };
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit::DEFAULT
    }
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Peers with their buckets; the map is pruned of full (idle) buckets when it grows, so its
/// size stays bounded by the number of recently active certificates.
#[derive(Debug)]
pub struct RateLimiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<PeerIdentity, Bucket>>,
}

/// Pruning starts above this many tracked peers.
const PRUNE_ABOVE: usize = 4096;

impl RateLimiter {
    /// A limiter with this budget per peer.
    pub fn new(limit: RateLimit) -> Self {
        let limit = RateLimit {
            per_second: if limit.per_second.is_finite() && limit.per_second > 0.0 {
                limit.per_second
            } else {
                RateLimit::DEFAULT.per_second
            },
            burst: limit.burst.max(1),
        };
        RateLimiter {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `peer` at `now`, or says how long until one is available.
    ///
    /// # Errors
    /// The wait until the next token, when the peer's budget is spent.
    pub fn check(&self, peer: &PeerIdentity, now: Instant) -> Result<(), Duration> {
        let burst = f64::from(self.limit.burst);
        // A poisoned lock only means another thread panicked mid-update of a counter;
        // the data is still a valid map of buckets.
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() > PRUNE_ABOVE && !buckets.contains_key(peer) {
            let per_second = self.limit.per_second;
            buckets.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.last).as_secs_f64() * per_second < burst
            });
        }
        let bucket = buckets.entry(peer.clone()).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.limit.per_second).min(burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / self.limit.per_second;
            Err(Duration::from_secs_f64(wait.clamp(0.001, 3600.0)))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use e2m_keyid::EmseId;

    #[test]
    fn buckets_are_per_peer_and_refill() {
        let limiter = RateLimiter::new(RateLimit {
            per_second: 2.0,
            burst: 3,
        });
        let a = PeerIdentity::Emse(EmseId::new("a").unwrap());
        let b = PeerIdentity::Emse(EmseId::new("b").unwrap());
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check(&a, t0).is_ok());
        }
        let wait = limiter.check(&a, t0).unwrap_err();
        assert!(wait > Duration::from_millis(400) && wait <= Duration::from_millis(500));
        // Another EMSE is not affected.
        assert!(limiter.check(&b, t0).is_ok());
        // Half a second later, one token is back.
        let t1 = t0 + Duration::from_millis(500);
        assert!(limiter.check(&a, t1).is_ok());
        assert!(limiter.check(&a, t1).is_err());
    }
}
