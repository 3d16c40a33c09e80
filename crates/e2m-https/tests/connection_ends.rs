//! How the server stack ends connections and answers early (issue 16): TLS `close_notify`
//! on every close (idle keep-alive timeout, after an answer that closes, at shutdown and at
//! the end of its grace), 400 at once for a broken chunked coding, 413 before any
//! `100 Continue`, and every connection that ends before its handshake completes reported
//! with its reason class.
//!
//! The client is rustls (through tokio-rustls), which tells the two ends apart: a read
//! returns `Ok(0)` after the peer's `close_notify`, and an `UnexpectedEof` error when the
//! TCP connection ended without one ("peer closed connection without sending TLS
//! close_notify").

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests"
)]

mod server_support;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2m_https::metrics::HandshakeFailure;
use e2m_https::pki::Role;
use e2m_https::server::{Handler, HttpResponse, Limits, Request};
use e2m_https::tls::{ExpectedServer, client_config, profile_provider};
use http_body_util::Full;
use hyper::body::Bytes;
use server_support::{Echo, TestPki, raw_tls, start};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// How a connection's read side ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// `close_notify`, then the end of the stream.
    CloseNotify,
    /// The end of the TCP stream without `close_notify`.
    Truncated,
    /// Another error (e.g. a reset).
    Error(std::io::ErrorKind),
    /// Still open after the limit.
    Open,
}

/// Reads until the connection ends or `limit` passes: what was read, how it ended, when.
async fn read_to_end<R: AsyncRead + Unpin>(
    stream: &mut R,
    limit: Duration,
) -> (String, End, Duration) {
    let start = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        let left = limit.saturating_sub(start.elapsed());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) => break End::CloseNotify,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Ok(Err(error)) if error.kind() == std::io::ErrorKind::UnexpectedEof => {
                break End::Truncated;
            }
            Ok(Err(error)) => break End::Error(error.kind()),
            Err(_) => break End::Open,
        }
    };
    (
        String::from_utf8_lossy(&out).into_owned(),
        end,
        start.elapsed(),
    )
}

