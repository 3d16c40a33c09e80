//! The public conformance suite, against a real PostgreSQL started for this test.
#![allow(
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails loudly on a broken fixture"
)]

mod support;

use std::sync::atomic::{AtomicU32, Ordering};

use std::time::Duration;

use e2m_keystore::conformance::{self, Factories, ShuffleConfig, WaitOn};
use e2m_keystore::{
    CacheConfig, CachedIdentities, CachedIntKeys, ManualClock, MemoryIdentityMap, RetentionPolicy,
};
use e2m_keystore_pg::{PgBackend, PgConfig};
use tokio::runtime::Handle;

/// Connects a backend on a schema of its own, from the suite's synchronous factories (the
/// suite wants a fresh, empty store per check: a fresh schema is one).
fn fresh_backend(conninfo: &str) -> PgBackend {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let schema = format!("conformance_{}", NEXT.fetch_add(1, Ordering::Relaxed));
    let config = PgConfig::from_conninfo(conninfo)
        .and_then(|c| c.with_schema(&schema))
        .and_then(|c| c.with_pool_size(4))
        .expect("config");
    tokio::task::block_in_place(|| {
        Handle::current().block_on(PgBackend::connect(&config, support::keyring(1, 0x42)))
    })
    .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stores_pass_the_conformance_suite() {
    let Some(cluster) = support::Cluster::start() else {
        return;
    };
    let conninfo = cluster.conninfo();
    let report = conformance::run_all(&Factories {
        int_keys: &|p| fresh_backend(&conninfo).int_keys(p),
        identities: &|| fresh_backend(&conninfo).identities(),
        sessions: &|p| fresh_backend(&conninfo).sessions(p),
        subscriptions: &|p| fresh_backend(&conninfo).subscriptions(p),
    })
    .await;
    assert!(report.is_ok(), "{report}");
    assert!(
        report.results.len() >= 35,
        "{} checks ran",
        report.results.len()
    );
    println!("{report}");
}

/// Waits on the test's tokio runtime from a plain thread (the pool's timeouts need it).
struct OnRuntime(Handle);

impl WaitOn for OnRuntime {
    fn wait<F: std::future::Future>(&self, f: F) -> F::Output {
        self.0.block_on(f)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pushes_in_shuffled_order_keep_the_n_newest() {
    // Issue 9 item 15 on the shared store: N + k pushes per UE within one second from 4
    // threads at once over a pool of 4 connections, in 60 shuffled orders; the N newest
    // (by millisecond, then key id) are always kept.
    let Some(cluster) = support::Cluster::start() else {
        return;
    };
    let conninfo = cluster.conninfo();
    let policy = RetentionPolicy::new(4, std::time::Duration::from_secs(3600)).expect("policy");
    let store = fresh_backend(&conninfo).int_keys(policy);
    let wait = OnRuntime(Handle::current());
    let config = ShuffleConfig {
        rounds: 60,
        extra: 6,
        threads: 4,
    };
    let report =
        tokio::task::spawn_blocking(move || conformance::shuffled_pushes(&store, &wait, config))
            .await
            .expect("the pushing threads");
    let report = report.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.pushes, 60 * 10);
    assert!(report.stale > 0 && report.evictions > 0, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outbox_passes_the_outbox_conformance_suite() {
    let Some(cluster) = support::Cluster::start() else {
        return;
    };
    let conninfo = cluster.conninfo();
    let report = conformance::outbox(&|retention| {
        let backend = fresh_backend(&conninfo);
        (
            backend.int_keys(retention),
            backend.subscriptions(e2m_keystore::SubscriptionPolicy::DEFAULT),
        )
    })
    .await;
    assert!(report.is_ok(), "{report}");
    assert!(
        report.results.len() >= 9,
        "{} checks ran",
        report.results.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_identity_map_and_keys_pass_the_identity_keys_suite() {
    let Some(cluster) = support::Cluster::start() else {
        return;
    };
    let conninfo = cluster.conninfo();
    // The pair from one backend (the joined statement), then a memory identity map in
    // front of PostgreSQL keys (the two-step fallback), then both through the read caches
    // (off and on): every pair gives the same answers.
    let same_backend = conformance::identity_keys(&|retention| {
        let backend = fresh_backend(&conninfo);
        (backend.identities(), backend.int_keys(retention))
    })
    .await;
    let memory_map = conformance::identity_keys(&|retention| {
        (
            MemoryIdentityMap::new(),
            fresh_backend(&conninfo).int_keys(retention),
        )
    })
    .await;
    let two_backends = conformance::identity_keys(&|retention| {
        (
            fresh_backend(&conninfo).identities(),
            fresh_backend(&conninfo).int_keys(retention),
        )
    })
    .await;
    let mut reports = vec![
        ("one backend", same_backend),
        ("memory map, PostgreSQL keys", memory_map),
        ("two backends", two_backends),
    ];
    for (name, config) in [
        ("cached, TTL 0", CacheConfig::DISABLED),
        (
            "cached, TTL 1 h",
            CacheConfig::new(Duration::from_secs(3600), 1000).expect("config"),
        ),
    ] {
        let report = conformance::identity_keys(&|retention| {
            let backend = fresh_backend(&conninfo);
            (
                CachedIdentities::new(backend.identities(), config, ManualClock::new()),
                CachedIntKeys::new(backend.int_keys(retention), config, ManualClock::new()),
            )
        })
        .await;
        reports.push((name, report));
    }
    for (name, report) in reports {
        assert!(report.is_ok(), "{name}: {report}");
        assert!(
            report.results.len() >= 8,
            "{name}: {} checks ran",
            report.results.len()
        );
    }
}
