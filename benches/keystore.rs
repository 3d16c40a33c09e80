//! The in-memory intermediate key store at EMKS scale (issue 4): bytes per UE at 1,000,000
//! UEs with N = 4, and lookups per second on one and two threads, each against a naive
//! `std` baseline measured in the same run (`HashMap<String, VecDeque<…>>` with SipHash,
//! behind one `RwLock`).
//!
//! Times are CPU time of the measuring thread (see `cpu_now`). `cargo bench --bench
//! keystore` prints the memory table first (bytes counted by a global
//! allocator wrapper, and the resident-set growth, which adds malloc's own overhead), then
//! criterion's lookup figures; `lookups/2 threads` reports elements per second = lookups
//! per second summed over both threads.
#![allow(missing_docs, reason = "criterion macros generate undocumented items")]
#![allow(clippy::unwrap_used, reason = "benchmark set-up")]

use std::collections::{HashMap, VecDeque};
use std::hint::black_box;
use std::sync::RwLock;
use std::time::Duration;

use cap::Cap;
use criterion::{Criterion, Throughput};
use e2m_kdf::E2mIntKey;
use e2m_keyid::{Imsi, KeyId};
use e2m_keystore::{IntKeyStore, MemoryIntKeyStore, RetentionPolicy, Timestamp, block_on};

#[global_allocator]
static ALLOCATOR: Cap<std::alloc::System> = Cap::new(std::alloc::System, usize::MAX);

const UES: u32 = 1_000_000;
const N: u32 = 4;

fn imsi(n: u32) -> Imsi {
    Imsi::new(&format!("00101{n:010}")).unwrap()
}

fn key_bytes(ue: u32, id: u32) -> [u8; 32] {
    let mut k = [0u8; 32];
    k[..4].copy_from_slice(&ue.to_le_bytes());
    k[4..8].copy_from_slice(&id.to_le_bytes());
    k
}

fn rss_bytes() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<usize>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

/// The naive baseline: what a first implementation would write.
type Naive = RwLock<HashMap<String, VecDeque<(u32, [u8; 32], u64)>>>;

fn naive_push(map: &Naive, imsi: &Imsi, id: u32, key: [u8; 32], created: u64) {
    let mut m = map.write().unwrap();
    let keys = m.entry(imsi.as_str().to_owned()).or_default();
    keys.retain(|k| k.0 != id);
    keys.push_back((id, key, created));
    if keys.len() > N as usize {
        keys.pop_front();
    }
}

fn naive_get(map: &Naive, imsi: &Imsi, id: u32) -> Option<E2mIntKey> {
    let m = map.read().unwrap();
    m.get(imsi.as_str())
        .and_then(|keys| keys.iter().find(|k| k.0 == id))
        .map(|k| E2mIntKey::from_array(k.1))
}

struct Fixture {
    imsis: Vec<Imsi>,
    ours: MemoryIntKeyStore,
    naive: Naive,
    now: Timestamp,
}

fn fill() -> Fixture {
    let imsis: Vec<Imsi> = (0..UES).map(imsi).collect();
    let now = Timestamp::from_unix_secs(1_800_000_000);
    let policy = RetentionPolicy::new(N as usize, Duration::from_secs(86_400)).unwrap();

    println!("\n== keystore: memory at {UES} UEs x {N} keys (N = {N}) ==");
    println!(
        "{:<42} {:>14} {:>12} {:>14} {:>12}",
        "store", "counted bytes", "B/UE", "RSS growth", "RSS B/UE"
    );
    let (a0, r0) = (ALLOCATOR.allocated(), rss_bytes());
    let ours = MemoryIntKeyStore::new(policy);
    let start = cpu_now();
    for id in 1..=N {
        for (ue, imsi) in imsis.iter().enumerate() {
            let key = E2mIntKey::from_array(key_bytes(ue as u32, id));
            let created = Timestamp::from_unix_secs(now.as_unix_secs() - 100 + u64::from(id));
            block_on(ours.push(imsi, KeyId::from_u32(id), &key, created, now)).unwrap();
        }
    }
    let fill_time = cpu_now().saturating_sub(start);
    let (a1, r1) = (ALLOCATOR.allocated(), rss_bytes());
    let row = |name: &str, bytes: usize, rss: usize| {
        println!(
            "{name:<42} {bytes:>14} {:>12.1} {rss:>14} {:>12.1}",
            bytes as f64 / f64::from(UES),
            rss as f64 / f64::from(UES)
        );
    };
    row(
        "e2m-keystore MemoryIntKeyStore",
        a1 - a0,
        r1.saturating_sub(r0),
    );

    let naive: Naive = RwLock::new(HashMap::new());
    let (a2, r2) = (ALLOCATOR.allocated(), rss_bytes());
    for id in 1..=N {
        for (ue, imsi) in imsis.iter().enumerate() {
            naive_push(&naive, imsi, id, key_bytes(ue as u32, id), 0);
        }
    }
    let (a3, r3) = (ALLOCATOR.allocated(), rss_bytes());
    row(
        "baseline std HashMap<String,VecDeque>",
        a3 - a2,
        r3.saturating_sub(r2),
    );
    println!(
        "single-thread fill of e2m-keystore: {:.0} pushes/s ({} pushes in {:.2?} of CPU time)",
        f64::from(UES * N) / fill_time.as_secs_f64(),
        UES * N,
        fill_time
    );
    println!("(goal: <= 256 B/UE; counted = bytes requested from the allocator)");
    println!(
        "load average during the run: {}; transparent huge pages in use: {} kB\n",
        load_average(),
        huge_pages_kb()
    );
    Fixture {
        imsis,
        ours,
        naive,
        now,
    }
}

