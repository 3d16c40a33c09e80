//! A hardened HTTPS (HTTP/1.1 over TLS, mutual authentication) server stack, generic over the
//! request handler: the EMKS serves the REST binding with it, an EMSE its notification
//! endpoint, and the benchmark a fixed body (the baseline).
//!
//! Every connection goes through the same steps, each bounded:
//!
//! 1. a connection slot (at most [`Limits::max_connections`] at once; the accept loop waits
//!    when they are all taken, leaving further clients in the kernel's backlog);
//! 2. the TLS handshake, under [`Limits::handshake_timeout`] (a client that stalls or dribbles
//!    its handshake is dropped);
//! 3. the peer's identity from its **verified** certificate (the handshake already refused
//!    anyone else, see [`super::tls`]);
//! 4. HTTP/1.1 with hyper's `header_read_timeout` (= [`Limits::header_timeout`]): the whole
//!    request head must arrive within it, and since hyper restarts that timer whenever a
//!    keep-alive connection goes idle, it also closes idle connections. `axum::serve` has no
//!    such timeout, which is why the stack is built on hyper's connection builder directly;
//! 5. per request: the peer's rate limit (429), the declared length (413 before reading),
//!    then the body, read with a size cap (413) under [`Limits::body_timeout`] (408);
//! 6. the handler, given the peer identity and the complete body.
//!
//! Logging: the stack logs the peer identity (not secret), the method and the status, never
//! the request target (it contains session ids) and never a body (it may contain keys).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, StatusCode, Uri};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use super::ratelimit::{RateLimit, RateLimiter};
use super::tls::peer_identity;
use crate::pki::PeerIdentity;

/// The HTTP response type of the stack.
pub type HttpResponse = hyper::Response<Full<Bytes>>;

/// The bounds every connection and request is held to.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest request body accepted (issue 5: 64 KiB; larger → 413).
    pub max_body: usize,
    /// Largest request head (start line + headers) accepted (larger → 431).
    pub max_header_bytes: usize,
    /// Time allowed for the TLS handshake.
    pub handshake_timeout: Duration,
    /// Time allowed for a request head to arrive, and for a keep-alive connection to idle.
    pub header_timeout: Duration,
    /// Time allowed for a request body to arrive once its head has.
    pub body_timeout: Duration,
    /// Connections handled at once (including those still in the handshake).
    pub max_connections: usize,
    /// Each peer's request budget.
    pub rate: RateLimit,
    /// How long [`ServerHandle::shutdown`] lets open connections finish.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body: 64 * 1024,
            max_header_bytes: 16 * 1024,
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            max_connections: 1024,
            rate: RateLimit::DEFAULT,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// One complete, authenticated request.
#[derive(Debug)]
pub struct Request {
    /// Who sent it, from the verified client certificate.
    pub peer: PeerIdentity,
    /// The method.
    pub method: Method,
    /// The request target (path and query).
    pub uri: Uri,
    /// The headers.
    pub headers: HeaderMap,
    /// The whole body (at most [`Limits::max_body`] octets).
    pub body: Bytes,
}

/// Why the stack answered a request without asking the handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// The body is (or declares to be) over [`Limits::max_body`]: 413.
    PayloadTooLarge,
    /// The peer's budget is spent: 429, with a `Retry-After` of this many seconds.
    RateLimited {
        /// Seconds until a request would be accepted (at least 1).
        retry_after_secs: u64,
    },
    /// The body did not arrive within [`Limits::body_timeout`]: 408.
    BodyTimeout,
    /// The body could not be read (connection error, bad chunked encoding): 400.
    BadBody,
}

impl Rejection {
    /// The HTTP status for this rejection.
    pub fn status(self) -> StatusCode {
        match self {
            Rejection::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Rejection::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Rejection::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Rejection::BadBody => StatusCode::BAD_REQUEST,
        }
    }
}

/// What serves the requests of a [`serve`]d listener.
pub trait Handler: Send + Sync + 'static {
    /// Answers one authenticated request.
    fn handle(&self, request: Request) -> impl Future<Output = HttpResponse> + Send;

    /// The response for a request the stack rejected itself. The default is an RFC 9457
    /// problem document in XML (`application/problem+xml`) with the status title only;
    /// handlers with their own problem vocabulary (the EMKS) override it.
    fn reject(&self, rejection: Rejection) -> HttpResponse {
        generic_problem(rejection.status())
    }
}

/// A bare RFC 9457 (Appendix B, XML) problem document for `status`.
pub fn generic_problem(status: StatusCode) -> HttpResponse {
    let title = status.canonical_reason().unwrap_or("Error");
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<problem xmlns=\"urn:ietf:rfc:7807\">\
         <title>{title}</title><status>{}</status></problem>\n",
        status.as_u16()
    );
    let mut response = hyper::Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+xml"),
    );
    response
}

/// A handler that answers every request with the same body (the benchmark's baseline:
/// the same TLS and HTTP stack with no store, no KDF and no XML).
#[derive(Clone, Debug)]
pub struct FixedBody {
    /// The body.
    pub body: Bytes,
    /// Its content type.
    pub content_type: &'static str,
}

