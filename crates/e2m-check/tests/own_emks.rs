//! Proof (1) of issue 19: our own EMKS passes every EMKS check, on the in-memory stores and
//! on the embedded durable store (redb). PostgreSQL is proven with the `emks` example as a
//! process (the root package's `tests/check_example.rs`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests"
)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use e2m_check::{Selection, UePlan, run_emks};
use e2m_emks::Emks;
use e2m_keystore_redb::{RedbStore, RedbStoreConfig};

use common::{TestPki, config, provision, start, target, temp_dir};

fn assert_all_pass(report: &e2m_check::Report) {
    println!("{}", report.table());
    assert!(
        report.is_success(),
        "failed: {:?}\n{}",
        report.failures(),
        report.table()
    );
    let s = report.summary();
    assert_eq!(
        s.skipped,
        0,
        "nothing may be skipped here:\n{}",
        report.table()
    );
    assert_eq!(s.passed, e2m_check::emks_checks().len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_emks_on_memory_passes_every_check() {
    let pki = TestPki::new();
    let core = Arc::new(Emks::in_memory(config()));
    provision(core.identities(), &UePlan::standard().unwrap()).await;
    let server = start(Arc::clone(&core), &pki).await;
    let report = run_emks(target(&server.base_url(), &pki), &Selection::all())
        .await
        .unwrap();
    server.shutdown().await;
    assert_all_pass(&report);
}

fn keyring() -> e2m_seal::Keyring {
    let v = e2m_seal::KekVersion::new(1).unwrap();
    e2m_seal::Keyring::new([e2m_seal::Kek::from_array(v, [0x42; 32])]).unwrap()
}

/// On redb, and twice against the same store: a second run finds the first run's keys,
/// sessions and subscriptions (or their absence) and must pass all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_emks_on_redb_passes_every_check_twice() {
    let pki = TestPki::new();
    let dir = temp_dir("check-redb");
    let store = RedbStore::open(&dir, keyring(), RedbStoreConfig::default()).unwrap();
    let core = Arc::new(Emks::new(
        config(),
        store.int_keys(),
        store.identities(),
        store.sessions(),
        store.subscriptions(),
    ));
    provision(core.identities(), &UePlan::standard().unwrap()).await;
    let server = start(Arc::clone(&core), &pki).await;
    for _ in 0..2 {
        let report = run_emks(target(&server.base_url(), &pki), &Selection::all())
            .await
            .unwrap();
        assert_all_pass(&report);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.shutdown().await;
    drop(core);
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}
