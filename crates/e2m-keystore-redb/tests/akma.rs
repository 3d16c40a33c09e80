//! The redb AKMA context store: the conformance suite of e2m-keystore (one test per check),
//! concurrent registrations from threads, K_AKMA sealed at rest (a swapped or moved record
//! does not open; no key octets in the file), and contexts, targets and outbox entries that
//! survive a restart.
#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking"
)]

mod common;

use std::path::Path;
use std::time::Duration;

use e2m_keystore::akma::{AkmaContexts, AkmaOutbox, AkmaPolicy, NotifyTarget};
use e2m_keystore::conformance::{self, BlockOn};
use e2m_keystore::e2m_kdf::Kakma;
use e2m_keystore::e2m_keyid::akma::{AKid, Fqdn, UeId};
use e2m_keystore::{Claim, InstanceId, StoreError, Timestamp, block_on};
use e2m_keystore_redb::{DATABASE_FILE, RedbStore, RedbStoreConfig, RedbStoreError};
use redb::{ReadableTable, TableDefinition};

/// A fresh store per check, in its own directory under a base that lives for the process.
fn fresh(policy: AkmaPolicy) -> e2m_keystore_redb::RedbAkmaContexts {
    static BASE: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    let base = BASE.get_or_init(|| tempfile::tempdir().unwrap());
    common::fresh(base.path(), RedbStoreConfig::default()).akma(policy)
}

mod redb_store {
    e2m_keystore::akma_conformance_tests! {
        run: e2m_keystore::block_on,
        akma: crate::fresh,
    }
}

#[test]
fn the_whole_suite_passes() {
    let report = block_on(conformance::akma(&fresh));
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.results.len(), conformance::AKMA_CHECKS.len());
}

#[test]
fn concurrent_registrations_of_one_ue_leave_one_context() {
    let store = fresh(AkmaPolicy::DEFAULT);
    let report = conformance::concurrent_akma_registrations(&store, &BlockOn, 8, 40);
    assert!(report.is_ok(), "{report}");
}

fn at(s: u64) -> Timestamp {
    Timestamp::from_unix_secs(1_800_000_000 + s)
}

fn ue(text: &str) -> UeId {
    UeId::parse(text).unwrap()
}

fn a_kid(n: u8) -> AKid {
    AKid::parse(&format!(
        "rid0.atid{n:064x}@5gc.mnc001.mcc001.3gppnetwork.org"
    ))
    .unwrap()
}

fn key(n: u8) -> [u8; 32] {
    core::array::from_fn(|i| n.wrapping_mul(37) ^ (i as u8).wrapping_mul(101) ^ 0xc3)
}

const CONTEXTS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("akma_contexts");

/// Rewrites rows of the closed store's file directly (what an attacker with the file, or a
/// faulty restore, could do).
fn edit_file(dir: &Path, edit: impl FnOnce(&mut redb::Table<'_, &str, &[u8]>)) {
    let db = redb::Database::open(dir.join(DATABASE_FILE)).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut table = txn.open_table(CONTEXTS).unwrap();
        edit(&mut table);
    }
    txn.commit().unwrap();
}

fn row(table: &redb::Table<'_, &str, &[u8]>, ue: &str) -> Vec<u8> {
    table.get(ue).unwrap().unwrap().value().to_vec()
}

fn is_open_error(result: Result<impl core::fmt::Debug, StoreError>) -> bool {
    match result {
        Err(StoreError::Backend(e)) => matches!(
            e.downcast_ref::<RedbStoreError>(),
            Some(RedbStoreError::Open(_))
        ),
        other => panic!("expected a sealed record that does not open, got {other:?}"),
    }
}