impl Handler for FixedBody {
    async fn handle(&self, _request: Request) -> HttpResponse {
        let mut response = hyper::Response::new(Full::new(self.body.clone()));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        response
    }
}

/// A running server: its address and the way to stop it.
#[derive(Debug)]
pub struct ServerHandle {
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl ServerHandle {
    /// The address the server listens on (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, lets open connections finish for [`Limits::shutdown_grace`], then
    /// drops them. Returns when the server is gone.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

/// Starts serving `listener` with TLS configuration `tls` (see [`super::tls::server_config`])
/// and `handler`, on the current tokio runtime.
///
/// # Errors
/// The listener's local address cannot be read.
pub fn serve<H: Handler>(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    limits: Limits,
    handler: Arc<H>,
) -> std::io::Result<ServerHandle> {
    let local_addr = listener.local_addr()?;
    let (shutdown, stop) = watch::channel(false);
    let task = tokio::spawn(accept_loop(listener, tls, limits, handler, stop));
    Ok(ServerHandle {
        local_addr,
        shutdown,
        task,
    })
}

async fn accept_loop<H: Handler>(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    limits: Limits,
    handler: Arc<H>,
    mut stop: watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let limiter = Arc::new(RateLimiter::new(limits.rate));
    let graceful = GracefulShutdown::new();
    let limits = Arc::new(limits);
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break, // The semaphore is never closed; stop if it is.
            },
            _ = stop.changed() => break,
        };
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // E.g. EMFILE: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let handler = handler.clone();
        let limiter = limiter.clone();
        let limits = limits.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            let tls =
                match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(error)) => {
                        tracing::debug!(%remote, %error, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%remote, "TLS handshake timed out");
                        return;
                    }
                };
            let Some(peer) = peer_identity(tls.get_ref().1) else {
                // Unreachable with our verifier (it requires an identity); refuse anyway.
                tracing::warn!(%remote, "verified peer without an e2m identity");
                return;
            };
            tracing::debug!(%remote, %peer, "TLS connection established");
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .max_header_size(limits.max_header_bytes)
                .keep_alive(true);
            let service = service_fn(move |request: hyper::Request<Incoming>| {
                let handler = handler.clone();
                let limiter = limiter.clone();
                let limits = limits.clone();
                let peer = peer.clone();
                async move {
                    Ok::<_, Infallible>(
                        handle_request(&*handler, &limiter, &limits, peer, request).await,
                    )
                }
            });
            let connection = builder.serve_connection(TokioIo::new(tls), service);
            if let Err(error) = watcher.watch(connection).await {
                tracing::debug!(%remote, %error, "connection closed with an error");
            }
        });
    }
    drop(listener);
    let limits_grace = limits.shutdown_grace;
    if tokio::time::timeout(limits_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("shutdown grace period over; dropping open connections");
    }
}

async fn handle_request<H: Handler>(
    handler: &H,
    limiter: &RateLimiter,
    limits: &Limits,
    peer: PeerIdentity,
    request: hyper::Request<Incoming>,
) -> HttpResponse {
    let started = Instant::now();
    let method = request.method().clone();
    let response = match read_request(limiter, limits, peer.clone(), request).await {
        Ok(request) => handler.handle(request).await,
        Err(rejection) => {
            let mut response = handler.reject(rejection);
            if let Rejection::RateLimited { retry_after_secs } = rejection {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            } else {
                // The rest of the body was not read: the connection cannot be reused.
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            response
        }
    };
    tracing::debug!(
        %peer,
        %method,
        status = response.status().as_u16(),
        micros = started.elapsed().as_micros() as u64,
        "request"
    );
    response
}

async fn read_request(
    limiter: &RateLimiter,
    limits: &Limits,
    peer: PeerIdentity,
    request: hyper::Request<Incoming>,
) -> Result<Request, Rejection> {
    if let Err(wait) = limiter.check(&peer) {
        return Err(Rejection::RateLimited {
            retry_after_secs: wait.as_secs().max(1),
        });
    }
    let (parts, body) = request.into_parts();
    // Refuse a declared oversize body before reading any of it.
    if let Some(length) = parts.headers.get(header::CONTENT_LENGTH) {
        let declared = length
            .to_str()
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or(Rejection::BadBody)?;
        if declared > limits.max_body as u64 {
            return Err(Rejection::PayloadTooLarge);
        }
    }
    let collected = tokio::time::timeout(
        limits.body_timeout,
        Limited::new(body, limits.max_body).collect(),
    )
    .await
    .map_err(|_| Rejection::BodyTimeout)?;
    let body = match collected {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            return Err(Rejection::PayloadTooLarge);
        }
        Err(_) => return Err(Rejection::BadBody),
    };
    Ok(Request {
        peer,
        method: parts.method,
        uri: parts.uri,
        headers: parts.headers,
        body,
    })
}
