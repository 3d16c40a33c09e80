//! Online backup and restore: a backup taken under push load holds every key acknowledged
//! before it, every table travels, the keys stay sealed in it, and a restore refuses what
//! would lose data or serve wrong keys.
#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking"
)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2m_keystore::conformance::test_key_bytes;
use e2m_keystore::{
    AppIdentity, Claim, E2mIntKey, EmseId, EventSet, EventType, IdentityMap, Imsi, InstanceId,
    IntKeyStore, KeyId, NotificationOutbox, SessionStore, SubscriptionRecord, SubscriptionStore,
    Timestamp, block_on,
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

fn open(dir: &std::path::Path) -> Result<RedbStore, RedbStoreError> {
    RedbStore::open(dir, common::keyring(), RedbStoreConfig::default())
}

/// Flips one octet in every page after the first (the header), so that an open fails
/// its integrity check.
fn damage(path: &std::path::Path) {
    let mut bytes = std::fs::read(path).unwrap();
    for page in (4096..bytes.len()).step_by(4096) {
        bytes[page + 700] ^= 0x01;
    }
    std::fs::write(path, &bytes).unwrap();
}

#[test]
fn a_backup_under_load_restores_every_key_acknowledged_before_it_after_the_file_is_damaged() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("data");
    let backup = base.path().join("backup.redb");
    let store = open(&dir).unwrap();

    // Eight pushers; each acknowledged (UE, key id) is recorded with the moment it came.
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<(u64, u32)>>> = Arc::default();
    let pushers: Vec<_> = (0..8u64)
        .map(|p| {
            let (keys, stop, acked) = (store.int_keys(), stop.clone(), acked.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    // 50 UEs per pusher, key ids 1, 2, 3, … (N = 4 keeps the newest four).
                    let ue = p * 1000 + n % 50;
                    let id = u32::try_from(n / 50 + 1).unwrap();
                    let key = E2mIntKey::from_array(test_key_bytes(ue, id));
                    block_on(keys.push(&imsi(ue), KeyId::from_u32(id), &key, at(1), at(1)))
                        .unwrap();
                    acked.lock().unwrap().push((ue, id));
                    n += 1;
                }
            })
        })
        .collect();
    while acked.lock().unwrap().len() < 2_000 {
        std::thread::sleep(Duration::from_millis(10));
    }
    // Everything acknowledged before the call must be in the backup.
    let before: Vec<(u64, u32)> = acked.lock().unwrap().clone();
    let summary = store.backup_to(&backup).unwrap();
    let during = acked.lock().unwrap().len();
    while acked.lock().unwrap().len() < during + 1_000 {
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Relaxed);
    for p in pushers {
        p.join().unwrap();
    }
    assert!(
        summary.ues > 0 && summary.keys >= summary.ues,
        "{summary:?}"
    );
    assert!(summary.bytes > 4096, "{summary:?}");
    assert!(
        !base.path().join("backup.redb.partial").exists(),
        "the temporary file is gone"
    );
    drop(store);

    // One damaged file: the store refuses to start.
    let file = dir.join(DATABASE_FILE);
    damage(&file);
    let refused = open(&dir).unwrap_err();
    assert!(
        matches!(
            refused,
            RedbStoreError::Damaged(_) | RedbStoreError::Repaired | RedbStoreError::Unreadable
        ),
        "{refused:?}"
    );

    let restored = RedbStore::restore(&backup, &dir, &common::keyring()).unwrap();
    assert_eq!((restored.keys, restored.ues), (summary.keys, summary.ues));
    // The replaced file is kept beside the restored one.
    let aside = restored.replaced.clone().expect("the damaged file is kept");
    assert!(
        aside.exists() && aside.parent() == Some(dir.as_path()),
        "{aside:?}"
    );

    let store = open(&dir).unwrap();
    let keys = store.int_keys();
    // Of each UE, the newest four keys acknowledged before the backup are held (older ones
    // were evicted by the retention policy before the backup was taken), unless a newer
    // key, committed before the backup but recorded as acknowledged only after the list
    // was copied, evicted one: then the four keys after it are all held.
    let mut newest: std::collections::HashMap<u64, Vec<u32>> = Default::default();
    for &(ue, id) in &before {
        newest.entry(ue).or_default().push(id);
    }
    let held =
        |ue: u64, id: u32| block_on(keys.get(&imsi(ue), KeyId::from_u32(id), at(2))).unwrap();
    let mut checked = 0;
    for (ue, mut ids) in newest {
        ids.sort_unstable();
        let keep = ids.len().saturating_sub(4);
        for &id in &ids[keep..] {
            match held(ue, id) {
                Some(key) => {
                    assert_eq!(key.key.expose_secret(), &test_key_bytes(ue, id));
                    checked += 1;
                }
                None => assert!(
                    (id + 1..=id + 4).all(|newer| held(ue, newer).is_some()),
                    "UE {ue} key {id}, acknowledged before the backup, not restored"
                ),
            }
        }
    }
    assert!(checked >= 400, "only {checked} keys checked");
    // The restored store takes writes.
    block_on(store.check_writable()).unwrap();
}

