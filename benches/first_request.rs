//! Issue 11's headline: bytes on the wire and round trips for a device's first secured CoAP
//! request/response once a key is in place (the UE holds `e2m_key`, the EMSE can get it at
//! once), DTLS-PSK (full handshake + records) vs OSCORE, counted from the actual datagrams
//! of both paths in one run.
//!
//! ```text
//! cargo bench --bench first_request
//! ```
//!
//! Both paths run the project's real endpoints on loopback (`e2m_dtls::client::DtlsClient`
//! ↔ `e2m_dtls::server::DtlsServer`, `e2m_dtls::oscore_client::OscoreClient` ↔
//! `e2m_dtls::oscore_server::OscoreServer`), with the same key resolver, the same CoAP
//! request (CON GET /temperature, 3-octet token) and the same application answer. A UDP
//! relay between UE and EMSE records every datagram's direction and UDP payload size.
//! Round trips = UE flights that the EMSE answered, up to the CoAP response (the DTLS
//! close_notify that may follow is not counted; neither is anything after the response).
//! The second octet column adds 28 octets per datagram (IPv4 20 + UDP 8 headers).
//!
//! Rows: DTLS 1.2 PSK with TLS_PSK_WITH_AES_128_CCM_8 (cookie exchange, full handshake,
//! one application record each way); OSCORE on first contact, a context the EMSE has never
//! derived (bound with a `FileDerivedRecord`: it records the context durably and answers the
//! first request at once, see `e2m_dtls::oscore_server`); OSCORE on a context derived
//! before (an EMSE without a record, or after a restart: the first request is answered with
//! an Echo challenge, RFC 8613 Appendix B.1.2); OSCORE on a context the EMSE already holds
//! (the steady state). The summary line gives each OSCORE row's octets as a share of the
//! DTLS path's and its round trips: issue 11's goal is ≤ 25 % in one round trip.
//!
//! A byte count, not a timing: this is a bench binary (`harness = false`), not a criterion
//! group, and not a test.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "benchmark set-up")]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2m_coap::{Code, Message, MessageType, Token};
use e2m_dtls::client::{DtlsClient, UeDtlsConfig};
use e2m_dtls::derived_record::{FileDerivedRecord, FileDerivedRecordConfig};
use e2m_dtls::oscore_client::OscoreClient;
use e2m_dtls::oscore_server::{self, OscoreServer, OscoreServerConfig};
use e2m_dtls::server::{DtlsServer, ServerConfig, default_handler};
use e2m_dtls::{DtlsLimits, StaticPsk};
use e2m_kdf::E2mKey;
use e2m_keyid::{AppIdentity, KeyId, PskIdentity};
use e2m_oscore::SenderSequence;
use e2m_oscore::e2m::E2mOscoreProfile;
use tokio::net::UdpSocket;

const IDENTITY: &str = "sensor-17@iot.example.com";
const KEY_ID: u32 = 0xae47_bf35;
const IP_UDP_HEADERS: usize = 28;
const WAIT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Dir {
    Up,
    Down,
}

type Log = Arc<Mutex<Vec<(Dir, usize)>>>;

/// A UDP relay in front of `server`: returns its address and the datagram log.
async fn relay(server: SocketAddr) -> (SocketAddr, Log) {
    let front = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let back = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    back.connect(server).await.unwrap();
    let addr = front.local_addr().unwrap();
    let log: Log = Arc::default();
    let task_log = Arc::clone(&log);
    tokio::spawn(async move {
        let mut client: Option<SocketAddr> = None;
        let mut up = vec![0u8; 4096];
        let mut down = vec![0u8; 4096];
        loop {
            tokio::select! {
                Ok((n, from)) = front.recv_from(&mut up) => {
                    client = Some(from);
                    task_log.lock().unwrap().push((Dir::Up, n));
                    let _ = back.send(&up[..n]).await;
                }
                Ok(n) = back.recv(&mut down) => {
                    task_log.lock().unwrap().push((Dir::Down, n));
                    if let Some(to) = client {
                        let _ = front.send_to(&down[..n], to).await;
                    }
                }
            }
        }
    });
    (addr, log)
}

/// Datagrams, round trips and octets of `log[from..]`.
struct Count {
    datagrams: usize,
    round_trips: usize,
    octets: usize,
}

fn count(log: &Log, from: usize) -> Count {
    let log = log.lock().unwrap();
    let tail = &log[from..];
    // A round trip ends at each switch from the UE's datagrams to the EMSE's.
    let round_trips = tail
        .windows(2)
        .filter(|w| w[0].0 == Dir::Up && w[1].0 == Dir::Down)
        .count();
    Count {
        datagrams: tail.len(),
        round_trips,
        octets: tail.iter().map(|(_, n)| n).sum(),
    }
}

fn request() -> Message {
    let mut m = Message::new(
        MessageType::Confirmable,
        Code::GET,
        0x0e2e,
        Token::new(b"e2m").unwrap(),
    );
    m.set_uri_path("temperature").unwrap();
    m
}

fn key() -> E2mKey {
    E2mKey::from_array([0x5c; 32])
}

