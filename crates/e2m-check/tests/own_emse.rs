//! Proof (1) of issue 19 for the EMSE side: our own EMSE (the DTLS 1.2 PSK server and the
//! OSCORE endpoint of e2m-dtls, fetching keys from our EMKS through its key source) passes
//! every EMSE check. The `emse` example as a process is checked in the root package's
//! `tests/check_example.rs`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests"
)]

mod common;

use std::sync::Arc;

use e2m_check::e2m_https::client::{Backoff, EmksClient, EmseSession};
use e2m_check::{EmseTarget, Selection, UePlan, run_emse};
use e2m_dtls::emks_source::EmksKeySource;
use e2m_dtls::oscore_server::{self, OscoreServer, OscoreServerConfig};
use e2m_dtls::server::{DtlsServer, ServerConfig, default_handler};
use e2m_emks::Emks;

use common::{TestPki, config, emse, provision, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_emse_passes_every_check() {
    let pki = TestPki::new();
    let plan = UePlan::standard().unwrap();
    let core = Arc::new(Emks::in_memory(config()));
    provision(core.identities(), &plan).await;
    let emks = start(Arc::clone(&core), &pki).await;

    let client = EmksClient::for_emse(&emks.base_url(), &pki.dir, &emse("emse-a")).unwrap();
    let session = EmseSession::establish(client, None, Backoff::DEFAULT)
        .await
        .unwrap();
    let keys = Arc::new(EmksKeySource::new(session, 1024));
    let loopback = "127.0.0.1:0".parse().unwrap();
    let dtls = DtlsServer::bind(
        loopback,
        Arc::clone(&keys),
        default_handler(),
        ServerConfig::default(),
    )
    .await
    .unwrap();
    let oscore = OscoreServer::bind(
        loopback,
        Arc::clone(&keys),
        oscore_server::default_handler(),
        OscoreServerConfig::default(),
    )
    .await
    .unwrap();

    let mut target = EmseTarget::from_pki_dir(
        dtls.local_addr(),
        emse("emse-a"),
        &emks.base_url(),
        &pki.dir,
        plan,
    )
    .unwrap();
    target.oscore = Some(oscore.local_addr());
    let report = run_emse(target, &Selection::all()).await.unwrap();
    println!("{}", report.table());
    dtls.shutdown();
    oscore.shutdown();
    let _ = keys.session().close().await;
    emks.shutdown().await;
    assert!(report.is_success(), "failed: {:?}", report.failures());
    assert_eq!(report.summary().skipped, 0, "{}", report.table());
    assert_eq!(report.summary().passed, e2m_check::emse_checks().len());
}
