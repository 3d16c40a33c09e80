//! The outbox shared by several instances on one database (issue 8): every entry claimed
//! by exactly one instance while its lease runs, and the LISTEN wake-up reaching the other
//! instances when one records entries.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test fails loudly"
)]

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use e2m_keystore::{
    Claim, E2mIntKey, EmseId, EventSet, EventType, Imsi, InstanceId, IntKeyStore, KeyId,
    NotificationOutbox, RetentionPolicy, SessionRef, SubscriptionPolicy, SubscriptionRecord,
    SubscriptionStore, Timestamp,
};
use e2m_keystore_pg::{PgBackend, PgConfig};

fn at(secs: u64) -> Timestamp {
    Timestamp::from_unix_secs(1_800_000_000 + secs)
}

fn imsi(n: u64) -> Imsi {
    Imsi::new(&format!("00101{n:010}")).unwrap()
}

async fn connect(cluster: &support::Cluster) -> PgBackend {
    let config = PgConfig::from_conninfo(&cluster.conninfo())
        .unwrap()
        .with_pool_size(4)
        .unwrap();
    PgBackend::connect(&config, support::keyring(1, 0x42))
        .await
        .unwrap()
}

async fn subscribe_everything(backend: &PgBackend, emse: &str) {
    backend
        .subscriptions(SubscriptionPolicy::DEFAULT)
        .add(SubscriptionRecord {
            session: SessionRef::from_u64(1),
            emse: EmseId::new(emse).unwrap(),
            events: EventSet::single(EventType::KeyAvailable),
            ue: None,
            callback: format!("https://{emse}/e2m/v1/notifications"),
        })
        .await
        .unwrap();
}

/// Two instances claim the same backlog of 200 entries at once, in small claims, over and
/// over: every entry is claimed by exactly one of them (FOR UPDATE SKIP LOCKED, and the
/// lease moved in the same statement).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_claiming_at_once_never_claim_one_entry_twice() {
    let Some(cluster) = support::Cluster::start() else {
        return;
    };
    let (a, b) = (connect(&cluster).await, connect(&cluster).await);
    subscribe_everything(&a, "emse-a.example.com").await;
    let keys = a.int_keys(RetentionPolicy::DEFAULT);
    for n in 0..200u64 {
        let key = E2mIntKey::from_array([n as u8; 32]);
        keys.push(&imsi(n), KeyId::from_u32(1), &key, at(0), at(0))
            .await
            .unwrap();
    }
    let claimer = |backend: PgBackend, instance: u64| {
        tokio::spawn(async move {
            let store = backend.int_keys(RetentionPolicy::DEFAULT);
            let mut got = Vec::new();
            loop {
                let claim = Claim {
                    instance: InstanceId::from_u64(instance),
                    now: at(1),
                    lease: Duration::from_secs(60),
                    max: 7,
                    per_emse: 7,
                    skip: &[],
                };
                let claimed = store.claim_due(&claim).await.unwrap();
                if claimed.is_empty() {
                    return got;
                }
                got.extend(claimed.iter().map(|p| p.id));
            }
        })
    };
    let (from_a, from_b) = (claimer(a.clone(), 1), claimer(b.clone(), 2));
    let (from_a, from_b) = (from_a.await.unwrap(), from_b.await.unwrap());
    let all: BTreeSet<u64> = from_a.iter().chain(&from_b).copied().collect();
    assert_eq!(from_a.len() + from_b.len(), 200, "claimed twice or lost");
    assert_eq!(all.len(), 200);
    assert!(
        !from_a.is_empty() && !from_b.is_empty(),
        "one instance did everything: no race"
    );
}

/// A push through instance A wakes instance B's deliverer (LISTEN/NOTIFY), within
/// moments, and a push that records nothing does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_through_one_instance_wakes_the_others() {
    let Some(cluster) = support::Cluster::start() else {
        return;
    };
    let (a, b) = (connect(&cluster).await, connect(&cluster).await);
    let wake = b.outbox_wakeups();
    // The LISTEN connection wakes once when it is set up; wait for that first.
    tokio::time::timeout(Duration::from_secs(10), wake.notified())
        .await
        .expect("the LISTEN connection came up");
    let keys = a.int_keys(RetentionPolicy::DEFAULT);
    let key = E2mIntKey::from_array([1; 32]);
    // No subscription yet: nothing recorded, no announcement.
    keys.push(&imsi(1), KeyId::from_u32(1), &key, at(0), at(0))
        .await
        .unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(500), wake.notified())
            .await
            .is_err(),
        "woken without an outbox entry"
    );
    subscribe_everything(&a, "emse-b.example.com").await;
    keys.push(&imsi(1), KeyId::from_u32(2), &key, at(1), at(1))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), wake.notified())
        .await
        .expect("B was not woken by A's push");
}

/// A database whose `push_key` has the result type of before the outbox (four columns, no
/// `noted`) gets the new function at the next start, and pushes work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_key_of_the_earlier_result_type_is_replaced_at_start() {
    let Some(cluster) = support::Cluster::start() else {
        return;
    };
    let (client, connection) = tokio_postgres::connect(&cluster.conninfo(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(
            "CREATE SCHEMA e2m;
             CREATE FUNCTION e2m.push_key(
                 p_imsi text, p_lock bigint, p_key_id bigint, p_created bigint,
                 p_expires bigint, p_kek_version bigint, p_sealed bytea, p_now bigint,
                 p_keep integer, p_same_id_differs boolean)
             RETURNS TABLE (outcome text, evicted bigint, held_expires bigint, held_sealed bytea)
             LANGUAGE sql AS $$ SELECT 'stale'::text, NULL::bigint, NULL::bigint, NULL::bytea $$;",
        )
        .await
        .unwrap();
    let backend = connect(&cluster).await;
    subscribe_everything(&backend, "emse-a.example.com").await;
    let keys = backend.int_keys(RetentionPolicy::DEFAULT);
    let out = keys
        .push(
            &imsi(1),
            KeyId::from_u32(1),
            &E2mIntKey::from_array([1; 32]),
            at(0),
            at(0),
        )
        .await
        .unwrap();
    assert!(out.is_held(), "{out:?}");
    assert_eq!(keys.pending().await.unwrap(), 1);
}
