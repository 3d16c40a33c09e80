//! The EMKS's HTTPS transport: mutual TLS, the TLS profile, the hardening (body cap,
//! handshake/header/body timeouts, per-peer rate limit) and the EMKS composed in process.
//! Loopback only; every loop is bounded.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests"
)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2m_https::pki::{Credentials, GeneratedPki, PeerIdentity, PkiDir, PkiSpec, Role};
use e2m_https::ratelimit::RateLimit;
use e2m_https::server::{Handler, HttpResponse, Limits, Request, ServerHandle, serve};
use e2m_https::tls::{ExpectedServer, client_config, profile_provider, server_config};
use e2m_keyid::EmseId;
use http_body_util::Full;
use hyper::body::Bytes;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;

fn temp_dir(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    std::env::temp_dir().join(format!("e2m-{tag}-{}-{nanos}", std::process::id()))
}

fn emse(id: &str) -> EmseId {
    EmseId::new(id).unwrap()
}

struct TestPki {
    dir: PkiDir,
}

impl TestPki {
    fn new() -> TestPki {
        let spec = PkiSpec::new(vec![emse("emse-a"), emse("emse-b")]).unwrap();
        let dir = GeneratedPki::generate(&spec)
            .unwrap()
            .write_to(&temp_dir("pki"))
            .unwrap();
        TestPki { dir }
    }
    fn ca(&self) -> Vec<rustls::pki_types::CertificateDer<'static>> {
        self.dir.ca_certificates().unwrap()
    }
    fn emse(&self, id: &str) -> Credentials {
        self.dir.emse(&emse(id)).unwrap()
    }
    /// The EMSE's callback (notification endpoint) certificate.
    fn callback(&self, id: &str) -> Credentials {
        self.dir.emse_callback(&emse(id)).unwrap()
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.dir.path());
    }
}

/// Answers with the authenticated peer identity and the body length.
struct Echo;

impl Handler for Echo {
    async fn handle(&self, request: Request) -> HttpResponse {
        let text = format!("{} {}", request.peer, request.body.len());
        hyper::Response::new(Full::new(Bytes::from(text)))
    }
}

async fn start_echo(pki: &TestPki, limits: Limits) -> ServerHandle {
    let tls = server_config(
        &pki.dir.emks().unwrap(),
        &pki.ca(),
        &[Role::Emse, Role::Hss],
    )
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    serve(listener, tls, limits, Arc::new(Echo)).unwrap()
}

fn short_limits() -> Limits {
    Limits {
        handshake_timeout: Duration::from_secs(1),
        header_timeout: Duration::from_secs(1),
        body_timeout: Duration::from_secs(1),
        ..Limits::default()
    }
}

