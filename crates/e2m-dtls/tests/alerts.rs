//! The EMSE ends every failed handshake with a fatal alert (issue 9 item 14), so that a UE
//! fails at once instead of at its own deadline: our UE client reports the alert well
//! before its 30 s handshake timeout, and a stock `openssl s_client` prints it.
//!
//! | case | default | `PskFailureAlert::UnknownPskIdentity` |
//! |---|---|---|
//! | no common cipher suite | handshake_failure (40) | same |
//! | wrong PSK | decrypt_error (51) | same |
//! | unknown identity, key id not held (evicted), over-long or non-e2m identity | decrypt_error (51) | unknown_psk_identity (115) |
//! | key server unreachable | internal_error (80) | same |

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking, with a message"
)]

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::{PSK_HEX, Proc, identity, limits, psk, start_with, wait_for};
use e2m_dtls::client::{DtlsClient, UeDtlsConfig};
use e2m_dtls::server::{PskFailureAlert, ServerConfig, ServerEvent, ServerHandle};
use e2m_dtls::{AlertDescription, DtlsError, PskResolver, ResolveError};
use e2m_kdf::E2mKey;
use e2m_keyid::PskIdentity;
use tokio::sync::mpsc;

/// "Fast": far below the UE's 30 s handshake deadline (`limits()`), and above anything a
/// loaded debug build needs for one loopback handshake.
const FAST: Duration = Duration::from_secs(5);

/// Answers every identity with the same result.
enum Answer {
    Key,
    Error(ResolveError),
}

impl PskResolver for Answer {
    async fn resolve(&self, _identity: &PskIdentity) -> Result<E2mKey, ResolveError> {
        match self {
            Answer::Key => Ok(psk()),
            Answer::Error(e) => Err(e.clone()),
        }
    }
}

async fn server(
    answer: Answer,
    mode: PskFailureAlert,
) -> (ServerHandle, mpsc::Receiver<ServerEvent>) {
    start_with(
        answer,
        ServerConfig {
            limits: limits(),
            psk_failure_alert: mode,
            ..ServerConfig::default()
        },
    )
    .await
}

/// An identity of 200 octets: over the 128 of RFC 4279 §5.1 and the e2m codec.
fn over_long_identity() -> Vec<u8> {
    let mut id = b"e2m1.ae47bf35.".to_vec();
    id.resize(200, b'a');
    id
}

/// Our UE against a server with `answer` and `mode`, offering `identity` with `key`:
/// the alert must arrive fast, and the server must say it sent it.
async fn ue_gets(
    answer: Answer,
    mode: PskFailureAlert,
    identity: Vec<u8>,
    key: E2mKey,
    expected: AlertDescription,
) {
    let (server, mut events) = server(answer, mode).await;
    let config = UeDtlsConfig::with_raw_identity(identity, &key, limits()).unwrap();
    let started = Instant::now();
    let result = DtlsClient::connect(server.local_addr(), &config).await;
    let took = started.elapsed();
    match result {
        Err(DtlsError::Alert(alert)) => assert_eq!(alert, expected),
        other => panic!("expected the alert {expected}, got {other:?}"),
    }
    assert!(took < FAST, "the alert took {took:?}");
    let sent = wait_for(&mut events, |e| match e {
        ServerEvent::AlertSent { alert, .. } => Some(*alert),
        _ => None,
    })
    .await;
    assert_eq!(sent, expected);
}

fn e2m_identity(key_id: u32) -> Vec<u8> {
    identity("sensor-17@iot.example.com", key_id)
        .to_string()
        .into_bytes()
}

#[tokio::test]
async fn a_wrong_psk_gets_decrypt_error() {
    for mode in [
        PskFailureAlert::DecryptError,
        PskFailureAlert::UnknownPskIdentity,
    ] {
        ue_gets(
            Answer::Key,
            mode,
            e2m_identity(1),
            E2mKey::from_array([7; 32]),
            AlertDescription::DECRYPT_ERROR,
        )
        .await;
    }
}

#[tokio::test]
async fn no_key_for_the_identity_gets_decrypt_error_by_default() {
    for (answer, id) in [
        (
            Answer::Error(ResolveError::UnknownIdentity),
            e2m_identity(1),
        ),
        (Answer::Error(ResolveError::KeyNotHeld), e2m_identity(2)),
        (Answer::Key, over_long_identity()),
        (Answer::Key, b"Client_identity".to_vec()),
    ] {
        ue_gets(
            answer,
            PskFailureAlert::DecryptError,
            id,
            psk(),
            AlertDescription::DECRYPT_ERROR,
        )
        .await;
    }
}

#[tokio::test]
async fn no_key_for_the_identity_gets_unknown_psk_identity_where_configured() {
    for (answer, id) in [
        (
            Answer::Error(ResolveError::UnknownIdentity),
            e2m_identity(1),
        ),
        (Answer::Error(ResolveError::KeyNotHeld), e2m_identity(2)),
        (Answer::Key, over_long_identity()),
        (Answer::Key, b"Client_identity".to_vec()),
    ] {
        ue_gets(
            answer,
            PskFailureAlert::UnknownPskIdentity,
            id,
            psk(),
            AlertDescription::UNKNOWN_PSK_IDENTITY,
        )
        .await;
    }
}

#[tokio::test]
async fn an_unreachable_key_server_gets_internal_error() {
    ue_gets(
        Answer::Error(ResolveError::Unavailable("EMKS down".into())),
        PskFailureAlert::DecryptError,
        e2m_identity(1),
        psk(),
        AlertDescription::INTERNAL_ERROR,
    )
    .await;
}

