//! The `emks` example's operations side, against the running example: `/healthz`,
//! `/readyz` and Prometheus `/metrics` on `--metrics-listen` (counters move after a
//! registration, a push, a fetch and a refusal), and the log formats (`--log-format json`
//! writes one JSON object per line; text written to a pipe has no colour codes).
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
    for line in stderr.lines() {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
        assert!(
            value.get("level").is_some() && value.get("fields").is_some(),
            "{line}"
        );
        if value["target"] == "e2m::audit" {
            audit += 1;
        }
    }
    assert!(
        audit >= 4,
        "audit records for register, push, fetch, refusal: {stderr}"
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
