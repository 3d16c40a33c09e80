//! freeDiameter (Debian `freediameterd` 1.2.1, GnuTLS) as a relay agent between our HSS
//! and our EMKS (`e2m_diameter_push::net`), over TCP and over TLS, on loopback (issue 17):
//!
//! - capabilities exchange with the relay (it advertises the Relay application; our peers
//!   accept it), our EMKS trusting it as an agent and authorizing the HSS it forwards;
//! - routing by Destination-Realm (the HSS names the EMKS realm, the relay finds the EMKS by
//!   its CEA's Origin-Realm);
//! - the watchdog: idle for more than two intervals, nobody drops the connection;
//! - a **restart of the relay mid-run** (SIGTERM: DPR REBOOTING to both sides; its
//!   ConnectPeer to the EMKS takes a few seconds to come back, meanwhile it answers 3002):
//!   every push is acknowledged in the end, every acknowledged push is held by the EMKS with
//!   the octets pushed, and none is stored twice.
//!
//! Over TLS every certificate comes from one generated PKI (the relay's too); the relay's
//! certificate names its Diameter identity, ours name ours, and each side checks the other's.
//! Without freeDiameter the tests say so and pass, except under `CI`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests"
)]

#[path = "support/diameter.rs"]
mod diameter;
mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use diameter::{Relay, counting_core, free_port, local, tools};
use e2m_diameter_push::net::e2m_diameter_net::PeerEvent;
use e2m_diameter_push::net::{
    DiameterTls, EmksDiameterConfig, HssDiameter, HssDiameterConfig, HssPeer, start_emks_diameter,
};
use e2m_https::pki::{GeneratedPki, PkiSpec};
use e2m_keystore::IntKeyStore;
use e2m_msg::{E2mIntKey, Imsi, IntermediateKeyPush, KeyId, KeyIdSource, Timestamp};

const EMKS: &str = "emks.emks.test";
const HSS: &str = "hss.hss.test";
const RELAY: &str = "relay.relay.test";
const PUSHES: u64 = 30;

fn push(i: u64) -> IntermediateKeyPush {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&i.to_be_bytes());
    key[8..].copy_from_slice(&[0xa5; 24]);
    IntermediateKeyPush {
        imsi: Imsi::new(&format!("00101{i:010}")).unwrap(),
        key_id: KeyIdSource::RandLsb32(KeyId::from_u32(i as u32 + 1)),
        int_key: E2mIntKey::from_array(key),
        created: Timestamp::now_from_system_clock(),
    }
}