fn short_limits() -> Limits {
    Limits {
        handshake_timeout: Duration::from_secs(1),
        header_timeout: Duration::from_secs(1),
        body_timeout: Duration::from_secs(1),
        ..Limits::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_ends_with_close_notify() {
    let pki = TestPki::new();
    let server = start(&pki, short_limits(), Arc::new(Echo)).await;
    let mut tls = raw_tls(server.local_addr(), pki.emse_tls("emse-a"))
        .await
        .unwrap();
    tls.write_all(b"GET / HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let (text, end, after) = read_to_end(&mut tls, Duration::from_secs(5)).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert_eq!(end, End::CloseNotify, "idle close after {after:?}");
    assert!(after < Duration::from_secs(3), "{after:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_head_is_answered_then_closed_with_close_notify() {
    let pki = TestPki::new();
    let server = start(&pki, Limits::default(), Arc::new(Echo)).await;
    let mut tls = raw_tls(server.local_addr(), pki.emse_tls("emse-a"))
        .await
        .unwrap();
    // Two Hosts: 400, and the connection ends.
    tls.write_all(b"GET / HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n")
        .await
        .unwrap();
    let (text, end, _) = read_to_end(&mut tls, Duration::from_secs(5)).await;
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
    assert_eq!(end, End::CloseNotify);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_chunk_size_is_answered_400_at_once() {
    // The body timeout is the default 10 s: the answer must not wait for it.
    let pki = TestPki::new();
    let server = start(&pki, Limits::default(), Arc::new(Echo)).await;
    let mut tls = raw_tls(server.local_addr(), pki.emse_tls("emse-a"))
        .await
        .unwrap();
    let started = Instant::now();
    tls.write_all(
        b"POST / HTTP/1.1\r\nhost: 127.0.0.1\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n",
    )
    .await
    .unwrap();
    let (text, end, _) = read_to_end(&mut tls, Duration::from_secs(3)).await;
    let answered = started.elapsed();
    assert!(
        text.starts_with("HTTP/1.1 400"),
        "{text:?} after {answered:?}"
    );
    assert!(answered < Duration::from_secs(2), "{answered:?}");
    assert_eq!(end, End::CloseNotify);
    println!("broken chunked body answered 400 after {answered:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_continue_over_the_body_limit_gets_413_before_any_100() {
    let pki = TestPki::new();
    let server = start(&pki, Limits::default(), Arc::new(Echo)).await;
    for declared in [100_000u64, 10_000_000] {
        let mut tls = raw_tls(server.local_addr(), pki.emse_tls("emse-a"))
            .await
            .unwrap();
        let head = format!(
            "POST / HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: {declared}\r\nexpect: 100-continue\r\n\r\n"
        );
        tls.write_all(head.as_bytes()).await.unwrap();
        // The client sends no body until it hears 100 Continue.
        let (text, end, after) = read_to_end(&mut tls, Duration::from_secs(3)).await;
        assert!(
            text.starts_with("HTTP/1.1 413"),
            "declared {declared}: first answer {text:?}"
        );
        assert!(!text.contains("100 Continue"), "{text}");
        assert!(after < Duration::from_secs(2), "{after:?}");
        assert_eq!(end, End::CloseNotify);
    }
    // Within the limit, the exchange is the usual one: 100, then the answer.
    let mut tls = raw_tls(server.local_addr(), pki.emse_tls("emse-a"))
        .await
        .unwrap();
    tls.write_all(
        b"POST / HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = [0u8; 256];
    let n = tls.read(&mut buf).await.unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 100"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    tls.write_all(b"hello").await.unwrap();
    let n = tls.read(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(
        text.starts_with("HTTP/1.1 200") && text.ends_with("emse:emse-a 5"),
        "{text}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_idle_connections_with_close_notify() {
    let pki = TestPki::new();
    let server = start(&pki, Limits::default(), Arc::new(Echo)).await;
    let mut tls = raw_tls(server.local_addr(), pki.emse_tls("emse-a"))
        .await
        .unwrap();
    tls.write_all(b"GET / HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = tls.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    // Idle (keep-alive, header timeout 10 s) when the server stops.
    let stopping = tokio::spawn(server.shutdown());
    let (_, end, after) = read_to_end(&mut tls, Duration::from_secs(5)).await;
    assert_eq!(end, End::CloseNotify, "after {after:?}");
    stopping.await.unwrap();
}

/// Answers after a long time (a request still running when the shutdown grace ends).
struct Slow;

impl Handler for Slow {
    async fn handle(&self, _request: Request) -> HttpResponse {
        tokio::time::sleep(Duration::from_secs(30)).await;
        hyper::Response::new(Full::new(Bytes::from_static(b"late")))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_end_of_the_shutdown_grace_closes_with_close_notify() {
    let pki = TestPki::new();
    let limits = Limits {
        shutdown_grace: Duration::from_millis(500),
        ..Limits::default()
    };
    let server = start(&pki, limits, Arc::new(Slow)).await;
    let mut tls = raw_tls(server.local_addr(), pki.emse_tls("emse-a"))
        .await
        .unwrap();
    tls.write_all(b"GET / HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    server.shutdown().await;
    let stopped = started.elapsed();
    let (text, end, _) = read_to_end(&mut tls, Duration::from_secs(5)).await;
    assert_eq!(
        text, "",
        "no answer: the request was cut at the end of the grace"
    );
    assert_eq!(end, End::CloseNotify);
    assert!(
        stopped < Duration::from_secs(3),
        "shutdown took {stopped:?}"
    );
}

/// Echoes, and records the connections that ended before their handshake completed.
#[derive(Default)]
struct Recording {
    failures: Mutex<Vec<HandshakeFailure>>,
}

impl Handler for Recording {
    async fn handle(&self, request: Request) -> HttpResponse {
        Echo.handle(request).await
    }

    fn handshake_failed(&self, failure: HandshakeFailure) {
        self.failures.lock().unwrap().push(failure);
    }
}

impl Recording {
    /// Waits (up to 5 s) until `failure` has been recorded; returns whether it was, and
    /// forgets what was recorded.
    async fn saw(&self, failure: HandshakeFailure) -> Vec<HandshakeFailure> {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if self.failures.lock().unwrap().contains(&failure) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        std::mem::take(&mut *self.failures.lock().unwrap())
    }
}

async fn connect_from(local: [u8; 4], server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(IpAddr::from(local), 0))
        .unwrap();
    socket.connect(server).await.unwrap()
}

/// Whether the server closes `tcp` within `within`.
async fn closed_within(tcp: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let start = Instant::now();
    while start.elapsed() < within {
        match tokio::time::timeout(within - start.elapsed(), tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
    false
}

fn roots(pki: &TestPki) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for c in pki.ca() {
        roots.add(c).unwrap();
    }
    roots
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_failures_are_reported_by_reason() {
    use HandshakeFailure as F;
    let pki = TestPki::new();
    let other = TestPki::new(); // Another CA with the same names.
    let recording = Arc::new(Recording::default());
    let limits = Limits {
        handshake_timeout: Duration::from_secs(1),
        client_hello_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let server = start(&pki, limits, recording.clone()).await;
    let addr = server.local_addr();

    // No client certificate.
    let no_cert = rustls::ClientConfig::builder_with_provider(profile_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(&pki))
        .with_no_client_auth();
    if let Ok(mut tls) = raw_tls(addr, no_cert).await {
        let _ = tls.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
        let _ = read_to_end(&mut tls, Duration::from_secs(2)).await;
    }
    assert_eq!(recording.saw(F::NoCertificate).await, [F::NoCertificate]);

    // A certificate from another CA (naming the same EMSE).
    let foreign = client_config(
        &other.emse("emse-a"),
        &pki.ca(),
        ExpectedServer::AnyOfRole(Role::Emks),
    )
    .unwrap();
    if let Ok(mut tls) = raw_tls(addr, foreign).await {
        let _ = tls.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
        let _ = read_to_end(&mut tls, Duration::from_secs(2)).await;
    }
    assert_eq!(recording.saw(F::BadCertificate).await, [F::BadCertificate]);

    // The client refuses the server's certificate (it trusts another CA): its alert.
    let distrusting = client_config(
        &pki.emse("emse-a"),
        &other.ca(),
        ExpectedServer::AnyOfRole(Role::Emks),
    )
    .unwrap();
    assert!(raw_tls(addr, distrusting).await.is_err());
    assert_eq!(recording.saw(F::ClientAlert).await, [F::ClientAlert]);

    // Nothing in common: TLS 1.2 with a suite outside the profile.
    let incompatible = {
        let provider = rustls::crypto::CryptoProvider {
            cipher_suites: vec![
                rustls::crypto::ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
                rustls::crypto::ring::cipher_suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
            ],
            ..rustls::crypto::ring::default_provider()
        };
        rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .with_root_certificates(roots(&pki))
            .with_no_client_auth()
    };
    assert!(raw_tls(addr, incompatible).await.is_err());
    assert_eq!(recording.saw(F::Incompatible).await, [F::Incompatible]);

    // Not TLS at all.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(closed_within(&mut tcp, Duration::from_secs(2)).await);
    assert_eq!(recording.saw(F::Protocol).await, [F::Protocol]);

    // Connected, then gone without a word.
    drop(TcpStream::connect(addr).await.unwrap());
    assert_eq!(recording.saw(F::Closed).await, [F::Closed]);

    // Connected and silent: closed after the ClientHello timeout (300 ms).
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    assert!(closed_within(&mut tcp, Duration::from_secs(2)).await);
    let idle_for = started.elapsed();
    assert!(idle_for >= Duration::from_millis(250), "{idle_for:?}");
    assert_eq!(recording.saw(F::HelloTimeout).await, [F::HelloTimeout]);

    // A ClientHello, then nothing: the handshake timeout (1 s from arrival).
    let hello = {
        let mut connection = rustls::ClientConnection::new(
            Arc::new(pki.emse_tls("emse-a")),
            rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap(),
        )
        .unwrap();
        let mut octets = Vec::new();
        connection.write_tls(&mut octets).unwrap();
        octets
    };
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    tcp.write_all(&hello).await.unwrap();
    assert!(closed_within(&mut tcp, Duration::from_secs(3)).await);
    let stalled_for = started.elapsed();
    assert!(stalled_for >= Duration::from_millis(900), "{stalled_for:?}");
    assert_eq!(recording.saw(F::Timeout).await, [F::Timeout]);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_evictions_before_the_hello_are_reported() {
    use HandshakeFailure as F;
    let pki = TestPki::new();
    let recording = Arc::new(Recording::default());
    let limits = Limits {
        max_awaiting_hello: 3,
        max_awaiting_hello_per_source: 2,
        ..Limits::default()
    };
    let server = start(&pki, limits, recording.clone()).await;
    let addr = server.local_addr();

    // Source .2 holds its two; a third from it is closed at once.
    let mut first = connect_from([127, 0, 0, 2], addr).await;
    let mut second = connect_from([127, 0, 0, 2], addr).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut third = connect_from([127, 0, 0, 2], addr).await;
    assert!(closed_within(&mut third, Duration::from_secs(1)).await);
    assert_eq!(recording.saw(F::Refused).await, [F::Refused]);

    // Source .3 takes the last place; source .4 finds the pool full, and takes the place
    // of the oldest connection of .2 (which holds two, .4 none).
    let mut fourth = connect_from([127, 0, 0, 3], addr).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut fifth = connect_from([127, 0, 0, 4], addr).await;
    assert!(closed_within(&mut first, Duration::from_secs(1)).await);
    assert_eq!(recording.saw(F::Evicted).await, [F::Evicted]);
    for (name, tcp) in [
        ("second", &mut second),
        ("fourth", &mut fourth),
        ("fifth", &mut fifth),
    ] {
        assert!(
            !closed_within(tcp, Duration::from_millis(300)).await,
            "{name} was closed"
        );
    }
    // Now each source holds one: a newcomer from .5 is refused (no source holds two
    // more than it would).
    let mut sixth = connect_from([127, 0, 0, 5], addr).await;
    assert!(closed_within(&mut sixth, Duration::from_secs(1)).await);
    assert_eq!(recording.saw(F::Refused).await, [F::Refused]);
    server.shutdown().await;
}

/// Records what the EMKS tells its metrics about handshakes.
#[derive(Debug, Default)]
struct Observer {
    failures: Mutex<Vec<HandshakeFailure>>,
}

impl e2m_https::metrics::EmksObserver for Observer {
    fn handshake_failed(&self, failure: HandshakeFailure) {
        self.failures.lock().unwrap().push(failure);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emks_tells_its_observer_about_failed_handshakes() {
    use e2m_emks::{Emks, EmksConfig};
    use e2m_https::emks::{EmksServerOptions, start_emks};
    let pki = TestPki::new();
    let other = TestPki::new();
    let observer = Arc::new(Observer::default());
    let emks = start_emks(
        Arc::new(Emks::in_memory(EmksConfig::default())),
        &pki.dir,
        EmksServerOptions {
            observer: Some(observer.clone()),
            notifications: false,
            ..EmksServerOptions::default()
        },
    )
    .await
    .unwrap();
    let foreign = client_config(
        &other.emse("emse-a"),
        &pki.ca(),
        ExpectedServer::AnyOfRole(Role::Emks),
    )
    .unwrap();
    if let Ok(mut tls) = raw_tls(emks.local_addr(), foreign).await {
        let _ = tls.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
        let _ = read_to_end(&mut tls, Duration::from_secs(2)).await;
    }
    let start = Instant::now();
    while observer.failures.lock().unwrap().is_empty() && start.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        *observer.failures.lock().unwrap(),
        [HandshakeFailure::BadCertificate]
    );
    emks.shutdown().await;
}
