//! `ue --akma` end to end, against inputs and keys it did not compute: AKMA set 1 of
//! `crates/e2m-keyid/tests/data/akma.txt` (e2m-kdf's independent Python reference, from TS
//! 35.208 set 1) and AUTN composed from that file and the published MAC-A of TS 35.208 set 1
//! (`crates/e2m-aka/tests/data/milenage_ts35208.txt`). The UE gets K, OPc, RAND, AUTN,
//! SUPI, serving network name, routing indicator, home network and AF FQDN; the AF (ours,
//! and a stock `openssl s_server`) gets only the file's A-KID and K_AF. A handshake can
//! only complete if every step — MILENAGE, K_AUSF, K_AKMA, A-TID, A-KID, K_AF, the
//! TS 24.109 K.3.2 identity — agrees with the reference.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests"
)]

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use e2m_dtls::akma::AkmaResolver;
use e2m_dtls::server::{DtlsServer, ServerConfig, ServerEvent, default_handler};
use e2m_dtls::{NoPsk, PeerIdentity, ResolveError};
use e2m_kdf::Kaf;
use e2m_keyid::akma::AKid;
use support::{example_binary, kill, run_bounded};

/// `name → value` of one `[section]` of a `name = value` data file.
fn section(path: &str, header: &str) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap();
    let body = text.split(header).nth(1).expect(header);
    body.lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with('[') && !l.starts_with("set = "))
        .filter_map(|l| l.split_once(" = "))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// AKMA set 1 and AUTN = SQN ⊕ AK ‖ AMF ‖ MAC-A (TS 33.102 §6.3.2) from the published data.
fn set_1() -> (BTreeMap<String, String>, String) {
    let akma = section(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/crates/e2m-keyid/tests/data/akma.txt"
        ),
        "[akma set 1]",
    );
    let milenage = section(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/crates/e2m-aka/tests/data/milenage_ts35208.txt"
        ),
        "set = 1\n",
    );
    assert_eq!(akma["rand"], milenage["rand"], "the same TS 35.208 set");
    let autn = format!("{}{}{}", akma["sqn_xor_ak"], akma["amf"], milenage["f1"]);
    (akma, autn)
}

fn ue_args<'a>(v: &'a BTreeMap<String, String>, autn: &'a str, connect: &'a str) -> Vec<&'a str> {
    vec![
        "--akma",
        "--connect",
        connect,
        "--k",
        &v["k"],
        "--opc",
        &v["opc"],
        "--rand",
        &v["rand"],
        "--autn",
        autn,
        "--supi",
        &v["supi"],
        "--serving-network-name",
        &v["serving_network_name"],
        "--routing-indicator",
        &v["routing_indicator"],
        "--home-network",
        &v["home_realm"],
        // AF_ID af_id_0 = af.example.com;ua=010001c0a8 (the default Ua* id).
        "--af-fqdn",
        "af.example.com",
        "--timeout",
        "20",
    ]
}

/// The AAnF's answer for the file's A-KID only.
struct OneContext(AKid, Kaf);

impl AkmaResolver for OneContext {
    async fn resolve(&self, a_kid: &AKid) -> Result<Kaf, ResolveError> {
        if *a_kid == self.0 {
            Ok(self.1.copy_secret())
        } else {
            Err(ResolveError::UnknownIdentity)
        }
    }
}

