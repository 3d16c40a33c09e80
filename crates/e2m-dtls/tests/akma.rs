//! The AKMA Ua* profile for DTLS 1.2 PSK (TS 24.109 K.3.2) beside the e2m one: our UE and
//! our AF with each other, with a stock `openssl s_client` / `s_server` speaking the
//! Annex K identity and hint, both profiles on one server, and the AF's key source (fetch
//! budget, memory of "no key" answers).
//!
//! The UE's key material is AKMA set 1 of `crates/e2m-keyid/tests/data/akma.txt` (written
//! by e2m-kdf's Python reference from TS 35.208 set 1): its A-KID and its K_AF for
//! AF_ID = `af.example.com` ‖ (0x01,0x00,0x01,0xC0,0xA8), the Ua* identifier of
//! TLS_PSK_WITH_AES_128_CCM_8 (TS 33.220 H.3). Every wait is bounded; every address is
//! loopback. The OpenSSL tests fail (they do not skip) when `openssl` is missing, because CI
//! installs it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking, with a message"
)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{Proc, WAIT, free_udp_port, get, identity, limits, localhost, psk, wait_for};
use e2m_coap::Code as CoapCode;
use e2m_dtls::akma::{AkmaIdentityForm, AkmaResolver, StaticKaf};
use e2m_dtls::akma_source::{AfKey, AkmaKeyFetcher, AkmaKeySource};
use e2m_dtls::client::{DtlsClient, UeDtlsConfig};
use e2m_dtls::server::{DtlsServer, ServerConfig, ServerEvent, ServerHandle, default_handler};
use e2m_dtls::{
    AlertDescription, DtlsError, NoPsk, PeerIdentity, PskResolver, ResolveError, StaticPsk,
};
use e2m_kdf::Kaf;
use e2m_keyid::akma::AKid;
use e2m_oscore::e2m::FetchBudgetConfig;
use tokio::sync::mpsc;

/// AKMA set 1: `a_kid`.
const A_KID: &str = "rid0.atid2f3be0cbfe30b8ad73d8e335f76e5e40d0f960d1eb92fb3b51ce56ebcf5e2eec@5gc.mnc093.mcc208.3gppnetwork.org";
/// AKMA set 1: `kaf_0`, K_AF for `af.example.com;ua=010001c0a8`.
const KAF_HEX: &str = "da565072dcd984d4595185ccf43d2583c1ee1e494f6ef3a7018f53369c01e427";

fn a_kid() -> AKid {
    AKid::parse(A_KID).unwrap()
}

fn kaf() -> Kaf {
    Kaf::from_hex(KAF_HEX).unwrap()
}

/// TS 24.109 K.3.2 e): the prefix "3GPP-AKMA" and the A-KID, spelled here from the text.
fn annex_k_identity() -> String {
    format!("3GPP-AKMA{A_KID}")
}

/// An AF serving AKMA (and e2m through `e2m`) on 127.0.0.1, with its event stream.
async fn start_af<R: PskResolver, A: AkmaResolver>(
    e2m: R,
    akma: A,
    config: ServerConfig,
) -> (ServerHandle, mpsc::Receiver<ServerEvent>) {
    let mut server = DtlsServer::bind_with_akma(localhost(), e2m, akma, default_handler(), config)
        .await
        .expect("bind");
    let events = server.take_events().expect("events");
    (server, events)
}

fn config() -> ServerConfig {
    ServerConfig {
        limits: limits(),
        ..ServerConfig::default()
    }
}

/// The AAnF of the tests: K_AF for set 1's A-KID, nothing for any other; counts requests.
struct Aanf {
    calls: AtomicUsize,
}

impl AkmaKeyFetcher for Aanf {
    async fn fetch_kaf(&self, asked: &AKid) -> Result<AfKey, ResolveError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if *asked == a_kid() {
            Ok(AfKey::new(kaf(), u64::MAX))
        } else {
            Err(ResolveError::UnknownIdentity)
        }
    }
}

