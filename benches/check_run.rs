//! The whole conformance run (issue 19, goal: under a minute against a local EMKS): every
//! EMKS check of `e2m-check` against our EMKS on the in-memory stores, and every EMSE check
//! against our EMSE (DTLS and OSCORE over the EMKS key source), in one process on
//! loopback. Prints, per run, the wall time, this process's CPU time (checker and servers
//! together), and the slowest checks; most of an EMKS run is deliberate waiting (a quiet
//! period for notifications that must not come, a key that must expire, a redelivery after
//! a 503), which the table shows.
//!
//! ```text
//! cargo bench --bench check_run                 # 3 runs of each suite
//! E2M_BENCH_RUNS=10 cargo bench --bench check_run
//! ```
//!
//! Wall times move with the load of a shared machine; take final figures on a quiet one.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    reason = "benchmark harness"
)]

use std::sync::Arc;
use std::time::Duration;

use e2m_check::{EmksTarget, EmseTarget, Report, Selection, UePlan, XmlLint, run_emks, run_emse};
use e2m_dtls::emks_source::EmksKeySource;
use e2m_dtls::oscore_server::{self, OscoreServer, OscoreServerConfig};
use e2m_dtls::server::{DtlsServer, ServerConfig, default_handler};
use e2m_emks::{Emks, EmksConfig};
use e2m_https::client::{Backoff, EmksClient, EmseSession};
use e2m_https::emks::{EmksServerOptions, start_emks};
use e2m_https::pki::{GeneratedPki, PkiSpec};
use e2m_kdf::E2mProfile;
use e2m_keyid::EmseId;
use e2m_keystore::IdentityMap;

/// This process's user + system CPU time from `/proc/self/stat` (Linux; USER_HZ = 100).
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

fn print_run(n: usize, report: &Report, cpu: Option<Duration>) {
    let s = report.summary();
    let mut slow: Vec<_> = report.results.iter().collect();
    slow.sort_by_key(|r| std::cmp::Reverse(r.duration));
    let slowest: Vec<String> = slow
        .iter()
        .take(4)
        .map(|r| format!("{} {:.1} s", r.info.name, r.duration.as_secs_f64()))
        .collect();
    println!(
        "{:<5} run {n}: {:>5.1} s wall, {:>5.2} s CPU, {} pass / {} fail / {} skip; slowest: {}",
        report.suite,
        report.duration.as_secs_f64(),
        cpu.map_or(f64::NAN, |c| c.as_secs_f64()),
        s.passed,
        s.failed,
        s.skipped,
        slowest.join(", ")
    );
    assert!(report.is_success(), "{}", report.table());
}

fn main() {
    // `cargo bench` passes `--bench`; this harness takes no arguments.
    let runs: usize = std::env::var("E2M_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let a = EmseId::new("emse-a").unwrap();
        let b = EmseId::new("emse-b").unwrap();
        let dir = std::env::temp_dir().join(format!("e2m-bench-check-{}", std::process::id()));
        let pki = GeneratedPki::generate(&PkiSpec::new(vec![a.clone(), b.clone()]).unwrap())
            .unwrap()
            .write_to(&dir)
            .unwrap();
        let plan = UePlan::standard().unwrap();
        let config = EmksConfig::new(E2mProfile::PROVISIONAL)
            .unwrap()
            .allow_imsi(&a)
            // The checker's callback endpoint: 127.0.0.1 (named by EMSE A's certificate)
            // on an ephemeral port.
            .allow_certificate_callback_ports(1024..=65535);
        let core = Arc::new(Emks::in_memory(config));
        for (emse, app, imsi) in plan.provisioning(&[a.clone(), b.clone()]) {
            core.identities()
                .provision(&emse, &app, &imsi)
                .await
                .unwrap();
        }
        let emks = start_emks(Arc::clone(&core), &pki, EmksServerOptions::default())
            .await
            .unwrap();
        let url = emks.base_url();

        println!("whole runs against our EMKS (memory) and EMSE on loopback, {runs} of each");
        for n in 1..=runs {
            let mut target = EmksTarget::from_pki_dir(&url, &pki, &a, &b, plan.clone()).unwrap();
            target.imsi_allowed_a = true;
            target.xmllint = XmlLint::Auto;
            let before = process_cpu();
            let report = run_emks(target, &Selection::all()).await.unwrap();
            let cpu = process_cpu()
                .zip(before)
                .map(|(after, b)| after.saturating_sub(b));
            print_run(n, &report, cpu);
        }

        let session = EmseSession::establish(
            EmksClient::for_emse(&url, &pki, &a).unwrap(),
            None,
            Backoff::DEFAULT,
        )
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
        for n in 1..=runs {
            let mut target =
                EmseTarget::from_pki_dir(dtls.local_addr(), a.clone(), &url, &pki, plan.clone())
                    .unwrap();
            target.oscore = Some(oscore.local_addr());
            let before = process_cpu();
            let report = run_emse(target, &Selection::all()).await.unwrap();
            let cpu = process_cpu()
                .zip(before)
                .map(|(after, b)| after.saturating_sub(b));
            print_run(n, &report, cpu);
        }
        dtls.shutdown();
        oscore.shutdown();
        let _ = keys.session().close().await;
        emks.shutdown().await;
        let _ = std::fs::remove_dir_all(&dir);
    });
}
