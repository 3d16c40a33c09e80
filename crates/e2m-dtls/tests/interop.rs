//! DTLS 1.2 PSK with TLS_PSK_WITH_AES_128_CCM_8 between UE and EMSE (seed 6.x.2.3):
//! our client and server with each other, with a stock `openssl s_client` / `s_server`,
//! the resolver paths, and the rule that one slow key fetch does not hold up other UEs.
//!
//! Every wait is bounded; every address is 127.0.0.1. The OpenSSL tests fail (they do not
//! skip) when `openssl` is missing, because CI installs it.

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

use common::{PSK_HEX, Proc, WAIT, free_udp_port, get, identity, limits, psk, start, wait_for};
use e2m_coap::Code as CoapCode;
use e2m_dtls::client::{DtlsClient, UeDtlsConfig};
use e2m_dtls::server::ServerEvent;
use e2m_dtls::{AlertDescription, DtlsError, PskResolver, ResolveError, StaticPsk};
use e2m_kdf::E2mKey;
use e2m_keyid::PskIdentity;
use tokio::sync::Notify;

#[tokio::test]
async fn ue_and_emse_exchange_coap_over_dtls_psk() {
    let (server, mut events) = start(StaticPsk(psk())).await;
    let id = identity("sensor-17@iot.example.com", 0xae47bf35);
    let config = UeDtlsConfig::new(&id, &psk(), limits()).expect("config");
    let mut ue = DtlsClient::connect(server.local_addr(), &config)
        .await
        .expect("handshake");
    let connected = wait_for(&mut events, |e| match e {
        ServerEvent::Connected { identity, .. } => Some(identity.clone()),
        _ => None,
    })
    .await;
    assert_eq!(
        connected, id,
        "the EMSE records the identity the handshake used"
    );

    let answer = ue
        .request(&get("/temperature", 7, b"tk"), WAIT)
        .await
        .expect("CoAP answer");
    assert_eq!(answer.code, CoapCode::CONTENT);
    assert_eq!(answer.message_id, 7);
    let text = String::from_utf8(answer.payload).expect("utf-8");
    assert!(
        text.contains("sensor-17@iot.example.com") && text.contains("ae47bf35"),
        "{text}"
    );
    ue.close().await.expect("close");
    wait_for(&mut events, |e| {
        matches!(e, ServerEvent::Closed { .. }).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_wrong_psk_fails_the_handshake_on_both_sides() {
    let (server, mut events) = start(StaticPsk(psk())).await;
    let id = identity("sensor-17@iot.example.com", 1);
    let config = UeDtlsConfig::new(&id, &E2mKey::from_array([7; 32]), limits()).expect("config");
    let result = DtlsClient::connect(server.local_addr(), &config).await;
    assert!(
        matches!(
            result,
            Err(DtlsError::Alert(AlertDescription::DECRYPT_ERROR))
        ),
        "{result:?}"
    );
    let reason = wait_for(&mut events, |e| match e {
        ServerEvent::Failed { reason, .. } => Some(reason.clone()),
        _ => None,
    })
    .await;
    assert!(reason.contains("PSK mismatch"), "{reason}");
}

/// A resolver that knows one identity and says "re-authenticate" for every other key id.
struct OnlyKeyId(u32);

impl PskResolver for OnlyKeyId {
    async fn resolve(&self, identity: &PskIdentity) -> Result<E2mKey, ResolveError> {
        if identity.key_id.as_u32() == self.0 {
            Ok(psk())
        } else {
            Err(ResolveError::KeyNotHeld)
        }
    }
}

#[tokio::test]
async fn an_evicted_key_id_fails_like_a_wrong_psk_with_the_reason_reported() {
    let (server, mut events) = start(OnlyKeyId(2)).await;
    let stale = identity("sensor-17@iot.example.com", 1);
    let config = UeDtlsConfig::new(&stale, &psk(), limits()).expect("config");
    let result = DtlsClient::connect(server.local_addr(), &config).await;
    assert!(
        matches!(
            result,
            Err(DtlsError::Alert(AlertDescription::DECRYPT_ERROR))
        ),
        "{result:?}"
    );
    let (who, error) = wait_for(&mut events, |e| match e {
        ServerEvent::KeyUnavailable {
            identity, error, ..
        } => Some((identity.clone(), error.clone())),
        _ => None,
    })
    .await;
    assert_eq!(who, stale);
    assert_eq!(error, ResolveError::KeyNotHeld);

    // The current key id still works on the same server.
    let fresh = identity("sensor-17@iot.example.com", 2);
    let config = UeDtlsConfig::new(&fresh, &psk(), limits()).expect("config");
    let ue = DtlsClient::connect(server.local_addr(), &config)
        .await
        .expect("handshake");
    ue.close().await.expect("close");
}

#[tokio::test]
async fn a_malformed_psk_identity_is_refused() {
    let (server, mut events) = start(StaticPsk(psk())).await;
    let config = UeDtlsConfig::with_raw_identity(b"Client_identity".to_vec(), &psk(), limits())
        .expect("config");
    let result = DtlsClient::connect(server.local_addr(), &config).await;
    assert!(
        matches!(
            result,
            Err(DtlsError::Alert(AlertDescription::DECRYPT_ERROR))
        ),
        "{result:?}"
    );
    let reason = wait_for(&mut events, |e| match e {
        ServerEvent::Failed {
            identity: None,
            reason,
            ..
        } if reason.starts_with("psk_identity") => Some(reason.clone()),
        _ => None,
    })
    .await;
    assert!(reason.contains("not an e2m identity"), "{reason}");
}

/// Holds the key of `slow_key_id` until the test opens the gate; answers others at once.
struct GatedResolver {
    slow_key_id: u32,
    gate: Arc<Notify>,
    waiting: Arc<Notify>,
    calls: AtomicUsize,
}

impl PskResolver for GatedResolver {
    async fn resolve(&self, identity: &PskIdentity) -> Result<E2mKey, ResolveError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if identity.key_id.as_u32() == self.slow_key_id {
            self.waiting.notify_one();
            // Bounded: a runtime blocked by this wait would fail the test, not hang it.
            tokio::time::timeout(WAIT, self.gate.notified())
                .await
                .map_err(|_| ResolveError::Unavailable("gate never opened".into()))?;
        }
        Ok(psk())
    }
}

/// Seed step 5 must not stall other UEs: while UE A's key fetch is pending, UE B completes
/// its handshake and a CoAP exchange; only then is A's fetch answered, and A completes
/// too. On a single-threaded runtime, so a fetch that blocked the thread could not pass.
#[tokio::test(flavor = "current_thread")]
async fn a_pending_key_fetch_does_not_delay_other_ues() {
    let gate = Arc::new(Notify::new());
    let waiting = Arc::new(Notify::new());
    let resolver = Arc::new(GatedResolver {
        slow_key_id: 0xa,
        gate: Arc::clone(&gate),
        waiting: Arc::clone(&waiting),
        calls: AtomicUsize::new(0),
    });
    let (server, _events) = start(Arc::clone(&resolver)).await;
    let addr = server.local_addr();
    // Both configurations first: building one runs dimpl's provider self-check, which is
    // synchronous and must not eat into UE A's handshake deadline on this one thread.
    let slow_config =
        UeDtlsConfig::new(&identity("slow-ue@iot.example.com", 0xa), &psk(), limits())
            .expect("config");
    let fast_id = identity("fast-ue@iot.example.com", 0xb);
    let config = UeDtlsConfig::new(&fast_id, &psk(), limits()).expect("config");

    let slow = tokio::spawn(async move {
        let config = slow_config;
        let mut ue = DtlsClient::connect(addr, &config).await?;
        let answer = ue.request(&get("/a", 1, b"a"), WAIT).await?;
        ue.close().await?;
        Ok::<_, DtlsError>(answer)
    });
    // A's fetch is now pending inside the EMSE.
    tokio::time::timeout(WAIT, waiting.notified())
        .await
        .expect("UE A's key fetch never started");
    assert!(!slow.is_finished());

    let mut fast = DtlsClient::connect(addr, &config)
        .await
        .expect("UE B handshake");
    let answer = fast
        .request(&get("/b", 2, b"b"), WAIT)
        .await
        .expect("UE B exchange");
    assert_eq!(answer.code, CoapCode::CONTENT);
    fast.close().await.expect("close");
    if slow.is_finished() {
        panic!(
            "UE A finished before its key was released: {:?}",
            slow.await
        );
    }

    gate.notify_one();
    let answer = tokio::time::timeout(WAIT, slow)
        .await
        .expect("UE A bounded")
        .expect("task")
        .expect("UE A handshake after the fetch");
    assert_eq!(answer.code, CoapCode::CONTENT);
    assert_eq!(resolver.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_s_client_handshakes_with_the_emse_and_exchanges_data() {
    let (server, mut events) = start(StaticPsk(psk())).await;
    let id = identity("sensor-17@iot.example.com", 0xae47bf35).to_string();
    let connect = server.local_addr().to_string();
    let mut client = Proc::spawn(&[
        "s_client",
        "-dtls1_2",
        "-connect",
        &connect,
        "-cipher",
        "PSK-AES128-CCM8",
        "-psk",
        PSK_HEX,
        "-psk_identity",
        &id,
        "-ign_eof",
    ]);
    let mut seen = Vec::new();
    let handshake = tokio::task::block_in_place(|| client.wait_for("Cipher is", &mut seen));
    assert!(
        handshake,
        "s_client did not complete a handshake:\n{}",
        seen.join("\n")
    );
    assert!(
        seen.iter().any(|l| l.contains("PSK-AES128-CCM8")),
        "{}",
        seen.join("\n")
    );
    let connected = wait_for(&mut events, |e| match e {
        ServerEvent::Connected { identity, .. } => Some(identity.to_string()),
        _ => None,
    })
    .await;
    assert_eq!(connected, id);

    client.write_line("ping from openssl");
    let answered =
        tokio::task::block_in_place(|| client.wait_for("e2m EMSE: 18 octets from", &mut seen));
    assert!(answered, "no answer from the EMSE:\n{}", seen.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ue_handshakes_with_openssl_s_server_and_exchanges_data() {
    let port = free_udp_port();
    let accept = format!("127.0.0.1:{port}");
    let mut server = Proc::spawn(&[
        "s_server",
        "-dtls1_2",
        "-accept",
        &accept,
        "-nocert",
        "-psk",
        PSK_HEX,
        "-cipher",
        "PSK-AES128-CCM8",
    ]);
    let mut seen = Vec::new();
    let ready = tokio::task::block_in_place(|| server.wait_for("ACCEPT", &mut seen));
    assert!(ready, "s_server did not start:\n{}", seen.join("\n"));

    let id = identity("sensor-17@iot.example.com", 0xae47bf35);
    let config = UeDtlsConfig::new(&id, &psk(), limits()).expect("config");
    let addr: SocketAddr = accept.parse().expect("address");
    let mut ue = DtlsClient::connect(addr, &config)
        .await
        .expect("handshake with s_server");
    ue.send(b"ping from the UE\n").await.expect("send");
    let got = tokio::task::block_in_place(|| server.wait_for("ping from the UE", &mut seen));
    assert!(
        got,
        "s_server did not receive the data:\n{}",
        seen.join("\n")
    );
    assert!(
        seen.iter().any(|l| l.contains("PSK-AES128-CCM8")),
        "{}",
        seen.join("\n")
    );

    server.write_line("pong from openssl");
    let answer = ue.recv(WAIT).await.expect("data from s_server");
    // s_server sends the line it read; whether the newline travels is its business.
    assert_eq!(answer.trim_ascii_end(), b"pong from openssl");
    ue.close().await.expect("close");
}
