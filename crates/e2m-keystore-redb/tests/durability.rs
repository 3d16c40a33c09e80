//! What survives a restart, what a dump of the file shows, and how a bad file or a wrong
//! KEK is refused at open.
#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking"
)]

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use e2m_keystore::conformance::test_key_bytes;
use e2m_keystore::{
    AppIdentity, E2mIntKey, EmseId, EventSet, EventType, IdentityMap, Imsi, IntKeyStore, KeyId,
    SessionStore, SubscriptionRecord, SubscriptionStore, Timestamp, UeFilter, UeRef, block_on,
};
use e2m_keystore_redb::e2m_seal::CheckError;
use e2m_keystore_redb::{DATABASE_FILE, Keyring, RedbStore, RedbStoreConfig, RedbStoreError};

const T0: u64 = 1_800_000_000;

fn at(s: u64) -> Timestamp {
    Timestamp::from_unix_secs(T0 + s)
}

fn imsi(n: u64) -> Imsi {
    Imsi::new(&format!("00101{n:010}")).unwrap()
}

fn open(dir: &std::path::Path, keyring: Keyring) -> Result<RedbStore, RedbStoreError> {
    RedbStore::open(dir, keyring, RedbStoreConfig::default())
}

/// Pushes keys 1..=5 for UEs 0..ues (N = 4 keeps 2..=5).
fn push_keys(store: &RedbStore, ues: u64) {
    let store = store.int_keys();
    for ue in 0..ues {
        for id in 1..=5u32 {
            let key = E2mIntKey::from_array(test_key_bytes(ue, id));
            let out =
                block_on(store.push(&imsi(ue), KeyId::from_u32(id), &key, at(id.into()), at(5)));
            assert!(out.unwrap().is_held());
        }
    }
}

#[test]
fn everything_acknowledged_is_back_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let emse = EmseId::new("emse-a.example.com").unwrap();
    let app = AppIdentity::new("sensor-1@iot.example.com").unwrap();
    let (session_id, session, sub_id, sub) = {
        let store = open(dir.path(), common::keyring()).unwrap();
        push_keys(&store, 20);
        block_on(store.identities().provision(&emse, &app, &imsi(3))).unwrap();
        let (id, info) = block_on(store.sessions().create(&emse, at(5))).unwrap();
        let sub = SubscriptionRecord {
            session: info.session,
            emse: emse.clone(),
            events: EventSet::single(EventType::KeyAvailable),
            ue: Some(UeFilter {
                imsi: imsi(3),
                name: UeRef::AppIdentity(app.clone()),
            }),
            callback: "https://emse-a.example.com/notify".to_owned(),
        };
        let sub_id = block_on(store.subscriptions().add(sub.clone())).unwrap();
        (id, info, sub_id, sub)
    };
    // Dropped: the file is closed. Open it again with the same KEK.
    let store = open(dir.path(), common::keyring()).unwrap();
    for ue in 0..20 {
        let held: Vec<u32> = block_on(store.int_keys().held(&imsi(ue), at(6)))
            .unwrap()
            .iter()
            .map(|k| k.key_id.as_u32())
            .collect();
        assert_eq!(held, [2, 3, 4, 5], "UE {ue}");
        for id in 2..=5u32 {
            let k = block_on(store.int_keys().get(&imsi(ue), KeyId::from_u32(id), at(6)))
                .unwrap()
                .unwrap();
            assert_eq!(k.key.expose_secret(), &test_key_bytes(ue, id));
        }
    }
    assert_eq!(
        block_on(store.identities().resolve(&emse, &app)).unwrap(),
        Some(imsi(3))
    );
    assert_eq!(
        block_on(store.sessions().get(&session_id, at(6))).unwrap(),
        Some(session.clone())
    );
    assert_eq!(
        block_on(store.subscriptions().get(session.session, sub_id)).unwrap(),
        Some(sub)
    );
    // N = 4 of the 5 keys pushed per UE are held, and the count survived too.
    assert_eq!(store.key_count().unwrap(), 20 * 4);
    assert_eq!(store.session_count().unwrap(), 1);
    // Counters continue: a new session never takes an old ref.
    let (_, next) = block_on(store.sessions().create(&emse, at(6))).unwrap();
    assert!(next.session > session.session);
}

