//! The `emks` example's operations side, against the running example: `/healthz`,
//! `/readyz` and Prometheus `/metrics` on `--metrics-listen` (counters move after a
//! registration, a push, a fetch and a refusal), the endpoint's strictness (issue 16: what
//! the API port refuses, it refuses too, with problem documents), readiness while draining
//! at a stop, and the log formats (`--log-format json` writes one JSON object per line,
//! each audit record's parts as fields; text written to a pipe has no colour codes).
//! Loopback only; every wait is bounded.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests"
)]

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStderr, Command, Stdio};
use std::time::Duration;

use e2m_https::client::EmksClient;
use e2m_https::pki::PkiDir;
use e2m_kdf::E2mIntKey;
use e2m_keyid::{AppIdentity, EmseId, Imsi, KeyId};
use e2m_msg::{IntermediateKeyPush, KeyIdSource, KeyRequest, ProblemCause, Timestamp, UeRef};
use support::{example_binary, kill, temp_dir};

/// The example, started with an operations endpoint; killed (by its own handle) on drop.
struct Emks {
    child: Child,
    base: String,
    metrics: Option<SocketAddr>,
    dir: PathBuf,
}

impl Drop for Emks {
    fn drop(&mut self) {
        kill(&mut self.child);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Emks {
    fn start(extra: &[&str]) -> Emks {
        let emks = example_binary("emks");
        let dir = temp_dir("ops-pki");
        let out = Command::new(&emks)
            .args(["gen-pki", "--dir"])
            .arg(&dir)
            .args(["--emse", "emse-a"])
            .output()
            .unwrap();
        assert!(out.status.success(), "gen-pki failed: {out:?}");
        let mut child = Command::new(&emks)
            .args(["--store", "memory", "--listen", "127.0.0.1:0", "--certs"])
            .arg(&dir)
            .args([
                "--provision",
                "emse-a,sensor-17@iot.example.com,001010123456789",
            ])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let base = line
            .trim()
            .strip_prefix("EMKS listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        let metrics = extra.contains(&"--metrics-listen").then(|| {
            let mut line = String::new();
            stdout.read_line(&mut line).unwrap();
            line.trim()
                .strip_prefix("metrics listening on http://")
                .unwrap_or_else(|| panic!("unexpected second line {line:?}"))
                .parse()
                .unwrap()
        });
        Emks {
            child,
            base,
            metrics,
            dir,
        }
    }

    fn stop_and_read_stderr(mut self) -> String {
        let mut stderr: ChildStderr = self.child.stderr.take().unwrap();
        kill(&mut self.child);
        let mut text = String::new();
        stderr.read_to_string(&mut text).unwrap();
        text
    }
}

/// A plain HTTP/1.1 request; returns (status, headers, body).
fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String, String) {
    let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        tcp,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head.to_owned(), body.to_owned())
}

/// The value of the sample line `name` (exact, with labels) in an exposition.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(' ')?;
        value.parse().ok()
    })
}

/// Registers as emse-a, pushes one key as the HSS, fetches it, and fetches a key id that
/// is not held (refused with `key-not-available`).
fn exercise(emks: &Emks) {
    let pki = PkiDir::open(&emks.dir).unwrap();
    let emse = EmksClient::for_emse(&emks.base, &pki, &EmseId::new("emse-a").unwrap()).unwrap();
    let hss = EmksClient::for_hss(&emks.base, &pki).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let session = emse.register(None).await.unwrap();
        let key_id = KeyId::from_u32(0xae47_bf35);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        hss.push_intermediate_key(&IntermediateKeyPush {
            imsi: Imsi::new("001010123456789").unwrap(),
            key_id: KeyIdSource::RandLsb32(key_id),
            int_key: E2mIntKey::from_array([0x5a; 32]),
            created: Timestamp::from_unix_secs(now),
        })
        .await
        .unwrap();
        let ue = UeRef::AppIdentity(AppIdentity::new("sensor-17@iot.example.com").unwrap());
        let request = |key_id| KeyRequest {
            session_id: session.session_id.copy_secret(),
            ue: ue.clone(),
            key_id,
        };
        emse.fetch_key(&request(key_id)).await.unwrap();
        let refused = emse.fetch_key(&request(KeyId::from_u32(1))).await;
        assert_eq!(
            refused.err().and_then(|e| e.problem_cause()),
            Some(ProblemCause::KeyNotAvailable)
        );
    });
}