#[tokio::test]
async fn the_ue_and_the_af_handshake_with_the_annex_k_identity_and_hint() {
    let (server, mut events) = start_af(NoPsk, StaticKaf(kaf()), config()).await;
    for form in [AkmaIdentityForm::Prefixed, AkmaIdentityForm::Dotted] {
        let config = UeDtlsConfig::akma_in_form(&a_kid(), &kaf(), form, limits()).expect("config");
        let mut ue = DtlsClient::connect(server.local_addr(), &config)
            .await
            .expect("handshake");
        assert_eq!(
            ue.psk_identity_hint(),
            Some(&b"3GPP-AKMA"[..]),
            "K.3.2 d): the AF's ServerKeyExchange carries the hint"
        );
        let connected = wait_for(&mut events, |e| match e {
            ServerEvent::Connected { identity, .. } => Some(identity.clone()),
            _ => None,
        })
        .await;
        assert_eq!(connected, PeerIdentity::Akma(a_kid()), "{form:?}");
        let answer = ue
            .request(&get("/temperature", 3, b"ak"), WAIT)
            .await
            .expect("CoAP answer");
        assert_eq!(answer.code, CoapCode::CONTENT);
        let text = String::from_utf8(answer.payload).expect("utf-8");
        assert!(text.contains(&format!("A-KID {A_KID}")), "{text}");
        ue.close().await.expect("close");
    }
}

#[tokio::test]
async fn one_server_serves_both_profiles_and_the_e2m_path_is_unchanged() {
    let (server, mut events) = start_af(StaticPsk(psk()), StaticKaf(kaf()), config()).await;
    let e2m_id = identity("sensor-17@iot.example.com", 0xae47bf35);
    let e2m = UeDtlsConfig::new(&e2m_id, &psk(), limits()).expect("config");
    let akma = UeDtlsConfig::akma(&a_kid(), &kaf(), limits()).expect("config");
    let ue = DtlsClient::connect(server.local_addr(), &e2m)
        .await
        .expect("e2m handshake");
    // An e2m UE ignores the hint (RFC 4279 §2 leaves it to the client).
    assert_eq!(ue.psk_identity_hint(), Some(&b"3GPP-AKMA"[..]));
    ue.close().await.expect("close");
    let ue = DtlsClient::connect(server.local_addr(), &akma)
        .await
        .expect("AKMA handshake");
    ue.close().await.expect("close");
    let mut seen = Vec::new();
    while seen.len() < 2 {
        seen.push(
            wait_for(&mut events, |e| match e {
                ServerEvent::Connected { identity, .. } => Some(identity.clone()),
                _ => None,
            })
            .await,
        );
    }
    assert_eq!(seen[0], e2m_id);
    assert_eq!(seen[1], a_kid());

    // A server without AKMA sends no hint (no ServerKeyExchange, as before), and reads an
    // AKMA identity as a malformed e2m one, exactly as before AKMA existed.
    let mut plain = DtlsServer::bind(localhost(), StaticPsk(psk()), default_handler(), config())
        .await
        .expect("bind");
    let mut plain_events = plain.take_events().expect("events");
    let ue = DtlsClient::connect(plain.local_addr(), &e2m)
        .await
        .expect("e2m handshake");
    assert_eq!(ue.psk_identity_hint(), None);
    ue.close().await.expect("close");
    let refused = DtlsClient::connect(plain.local_addr(), &akma).await;
    assert!(
        matches!(
            refused,
            Err(DtlsError::Alert(AlertDescription::DECRYPT_ERROR))
        ),
        "{refused:?}"
    );
    let reason = wait_for(&mut plain_events, |e| match e {
        ServerEvent::Failed {
            identity: None,
            reason,
            ..
        } => Some(reason.clone()),
        _ => None,
    })
    .await;
    assert!(reason.starts_with("psk_identity: "), "{reason}");
}

