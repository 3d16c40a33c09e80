//! The OSCORE endpoints over real loopback UDP: UE client ↔ EMSE server, the key fetch
//! through a `PskResolver`, Appendix B.1.2 on a freshly derived context, the
//! "re-authenticate" answer, fetches bounded per source under a spoofed flood, and a
//! pending fetch that does not hold up other UEs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use e2m_coap::{Code, Message, MessageType, Token};
use e2m_dtls::oscore_client::{Direction, OscoreClient, OscoreClientError};
use e2m_dtls::oscore_server::{
    OscoreEvent, OscoreServer, OscoreServerConfig, OscoreServerHandle, default_handler,
};
use e2m_dtls::{PskResolver, ResolveError};
use e2m_kdf::E2mKey;
use e2m_keyid::{AppIdentity, KeyId, PskIdentity};
use e2m_oscore::SenderSequence;
use e2m_oscore::e2m::{E2mOscoreProfile, FetchBudgetConfig, FetchGuard};
use tokio::net::UdpSocket;
use tokio::sync::Notify;

const WAIT: Duration = Duration::from_secs(20);
const PROFILE: E2mOscoreProfile<'static> = E2mOscoreProfile::PROVISIONAL;

fn key() -> E2mKey {
    E2mKey::from_array([0x5c; 32])
}

fn app(name: &str) -> AppIdentity {
    AppIdentity::new(name).expect("identity")
}

fn get(path: &str, message_id: u16, token: &[u8]) -> Message {
    let mut m = Message::new(
        MessageType::Confirmable,
        Code::GET,
        message_id,
        Token::new(token).expect("token"),
    );
    m.set_uri_path(path).expect("path");
    m
}

/// Answers every identity with `key()`, except key ids in `evicted` (KeyNotHeld); counts calls.
#[derive(Default)]
struct CountingResolver {
    calls: AtomicUsize,
    evicted: Vec<u32>,
}

impl PskResolver for CountingResolver {
    async fn resolve(&self, identity: &PskIdentity) -> Result<E2mKey, ResolveError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.evicted.contains(&identity.key_id.as_u32()) {
            return Err(ResolveError::KeyNotHeld);
        }
        Ok(key())
    }
}

async fn start<R: PskResolver>(resolver: R, config: OscoreServerConfig) -> OscoreServerHandle {
    let addr: SocketAddr = "127.0.0.1:0".parse().expect("address");
    OscoreServer::bind(addr, resolver, default_handler(), config)
        .await
        .expect("bind")
}

async fn ue(server: SocketAddr, name: &str, key_id: u32) -> OscoreClient {
    let context = PROFILE
        .ue_context(
            &key(),
            &app(name),
            KeyId::from_u32(key_id),
            SenderSequence::volatile(),
        )
        .expect("context");
    let mut ue = OscoreClient::connect(server, context)
        .await
        .expect("client");
    ue.set_retransmit(Duration::from_millis(500));
    ue
}

#[tokio::test]
async fn ue_and_emse_exchange_coap_over_oscore() {
    let resolver = Arc::new(CountingResolver::default());
    let mut server = start(Arc::clone(&resolver), OscoreServerConfig::default()).await;
    let mut events = server.take_events().expect("events");
    let mut ue = ue(
        server.local_addr(),
        "sensor-17@iot.example.com",
        0xae47_bf35,
    )
    .await;

    let answer = ue
        .request(&get("temperature", 1, b"t1"), WAIT)
        .await
        .expect("first");
    assert_eq!(answer.code, Code::CONTENT);
    let text = String::from_utf8(answer.payload).expect("utf-8");
    assert!(
        text.contains("sensor-17@iot.example.com") && text.contains("ae47bf35"),
        "{text}"
    );
    // The first exchange: request with ID Context → Echo challenge (B.1.2, the context was
    // just derived) → request with Echo → response: two round trips.
    assert_eq!(
        ue.wire_log()
            .iter()
            .filter(|(d, _)| *d == Direction::Sent)
            .count(),
        2
    );
    let answer = ue
        .request(&get("temperature", 2, b"t2"), WAIT)
        .await
        .expect("second");
    assert_eq!(answer.code, Code::CONTENT);
    // The second: one round trip, no ID Context (the request is shorter than the first).
    let log = ue.wire_log();
    assert_eq!(log.len(), 6, "{log:?}");
    assert!(log[4].1 < log[0].1, "{log:?}");
    assert_eq!(
        resolver.calls.load(Ordering::SeqCst),
        1,
        "one fetch for the context"
    );

    // A notification about the UE drops its context: the next request, sent without the
    // ID Context, gets "context not found"; the UE sends it again with the ID Context and
    // the EMSE resolves the key again.
    assert_eq!(server.forget_ue(&app("sensor-17@iot.example.com")), 1);
    let answer = ue
        .request(&get("temperature", 3, b"t3"), WAIT)
        .await
        .expect("third");
    assert_eq!(answer.code, Code::CONTENT);
    assert_eq!(resolver.calls.load(Ordering::SeqCst), 2);
    assert_eq!(server.contexts(), 1);

    let mut seen = Vec::new();
    while let Ok(event) = events.try_recv() {
        seen.push(event);
    }
    assert!(
        seen.iter()
            .any(|e| matches!(e, OscoreEvent::Fetching { .. }))
    );
    assert!(
        seen.iter()
            .any(|e| matches!(e, OscoreEvent::EchoChallenge { .. }))
    );
    assert_eq!(
        seen.iter()
            .filter(|e| matches!(e, OscoreEvent::Exchanged { .. }))
            .count(),
        3
    );
}