#[test]
fn ue_akma_reaches_an_af_that_holds_only_the_reference_a_kid_and_kaf() {
    let (v, autn) = set_1();
    let a_kid = AKid::parse(&v["a_kid"]).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mut server = runtime
        .block_on(DtlsServer::bind_with_akma(
            "127.0.0.1:0".parse().unwrap(),
            NoPsk,
            OneContext(a_kid, Kaf::from_hex(&v["kaf_0"]).unwrap()),
            default_handler(),
            ServerConfig::default(),
        ))
        .unwrap();
    let mut events = server.take_events().unwrap();
    let connect = server.local_addr().to_string();
    let out = run_bounded(
        Command::new(example_binary("ue")).args(ue_args(&v, &autn, &connect)),
        Duration::from_secs(60),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    for line in [
        format!("A-KID {}", v["a_kid"]),
        format!("psk_identity \"3GPP-AKMA{}\"", v["a_kid"]),
        "the AF's psk_identity_hint is \"3GPP-AKMA\"".to_owned(),
        format!(
            "CoAP 2.05 \"hello A-KID {}, you asked for /hello\"",
            v["a_kid"]
        ),
    ] {
        assert!(stdout.contains(&line), "{line:?} missing from:\n{stdout}");
    }
    // Never key bytes: none of the secrets of the chain appears.
    for secret in ["ck", "ik", "res", "kausf", "xres_star", "kakma", "kaf_0"] {
        assert!(!stdout.contains(&v[secret]), "{secret} printed");
    }
    let connected = runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                match events.recv().await {
                    Some(ServerEvent::Connected { identity, .. }) => return identity,
                    Some(_) => {}
                    None => panic!("server stopped"),
                }
            }
        })
        .await
        .unwrap()
    });
    assert_eq!(connected, PeerIdentity::Akma(a_kid));
}

#[test]
fn ue_akma_handshakes_with_openssl_s_server_holding_the_reference_kaf() {
    let (v, autn) = set_1();
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let accept = format!("127.0.0.1:{port}");
    let identity = format!("3GPP-AKMA{}", v["a_kid"]);
    let mut server = Command::new("openssl")
        .args([
            "s_server",
            "-dtls1_2",
            "-accept",
            &accept,
            "-nocert",
            "-psk",
            &v["kaf_0"],
            "-psk_hint",
            "3GPP-AKMA",
            "-psk_identity",
            &identity,
            "-cipher",
            "PSK-AES128-CCM8",
            "-debug",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl (CI installs it: apt-get install -y openssl)");
    let (tx, lines) = std_mpsc::channel();
    let stdout = server.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let wait_line = |needle: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    };
    assert!(wait_line("ACCEPT"), "s_server did not start");
    // s_server speaks no CoAP: the UE's GET gets no answer, so it stops after its timeout.
    let mut args = ue_args(&v, &autn, &accept);
    let at = args.iter().position(|a| *a == "--timeout").unwrap();
    args[at + 1] = "3";
    let out = run_bounded(
        Command::new(example_binary("ue")).args(&args),
        Duration::from_secs(60),
    );
    let found = wait_line("PSK client identity found");
    kill(&mut server);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        found,
        "s_server did not get the TS 24.109 K.3.2 identity:\n{stdout}"
    );
    assert!(stdout.contains("handshake complete"), "{stdout}");
    assert!(
        stdout.contains("the AF's psk_identity_hint is \"3GPP-AKMA\""),
        "{stdout}"
    );
}

#[test]
fn ue_akma_refuses_a_forged_autn_and_incomplete_flags() {
    let (v, autn) = set_1();
    // The last octet of MAC-A flipped: the USIM refuses before any key is derived.
    let mut forged = autn.clone();
    let last = forged.split_off(30);
    forged.push_str(if last == "00" { "01" } else { "00" });
    let out = run_bounded(
        Command::new(example_binary("ue")).args(ue_args(&v, &forged, "127.0.0.1:9")),
        Duration::from_secs(30),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("USIM refused the challenge"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    // --akma without --supi; --akma with an e2m flag: usage errors.
    let mut args = ue_args(&v, &autn, "127.0.0.1:9");
    let at = args.iter().position(|a| *a == "--supi").unwrap();
    args.drain(at..at + 2);
    let out = run_bounded(
        Command::new(example_binary("ue")).args(&args),
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let mut args = ue_args(&v, &autn, "127.0.0.1:9");
    args.extend(["--emse-id", "emse-a.example.com"]);
    let out = run_bounded(
        Command::new(example_binary("ue")).args(&args),
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}