fn row(name: &str, c: &Count) {
    println!(
        "{name:<52} {:>9} {:>11} {:>13} {:>22}",
        c.datagrams,
        c.round_trips,
        c.octets,
        c.octets + IP_UDP_HEADERS * c.datagrams
    );
}

async fn dtls_first_request() -> Count {
    let mut server = DtlsServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        StaticPsk(key()),
        default_handler(),
        ServerConfig::default(),
    )
    .await
    .unwrap();
    let _ = server.take_events();
    let (addr, log) = relay(server.local_addr()).await;
    let identity = PskIdentity::new(AppIdentity::new(IDENTITY).unwrap(), KeyId::from_u32(KEY_ID));
    let limits = DtlsLimits {
        handshake_timeout: WAIT,
        ..DtlsLimits::default()
    };
    let config = UeDtlsConfig::new(&identity, &key(), limits).unwrap();
    let mut ue = DtlsClient::connect(addr, &config).await.unwrap();
    let answer = ue.request(&request(), WAIT).await.unwrap();
    assert_eq!(answer.code, Code::CONTENT);
    // Let any straggler of the handshake arrive before counting; the count ends here.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let counted = count(&log, 0);
    let _ = ue.close().await;
    counted
}

/// One UE's first and second request to a fresh OSCORE endpoint: bound with a fresh
/// derived-context record (`Some(path)`: first contact of a never-derived context), or
/// without one (every derived context is treated as derived before: B.1.2 Echo).
async fn oscore_requests(record: Option<&std::path::Path>) -> (Count, Count, usize, usize) {
    let addr = "127.0.0.1:0".parse().unwrap();
    let handler = oscore_server::default_handler();
    let config = OscoreServerConfig::default();
    let server = match record {
        Some(path) => {
            let _ = std::fs::remove_file(path);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let record =
                FileDerivedRecord::open(path, FileDerivedRecordConfig::default(), now).unwrap();
            OscoreServer::bind_with_record(addr, StaticPsk(key()), handler, config, record)
                .await
                .unwrap()
        }
        None => OscoreServer::bind(addr, StaticPsk(key()), handler, config)
            .await
            .unwrap(),
    };
    let (addr, log) = relay(server.local_addr()).await;
    let context = E2mOscoreProfile::PROVISIONAL
        .ue_context(
            &key(),
            &AppIdentity::new(IDENTITY).unwrap(),
            KeyId::from_u32(KEY_ID),
            SenderSequence::volatile(),
        )
        .unwrap();
    let mut ue = OscoreClient::connect(addr, context).await.unwrap();
    let answer = ue.request(&request(), WAIT).await.unwrap();
    assert_eq!(answer.code, Code::CONTENT);
    let first = count(&log, 0);
    let mark = log.lock().unwrap().len();
    let answer = ue.request(&request(), WAIT).await.unwrap();
    assert_eq!(answer.code, Code::CONTENT);
    let steady = count(&log, mark);
    let sizes = log.lock().unwrap();
    // The request of the first exchange (with the ID Context) and of the second (without).
    let (first_request, steady_request) = (sizes[0].1, sizes[mark].1);
    (first, steady, first_request, steady_request)
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` would pass other flags: this
    // binary has nothing to test, so it only runs under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let record = std::env::temp_dir().join(format!(
        "e2m-first-request-derived-{}.log",
        std::process::id()
    ));
    let (dtls, (first_contact, warm, first_request, steady_request), (rederived, _, _, _)) =
        runtime.block_on(async {
            (
                dtls_first_request().await,
                oscore_requests(Some(&record)).await,
                oscore_requests(None).await,
            )
        });
    let _ = std::fs::remove_file(&record);
    println!(
        "first secured CoAP request/response with the key in place (load {})",
        load()
    );
    println!(
        "{:<58} {:>9} {:>11} {:>13} {:>22}",
        "path", "datagrams", "round trips", "UDP payload", "+ IPv4/UDP (28/dgram)"
    );
    row("DTLS 1.2 PSK: cookie, full handshake, request", &dtls);
    row(
        "OSCORE, first contact (context never derived: recorded)",
        &first_contact,
    );
    row(
        "OSCORE, context derived before (no record: B.1.2 Echo)",
        &rederived,
    );
    row("OSCORE, context held by the EMSE", &warm);
    let pct = |a: usize, b: usize| 100.0 * a as f64 / b as f64;
    let with_headers = |c: &Count| c.octets + IP_UDP_HEADERS * c.datagrams;
    println!(
        "OSCORE / DTLS octets (goal <= 25 %, 1 round trip): first contact {:.1} % in {} round trip(s), held context {:.1} % in {}, derived before {:.1} % in {}",
        pct(first_contact.octets, dtls.octets),
        first_contact.round_trips,
        pct(warm.octets, dtls.octets),
        warm.round_trips,
        pct(rederived.octets, dtls.octets),
        rederived.round_trips,
    );
    println!(
        "with IPv4/UDP headers: first contact {:.1} %, held context {:.1} %, derived before {:.1} %",
        pct(with_headers(&first_contact), with_headers(&dtls)),
        pct(with_headers(&warm), with_headers(&dtls)),
        pct(with_headers(&rederived), with_headers(&dtls)),
    );
    println!(
        "OSCORE request with ID Context {first_request} octets, without {steady_request} octets"
    );
}
