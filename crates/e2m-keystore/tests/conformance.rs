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