#[test]
fn a_dump_of_the_file_holds_no_pushed_key_in_any_encoding() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path(), common::keyring()).unwrap();
        push_keys(&store, 50);
    }
    let bytes = std::fs::read(dir.path().join(DATABASE_FILE)).unwrap();
    assert!(bytes.len() > 4096, "the file is too small to hold anything");
    let haystack_text = String::from_utf8_lossy(&bytes);
    let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    let mut searched = 0;
    for ue in 0..50 {
        // Every key pushed, the evicted ones included.
        for id in 1..=5u32 {
            let key = test_key_bytes(ue, id);
            assert!(!contains(&key), "UE {ue} key {id} in clear");
            for text in [
                base16ct::lower::encode_string(&key),
                base16ct::upper::encode_string(&key),
                STANDARD.encode(key),
                STANDARD_NO_PAD.encode(key),
                URL_SAFE.encode(key),
                URL_SAFE_NO_PAD.encode(key),
            ] {
                assert!(!haystack_text.contains(&text), "UE {ue} key {id} as {text}");
                // And a 16-octet-long prefix of it (a partial leak), in the raw bytes.
                assert!(!contains(&text.as_bytes()[..16]), "UE {ue} key {id} prefix");
            }
            assert!(
                !contains(&key[..12]),
                "UE {ue} key {id}: 12 octets in clear"
            );
            searched += 1;
        }
    }
    assert_eq!(searched, 250);
    // The test can fail: the IMSIs (not secret) are found, so the search sees the data.
    assert!(
        contains(imsi(7).as_bytes()),
        "the search does not see the stored rows"
    );
}

#[test]
fn a_wrong_or_missing_kek_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path(), common::keyring()).unwrap();
        push_keys(&store, 2);
    }
    // Same version, other key.
    let wrong = Keyring::new([common::kek(1, 0x43)]).unwrap();
    match open(dir.path(), wrong) {
        Err(RedbStoreError::Kek(CheckError::WrongKek(v))) => assert_eq!(v.get(), 1),
        other => panic!("wrong KEK: {other:?}"),
    }
    // Only a newer version: version 1's file is missing.
    let missing = Keyring::new([common::kek(2, 0x44)]).unwrap();
    match open(dir.path(), missing) {
        Err(RedbStoreError::Kek(CheckError::MissingKek(v))) => assert_eq!(v.get(), 1),
        other => panic!("missing KEK: {other:?}"),
    }
    // Rotation: versions 1 and 2; new pushes are sealed under 2, old keys still open.
    {
        let both = Keyring::new([common::kek(1, 0x42), common::kek(2, 0x44)]).unwrap();
        let store = open(dir.path(), both).unwrap();
        let k = block_on(store.int_keys().get(&imsi(1), KeyId::from_u32(5), at(6))).unwrap();
        assert!(k.is_some(), "a key sealed under version 1 no longer opens");
        let key = E2mIntKey::from_array([0x77; 32]);
        block_on(
            store
                .int_keys()
                .push(&imsi(1), KeyId::from_u32(9), &key, at(6), at(6)),
        )
        .unwrap();
    }
    // Now version 2 has a check record: dropping its file is refused too.
    match open(dir.path(), common::keyring()) {
        Err(RedbStoreError::Kek(CheckError::MissingKek(v))) => assert_eq!(v.get(), 2),
        other => panic!("missing newer KEK: {other:?}"),
    }
}

/// Opens after `damage` was done to a store's file; returns the error (none is a failure).
fn open_damaged(damage: impl FnOnce(&mut Vec<u8>)) -> RedbStoreError {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path(), common::keyring()).unwrap();
        push_keys(&store, 30);
    }
    let path = dir.path().join(DATABASE_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    damage(&mut bytes);
    std::fs::write(&path, &bytes).unwrap();
    match open(dir.path(), common::keyring()) {
        Ok(store) => {
            // redb may not look at a damaged page until it is read: then every read of it
            // must be a typed error, and no wrong key may be served.
            for ue in 0..30 {
                for id in 2..=5u32 {
                    let got = block_on(store.int_keys().get(&imsi(ue), KeyId::from_u32(id), at(6)));
                    if let Ok(Some(k)) = got {
                        assert_eq!(k.key.expose_secret(), &test_key_bytes(ue, id));
                    }
                }
            }
            panic!("a damaged file opened")
        }
        Err(e) => e,
    }
}

#[test]
fn a_truncated_file_is_refused_with_a_typed_error() {
    for keep in [0usize, 100, 511, 4096] {
        let e = open_damaged(|b| b.truncate(keep));
        assert!(
            matches!(e, RedbStoreError::Damaged(_) | RedbStoreError::Unreadable),
            "truncated to {keep}: {e:?}"
        );
    }
}

#[test]
fn a_garbled_header_is_refused_with_a_typed_error() {
    let e = open_damaged(|b| {
        for x in &mut b[..64] {
            *x ^= 0x5a;
        }
    });
    assert!(matches!(e, RedbStoreError::Damaged(_)), "{e:?}");
}

#[test]
fn a_file_that_is_not_a_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(DATABASE_FILE),
        b"e2m-kek v1 1 not a database\n",
    )
    .unwrap();
    let e = open(dir.path(), common::keyring()).unwrap_err();
    assert!(matches!(e, RedbStoreError::Damaged(_)), "{e:?}");
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _first = open(dir.path(), common::keyring()).unwrap();
    let e = open(dir.path(), common::keyring()).unwrap_err();
    assert!(matches!(e, RedbStoreError::AlreadyOpen), "{e:?}");
}