#[test]
fn health_readiness_and_metrics_against_the_running_example() {
    let emks = Emks::start(&["--metrics-listen", "127.0.0.1:0"]);
    let ops = emks.metrics.unwrap();

    let (status, _, body) = http(ops, "GET", "/healthz");
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, _, body) = http(ops, "GET", "/readyz");
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    let (status, _, _) = http(ops, "GET", "/nowhere");
    assert_eq!(status, 404);
    let (status, head, _) = http(ops, "POST", "/metrics");
    assert_eq!(status, 405);
    assert!(
        head.to_ascii_lowercase().contains("allow: get, head"),
        "{head}"
    );

    let (status, head, before) = http(ops, "GET", "/metrics");
    assert_eq!(status, 200);
    assert!(
        head.contains("application/openmetrics-text"),
        "content type: {head}"
    );
    assert_eq!(sample(&before, "e2m_emks_keys_held"), Some(0.0), "{before}");
    assert!(
        before.contains("# TYPE e2m_emks_refusals counter"),
        "{before}"
    );
    assert_eq!(
        sample(&before, r#"e2m_emks_refusals_total{cause="rate-limited"}"#),
        Some(0.0)
    );
    assert_eq!(
        sample(&before, r#"e2m_emks_notifications_total{outcome="failed"}"#),
        Some(0.0)
    );
    assert!(before.contains("# TYPE e2m_emks_fetch_duration_seconds histogram"));
    assert!(before.trim_end().ends_with("# EOF"));

    exercise(&emks);

    let (_, _, after) = http(ops, "GET", "/metrics");
    for (name, value) in [
        (
            r#"e2m_emks_requests_total{operation="register",status="201"}"#,
            1.0,
        ),
        (
            r#"e2m_emks_requests_total{operation="push-intermediate-key",status="204"}"#,
            1.0,
        ),
        (
            r#"e2m_emks_requests_total{operation="fetch-key",status="200"}"#,
            1.0,
        ),
        (
            r#"e2m_emks_requests_total{operation="fetch-key",status="404"}"#,
            1.0,
        ),
        (r#"e2m_emks_refusals_total{cause="key-not-available"}"#, 1.0),
        ("e2m_emks_fetch_duration_seconds_count", 2.0),
        ("e2m_emks_keys_held", 1.0),
        ("e2m_emks_sessions", 1.0),
        ("e2m_emks_notifications_pending", 0.0),
    ] {
        assert_eq!(sample(&after, name), Some(value), "{name} in:\n{after}");
    }
    // No key material, session id or identity in the exposition.
    for secret in ["5a5a5a5a", "sensor-17", "001010123456789", "emse-a"] {
        assert!(!after.contains(secret), "{secret} in the metrics");
    }
}

/// A TLS client without a client certificate: trusts the e2m CA, checks the EMKS's name,
/// and offers no certificate when the EMKS asks for one. Returns once the connection ends
/// (the EMKS refuses the handshake).
fn handshake_without_certificate(emks: &Emks) {
    let pki = PkiDir::open(&emks.dir).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for ca in pki.ca_certificates().unwrap() {
        roots.add(ca).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(e2m_https::tls::profile_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let addr: SocketAddr = emks.base.strip_prefix("https://").unwrap().parse().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from(e2m_https::pki::DEFAULT_EMKS_HOST)
            .unwrap()
            .to_owned();
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
        // TLS 1.3: the client's side completes; the EMKS refuses the empty Certificate
        // message, which the client sees on its first read.
        let outcome = tokio::time::timeout(Duration::from_secs(10), async {
            let mut tls = connector.connect(name, tcp).await?;
            tls.write_all(b"GET /e2m/v1/sessions HTTP/1.1\r\nHost: x\r\n\r\n")
                .await?;
            let mut buf = [0u8; 64];
            tls.read(&mut buf).await
        })
        .await
        .expect("the EMKS ends the connection");
        assert!(
            outcome.is_err(),
            "a client without a certificate got an answer: {outcome:?}"
        );
    });
}

/// issue 16: TLS handshake failures are counted by reason, on a real failed handshake.
#[test]
fn tls_handshake_failures_are_counted_by_reason() {
    let emks = Emks::start(&["--metrics-listen", "127.0.0.1:0"]);
    let ops = emks.metrics.unwrap();
    let no_certificate = r#"e2m_emks_tls_handshake_failures_total{reason="no-certificate"}"#;
    let (_, _, before) = http(ops, "GET", "/metrics");
    assert_eq!(sample(&before, no_certificate), Some(0.0), "{before}");

    handshake_without_certificate(&emks);
    handshake_without_certificate(&emks);

    // The server counts a failure when the connection's task sees it end: poll briefly.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, _, after) = http(ops, "GET", "/metrics");
        let counted = sample(&after, no_certificate);
        if counted == Some(2.0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{no_certificate} = {counted:?} in:\n{after}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // A registration with a certificate still works and moves no failure counter.
    exercise(&emks);
    let (_, _, after) = http(ops, "GET", "/metrics");
    assert_eq!(sample(&after, no_certificate), Some(2.0));
}

#[test]
fn without_metrics_listen_there_is_no_operations_listener() {
    let emks = Emks::start(&[]);
    assert!(emks.metrics.is_none());
    // The EMKS works as before; only one line was announced (read by start()).
    exercise(&emks);
}

#[test]
fn json_logs_are_one_object_per_line() {
    let emks = Emks::start(&["--log-format", "json"]);
    exercise(&emks);
    let stderr = emks.stop_and_read_stderr();
    let mut audit = 0;
    let mut actions = std::collections::BTreeSet::new();
    for line in stderr.lines() {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
        assert!(
            value.get("level").is_some() && value.get("fields").is_some(),
            "{line}"
        );
        if value["target"] == "e2m::audit" && value["fields"]["message"] == "audit" {
            // Each part of the record is a field of its own, not one preformatted string.
            let fields = &value["fields"];
            for name in ["time", "action", "verdict"] {
                assert!(fields.get(name).is_some(), "no {name} field: {line}");
            }
            assert!(fields["time"].is_u64(), "{line}");
            assert!(
                ["granted", "refused"].contains(&fields["verdict"].as_str().unwrap_or("")),
                "{line}"
            );
            if fields["action"] == "fetch-key" && fields["verdict"] == "refused" {
                assert_eq!(fields["cause"], "key-not-available", "{line}");
                assert_eq!(fields["ue"], "app:sensor-17@iot.example.com", "{line}");
                assert_eq!(fields["imsi"], "001010123456789", "{line}");
                assert_eq!(fields["key_id"], "00000001", "{line}");
            }
            if fields["action"] == "register" {
                assert_eq!(fields["peer"], "emse:emse-a", "{line}");
            }
            actions.insert(fields["action"].as_str().unwrap_or("").to_owned());
            audit += 1;
        }
    }
    assert!(
        audit >= 4,
        "audit records for register, push, fetch, refusal: {stderr}"
    );
    for action in ["register", "push-intermediate-key", "fetch-key"] {
        assert!(actions.contains(action), "no {action} record: {stderr}");
    }
    // No key material in any form (the pushed key is 0x5a repeated).
    assert!(
        !stderr.to_ascii_lowercase().contains("5a5a5a5a"),
        "{stderr}"
    );
}

#[test]
fn text_logs_to_a_pipe_have_no_colour_codes() {
    let emks = Emks::start(&[]);
    exercise(&emks);
    let stderr = emks.stop_and_read_stderr();
    assert!(stderr.contains("e2m::audit"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "colour codes in: {stderr:?}");
}

/// Sends `request` as it is on a new connection to the operations port and returns all it
/// answers until the server closes (or 5 s pass).
fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    tcp.write_all(request).unwrap();
    let mut response = Vec::new();
    let _ = tcp.read_to_end(&mut response);
    String::from_utf8_lossy(&response).into_owned()
}

fn status_of(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"))
}

#[test]
fn the_operations_port_is_as_strict_as_the_api_port() {
    let emks = Emks::start(&["--metrics-listen", "127.0.0.1:0"]);
    let ops = emks.metrics.unwrap();
    let big = "x".repeat(100 * 1024);
    let cases: Vec<(String, u16, &str)> = vec![
        (
            format!("GET http://{ops}/metrics HTTP/1.1\r\nHost: {ops}\r\n\r\n"),
            400,
            "absolute-form target",
        ),
        (
            format!("CONNECT {ops} HTTP/1.1\r\nHost: {ops}\r\n\r\n"),
            400,
            "authority-form target",
        ),
        (
            format!("OPTIONS * HTTP/1.1\r\nHost: {ops}\r\n\r\n"),
            400,
            "asterisk-form target",
        ),
        (
            format!("GET /metrics#zzfrag HTTP/1.1\r\nHost: {ops}\r\n\r\n"),
            400,
            "a fragment",
        ),
        (
            format!("GET /met rics HTTP/1.1\r\nHost: {ops}\r\n\r\n"),
            400,
            "a space in the target",
        ),
        ("GET /metrics HTTP/1.1\r\n\r\n".to_owned(), 400, "no Host"),
        (
            format!("GET /metrics HTTP/1.1\r\nHost: {ops}\r\nHost: other\r\n\r\n"),
            400,
            "two Hosts",
        ),
        (
            format!("GET /metrics HTTP/1.1\r\nHost: {ops}\r\nX-Big: {big}\r\n\r\n"),
            431,
            "a 100 KiB header",
        ),
        (
            format!(
                "GET /metrics HTTP/1.1\r\nHost: {ops}\r\n{}\r\n",
                "X-A: 1\r\n".repeat(40)
            ),
            431,
            "40 header lines",
        ),
        (
            format!("GET /metrics HTTP/1.0\r\nHost: {ops}\r\n\r\n"),
            505,
            "HTTP/1.0",
        ),
        (
            format!("GET /metrics HTTP/1.1\r\nHost: {ops}\r\nContent-Length: 5\r\n\r\nhello"),
            400,
            "a GET with a body",
        ),
        (
            format!(
                "GET /metrics HTTP/1.1\r\nHost: {ops}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
            ),
            400,
            "a chunked GET",
        ),
        (
            format!("POST /metrics HTTP/1.1\r\nHost: {ops}\r\nContent-Length: 5\r\n\r\nhello"),
            405,
            "POST with a body",
        ),
        (
            format!("GET /nowhere HTTP/1.1\r\nHost: {ops}\r\nConnection: close\r\n\r\n"),
            404,
            "an unknown path",
        ),
    ];
    for (request, status, what) in &cases {
        let response = raw(ops, request.as_bytes());
        assert_eq!(status_of(&response), *status, "{what}: {response:?}");
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        let head = head.to_ascii_lowercase();
        assert!(
            head.contains("content-type: application/problem+json"),
            "{what}: {head}"
        );
        let problem: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(problem["status"], *status, "{what}: {body}");
        assert!(
            problem["title"].is_string() && problem["detail"].is_string(),
            "{body}"
        );
        // Nothing of the request is echoed.
        assert!(
            !body.contains("zzfrag") && !body.contains("xxxx"),
            "{what}: {body}"
        );
        if *status == 405 {
            assert!(head.contains("allow: get, head"), "{head}");
        }
    }
    // The endpoint still serves after all that.
    let (status, _, body) = http(ops, "GET", "/healthz");
    assert_eq!((status, body.as_str()), (200, "ok\n"));
}

#[test]
fn the_operations_port_keeps_connections_alive_and_answers_head() {
    let emks = Emks::start(&["--metrics-listen", "127.0.0.1:0"]);
    let ops = emks.metrics.unwrap();
    // Three pipelined requests on one connection, the last one closing it.
    let response = raw(
        ops,
        format!(
            "GET /healthz HTTP/1.1\r\nHost: {ops}\r\n\r\n\
             HEAD /metrics HTTP/1.1\r\nHost: {ops}\r\n\r\n\
             GET /readyz?probe=1 HTTP/1.1\r\nHost: {ops}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(response.matches("HTTP/1.1 200 OK").count(), 3, "{response}");
    assert!(response.ends_with("ready\n"), "{response}");
    // HEAD: the headers of the GET answer (its length), no body: the next answer follows
    // the blank line at once.
    let head = response.split("HTTP/1.1 200 OK").nth(2).unwrap();
    assert!(head.contains("application/openmetrics-text"), "{head}");
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(str::to_owned)
        })
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(length > 100, "{head}");
    assert!(head.ends_with("\r\n\r\n"), "a body after HEAD: {head:?}");
}

/// `/readyz` answers 503 from the moment a stop begins, while the EMKS drains a request
/// still in flight; the process ends once the request is gone.
#[test]
fn readiness_is_503_while_draining_at_a_stop() {
    use tokio::io::AsyncWriteExt;
    let mut emks = Emks::start(&["--metrics-listen", "127.0.0.1:0"]);
    let ops = emks.metrics.unwrap();
    assert_eq!(http(ops, "GET", "/readyz").0, 200);

    // An HSS request whose body has not all arrived: in flight when the stop comes.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let pki = PkiDir::open(&emks.dir).unwrap();
    let addr: SocketAddr = emks
        .base
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let mut tls = runtime.block_on(async {
        let config = e2m_https::tls::client_config(
            &pki.hss().unwrap(),
            &pki.ca_certificates().unwrap(),
            e2m_https::tls::ExpectedServer::AnyOfRole(e2m_https::pki::Role::Emks),
        )
        .unwrap();
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
        let mut tls = connector.connect(name, tcp).await.unwrap();
        tls.write_all(
            format!(
                "POST {} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/xml\r\n\
                 Content-Length: 1000\r\n\r\n<partial",
                e2m_msg::rest::INTERMEDIATE_KEYS_PATH
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        tls.flush().await.unwrap();
        tls
    });
    // Let the server take the head before the stop.
    std::thread::sleep(Duration::from_millis(300));
    let pid = emks.child.id().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());

    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    let draining = loop {
        assert!(
            emks.child.try_wait().unwrap().is_none(),
            "the EMKS ended before its in-flight request did"
        );
        let (status, _, body) = http(ops, "GET", "/readyz");
        if status == 503 {
            break body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "/readyz stayed {status} after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(draining.starts_with("not ready"), "{draining}");
    assert!(emks.child.try_wait().unwrap().is_none(), "still draining");
    // The request goes away; the EMKS ends (within its 5 s grace in any case).
    runtime.block_on(async { tls.shutdown().await.ok() });
    drop(tls);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while emks.child.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "the EMKS did not end");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// With `--aanf-listen`, the AAnF's counters are on the metrics port (and only then): a
/// registration, a retrieval, an AF asking with another AF's afId (403), a removal and its
/// notification's delivery each move theirs.
#[test]
fn the_aanf_counters_move_with_its_requests_and_notifications() {
    use e2m_sbi::client::{AfClient, AusfClient, ClientTransport, SbiClient};
    use e2m_sbi::e2m_aanf::e2m_kdf::Kausf;
    use e2m_sbi::e2m_aanf::e2m_keyid::akma::{
        AfId, AkmaAnchor, Plmn, RoutingIndicator, Supi, UeId,
    };
    use e2m_sbi::e2m_akma::{AkmaAfKeyRequest, AkmaKeyInfo, NotifUri};
    use e2m_sbi::notify::{NotificationEndpoint, serve_notifications};
    use e2m_sbi::pki::AkmaPkiDir;
    use e2m_sbi::server::{Limits, Transport};

    const AF: &str = "af.example.com";
    const AF2: &str = "af2.example.com";
    let emks = example_binary("emks");
    let dir = temp_dir("ops-aanf");
    for args in [
        vec!["gen-pki", "--dir", dir.join("pki").to_str().unwrap()],
        vec![
            "gen-akma-pki",
            "--dir",
            dir.join("akma").to_str().unwrap(),
            "--ausf",
            "ausf.test",
            "--af",
            AF,
            "--af",
            AF2,
        ],
    ] {
        let out = Command::new(&emks).args(&args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
    }
    let child = Command::new(&emks)
        .args(["--store", "memory", "--listen", "127.0.0.1:0", "--certs"])
        .arg(dir.join("pki"))
        .args(["--aanf-listen", "127.0.0.1:0", "--aanf-certs"])
        .arg(dir.join("akma"))
        .args([
            "--aanf-ausf",
            "ausf.test",
            "--aanf-af",
            AF,
            "--aanf-af",
            AF2,
        ])
        .args(["--aanf-resolve", &format!("{AF}=127.0.0.1")])
        .args([
            "--aanf-first-retry",
            "200",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut emks = Emks {
        child,
        base: String::new(),
        metrics: None,
        dir: dir.clone(),
    };
    let mut stdout = BufReader::new(emks.child.stdout.take().unwrap());
    let mut aanf: Option<SocketAddr> = None;
    for _ in 0..3 {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        if let Some(addr) = line.trim().strip_prefix("AAnF listening on https://") {
            aanf = Some(addr.parse().unwrap());
        }
        if let Some(addr) = line.trim().strip_prefix("metrics listening on http://") {
            emks.metrics = Some(addr.parse().unwrap());
        }
    }
    let (aanf, ops) = (aanf.unwrap(), emks.metrics.unwrap());
    let (_, _, before) = http(ops, "GET", "/metrics");
    assert_eq!(
        sample(
            &before,
            r#"e2m_emks_aanf_notifications_total{outcome="delivered"}"#
        ),
        Some(0.0),
        "{before}"
    );

    let pki = AkmaPkiDir::open(&dir.join("akma"));
    let ca = pki.ca().unwrap();
    let sbi = |credentials| {
        let transport = ClientTransport::tls(&credentials, &ca).unwrap();
        SbiClient::new(
            &format!("https://aanf.e2m.test:{}", aanf.port()),
            &transport,
        )
        .unwrap()
        .resolve(aanf)
    };
    let ausf = AusfClient::new(sbi(pki.ausf("ausf.test").unwrap()));
    let af = AfClient::new(sbi(pki.af(AF).unwrap()));
    let af2 = AfClient::new(sbi(pki.af(AF2).unwrap()));
    let supi = Supi::parse("imsi-208930000000005").unwrap();
    let anchor = AkmaAnchor::derive(
        &Kausf::from_array([5; 32]),
        &supi,
        &RoutingIndicator::parse("0").unwrap(),
        &Plmn::new("208", "93").unwrap().home_network_domain(),
    )
    .unwrap();
    let a_kid = anchor.a_kid;
    let af_id = AfId::parse(&format!("{AF};ua=010001c0a8")).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let transport =
            Transport::Tls(e2m_sbi::tls::server_config(&pki.af_notify(AF).unwrap(), &ca).unwrap());
        let (endpoint, mut received) =
            NotificationEndpoint::channel("/akma/notify", vec!["aanf.e2m.test".parse().unwrap()]);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = serve_notifications(listener, transport, Limits::default(), endpoint).unwrap();
        let info = AkmaKeyInfo {
            ue: UeId::Supi(supi),
            a_kid,
            k_akma: anchor.kakma,
            supp_feat: None,
        };
        ausf.register(&info).await.unwrap();
        let uri = NotifUri::parse(&format!("https://{AF}:{port}/akma/notify")).unwrap();
        let request = |notif_uri| AkmaAfKeyRequest {
            af_id,
            a_kid,
            notif_uri,
            anon_ind: false,
            supp_feat: None,
        };
        assert!(af.retrieve(&request(Some(uri))).await.unwrap().is_some());
        let refused = af2.retrieve(&request(None)).await.unwrap_err();
        assert_eq!(refused.status(), Some(403));
        ausf.remove(supi).await.unwrap();
        tokio::time::timeout(Duration::from_secs(15), received.recv())
            .await
            .expect("a notification in time")
            .unwrap();
        server.shutdown().await;
    });

    // The deliverer counts the delivery once the AF's 204 is back: poll for it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let after = loop {
        let (_, _, text) = http(ops, "GET", "/metrics");
        let delivered = r#"e2m_emks_aanf_notifications_total{outcome="delivered"}"#;
        if sample(&text, delivered) == Some(1.0) || std::time::Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    for (name, value) in [
        (
            r#"e2m_emks_aanf_requests_total{operation="register-anchorkey",status="200"}"#,
            1.0,
        ),
        (
            r#"e2m_emks_aanf_requests_total{operation="retrieve-applicationkey",status="200"}"#,
            1.0,
        ),
        (
            r#"e2m_emks_aanf_requests_total{operation="retrieve-applicationkey",status="403"}"#,
            1.0,
        ),
        (
            r#"e2m_emks_aanf_requests_total{operation="remove-context",status="204"}"#,
            1.0,
        ),
        (
            r#"e2m_emks_aanf_refusals_total{status="403",cause="none"}"#,
            1.0,
        ),
        (
            r#"e2m_emks_aanf_notifications_total{outcome="delivered"}"#,
            1.0,
        ),
        (
            r#"e2m_emks_aanf_notifications_total{outcome="failed"}"#,
            0.0,
        ),
    ] {
        assert_eq!(sample(&after, name), Some(value), "{name} in:\n{after}");
    }
    for secret in ["0505050505", "208930000000005", "atid"] {
        assert!(!after.contains(secret), "{secret} in the metrics");
    }
    // Without --aanf-listen there are no AAnF series at all.
    let plain = Emks::start(&["--metrics-listen", "127.0.0.1:0"]);
    let (_, _, text) = http(plain.metrics.unwrap(), "GET", "/metrics");
    assert!(!text.contains("e2m_emks_aanf_"), "{text}");
}
