//! The per-peer rate limiter of e2m-https (`ratelimit::RateLimiter`: one mutex over a
//! `HashMap` of token buckets) against the ecosystem's `governor` (GCRA, keyed state in a
//! `DashMap`, `quanta` clock), for the decision issue 10 asks for: use governor, or keep
//! ours for a measured reason.
//!
//! Cases, each for both limiters in the same run (ratios are what count):
//! - `admit/one-peer`: one peer well within its budget (the common case of an EMSE);
//! - `refuse/one-peer`: one peer over its budget (the cost of a 429, issue 9 item 3);
//! - `admit/1000-peers`: 1,000 peers in turn (every call a different key);
//! - `admit/2-threads`: two threads, each its own peer, at once (lock contention).
//!
//! Each check reads the clock, as in the server (ours takes `Instant::now()`, governor
//! reads its own clock).
#![allow(missing_docs, reason = "criterion macros generate undocumented items")]
#![allow(clippy::unwrap_used, reason = "benchmark set-up")]

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use e2m_https::pki::PeerIdentity;
use e2m_https::ratelimit::{RateLimit, RateLimiter};
use e2m_keyid::EmseId;
use governor::{Quota, RateLimiter as Governor};

type KeyedGovernor = governor::DefaultKeyedRateLimiter<PeerIdentity>;

fn peer(n: usize) -> PeerIdentity {
    PeerIdentity::Emse(EmseId::new(&format!("emse-{n}.example.com")).unwrap())
}

/// The same budget for both: `burst` at once, refilled at `per_second`.
fn pair(per_second: f64, burst: u32) -> (RateLimiter, KeyedGovernor) {
    let ours = RateLimiter::new(RateLimit { per_second, burst });
    let quota = Quota::with_period(Duration::from_secs_f64(1.0 / per_second))
        .unwrap()
        .allow_burst(NonZeroU32::new(burst).unwrap());
    (ours, Governor::keyed(quota))
}

fn admit_one_peer(c: &mut Criterion) {
    let mut group = c.benchmark_group("admit/one-peer");
    group.throughput(Throughput::Elements(1));
    let (ours, theirs) = pair(1e12, u32::MAX);
    let p = peer(0);
    group.bench_function("e2m-https", |b| {
        b.iter(|| black_box(ours.check(black_box(&p), Instant::now()).is_ok()));
    });
    group.bench_function("governor", |b| {
        b.iter(|| black_box(theirs.check_key(black_box(&p)).is_ok()));
    });
    group.finish();
}

fn refuse_one_peer(c: &mut Criterion) {
    let mut group = c.benchmark_group("refuse/one-peer");
    group.throughput(Throughput::Elements(1));
    // One token per 1000 s, spent at once: every measured call is a refusal, and both
    // compute the wait (the server turns it into Retry-After).
    let (ours, theirs) = pair(0.001, 1);
    let p = peer(0);
    assert!(ours.check(&p, Instant::now()).is_ok());
    assert!(theirs.check_key(&p).is_ok());
    let clock = governor::clock::DefaultClock::default();
    group.bench_function("e2m-https", |b| {
        b.iter(|| black_box(ours.check(black_box(&p), Instant::now()).err()));
    });
    group.bench_function("governor", |b| {
        b.iter(|| {
            black_box(
                theirs
                    .check_key(black_box(&p))
                    .err()
                    .map(|not_until| not_until.wait_time_from(governor::clock::Clock::now(&clock))),
            )
        });
    });
    group.finish();
}

fn admit_many_peers(c: &mut Criterion) {
    const PEERS: usize = 1000;
    let mut group = c.benchmark_group("admit/1000-peers");
    group.throughput(Throughput::Elements(1));
    let (ours, theirs) = pair(1e12, u32::MAX);
    let peers: Vec<PeerIdentity> = (0..PEERS).map(peer).collect();
    let mut i = 0;
    group.bench_function("e2m-https", |b| {
        b.iter(|| {
            i = (i + 1) % PEERS;
            black_box(ours.check(&peers[i], Instant::now()).is_ok())
        });
    });
    let mut i = 0;
    group.bench_function("governor", |b| {
        b.iter(|| {
            i = (i + 1) % PEERS;
            black_box(theirs.check_key(&peers[i]).is_ok())
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
    let (ours, theirs) = pair(1e12, u32::MAX);
    let ours = Arc::new(ours);
    let theirs = Arc::new(theirs);
    group.bench_function("e2m-https", |b| {
        let ours = ours.clone();
        b.iter_custom(move |iters| {
            let ours = ours.clone();
            contended(
                iters,
                Arc::new(move |p: &PeerIdentity| ours.check(p, Instant::now()).is_ok()),
            )
        });
    });
    group.bench_function("governor", |b| {
        let theirs = theirs.clone();
        b.iter_custom(move |iters| {
            let theirs = theirs.clone();
            contended(
                iters,
                Arc::new(move |p: &PeerIdentity| theirs.check_key(p).is_ok()),
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