#[tokio::test]
async fn a_wrong_kaf_an_unknown_a_kid_and_a_malformed_one_fail() {
    let source = Arc::new(AkmaKeySource::new(
        Aanf {
            calls: AtomicUsize::new(0),
        },
        16,
    ));
    let (server, mut events) = start_af(NoPsk, Arc::clone(&source), config()).await;
    let addr = server.local_addr();

    // K_AF derived for another AF_ID (here: another key): fails at Finished.
    let wrong = UeDtlsConfig::akma(&a_kid(), &Kaf::from_array([9; 32]), limits()).expect("config");
    let result = DtlsClient::connect(addr, &wrong).await;
    assert!(
        matches!(
            result,
            Err(DtlsError::Alert(AlertDescription::DECRYPT_ERROR))
        ),
        "{result:?}"
    );

    // An A-KID the AAnF has no context for: asked once, then remembered.
    let unknown = AKid::parse("rid0.atid00@5gc.mnc093.mcc208.3gppnetwork.org").unwrap();
    let config = UeDtlsConfig::akma(&unknown, &kaf(), limits()).expect("config");
    for _ in 0..3 {
        let result = DtlsClient::connect(addr, &config).await;
        assert!(
            matches!(
                result,
                Err(DtlsError::Alert(AlertDescription::DECRYPT_ERROR))
            ),
            "{result:?}"
        );
    }
    let (who, error) = wait_for(&mut events, |e| match e {
        ServerEvent::KeyUnavailable {
            identity, error, ..
        } => Some((identity.clone(), error.clone())),
        _ => None,
    })
    .await;
    assert_eq!(who, unknown);
    assert_eq!(error, ResolveError::UnknownIdentity);
    assert_eq!(
        source.fetcher().calls.load(Ordering::SeqCst),
        2,
        "set 1's A-KID once, the unknown one once (its later answers from memory)"
    );

    // The prefix with no A-KID after it.
    let bad = UeDtlsConfig::with_raw_identity(b"3GPP-AKMA.not-an-nai".to_vec(), &psk(), limits())
        .expect("config");
    let result = DtlsClient::connect(addr, &bad).await;
    assert!(result.is_err(), "{result:?}");
    let reason = wait_for(&mut events, |e| match e {
        ServerEvent::Failed {
            identity: None,
            reason,
            ..
        } => Some(reason.clone()),
        _ => None,
    })
    .await;
    assert!(reason.contains("AKMA psk_identity"), "{reason}");
}

