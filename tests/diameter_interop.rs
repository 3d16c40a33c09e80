//! Interop of the push over Diameter with a stack no one here wrote, python-diameter 0.9.0
//! (PyPI), both ways, on loopback (issue 17):
//!
//! - python-diameter as the **HSS** (`tests/diameter/hss_peer.py`) pushing to our EMKS
//!   (`e2m_diameter_push::net`, in-memory core): CER/CEA, pushes each sent again with the T
//!   flag (same End-to-End id) answered 2001 with the expiry, both the same, each key held
//!   once with the octets pushed; its DWRs answered with DWA while idle; DPR/DPA at the end.
//! - python-diameter as the **EMKS** (`tests/diameter/emks_peer.py`) receiving our HSS's
//!   pushes: it reads every field as we meant it, answers 2001; a retransmission gets its
//!   first answer ("duplicate"); an unknown subscriber is refused for good
//!   (Experimental-Result 32473/5001); DIAMETER_TOO_BUSY is retried until 2001; our
//!   DWRs answered with DWA while idle; DPR/DPA when our HSS leaves.
//!
//! Together: each of our nodes sends and answers CER/CEA and DPR/DPA, and the watchdog runs
//! both ways (a message received restarts the RFC 3539 timer, so on an idle connection the
//! side with the shorter Tw sends the DWRs: each test sets who).
//!
//! Without python-diameter the tests say so and pass, except under `CI`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests"
)]

#[path = "support/diameter.rs"]
mod diameter;

use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use diameter::{Peer, counting_core, field, free_port, kit, local, tools};
use e2m_diameter_push::net::{
    EmksDiameterConfig, HssDiameter, HssDiameterConfig, HssPeer, PushError, start_emks_diameter,
};
use e2m_diameter_push::{PushProfile, Refusal, Routing};
use e2m_keystore::IntKeyStore;
use e2m_msg::{E2mIntKey, Imsi, IntermediateKeyPush, KeyId, KeyIdSource, Timestamp};
use sha2::{Digest, Sha256};

/// `hss_peer.py --generate N`'s i-th push: IMSI 00101000000000i, key id i,
/// key SHA-256("e2m-test-i") (computed here independently of the script).
fn generated_key(i: u64) -> [u8; 32] {
    Sha256::digest(format!("e2m-test-{i}").as_bytes()).into()
}

