//! Behaviour of the shared store beyond the trait promises, each test on a real
//! PostgreSQL of its own: several instances on one database, retention under concurrent
//! pushers, no key in a dump, KEK check at start-up, a database that goes away and returns.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test fails loudly"
)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine;
use e2m_keystore::conformance::test_key_bytes;
use e2m_keystore::{
    AppIdentity, E2mIntKey, EmseId, EventSet, EventType, IdentityMap, Imsi, IntKeyStore, KeyId,
    PushOutcome, RetentionPolicy, SessionPolicy, SessionStore, StoreError, SubscriptionPolicy,
    SubscriptionRecord, SubscriptionStore, Timestamp,
};
use e2m_keystore_pg::{BackendError, ConnectError, PgBackend, PgConfig};
use e2m_seal::{CheckError, KekVersion};

const T0: u64 = 1_800_000_000;

fn at(secs: u64) -> Timestamp {
    Timestamp::from_unix_secs(T0 + secs)
}

fn imsi(n: u64) -> Imsi {
    Imsi::new(&format!("00101{n:010}")).unwrap()
}

fn key(ue: u64, id: u32) -> E2mIntKey {
    E2mIntKey::from_array(test_key_bytes(ue, id))
}

fn config(cluster: &support::Cluster) -> PgConfig {
    PgConfig::from_conninfo(&cluster.conninfo()).unwrap()
}

async fn connect(cluster: &support::Cluster) -> PgBackend {
    PgBackend::connect(&config(cluster), support::keyring(1, 0x42))
        .await
        .expect("connect")
}

