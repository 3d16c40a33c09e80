//! An EMSE client on a stock HTTP stack, configured as the crate README says ("Talking to the
//! EMKS from another HTTP stack"), sends its registration to the EMKS and to no impostor
//! holding an EMSE's certificate (issue 16: with the earlier PKI, every EMSE certificate had
//! server use and the names `localhost` and `127.0.0.1`, and such a client registered with
//! an impostor).
//!
//! Two stock clients: reqwest with its own rustls certificate verification (no e2m
//! verifier), and the `curl` command line. Each trusts the e2m CA only, presents EMSE A's
//! client certificate, and addresses the EMKS by its host name (`emks.e2m.test`, mapped to
//! the loopback address with `resolve` / `--resolve`). The impostors are servers of the same
//! stack as the EMKS's, one with EMSE B's callback certificate (server use, EMSE B's names)
//! and one with EMSE B's client certificate (the certificate that had server use before).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests"
)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use e2m_emks::{Emks, EmksConfig};
use e2m_https::emks::{EmksServerOptions, start_emks};
use e2m_https::pki::{Credentials, DEFAULT_EMKS_HOST, GeneratedPki, PkiDir, PkiSpec, Role};
use e2m_https::server::{Handler, HttpResponse, Limits, Request, ServerHandle, serve};
use e2m_https::tls::{install_process_default_provider, server_config};
use e2m_keyid::EmseId;
use e2m_msg::{Registration, XmlMessage};
use http_body_util::Full;
use hyper::body::Bytes;
use tokio::net::TcpListener;

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
            .write_to_temp_dir("stock-client")
            .unwrap();
        TestPki { dir }
    }

    fn ca_path(&self) -> PathBuf {
        self.dir.ca_path()
    }

    /// EMSE A's client certificate and key files.
    fn emse_a_files(&self) -> (PathBuf, PathBuf) {
        self.dir
            .paths_for(&e2m_https::pki::PeerIdentity::Emse(emse("emse-a")))
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.dir.path());
    }
}

/// The impostor: answers every request 201, as a registration would be.
struct Impostor;

impl Handler for Impostor {
    async fn handle(&self, _request: Request) -> HttpResponse {
        let mut response = hyper::Response::new(Full::new(Bytes::from_static(b"impostor")));
        *response.status_mut() = hyper::StatusCode::CREATED;
        response
    }
}

/// A server of the EMKS's own stack holding `credentials`, accepting EMSE clients.
async fn impostor(pki: &TestPki, credentials: &Credentials) -> ServerHandle {
    let tls = server_config(
        credentials,
        &pki.dir.ca_certificates().unwrap(),
        &[Role::Emse],
    )
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    serve(listener, tls, Limits::default(), Arc::new(Impostor)).unwrap()
}

fn registration() -> String {
    Registration {
        emse_id: emse("emse-a"),
        callback: None,
    }
    .encode()
    .as_str()
    .to_owned()
}

/// The README's reqwest client: the e2m CA only, EMSE A's client certificate, the EMKS's
/// host name mapped to `addr`.
fn stock_reqwest(pki: &TestPki, addr: SocketAddr) -> reqwest::Client {
    // reqwest is built here without a default crypto provider; any provider will do.
    install_process_default_provider();
    let ca = std::fs::read(pki.ca_path()).unwrap();
    let (cert, key) = pki.emse_a_files();
    let mut identity = std::fs::read(cert).unwrap();
    identity.extend_from_slice(&std::fs::read(key).unwrap());
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()])
        .identity(reqwest::Identity::from_pem(&identity).unwrap())
        .resolve(DEFAULT_EMKS_HOST, addr)
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// POSTs the registration to `url` with `client`: the status, or the error's text.
async fn register_with(client: &reqwest::Client, url: &str) -> Result<u16, String> {
    client
        .post(format!("{url}/e2m/v1/sessions"))
        .header("content-type", "application/xml")
        .body(registration())
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| format!("{e:?}"))
}

