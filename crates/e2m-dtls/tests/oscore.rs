//! The OSCORE endpoints over real loopback UDP: UE client ↔ EMSE server, the key fetch
//! through a `PskResolver`, Appendix B.1.2 on a freshly derived context, one round trip on
//! first contact with a derived-context record and the Echo challenge for a request
//! replayed after a restart, the "re-authenticate" answer, fetches bounded per source
//! under a spoofed flood, and a pending fetch that does not hold up other UEs.
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

use e2m_coap::OptionNumber;
use e2m_coap::{Code, Message, MessageType, Token};
use e2m_dtls::derived_record::{DerivedRecordError, FileDerivedRecord, FileDerivedRecordConfig};
use e2m_dtls::oscore_client::{Direction, OscoreClient, OscoreClientError};
use e2m_dtls::oscore_server::{
    OscoreEvent, OscoreServer, OscoreServerConfig, OscoreServerHandle, default_handler,
};
use e2m_dtls::{PskResolver, ResolveError};
use e2m_kdf::E2mKey;
use e2m_keyid::{AppIdentity, KeyId, PskIdentity};
use e2m_oscore::SenderSequence;
use e2m_oscore::derived::{DerivedContextRecord, conformance};
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

/// Has the keys of `cached` key ids at hand (`resolve_local`, as `EmksKeySource`'s cache);
/// counts the fetches that had to ask the key server.
#[derive(Default)]
struct CachingResolver {
    cached: Vec<u32>,
    remote: AtomicUsize,
}

impl PskResolver for CachingResolver {
    fn resolve_local(&self, identity: &PskIdentity) -> Option<Result<E2mKey, ResolveError>> {
        self.cached
            .contains(&identity.key_id.as_u32())
            .then(|| Ok(key()))
    }

    async fn resolve(&self, identity: &PskIdentity) -> Result<E2mKey, ResolveError> {
        if let Some(answer) = self.resolve_local(identity) {
            return answer;
        }
        self.remote.fetch_add(1, Ordering::SeqCst);
        Ok(key())
    }
}

