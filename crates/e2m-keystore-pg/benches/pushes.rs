//! Acknowledged pushes per second with 16 concurrent pushers (16 HSS connections), on a
//! throwaway PostgreSQL (fsync and synchronous_commit on: every push waits for its durable
//! commit) beside the in-memory backend, in the same run; then PostgreSQL alone with 64
//! pushers, to show what bounds the rate (WAL flushes shared by concurrent commits).
//!
//! `cargo bench -p e2m-keystore-pg --bench pushes`; criterion reports elements/s, one
//! element being one acknowledged push. Quote `uptime` beside the figures.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a benchmark fails loudly on a broken fixture"
)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use e2m_keystore::{
    E2mIntKey, EmseId, EventSet, EventType, Imsi, IntKeyStore, KeyId, MemoryIntKeyStore,
    RetentionPolicy, SessionRef, SubscriptionPolicy, SubscriptionRecord, SubscriptionStore,
    Timestamp,
};
use e2m_keystore_pg::{PgBackend, PgConfig};

const PUSHERS: u64 = 16;
/// UEs each pusher cycles over: pushes go to many UEs, as from an HSS, and each UE soon
/// holds N keys, so most pushes also evict one.
const UES_PER_PUSHER: u64 = 2_000;

/// Runs `iters` pushes spread over `pushers` concurrent tasks; returns the wall time.
async fn push_concurrently<S: IntKeyStore + 'static>(
    store: Arc<S>,
    pushers: u64,
    iters: u64,
    clock: Arc<AtomicU64>,
) -> Duration {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..pushers {
        let store = store.clone();
        let clock = clock.clone();
        let n = iters / pushers + u64::from(p < iters % pushers);
        tasks.push(tokio::spawn(async move {
            for _ in 0..n {
                let t = clock.fetch_add(1, Ordering::Relaxed);
                let ue = p * UES_PER_PUSHER + t % UES_PER_PUSHER;
                let imsi = Imsi::new(&format!("00101{ue:010}")).unwrap();
                let id = u32::try_from(t % u64::from(u32::MAX)).unwrap();
                let created = Timestamp::from_unix_secs(1_800_000_000 + t / 1_000);
                let key = E2mIntKey::from_array([u8::try_from(t % 251).unwrap(); 32]);
                let out = store
                    .push(&imsi, KeyId::from_u32(id), &key, created, created)
                    .await
                    .expect("push");
                assert!(out.is_held(), "{out:?}");
            }
        }));
    }
    for t in tasks {
        t.await.expect("pusher");
    }
    start.elapsed()
}

fn bench_pushes(c: &mut Criterion, runtime: &tokio::runtime::Runtime, conninfo: &str) {
    let policy = RetentionPolicy::new(4, Duration::from_secs(86_400)).unwrap();
    let memory = Arc::new(MemoryIntKeyStore::new(policy));
    let config = PgConfig::from_conninfo(conninfo)
        .unwrap()
        .with_pool_size(16)
        .unwrap();
    let backend = runtime
        .block_on(PgBackend::connect(&config, support::keyring(1, 0x42)))
        .expect("connect");
    let postgres = Arc::new(backend.int_keys(policy));
    let clock = Arc::new(AtomicU64::new(0));
    // A second schema with one subscriber to every UE's key-available and key-retired
    // events: each push also records its notifications (outbox) in its own statement.
    let subscribed_backend = runtime
        .block_on(PgBackend::connect(
            &config.clone().with_schema("e2m_subscribed").unwrap(),
            support::keyring(1, 0x42),
        ))
        .expect("connect");
    runtime
        .block_on(
            subscribed_backend
                .subscriptions(SubscriptionPolicy::DEFAULT)
                .add(SubscriptionRecord {
                    session: SessionRef::from_u64(1),
                    emse: EmseId::new("emse-a.example.com").unwrap(),
                    events: EventSet::single(EventType::KeyAvailable).with(EventType::KeyRetired),
                    ue: None,
                    callback: "https://emse-a.example.com/e2m/v1/notifications".to_owned(),
                }),
        )
        .expect("subscribe");
    let postgres_subscribed = Arc::new(subscribed_backend.int_keys(policy));

    let mut group = c.benchmark_group("push_16_concurrent");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("memory", |b| {
        b.to_async(runtime)
            .iter_custom(|iters| push_concurrently(memory.clone(), PUSHERS, iters, clock.clone()));
    });
    group.bench_function("postgres", |b| {
        b.to_async(runtime).iter_custom(|iters| {
            push_concurrently(postgres.clone(), PUSHERS, iters, clock.clone())
        });
    });
    group.bench_function("postgres_one_subscriber", |b| {
        b.to_async(runtime).iter_custom(|iters| {
            push_concurrently(postgres_subscribed.clone(), PUSHERS, iters, clock.clone())
        });
    });
    group.finish();

    // Each push waits for a WAL flush, and concurrent commits share one (group commit), so
    // the rate is bounded by pushers / flush time: more HSS connections, more per flush.
    let config = config.with_pool_size(64).unwrap();
    let backend = runtime
        .block_on(PgBackend::connect(&config, support::keyring(1, 0x42)))
        .expect("connect");
    let postgres = Arc::new(backend.int_keys(policy));
    let mut group = c.benchmark_group("push_64_concurrent");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("postgres", |b| {
        b.to_async(runtime)
            .iter_custom(|iters| push_concurrently(postgres.clone(), 64, iters, clock.clone()));
    });
    group.finish();
}

fn main() {
    // `E2M_PG_BENCH_CONF`: extra postgresql.conf lines for the throwaway cluster, separated
    // by `;` (e.g. `commit_delay = 200; commit_siblings = 4`), to measure server settings
    // against the default in the same conditions.
    let extra = std::env::var("E2M_PG_BENCH_CONF")
        .unwrap_or_default()
        .replace(';', "\n");
    if !extra.is_empty() {
        println!("postgresql.conf additions: {}", extra.replace('\n', "; "));
    }
    let Some(cluster) = support::Cluster::start_with(&extra) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut c = Criterion::default().configure_from_args();
    bench_pushes(&mut c, &runtime, &cluster.conninfo());
    c.final_summary();
    drop(cluster);
}