fn http_client(creds: &Credentials, pki: &TestPki) -> reqwest::Client {
    let tls = client_config(creds, &pki.ca(), ExpectedServer::AnyOfRole(Role::Emks)).unwrap();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .no_proxy()
        .http1_only()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// A raw TLS connection (for writing bytes slowly).
async fn raw_tls(
    addr: SocketAddr,
    config: rustls::ClientConfig,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
}

/// Reads until EOF or error, bounded by `limit`; returns what was read and when it ended.
async fn read_until_closed<R: AsyncReadExt + Unpin>(
    stream: &mut R,
    limit: Duration,
) -> (Vec<u8>, Option<Duration>) {
    let start = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while start.elapsed() < limit {
        match tokio::time::timeout(limit - start.elapsed(), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (out, Some(start.elapsed())),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    (out, None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_identity_comes_from_the_verified_certificate() {
    let pki = TestPki::new();
    let server = start_echo(&pki, Limits::default()).await;
    let url = format!("https://{}/", server.local_addr());

    let a = http_client(&pki.emse("emse-a"), &pki);
    let text = a
        .post(&url)
        .body("xyz")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(text, "emse:emse-a 3");
    let hss = http_client(&pki.dir.hss().unwrap(), &pki);
    let text = hss.get(&url).send().await.unwrap().text().await.unwrap();
    assert_eq!(text, "hss:hss 0");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_or_foreign_client_certificate_is_refused() {
    let pki = TestPki::new();
    let other = TestPki::new(); // Another CA with the same names.
    let server = start_echo(&pki, Limits::default()).await;

    // No client certificate.
    let roots = {
        let mut r = rustls::RootCertStore::empty();
        for c in pki.ca() {
            r.add(c).unwrap();
        }
        r
    };
    let no_cert = rustls::ClientConfig::builder_with_provider(profile_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let outcome = async {
        let mut tls = raw_tls(server.local_addr(), no_cert).await?;
        tls.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await?;
        let mut buf = [0u8; 64];
        let n = tls.read(&mut buf).await?;
        Ok::<usize, std::io::Error>(n)
    }
    .await;
    assert!(
        matches!(outcome, Err(_) | Ok(0)),
        "a client without a certificate got an answer"
    );

    // A certificate from another CA naming the same EMSE.
    let mut foreign = client_config(
        &other.emse("emse-a"),
        &pki.ca(),
        ExpectedServer::AnyOfRole(Role::Emks),
    )
    .unwrap();
    foreign.alpn_protocols.clear();
    let outcome = async {
        let mut tls = raw_tls(server.local_addr(), foreign).await?;
        tls.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await?;
        let mut buf = [0u8; 64];
        tls.read(&mut buf).await
    }
    .await;
    assert!(
        matches!(outcome, Err(_) | Ok(0)),
        "a foreign certificate got an answer"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_check_the_server_role() {
    // An EMSE's callback certificate has serverAuth (for its notification endpoint) and
    // names 127.0.0.1, so host-name checks alone would accept it as the EMKS there.
    let pki = TestPki::new();
    let tls = server_config(&pki.callback("emse-b"), &pki.ca(), &[Role::Emse]).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fake = serve(listener, tls, Limits::default(), Arc::new(Echo)).unwrap();
    let client = http_client(&pki.emse("emse-a"), &pki);
    let result = client
        .get(format!("https://{}/", fake.local_addr()))
        .send()
        .await;
    assert!(result.is_err(), "an EMSE was accepted as the EMKS");
    // But a client expecting exactly emse-b accepts it.
    let exact = client_config(
        &pki.emse("emse-a"),
        &pki.ca(),
        ExpectedServer::Exactly(PeerIdentity::Emse(emse("emse-b"))),
    )
    .unwrap();
    let mut tls = raw_tls(fake.local_addr(), exact).await.unwrap();
    tls.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let (out, _) = read_until_closed(&mut tls, Duration::from_secs(5)).await;
    assert!(String::from_utf8_lossy(&out).ends_with("emse:emse-a 0"));
    fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_profile_versions_and_suites_are_accepted() {
    use rustls::crypto::ring::cipher_suite as cs;
    let pki = TestPki::new();
    let server = start_echo(&pki, Limits::default()).await;
    let creds = pki.emse("emse-a");
    let roots = {
        let mut r = rustls::RootCertStore::empty();
        for c in pki.ca() {
            r.add(c).unwrap();
        }
        Arc::new(r)
    };
    let with_suites =
        |suites: Vec<rustls::SupportedCipherSuite>,
         versions: &[&'static rustls::SupportedProtocolVersion]| {
            let provider = rustls::crypto::CryptoProvider {
                cipher_suites: suites,
                ..rustls::crypto::ring::default_provider()
            };
            rustls::ClientConfig::builder_with_provider(Arc::new(provider))
                .with_protocol_versions(versions)
                .unwrap()
                .with_root_certificates(roots.clone())
                .with_client_auth_cert(creds.chain.clone(), creds.key())
                .unwrap()
        };
    let mut negotiated = Vec::new();
    for (suites, version, ok) in [
        (
            vec![cs::TLS13_AES_128_GCM_SHA256],
            &rustls::version::TLS13,
            true,
        ),
        (
            vec![cs::TLS13_AES_256_GCM_SHA384],
            &rustls::version::TLS13,
            true,
        ),
        (
            vec![cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256],
            &rustls::version::TLS12,
            true,
        ),
        (
            vec![cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384],
            &rustls::version::TLS12,
            true,
        ),
        // Not in the TS 33.210 §6.2.3 set used here.
        (
            vec![cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256],
            &rustls::version::TLS12,
            false,
        ),
    ] {
        let config = with_suites(suites, &[version]);
        let result = raw_tls(server.local_addr(), config).await;
        assert_eq!(result.is_ok(), ok, "{version:?}");
        if let Ok(tls) = result {
            let (_, conn) = tls.get_ref();
            negotiated.push((
                conn.protocol_version(),
                conn.negotiated_cipher_suite().map(|s| s.suite()),
            ));
        }
    }
    assert_eq!(negotiated.len(), 4);
    // TLS 1.1 and older cannot even be configured in rustls; openssl checks it if present.
    if let Ok(out) = std::process::Command::new("openssl")
        .args(["s_client", "-tls1_1", "-connect"])
        .arg(server.local_addr().to_string())
        .stdin(std::process::Stdio::null())
        .output()
    {
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        // Either our server refuses it or the local OpenSSL will not even offer it.
        assert!(
            !out.status.success() && !text.contains("Cipher is ECDHE"),
            "TLS 1.1 negotiated: {text}"
        );
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_64_kib_get_413() {
    let pki = TestPki::new();
    let server = start_echo(&pki, Limits::default()).await;
    let url = format!("https://{}/", server.local_addr());
    let client = http_client(&pki.emse("emse-a"), &pki);

    let at_limit = client
        .post(&url)
        .body(vec![b'x'; 64 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(at_limit.status(), 200);
    assert_eq!(at_limit.text().await.unwrap(), "emse:emse-a 65536");

    let over = client
        .post(&url)
        .body(vec![b'x'; 64 * 1024 + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(over.status(), 413);
    assert_eq!(
        over.headers().get("content-type").unwrap(),
        "application/problem+xml"
    );

    // Chunked, with no Content-Length: the cap applies while reading.
    let config = client_config(
        &pki.emse("emse-a"),
        &pki.ca(),
        ExpectedServer::AnyOfRole(Role::Emks),
    )
    .unwrap();
    let mut tls = raw_tls(server.local_addr(), config).await.unwrap();
    tls.write_all(b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    let chunk = vec![b'y'; 16 * 1024];
    for _ in 0..5 {
        if tls
            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await
            .is_err()
            || tls.write_all(&chunk).await.is_err()
            || tls.write_all(b"\r\n").await.is_err()
        {
            break;
        }
    }
    let _ = tls.write_all(b"0\r\n\r\n").await;
    let (out, _) = read_until_closed(&mut tls, Duration::from_secs(5)).await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dribbled_handshake_is_dropped_within_the_timeout() {
    let pki = TestPki::new();
    let server = start_echo(&pki, short_limits()).await;
    let mut tcp = TcpStream::connect(server.local_addr()).await.unwrap();
    // A TLS record header, then one byte every 200 ms, never a full ClientHello.
    let start = Instant::now();
    let mut closed_after = None;
    for byte in [0x16u8, 0x03, 0x01, 0x02, 0x00]
        .iter()
        .chain([0u8; 40].iter())
    {
        if tcp.write_all(&[*byte]).await.is_err() {
            closed_after = Some(start.elapsed());
            break;
        }
        let mut buf = [0u8; 16];
        match tokio::time::timeout(Duration::from_millis(200), tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed_after = Some(start.elapsed());
                break;
            }
            _ => {}
        }
    }
    let closed_after = closed_after.expect("server never closed a dribbling handshake");
    println!("dribbled handshake dropped after {closed_after:?} (timeout 1 s)");
    assert!(closed_after >= Duration::from_millis(900));
    assert!(closed_after < Duration::from_secs(4));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dribbled_headers_and_idle_connections_are_dropped_within_the_timeout() {
    let pki = TestPki::new();
    let server = start_echo(&pki, short_limits()).await;
    let config = client_config(
        &pki.emse("emse-a"),
        &pki.ca(),
        ExpectedServer::AnyOfRole(Role::Emks),
    )
    .unwrap();

    // Headers, one byte every 100 ms: would take 5 s; the timeout is 1 s.
    let mut tls = raw_tls(server.local_addr(), config.clone()).await.unwrap();
    let head = b"GET / HTTP/1.1\r\nhost: 127.0.0.1\r\nx-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let start = Instant::now();
    let mut closed_after = None;
    for byte in head {
        if tls.write_all(&[*byte]).await.is_err() {
            closed_after = Some(start.elapsed());
            break;
        }
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(100), tls.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed_after = Some(start.elapsed());
                break;
            }
            Ok(Ok(_)) => {} // e.g. a 408 before closing
            Err(_) => {}
        }
    }
    let closed_after = closed_after.expect("server never closed a dribbling header");
    println!("dribbled header dropped after {closed_after:?} (timeout 1 s)");
    assert!(closed_after >= Duration::from_millis(900));
    assert!(closed_after < Duration::from_secs(4));

    // An idle keep-alive connection is closed by the same timer.
    let mut tls = raw_tls(server.local_addr(), config).await.unwrap();
    tls.write_all(b"GET / HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let start = Instant::now();
    let (out, closed) = read_until_closed(&mut tls, Duration::from_secs(5)).await;
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200"));
    let closed = closed.expect("idle connection never closed");
    println!(
        "idle keep-alive connection closed after {:?}",
        start.elapsed()
    );
    assert!(closed < Duration::from_secs(4));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dribbled_body_is_dropped_within_the_timeout() {
    let pki = TestPki::new();
    // Only the body timer is short: a 1 s handshake timeout failed this test's own
    // handshake once while the other tests of this file loaded the 2-core machine.
    let limits = Limits {
        body_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let server = start_echo(&pki, limits).await;
    let config = client_config(
        &pki.emse("emse-a"),
        &pki.ca(),
        ExpectedServer::AnyOfRole(Role::Emks),
    )
    .unwrap();
    let mut tls = raw_tls(server.local_addr(), config).await.unwrap();
    tls.write_all(b"POST / HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 100\r\n\r\n")
        .await
        .unwrap();
    let start = Instant::now();
    let mut answer = Vec::new();
    let mut closed_after = None;
    for _ in 0..100 {
        if tls.write_all(b"z").await.is_err() {
            closed_after = Some(start.elapsed());
            break;
        }
        let mut buf = [0u8; 1024];
        match tokio::time::timeout(Duration::from_millis(100), tls.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed_after = Some(start.elapsed());
                break;
            }
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    let closed_after = closed_after.expect("server never closed a dribbling body");
    println!("dribbled body dropped after {closed_after:?} (timeout 1 s)");
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 408"));
    assert!(closed_after >= Duration::from_millis(900));
    assert!(closed_after < Duration::from_secs(4));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_from_one_source_do_not_lock_out_another() {
    // Issue 9 item 2: 3,000 idle TCP connections from one source (127.0.0.1) used to take
    // every connection slot for the length of the handshake timeout; a legitimate EMSE on
    // another address (127.0.0.2) must still be served within 1 s.
    let pki = TestPki::new();
    let server = start_echo(&pki, Limits::default()).await;
    let addr = server.local_addr();
    // All at once, as a flood arrives (each connect bounded; a refused one is fine).
    let mut connects = tokio::task::JoinSet::new();
    for _ in 0..3000 {
        connects.spawn(async move {
            tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await
        });
    }
    let mut idle = Vec::new();
    while let Some(connected) = connects.join_next().await {
        if let Ok(Ok(Ok(tcp))) = connected {
            idle.push(tcp);
        }
    }
    let tls = client_config(
        &pki.emse("emse-a"),
        &pki.ca(),
        ExpectedServer::AnyOfRole(Role::Emks),
    )
    .unwrap();
    let legitimate = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .no_proxy()
        .http1_only()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let started = Instant::now();
    let answer = tokio::time::timeout(
        Duration::from_secs(1),
        legitimate
            .post(format!("https://{addr}/"))
            .body("registration")
            .send(),
    )
    .await;
    let elapsed = started.elapsed();
    let status = answer
        .unwrap_or_else(|_| {
            panic!(
                "no answer within 1 s behind {} idle connections",
                idle.len()
            )
        })
        .unwrap()
        .status();
    assert_eq!(status, 200);
    println!(
        "served in {elapsed:?} behind {} idle connections from one source",
        idle.len()
    );
    drop(idle);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hss_has_its_own_budget_and_its_client_honours_retry_after() {
    // Issue 9 item 12: the HSS shared the EMSEs' budget, and neither the client nor the
    // `hss` example retried, so a push burst lost keys. Now the HSS role has its own budget,
    // and a rate-limited push is sent again after `Retry-After`, a bounded number of times.
    struct Accept;
    impl Handler for Accept {
        async fn handle(&self, _request: Request) -> HttpResponse {
            let mut response = hyper::Response::new(Full::new(Bytes::new()));
            *response.status_mut() = hyper::StatusCode::NO_CONTENT;
            response
        }
    }
    let pki = TestPki::new();
    let tight = RateLimit {
        per_second: 1.0,
        burst: 1,
    };
    let limits = Limits {
        rate: tight,
        hss_rate: RateLimit {
            per_second: 1.0,
            burst: 2,
        },
        ..Limits::default()
    };
    let tls = server_config(
        &pki.dir.emks().unwrap(),
        &pki.ca(),
        &[Role::Emse, Role::Hss],
    )
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = serve(listener, tls, limits, Arc::new(Accept)).unwrap();
    let base = format!("https://{}", server.local_addr());
    let push = e2m_msg::IntermediateKeyPush {
        imsi: e2m_keyid::Imsi::new("001010123456789").unwrap(),
        key_id: e2m_msg::KeyIdSource::RandLsb32(e2m_keyid::KeyId::from_u32(1)),
        int_key: e2m_kdf::E2mIntKey::from_array([9; 32]),
        created: e2m_msg::Timestamp::from_unix_secs(1_800_000_000),
    };
    let hss = pki.dir.hss().unwrap();
    // The EMSE's budget (burst 1) is spent; the HSS's (burst 2) is its own.
    let emse = http_client(&pki.emse("emse-a"), &pki);
    assert_eq!(
        emse.get(format!("{base}/")).send().await.unwrap().status(),
        204
    );
    assert_eq!(
        emse.get(format!("{base}/")).send().await.unwrap().status(),
        429
    );
    let client = e2m_https::client::EmksClient::new(&base, &hss, &pki.ca()).unwrap();
    let started = Instant::now();
    for _ in 0..3 {
        // The third is over the HSS's burst: answered 429, then sent again after
        // Retry-After (1 s) and accepted.
        client.push_intermediate_key(&push).await.unwrap();
    }
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "the third push was not held back by the budget"
    );
    // Without retries, a refused push is an error the caller sees (never silently lost).
    let no_retry = e2m_https::client::EmksClient::with_options(
        &base,
        &hss,
        &pki.ca(),
        &e2m_https::client::ClientOptions {
            push_retries: 0,
            ..Default::default()
        },
    )
    .unwrap();
    let refused = no_retry.push_intermediate_key(&push).await.unwrap_err();
    assert_eq!(
        refused.problem_cause(),
        None,
        "the generic handler answers a bare problem: {refused}"
    );
    assert!(refused.to_string().contains("429"), "{refused}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_peer_has_its_own_rate_limit() {
    let pki = TestPki::new();
    let limits = Limits {
        rate: RateLimit {
            per_second: 0.5,
            burst: 3,
        },
        ..Limits::default()
    };
    let server = start_echo(&pki, limits).await;
    let url = format!("https://{}/", server.local_addr());
    let a = http_client(&pki.emse("emse-a"), &pki);
    let b = http_client(&pki.emse("emse-b"), &pki);
    for _ in 0..3 {
        assert_eq!(a.get(&url).send().await.unwrap().status(), 200);
    }
    let limited = a.get(&url).send().await.unwrap();
    assert_eq!(limited.status(), 429);
    let retry_after: u64 = limited
        .headers()
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after));
    // Another EMSE is unaffected.
    assert_eq!(b.get(&url).send().await.unwrap().status(), 200);
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// The EMKS in-process: the whole REST binding through the client types, notifications to
// an EMSE's endpoint, and no secret in any log line (captured at TRACE, including the
// `log` records of rustls).

mod in_process {
    use std::io::Write;
    use std::sync::{Arc, Mutex, OnceLock};
    use std::time::Duration;

    use e2m_emks::{Emks, EmksConfig};
    use e2m_https::client::{ClientError, EmksClient};
    use e2m_https::emks::{EmksServerOptions, start_emks};
    use e2m_https::notify::start_notification_endpoint;
    use e2m_https::server::Limits;
    use e2m_kdf::{E2mIntKey, E2mProfile};
    use e2m_keyid::E2mKeyDeriver;
    use e2m_keyid::{AppIdentity, Imsi, KeyId};
    use e2m_keystore::IdentityMap;
    use e2m_msg::{
        EventSet, EventType, IntermediateKeyPush, KeyIdSource, KeyRequest, ProblemCause,
        Subscription, Timestamp, UeRef,
    };
    use tokio::net::TcpListener;

    use super::{TestPki, emse};

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Every log line of this test binary from now on, at TRACE.
    fn capture() -> &'static Capture {
        static CAPTURE: OnceLock<Capture> = OnceLock::new();
        CAPTURE.get_or_init(|| {
            use tracing_subscriber::util::SubscriberInitExt;
            let capture = Capture::default();
            let writer = capture.clone();
            tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .finish()
                .try_init()
                .expect("install the capturing subscriber");
            capture
        })
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn base64(bytes: &[u8]) -> String {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b))
                << (8 * (3 - chunk.len()));
            for i in 0..=chunk.len() {
                out.push(char::from(T[((n >> (18 - 6 * i)) & 63) as usize]));
            }
        }
        out
    }

    fn now() -> Timestamp {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        Timestamp::from_unix_secs(secs)
    }

    fn random_key() -> [u8; 32] {
        // Distinct per run, without a new dependency: hash the time and a counter.
        use std::hash::{BuildHasher, Hasher};
        let mut out = [0u8; 32];
        for (i, chunk) in out.chunks_mut(8).enumerate() {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_usize(i);
            chunk.copy_from_slice(&h.finish().to_le_bytes());
        }
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_binding_end_to_end_and_no_secret_in_any_log_line() {
        let capture = capture();
        let pki = TestPki::new();
        let app = AppIdentity::new("sensor-17@iot.example.com").unwrap();
        let imsi = Imsi::new("001010123456789").unwrap();
        // The endpoints listen on ephemeral ports of 127.0.0.1 (which the EMSE
        // certificates name): ports other than 443 must be allowed for them.
        let config = EmksConfig::default().allow_certificate_callback_ports(1024..=65535);
        let core = Arc::new(Emks::in_memory(config));
        core.identities()
            .provision(&emse("emse-a"), &app, &imsi)
            .await
            .unwrap();
        let server = start_emks(core, &pki.dir, EmksServerOptions::default())
            .await
            .unwrap();
        let ca = pki.ca();
        let hss = EmksClient::new(&server.base_url(), &pki.dir.hss().unwrap(), &ca).unwrap();
        let a = EmksClient::new(&server.base_url(), &pki.emse("emse-a"), &ca).unwrap();
        let b = EmksClient::new(&server.base_url(), &pki.emse("emse-b"), &ca).unwrap();

        // EMSE A's notification endpoint; EMSE B's too (for the misdirected callback).
        let mut a_notes = start_notification_endpoint(
            TcpListener::bind("127.0.0.1:0").await.unwrap(),
            &pki.callback("emse-a"),
            &ca,
            Limits::default(),
        )
        .unwrap();
        let mut b_notes = start_notification_endpoint(
            TcpListener::bind("127.0.0.1:0").await.unwrap(),
            &pki.callback("emse-b"),
            &ca,
            Limits::default(),
        )
        .unwrap();

        let k1 = random_key();
        let id1 = KeyId::from_u32(0x0102_0304);
        hss.push_intermediate_key(&IntermediateKeyPush {
            imsi: imsi.clone(),
            key_id: KeyIdSource::RandLsb32(id1),
            int_key: E2mIntKey::from_array(k1),
            created: now(),
        })
        .await
        .unwrap();

        // Only the HSS may push; only EMSEs may register.
        let err = a
            .push_intermediate_key(&IntermediateKeyPush {
                imsi: imsi.clone(),
                key_id: KeyIdSource::RandLsb32(id1),
                int_key: E2mIntKey::from_array(k1),
                created: now(),
            })
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::WrongRole { .. }));
        assert!(hss.register(None).await.is_err());

        // Registration: own EMSE_Id; a different one is refused (issue 5 demo case).
        let err = b.register_as(emse("emse-a"), None).await.unwrap_err();
        assert_eq!(err.problem_cause(), Some(ProblemCause::EmseNotAuthorized));
        let session = a.register(Some(a_notes.callback.clone())).await.unwrap();
        let b_session = b.register(None).await.unwrap();

        // Subscribe: A at its own endpoint; A again at B's endpoint (misdirected).
        a.subscribe(&Subscription {
            events: EventSet::single(EventType::KeyAvailable),
            ue: Some(UeRef::AppIdentity(app.clone())),
            callback: a_notes.callback.clone(),
        })
        .await
        .unwrap();
        a.subscribe(&Subscription {
            events: EventSet::single(EventType::KeyAvailable),
            ue: Some(UeRef::AppIdentity(app.clone())),
            callback: b_notes.callback.clone(),
        })
        .await
        .unwrap();

        // Key fetch: e2m_key for emse-a.
        let request = KeyRequest {
            session_id: session.session_id.copy_secret(),
            ue: UeRef::AppIdentity(app.clone()),
            key_id: id1,
        };
        let key = a.fetch_key(&request).await.unwrap();
        let expected = E2mKeyDeriver::new(&E2mIntKey::from_array(k1), E2mProfile::PROVISIONAL)
            .unwrap()
            .derive(&emse("emse-a"))
            .unwrap();
        assert!(key.key == expected);
        // A key id not held: the UE must re-authenticate.
        let err = a
            .fetch_key(&KeyRequest {
                key_id: KeyId::from_u32(7),
                ..super::copy_request(&request)
            })
            .await
            .unwrap_err();
        assert_eq!(err.problem_cause(), Some(ProblemCause::KeyNotAvailable));
        // B with A's session: refused as an unknown session (no existence oracle); B with
        // its own session asking for A's UE: unknown UE.
        assert_eq!(
            b.fetch_key(&request).await.unwrap_err().problem_cause(),
            Some(ProblemCause::UnknownSession)
        );
        assert_eq!(
            b.fetch_key(&KeyRequest {
                session_id: b_session.session_id,
                ..super::copy_request(&request)
            })
            .await
            .unwrap_err()
            .problem_cause(),
            Some(ProblemCause::UeUnknown)
        );

        // Re-authentication: a new key → a key-available notification at A's endpoint only.
        let k2 = random_key();
        let id2 = KeyId::from_u32(0x0a0b_0c0d);
        hss.push_intermediate_key(&IntermediateKeyPush {
            imsi: imsi.clone(),
            key_id: KeyIdSource::RandLsb32(id2),
            int_key: E2mIntKey::from_array(k2),
            created: now(),
        })
        .await
        .unwrap();
        let note = tokio::time::timeout(Duration::from_secs(10), a_notes.notifications.recv())
            .await
            .expect("no notification within 10 s")
            .unwrap();
        assert_eq!(note.notification.event, EventType::KeyAvailable);
        assert_eq!(note.notification.key_id, id2);
        assert_eq!(note.from.role(), e2m_https::pki::Role::Emks);
        // The subscription pointing at B's endpoint fails in the TLS handshake (B's
        // certificate does not name emse-a): B receives nothing.
        assert!(
            tokio::time::timeout(Duration::from_millis(500), b_notes.notifications.recv())
                .await
                .is_err(),
            "a notification for emse-a reached emse-b"
        );
        // The old key still works (race cases a/b), the new one too.
        assert!(a.fetch_key(&request).await.is_ok());
        let key2 = a
            .fetch_key(&KeyRequest {
                key_id: id2,
                ..super::copy_request(&request)
            })
            .await
            .unwrap();

        let session_text = session.session_id.to_text().as_str().to_owned();
        a.deregister(session.session_id).await.unwrap();
        assert_eq!(
            a.fetch_key(&request).await.unwrap_err().problem_cause(),
            Some(ProblemCause::UnknownSession)
        );
        server.shutdown().await;
        a_notes.handle.shutdown().await;
        b_notes.handle.shutdown().await;

        // A request as the server stack holds it, logged with `{:?}` (issue 9 item 9): the
        // session id in its path and the key in its body must not reach the log.
        let logged = e2m_https::server::Request {
            peer: e2m_https::pki::PeerIdentity::Hss(e2m_https::pki::NodeName::new("hss").unwrap()),
            peer_hosts: Vec::new().into(),
            method: hyper::Method::POST,
            uri: format!("/e2m/v1/sessions/{session_text}/keys?appIdentity=a%40b&keyId=00000001")
                .parse()
                .unwrap(),
            headers: hyper::HeaderMap::new(),
            body: hyper::body::Bytes::from(
                e2m_msg::XmlMessage::encode(&IntermediateKeyPush {
                    imsi: imsi.clone(),
                    key_id: KeyIdSource::RandLsb32(id1),
                    int_key: E2mIntKey::from_array(k1),
                    created: now(),
                })
                .as_bytes()
                .to_vec(),
            ),
        };
        tracing::trace!("a request: {logged:?}");
        assert!(format!("{logged:?}").contains("/e2m/v1/sessions/<redacted>/keys"));

        // The logs: audit records are there; no key and no session id in any form.
        let logs = capture.0.lock().unwrap().clone();
        let text = String::from_utf8_lossy(&logs).to_string();
        assert!(
            text.contains("action=fetch-key"),
            "no audit records captured"
        );
        // The UE of a fetch, as the record names it.
        assert!(
            text.contains("ue=app:sensor-17@iot.example.com"),
            "no UE in the fetch's audit record"
        );
        assert!(text.contains("TRACE"), "not captured at TRACE");
        let derived2 = key2.key.expose_secret().to_vec();
        let secrets: Vec<(&str, Vec<u8>)> = vec![
            ("e2m_int_key 1", k1.to_vec()),
            ("e2m_int_key 2", k2.to_vec()),
            ("e2m_key 1", expected.expose_secret().to_vec()),
            ("e2m_key 2", derived2),
        ];
        for (name, secret) in &secrets {
            for form in [hex(secret), hex(secret).to_uppercase(), base64(secret)] {
                assert!(!text.contains(&form), "{name} found in the logs");
            }
            assert!(
                !logs.windows(secret.len()).any(|w| w == secret.as_slice()),
                "{name} (raw) found in the logs"
            );
        }
        assert!(
            !text.contains(&session_text),
            "a session id found in the logs"
        );
        println!(
            "captured {} log lines at TRACE; no key or session id in them",
            text.lines().count()
        );
    }
}

/// An explicit copy of a key request (it holds the session id, a secret, so it is not
/// `Clone`).
fn copy_request(request: &e2m_msg::KeyRequest) -> e2m_msg::KeyRequest {
    e2m_msg::KeyRequest {
        session_id: request.session_id.copy_secret(),
        ue: request.ue.clone(),
        key_id: request.key_id,
    }
}

// ---------------------------------------------------------------------------------------
// Request heads checked on the wire (issue 9 item 8) and cheap refusals (item 3): raw
// requests over TLS, against the EMKS and against a handler that counts its calls.

mod wire {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use e2m_emks::{Emks, EmksConfig};
    use e2m_https::emks::{EmksServerOptions, start_emks};
    use e2m_https::pki::Role;
    use e2m_https::ratelimit::RateLimit;
    use e2m_https::server::{Handler, HttpResponse, Limits, Request, serve};
    use e2m_https::tls::{ExpectedServer, client_config, server_config};
    use e2m_keystore::SessionStore;
    use e2m_msg::XmlMessage;
    use http_body_util::Full;
    use hyper::body::Bytes;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    use super::{TestPki, emse, raw_tls, read_until_closed};

    fn registration() -> String {
        e2m_msg::Registration {
            emse_id: emse("emse-a"),
            callback: None,
        }
        .encode()
        .as_str()
        .to_owned()
    }

    /// Sends `request` on a new TLS connection as EMSE A; returns everything the server
    /// sent until it closed (or 5 s passed) and whether it closed.
    async fn exchange(pki: &TestPki, addr: std::net::SocketAddr, request: &[u8]) -> (String, bool) {
        let config = client_config(
            &pki.emse("emse-a"),
            &pki.ca(),
            ExpectedServer::AnyOfRole(Role::Emks),
        )
        .unwrap();
        let mut tls = raw_tls(addr, config).await.unwrap();
        tls.write_all(request).await.unwrap();
        let (out, closed) = read_until_closed(&mut tls, Duration::from_secs(5)).await;
        (String::from_utf8_lossy(&out).into_owned(), closed.is_some())
    }

    /// The one response in `text` is a problem document with `status` (in the status line
    /// and in the document) and `cause`.
    fn assert_problem(text: &str, status: u16, cause: &str) {
        assert!(
            text.starts_with(&format!("HTTP/1.1 {status} ")),
            "not {status}: {text}"
        );
        let lower = text.to_ascii_lowercase();
        assert!(
            lower.contains("content-type: application/problem+xml"),
            "not a problem document: {text}"
        );
        assert!(
            text.contains(&format!("<status>{status}</status>")),
            "document status: {text}"
        );
        assert!(text.contains(&format!("<cause>{cause}</cause>")), "{text}");
        let status_lines = text.lines().filter(|l| l.starts_with("HTTP/1.1 ")).count();
        assert_eq!(status_lines, 1, "one response: {text}");
    }

    type MemoryEmks = e2m_https::emks::EmksServer<
        e2m_keystore::MemoryIntKeyStore,
        e2m_keystore::MemoryIdentityMap,
        e2m_keystore::MemorySessionStore,
        e2m_keystore::MemorySubscriptionStore,
    >;

    async fn start(pki: &TestPki, limits: Limits) -> MemoryEmks {
        let core = Arc::new(Emks::in_memory(EmksConfig::default()));
        start_emks(
            core,
            &pki.dir,
            EmksServerOptions {
                limits,
                notifications: false,
                ..EmksServerOptions::default()
            },
        )
        .await
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fragments_and_absolute_targets_are_refused_not_served() {
        let pki = TestPki::new();
        let server = start(&pki, Limits::default()).await;
        let body = registration();
        for target in [
            "/e2m/v1/sessions#frag",
            "https://127.0.0.1/e2m/v1/sessions",
            "/e2m/v1/sessions?x=<y>",
        ] {
            let request = format!(
                "POST {target} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/xml\r\n\
                 content-length: {}\r\n\r\n{body}",
                body.len()
            );
            let (text, closed) = exchange(&pki, server.local_addr(), request.as_bytes()).await;
            assert_problem(&text, 400, "malformed");
            assert!(
                closed,
                "{target}: the connection goes on after a refused head"
            );
            // Nothing was registered: the EMSE has no session.
            assert!(
                server
                    .core()
                    .sessions()
                    .of_emse(&emse("emse-a"), e2m_msg::Timestamp::from_unix_secs(1))
                    .await
                    .unwrap()
                    .is_empty(),
                "{target} was served"
            );
        }
        // The same request in origin form is served.
        let request = format!(
            "POST /e2m/v1/sessions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/xml\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let (text, _) = exchange(&pki, server.local_addr(), request.as_bytes()).await;
        assert!(text.starts_with("HTTP/1.1 201 "), "{text}");
        server.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn errors_below_the_router_are_problem_documents() {
        let pki = TestPki::new();
        let server = start(&pki, Limits::default()).await;
        let addr = server.local_addr();
        let big = "a".repeat(20 * 1024);
        let many: String = (0..120).map(|i| format!("x-h{i}: v\r\n")).collect();
        let cases: Vec<(String, u16)> = vec![
            (
                "POST /e2m/v1/sessions HTTP/1.1\r\nhost: h\r\ncontent-length: 3\r\n\
                 content-length: 3\r\n\r\nabc"
                    .into(),
                400,
            ),
            (
                "POST /e2m/v1/sessions HTTP/1.1\r\nhost: h\r\ncontent-length: 3\r\n\
                 transfer-encoding: chunked\r\n\r\n0\r\n\r\n"
                    .into(),
                400,
            ),
            (
                format!("GET / HTTP/1.1\r\nhost: h\r\nx-big: {big}\r\n\r\n"),
                431,
            ),
            (format!("GET / HTTP/1.1\r\nhost: h\r\n{many}\r\n"), 431),
            ("GET / HTTP/1.0\r\nhost: h\r\n\r\n".into(), 505),
            ("GET / HTTP/1.1\r\n\r\n".into(), 400),
            ("GET /\x01 HTTP/1.1\r\nhost: h\r\n\r\n".into(), 400),
            ("BAD LINE\r\n\r\n".into(), 400),
        ];
        for (request, status) in cases {
            let (text, closed) = exchange(&pki, addr, request.as_bytes()).await;
            assert_problem(&text, status, "malformed");
            assert!(closed, "{request:.60}");
        }
        server.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_head_is_answered_in_its_turn() {
        // Pipelined: a request, a refused head, another request. The first is answered,
        // then the refusal, and nothing after the refused head is read.
        let pki = TestPki::new();
        let server = start(&pki, Limits::default()).await;
        let (text, closed) = exchange(
            &pki,
            server.local_addr(),
            b"GET /nowhere HTTP/1.1\r\nhost: h\r\n\r\n\
              GET /e2m/v1/sessions#f HTTP/1.1\r\nhost: h\r\n\r\n\
              GET /nowhere HTTP/1.1\r\nhost: h\r\n\r\n",
        )
        .await;
        let responses: Vec<&str> = text.split("HTTP/1.1 ").skip(1).collect();
        assert_eq!(responses.len(), 2, "{text}");
        assert!(responses[0].starts_with("404 "), "{text}");
        assert!(responses[1].starts_with("400 "), "{text}");
        assert!(closed);
        server.shutdown().await;
    }

    /// Counts the requests that reach it; answers 204.
    struct Counting(AtomicUsize);

    impl Handler for Counting {
        async fn handle(&self, _request: Request) -> HttpResponse {
            self.0.fetch_add(1, Ordering::SeqCst);
            let mut response = hyper::Response::new(Full::new(Bytes::new()));
            *response.status_mut() = hyper::StatusCode::NO_CONTENT;
            response
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn over_limit_requests_never_reach_the_handler_and_their_bodies_are_skipped() {
        let pki = TestPki::new();
        let handler = Arc::new(Counting(AtomicUsize::new(0)));
        let tls = server_config(
            &pki.dir.emks().unwrap(),
            &pki.ca(),
            &[Role::Emse, Role::Hss],
        )
        .unwrap();
        let limits = Limits {
            rate: RateLimit {
                per_second: 0.001,
                burst: 1,
            },
            ..Limits::default()
        };
        let server = serve(
            TcpListener::bind("127.0.0.1:0").await.unwrap(),
            tls,
            limits,
            handler.clone(),
        )
        .unwrap();
        // One admitted request, then three over the limit with bodies (one of them holding
        // what would be a request head if it were read as one), all on one connection.
        let body = "GET /smuggled HTTP/1.1\r\nhost: h\r\n\r\n";
        let mut request = String::from("GET / HTTP/1.1\r\nhost: h\r\n\r\n");
        for _ in 0..3 {
            request.push_str(&format!(
                "POST / HTTP/1.1\r\nhost: h\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            ));
        }
        request.push_str("GET / HTTP/1.1\r\nhost: h\r\nconnection: close\r\n\r\n");
        let (text, closed) = exchange(&pki, server.local_addr(), request.as_bytes()).await;
        let statuses: Vec<&str> = text.split("HTTP/1.1 ").skip(1).map(|r| &r[..3]).collect();
        // Keep-alive held through the refusals: every request has its answer, in order.
        assert_eq!(statuses, ["204", "429", "429", "429", "429"], "{text}");
        assert!(closed);
        assert_eq!(handler.0.load(Ordering::SeqCst), 1, "only the admitted one");
        assert!(
            text.to_ascii_lowercase().contains("retry-after: "),
            "{text}"
        );
        assert!(!text.contains("smuggled"));
        server.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------------
// Callback targets (issue 9 item 5): a subscription's callback must name a host of the
// EMSE's certificate (the generated ones name `localhost` and `127.0.0.1`) or of the
// operator's allow-list; otherwise it is refused when given and never connected to.

mod callbacks {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use e2m_emks::{AllowedCallback, Emks, EmksConfig};
    use e2m_https::client::EmksClient;
    use e2m_https::emks::{EmksServerOptions, start_emks};
    use e2m_keyid::{AppIdentity, Imsi, KeyId};
    use e2m_keystore::IdentityMap;
    use e2m_msg::{
        CallbackUri, EventSet, EventType, IntermediateKeyPush, KeyIdSource, ProblemCause,
        Subscription, Timestamp, UeRef,
    };
    use tokio::net::TcpListener;

    use super::{TestPki, emse};

    /// A subscription to `callback` by EMSE A on an EMKS with `config`, then a key push
    /// that would notify it; returns the subscription's answer and how many connections
    /// reached `listener` within 500 ms after the push.
    async fn subscribe_and_push(
        config: EmksConfig,
        callback: &str,
        listener: TcpListener,
    ) -> (Result<(), Option<ProblemCause>>, usize) {
        let pki = TestPki::new();
        let app = AppIdentity::new("ue@a").unwrap();
        let imsi = Imsi::new("001010123456789").unwrap();
        let core = Arc::new(Emks::in_memory(config));
        core.identities()
            .provision(&emse("emse-a"), &app, &imsi)
            .await
            .unwrap();
        let server = start_emks(core, &pki.dir, EmksServerOptions::default())
            .await
            .unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = {
            let connections = connections.clone();
            tokio::spawn(async move {
                while listener.accept().await.is_ok() {
                    connections.fetch_add(1, Ordering::SeqCst);
                }
            })
        };
        let ca = pki.ca();
        let a = EmksClient::new(&server.base_url(), &pki.emse("emse-a"), &ca).unwrap();
        a.register(None).await.unwrap();
        let answer = a
            .subscribe(&Subscription {
                events: EventSet::single(EventType::KeyAvailable),
                ue: Some(UeRef::AppIdentity(app)),
                callback: CallbackUri::new(callback).unwrap(),
            })
            .await
            .map(|_| ())
            .map_err(|e| e.problem_cause());
        let hss = EmksClient::new(&server.base_url(), &pki.dir.hss().unwrap(), &ca).unwrap();
        hss.push_intermediate_key(&IntermediateKeyPush {
            imsi,
            key_id: KeyIdSource::RandLsb32(KeyId::from_u32(7)),
            int_key: e2m_kdf::E2mIntKey::from_array([7; 32]),
            created: Timestamp::from_unix_secs(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs(),
            ),
        })
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        counter.abort();
        server.shutdown().await;
        (answer, connections.load(Ordering::SeqCst))
    }

    /// The port of a listener, as the range that allows only it.
    fn only(listener: &TcpListener) -> std::ops::RangeInclusive<u16> {
        let port = listener.local_addr().unwrap().port();
        port..=port
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_host_the_certificate_does_not_name_is_refused_and_never_connected_to() {
        // 127.0.0.2 is loopback, but the certificate names 127.0.0.1 only.
        let listener = TcpListener::bind("127.0.0.2:0").await.unwrap();
        let callback = format!(
            "https://{}/e2m/v1/notifications",
            listener.local_addr().unwrap()
        );
        let config = EmksConfig::default().allow_certificate_callback_ports(only(&listener));
        let (answer, connections) = subscribe_and_push(config, &callback, listener).await;
        assert_eq!(answer, Err(Some(ProblemCause::EmseNotAuthorized)));
        assert_eq!(connections, 0, "the EMKS connected to a refused callback");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn another_port_of_a_named_host_is_refused_and_never_connected_to() {
        // Issue 16 item 4: the certificate names 127.0.0.1, but a host is not a service:
        // without the operator's leave, only port 443 of it takes callbacks (this one
        // stands for ssh, a metrics port or the EMKS itself).
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let callback = format!(
            "https://{}/e2m/v1/notifications",
            listener.local_addr().unwrap()
        );
        let (answer, connections) =
            subscribe_and_push(EmksConfig::default(), &callback, listener).await;
        assert_eq!(answer, Err(Some(ProblemCause::EmseNotAuthorized)));
        assert_eq!(connections, 0, "the EMKS connected to a refused callback");
        // An allow-list entry for that host on another port does not open this one.
        let listener = TcpListener::bind("127.0.0.2:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let callback = format!("https://127.0.0.2:{port}/e2m/v1/notifications");
        let other = if port == 65535 { port - 1 } else { port + 1 };
        let allowed = EmksConfig::default().allow_callback(
            format!("127.0.0.2:{other}")
                .parse::<AllowedCallback>()
                .unwrap(),
        );
        let (answer, connections) = subscribe_and_push(allowed, &callback, listener).await;
        assert_eq!(answer, Err(Some(ProblemCause::EmseNotAuthorized)));
        assert_eq!(connections, 0, "the EMKS connected to a refused callback");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_named_or_allowed_host_is_accepted_and_notified() {
        // Named by the certificate, on a port the operator allows such hosts: accepted,
        // and the push's notification connects.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let callback = format!(
            "https://{}/e2m/v1/notifications",
            listener.local_addr().unwrap()
        );
        let config = EmksConfig::default().allow_certificate_callback_ports(only(&listener));
        let (answer, connections) = subscribe_and_push(config, &callback, listener).await;
        assert_eq!(answer, Ok(()));
        assert!(connections >= 1, "no notification was attempted");
        // On the operator's allow-list (host and port): accepted as well.
        let listener = TcpListener::bind("127.0.0.2:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let callback = format!("https://{addr}/e2m/v1/notifications");
        let allowed = EmksConfig::default()
            .allow_callback(addr.to_string().parse::<AllowedCallback>().unwrap());
        let (answer, connections) = subscribe_and_push(allowed, &callback, listener).await;
        assert_eq!(answer, Ok(()));
        assert!(connections >= 1, "no notification was attempted");
    }
}

// ---------------------------------------------------------------------------------------
// Clients that recover (issue 9 item 11): registration retried while the EMKS is down, a
// session the EMKS forgot renewed once, the session limit recoverable.

mod recovery {
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use e2m_emks::{Emks, EmksConfig};
    use e2m_https::client::{Backoff, EmksClient, EmseSession};
    use e2m_https::emks::{EmksServerOptions, start_emks};
    use e2m_keyid::{AppIdentity, Imsi, KeyId};
    use e2m_keystore::{IdentityMap, SessionStore};
    use e2m_msg::{IntermediateKeyPush, KeyIdSource, ProblemCause, Timestamp, UeRef};

    use super::{TestPki, emse};

    type MemoryEmks = e2m_https::emks::EmksServer<
        e2m_keystore::MemoryIntKeyStore,
        e2m_keystore::MemoryIdentityMap,
        e2m_keystore::MemorySessionStore,
        e2m_keystore::MemorySubscriptionStore,
    >;

    fn now() -> Timestamp {
        Timestamp::from_unix_secs(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        )
    }

    /// A fresh in-memory EMKS on `listen` with UE `ue@a` of EMSE A provisioned and one
    /// key (id 7) pushed for it.
    async fn fresh_emks(pki: &TestPki, listen: SocketAddr) -> MemoryEmks {
        let core = Arc::new(Emks::in_memory(EmksConfig::default()));
        let imsi = Imsi::new("001010123456789").unwrap();
        core.identities()
            .provision(&emse("emse-a"), &AppIdentity::new("ue@a").unwrap(), &imsi)
            .await
            .unwrap();
        let server = start_emks(
            core,
            &pki.dir,
            EmksServerOptions {
                listen,
                notifications: false,
                ..EmksServerOptions::default()
            },
        )
        .await
        .unwrap();
        EmksClient::new(&server.base_url(), &pki.dir.hss().unwrap(), &pki.ca())
            .unwrap()
            .push_intermediate_key(&IntermediateKeyPush {
                imsi,
                key_id: KeyIdSource::RandLsb32(KeyId::from_u32(7)),
                int_key: e2m_kdf::E2mIntKey::from_array([7; 32]),
                created: now(),
            })
            .await
            .unwrap();
        server
    }

    fn ue() -> UeRef {
        UeRef::AppIdentity(AppIdentity::new("ue@a").unwrap())
    }

    const QUICK: Backoff = Backoff {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(200),
        attempts: None,
    };

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn registration_waits_for_an_emks_that_is_down() {
        let pki = TestPki::new();
        // A port nothing listens on yet.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let client =
            EmksClient::new(&format!("https://{addr}"), &pki.emse("emse-a"), &pki.ca()).unwrap();
        let started = Instant::now();
        let session = tokio::spawn(EmseSession::establish(client, None, QUICK));
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(!session.is_finished(), "gave up while the EMKS was down");
        let server = fresh_emks(&pki, addr).await;
        let session = tokio::time::timeout(Duration::from_secs(5), session)
            .await
            .expect("not registered within 5 s of the EMKS coming up")
            .unwrap()
            .unwrap();
        assert!(started.elapsed() >= Duration::from_millis(600));
        assert!(session.fetch_key(ue(), KeyId::from_u32(7)).await.is_ok());
        // Deregistration on close: the EMKS holds no session of this EMSE any more.
        session.close().await.unwrap();
        assert!(
            server
                .core()
                .sessions()
                .of_emse(&emse("emse-a"), now())
                .await
                .unwrap()
                .is_empty()
        );
        server.shutdown().await;
        // A refusal is not retried: another EMSE's EMSE_Id is refused at once.
        let refused = EmseSession::establish(
            EmksClient::new(
                &format!("https://{addr}"),
                &pki.dir.hss().unwrap(),
                &pki.ca(),
            )
            .unwrap(),
            None,
            Backoff {
                attempts: Some(3),
                ..QUICK
            },
        )
        .await;
        assert!(refused.is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_session_the_emks_forgot_is_renewed_and_the_fetch_succeeds() {
        let pki = TestPki::new();
        let first = fresh_emks(&pki, "127.0.0.1:0".parse().unwrap()).await;
        let addr = first.local_addr();
        let client = EmksClient::new(&first.base_url(), &pki.emse("emse-a"), &pki.ca()).unwrap();
        let session = Arc::new(EmseSession::establish(client, None, QUICK).await.unwrap());
        let before = session.session_id().await;
        assert!(session.fetch_key(ue(), KeyId::from_u32(7)).await.is_ok());
        // The EMKS restarts without its state (as `emks --store memory` does).
        first.shutdown().await;
        let second = fresh_emks(&pki, addr).await;
        // Eight fetches at once all find the session gone; one registration serves them.
        let fetches: Vec<_> = (0..8)
            .map(|_| {
                let session = session.clone();
                tokio::spawn(async move { session.fetch_key(ue(), KeyId::from_u32(7)).await })
            })
            .collect();
        for fetch in fetches {
            assert!(fetch.await.unwrap().is_ok());
        }
        assert!(session.session_id().await != before, "not renewed");
        assert_eq!(
            second
                .core()
                .sessions()
                .of_emse(&emse("emse-a"), now())
                .await
                .unwrap()
                .len(),
            1,
            "one re-registration for all the fetches"
        );
        second.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_65th_registration_from_one_certificate_succeeds() {
        // An EMSE that crash-loops registers without ever deregistering; at its limit of 64
        // (the default policy), each new registration replaces its oldest session.
        let pki = TestPki::new();
        let server = fresh_emks(&pki, "127.0.0.1:0".parse().unwrap()).await;
        let client = EmksClient::new(&server.base_url(), &pki.emse("emse-a"), &pki.ca()).unwrap();
        let mut sessions = Vec::new();
        for n in 1..=65 {
            let registered = client.register(None).await;
            assert!(registered.is_ok(), "registration {n}: {registered:?}");
            sessions.push(registered.unwrap().session_id);
        }
        let live = server
            .core()
            .sessions()
            .of_emse(&emse("emse-a"), now())
            .await
            .unwrap();
        assert_eq!(live.len(), 64);
        // The first session is the one replaced; the newest works.
        let fetch = |id: &e2m_msg::SessionId| e2m_msg::KeyRequest {
            session_id: id.copy_secret(),
            ue: ue(),
            key_id: KeyId::from_u32(7),
        };
        assert_eq!(
            client
                .fetch_key(&fetch(&sessions[0]))
                .await
                .unwrap_err()
                .problem_cause(),
            Some(ProblemCause::UnknownSession)
        );
        assert!(client.fetch_key(&fetch(&sessions[64])).await.is_ok());
        server.shutdown().await;
    }
}