#[test]
fn garbled_data_pages_give_typed_errors_never_a_wrong_key() {
    // Damage every page after the header, at several offsets in each page: open may
    // succeed (redb verifies page checksums when it reads a page), but every read must then
    // be a typed error or the exact key pushed.
    for offset in [17usize, 700, 2049, 4000] {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open(dir.path(), common::keyring()).unwrap();
            push_keys(&store, 30);
        }
        let path = dir.path().join(DATABASE_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        for page in (4096..bytes.len()).step_by(4096) {
            if let Some(b) = bytes.get_mut(page + offset) {
                *b ^= 0xff;
            }
        }
        std::fs::write(&path, &bytes).unwrap();
        let store = match open(dir.path(), common::keyring()) {
            Ok(store) => store,
            Err(
                RedbStoreError::Damaged(_)
                | RedbStoreError::Unreadable
                | RedbStoreError::Repaired
                | RedbStoreError::Corrupt(_),
            ) => continue,
            Err(e) => panic!("offset {offset}: unexpected error {e:?}"),
        };
        let keys = store.int_keys();
        let (mut errors, mut served) = (0, 0);
        for ue in 0..30 {
            for id in 2..=5u32 {
                match block_on(keys.get(&imsi(ue), KeyId::from_u32(id), at(6))) {
                    Ok(Some(k)) => {
                        assert_eq!(k.key.expose_secret(), &test_key_bytes(ue, id));
                        served += 1;
                    }
                    Ok(None) => {}
                    Err(_) => errors += 1,
                }
            }
        }
        assert!(errors + served > 0, "offset {offset}: nothing read at all");
    }
}

#[test]
fn a_file_of_schema_version_1_is_refused_not_misread() {
    // Version 1 stored every time in whole seconds; this build stores milliseconds (issue 9
    // item 15). A version-1 file read as milliseconds would put every key in 1970 (expired)
    // and every session likewise: refused at open with a typed error instead.
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path(), common::keyring()).unwrap();
        push_keys(&store, 2);
    }
    {
        // Rewrite the schema entry as a version-1 file had it, with redb itself.
        use redb::ReadableTable as _;
        let db = redb::Database::open(dir.path().join(DATABASE_FILE)).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let meta: redb::TableDefinition<'_, &str, u64> = redb::TableDefinition::new("meta");
            let mut meta = txn.open_table(meta).unwrap();
            assert_eq!(meta.get("schema").unwrap().map(|v| v.value()), Some(2));
            meta.insert("schema", 1).unwrap();
        }
        txn.commit().unwrap();
    }
    match open(dir.path(), common::keyring()) {
        Err(RedbStoreError::SchemaVersion { found, expected }) => {
            assert_eq!((found, expected), (1, 2));
        }
        other => panic!("a version-1 file: {other:?}"),
    }
}

/// The outbox is durable with the push that recorded it (issue 8): a notification recorded
/// by an acknowledged push, and one claimed by an instance that then stopped, are both
/// claimable after a restart (the claimed one at the end of its lease), with the same ids.
#[test]
fn recorded_and_claimed_notifications_survive_a_restart() {
    use e2m_keystore::{Claim, InstanceId, NotificationOutbox};
    let dir = tempfile::tempdir().unwrap();
    let claim = |instance: u64, now: u64| Claim {
        instance: InstanceId::from_u64(instance),
        now: at(now),
        lease: std::time::Duration::from_secs(30),
        max: 100,
        per_emse: 100,
        skip: &[],
    };
    let ids: Vec<u64> = {
        let store = open(dir.path(), common::keyring()).unwrap();
        let sub = SubscriptionRecord {
            session: e2m_keystore::SessionRef::from_u64(1),
            emse: EmseId::new("emse-a.example.com").unwrap(),
            events: EventSet::single(EventType::KeyAvailable),
            ue: None,
            callback: "https://emse-a.example.com/e2m/v1/notifications".to_owned(),
        };
        block_on(store.subscriptions().add(sub)).unwrap();
        push_keys(&store, 2);
        let keys = store.int_keys();
        assert_eq!(block_on(keys.pending()).unwrap(), 10);
        // One instance claims three and stops before settling them.
        let claimed = block_on(keys.claim_due(&Claim {
            max: 3,
            ..claim(1, 5)
        }))
        .unwrap();
        assert_eq!(claimed.len(), 3);
        claimed.iter().map(|p| p.id).collect()
    };
    let store = open(dir.path(), common::keyring()).unwrap();
    let keys = store.int_keys();
    assert_eq!(block_on(keys.pending()).unwrap(), 10);
    let now = block_on(keys.claim_due(&claim(2, 6))).unwrap();
    assert_eq!(now.len(), 7, "the unclaimed seven");
    assert!(now.iter().all(|p| !ids.contains(&p.id)));
    let after_lease = block_on(keys.claim_due(&claim(2, 35))).unwrap();
    let mut again: Vec<u64> = after_lease.iter().map(|p| p.id).collect();
    again.sort_unstable();
    assert_eq!(again, ids, "the claimed three, after their lease");
}