#[test]
fn python_diameter_hss_pushes_to_our_emks() {
    if !tools(&["diameter.node"], &["python3"]) {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let port = free_port();
    let (core, calls, stored) = counting_core();
    let emks = runtime.block_on(async {
        let mut config = EmksDiameterConfig::new(local(port), "emks.emks.test", "emks.test");
        config.hss = vec!["hss.hss.test".into()];
        // Longer than the peer's: the idle connection's DWRs come from python-diameter
        // (a message received restarts the watchdog timer, so one side sends them), and
        // our EMKS answers them. The other test has our HSS send them.
        config.watchdog_interval = Duration::from_secs(30);
        start_emks_diameter(core.clone(), config, None, Default::default())
            .await
            .unwrap()
    });
    let mut hss = Peer::spawn(
        Command::new("python3")
            .arg(kit().join("hss_peer.py"))
            .args(["--peer-host", "emks.emks.test", "--peer-realm", "emks.test"])
            .args([
                "--peer-port",
                &port.to_string(),
                "--dest-realm",
                "emks.test",
            ])
            .args([
                "--generate",
                "3",
                "--retransmit",
                "--tw",
                "6",
                "--hold",
                "16",
            ]),
    );
    let status = hss
        .wait(Duration::from_secs(90))
        .expect("hss_peer.py ended");
    let answers = hss.events("answer");
    assert!(
        status.success(),
        "hss_peer.py: {:#?}",
        hss.lines.lock().unwrap()
    );
    assert_eq!(answers.len(), 6, "{answers:#?}");
    for pair in answers.chunks(2) {
        for a in pair {
            assert_eq!(field(a, "result_code").as_deref(), Some("2001"), "{a}");
            assert_eq!(field(a, "e_bit").as_deref(), Some("false"), "{a}");
            assert!(field(a, "key_expiry").is_some(), "{a}");
            assert_eq!(field(a, "origin_host").as_deref(), Some("emks.emks.test"));
        }
        // The retransmission: T flag, same End-to-End id, the same answer.
        assert_eq!(field(&pair[1], "retransmit").as_deref(), Some("true"));
        assert_eq!(field(&pair[0], "end_to_end"), field(&pair[1], "end_to_end"));
        assert_eq!(field(&pair[0], "key_expiry"), field(&pair[1], "key_expiry"));
    }
    // Every key held once, with the octets pushed; the core decided each push once.
    runtime.block_on(async {
        let now = Timestamp::now_from_system_clock();
        for i in 1..=3u64 {
            let imsi = Imsi::new(&format!("00101{i:010}")).unwrap();
            let held = core
                .keys()
                .get(&imsi, KeyId::from_u32(i as u32), now)
                .await
                .unwrap()
                .expect("held");
            assert!(
                held.key == E2mIntKey::from_array(generated_key(i)),
                "key {i}"
            );
        }
    });
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "retransmissions not decided again"
    );
    assert!(stored.lock().unwrap().values().all(|n| *n == 1));
    // CER/CEA, then the peer's watchdogs answered while idle (its Tw 6 s, 16 s held), then
    // DPR/DPA.
    let base = hss.events("base");
    let saw = |dir: &str, command: &str| {
        base.iter().any(|l| {
            field(l, "dir").as_deref() == Some(dir)
                && field(l, "command").as_deref() == Some(command)
        })
    };
    for (dir, command) in [
        ("out", "CER"),
        ("in", "CEA"),
        ("out", "DWR"),
        ("in", "DWA"),
        ("out", "DPR"),
        ("in", "DPA"),
    ] {
        assert!(saw(dir, command), "no {command} {dir}: {base:#?}");
    }
    runtime.block_on(emks.shutdown(Duration::from_secs(2)));
}

fn push(i: u64, created_ms: u64) -> IntermediateKeyPush {
    IntermediateKeyPush {
        imsi: Imsi::new(&format!("00101{i:010}")).unwrap(),
        key_id: if i == 3 {
            KeyIdSource::ShortHash
        } else {
            KeyIdSource::RandLsb32(KeyId::from_u32(0xae47_bf00 + i as u32))
        },
        int_key: E2mIntKey::from_array(generated_key(i)),
        created: Timestamp::from_unix_millis(created_ms),
    }
}

