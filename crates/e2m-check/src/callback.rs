//! The checker's own notification endpoint (the EMSE side of seed 6.x.2.2.1: "EMKS and EMSE
//! act as both HTTP client and server"): HTTPS with mutual TLS, presenting an EMSE's
//! certificate and requiring a client certificate that chains to the CA, recording every
//! request exactly (peer identity, method, target, headers, body) for the checks to judge.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use e2m_https::pki::{Credentials, PeerIdentity};
use e2m_msg::CallbackUri;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::pki_types::CertificateDer;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// One request the endpoint received.
#[derive(Clone, Debug)]
pub(crate) struct Received {
    /// The e2m identity of the client certificate (the handshake already verified its chain).
    pub(crate) peer: Result<PeerIdentity, String>,
    /// The method.
    pub(crate) method: String,
    /// The request target.
    pub(crate) target: String,
    /// `Content-Type`, if any.
    pub(crate) content_type: Option<String>,
    /// The body.
    pub(crate) body: Vec<u8>,
    /// When it arrived.
    pub(crate) at: Instant,
    /// The status the endpoint answered with.
    pub(crate) answered: u16,
}

#[derive(Debug, Default)]
struct Inner {
    received: Mutex<Vec<Received>>,
    arrived: Notify,
    /// Requests to refuse once each: a body containing the text gets the status.
    refusals: Mutex<Vec<(String, u16)>>,
    /// Connections whose client certificate verified.
    handshakes: Mutex<usize>,
}

/// A running endpoint.
#[derive(Debug)]
pub(crate) struct CallbackServer {
    callback: CallbackUri,
    inner: Arc<Inner>,
    task: JoinHandle<()>,
}

impl Drop for CallbackServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl CallbackServer {
    /// Listens on `listen` with `credentials` (an EMSE's, with `serverAuth`), trusting
    /// client certificates that chain to `ca`. The callback URI names `host` (default: the
    /// listening IP address) and the bound port, path `/e2m/v1/notifications`.
    pub(crate) async fn start(
        listen: SocketAddr,
        host: Option<&str>,
        credentials: &Credentials,
        ca: &[CertificateDer<'static>],
    ) -> Result<CallbackServer, String> {
        let mut roots = RootCertStore::empty();
        for cert in ca {
            roots.add(cert.clone()).map_err(|e| format!("CA: {e}"))?;
        }
        let provider = e2m_https::tls::profile_provider();
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| format!("client verifier: {e}"))?;
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(e2m_https::tls::PROFILE_VERSIONS)
            .map_err(|e| e.to_string())?
            .with_client_cert_verifier(verifier)
            .with_single_cert(credentials.chain.clone(), credentials.key())
            .map_err(|e| format!("callback certificate: {e}"))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| format!("callback listener {listen}: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let host = match host {
            Some(h) => h.to_owned(),
            None if addr.is_ipv6() => format!("[{}]", addr.ip()),
            None => addr.ip().to_string(),
        };
        let callback = CallbackUri::new(&format!(
            "https://{host}:{}{}",
            addr.port(),
            e2m_msg::rest::NOTIFICATIONS_PATH
        ))
        .map_err(|e| format!("callback URI: {e}"))?;
        let inner = Arc::new(Inner::default());
        let task = tokio::spawn(accept_loop(listener, acceptor, Arc::clone(&inner)));
        Ok(CallbackServer {
            callback,
            inner,
            task,
        })
    }

    /// The callback URI to put in subscriptions.
    pub(crate) fn callback(&self) -> &CallbackUri {
        &self.callback
    }

    /// Answers the next request whose body contains `needle` with `status` instead of 204
    /// (once).
    pub(crate) fn refuse_once(&self, needle: String, status: u16) {
        lock(&self.inner.refusals).push((needle, status));
    }

    /// Forgets refusals not used.
    pub(crate) fn clear_refusals(&self) {
        lock(&self.inner.refusals).clear();
    }

    /// Every request received so far that `matches`.
    pub(crate) fn matching(&self, matches: &(dyn Fn(&Received) -> bool + Sync)) -> Vec<Received> {
        lock(&self.inner.received)
            .iter()
            .filter(|r| matches(r))
            .cloned()
            .collect()
    }

    /// Waits until at least `n` requests match, at most `within`; returns those seen.
    pub(crate) async fn wait_for(
        &self,
        n: usize,
        within: Duration,
        matches: &(dyn Fn(&Received) -> bool + Sync),
    ) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let arrived = self.inner.arrived.notified();
            let seen = self.matching(matches);
            if seen.len() >= n {
                return seen;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return self.matching(matches);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    inner: Arc<Inner>,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let acceptor = acceptor.clone();
        let inner = Arc::clone(&inner);
        tokio::spawn(async move {
            let Ok(Ok(tls)) =
                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
            else {
                return;
            };
            let peer = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|leaf| PeerIdentity::from_certificate(leaf).map_err(|e| e.to_string()))
                .unwrap_or_else(|| Err("no client certificate".into()));
            *lock(&inner.handshakes) += 1;
            let service = service_fn(move |request: hyper::Request<Incoming>| {
                let inner = Arc::clone(&inner);
                let peer = peer.clone();
                async move { Ok::<_, std::convert::Infallible>(record(&inner, peer, request).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}

async fn record(
    inner: &Inner,
    peer: Result<PeerIdentity, String>,
    request: hyper::Request<Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let body = Limited::new(body, 1024 * 1024)
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let status = {
        let mut refusals = lock(&inner.refusals);
        let text = String::from_utf8_lossy(&body);
        match refusals
            .iter()
            .position(|(needle, _)| text.contains(needle.as_str()))
        {
            Some(i) => refusals.remove(i).1,
            None => 204,
        }
    };
    let received = Received {
        peer,
        method: parts.method.as_str().to_owned(),
        target: parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default(),
        content_type: parts
            .headers
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body,
        at: Instant::now(),
        answered: status,
    };
    lock(&inner.received).push(received);
    inner.arrived.notify_waiters();
    let mut response = hyper::Response::new(Full::new(Bytes::new()));
    *response.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::NO_CONTENT);
    if status == 503 {
        response.headers_mut().insert(
            hyper::header::RETRY_AFTER,
            hyper::header::HeaderValue::from_static("1"),
        );
    }
    response
}
