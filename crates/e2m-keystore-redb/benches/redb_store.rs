//! Criterion benchmarks of the redb store beside the in-memory store, in the same run:
//! durable acknowledged pushes with 16 concurrent pushers (group commit), also with one
//! subscriber to every UE (each push then records its notifications in the outbox, in the
//! same transaction), and a key fetch.
//!
//! `cargo bench -p e2m-keystore-redb --bench redb_store`
#![allow(clippy::unwrap_used, reason = "a bench fails loudly")]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use e2m_keystore::{
    E2mIntKey, EmseId, EventSet, EventType, Imsi, IntKeyStore, KeyId, MemoryIntKeyStore,
    RetentionPolicy, SessionRef, SubscriptionRecord, SubscriptionStore, Timestamp, block_on,
};
use e2m_keystore_redb::e2m_seal::{Kek, KekVersion, format_kek_file};
use e2m_keystore_redb::{Keyring, RedbStore, RedbStoreConfig};

const PUSHERS: u64 = 16;
const UES: u64 = 10_000;
const T0: u64 = 1_800_000_000;

fn imsi(n: u64) -> Imsi {
    Imsi::new(&format!("00101{:010}", n % UES)).unwrap()
}

fn keyring() -> Keyring {
    let version = KekVersion::new(1).unwrap();
    Keyring::new([Kek::parse(format_kek_file(version, &[0x42; 32]).as_bytes()).unwrap()]).unwrap()
}

/// `iters` pushes spread over 16 concurrent tasks; returns the wall time. Each push has a
/// fresh key id, so every push stores (and evicts past N).
async fn push_concurrently<S: IntKeyStore + 'static>(
    store: &Arc<S>,
    next: &Arc<AtomicU64>,
    iters: u64,
) -> Duration {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..PUSHERS {
        let (store, next) = (store.clone(), next.clone());
        let share = iters / PUSHERS + u64::from(p < iters % PUSHERS);
        tasks.push(tokio::spawn(async move {
            for _ in 0..share {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let created = Timestamp::from_unix_secs(T0 + n / UES);
                let key = E2mIntKey::from_array([n as u8; 32]);
                let pushed = store
                    .push(&imsi(n), KeyId::from_u32(n as u32), &key, created, created)
                    .await;
                // `Stale` is possible (and answered durably too): a task preempted between
                // taking `n` and pushing can find its UE already holding N newer keys.
                assert!(pushed.is_ok());
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    start.elapsed()
}

fn pushes(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let redb = Arc::new(
        RedbStore::open(dir.path(), keyring(), RedbStoreConfig::default())
            .unwrap()
            .int_keys(),
    );
    let plain_dir = tempfile::tempdir().unwrap();
    let without_quick_repair = RedbStoreConfig {
        quick_repair: false,
        ..RedbStoreConfig::default()
    };
    let redb_plain = Arc::new(
        RedbStore::open(plain_dir.path(), keyring(), without_quick_repair)
            .unwrap()
            .int_keys(),
    );
    // The same store with one subscriber to every UE's key-available and key-retired
    // events: each push also records its notifications (outbox) in its transaction.
    let subscribed_dir = tempfile::tempdir().unwrap();
    let subscribed_store =
        RedbStore::open(subscribed_dir.path(), keyring(), RedbStoreConfig::default()).unwrap();
    block_on(subscribed_store.subscriptions().add(SubscriptionRecord {
        session: SessionRef::from_u64(1),
        emse: EmseId::new("emse-a.example.com").unwrap(),
        events: EventSet::single(EventType::KeyAvailable).with(EventType::KeyRetired),
        ue: None,
        callback: "https://emse-a.example.com/e2m/v1/notifications".to_owned(),
    }))
    .unwrap();
    let redb_subscribed = Arc::new(subscribed_store.int_keys());
    let memory = Arc::new(MemoryIntKeyStore::new(RetentionPolicy::DEFAULT));
    let next = Arc::new(AtomicU64::new(0));
    let mut group = c.benchmark_group("push_16_concurrent");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("memory", |b| {
        b.iter_custom(|iters| runtime.block_on(push_concurrently(&memory, &next, iters)));
    });
    group.bench_function("redb_durable", |b| {
        b.iter_custom(|iters| runtime.block_on(push_concurrently(&redb, &next, iters)));
    });
    group.bench_function("redb_durable_one_subscriber", |b| {
        b.iter_custom(|iters| runtime.block_on(push_concurrently(&redb_subscribed, &next, iters)));
    });
    group.bench_function("redb_durable_without_quick_repair", |b| {
        b.iter_custom(|iters| runtime.block_on(push_concurrently(&redb_plain, &next, iters)));
    });
    group.finish();

    // A fetch: redb (read transaction + B-tree + GCM-SIV open) beside memory (hash lookup).
    let mut group = c.benchmark_group("get_held_key");
    let probe = imsi(7);
    let now = Timestamp::from_unix_secs(T0 + next.load(Ordering::Relaxed) / UES);
    let mem_id = block_on(memory.latest(&probe, now))
        .unwrap()
        .unwrap()
        .info
        .key_id;
    let redb_id = block_on(redb.latest(&probe, now))
        .unwrap()
        .unwrap()
        .info
        .key_id;
    group.bench_function("memory", |b| {
        b.iter(|| block_on(memory.get(&probe, mem_id, now)));
    });
    group.bench_function("redb", |b| {
        b.iter(|| block_on(redb.get(&probe, redb_id, now)));
    });
    group.finish();
}

criterion_group!(benches, pushes);
criterion_main!(benches);