#[test]
fn every_table_travels_and_counters_continue() {
    let base = tempfile::tempdir().unwrap();
    let (source, target) = (base.path().join("a"), base.path().join("b"));
    let backup = base.path().join("backup.redb");
    let emse = EmseId::new("emse-a.example.com").unwrap();
    let app = AppIdentity::new("sensor-1@iot.example.com").unwrap();
    let (session_id, session, sub_id, sub, claimed) = {
        let store = open(&source).unwrap();
        block_on(store.identities().provision(&emse, &app, &imsi(3))).unwrap();
        let (id, info) = block_on(store.sessions().create(&emse, at(5))).unwrap();
        let sub = SubscriptionRecord {
            session: info.session,
            emse: emse.clone(),
            events: EventSet::single(EventType::KeyAvailable),
            ue: None,
            callback: "https://emse-a.example.com/notify".to_owned(),
        };
        let sub_id = block_on(store.subscriptions().add(sub.clone())).unwrap();
        for ue in 0..5 {
            let key = E2mIntKey::from_array(test_key_bytes(ue, 1));
            block_on(
                store
                    .int_keys()
                    .push(&imsi(ue), KeyId::from_u32(1), &key, at(1), at(1)),
            )
            .unwrap();
        }
        let claimed = block_on(store.int_keys().claim_due(&Claim {
            instance: InstanceId::from_u64(1),
            now: at(2),
            lease: Duration::from_secs(30),
            max: 2,
            per_emse: 2,
            skip: &[],
        }))
        .unwrap();
        assert_eq!(claimed.len(), 2);
        let summary = store.backup_to(&backup).unwrap();
        assert_eq!((summary.keys, summary.ues), (5, 5));
        (id, info, sub_id, sub, claimed)
    };
    let restored = RedbStore::restore(&backup, &target, &common::keyring()).unwrap();
    assert_eq!(
        restored.replaced, None,
        "nothing to replace in a new directory"
    );
    let store = open(&target).unwrap();
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
    assert_eq!(store.key_count().unwrap(), 5);
    assert_eq!(store.session_count().unwrap(), 1);
    // The outbox: five entries, two of them under a lease that the restore kept.
    let keys = store.int_keys();
    assert_eq!(block_on(keys.pending()).unwrap(), 5);
    let claim = |now| Claim {
        instance: InstanceId::from_u64(2),
        now: at(now),
        lease: Duration::from_secs(30),
        max: 100,
        per_emse: 100,
        skip: &[],
    };
    assert_eq!(block_on(keys.claim_due(&claim(3))).unwrap().len(), 3);
    let mut again: Vec<u64> = block_on(keys.claim_due(&claim(40)))
        .unwrap()
        .iter()
        .map(|p| p.id)
        .collect();
    again.sort_unstable();
    let mut first: Vec<u64> = claimed.iter().map(|p| p.id).collect();
    first.sort_unstable();
    assert!(
        first.iter().all(|id| again.contains(id)),
        "{first:?} {again:?}"
    );
    // Counters continue: a new session never takes an old ref, a new subscription never an
    // old id.
    let (_, next) = block_on(store.sessions().create(&emse, at(6))).unwrap();
    assert!(next.session > session.session);
    let sub2 = block_on(store.subscriptions().add(SubscriptionRecord {
        session: next.session,
        emse: emse.clone(),
        events: EventSet::single(EventType::KeyAvailable),
        ue: None,
        callback: "https://emse-a.example.com/notify".to_owned(),
    }))
    .unwrap();
    assert!(sub2 > sub_id);
}

