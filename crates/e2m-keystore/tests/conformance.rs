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

#[test]
fn concurrent_pushes_in_shuffled_order_keep_the_n_newest() {
    // Issue 9 item 15: N + k pushes for one UE within one second, from 4 threads at once in
    // 300 shuffled orders; the N newest (by millisecond, then key id) are always kept.
    for shards in [1, 64] {
        let policy = RetentionPolicy::new(4, Duration::from_secs(3600)).unwrap_or_default();
        let store = MemoryIntKeyStore::with_shards(policy, shards);
        let config = conformance::ShuffleConfig {
            rounds: 300,
            extra: 6,
            threads: 4,
        };
        let report = conformance::shuffled_pushes(&store, &conformance::BlockOn, config)
            .unwrap_or_else(|e| panic!("{shards} shards: {e}"));
        assert_eq!(report.pushes, 300 * 10);
        assert_eq!(report.stale + report.evictions, 300 * 6);
        // Both ways of losing a place happen, so both paths were exercised.
        assert!(report.stale > 0 && report.evictions > 0, "{report:?}");
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
        identity_keys: |retention| (MemoryIdentityMap::new(), MemoryIntKeyStore::new(retention)),
    }
}

#[test]
fn the_identity_keys_macro_covers_every_identity_keys_check() {
    let report = block_on(conformance::identity_keys(&|retention| {
        (MemoryIdentityMap::new(), MemoryIntKeyStore::new(retention))
    }));
    assert!(report.is_ok(), "{report}");
    let mut suite: Vec<&str> = report.results.iter().map(|r| r.check).collect();
    let mut covered = memory::identity_keys::CHECKS.to_vec();
    suite.sort_unstable();
    covered.sort_unstable();
    assert_eq!(suite, covered);
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

/// The read-through caches (`e2m_keystore::cache`) keep every promise of the traits they
/// wrap, with caching off (TTL 0) and on. With caching on, the clock never moves, so no
/// entry ever goes stale by time: every promise then rests on the cache's invalidation by
/// writes through it (each check uses one handle; what another handle may see stale, and
/// for how long, is tested in the module's own tests and in `emks_postgres_instances`).
mod cached {
    use std::time::Duration;

    use e2m_keystore::{
        CacheConfig, CachedIdentities, CachedIntKeys, CachedSessions, ManualClock,
        MemoryIdentityMap, MemoryIntKeyStore, MemorySessionStore,
    };

    fn on() -> CacheConfig {
        CacheConfig::new(Duration::from_secs(3600), 10_000).unwrap_or(CacheConfig::DISABLED)
    }

    #[test]
    fn caching_is_on() {
        assert!(on().is_enabled());
    }

    mod ttl_0 {
        use super::*;

        e2m_keystore::conformance_tests! {
            run: e2m_keystore::block_on,
            int_keys: |p| CachedIntKeys::new(MemoryIntKeyStore::new(p), CacheConfig::DISABLED, ManualClock::new()),
            identities: || CachedIdentities::new(MemoryIdentityMap::new(), CacheConfig::DISABLED, ManualClock::new()),
            sessions: |p| CachedSessions::new(MemorySessionStore::new(p), CacheConfig::DISABLED, ManualClock::new()),
            identity_keys: |p| (
                CachedIdentities::new(MemoryIdentityMap::new(), CacheConfig::DISABLED, ManualClock::new()),
                CachedIntKeys::new(MemoryIntKeyStore::new(p), CacheConfig::DISABLED, ManualClock::new()),
            ),
        }
    }

    mod ttl_1h {
        use super::*;

        e2m_keystore::conformance_tests! {
            run: e2m_keystore::block_on,
            int_keys: |p| CachedIntKeys::new(MemoryIntKeyStore::new(p), on(), ManualClock::new()),
            identities: || CachedIdentities::new(MemoryIdentityMap::new(), on(), ManualClock::new()),
            sessions: |p| CachedSessions::new(MemorySessionStore::new(p), on(), ManualClock::new()),
            identity_keys: |p| (
                CachedIdentities::new(MemoryIdentityMap::new(), on(), ManualClock::new()),
                CachedIntKeys::new(MemoryIntKeyStore::new(p), on(), ManualClock::new()),
            ),
        }
    }

    /// A small cache (evicting all the time) keeps the promises too.
    mod ttl_1h_capacity_4 {
        use super::*;

        fn small() -> CacheConfig {
            CacheConfig::new(Duration::from_secs(3600), 4).unwrap_or(CacheConfig::DISABLED)
        }

        e2m_keystore::conformance_tests! {
            run: e2m_keystore::block_on,
            int_keys: |p| CachedIntKeys::new(MemoryIntKeyStore::new(p), small(), ManualClock::new()),
            identities: || CachedIdentities::new(MemoryIdentityMap::new(), small(), ManualClock::new()),
            sessions: |p| CachedSessions::new(MemorySessionStore::new(p), small(), ManualClock::new()),
            identity_keys: |p| (
                CachedIdentities::new(MemoryIdentityMap::new(), small(), ManualClock::new()),
                CachedIntKeys::new(MemoryIntKeyStore::new(p), small(), ManualClock::new()),
            ),
        }
    }
}

/// Pushers and fetchers racing through one caching handle: no key lost or torn, and none
/// served after its eviction (a fill racing a push must not store what the push retired).
#[test]
fn stress_through_the_key_cache() {
    use e2m_keystore::{CacheConfig, CachedIntKeys, ManualClock};

    let policy = RetentionPolicy::new(4, Duration::from_secs(3600)).unwrap_or_default();
    for capacity in [64, 100_000] {
        let config =
            CacheConfig::new(Duration::from_secs(3600), capacity).unwrap_or(CacheConfig::DISABLED);
        assert!(config.is_enabled());
        let store = Arc::new(CachedIntKeys::new(
            MemoryIntKeyStore::new(policy),
            config,
            ManualClock::new(),
        ));
        let report = conformance::stress_int_keys(
            store.clone(),
            StressConfig {
                ues: 1000,
                pushers: 2,
                keys_per_ue: 12,
                fetchers: 3,
                lookups_per_fetcher: 20_000,
            },
        );
        let report = report.unwrap_or_else(|e| panic!("capacity {capacity}: {e}"));
        assert!(report.hits > 0, "no lookup ever hit");
        assert!(
            store.cached() > 0,
            "nothing was cached: the test checked the backend only"
        );
    }
}