fn through_the_relay(tls: bool) {
    if !tools(&[], &["freeDiameterd", "python3", "openssl"]) {
        return;
    }
    if !std::path::Path::new("/usr/lib/freeDiameter/acl_wl.fdx").exists() {
        assert!(
            !diameter::under_ci(),
            "freediameter-extensions missing under CI"
        );
        eprintln!(
            "SKIPPED: freediameter-extensions (acl_wl.fdx) is not installed; .ci/test installs it"
        );
        return;
    }
    let dir = support::temp_dir(if tls { "fd-relay-tls" } else { "fd-relay-tcp" });
    let certs = dir.join("pki");
    let material = tls.then(|| {
        let mut spec = PkiSpec::new(Vec::new()).unwrap();
        spec.emks_host = EMKS.into();
        spec.hss_host = HSS.into();
        spec.diameter_nodes = vec![RELAY.into()];
        let pki = GeneratedPki::generate(&spec)
            .unwrap()
            .write_to(&certs)
            .unwrap();
        let ca = pki.ca_certificates().unwrap();
        (
            DiameterTls {
                credentials: pki.emks().unwrap(),
                ca: ca.clone(),
            },
            DiameterTls {
                credentials: pki.hss().unwrap(),
                ca,
            },
        )
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (emks_port, relay_port, relay_sec_port) = (free_port(), free_port(), free_port());
    let (core, calls, stored) = counting_core();
    let emks = runtime.block_on(async {
        let mut config = EmksDiameterConfig::new(local(emks_port), EMKS, "emks.test");
        config.hss = vec![HSS.into()];
        config.relays = vec![RELAY.into()];
        config.watchdog_interval = Duration::from_secs(6);
        start_emks_diameter(
            core.clone(),
            config,
            material.as_ref().map(|m| &m.0),
            Default::default(),
        )
        .await
        .unwrap()
    });
    let mut args: Vec<String> = vec![
        "--mode".into(),
        if tls { "tls" } else { "tcp" }.into(),
        "--identity".into(),
        RELAY.into(),
        "--port".into(),
        relay_port.to_string(),
        "--sec-port".into(),
        relay_sec_port.to_string(),
        "--peer".into(),
        format!(
            "{EMKS}=127.0.0.1:{emks_port}{}",
            if tls { ",tls" } else { "" }
        ),
        "--allow".into(),
        "*.hss.test".into(),
        "--tw".into(),
        "6".into(),
    ];
    if tls {
        args.extend(["--certs".into(), certs.display().to_string()]);
    }
    let relay = Relay::start(&dir.join("relay"), &args);

    let hss = runtime.block_on(async {
        let mut config = HssDiameterConfig::new(
            HSS,
            "hss.test",
            "emks.test",
            vec![HssPeer {
                host: RELAY.into(),
                addr: local(if tls { relay_sec_port } else { relay_port }),
                tls,
            }],
        );
        config.watchdog_interval = Duration::from_secs(6);
        config.request_timeout = Duration::from_secs(10);
        config.retry.first_backoff = Duration::from_millis(250);
        config.retry.max_backoff = Duration::from_secs(2);
        config.retry.deadline = Duration::from_secs(60);
        let hss = Arc::new(
            HssDiameter::start(config, material.as_ref().map(|m| &m.1))
                .await
                .unwrap(),
        );
        assert!(
            hss.wait_ready(Duration::from_secs(20)).await,
            "no CEA from the relay"
        );
        let peer = hss.peers()[0];
        let info = hss
            .endpoint()
            .with_node(move |node, _| node.peer_info(peer).cloned())
            .await
            .flatten()
            .unwrap();
        assert_eq!(info.origin_host, RELAY);
        assert!(info.relay, "freeDiameter advertises the Relay application");
        hss
    });

    // Half the pushes, idle past two watchdog intervals, then the rest with a restart of
    // the relay in the middle.
    let mut events = hss.endpoint().peer_events();
    let acked = runtime.block_on(async {
        let mut acked = Vec::new();
        for i in 0..PUSHES / 2 {
            let ack = hss.push(&push(i)).await.unwrap();
            assert!(ack.expiry.is_some());
            acked.push(i);
        }
        tokio::time::sleep(Duration::from_secs(14)).await;
        let mut downs = 0;
        while let Ok(event) = events.try_recv() {
            downs += usize::from(matches!(event, PeerEvent::Down { .. }));
        }
        assert_eq!(downs, 0, "the watchdog kept the idle connection");
        acked
    });
    let restarted = Instant::now();
    let pushing = {
        let hss = hss.clone();
        runtime.spawn(async move {
            let mut results = Vec::new();
            for i in PUSHES / 2..PUSHES {
                let started = Instant::now();
                let result = hss.push(&push(i)).await;
                results.push((i, result, started.elapsed()));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            results
        })
    };
    std::thread::sleep(Duration::from_millis(700));
    relay.restart();
    let results = runtime.block_on(pushing).unwrap();
    let mut acked = acked;
    let mut longest = Duration::ZERO;
    for (i, result, took) in results {
        let ack = result.unwrap_or_else(|e| panic!("push {i} across the restart: {e}"));
        if ack.attempts > 1 || took > Duration::from_secs(1) {
            println!(
                "push {i}: {} sending(s) by the client, {took:?}",
                ack.attempts
            );
        }
        longest = longest.max(took);
        acked.push(i);
    }
    // The restart dropped the connection under load, and a push waited across it (parked
    // by the node and resent with the T flag once the relay was back, or answered 3002 by
    // the restarted relay and sent again by the client).
    let mut downs = 0;
    while let Ok(event) = events.try_recv() {
        downs += usize::from(matches!(event, PeerEvent::Down { .. }));
    }
    assert!(downs > 0, "the relay's restart did not drop the connection");
    assert!(
        longest > Duration::from_secs(1),
        "no push waited across the restart ({:?} ago): the test checked little",
        restarted.elapsed()
    );
    // Every acknowledged push is held with the octets pushed; none was stored twice.
    runtime.block_on(async {
        let now = Timestamp::now_from_system_clock();
        for &i in &acked {
            let p = push(i);
            let held = core
                .keys()
                .get(&p.imsi, KeyId::from_u32(i as u32 + 1), now)
                .await
                .unwrap();
            assert!(
                held.is_some_and(|h| h.key == p.int_key),
                "push {i} acknowledged, not held"
            );
        }
    });
    assert_eq!(acked.len() as u64, PUSHES);
    let stored = stored.lock().unwrap();
    assert_eq!(stored.len() as u64, PUSHES);
    assert!(stored.values().all(|n| *n == 1), "stored twice: {stored:?}");
    assert!(calls.load(Ordering::SeqCst) as u64 >= PUSHES);
    let log = relay.log();
    assert!(
        log.contains(&format!("'STATE_OPEN' '{EMKS}'")) || log.contains(EMKS),
        "relay log: {log}"
    );
    runtime.block_on(async {
        hss.shutdown(Duration::from_secs(3)).await;
        emks.shutdown(Duration::from_secs(3)).await;
    });
    drop(relay);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn freediameter_relays_pushes_over_tcp_and_survives_a_restart() {
    through_the_relay(false);
}

#[test]
fn freediameter_relays_pushes_over_tls_and_survives_a_restart() {
    through_the_relay(true);
}