fn curl_available() -> bool {
    Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The README's curl command: `Ok(status)` or `Err(exit code and message)`.
fn curl_register(
    ca: &Path,
    cert: &Path,
    key: &Path,
    addr: SocketAddr,
    url: &str,
) -> Result<u16, String> {
    let resolve = format!("{DEFAULT_EMKS_HOST}:{}:{}", addr.port(), addr.ip());
    let out = Command::new("curl")
        .args([
            "--silent",
            "--show-error",
            "--max-time",
            "10",
            "--noproxy",
            "*",
        ])
        .arg("--cacert")
        .arg(ca)
        .arg("--cert")
        .arg(cert)
        .arg("--key")
        .arg(key)
        .args(["--resolve", &resolve])
        .args(["-H", "content-type: application/xml"])
        .args(["--data-binary", &registration()])
        .args(["-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("{url}/e2m/v1/sessions"))
        .output()
        .expect("curl runs");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).parse().unwrap())
    } else {
        Err(format!(
            "exit {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The EMKS's URL as the README says to write it: its host name, and the port.
fn by_name(addr: SocketAddr) -> String {
    format!("https://{DEFAULT_EMKS_HOST}:{}", addr.port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stock_client_registers_with_the_emks_and_with_no_emse_impostor() {
    assert!(
        curl_available(),
        "curl is required for this test (apt-get install -y curl; .ci/test installs it)"
    );
    let pki = TestPki::new();
    let emks = start_emks(
        Arc::new(Emks::in_memory(EmksConfig::default())),
        &pki.dir,
        EmksServerOptions {
            notifications: false,
            ..EmksServerOptions::default()
        },
    )
    .await
    .unwrap();
    let with_callback_cert = impostor(&pki, &pki.dir.emse_callback(&emse("emse-b")).unwrap()).await;
    let with_client_cert = impostor(&pki, &pki.dir.emse(&emse("emse-b")).unwrap()).await;
    let (ca, (cert, key)) = (pki.ca_path(), pki.emse_a_files());

    // The EMKS: 201 for both stock clients.
    let addr = emks.local_addr();
    assert_eq!(
        register_with(&stock_reqwest(&pki, addr), &by_name(addr)).await,
        Ok(201),
        "reqwest registers with the EMKS"
    );
    let curl = {
        let (ca, cert, key) = (ca.clone(), cert.clone(), key.clone());
        tokio::task::spawn_blocking(move || curl_register(&ca, &cert, &key, addr, &by_name(addr)))
    };
    assert_eq!(curl.await.unwrap(), Ok(201), "curl registers with the EMKS");

    // The impostors, addressed as the README says: refused by both, before any request.
    for (what, server) in [
        ("EMSE B's callback certificate", &with_callback_cert),
        ("EMSE B's client certificate", &with_client_cert),
    ] {
        let addr = server.local_addr();
        let answer = register_with(&stock_reqwest(&pki, addr), &by_name(addr)).await;
        assert!(
            answer
                .as_ref()
                .is_err_and(|e| e.contains("InvalidCertificate")),
            "reqwest registered with an impostor holding {what}: {answer:?}"
        );
        let curl = {
            let (ca, cert, key) = (ca.clone(), cert.clone(), key.clone());
            tokio::task::spawn_blocking(move || {
                curl_register(&ca, &cert, &key, addr, &by_name(addr))
            })
        };
        let answer = curl.await.unwrap();
        // 60: the peer's certificate could not be verified (curl's exit codes).
        assert!(
            answer
                .as_ref()
                .is_err_and(|e| e.starts_with("exit Some(60)")),
            "curl registered with an impostor holding {what}: {answer:?}"
        );
        eprintln!("impostor with {what}: curl {answer:?}");
    }

    // The case: an EMSE's client certificate, addressed by the loopback address it
    // names. It has no server use any more, so even a client that checks only the address
    // refuses it.
    let addr = with_client_cert.local_addr();
    let url = format!("https://{addr}");
    let answer = register_with(&stock_reqwest(&pki, addr), &url).await;
    assert!(
        answer
            .as_ref()
            .is_err_and(|e| e.contains("InvalidCertificate")),
        "reqwest by address: {answer:?}"
    );
    let curl = tokio::task::spawn_blocking(move || curl_register(&ca, &cert, &key, addr, &url));
    let answer = curl.await.unwrap();
    assert!(
        answer
            .as_ref()
            .is_err_and(|e| e.starts_with("exit Some(60)")),
        "curl by address: {answer:?}"
    );
    eprintln!("impostor with EMSE B's client certificate at {addr}: curl {answer:?}");

    with_callback_cert.shutdown().await;
    with_client_cert.shutdown().await;
    emks.shutdown().await;
}