#[tokio::test]
async fn an_evicted_key_id_tells_the_ue_to_reauthenticate() {
    let resolver = CountingResolver {
        evicted: vec![0x0bad],
        ..CountingResolver::default()
    };
    let server = start(resolver, OscoreServerConfig::default()).await;
    let mut ue = ue(server.local_addr(), "sensor-17@iot.example.com", 0x0bad).await;
    let outcome = ue.request(&get("temperature", 1, b"t1"), WAIT).await;
    assert!(
        matches!(outcome, Err(OscoreClientError::Reauthenticate)),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_wrong_key_is_refused_and_never_answered_in_plain() {
    let server = start(CountingResolver::default(), OscoreServerConfig::default()).await;
    let context = PROFILE
        .ue_context(
            &E2mKey::from_array([0x01; 32]),
            &app("sensor-17@iot.example.com"),
            KeyId::from_u32(7),
            SenderSequence::volatile(),
        )
        .expect("context");
    let mut ue = OscoreClient::connect(server.local_addr(), context)
        .await
        .expect("client");
    let outcome = ue.request(&get("temperature", 1, b"t1"), WAIT).await;
    // RFC 8613 §8.2: an unprotected 4.00 "Decryption failed"; an error, never a response.
    assert!(
        matches!(outcome, Err(OscoreClientError::Refused(Code::BAD_REQUEST))),
        "{outcome:?}"
    );
}

/// A flood of requests, each naming another identity (so that no cache helps), from 4
/// source addresses in 127.0.0.0/8 and 16 ports each: the EMSE fetches at most the budget
/// of each address (burst 4), and answers the rest with 5.03, whatever the ports.
#[tokio::test]
async fn a_spoofed_flood_causes_at_most_the_budgeted_fetches() {
    let resolver = Arc::new(CountingResolver::default());
    let budget = FetchBudgetConfig::default();
    let config = OscoreServerConfig {
        guard: FetchGuard::Budget(budget),
        ..OscoreServerConfig::default()
    };
    let server = start(Arc::clone(&resolver), config).await;
    let target = server.local_addr();
    let addresses = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"];
    let ports_per_address = 16;
    let mut sockets = Vec::new();
    for (a, address) in addresses.iter().enumerate() {
        for p in 0..ports_per_address {
            let socket = UdpSocket::bind(format!("{address}:0")).await.expect("bind");
            let name = format!("victim-{a}-{p}@iot.example.com");
            let mut context = PROFILE
                .ue_context(
                    &E2mKey::from_array([0x77; 32]),
                    &app(&name),
                    KeyId::from_u32(1000 + (a * 100 + p) as u32),
                    SenderSequence::volatile(),
                )
                .expect("context");
            let mut datagram = Vec::new();
            context
                .protect_request_datagram(&get("x", p as u16, b"f"), true, &mut datagram)
                .expect("protect");
            socket.send_to(&datagram, target).await.expect("send");
            sockets.push(socket);
        }
    }
    let mut codes: HashMap<Code, usize> = HashMap::new();
    for socket in &sockets {
        let mut buf = [0u8; 1500];
        let (n, _) = tokio::time::timeout(WAIT, socket.recv_from(&mut buf))
            .await
            .expect("every request is answered")
            .expect("recv");
        let answer = Message::decode(&buf[..n]).expect("CoAP");
        *codes.entry(answer.code).or_default() += 1;
    }
    let total = addresses.len() * ports_per_address;
    let allowed = addresses.len() * budget.burst as usize;
    let fetches = resolver.calls.load(Ordering::SeqCst);
    assert_eq!(fetches, allowed, "fetches {fetches}, answers {codes:?}");
    assert_eq!(
        codes.get(&Code::SERVICE_UNAVAILABLE).copied().unwrap_or(0),
        total - allowed,
        "{codes:?}"
    );
}

/// Holds the key of one key id until the test opens the gate.
struct GatedResolver {
    slow_key_id: u32,
    gate: Arc<Notify>,
    waiting: Arc<Notify>,
}

impl PskResolver for GatedResolver {
    async fn resolve(&self, identity: &PskIdentity) -> Result<E2mKey, ResolveError> {
        if identity.key_id.as_u32() == self.slow_key_id {
            self.waiting.notify_one();
            tokio::time::timeout(WAIT, self.gate.notified())
                .await
                .map_err(|_| ResolveError::Unavailable("gate never opened".into()))?;
        }
        Ok(key())
    }
}

/// While UE A's key fetch is pending, UE B is served (single-threaded runtime: a fetch that
/// blocked the thread could not pass).
#[tokio::test(flavor = "current_thread")]
async fn a_pending_key_fetch_does_not_delay_other_ues() {
    let gate = Arc::new(Notify::new());
    let waiting = Arc::new(Notify::new());
    let resolver = GatedResolver {
        slow_key_id: 0xa,
        gate: Arc::clone(&gate),
        waiting: Arc::clone(&waiting),
    };
    let server = start(resolver, OscoreServerConfig::default()).await;
    let addr = server.local_addr();
    let mut slow_ue = ue(addr, "slow-ue@iot.example.com", 0xa).await;
    let slow = tokio::spawn(async move { slow_ue.request(&get("a", 1, b"a"), WAIT).await });
    tokio::time::timeout(WAIT, waiting.notified())
        .await
        .expect("UE A's fetch never started");
    let mut fast = ue(addr, "fast-ue@iot.example.com", 0xb).await;
    let answer = fast.request(&get("b", 2, b"b"), WAIT).await.expect("UE B");
    assert_eq!(answer.code, Code::CONTENT);
    assert!(
        !slow.is_finished(),
        "UE A answered before its key was released"
    );
    gate.notify_one();
    let answer = tokio::time::timeout(WAIT, slow)
        .await
        .expect("bounded")
        .expect("task")
        .expect("UE A after the fetch");
    assert_eq!(answer.code, Code::CONTENT);
}
