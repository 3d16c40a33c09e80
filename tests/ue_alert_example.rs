//! The `ue` example reports the EMSE's DTLS alert (issue 9 item 14): against an EMSE that
//! does not share its PSK it prints one line naming `decrypt_error (51)` and what to do,
//! and exits 1 long before its `--timeout`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests"
)]

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use e2m_dtls::StaticPsk;
use e2m_dtls::server::{DtlsServer, ServerConfig, default_handler};
use e2m_kdf::E2mKey;
use support::{example_binary, run_bounded};

/// The EMSE's key; the UE is given another.
const EMSE_KEY: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0";
const UE_KEY: &str = "0707070707070707070707070707070707070707070707070707070707070707";

#[test]
fn the_ue_example_reports_the_alert_on_one_line_and_exits_1_at_once() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = runtime
        .block_on(DtlsServer::bind(
            "127.0.0.1:0".parse().unwrap(),
            StaticPsk(E2mKey::from_hex(EMSE_KEY).unwrap()),
            default_handler(),
            ServerConfig::default(),
        ))
        .unwrap();
    let connect = server.local_addr().to_string();
    let started = Instant::now();
    let out = run_bounded(
        Command::new(example_binary("ue")).args([
            "--connect",
            &connect,
            "--psk-identity",
            "e2m1.ae47bf35.sensor-17@iot.example.com",
            "--psk-hex",
            UE_KEY,
            "--timeout",
            "30",
        ]),
        Duration::from_secs(60),
    );
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains("decrypt_error (51)") && stderr.contains("re-authenticate"),
        "{stderr}"
    );
    // The handshake timeout is 30 s; the alert ends it in one round trip.
    assert!(took < Duration::from_secs(10), "took {took:?}: {stderr}");
    drop(server);
}
