//! Notifications on the durable stores (issue 8), through the real HTTPS stack: a
//! subscription made before an EMKS restart on redb is notified after it; two EMKS
//! instances on one PostgreSQL database deliver a notification once, and the survivor
//! delivers what a dead instance had claimed once its lease ran out.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

mod common;
#[path = "../../e2m-keystore-pg/tests/support/mod.rs"]
mod pg_support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2m_emks::Emks;
use e2m_https::emks::{EmksServerOptions, start_emks};
use e2m_keyid::AppIdentity;
use e2m_keystore::{
    Claim, IdentityMap, InstanceId, NotificationOutbox, RetentionPolicy, SessionPolicy,
    SubscriptionPolicy,
};
use e2m_keystore_pg::{PgBackend, PgConfig};
use e2m_keystore_redb::{RedbStore, RedbStoreConfig, RedbStoreError};
use e2m_msg::{EventSet, EventType, Subscription, Timestamp, UeRef};

use common::{TestPki, emse, fast_delivery, imsi, loopback_config, push, receive};

fn keyring() -> e2m_seal::Keyring {
    let v = e2m_seal::KekVersion::new(1).unwrap();
    e2m_seal::Keyring::new([e2m_seal::Kek::from_array(v, [0x42; 32])]).unwrap()
}

/// Opens the redb store, waiting while a previous owner (a stopped server's last tasks)
/// still holds the file.
async fn open_redb(dir: &std::path::Path) -> RedbStore {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match RedbStore::open(dir, keyring(), RedbStoreConfig::default()) {
            Ok(store) => return store,
            Err(RedbStoreError::AlreadyOpen) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("open: {e}"),
        }
    }
}

fn redb_core(
    store: &RedbStore,
) -> Arc<
    Emks<
        e2m_keystore_redb::RedbIntKeyStore,
        e2m_keystore_redb::RedbIdentityMap,
        e2m_keystore_redb::RedbSessionStore,
        e2m_keystore_redb::RedbSubscriptionStore,
    >,
> {
    Arc::new(Emks::new(
        loopback_config(),
        store.int_keys(),
        store.identities(),
        store.sessions(),
        store.subscriptions(),
    ))
}

/// EMSE A registers and subscribes on an EMKS over redb; the EMKS stops and starts again
/// on the same data directory; the HSS pushes to the new process, and A is notified. Before
/// the outbox, the owner of a session was known only to the old process's memory, and the
/// notification was dropped ("notification for a session with no known owner").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_emks_restart_on_redb_a_persisted_subscription_is_notified() {
    let pki = TestPki::new();
    let dir = common::temp_dir("redb-restart");
    let app = AppIdentity::new("sensor-3@iot.example.com").unwrap();
    let mut endpoint = pki
        .endpoint_on("127.0.0.1:0".parse().unwrap(), "emse-a")
        .await;
    {
        let store = open_redb(&dir).await;
        let core = redb_core(&store);
        drop(store);
        core.identities()
            .provision(&emse("emse-a"), &app, &imsi(3))
            .await
            .unwrap();
        let server = start_emks(core, &pki.dir, fast_delivery()).await.unwrap();
        let a = pki.client_at(&server.base_url(), "emse-a");
        a.register(None).await.unwrap();
        a.subscribe(&Subscription {
            events: EventSet::single(EventType::KeyAvailable),
            ue: Some(UeRef::AppIdentity(app.clone())),
            callback: endpoint.callback.clone(),
        })
        .await
        .unwrap();
        server.shutdown().await;
    }
    let store = open_redb(&dir).await;
    let server = start_emks(redb_core(&store), &pki.dir, fast_delivery())
        .await
        .unwrap();
    push(&pki.hss_at(&server.base_url()), &imsi(3), 0x77).await;
    let got = receive(&mut endpoint, 1, Duration::from_secs(15)).await;
    assert_eq!(got.len(), 1, "no notification after the restart");
    assert_eq!(got[0].key_id.as_u32(), 0x77);
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

async fn pg_backend(cluster: &pg_support::Cluster) -> PgBackend {
    let config = PgConfig::from_conninfo(&cluster.conninfo())
        .unwrap()
        .with_pool_size(4)
        .unwrap();
    PgBackend::connect(&config, keyring()).await.unwrap()
}

type PgEmks = Emks<
    e2m_keystore_pg::PgIntKeyStore,
    e2m_keystore_pg::PgIdentityMap,
    e2m_keystore_pg::PgSessionStore,
    e2m_keystore_pg::PgSubscriptionStore,
>;

fn pg_core(backend: &PgBackend) -> Arc<PgEmks> {
    Arc::new(Emks::new(
        loopback_config(),
        backend.int_keys(RetentionPolicy::DEFAULT),
        backend.identities(),
        backend.sessions(SessionPolicy::DEFAULT),
        backend.subscriptions(SubscriptionPolicy::DEFAULT),
    ))
}

/// Options of an instance on PostgreSQL: woken by the database's announcements.
fn pg_options(backend: &PgBackend) -> EmksServerOptions {
    EmksServerOptions {
        outbox_wake: Some(backend.outbox_wakeups()),
        ..fast_delivery()
    }
}