fn policy(n: usize) -> RetentionPolicy {
    RetentionPolicy::new(n, Duration::from_secs(3600)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_see_each_others_writes_at_once() {
    let Some(cluster) = support::Cluster::start() else {
        return;
    };
    // Two EMKS instances: two backends, two pools, one database.
    let a = connect(&cluster).await;
    let b = connect(&cluster).await;
    let (keys_a, keys_b) = (a.int_keys(policy(4)), b.int_keys(policy(4)));
    for ue in 0..50 {
        let pushed = keys_a
            .push(&imsi(ue), KeyId::from_u32(7), &key(ue, 7), at(0), at(0))
            .await
            .unwrap();
        assert_eq!(pushed, PushOutcome::Stored { evicted: None });
        // Acknowledged through A: served through B at once (no cache in front of B).
        let held = keys_b
            .get(&imsi(ue), KeyId::from_u32(7), at(1))
            .await
            .unwrap();
        assert_eq!(held.map(|h| h.key), Some(key(ue, 7)), "UE {ue}");
        // Retired through B: gone for A at once.
        if ue % 2 == 0 {
            assert_eq!(keys_b.remove_ue(&imsi(ue)).await.unwrap(), 1);
            let gone = keys_a
                .get(&imsi(ue), KeyId::from_u32(7), at(1))
                .await
                .unwrap();
            assert!(gone.is_none(), "UE {ue} served after removal");
        }
    }

    let emse = EmseId::new("emse-a.example.com").unwrap();
    let app = AppIdentity::new("sensor-1@iot.example.com").unwrap();
    a.identities()
        .provision(&emse, &app, &imsi(1))
        .await
        .unwrap();
    assert_eq!(
        b.identities().resolve(&emse, &app).await.unwrap(),
        Some(imsi(1))
    );

    let (id, info) = a
        .sessions(SessionPolicy::DEFAULT)
        .create(&emse, at(0))
        .await
        .unwrap();
    let seen = b
        .sessions(SessionPolicy::DEFAULT)
        .get(&id, at(1))
        .await
        .unwrap();
    assert_eq!(seen, Some(info.clone()));
    // Session refs come from one sequence: B's next session never reuses A's ref.
    let (_, other) = b
        .sessions(SessionPolicy::DEFAULT)
        .create(&emse, at(0))
        .await
        .unwrap();
    assert_ne!(other.session, info.session);

    let sub = SubscriptionRecord {
        session: info.session,
        emse: emse.clone(),
        events: EventSet::single(EventType::KeyAvailable),
        ue: None,
        callback: "https://emse-a.example.com/notify".to_owned(),
    };
    let sub_id = a
        .subscriptions(SubscriptionPolicy::DEFAULT)
        .add(sub.clone())
        .await
        .unwrap();
    let matching = b
        .subscriptions(SubscriptionPolicy::DEFAULT)
        .matching(&imsi(1), EventSet::single(EventType::KeyAvailable))
        .await
        .unwrap();
    assert_eq!(matching, vec![(sub_id, sub)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_concurrent_pushers_on_one_ue_keep_at_most_n_and_the_newest() {
    let Some(cluster) = support::Cluster::start() else {
        return;
    };
    const N: usize = 4;
    const PUSHERS: u64 = 16;
    const PUSHES_EACH: u64 = 25;
    let backend = connect(&cluster).await;
    let store = Arc::new(backend.int_keys(policy(N)));
    // Every push gets a distinct creation time from one counter, taken just before the
    // push, so pushes reach the database out of creation order (some come in stale).
    let clock = Arc::new(AtomicU64::new(1));
    let done = Arc::new(AtomicBool::new(false));

    // An observer on its own instance checks the bound all along.
    let observer = {
        let other = connect(&cluster).await.int_keys(policy(N));
        let done = done.clone();
        tokio::spawn(async move {
            let mut looks = 0u32;
            while !done.load(Ordering::Relaxed) {
                let held = other.held(&imsi(1), at(1)).await.unwrap();
                assert!(held.len() <= N, "{} keys held: {held:?}", held.len());
                looks += 1;
            }
            looks
        })
    };
    let mut pushers = Vec::new();
    for p in 0..PUSHERS {
        let store = store.clone();
        let clock = clock.clone();
        pushers.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for i in 0..PUSHES_EACH {
                let id = u32::try_from(p * 1000 + i).unwrap();
                let created = clock.fetch_add(1, Ordering::SeqCst);
                let out = store
                    .push(
                        &imsi(1),
                        KeyId::from_u32(id),
                        &key(1, id),
                        at(created),
                        at(created),
                    )
                    .await
                    .unwrap();
                assert!(
                    matches!(out, PushOutcome::Stored { .. } | PushOutcome::Stale),
                    "push {id}: {out:?}"
                );
                if out != PushOutcome::Stale {
                    acknowledged.push((created, id));
                }
            }
            acknowledged
        }));
    }
    let mut acknowledged = Vec::new();
    for p in pushers {
        acknowledged.extend(p.await.unwrap());
    }
    done.store(true, Ordering::Relaxed);
    let looks = observer.await.unwrap();
    assert!(looks > 0, "the observer never looked");

    // What is held now: exactly the N newest keys ever pushed (the newest can never be
    // stale nor evicted), each with its own octets.
    let total = PUSHERS * PUSHES_EACH;
    let held = store.held(&imsi(1), at(total + 1)).await.unwrap();
    let held_created: Vec<u64> = held.iter().map(|k| k.created.as_unix_secs() - T0).collect();
    let newest: Vec<u64> = (total + 1 - N as u64..=total).collect();
    assert_eq!(held_created, newest, "held {held:?}");
    for info in &held {
        let got = store
            .get(&imsi(1), info.key_id, at(total + 1))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.key, key(1, info.key_id.as_u32()));
        assert!(
            acknowledged.contains(&(info.created.as_unix_secs() - T0, info.key_id.as_u32())),
            "held key {:?} was never acknowledged as stored",
            info.key_id
        );
    }
    println!(
        "{} pushes, {} stored, {} stale, observer looked {looks} times",
        total,
        acknowledged.len(),
        total - acknowledged.len() as u64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_dump_holds_no_pushed_key_nor_session_id_in_any_encoding() {
    let Some(cluster) = support::Cluster::start() else {
        return;
    };
    let backend = connect(&cluster).await;
    let store = backend.int_keys(policy(4));
    let mut keys = Vec::new();
    for ue in 0..20 {
        for id in 1..=3u32 {
            store
                .push(
                    &imsi(ue),
                    KeyId::from_u32(id),
                    &key(ue, id),
                    at(u64::from(id)),
                    at(3),
                )
                .await
                .unwrap();
            keys.push(test_key_bytes(ue, id));
        }
    }
    // A session too: the store keeps its digest, never the id.
    let (session_id, _) = backend
        .sessions(SessionPolicy::DEFAULT)
        .create(&EmseId::new("emse-a.example.com").unwrap(), at(0))
        .await
        .unwrap();
    let dump = cluster.pg_dump();
    let text = String::from_utf8_lossy(&dump);
    let raw_id = session_id.expose_secret();
    for e in [
        raw_id.to_vec(),
        hex::encode(raw_id).into_bytes(),
        hex::encode_upper(raw_id).into_bytes(),
        session_id.to_text().as_bytes().to_vec(),
    ] {
        assert!(
            !dump.windows(e.len()).any(|w| w == e),
            "a session id is in the dump"
        );
    }
    // The dump does hold the table's data: the IMSIs and the sealed bytes (as bytea hex).
    assert!(
        text.contains(imsi(19).as_str()),
        "dump lacks the int_keys rows"
    );
    let sealed_hex = cluster.psql("SELECT encode(sealed, 'hex') FROM e2m.int_keys LIMIT 1");
    assert!(
        text.contains(sealed_hex.trim()),
        "dump lacks the sealed column"
    );
    let find = |needle: &[u8]| dump.windows(needle.len()).any(|w| w == needle);
    for k in &keys {
        let encodings = [
            k.to_vec(),
            hex::encode(k).into_bytes(),
            hex::encode_upper(k).into_bytes(),
            base64::engine::general_purpose::STANDARD
                .encode(k)
                .into_bytes(),
            base64::engine::general_purpose::STANDARD_NO_PAD
                .encode(k)
                .into_bytes(),
            base64::engine::general_purpose::URL_SAFE
                .encode(k)
                .into_bytes(),
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(k)
                .into_bytes(),
        ];
        for e in &encodings {
            assert!(!find(e), "a pushed key is in the dump");
        }
        // Not even a 12-octet run of the key in hex (a partial leak).
        assert!(
            !find(hex::encode(&k[..12]).as_bytes()),
            "a key prefix is in the dump"
        );
    }
    // The check is able to fail: the same search finds a key the dump does hold in clear
    // (a value written into the identity map as an application identity).
    let planted = hex::encode(keys[0]);
    backend
        .identities()
        .provision(
            &EmseId::new("emse-a.example.com").unwrap(),
            &AppIdentity::new(&planted).unwrap(),
            &imsi(1),
        )
        .await
        .unwrap();
    let dump = cluster.pg_dump();
    assert!(dump.windows(planted.len()).any(|w| w == planted.as_bytes()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_missing_kek_fails_at_connect() {
    let Some(cluster) = support::Cluster::start() else {
        return;
    };
    let first = connect(&cluster).await;
    first
        .int_keys(policy(4))
        .push(&imsi(1), KeyId::from_u32(1), &key(1, 1), at(0), at(0))
        .await
        .unwrap();
    first.close();
    let v1 = KekVersion::new(1).unwrap();

    // Version 1 with another key: refused at start-up, before serving anything.
    let err = PgBackend::connect(&config(&cluster), support::keyring(1, 0x43))
        .await
        .expect_err("a wrong KEK must not start");
    assert!(
        matches!(err, ConnectError::Kek(CheckError::WrongKek(v)) if v == v1),
        "{err:?}"
    );
    println!("wrong KEK: {err}");

    // Only a newer KEK, the one for the stored keys missing: refused too.
    let err = PgBackend::connect(&config(&cluster), support::keyring(2, 0x44))
        .await
        .expect_err("a missing KEK must not start");
    assert!(
        matches!(err, ConnectError::Kek(CheckError::MissingKek(v)) if v == v1),
        "{err:?}"
    );
    println!("missing KEK: {err}");

    // The right KEK still opens the stored key.
    let again = connect(&cluster).await;
    let held = again
        .int_keys(policy(4))
        .get(&imsi(1), KeyId::from_u32(1), at(1))
        .await
        .unwrap();
    assert_eq!(held.map(|h| h.key), Some(key(1, 1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapped_sealed_bytes_fail_to_open_with_a_typed_error() {
    let Some(cluster) = support::Cluster::start() else {
        return;
    };
    let backend = connect(&cluster).await;
    let store = backend.int_keys(policy(4));
    for ue in [1, 2] {
        store
            .push(&imsi(ue), KeyId::from_u32(9), &key(ue, 9), at(0), at(0))
            .await
            .unwrap();
    }
    // An operator (or attacker) with write access swaps the two rows' sealed keys.
    cluster.psql(&format!(
        "UPDATE e2m.int_keys SET sealed = CASE imsi WHEN '{a}' THEN \
         (SELECT sealed FROM e2m.int_keys WHERE imsi = '{b}') ELSE \
         (SELECT sealed FROM e2m.int_keys WHERE imsi = '{a}') END",
        a = imsi(1).as_str(),
        b = imsi(2).as_str()
    ));
    for ue in [1, 2] {
        let err = store
            .get(&imsi(ue), KeyId::from_u32(9), at(1))
            .await
            .expect_err("a swapped record must not open");
        let StoreError::Backend(source) = &err else {
            panic!("{err:?}");
        };
        assert!(
            matches!(
                source.downcast_ref::<BackendError>(),
                Some(BackendError::Open(_))
            ),
            "{err:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_gone_gives_typed_errors_and_the_store_recovers() {
    let Some(cluster) = support::Cluster::start() else {
        return;
    };
    let config = config(&cluster)
        .with_timeout(Duration::from_secs(2))
        .unwrap();
    let backend = PgBackend::connect(&config, support::keyring(1, 0x42))
        .await
        .unwrap();
    let store = backend.int_keys(policy(4));
    let sessions = backend.sessions(SessionPolicy::DEFAULT);
    let emse = EmseId::new("emse-a.example.com").unwrap();
    store
        .push(&imsi(1), KeyId::from_u32(1), &key(1, 1), at(0), at(0))
        .await
        .unwrap();
    let (session, _) = sessions.create(&emse, at(0)).await.unwrap();

    // The database goes away (a crash: no checkpoint, connections cut).
    cluster.stop_immediate();
    let is_backend_error = |e: &StoreError| matches!(e, StoreError::Backend(s) if s.downcast_ref::<BackendError>().is_some());
    for _ in 0..3 {
        let err = store
            .get(&imsi(1), KeyId::from_u32(1), at(1))
            .await
            .expect_err("no database");
        assert!(is_backend_error(&err), "{err:?}");
        let err = store
            .push(&imsi(1), KeyId::from_u32(2), &key(1, 2), at(1), at(1))
            .await
            .expect_err("no database");
        assert!(is_backend_error(&err), "{err:?}");
        let err = sessions
            .create(&emse, at(1))
            .await
            .expect_err("no database");
        assert!(is_backend_error(&err), "{err:?}");
    }
    println!(
        "while down: {}",
        store
            .get(&imsi(1), KeyId::from_u32(1), at(1))
            .await
            .expect_err("down")
    );

    // It comes back (crash recovery replays the WAL): the same handles serve again, and
    // everything acknowledged before is there.
    cluster.pg_ctl_start();
    let mut recovered = None;
    for _ in 0..50 {
        match store.get(&imsi(1), KeyId::from_u32(1), at(1)).await {
            Ok(held) => {
                recovered = Some(held);
                break;
            }
            Err(e) => assert!(is_backend_error(&e), "{e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let held = recovered.expect("the store never recovered");
    assert_eq!(held.map(|h| h.key), Some(key(1, 1)));
    assert!(sessions.get(&session, at(1)).await.unwrap().is_some());
    let out = store
        .push(&imsi(1), KeyId::from_u32(2), &key(1, 2), at(1), at(1))
        .await
        .unwrap();
    assert_eq!(out, PushOutcome::Stored { evicted: None });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_limits_hold_across_instances_creating_at_once() {
    let Some(cluster) = support::Cluster::start() else {
        return;
    };
    let policy = SessionPolicy::new(Duration::from_secs(100), 5, 1000).unwrap();
    let a = connect(&cluster).await.sessions(policy);
    let b = connect(&cluster).await.sessions(policy);
    let (a, b) = (Arc::new(a), Arc::new(b));
    let emse = EmseId::new("emse-a.example.com").unwrap();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        let emse = emse.clone();
        tasks.push(tokio::spawn(async move {
            SessionStore::create(&*store, &emse, at(0)).await
        }));
    }
    let (mut created, mut refused) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => created += 1,
            Err(StoreError::LimitReached(e2m_keystore::Limit::SessionsPerEmse)) => refused += 1,
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!((created, refused), (5, 15));
    assert_eq!(a.of_emse(&emse, at(1)).await.unwrap().len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_of_format_1_is_refused_before_any_ddl() {
    // Format 1 held times in seconds and broke ties by arrival; this build writes
    // milliseconds (issue 9 item 15). Such a schema is refused with a typed error, and the
    // refusal comes before the DDL, which would otherwise replace `push_key` under the old
    // instances still using it.
    let Some(cluster) = support::Cluster::start() else {
        return;
    };
    let first = connect(&cluster).await;
    first
        .int_keys(policy(4))
        .push(&imsi(1), KeyId::from_u32(1), &key(1, 1), at(0), at(0))
        .await
        .unwrap();
    first.close();
    cluster.psql(
        "UPDATE e2m.meta SET value = '1' WHERE name = 'format'; \
         DROP FUNCTION e2m.push_key;",
    );
    let err = PgBackend::connect(&config(&cluster), support::keyring(1, 0x42))
        .await
        .expect_err("a format-1 schema must not start");
    assert!(
        matches!(
            err,
            ConnectError::SchemaTooOld {
                found: 1,
                expected: 2
            }
        ),
        "{err:?}"
    );
    println!("format 1: {err}");
    let untouched = cluster.psql("SELECT to_regproc('e2m.push_key') IS NULL");
    assert_eq!(untouched.trim(), "t", "the DDL ran on the old schema");
}
