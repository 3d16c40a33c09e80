//! A key fetch by application identity is one statement when the identity map and the keys
//! are one backend's, and the two statements of the default when they are not: counted by
//! PostgreSQL itself (`pg_stat_statements`), on a real server started for this test.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test fails loudly"
)]

mod support;

use std::time::Duration;

use e2m_keystore::conformance::test_key_bytes;
use e2m_keystore::{
    AppIdentity, CacheConfig, CachedIdentities, CachedIntKeys, E2mIntKey, EmseId, HeldKey,
    IdentityKey, IdentityMap, Imsi, IntKeyStore, KeyId, KeyInfo, ManualClock, PushOutcome,
    RetentionPolicy, StoreError, Timestamp,
};
use e2m_keystore_pg::{PgBackend, PgConfig};

const T0: u64 = 1_800_000_000;

fn at(secs: u64) -> Timestamp {
    Timestamp::from_unix_secs(T0 + secs)
}

fn imsi(n: u64) -> Imsi {
    Imsi::new(&format!("00101{n:010}")).unwrap()
}

fn app(n: u64) -> AppIdentity {
    AppIdentity::new(&format!("ue-{n}@iot.example.com")).unwrap()
}

/// A key store of this backend that does not say so (its `database()` is the default,
/// `None`): the identity map must fall back to the two steps.
struct Elsewhere<K>(K);

impl<K: IntKeyStore> IntKeyStore for Elsewhere<K> {
    fn retention(&self) -> RetentionPolicy {
        self.0.retention()
    }
    async fn push(
        &self,
        imsi: &Imsi,
        key_id: KeyId,
        key: &E2mIntKey,
        created: Timestamp,
        now: Timestamp,
    ) -> Result<PushOutcome, StoreError> {
        self.0.push(imsi, key_id, key, created, now).await
    }
    async fn get(
        &self,
        imsi: &Imsi,
        key_id: KeyId,
        now: Timestamp,
    ) -> Result<Option<HeldKey>, StoreError> {
        self.0.get(imsi, key_id, now).await
    }
    async fn latest(&self, imsi: &Imsi, now: Timestamp) -> Result<Option<HeldKey>, StoreError> {
        self.0.latest(imsi, now).await
    }
    async fn held(&self, imsi: &Imsi, now: Timestamp) -> Result<Vec<KeyInfo>, StoreError> {
        self.0.held(imsi, now).await
    }
    async fn remove_ue(&self, imsi: &Imsi) -> Result<usize, StoreError> {
        self.0.remove_ue(imsi).await
    }
    async fn sweep(&self, now: Timestamp) -> Result<Vec<(Imsi, KeyInfo)>, StoreError> {
        self.0.sweep(now).await
    }
}

/// Calls of this test's statements since the last reset, by kind: (joined, resolve, get).
fn statements(cluster: &support::Cluster) -> (u64, u64, u64) {
    let count = |pattern: &str| -> u64 {
        cluster
            .psql(&format!(
                "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements \
                 WHERE query LIKE '{pattern}'"
            ))
            .trim()
            .parse()
            .unwrap()
    };
    (
        count("SELECT i.imsi, k.created%FROM joined.identities i LEFT JOIN joined.int_keys%"),
        count("SELECT imsi FROM joined.identities WHERE%"),
        count("SELECT created, expires, sealed FROM joined.int_keys WHERE%"),
    )
}

/// What the 5 fetches of [`fetch_all`] must find, in order.
fn check(found: &[IdentityKey]) {
    assert_eq!(found.len(), 5);
    for (n, found) in found.iter().enumerate().take(2) {
        let n = n as u64;
        let IdentityKey::Held { imsi: got, key } = found else {
            panic!("UE {n}: {found:?}");
        };
        assert_eq!(*got, imsi(n));
        assert_eq!(*key.key.expose_secret(), test_key_bytes(n, 7));
    }
    assert!(
        matches!(&found[2], IdentityKey::NotHeld { imsi: i } if *i == imsi(2)),
        "{:?}",
        found[2]
    );
    assert!(
        matches!(&found[3], IdentityKey::UnknownIdentity),
        "{:?}",
        found[3]
    );
    assert!(
        matches!(&found[4], IdentityKey::UnknownIdentity),
        "{:?}",
        found[4]
    );
}