/// Two EMKS instances on one database, each delivering: EMSE A registers and subscribes
/// through B; the HSS pushes 5 keys through A. A's endpoint receives each notification
/// exactly once (counted at the endpoint, and nothing more in the 3 s after), whichever
/// instance delivered it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_through_one_instance_notifies_a_subscriber_of_the_other_exactly_once() {
    let Some(cluster) = pg_support::Cluster::start() else {
        return;
    };
    let pki = TestPki::new();
    let app = AppIdentity::new("sensor-4@iot.example.com").unwrap();
    let (backend_a, backend_b) = (pg_backend(&cluster).await, pg_backend(&cluster).await);
    let (core_a, core_b) = (pg_core(&backend_a), pg_core(&backend_b));
    core_a
        .identities()
        .provision(&emse("emse-a"), &app, &imsi(4))
        .await
        .unwrap();
    let instance_a = start_emks(core_a, &pki.dir, pg_options(&backend_a))
        .await
        .unwrap();
    let instance_b = start_emks(Arc::clone(&core_b), &pki.dir, pg_options(&backend_b))
        .await
        .unwrap();
    let mut endpoint = pki
        .endpoint_on("127.0.0.1:0".parse().unwrap(), "emse-a")
        .await;
    let a_via_b = pki.client_at(&instance_b.base_url(), "emse-a");
    a_via_b.register(None).await.unwrap();
    a_via_b
        .subscribe(&Subscription {
            events: EventSet::single(EventType::KeyAvailable),
            ue: Some(UeRef::AppIdentity(app.clone())),
            callback: endpoint.callback.clone(),
        })
        .await
        .unwrap();
    let hss_via_a = pki.hss_at(&instance_a.base_url());
    for n in 1..=5 {
        push(&hss_via_a, &imsi(4), n).await;
    }
    let mut got = receive(&mut endpoint, 5, Duration::from_secs(15)).await;
    got.extend(receive(&mut endpoint, 1, Duration::from_secs(3)).await);
    let keys: Vec<u32> = got.iter().map(|n| n.key_id.as_u32()).collect();
    // Every delivery is counted: those handed on and repeats the endpoint dropped.
    let repeats = endpoint
        .duplicates_dropped
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        got.len() as u64 + repeats,
        5,
        "deliveries counted at the endpoint: {keys:?}, and {repeats} repeats"
    );
    let distinct: BTreeSet<u32> = keys.iter().copied().collect();
    assert_eq!(distinct, (1..=5).collect());
    assert_eq!(core_b.keys().pending().await.unwrap(), 0);
    instance_a.shutdown().await;
    instance_b.shutdown().await;
}

/// An instance claims a notification and dies before delivering it (its claim stays in
/// the database, leased for 4 s). The surviving instance does not deliver it while the
/// lease runs, and delivers it, once, after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_claiming_instance_dies_the_other_delivers_after_the_lease() {
    let Some(cluster) = pg_support::Cluster::start() else {
        return;
    };
    let pki = TestPki::new();
    let app = AppIdentity::new("sensor-5@iot.example.com").unwrap();
    let survivor_backend = pg_backend(&cluster).await;
    let core = pg_core(&survivor_backend);
    core.identities()
        .provision(&emse("emse-a"), &app, &imsi(5))
        .await
        .unwrap();
    // The survivor serves requests but does not deliver yet.
    let serving = start_emks(
        Arc::clone(&core),
        &pki.dir,
        EmksServerOptions {
            notifications: false,
            ..EmksServerOptions::default()
        },
    )
    .await
    .unwrap();
    let mut endpoint = pki
        .endpoint_on("127.0.0.1:0".parse().unwrap(), "emse-a")
        .await;
    let a = pki.client_at(&serving.base_url(), "emse-a");
    a.register(None).await.unwrap();
    a.subscribe(&Subscription {
        events: EventSet::single(EventType::KeyAvailable),
        ue: Some(UeRef::AppIdentity(app.clone())),
        callback: endpoint.callback.clone(),
    })
    .await
    .unwrap();
    push(&pki.hss_at(&serving.base_url()), &imsi(5), 0x55).await;

    // The other instance claims it, then dies (its pool closed, nothing settled).
    let lease = Duration::from_secs(4);
    let doomed = pg_backend(&cluster).await;
    let claimed = doomed
        .int_keys(RetentionPolicy::DEFAULT)
        .claim_due(&Claim {
            instance: InstanceId::from_u64(0xdead),
            now: Timestamp::now_from_system_clock(),
            lease,
            max: 10,
            per_emse: 10,
            skip: &[],
        })
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let claimed_at = Instant::now();
    doomed.close();
    drop(doomed);
    serving.shutdown().await;

    // The survivor now delivers (woken by nothing: it finds the entry when the lease ends).
    let survivor = start_emks(Arc::clone(&core), &pki.dir, fast_delivery())
        .await
        .unwrap();
    let early = receive(&mut endpoint, 1, Duration::from_secs(2)).await;
    assert!(
        early.is_empty(),
        "delivered while another instance held the lease"
    );
    let got = receive(&mut endpoint, 1, Duration::from_secs(15)).await;
    assert_eq!(got.len(), 1, "not delivered after the lease");
    assert!(claimed_at.elapsed() >= lease - Duration::from_secs(1));
    assert_eq!(
        got[0].id.map(|id| id.as_u64()),
        Some(claimed[0].id),
        "same id"
    );
    let again = receive(&mut endpoint, 1, Duration::from_secs(2)).await;
    assert!(again.is_empty(), "delivered twice: {again:?}");
    assert_eq!(
        endpoint
            .duplicates_dropped
            .load(std::sync::atomic::Ordering::Relaxed),
        0,
        "delivered twice"
    );
    survivor.shutdown().await;
}