/// issue 16: a key the resolver has at hand costs no fetch token, as on the DTLS side.
/// One source (127.0.0.1) with a budget of one fetch and no refill spends it on an
/// uncached key; UEs whose keys are cached are still served from that source, and the
/// next uncached key is refused (the budget still holds).
#[tokio::test]
async fn a_cached_key_costs_no_fetch_token() {
    let resolver = Arc::new(CachingResolver {
        cached: (100..105).collect(),
        ..CachingResolver::default()
    });
    let config = OscoreServerConfig {
        guard: FetchGuard::Budget(FetchBudgetConfig {
            burst: 1,
            per_minute: 0,
            max_sources: 16,
        }),
        ..OscoreServerConfig::default()
    };
    let server = start(Arc::clone(&resolver), config).await;
    let mut first = ue(server.local_addr(), "first@iot.example.com", 1).await;
    let answer = first
        .request(&get("t", 1, b"a"), WAIT)
        .await
        .expect("first");
    assert_eq!(answer.code, Code::CONTENT);
    assert_eq!(resolver.remote.load(Ordering::SeqCst), 1);

    for key_id in 100..105u32 {
        let mut cached = ue(
            server.local_addr(),
            &format!("c{key_id}@iot.example.com"),
            key_id,
        )
        .await;
        let answer = cached.request(&get("t", 1, b"c"), WAIT).await;
        assert!(
            matches!(&answer, Ok(m) if m.code == Code::CONTENT),
            "cached key id {key_id}: {answer:?}"
        );
    }
    assert_eq!(
        resolver.remote.load(Ordering::SeqCst),
        1,
        "no fetch for cached keys"
    );

    let mut uncached = ue(server.local_addr(), "late@iot.example.com", 2).await;
    let refused = uncached.request(&get("t", 1, b"u"), WAIT).await;
    assert!(
        matches!(refused, Err(OscoreClientError::RetryAfter(_))),
        "{refused:?}"
    );
    assert_eq!(resolver.remote.load(Ordering::SeqCst), 1);
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

/// A fresh path for a record file of one test (removed first, if a run left it).
fn record_path(test: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!(
        "e2m-dtls-derived-{}-{test}.log",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    path
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn open_record(path: &std::path::Path) -> FileDerivedRecord {
    FileDerivedRecord::open(path, FileDerivedRecordConfig::default(), unix_now()).expect("open")
}

async fn start_with_record(path: &std::path::Path) -> OscoreServerHandle {
    let addr: SocketAddr = "127.0.0.1:0".parse().expect("address");
    OscoreServer::bind_with_record(
        addr,
        Arc::new(CountingResolver::default()),
        default_handler(),
        OscoreServerConfig::default(),
        open_record(path),
    )
    .await
    .expect("bind")
}

fn drain(events: &mut tokio::sync::mpsc::Receiver<OscoreEvent>) -> Vec<OscoreEvent> {
    let mut seen = Vec::new();
    while let Ok(event) = events.try_recv() {
        seen.push(event);
    }
    seen
}

#[tokio::test]
async fn first_contact_of_a_never_derived_context_takes_one_round_trip() {
    let path = record_path("first-contact");
    let mut server = start_with_record(&path).await;
    let mut events = server.take_events().expect("events");
    let mut ue = ue(
        server.local_addr(),
        "sensor-17@iot.example.com",
        0x0102_0304,
    )
    .await;
    let answer = ue
        .request(&get("temperature", 1, b"t1"), WAIT)
        .await
        .expect("first");
    assert_eq!(answer.code, Code::CONTENT);
    let log = ue.wire_log();
    assert_eq!(log.len(), 2, "one datagram each way: {log:?}");
    let seen = drain(&mut events);
    assert!(
        seen.iter()
            .any(|e| matches!(e, OscoreEvent::FirstDerivation { .. })),
        "{seen:?}"
    );
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, OscoreEvent::EchoChallenge { .. })),
        "{seen:?}"
    );
    // Recorded durably: a reopened record knows the context.
    server.shutdown();
    assert_eq!(open_record(&path).len(), 1);
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn a_request_replayed_after_a_restart_gets_echo_not_an_answer() {
    let path = record_path("replay-after-restart");
    let identity = app("sensor-17@iot.example.com");
    let key_id = KeyId::from_u32(0x0a0b_0c0d);
    let mut context = PROFILE
        .ue_context(&key(), &identity, key_id, SenderSequence::volatile())
        .expect("context");
    let mut request = Vec::new();
    let request_id = context
        .protect_request_datagram(&get("temperature", 7, b"r1"), true, &mut request)
        .expect("protect");
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("socket");
    let mut buf = vec![0u8; 2048];
    let mut exchange = async |server: SocketAddr| {
        socket.send_to(&request, server).await.expect("send");
        let (n, _) = tokio::time::timeout(WAIT, socket.recv_from(&mut buf))
            .await
            .expect("answer in time")
            .expect("recv");
        context
            .verify_response_datagram(&buf[..n], &request_id)
            .expect("a protected answer")
    };

    // First run: the context is new, the request is answered at once.
    let server = start_with_record(&path).await;
    let answer = exchange(server.local_addr()).await;
    assert_eq!(answer.code, Code::CONTENT);
    server.shutdown();

    // Restart with the record kept: the captured request, replayed, must not be answered
    // again under its nonce; it gets the protected Echo challenge of Appendix B.1.2.
    let server = start_with_record(&path).await;
    let answer = exchange(server.local_addr()).await;
    assert_eq!(answer.code, Code::UNAUTHORIZED, "{answer:?}");
    assert!(
        answer.options.get(OptionNumber::ECHO).is_some(),
        "{answer:?}"
    );
    assert!(answer.payload.is_empty());
    server.shutdown();
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_corrupt_record_is_a_typed_error_at_open_and_a_torn_tail_is_cut() {
    let path = record_path("corrupt");
    let mut record = open_record(&path);
    let identity = app("sensor-17@iot.example.com");
    let _ = record
        .record(&identity, KeyId::from_u32(1), unix_now())
        .expect("record");
    drop(record);
    let good = std::fs::read_to_string(&path).expect("read");

    // A torn last line (no newline: never synced) is cut off; the synced entry stays.
    std::fs::write(&path, format!("{good}1800000000 000000")).expect("write");
    assert_eq!(open_record(&path).len(), 1);
    assert_eq!(std::fs::read_to_string(&path).expect("read"), good);

    // A damaged entry, a flipped octet, a foreign file: typed errors naming the line.
    let flipped = good.replacen("00000001", "00000002", 1);
    for (text, line) in [
        (format!("{good}garbage\n"), 3),
        (flipped, 2),
        ("not a record\n".to_owned(), 1),
    ] {
        std::fs::write(&path, &text).expect("write");
        match FileDerivedRecord::open(&path, FileDerivedRecordConfig::default(), unix_now()) {
            Err(DerivedRecordError::Corrupt { line: at, .. }) => assert_eq!(at, line, "{text}"),
            other => panic!("{text:?}: {other:?}"),
        }
        // Left as it was for the operator.
        assert_eq!(std::fs::read_to_string(&path).expect("read"), text);
    }
    let _ = std::fs::remove_file(&path);
}

#[test]
fn file_record_conforms_and_compacts() {
    let path = record_path("conformance");
    let config = FileDerivedRecordConfig {
        max_age: Duration::from_secs(3600),
        ..FileDerivedRecordConfig::default()
    };
    let open = || FileDerivedRecord::open(&path, config, 1_800_000_000).expect("open");
    let reopen = |record: FileDerivedRecord| {
        drop(record);
        FileDerivedRecord::open(&path, config, 1_800_000_000).expect("reopen")
    };
    conformance::check(open, reopen, 3600);

    // Bounded: entries past max_age go, and the file is rewritten once it holds more than
    // twice the live entries plus the slack.
    let _ = std::fs::remove_file(&path);
    let bounded = FileDerivedRecordConfig {
        max_age: Duration::from_secs(600),
        max_entries: 10_000,
        compact_slack: 64,
    };
    let mut record = FileDerivedRecord::open(&path, bounded, 0).expect("open");
    let identity = app("sensor-17@iot.example.com");
    for n in 0..400u32 {
        // One new entry every 10 s: 61 of them within the last 600 s.
        let _ = record
            .record(&identity, KeyId::from_u32(n), u64::from(n) * 10)
            .expect("record");
    }
    assert!(record.len() <= 61 + 64, "{} live entries", record.len());
    let lines = std::fs::read_to_string(&path)
        .expect("read")
        .lines()
        .count();
    assert!(
        lines <= 2 * (61 + 64) + 64 + 1,
        "{lines} lines: not compacted"
    );
    drop(record);
    let record = FileDerivedRecord::open(&path, bounded, 3990).expect("reopen");
    assert_eq!(record.len(), 61, "the entries of the last 600 s");

    // Full: a new context is refused (typed), an old one still known.
    let small = FileDerivedRecordConfig {
        max_entries: 1,
        ..FileDerivedRecordConfig::default()
    };
    let _ = std::fs::remove_file(&path);
    let mut record = FileDerivedRecord::open(&path, small, 0).expect("open");
    let _ = record
        .record(&identity, KeyId::from_u32(1), 0)
        .expect("first");
    assert!(matches!(
        record.record(&identity, KeyId::from_u32(2), 1),
        Err(DerivedRecordError::Full { max_entries: 1 })
    ));
    let _ = std::fs::remove_file(&path);
}