/// UEs 0 and 1 hold key 7, UE 2 holds none, identity 3 is not provisioned, identity 0 for
/// another EMSE is unknown.
async fn fetch_all<M: IdentityMap, K: IntKeyStore>(map: &M, keys: &K) -> Vec<IdentityKey> {
    let a = EmseId::new("emse-a.example.com").unwrap();
    let b = EmseId::new("emse-b.example.com").unwrap();
    let mut found = Vec::new();
    for (emse, n) in [(&a, 0), (&a, 1), (&a, 2), (&a, 3), (&b, 0)] {
        found.push(
            map.resolve_key(keys, emse, &app(n), KeyId::from_u32(7), at(10))
                .await
                .unwrap(),
        );
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_statement_per_fetch_when_map_and_keys_share_the_backend() {
    let Some(cluster) =
        support::Cluster::start_with("shared_preload_libraries = 'pg_stat_statements'\n")
    else {
        return;
    };
    cluster.psql("CREATE EXTENSION pg_stat_statements");
    let config = PgConfig::from_conninfo(&cluster.conninfo())
        .and_then(|c| c.with_schema("joined"))
        .expect("config");
    let backend = PgBackend::connect(&config, support::keyring(1, 0x42))
        .await
        .expect("connect");
    let policy = RetentionPolicy::new(4, Duration::from_secs(3600)).unwrap();
    let (map, keys) = (backend.identities(), backend.int_keys(policy));
    let a = EmseId::new("emse-a.example.com").unwrap();
    for n in 0..3 {
        map.provision(&a, &app(n), &imsi(n)).await.unwrap();
    }
    for n in 0..2 {
        let key = E2mIntKey::from_array(test_key_bytes(n, 7));
        keys.push(&imsi(n), KeyId::from_u32(7), &key, at(0), at(0))
            .await
            .unwrap();
    }
    assert_eq!(map.database(), keys.database());
    assert!(map.database().is_some());

    // Map and keys of one backend: one joined statement per fetch, nothing else.
    cluster.psql("SELECT pg_stat_statements_reset()");
    check(&fetch_all(&map, &keys).await);
    assert_eq!(statements(&cluster), (5, 0, 0));

    // The same through the read caches with caching off: still one statement per fetch.
    let off = |m| CachedIdentities::new(m, CacheConfig::DISABLED, ManualClock::new());
    let cached_map = off(backend.identities());
    let cached_keys = CachedIntKeys::new(
        backend.int_keys(policy),
        CacheConfig::DISABLED,
        ManualClock::new(),
    );
    cluster.psql("SELECT pg_stat_statements_reset()");
    check(&fetch_all(&cached_map, &cached_keys).await);
    assert_eq!(statements(&cluster), (5, 0, 0));

    // With caching on: the misses are one statement each and fill the identity cache; a
    // second round finds each known identity cached and reads only the key (once, then the
    // key cache serves it too).
    let on = CacheConfig::new(Duration::from_secs(3600), 100).unwrap();
    let cached_map = CachedIdentities::new(backend.identities(), on, ManualClock::new());
    let cached_keys = CachedIntKeys::new(backend.int_keys(policy), on, ManualClock::new());
    cluster.psql("SELECT pg_stat_statements_reset()");
    check(&fetch_all(&cached_map, &cached_keys).await);
    assert_eq!(statements(&cluster), (5, 0, 0));
    assert_eq!(cached_map.cached(), 3);
    check(&fetch_all(&cached_map, &cached_keys).await);
    // UEs 0 and 1: key read and cached; UE 2: key read, not held (nothing cached);
    // identities 3 and (b, 0): unknown, not cached, joined again.
    assert_eq!(statements(&cluster), (7, 0, 3));
    check(&fetch_all(&cached_map, &cached_keys).await);
    assert_eq!(statements(&cluster), (9, 0, 4));

    // Keys the map cannot prove to be its own database's: the two-step default, with the
    // same answers.
    let elsewhere = Elsewhere(backend.int_keys(policy));
    assert_eq!(elsewhere.database(), None);
    cluster.psql("SELECT pg_stat_statements_reset()");
    check(&fetch_all(&map, &elsewhere).await);
    // Five resolves; a key read for the three identities that resolved.
    assert_eq!(statements(&cluster), (0, 5, 3));

    // Another backend on the same database and schema is another token: two steps too.
    let other = PgBackend::connect(&config, support::keyring(1, 0x42))
        .await
        .expect("connect");
    assert_ne!(other.identities().database(), keys.database());
    cluster.psql("SELECT pg_stat_statements_reset()");
    check(&fetch_all(&other.identities(), &keys).await);
    assert_eq!(statements(&cluster), (0, 5, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_key_that_fails_to_open_is_an_error_naming_the_imsi() {
    let Some(cluster) = support::Cluster::start() else {
        return;
    };
    let config = PgConfig::from_conninfo(&cluster.conninfo())
        .and_then(|c| c.with_schema("joined"))
        .expect("config");
    let backend = PgBackend::connect(&config, support::keyring(1, 0x42))
        .await
        .expect("connect");
    let policy = RetentionPolicy::new(4, Duration::from_secs(3600)).unwrap();
    let (map, keys) = (backend.identities(), backend.int_keys(policy));
    let a = EmseId::new("emse-a.example.com").unwrap();
    for n in 0..2 {
        map.provision(&a, &app(n), &imsi(n)).await.unwrap();
        let key = E2mIntKey::from_array(test_key_bytes(n, 7));
        keys.push(&imsi(n), KeyId::from_u32(7), &key, at(0), at(0))
            .await
            .unwrap();
    }
    // Swap the two UEs' sealed bytes: each row now holds a record bound to the other UE.
    cluster.psql(
        "UPDATE joined.int_keys k SET sealed = o.sealed FROM joined.int_keys o \
         WHERE k.imsi <> o.imsi AND k.key_id = o.key_id",
    );
    // The joined path and the two-step path fail alike, both naming the resolved IMSI.
    for elsewhere in [false, true] {
        let failed = if elsewhere {
            let keys = Elsewhere(backend.int_keys(policy));
            map.resolve_key(&keys, &a, &app(0), KeyId::from_u32(7), at(1))
                .await
        } else {
            map.resolve_key(&keys, &a, &app(0), KeyId::from_u32(7), at(1))
                .await
        };
        let failed = failed.expect_err("a swapped record must not open");
        assert_eq!(failed.imsi, Some(imsi(0)), "elsewhere: {elsewhere}");
        assert!(
            matches!(failed.error, StoreError::Backend(_)),
            "{:?}",
            failed.error
        );
    }
}