#[test]
fn our_hss_pushes_to_a_python_diameter_emks() {
    if !tools(&["diameter.node"], &["python3"]) {
        return;
    }
    let port = free_port();
    let mut emks = Peer::spawn(
        Command::new("python3")
            .arg(kit().join("emks_peer.py"))
            .args([
                "--port",
                &port.to_string(),
                "--peer",
                "hss.hss.test:hss.test",
            ])
            // Its watchdog is longer than our HSS's: our HSS sends the idle connection's
            // DWRs, the peer answers them.
            .args(["--tw", "30", "--busy-first", "1"])
            .args(["--refuse", "001010000000004=user-unknown"]),
    );
    assert!(
        emks.wait_for("listening", Duration::from_secs(20)),
        "emks_peer.py did not start"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let created = Timestamp::now_from_system_clock().as_unix_millis() / 1000 * 1000 + 17;
    runtime.block_on(async {
        let mut config = HssDiameterConfig::new(
            "hss.hss.test",
            "hss.test",
            "emks.test",
            vec![HssPeer {
                host: "emks.emks.test".into(),
                addr: local(port),
                tls: false,
            }],
        );
        config.watchdog_interval = Duration::from_secs(6);
        config.retry.first_backoff = Duration::from_millis(100);
        config.retry.deadline = Duration::from_secs(30);
        let hss = HssDiameter::start(config, None).await.unwrap();
        assert!(hss.wait_ready(Duration::from_secs(15)).await, "no CEA");
        // Push 1 meets the peer's --busy-first 1 (DIAMETER_TOO_BUSY) and is retried.
        let first = hss.push(&push(1, created)).await.unwrap();
        assert_eq!(first.attempts, 2, "3004, then 2001");
        for i in 2..=3 {
            let ack = hss.push(&push(i, created)).await.unwrap();
            assert_eq!(ack.attempts, 1);
            assert!(ack.expiry.is_some());
        }
        // An unknown subscriber: a final refusal, not retried.
        assert_eq!(
            hss.push(&push(4, created)).await.unwrap_err(),
            PushError::Refused(Refusal::UserUnknown)
        );
        // A retransmission of an answered push (T flag, same End-to-End id).
        let p = PushProfile::PROVISIONAL;
        let routing = Routing {
            session_id: "hss.hss.test;1;again;e2m",
            origin_host: "hss.hss.test",
            origin_realm: "hss.test",
            destination_realm: "emks.test",
            destination_host: None,
        };
        let octets = p
            .encode_request(&routing, &push(5, created), 0x0e2e_0005)
            .unwrap();
        let mut again = octets.clone();
        again[4] |= 0x10;
        let a1 = hss.endpoint().request(octets).await.unwrap();
        let a2 = hss.endpoint().request(again).await.unwrap();
        assert_eq!(a1[20..], a2[20..], "the duplicate got the first answer");
        // Idle past two watchdog intervals: DWR/DWA both ways keep the connection.
        tokio::time::sleep(Duration::from_secs(15)).await;
        assert!(
            hss.wait_ready(Duration::from_millis(10)).await,
            "watchdog closed the connection"
        );
        hss.shutdown(Duration::from_secs(5)).await;
    });
    emks.terminate();
    assert!(
        emks.wait(Duration::from_secs(20)).is_some(),
        "emks_peer.py did not stop"
    );
    let pushes = emks.events("push");
    let by_outcome = |o: &str| {
        pushes
            .iter()
            .filter(|l| field(l, "outcome").as_deref() == Some(o))
            .count()
    };
    assert_eq!(by_outcome("stored"), 4, "{pushes:#?}");
    assert_eq!(by_outcome("duplicate"), 1, "{pushes:#?}");
    assert_eq!(
        by_outcome("refused"),
        2,
        "busy once, unknown subscriber once: {pushes:#?}"
    );
    // The peer read every field as we meant it.
    let stored: Vec<&String> = pushes
        .iter()
        .filter(|l| field(l, "outcome").as_deref() == Some("stored"))
        .collect();
    for line in stored {
        let imsi = field(line, "imsi").unwrap();
        let i: u64 = imsi[5..].parse().unwrap();
        assert_eq!(
            field(line, "int_key").unwrap(),
            hex::encode(generated_key(i))
        );
        assert_eq!(field(line, "origin_host").as_deref(), Some("hss.hss.test"));
        let created_text = field(line, "created").unwrap();
        assert!(
            created_text.ends_with(".017Z"),
            "milliseconds kept: {created_text}"
        );
        if i == 3 {
            assert_eq!(field(line, "key_id_scheme").as_deref(), Some("SHORT_HASH"));
            assert_eq!(field(line, "key_id").as_deref(), Some("null"));
        } else {
            assert_eq!(
                field(line, "key_id").unwrap(),
                format!("{:08x}", 0xae47_bf00 + i)
            );
        }
    }
    // The retry of push 1 carried the T flag.
    let retried = pushes
        .iter()
        .filter(|l| field(l, "imsi").as_deref() == Some("001010000000001"))
        .collect::<Vec<_>>();
    assert_eq!(field(retried[1], "retransmit").as_deref(), Some("true"));
    let base = emks.events("base");
    let saw = |dir: &str, command: &str| {
        base.iter().any(|l| {
            field(l, "dir").as_deref() == Some(dir)
                && field(l, "command").as_deref() == Some(command)
        })
    };
    for (dir, command) in [
        ("in", "CER"),
        ("out", "CEA"),
        ("in", "DWR"),
        ("out", "DWA"),
        ("in", "DPR"),
        ("out", "DPA"),
    ] {
        assert!(saw(dir, command), "no {command} {dir}: {base:#?}");
    }
}