#[tokio::test]
async fn akma_fetches_share_the_per_source_fetch_budget() {
    let source = Arc::new(AkmaKeySource::new(
        Aanf {
            calls: AtomicUsize::new(0),
        },
        16,
    ));
    let budget = ServerConfig {
        fetch_budget: FetchBudgetConfig {
            burst: 1,
            per_minute: 0,
            max_sources: 16,
        },
        resolve_timeout: std::time::Duration::from_millis(300),
        ..config()
    };
    let (server, mut events) = start_af(NoPsk, Arc::clone(&source), budget).await;
    // A made-up A-KID spends the source's one token...
    let made_up = |n: u32| AKid::parse(&format!("rid0.atid{n:064x}@example.org")).unwrap();
    let first = UeDtlsConfig::akma(&made_up(1), &kaf(), limits()).expect("config");
    assert!(
        DtlsClient::connect(server.local_addr(), &first)
            .await
            .is_err()
    );
    // ...so the next made-up one is refused without asking the AAnF: internal_error.
    let second = UeDtlsConfig::akma(&made_up(2), &kaf(), limits()).expect("config");
    let result = DtlsClient::connect(server.local_addr(), &second).await;
    assert!(
        matches!(
            result,
            Err(DtlsError::Alert(AlertDescription::INTERNAL_ERROR))
        ),
        "{result:?}"
    );
    let refused = wait_for(&mut events, |e| match e {
        ServerEvent::FetchRefused { identity, .. } => Some(identity.clone()),
        _ => None,
    })
    .await;
    assert_eq!(refused, made_up(2));
    assert_eq!(source.fetcher().calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_s_client_handshakes_with_the_af_using_the_annex_k_identity() {
    let (server, mut events) = start_af(StaticPsk(psk()), StaticKaf(kaf()), config()).await;
    let connect = server.local_addr().to_string();
    let identity = annex_k_identity();
    let mut client = Proc::spawn(&[
        "s_client",
        "-dtls1_2",
        "-connect",
        &connect,
        // K.3.2 b): the AF's host name in server_name; the AF accepts it.
        "-servername",
        "af.example.com",
        "-cipher",
        "PSK-AES128-CCM8",
        "-psk",
        KAF_HEX,
        "-psk_identity",
        &identity,
        "-ign_eof",
        // Prints the identity hint the server sent.
        "-debug",
    ]);
    let mut seen = Vec::new();
    let handshake = tokio::task::block_in_place(|| client.wait_for("Cipher is", &mut seen));
    assert!(
        handshake,
        "s_client did not complete a handshake:\n{}",
        seen.join("\n")
    );
    assert!(
        seen.iter()
            .any(|l| l.contains("Received PSK identity hint '3GPP-AKMA'")),
        "K.3.2 d): no hint seen by s_client:\n{}",
        seen.join("\n")
    );
    let connected = wait_for(&mut events, |e| match e {
        ServerEvent::Connected { identity, .. } => Some(identity.clone()),
        _ => None,
    })
    .await;
    assert_eq!(connected, a_kid());
    assert_eq!(connected.to_string(), identity);

    client.write_line("ping from openssl");
    let answered = tokio::task::block_in_place(|| {
        client.wait_for(&format!("e2m EMSE: 18 octets from {A_KID}"), &mut seen)
    });
    assert!(answered, "no answer from the AF:\n{}", seen.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ue_handshakes_with_openssl_s_server_expecting_the_annex_k_identity() {
    let port = free_udp_port();
    let accept = format!("127.0.0.1:{port}");
    let identity = annex_k_identity();
    let mut server = Proc::spawn(&[
        "s_server",
        "-dtls1_2",
        "-accept",
        &accept,
        "-nocert",
        "-psk",
        KAF_HEX,
        "-psk_hint",
        "3GPP-AKMA",
        // s_server compares the client's identity with this one and says which it got.
        "-psk_identity",
        &identity,
        "-cipher",
        "PSK-AES128-CCM8",
        "-debug",
    ]);
    let mut seen = Vec::new();
    let ready = tokio::task::block_in_place(|| server.wait_for("ACCEPT", &mut seen));
    assert!(ready, "s_server did not start:\n{}", seen.join("\n"));

    let config = UeDtlsConfig::akma(&a_kid(), &kaf(), limits()).expect("config");
    let addr: SocketAddr = accept.parse().expect("address");
    let mut ue = DtlsClient::connect(addr, &config)
        .await
        .expect("handshake with s_server");
    assert_eq!(ue.psk_identity_hint(), Some(&b"3GPP-AKMA"[..]));
    ue.send(b"ping from the UE\n").await.expect("send");
    let got = tokio::task::block_in_place(|| server.wait_for("ping from the UE", &mut seen));
    assert!(
        got,
        "s_server did not receive the data:\n{}",
        seen.join("\n")
    );
    assert!(
        seen.iter().any(|l| l.contains("PSK client identity found")),
        "s_server did not get the Annex K identity:\n{}",
        seen.join("\n")
    );
    assert!(
        !seen.iter().any(|l| l.contains("PSK warning")),
        "{}",
        seen.join("\n")
    );
    server.write_line("pong from openssl");
    let answer = ue.recv(WAIT).await.expect("data from s_server");
    assert_eq!(answer.trim_ascii_end(), b"pong from openssl");
    ue.close().await.expect("close");
}