#[test]
fn k_akma_is_sealed_and_a_swapped_or_moved_record_does_not_open() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = ("imsi-001010000000001", "msisdn-33612345678");
    {
        let store =
            RedbStore::open(dir.path(), common::keyring(), RedbStoreConfig::default()).unwrap();
        let akma = store.akma(AkmaPolicy::DEFAULT);
        block_on(akma.register(&ue(a), &a_kid(1), &Kakma::from_array(key(1)), at(0))).unwrap();
        block_on(akma.register(&ue(b), &a_kid(2), &Kakma::from_array(key(2)), at(0))).unwrap();
    }
    // No K_AKMA octets anywhere in the file.
    let file = std::fs::read(dir.path().join(DATABASE_FILE)).unwrap();
    for n in [1, 2] {
        assert!(
            !file.windows(32).any(|w| w == key(n)),
            "K_AKMA {n} in clear in the file"
        );
    }
    // Swap the sealed bytes (the last 65 octets of each row) between the two UEs.
    edit_file(dir.path(), |t| {
        let (mut ra, mut rb) = (row(t, a), row(t, b));
        let (la, lb) = (ra.len(), rb.len());
        let sealed_a: Vec<u8> = ra[la - 65..].to_vec();
        ra[la - 65..].copy_from_slice(&rb[lb - 65..]);
        rb[lb - 65..].copy_from_slice(&sealed_a);
        t.insert(a, ra.as_slice()).unwrap();
        t.insert(b, rb.as_slice()).unwrap();
    });
    {
        let store =
            RedbStore::open(dir.path(), common::keyring(), RedbStoreConfig::default()).unwrap();
        let akma = store.akma(AkmaPolicy::DEFAULT);
        assert!(is_open_error(block_on(akma.retrieve(
            &a_kid(1),
            None,
            at(1)
        ))));
        assert!(is_open_error(block_on(akma.retrieve(
            &a_kid(2),
            None,
            at(1)
        ))));
        assert!(is_open_error(block_on(akma.context_of(&ue(a), at(1)))));
    }
    // Swap them back: both open again (the test's edit, not the store, broke them).
    edit_file(dir.path(), |t| {
        let (mut ra, mut rb) = (row(t, a), row(t, b));
        let (la, lb) = (ra.len(), rb.len());
        let sealed_a: Vec<u8> = ra[la - 65..].to_vec();
        ra[la - 65..].copy_from_slice(&rb[lb - 65..]);
        rb[lb - 65..].copy_from_slice(&sealed_a);
        t.insert(a, ra.as_slice()).unwrap();
        t.insert(b, rb.as_slice()).unwrap();
    });
    {
        let store =
            RedbStore::open(dir.path(), common::keyring(), RedbStoreConfig::default()).unwrap();
        let akma = store.akma(AkmaPolicy::DEFAULT);
        let c = block_on(akma.retrieve(&a_kid(1), None, at(1)))
            .unwrap()
            .unwrap();
        assert!(c.k_akma == Kakma::from_array(key(1)));
    }
    // Move A's whole row under B's UE (its A-KID in the index still points to B): refused.
    edit_file(dir.path(), |t| {
        let ra = row(t, a);
        t.insert(b, ra.as_slice()).unwrap();
    });
    let store = RedbStore::open(dir.path(), common::keyring(), RedbStoreConfig::default()).unwrap();
    let akma = store.akma(AkmaPolicy::DEFAULT);
    assert!(is_open_error(block_on(akma.context_of(&ue(b), at(1)))));
}

#[test]
fn contexts_targets_and_notifications_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let supi = ue("imsi-001010000000007");
    let af = Fqdn::parse("af.example.com").unwrap();
    let target = NotifyTarget::new(af, "https://af.example.com/n").unwrap();
    {
        let store =
            RedbStore::open(dir.path(), common::keyring(), RedbStoreConfig::default()).unwrap();
        let akma = store.akma(AkmaPolicy::DEFAULT);
        block_on(akma.register(&supi, &a_kid(7), &Kakma::from_array(key(7)), at(0))).unwrap();
        block_on(akma.retrieve(&a_kid(7), Some(&target), at(1)))
            .unwrap()
            .unwrap();
    }
    {
        let store =
            RedbStore::open(dir.path(), common::keyring(), RedbStoreConfig::default()).unwrap();
        let akma = store.akma(AkmaPolicy::DEFAULT);
        let c = block_on(akma.retrieve(&a_kid(7), None, at(2)))
            .unwrap()
            .unwrap();
        assert!(c.k_akma == Kakma::from_array(key(7)));
        let removed = block_on(akma.remove(&supi, at(3))).unwrap();
        assert_eq!(
            removed.notifications, 1,
            "the target did not survive the restart"
        );
    }
    let store = RedbStore::open(dir.path(), common::keyring(), RedbStoreConfig::default()).unwrap();
    let akma = store.akma(AkmaPolicy::DEFAULT);
    assert!(
        block_on(akma.retrieve(&a_kid(7), None, at(4)))
            .unwrap()
            .is_none()
    );
    let claim = Claim {
        instance: InstanceId::from_u64(9),
        now: at(4),
        lease: Duration::from_secs(30),
        max: 10,
        per_emse: 10,
        skip: &[],
    };
    let pending = block_on(akma.claim_due(&claim)).unwrap();
    assert_eq!(
        pending.len(),
        1,
        "the notification did not survive the restart"
    );
    assert_eq!((pending[0].af, pending[0].a_kid), (af, a_kid(7)));
    assert_eq!(&*pending[0].notif_uri, "https://af.example.com/n");
}

#[test]
fn a_retrieval_with_a_known_target_writes_nothing() {
    // The repeat is served from a read snapshot: the file does not grow with repeats.
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path(), common::keyring(), RedbStoreConfig::default()).unwrap();
    let akma = store.akma(AkmaPolicy::DEFAULT);
    let supi = ue("imsi-001010000000008");
    block_on(akma.register(&supi, &a_kid(8), &Kakma::from_array(key(8)), at(0))).unwrap();
    let target = NotifyTarget::new(
        Fqdn::parse("af.example.com").unwrap(),
        "https://af.example.com/n",
    )
    .unwrap();
    block_on(akma.retrieve(&a_kid(8), Some(&target), at(1)))
        .unwrap()
        .unwrap();
    let path = dir.path().join(DATABASE_FILE);
    let before = std::fs::metadata(&path).unwrap().modified().unwrap();
    std::thread::sleep(Duration::from_millis(20));
    for s in 2..50 {
        block_on(akma.retrieve(&a_kid(8), Some(&target), at(s)))
            .unwrap()
            .unwrap();
    }
    assert_eq!(
        std::fs::metadata(&path).unwrap().modified().unwrap(),
        before
    );
}
