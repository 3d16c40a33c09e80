//! The in-memory stores pass the public conformance suite and its stress test.
#![allow(clippy::panic, reason = "a test fails by panicking")]

use std::sync::Arc;
use std::time::Duration;

use e2m_keystore::conformance::{self, StressConfig};
use e2m_keystore::{
    MemoryIdentityMap, MemoryIntKeyStore, MemorySessionStore, MemorySubscriptionStore,
    RetentionPolicy, block_on,
};

#[test]
fn memory_stores_pass_the_conformance_suite() {
    let report = block_on(conformance::run_all(&conformance::Factories {
        int_keys: &MemoryIntKeyStore::new,
        identities: &MemoryIdentityMap::new,
        sessions: &MemorySessionStore::new,
        subscriptions: &MemorySubscriptionStore::new,
    }));
    assert!(report.is_ok(), "{report}");
    assert!(
        report.results.len() >= 35,
        "{} checks ran",
        report.results.len()
    );
}

#[test]
fn single_shard_store_passes_too() {
    // One shard: every operation contends on one lock; the promises must not change.
    let report = block_on(conformance::int_keys(&|p| {
        MemoryIntKeyStore::with_shards(p, 1)
    }));
    assert!(report.is_ok(), "{report}");
}

#[test]
fn stress_pushers_and_fetchers_over_1000_ues() {
    for shards in [1, 64] {
        let policy = RetentionPolicy::new(4, Duration::from_secs(3600));
        let policy = policy.unwrap_or_default();
        let store = Arc::new(MemoryIntKeyStore::with_shards(policy, shards));
        let config = StressConfig {
            ues: 1000,
            pushers: 2,
            keys_per_ue: 12,
            fetchers: 3,
            lookups_per_fetcher: 20_000,
        };
        let report = conformance::stress_int_keys(store, config);
        let report = report.unwrap_or_else(|e| panic!("stress test, {shards} shards: {e}"));
        assert_eq!(report.pushes, 12_000);
        assert_eq!(report.lookups, 60_000);
        assert!(
            report.hits > 0,
            "no lookup ever hit: the test checks nothing"
        );
    }
}

/// The same suite, one test per check (what a backend's tests look like).
mod memory {
    use e2m_keystore::{
        MemoryIdentityMap, MemoryIntKeyStore, MemorySessionStore, MemorySubscriptionStore,
    };

    e2m_keystore::conformance_tests! {
        run: e2m_keystore::block_on,
        int_keys: MemoryIntKeyStore::new,
        identities: MemoryIdentityMap::new,
        sessions: MemorySessionStore::new,
        subscriptions: MemorySubscriptionStore::new,
        outbox: |retention| {
            let subscriptions = MemorySubscriptionStore::default();
            let keys = MemoryIntKeyStore::with_subscriptions(retention, &subscriptions);
            (keys, subscriptions)
        },
    }
}

#[test]
fn the_outbox_macro_covers_every_outbox_check() {
    let report = block_on(conformance::outbox(&|retention| {
        let subscriptions = MemorySubscriptionStore::default();
        (
            MemoryIntKeyStore::with_subscriptions(retention, &subscriptions),
            subscriptions,
        )
    }));
    assert!(report.is_ok(), "{report}");
    let mut suite: Vec<&str> = report.results.iter().map(|r| r.check).collect();
    let mut covered = memory::outbox::CHECKS.to_vec();
    suite.sort_unstable();
    covered.sort_unstable();
    assert_eq!(suite, covered);
}

#[test]
fn the_macro_covers_every_check_of_the_suite() {
    let report = block_on(conformance::run_all(&conformance::Factories {
        int_keys: &MemoryIntKeyStore::new,
        identities: &MemoryIdentityMap::new,
        sessions: &MemorySessionStore::new,
        subscriptions: &MemorySubscriptionStore::new,
    }));
    let mut suite: Vec<(&str, &str)> = report.results.iter().map(|r| (r.suite, r.check)).collect();
    let mut covered: Vec<(&str, &str)> = [
        ("int_keys", memory::int_keys::CHECKS),
        ("identities", memory::identities::CHECKS),
        ("sessions", memory::sessions::CHECKS),
        ("subscriptions", memory::subscriptions::CHECKS),
    ]
    .into_iter()
    .flat_map(|(s, checks)| checks.iter().map(move |c| (s, *c)))
    .collect();
    suite.sort_unstable();
    covered.sort_unstable();
    assert_eq!(suite, covered);
}
