//! The public conformance suite, against a real PostgreSQL started for this test.
#![allow(
    clippy::expect_used,
    reason = "a test fails loudly on a broken fixture"
)]

mod support;

use std::sync::atomic::{AtomicU32, Ordering};

use e2m_keystore::conformance::{self, Factories};
use e2m_keystore_pg::{PgBackend, PgConfig};
use tokio::runtime::Handle;

/// Connects a backend on a schema of its own, from the suite's synchronous factories (the
/// suite wants a fresh, empty store per check: a fresh schema is one).
fn fresh_backend(conninfo: &str) -> PgBackend {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let schema = format!("conformance_{}", NEXT.fetch_add(1, Ordering::Relaxed));
    let config = PgConfig::from_conninfo(conninfo)
        .and_then(|c| c.with_schema(&schema))
        .and_then(|c| c.with_pool_size(4))
        .expect("config");
    tokio::task::block_in_place(|| {
        Handle::current().block_on(PgBackend::connect(&config, support::keyring(1, 0x42)))
    })
    .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stores_pass_the_conformance_suite() {
    let Some(cluster) = support::Cluster::start() else {
        return;
    };
    let conninfo = cluster.conninfo();
    let report = conformance::run_all(&Factories {
        int_keys: &|p| fresh_backend(&conninfo).int_keys(p),
        identities: &|| fresh_backend(&conninfo).identities(),
        sessions: &|p| fresh_backend(&conninfo).sessions(p),
        subscriptions: &|p| fresh_backend(&conninfo).subscriptions(p),
    })
    .await;
    assert!(report.is_ok(), "{report}");
    assert!(
        report.results.len() >= 35,
        "{} checks ran",
        report.results.len()
    );
    println!("{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outbox_passes_the_outbox_conformance_suite() {
    let Some(cluster) = support::Cluster::start() else {
        return;
    };
    let conninfo = cluster.conninfo();
    let report = conformance::outbox(&|retention| {
        let backend = fresh_backend(&conninfo);
        (
            backend.int_keys(retention),
            backend.subscriptions(e2m_keystore::SubscriptionPolicy::DEFAULT),
        )
    })
    .await;
    assert!(report.is_ok(), "{report}");
    assert!(
        report.results.len() >= 9,
        "{} checks ran",
        report.results.len()
    );
}
