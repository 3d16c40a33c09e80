//! A full disk under push load: the store refuses writes while the disk is full (and says
//! so through `check_writable`), recovers by itself once there is room again, without being
//! reopened by its user, and loses nothing it acknowledged.
//!
//! Needs root to mount a small tmpfs (skipped with a message elsewhere).
#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking"
)]

mod common;

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::tmpfs::Tmpfs;
use e2m_keystore::conformance::test_key_bytes;
use e2m_keystore::{E2mIntKey, Imsi, IntKeyStore, KeyId, Timestamp, block_on};
use e2m_keystore_redb::{RedbStore, RedbStoreConfig, RedbStoreError};

const T0: u64 = 1_800_000_000;
const PUSHERS: u64 = 8;

fn now() -> Timestamp {
    Timestamp::from_unix_secs(T0)
}

fn imsi(n: u64) -> Imsi {
    Imsi::new(&format!("00101{n:010}")).unwrap()
}

/// What the pushers saw.
#[derive(Default)]
struct Tally {
    acknowledged: Mutex<Vec<u64>>,
    failed: AtomicU64,
    acked_count: AtomicU64,
}

/// Pushes one key to each of a stream of new UEs (so that the file keeps growing) until
/// `stop`; UE numbers are `pusher + PUSHERS * i`.
fn pusher(store: RedbStore, index: u64, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let keys = store.int_keys();
    let mut ue = index;
    while !stop.load(Ordering::Relaxed) {
        let key = E2mIntKey::from_array(test_key_bytes(ue, 1));
        match block_on(keys.push(&imsi(ue), KeyId::from_u32(1), &key, now(), now())) {
            Ok(outcome) => {
                assert!(outcome.is_held());
                tally.acknowledged.lock().unwrap().push(ue);
                tally.acked_count.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                tally.failed.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        ue += PUSHERS;
    }
}

fn wait_for(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_full_disk_stops_writes_until_there_is_room_and_the_store_recovers_by_itself() {
    let Some(disk) = Tmpfs::mount("redb-full", 8) else {
        return;
    };
    let dir = disk.path().join("store");
    let store = RedbStore::open(&dir, common::keyring(), RedbStoreConfig::default()).unwrap();
    block_on(store.check_writable()).expect("writable at the start");

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let threads: Vec<_> = (0..PUSHERS)
        .map(|i| {
            let (store, stop, tally) = (store.clone(), stop.clone(), tally.clone());
            std::thread::spawn(move || pusher(store, i, stop, tally))
        })
        .collect();
    wait_for("500 acknowledged pushes", Duration::from_secs(60), || {
        tally.acked_count.load(Ordering::Relaxed) >= 500
    });

    // The disk fills up under the load.
    let filled = disk.fill("filler");
    assert!(filled > 0);
    wait_for(
        "a push refused on the full disk",
        Duration::from_secs(30),
        || tally.failed.load(Ordering::Relaxed) > 0,
    );
    // Readiness: the store says it cannot write while the disk is full (each check is a
    // test commit; one may slip into a page freed earlier, so several are asked).
    let refused = (0..20).any(|_| {
        let answer = block_on(store.check_writable());
        std::thread::sleep(Duration::from_millis(50));
        answer.is_err()
    });
    assert!(refused, "check_writable never failed on a full disk");
    let during = block_on(store.check_writable());
    if let Err(e) = &during {
        // The cause is named (for the operator's log).
        let text = e.to_string();
        assert!(
            matches!(e, RedbStoreError::Unavailable(_) | RedbStoreError::Batch(_)),
            "{e:?}"
        );
        assert!(!text.is_empty());
    }
    let acked_while_full = tally.acked_count.load(Ordering::Relaxed);
    // Reads go on while the disk is full (from the reopened file; a read that meets the
    // moment of a reopen gets a typed error, so a few are allowed).
    let first = tally.acknowledged.lock().unwrap()[0];
    wait_for(
        "a key read while the disk is full",
        Duration::from_secs(10),
        || {
            block_on(
                store
                    .int_keys()
                    .get(&imsi(first), KeyId::from_u32(1), now()),
            )
            .is_ok_and(|k| k.is_some_and(|k| k.key.expose_secret() == &test_key_bytes(first, 1)))
        },
    );

    // Room again: the store recovers without being reopened by its user.
    disk.free("filler");
    let freed_at = Instant::now();
    wait_for(
        "check_writable to succeed after the disk was freed",
        Duration::from_secs(20),
        || block_on(store.check_writable()).is_ok(),
    );
    wait_for(
        "pushes acknowledged again after the disk was freed",
        Duration::from_secs(20),
        || tally.acked_count.load(Ordering::Relaxed) >= acked_while_full + 200,
    );
    let recovered_in = freed_at.elapsed();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    eprintln!(
        "filled {filled} octets; {} pushes refused; recovered {recovered_in:?} after the disk was freed",
        tally.failed.load(Ordering::Relaxed)
    );

    // Nothing acknowledged was lost: served now, and after a restart.
    let acknowledged = tally.acknowledged.lock().unwrap().clone();
    let check = |store: &RedbStore| {
        let keys = store.int_keys();
        for &ue in &acknowledged {
            let held = block_on(keys.get(&imsi(ue), KeyId::from_u32(1), now()))
                .unwrap()
                .unwrap_or_else(|| panic!("acknowledged key of UE {ue} lost"));
            assert_eq!(held.key.expose_secret(), &test_key_bytes(ue, 1));
        }
    };
    check(&store);
    drop(store);
    let store = RedbStore::open(&dir, common::keyring(), RedbStoreConfig::default()).unwrap();
    check(&store);
    assert_eq!(
        store.key_count().unwrap(),
        u64::try_from(acknowledged.len()).unwrap()
    );
}

#[test]
fn check_writable_commits_on_a_healthy_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path(), common::keyring(), RedbStoreConfig::default()).unwrap();
    for _ in 0..3 {
        block_on(store.check_writable()).unwrap();
    }
    // The test write is not a key.
    assert_eq!(store.key_count().unwrap(), 0);
}
