//! The redb store passes the public conformance suite of e2m-keystore, and its stress test.
#![allow(
    clippy::panic,
    clippy::unwrap_used,
    reason = "a test fails by panicking"
)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use e2m_keystore::conformance::{self, StressConfig};
use e2m_keystore::{RetentionPolicy, block_on};
use e2m_keystore_redb::RedbStoreConfig;

#[test]
fn redb_store_passes_the_conformance_suite() {
    let base = tempfile::tempdir().unwrap();
    let report = block_on(conformance::run_all(&conformance::Factories {
        int_keys: &|retention| {
            common::fresh(
                base.path(),
                RedbStoreConfig {
                    retention,
                    ..Default::default()
                },
            )
            .int_keys()
        },
        identities: &|| common::fresh(base.path(), RedbStoreConfig::default()).identities(),
        sessions: &|sessions| {
            common::fresh(
                base.path(),
                RedbStoreConfig {
                    sessions,
                    ..Default::default()
                },
            )
            .sessions()
        },
        subscriptions: &|subscriptions| {
            common::fresh(
                base.path(),
                RedbStoreConfig {
                    subscriptions,
                    ..Default::default()
                },
            )
            .subscriptions()
        },
    }));
    assert!(report.is_ok(), "{report}");
    assert!(
        report.results.len() >= 35,
        "{} checks ran",
        report.results.len()
    );
}

#[test]
fn redb_identity_map_and_keys_pass_the_identity_keys_suite() {
    let base = tempfile::tempdir().unwrap();
    let report = block_on(conformance::identity_keys(&|retention| {
        let store = common::fresh(
            base.path(),
            RedbStoreConfig {
                retention,
                ..Default::default()
            },
        );
        (store.identities(), store.int_keys())
    }));
    assert!(report.is_ok(), "{report}");
    assert!(
        report.results.len() >= 8,
        "{} checks ran",
        report.results.len()
    );
}

#[test]
fn concurrent_pushes_in_shuffled_order_keep_the_n_newest() {
    // Issue 9 item 15 against the durable store: N + k pushes per UE within one second from
    // 4 threads at once (so several land in one group commit, decided in one transaction),
    // in 60 shuffled orders; the N newest (by millisecond, then key id) are always kept.
    let base = tempfile::tempdir().unwrap();
    let retention = RetentionPolicy::new(4, Duration::from_secs(3600)).unwrap();
    let store = common::fresh(
        base.path(),
        RedbStoreConfig {
            retention,
            ..Default::default()
        },
    )
    .int_keys();
    let config = conformance::ShuffleConfig {
        rounds: 60,
        extra: 6,
        threads: 4,
    };
    let report = conformance::shuffled_pushes(&store, &conformance::BlockOn, config)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.pushes, 60 * 10);
    assert!(report.stale > 0 && report.evictions > 0, "{report:?}");
}

#[test]
fn stress_pushers_and_fetchers_with_durable_commits() {
    // Smaller than the in-memory run: every push here waits for a disk flush (shared by the
    // pushers through group commit).
    let base = tempfile::tempdir().unwrap();
    let retention = RetentionPolicy::new(4, Duration::from_secs(3600)).unwrap();
    let store = Arc::new(
        common::fresh(
            base.path(),
            RedbStoreConfig {
                retention,
                ..Default::default()
            },
        )
        .int_keys(),
    );
    let config = StressConfig {
        ues: 200,
        pushers: 4,
        keys_per_ue: 6,
        fetchers: 2,
        lookups_per_fetcher: 5_000,
    };
    let report = conformance::stress_int_keys(store, config).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.pushes, 1200);
    assert!(
        report.hits > 0,
        "no lookup ever hit: the test checks nothing"
    );
}

#[test]
fn redb_outbox_passes_the_outbox_conformance_suite() {
    let base = tempfile::tempdir().unwrap();
    let report = block_on(conformance::outbox(&|retention| {
        let store = common::fresh(
            base.path(),
            RedbStoreConfig {
                retention,
                ..Default::default()
            },
        );
        (store.int_keys(), store.subscriptions())
    }));
    assert!(report.is_ok(), "{report}");
    assert!(
        report.results.len() >= 9,
        "{} checks ran",
        report.results.len()
    );
}
