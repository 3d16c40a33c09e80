//! What the server-stack tests share: a generated PKI, an echo server, raw TLS clients,
//! and the file descriptor limit.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    reason = "a helper module of test binaries: each uses a different part"
)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use e2m_https::pki::{Credentials, GeneratedPki, PkiDir, PkiSpec, Role};
use e2m_https::server::{Handler, HttpResponse, Limits, Request, ServerHandle, serve};
use e2m_https::tls::{ExpectedServer, client_config, server_config};
use e2m_keyid::EmseId;
use http_body_util::Full;
use hyper::body::Bytes;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;

pub fn temp_dir(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    std::env::temp_dir().join(format!("e2m-{tag}-{}-{nanos}", std::process::id()))
}

pub fn emse(id: &str) -> EmseId {
    EmseId::new(id).unwrap()
}

/// A generated PKI in a temporary directory (removed on drop): the EMKS, `emse-a`,
/// `emse-b` and the HSS.
pub struct TestPki {
    pub dir: PkiDir,
}

impl TestPki {
    pub fn new() -> TestPki {
        let spec = PkiSpec::new(vec![emse("emse-a"), emse("emse-b")]).unwrap();
        let dir = GeneratedPki::generate(&spec)
            .unwrap()
            .write_to(&temp_dir("pki"))
            .unwrap();
        TestPki { dir }
    }

    pub fn ca(&self) -> Vec<CertificateDer<'static>> {
        self.dir.ca_certificates().unwrap()
    }

    pub fn emse(&self, id: &str) -> Credentials {
        self.dir.emse(&emse(id)).unwrap()
    }

    /// A client configuration of EMSE `id` for the EMKS.
    pub fn emse_tls(&self, id: &str) -> rustls::ClientConfig {
        client_config(
            &self.emse(id),
            &self.ca(),
            ExpectedServer::AnyOfRole(Role::Emks),
        )
        .unwrap()
    }

    /// The EMKS's server configuration, accepting EMSEs and the HSS.
    pub fn emks_tls(&self) -> Arc<rustls::ServerConfig> {
        server_config(
            &self.dir.emks().unwrap(),
            &self.ca(),
            &[Role::Emse, Role::Hss],
        )
        .unwrap()
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.dir.path());
    }
}

/// Answers with the authenticated peer identity and the body length.
pub struct Echo;

impl Handler for Echo {
    async fn handle(&self, request: Request) -> HttpResponse {
        let text = format!("{} {}", request.peer, request.body.len());
        hyper::Response::new(Full::new(Bytes::from(text)))
    }
}

/// Serves `handler` on 127.0.0.1 (an ephemeral port) with the EMKS's TLS configuration.
pub async fn start<H: Handler>(pki: &TestPki, limits: Limits, handler: Arc<H>) -> ServerHandle {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    serve(listener, pki.emks_tls(), limits, handler).unwrap()
}

/// A TLS connection to `addr` with `config` (for writing exactly the bytes a test wants).
pub async fn raw_tls(
    addr: SocketAddr,
    config: rustls::ClientConfig,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
}

/// Makes sure this process may open `needed` file descriptors: raises the soft
/// `RLIMIT_NOFILE` up to the hard limit when it is lower; says what is missing otherwise.
///
/// # Errors
/// The hard limit is below `needed` (raise it, e.g. `ulimit -Hn`, as root or in the
/// service manager), or the limit could not be set.
#[cfg(unix)]
pub fn ensure_fd_limit(needed: u64) -> Result<(), String> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let soft = limit.current.unwrap_or(u64::MAX);
    let hard = limit.maximum.unwrap_or(u64::MAX);
    if soft >= needed {
        return Ok(());
    }
    if hard < needed {
        return Err(format!(
            "this test needs {needed} file descriptors; RLIMIT_NOFILE is {soft} (hard {hard}): \
             run it where `ulimit -n {needed}` is allowed"
        ));
    }
    let mut raised = limit;
    raised.current = Some(needed);
    setrlimit(Resource::Nofile, raised)
        .map_err(|e| format!("raising RLIMIT_NOFILE from {soft} to {needed}: {e}"))
}

/// Elsewhere the limit is not checked.
#[cfg(not(unix))]
pub fn ensure_fd_limit(_needed: u64) -> Result<(), String> {
    Ok(())
}
