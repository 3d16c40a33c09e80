//! Issue 16 item 1: a request whose body is expensive to decode does not stall another
//! EMSE's key fetch. One authenticated EMSE sends, on several connections at once and back
//! to back, bodies as costly to decode as the 64 KiB limit allows; another EMSE fetches keys
//! meanwhile on a real EMKS on loopback. Before the fix one of those bodies (6,000
//! attributes on one element) took 2.3 s of a shared worker thread to refuse (tens of
//! seconds in a debug build), and four of them stalled every other request for 13 s.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests"
)]

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use e2m_emks::{Emks, EmksConfig};
use e2m_https::emks::{EmksServerOptions, start_emks};
use e2m_https::pki::Role;
use e2m_https::tls::{ExpectedServer, client_config};
use e2m_keyid::{AppIdentity, KeyId};
use e2m_keystore::IdentityMap;
use e2m_msg::{KeyRequest, MAX_DOCUMENT_LEN, NAMESPACE, UeRef};

use common::{TestPki, emse, imsi, push};

/// Connections the attacking EMSE keeps busy at once (the issue stalled the EMKS with 4).
const ATTACKERS: usize = 4;
/// Key fetches of the other EMSE during the attack (at least).
const FETCHES: usize = 30;
/// A fetch slower than this is a stall: a healthy debug-build fetch takes milliseconds
/// on a loaded machine, and one stalled behind the old decoder took tens of seconds.
const STALL: Duration = Duration::from_secs(2);

/// Registration bodies that are each as costly as the body limit allows, each refused:
/// the 6,000 attributes on one element; 64 KiB of comments between the
/// children, then an unknown element; an EMSE_Id of 64 KiB of character references.
fn costly_bodies() -> Vec<Vec<u8>> {
    let fill = |head: &str, unit: &str, tail: &str| {
        let room = MAX_DOCUMENT_LEN - head.len() - tail.len();
        format!("{head}{}{tail}", unit.repeat(room / unit.len())).into_bytes()
    };
    let attributes: String = (0..6_000).map(|i| format!(" a{i}=\"\"")).collect();
    let root = format!("<registration xmlns=\"{NAMESPACE}\"");
    vec![
        format!("{root}{attributes}><emseId>emse-a</emseId></registration>").into_bytes(),
        fill(
            &format!("{root}>"),
            "<!---->",
            "<emseId>emse-a</emseId><x/></registration>",
        ),
        fill(
            &format!("{root}><emseId>"),
            "&#x3002;",
            "</emseId></registration>",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_expensive_to_decode_do_not_stall_another_emses_key_fetch() {
    let pki = TestPki::new();
    let core = Arc::new(Emks::in_memory(EmksConfig::default()));
    let app = AppIdentity::new("sensor-1@iot.example.com").unwrap();
    core.identities()
        .provision(&emse("emse-b"), &app, &imsi(1))
        .await
        .unwrap();
    let options = EmksServerOptions {
        notifications: false,
        ..EmksServerOptions::default()
    };
    let server = start_emks(core, &pki.dir, options).await.unwrap();
    let url = format!("{}/e2m/v1/sessions", server.base_url());
    push(&pki.hss_at(&server.base_url()), &imsi(1), 1).await;

    // EMSE B: registered, one fetch to open its connection.
    let b = pki.client_at(&server.base_url(), "emse-b");
    let session = b.register(None).await.unwrap();
    let request = KeyRequest {
        session_id: session.session_id,
        ue: UeRef::AppIdentity(app),
        key_id: KeyId::from_u32(1),
    };
    b.fetch_key(&request).await.unwrap();

    // EMSE A, from another loopback address (so that no per-source connection bound is
    // shared with B): each attacker its own connection, sending the costly bodies in turn
    // until B is done.
    let bodies = Arc::new(costly_bodies());
    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicUsize::new(0));
    let a_credentials = pki.dir.emse(&emse("emse-a")).unwrap();
    let ca = pki.dir.ca_certificates().unwrap();
    let mut attackers = Vec::new();
    for _ in 0..ATTACKERS {
        let tls =
            client_config(&a_credentials, &ca, ExpectedServer::AnyOfRole(Role::Emks)).unwrap();
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .no_proxy()
            .http1_only()
            .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap();
        let (bodies, stop, refused, url) = (
            Arc::clone(&bodies),
            Arc::clone(&stop),
            Arc::clone(&refused),
            url.clone(),
        );
        attackers.push(tokio::spawn(async move {
            for body in bodies.iter().cycle() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let response = client
                    .post(&url)
                    .header("content-type", "application/xml")
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                let status = response.status().as_u16();
                let text = response.text().await.unwrap();
                // Decoded and refused (or, past A's own budget, rate limited).
                match status {
                    400 => {
                        assert!(text.contains("<cause>malformed</cause>"), "{text}");
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                    429 => {}
                    other => panic!("costly body answered {other}: {text}"),
                }
            }
        }));
    }

    // B's fetches while the attack runs: none may stall. B goes on until the attack has
    // been answered a few times over (so that the fetches overlap it), within a minute.
    let mut slowest = Duration::ZERO;
    let mut fetches = 0;
    let attack_started = Instant::now();
    while fetches < FETCHES
        || (refused.load(Ordering::Relaxed) < 2 * ATTACKERS
            && attack_started.elapsed() < Duration::from_secs(60))
    {
        let started = Instant::now();
        let fetched = tokio::time::timeout(STALL * 10, b.fetch_key(&request)).await;
        let took = started.elapsed();
        assert!(
            took < STALL,
            "fetch {fetches} took {took:?} while costly bodies were being decoded"
        );
        fetched.unwrap().unwrap();
        slowest = slowest.max(took);
        fetches += 1;
    }
    let refused_during = refused.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for attacker in attackers {
        attacker.await.unwrap();
    }
    // The attack was real: costly bodies were decoded and refused while B fetched.
    assert!(
        refused_during >= 2 * ATTACKERS,
        "only {refused_during} costly bodies were answered in a minute"
    );
    println!(
        "{fetches} fetches during the attack, slowest {slowest:?}; {refused_during} costly bodies refused meanwhile"
    );
    server.shutdown().await;
}