/// CPU time of the calling thread, from `/proc/thread-self/schedstat` (nanoseconds on the
/// CPU). The figures are taken in CPU time because the machine these benches run on is
/// shared: with a load of 7 on 2 cores, wall-clock time mostly measures the scheduler. (The
/// other processes still share the caches, so the figures stay pessimistic.)
fn cpu_now() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|n| n.parse::<u64>().ok())
        })
        .map_or(Duration::ZERO, Duration::from_nanos)
}

/// Runs `op` `iters` times and returns the CPU time it took.
fn cpu_iters<T>(iters: u64, mut op: impl FnMut() -> T) -> Duration {
    let start = cpu_now();
    for _ in 0..iters {
        black_box(op());
    }
    cpu_now().saturating_sub(start)
}

/// `AnonHugePages` of this process: non-zero when malloc got transparent huge pages (run
/// with `GLIBC_TUNABLES=glibc.malloc.hugetlb=1` on a system where THP is `madvise`).
fn huge_pages_kb() -> u64 {
    std::fs::read_to_string("/proc/self/smaps_rollup")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("AnonHugePages:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_owned()
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 16) as u32
    }
}

fn ours_lookup(f: &Fixture, rng: &mut Rng) -> bool {
    let ue = rng.next() % UES;
    let id = rng.next() % N + 1;
    block_on(
        f.ours
            .get(&f.imsis[ue as usize], KeyId::from_u32(id), f.now),
    )
    .unwrap()
    .is_some()
}

fn naive_lookup(f: &Fixture, rng: &mut Rng) -> bool {
    let ue = rng.next() % UES;
    let id = rng.next() % N + 1;
    naive_get(&f.naive, &f.imsis[ue as usize], id).is_some()
}

/// Runs `iters` lookups on each of `threads` threads at once; returns the largest CPU time
/// a thread spent (so lookups/s in all = threads × iters / that).
fn on_threads(
    f: &Fixture,
    threads: u64,
    iters: u64,
    op: fn(&Fixture, &mut Rng) -> bool,
) -> Duration {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (t + 1));
                    let mut hits = 0u64;
                    let start = cpu_now();
                    for _ in 0..iters {
                        hits += u64::from(op(f, &mut rng));
                    }
                    let spent = cpu_now().saturating_sub(start);
                    assert_eq!(hits, iters, "every lookup should hit");
                    spent
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .max()
            .unwrap_or_default()
    })
}

fn main() {
    let f = fill();
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .configure_from_args();

    let mut g = c.benchmark_group("lookups/1 thread");
    g.throughput(Throughput::Elements(1));
    let mut rng = Rng(1);
    g.bench_function("e2m-keystore", |b| {
        b.iter_custom(|iters| cpu_iters(iters, || ours_lookup(&f, &mut rng)))
    });
    let mut rng = Rng(1);
    g.bench_function("baseline std+SipHash", |b| {
        b.iter_custom(|iters| cpu_iters(iters, || naive_lookup(&f, &mut rng)))
    });

    // The floor: one random 8-octet read in a 256 MiB array (as large as the store), the
    // memory latency every lookup at this size pays at least once.
    let floor: Vec<u64> = (0..(32u64 << 20)).collect();
    let mut rng = Rng(7);
    g.bench_function("floor: one random read in 256 MiB", |b| {
        b.iter_custom(|iters| {
            cpu_iters(iters, || {
                let i = (u64::from(rng.next()) << 8 ^ u64::from(rng.next())) as usize;
                floor[i % floor.len()]
            })
        })
    });
    // And its latency: each read depends on the one before (a random cycle through the
    // array, Sattolo's shuffle), as a lookup's table, bucket and record reads do.
    let mut chase: Vec<u32> = (0..(64u32 << 20)).collect();
    let mut r = Rng(11);
    for i in (1..chase.len()).rev() {
        let j = (u64::from(r.next()) << 8 ^ u64::from(r.next())) as usize % i;
        chase.swap(i, j);
    }
    let mut at = 0u32;
    g.bench_function("floor: one dependent random read in 256 MiB", |b| {
        b.iter_custom(|iters| {
            cpu_iters(iters, || {
                at = chase[at as usize];
                at
            })
        })
    });
    g.finish();
    drop(floor);
    drop(chase);

    // One iteration = one lookup on each of two threads; elements/s = lookups/s in all.
    let mut g = c.benchmark_group("lookups/2 threads");
    g.throughput(Throughput::Elements(2));
    g.bench_function("e2m-keystore", |b| {
        b.iter_custom(|iters| on_threads(&f, 2, iters, ours_lookup))
    });
    g.bench_function("baseline std+SipHash", |b| {
        b.iter_custom(|iters| on_threads(&f, 2, iters, naive_lookup))
    });
    g.finish();

    // Pushes into the full store: every push evicts (and zeroizes) the UE's oldest key.
    let mut g = c.benchmark_group("pushes/1 thread");
    g.throughput(Throughput::Elements(1));
    let mut next = N + 1;
    let mut ue = 0u32;
    let now = Timestamp::from_unix_secs(f.now.as_unix_secs() + 1);
    g.bench_function("e2m-keystore (evicting)", |b| {
        b.iter_custom(|iters| {
            cpu_iters(iters, || {
                ue += 1;
                if ue == UES {
                    ue = 0;
                    next += 1;
                }
                let key = E2mIntKey::from_array(key_bytes(ue, next));
                block_on(
                    f.ours
                        .push(&f.imsis[ue as usize], KeyId::from_u32(next), &key, now, now),
                )
                .unwrap()
            })
        })
    });
    g.finish();
    c.final_summary();
}