/// Our UE offers only the one suite, so the no-common-suite case is driven by hand: a
/// ClientHello offering only TLS_PSK_WITH_AES_128_GCM_SHA256 (0x00A8) gets a
/// HelloVerifyRequest, and with the cookie it gets handshake_failure, without the EMSE
/// starting a peer for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_common_suite_gets_handshake_failure_statelessly() {
    let (server, mut events) = server(Answer::Key, PskFailureAlert::DecryptError).await;
    let addr = server.local_addr();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let exchange = |datagram: &[u8]| {
        socket.send_to(datagram, addr).unwrap();
        let mut buf = [0u8; 512];
        let (n, _) = socket.recv_from(&mut buf).expect("an answer");
        buf[..n].to_vec()
    };
    let hvr = tokio::task::block_in_place(|| exchange(&client_hello(&[], 0)));
    assert_eq!((hvr[0], hvr[13]), (22, 3), "a HelloVerifyRequest: {hvr:?}");
    let cookie = hvr[13 + 12 + 3..].to_vec();
    let alert = tokio::task::block_in_place(|| exchange(&client_hello(&cookie, 1)));
    assert_eq!(alert[0], 21, "an alert record: {alert:?}");
    assert_eq!(&alert[3..5], &[0, 0], "in epoch 0");
    assert_eq!(&alert[13..], &[2, 40], "fatal handshake_failure");
    let sent = wait_for(&mut events, |e| match e {
        ServerEvent::AlertSent { alert, .. } => Some(*alert),
        _ => None,
    })
    .await;
    assert_eq!(sent, AlertDescription::HANDSHAKE_FAILURE);
}

/// A DTLS 1.2 ClientHello offering only TLS_PSK_WITH_AES_128_GCM_SHA256, with the
/// extended master secret extension, as record number `seq`.
fn client_hello(cookie: &[u8], seq: u8) -> Vec<u8> {
    let mut body = vec![0xfe, 0xfd];
    body.extend_from_slice(&[0x42; 32]);
    body.push(0);
    body.push(cookie.len() as u8);
    body.extend_from_slice(cookie);
    body.extend_from_slice(&[0, 2, 0x00, 0xa8]);
    body.extend_from_slice(&[1, 0]);
    body.extend_from_slice(&[0, 4, 0x00, 0x17, 0, 0]);
    let len = (body.len() as u32).to_be_bytes();
    let mut hs = vec![
        1, len[1], len[2], len[3], 0, seq, 0, 0, 0, len[1], len[2], len[3],
    ];
    hs.extend_from_slice(&body);
    let mut record = vec![22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, seq];
    record.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    record.extend_from_slice(&hs);
    record
}

// ---- openssl s_client ---------------------------------------------------------------------

/// `openssl s_client` against a server with `answer` and `mode`: it must print the
/// alert's number, fast.
async fn s_client_gets(
    answer: Answer,
    mode: PskFailureAlert,
    psk_identity: &str,
    psk_hex: &str,
    cipher: &str,
    expected: AlertDescription,
) {
    let (server, _events) = server(answer, mode).await;
    let connect = server.local_addr().to_string();
    let started = Instant::now();
    let client = Proc::spawn(&[
        "s_client",
        "-dtls1_2",
        "-connect",
        &connect,
        "-cipher",
        cipher,
        "-psk",
        psk_hex,
        "-psk_identity",
        psk_identity,
        "-ign_eof",
    ]);
    let mut seen = Vec::new();
    let needle = format!("alert number {}", expected.0);
    let got = tokio::task::block_in_place(|| client.wait_for(&needle, &mut seen));
    let took = started.elapsed();
    assert!(
        got,
        "s_client did not report {expected} ({cipher}, {psk_identity}):\n{}",
        seen.join("\n")
    );
    assert!(took < FAST, "s_client saw the alert after {took:?}");
}

const OUR_SUITE: &str = "PSK-AES128-CCM8";

fn identity_text(key_id: u32) -> String {
    identity("sensor-17@iot.example.com", key_id).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_s_client_sees_handshake_failure_without_a_common_suite() {
    s_client_gets(
        Answer::Key,
        PskFailureAlert::DecryptError,
        &identity_text(1),
        PSK_HEX,
        "PSK-AES128-GCM-SHA256",
        AlertDescription::HANDSHAKE_FAILURE,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_s_client_sees_decrypt_error_for_a_wrong_psk() {
    s_client_gets(
        Answer::Key,
        PskFailureAlert::DecryptError,
        &identity_text(1),
        &"07".repeat(32),
        OUR_SUITE,
        AlertDescription::DECRYPT_ERROR,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_s_client_sees_decrypt_error_for_an_unknown_or_evicted_key_id() {
    for error in [ResolveError::UnknownIdentity, ResolveError::KeyNotHeld] {
        s_client_gets(
            Answer::Error(error),
            PskFailureAlert::DecryptError,
            &identity_text(1),
            PSK_HEX,
            OUR_SUITE,
            AlertDescription::DECRYPT_ERROR,
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_s_client_sees_the_configured_alert_for_an_over_long_identity() {
    let over_long = String::from_utf8(over_long_identity()).unwrap();
    for (mode, expected) in [
        (
            PskFailureAlert::DecryptError,
            AlertDescription::DECRYPT_ERROR,
        ),
        (
            PskFailureAlert::UnknownPskIdentity,
            AlertDescription::UNKNOWN_PSK_IDENTITY,
        ),
    ] {
        s_client_gets(Answer::Key, mode, &over_long, PSK_HEX, OUR_SUITE, expected).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_s_client_sees_unknown_psk_identity_where_configured() {
    s_client_gets(
        Answer::Error(ResolveError::KeyNotHeld),
        PskFailureAlert::UnknownPskIdentity,
        &identity_text(1),
        PSK_HEX,
        OUR_SUITE,
        AlertDescription::UNKNOWN_PSK_IDENTITY,
    )
    .await;
}
