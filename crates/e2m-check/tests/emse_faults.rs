//! The EMSE checks can fail: against our EMSE fed by a faulty EMKS (the Python EMKS with a
//! planted fault: the EMSE then gets wrong keys, and the UE sees it), against a UDP port
//! that answers nothing, and with the checker told another EMSE_Id than the EMSE's.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests"
)]

mod common;
mod pyemks_support;

use std::sync::Arc;

use e2m_check::e2m_https::client::{Backoff, EmksClient, EmseSession};
use e2m_check::{EmseTarget, Report, Selection, UePlan, run_emse};
use e2m_dtls::emks_source::EmksKeySource;
use e2m_dtls::server::{DtlsServer, ServerConfig, ServerHandle, default_handler};

use common::{TestPki, emse};

/// Our EMSE (DTLS only) as emse-a, fetching from the EMKS at `url`.
async fn our_emse(url: &str, pki: &TestPki) -> (ServerHandle, Arc<EmksKeySource>) {
    let client = EmksClient::for_emse(url, &pki.dir, &emse("emse-a")).unwrap();
    let session = EmseSession::establish(client, None, Backoff::DEFAULT)
        .await
        .unwrap();
    let keys = Arc::new(EmksKeySource::new(session, 1024));
    let dtls = DtlsServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        Arc::clone(&keys),
        default_handler(),
        ServerConfig::default(),
    )
    .await
    .unwrap();
    (dtls, keys)
}

async fn run(
    dtls: std::net::SocketAddr,
    emse_id: &str,
    url: &str,
    pki: &TestPki,
    only: &[&str],
) -> Report {
    let target = EmseTarget::from_pki_dir(
        dtls,
        emse(emse_id),
        url,
        &pki.dir,
        UePlan::standard().unwrap(),
    )
    .unwrap();
    let selection = Selection::new(only.iter().map(|s| (*s).to_owned()).collect(), Vec::new());
    let report = run_emse(target, &selection).await.unwrap();
    println!("{}", report.table());
    report
}

fn assert_failed(report: &Report, names: &[&str]) {
    for name in names {
        let verdict = &report
            .result(name)
            .unwrap_or_else(|| panic!("{name} did not run"))
            .verdict;
        assert!(verdict.is_fail(), "{name}: {verdict:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_faulty_emks_behind_our_emse_fails_the_emse_checks() {
    let pki = TestPki::new();
    for (fault, catchers) in [
        ("latest-key", &["dtls.retained-older-key"][..]),
        ("keep-oldest", &["dtls.evicted-key-id"][..]),
        (
            "wrong-emse-id",
            &["dtls.handshake", "dtls.retained-older-key"][..],
        ),
    ] {
        let emks = pyemks_support::start(&pki, &[fault]);
        let (dtls, keys) = our_emse(&emks.url, &pki).await;
        let report = run(dtls.local_addr(), "emse-a", &emks.url, &pki, catchers).await;
        dtls.shutdown();
        let _ = keys.session().close().await;
        assert_failed(&report, catchers);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_udp_port_that_answers_nothing_fails_every_dtls_check() {
    let pki = TestPki::new();
    let emks = pyemks_support::start(&pki, &[]);
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let sink = tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while silent.recv_from(&mut buf).await.is_ok() {}
    });
    let names: Vec<&str> = e2m_check::emse_checks()
        .iter()
        .map(|c| c.name)
        .filter(|n| n.starts_with("dtls."))
        .collect();
    let mut target = EmseTarget::from_pki_dir(
        addr,
        emse("emse-a"),
        &emks.url,
        &pki.dir,
        UePlan::standard().unwrap(),
    )
    .unwrap();
    target.alert_wait = std::time::Duration::from_secs(2);
    target.handshake_timeout = std::time::Duration::from_secs(2);
    let report = run_emse(target, &Selection::new(vec!["dtls.*".into()], Vec::new()))
        .await
        .unwrap();
    println!("{}", report.table());
    sink.abort();
    assert_failed(&report, &names);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wrong_emse_id_fails_the_handshake() {
    let pki = TestPki::new();
    let emks = pyemks_support::start(&pki, &[]);
    let (dtls, keys) = our_emse(&emks.url, &pki).await;
    // The EMSE is emse-a; the checker derives the UE's keys for emse-b.
    let report = run(
        dtls.local_addr(),
        "emse-b",
        &emks.url,
        &pki,
        &["dtls.handshake"],
    )
    .await;
    dtls.shutdown();
    let _ = keys.session().close().await;
    assert_failed(&report, &["dtls.handshake"]);
}
