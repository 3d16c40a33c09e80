//! The per-peer rate limiter of e2m-https (`ratelimit::RateLimiter`, on `governor`: GCRA
//! over a keyed `DashMap`) against the hand-written token bucket it replaced (one mutex over
//! a `HashMap`, kept below as the baseline), for the decision issue 10 asked for: use
//! governor, or keep ours for a measured reason.
//!
//! Cases, each for both limiters in the same run (ratios are what count):
//! - `admit/one-peer`: one peer well within its budget (the common case of an EMSE);
//! - `refuse/one-peer`: one peer over its budget, computing the wait (the cost of a 429,
//!   issue 9 item 3);
//! - `admit/1000-peers`: 1,000 peers in turn (every call a different key);
//! - `admit/2-threads`: two threads, each its own peer, at once (lock contention).
//!
//! Each check reads the clock, as in the server.
#![allow(missing_docs, reason = "criterion macros generate undocumented items")]
#![allow(clippy::unwrap_used, reason = "benchmark set-up")]

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use e2m_https::pki::PeerIdentity;
use e2m_https::ratelimit::{RateLimit, RateLimiter};
use e2m_keyid::EmseId;

/// The baseline: e2m-https's limiter before governor (a token bucket per peer in a
/// `HashMap` behind one `Mutex`), as it was, minus its pruning.
struct HandWrittenBucket {
    limit: RateLimit,
    buckets: Mutex<HashMap<PeerIdentity, (f64, Instant)>>,
}

impl HandWrittenBucket {
    fn new(limit: RateLimit) -> Self {
        HandWrittenBucket {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn check(&self, peer: &PeerIdentity, now: Instant) -> Result<(), Duration> {
        let burst = f64::from(self.limit.burst);
        let mut buckets = self.buckets.lock().unwrap();
        let (tokens, last) = buckets.entry(peer.clone()).or_insert((burst, now));
        let elapsed = now.saturating_duration_since(*last).as_secs_f64();
        *tokens = (*tokens + elapsed * self.limit.per_second).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - *tokens) / self.limit.per_second;
            Err(Duration::from_secs_f64(wait.clamp(0.001, 3600.0)))
        }
    }
}

fn peer(n: usize) -> PeerIdentity {
    PeerIdentity::Emse(EmseId::new(&format!("emse-{n}.example.com")).unwrap())
}

/// The same budget for both: `burst` at once, refilled at `per_second`.
fn pair(per_second: f64, burst: u32) -> (HandWrittenBucket, RateLimiter) {
    let limit = RateLimit { per_second, burst };
    (HandWrittenBucket::new(limit), RateLimiter::new(limit))
}

fn admit_one_peer(c: &mut Criterion) {
    let mut group = c.benchmark_group("admit/one-peer");
    group.throughput(Throughput::Elements(1));
    let (old, new) = pair(1e9, u32::MAX);
    let p = peer(0);
    group.bench_function("hand-written", |b| {
        b.iter(|| black_box(old.check(black_box(&p), Instant::now()).is_ok()));
    });
    group.bench_function("governor", |b| {
        b.iter(|| black_box(new.check(black_box(&p)).is_ok()));
    });
    group.finish();
}

fn refuse_one_peer(c: &mut Criterion) {
    let mut group = c.benchmark_group("refuse/one-peer");
    group.throughput(Throughput::Elements(1));
    // One token per 1000 s, spent at once: every measured call is a refusal, and both
    // compute the wait (the server turns it into Retry-After).
    let (old, new) = pair(0.001, 1);
    let p = peer(0);
    assert!(old.check(&p, Instant::now()).is_ok());
    assert!(new.check(&p).is_ok());
    group.bench_function("hand-written", |b| {
        b.iter(|| black_box(old.check(black_box(&p), Instant::now()).err()));
    });
    group.bench_function("governor", |b| {
        b.iter(|| black_box(new.check(black_box(&p)).err()));
    });
    group.finish();
}

fn admit_many_peers(c: &mut Criterion) {
    const PEERS: usize = 1000;
    let mut group = c.benchmark_group("admit/1000-peers");
    group.throughput(Throughput::Elements(1));
    let (old, new) = pair(1e9, u32::MAX);
    let peers: Vec<PeerIdentity> = (0..PEERS).map(peer).collect();
    let mut i = 0;
    group.bench_function("hand-written", |b| {
        b.iter(|| {
            i = (i + 1) % PEERS;
            black_box(old.check(&peers[i], Instant::now()).is_ok())
        });
    });
    let mut i = 0;
    group.bench_function("governor", |b| {
        b.iter(|| {
            i = (i + 1) % PEERS;
            black_box(new.check(&peers[i]).is_ok())
        });
    });
    group.finish();
}

/// Two threads, each checking its own peer `iters` times; the figure is wall time per
/// check of one thread (lower is better; a lock that serialises them doubles it).
fn contended<F>(iters: u64, check: Arc<F>) -> Duration
where
    F: Fn(&PeerIdentity) -> bool + Send + Sync + 'static,
{
    let start = Instant::now();
    let threads: Vec<_> = (0..2)
        .map(|t| {
            let check = check.clone();
            std::thread::spawn(move || {
                let p = peer(t);
                for _ in 0..iters {
                    black_box(check(&p));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    start.elapsed()
}

fn admit_two_threads(c: &mut Criterion) {
    let mut group = c.benchmark_group("admit/2-threads");
    group.throughput(Throughput::Elements(1));
    let (old, new) = pair(1e9, u32::MAX);
    let old = Arc::new(old);
    let new = Arc::new(new);
    group.bench_function("hand-written", |b| {
        b.iter_custom(|iters| {
            let old = old.clone();
            contended(
                iters,
                Arc::new(move |p: &PeerIdentity| old.check(p, Instant::now()).is_ok()),
            )
        });
    });
    group.bench_function("governor", |b| {
        b.iter_custom(|iters| {
            let new = new.clone();
            contended(
                iters,
                Arc::new(move |p: &PeerIdentity| new.check(p).is_ok()),
            )
        });
    });
    group.finish();
}

fn main() {
    let mut c = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    admit_one_peer(&mut c);
    refuse_one_peer(&mut c);
    admit_many_peers(&mut c);
    admit_two_threads(&mut c);
    c.final_summary();
}