#[test]
fn a_backup_holds_no_key_in_clear() {
    let base = tempfile::tempdir().unwrap();
    let backup = base.path().join("backup.redb");
    let store = open(&base.path().join("data")).unwrap();
    for ue in 0..50 {
        let key = E2mIntKey::from_array(test_key_bytes(ue, 1));
        block_on(
            store
                .int_keys()
                .push(&imsi(ue), KeyId::from_u32(1), &key, at(1), at(1)),
        )
        .unwrap();
    }
    store.backup_to(&backup).unwrap();
    let bytes = std::fs::read(&backup).unwrap();
    let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    for ue in 0..50 {
        let key = test_key_bytes(ue, 1);
        assert!(!contains(&key[..12]), "UE {ue}: key octets in clear");
        assert!(!contains(base16ct::lower::encode_string(&key).as_bytes()));
    }
    // The search sees the rows (the IMSIs are not secret).
    assert!(contains(imsi(7).as_bytes()));
}

#[test]
fn a_restore_refuses_another_kek_a_damaged_backup_and_an_open_store() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("data");
    let backup = base.path().join("backup.redb");
    let store = open(&dir).unwrap();
    let key = E2mIntKey::from_array(test_key_bytes(1, 1));
    block_on(
        store
            .int_keys()
            .push(&imsi(1), KeyId::from_u32(1), &key, at(1), at(1)),
    )
    .unwrap();
    store.backup_to(&backup).unwrap();

    // A second backup to the same path is refused; the first is untouched.
    let first = std::fs::read(&backup).unwrap();
    let again = store.backup_to(&backup).unwrap_err();
    assert!(matches!(again, RedbStoreError::BackupFile(_)), "{again:?}");
    assert_eq!(std::fs::read(&backup).unwrap(), first);

    // The store is open: a restore must not swap its file.
    let busy = RedbStore::restore(&backup, &dir, &common::keyring()).unwrap_err();
    assert!(matches!(busy, RedbStoreError::AlreadyOpen), "{busy:?}");
    drop(store);
    let before = std::fs::read(dir.join(DATABASE_FILE)).unwrap();

    // Other KEK files: refused, nothing changed.
    let other = Keyring::new([common::kek(1, 0x43)]).unwrap();
    match RedbStore::restore(&backup, &dir, &other) {
        Err(RedbStoreError::Kek(CheckError::WrongKek(v))) => assert_eq!(v.get(), 1),
        other => panic!("restore under another KEK: {other:?}"),
    }
    // A damaged backup: refused, nothing changed.
    let bad = base.path().join("damaged.redb");
    std::fs::copy(&backup, &bad).unwrap();
    damage(&bad);
    let e = RedbStore::restore(&bad, &dir, &common::keyring()).unwrap_err();
    assert!(
        matches!(
            e,
            RedbStoreError::Damaged(_) | RedbStoreError::Repaired | RedbStoreError::Unreadable
        ),
        "{e:?}"
    );
    // A backup that does not exist.
    let e = RedbStore::restore(base.path().join("nowhere"), &dir, &common::keyring()).unwrap_err();
    assert!(matches!(e, RedbStoreError::BackupFile(_)), "{e:?}");

    assert_eq!(std::fs::read(dir.join(DATABASE_FILE)).unwrap(), before);
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != DATABASE_FILE)
        .collect();
    assert!(
        leftovers.is_empty(),
        "left in the data directory: {leftovers:?}"
    );
    let store = open(&dir).unwrap();
    let held = block_on(store.int_keys().get(&imsi(1), KeyId::from_u32(1), at(2)))
        .unwrap()
        .unwrap();
    assert_eq!(held.key.expose_secret(), &test_key_bytes(1, 1));
}

#[test]
fn a_table_this_build_does_not_know_stops_the_backup() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("data");
    drop(open(&dir).unwrap());
    {
        let db = redb::Database::open(dir.join(DATABASE_FILE)).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(redb::TableDefinition::<u64, u64>::new("from_a_newer_build"))
            .unwrap();
        txn.commit().unwrap();
    }
    let store = open(&dir).unwrap();
    let backup = base.path().join("backup.redb");
    match store.backup_to(&backup) {
        Err(RedbStoreError::UnknownTable(name)) => assert_eq!(name, "from_a_newer_build"),
        other => panic!("{other:?}"),
    }
    assert!(!backup.exists());
}
