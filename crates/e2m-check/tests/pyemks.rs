//! Proofs (2) and (3) of issue 19: a second, independent EMKS (`tests/pyemks/pyemks.py`,
//! Python's standard library only, written from the seed and the binding's documentation)
//! passes every EMKS check, and each fault planted in it with `--fault` is caught: every
//! check the fault's table entry names fails.
//!
//! Needs `python3` (3.8 or later) and `xmllint`; `.ci/test` installs xmllint. Without
//! python3 the tests fail with a message saying so.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests"
)]

mod common;
mod pyemks_support;

use std::process::Command;

use e2m_check::{Report, Selection, run_emks};

use common::{TestPki, target};
use pyemks_support::{PyEmks, script, start};

async fn check(emks: &PyEmks, pki: &TestPki, selection: &Selection) -> Report {
    run_emks(target(&emks.url, pki), selection).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_emks_passes_every_check() {
    let pki = TestPki::new();
    let emks = start(&pki, &[]);
    let report = check(&emks, &pki, &Selection::all()).await;
    println!("{}", report.table());
    assert!(report.is_success(), "failed: {:?}", report.failures());
    assert_eq!(report.summary().skipped, 0);
    assert_eq!(report.summary().passed, e2m_check::emks_checks().len());
}

/// Each planted fault and the checks that must fail because of it.
const FAULTS: &[(&str, &[&str])] = &[
    (
        "wrong-emse-id",
        &["fetch.by-app-identity", "fetch.key-separation"],
    ),
    ("keep-oldest", &["retention.most-recent-n"]),
    (
        "404-for-403",
        &[
            "register.emse-id-mismatch",
            "register.hss-refused",
            "push.emse-refused",
            "fetch.imsi-not-permitted",
            "subscribe.callback-host",
        ],
    ),
    ("no-store", &["fetch.no-store"]),
    ("session-any-cert", &["session.bound-to-certificate"]),
    ("403-for-foreign-session", &["session.bound-to-certificate"]),
    (
        "latest-key",
        &[
            "fetch.selects-by-key-id",
            "retention.race-a",
            "retention.race-b",
        ],
    ),
    ("unscoped-identities", &["fetch.identity-scoped"]),
    (
        "dereg-keeps-subscriptions",
        &["deregister.ends-subscriptions"],
    ),
    ("no-location", &["register.created"]),
    ("register-200", &["register.created"]),
    ("fetch-201", &["fetch.by-app-identity"]),
    (
        "serve-expired",
        &["expiry.expired-key", "expiry.key-lifetime"],
    ),
    ("text-xml", &["register.created", "fetch.by-app-identity"]),
    ("no-allow", &["binding.method-not-allowed"]),
    (
        "json-problems",
        &["binding.not-found", "fetch.unknown-key-id"],
    ),
    ("any-media-type", &["binding.unsupported-media-type"]),
    ("no-body-limit", &["limits.body-size"]),
    ("emse-can-push", &["push.emse-refused"]),
    (
        "no-notifications",
        &["notify.key-available", "notify.key-retired"],
    ),
    ("no-retry", &["notify.redelivered"]),
    ("all-events", &["notify.key-retired"]),
    ("short-hash-sha256", &["push.short-hash"]),
    ("same-id-kept", &["push.same-key-id-replaces"]),
    ("lenient-xml", &["binding.malformed-xml"]),
    ("lenient-query", &["binding.bad-query"]),
    ("optional-client-cert", &["tls.client-certificate-required"]),
    ("imsi-for-all", &["fetch.imsi-not-permitted"]),
    ("unsubscribe-any", &["unsubscribe.other-emse"]),
    ("session-id-hex", &["register.created"]),
    ("any-callback", &["subscribe.callback-host"]),
    ("subscribe-all-open", &["subscribe.all-ues"]),
    ("notify-unchecked", &["notification.refused"]),
    ("session-limit", &["register.never-locked-out"]),
    ("no-sweep", &["notify.key-retired-on-expiry"]),
];

#[test]
fn every_planted_fault_is_in_the_table() {
    let out = Command::new("python3")
        .arg(script())
        .arg("--list-faults")
        .output()
        .unwrap_or_else(|e| panic!("python3 is needed for this test: {e}"));
    let listed: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect();
    let table: Vec<&str> = FAULTS.iter().map(|(f, _)| *f).collect();
    assert_eq!(listed.len(), table.len(), "{listed:?} vs {table:?}");
    for f in &listed {
        assert!(table.contains(&f.as_str()), "fault {f} has no entry");
    }
    let names: Vec<&str> = e2m_check::emks_checks().iter().map(|c| c.name).collect();
    for (fault, checks) in FAULTS {
        for c in *checks {
            assert!(names.contains(c), "{fault}: no check {c}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_planted_fault_is_caught() {
    let pki = TestPki::new();
    let mut missed = Vec::new();
    for (fault, catchers) in FAULTS {
        let emks = start(&pki, &[fault]);
        let only = catchers.iter().map(|c| (*c).to_owned()).collect();
        let report = check(&emks, &pki, &Selection::new(only, Vec::new())).await;
        for name in *catchers {
            match report.result(name) {
                Some(r) if r.verdict.is_fail() => {
                    println!("{fault:<26} caught by {name}: {}", r.verdict.text());
                }
                other => missed.push(format!(
                    "{fault}: {name} did not fail ({:?})",
                    other.map(|r| &r.verdict)
                )),
            }
        }
    }
    assert!(
        missed.is_empty(),
        "faults not caught:\n{}",
        missed.join("\n")
    );
}
