//! The hardened HTTP/2 server stack of the SBI (TS 29.500 §5.2), generic over a
//! [`Handler`]: the AAnF serves Naanf_AKMA with it ([`crate::aanf`]), an AF its
//! notification endpoint ([`crate::notify`]).
//!
//! Every connection goes through the same bounded steps as `e2m-https`'s HTTP/1.1 stack:
//!
//! 1. **admission before any work**, in `e2m_https::admission`'s pool of connections
//!    waiting for their first octets (large, per-source bound, fair between sources:
//!    [`Limits::max_awaiting_hello`]), under [`Limits::client_hello_timeout`];
//! 2. with TLS, the handshake in the small pool of handshakes in progress
//!    ([`Limits::max_handshaking`]), the whole of it under [`Limits::handshake_timeout`];
//!    the client certificate is mandatory and verified (see [`crate::tls`]); the peer is
//!    the names of its certificate. With h2c, the 24-octet connection preface instead,
//!    under the same timeout, and the peer is what the operator's address plan calls the
//!    source address ([`H2cPeers`]): there is no certificate inside a trust domain that
//!    runs SBI in clear;
//! 3. an authenticated connection slot ([`Limits::max_connections`]);
//! 4. **HTTP/2 only** (TS 29.500 §5.2.2.1: "HTTP/2 shall be used"). A TLS client that
//!    negotiated `http/1.1` by ALPN, or an h2c client whose first octets are not the
//!    HTTP/2 preface, gets one HTTP/1.1 answer, `505 HTTP Version Not Supported` with a
//!    problem document, and the connection closes: it learns why instead of seeing a
//!    handshake failure or a connection reset. `Upgrade: h2c` (RFC 7540 §3.2, deprecated
//!    by RFC 9113) is not offered;
//! 5. HTTP/2 with hyper's h2, bounded as [`Limits`] says (each field gives its reason):
//!    concurrent streams, header list size, frame size, flow-control windows, send buffer,
//!    reset streams (rapid reset, CVE-2023-44487: streams the client opens and cancels;
//!    streams the server resets for the client's errors, RUSTSEC-2024-0003),
//!    CONTINUATION floods (h2 bounds a header block by the header list size while it
//!    decodes, so endless CONTINUATION frames end the connection), keep-alive PINGs, and
//!    an idle timeout (no stream for [`Limits::idle_timeout`]: `GOAWAY`);
//! 6. per request, before the handler: the peer's rate limit (429 with `Retry-After`), the
//!    header list against [`Limits::max_header_list_size`] (431), the declared and the
//!    read body against [`Limits::max_body`] (413) under [`Limits::body_timeout`] (408);
//! 7. the handler, with the peer and the whole body.
//!
//! Every refusal of steps 4 and 6 is the handler's [`Handler::reject`] (a TS 29.500
//! problem document, `application/problem+json`, by default). Two are not, because the
//! h2 library answers them before any code of ours runs: a header block over twice
//! [`Limits::max_header_list_size`] (the `SETTINGS_MAX_HEADER_LIST_SIZE` announced), and
//! protocol errors, which end the stream or the connection with an HTTP/2 error code.
//!
//! Logging: the peer's first name, the method and the status; never the body (it may
//! carry K_AKMA or K_AF), never a token.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use e2m_aanf::{Host, Peer};
use e2m_https::admission::{Pool, Refusal, Source};
use e2m_https::metrics::HandshakeFailure;
use e2m_https::ratelimit::RateLimit;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, StatusCode, Uri};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_rustls::LazyConfigAcceptor;

use crate::tls::{ALPN_H2, cert_names};

/// The response type of the stack.
pub type HttpResponse = hyper::Response<Full<Bytes>>;

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The bounds every connection, stream and request is held to.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Time from arrival to the complete ClientHello (TLS) or connection preface (h2c).
    pub client_hello_timeout: Duration,
    /// Time from arrival to the end of the TLS handshake.
    pub handshake_timeout: Duration,
    /// Connections waiting for their ClientHello or preface at once (cheap: a socket and a
    /// small task each).
    pub max_awaiting_hello: usize,
    /// The same, from one source (an IPv4 address or an IPv6 /64).
    pub max_awaiting_hello_per_source: usize,
    /// TLS handshakes in progress at once (the server's key exchange and signature).
    pub max_handshaking: usize,
    /// The same, from one source.
    pub max_handshaking_per_source: usize,
    /// Established connections at once. SBI consumers keep few connections and many
    /// streams on each, so this is small beside the HTTP/1.1 stack's.
    pub max_connections: usize,
    /// `SETTINGS_MAX_CONCURRENT_STREAMS`: requests in progress on one connection. 100, the
    /// least RFC 9113 §6.5.2 recommends; each stream may hold a body of
    /// [`Limits::max_body`] and a handler call.
    pub max_concurrent_streams: u32,
    /// The largest header list accepted (RFC 9113 §6.5.2: names, values and 32 octets
    /// per field); larger: 431 with a problem document. h2 is told twice this
    /// (`SETTINGS_MAX_HEADER_LIST_SIZE`), and refuses a larger block itself while
    /// decoding it, CONTINUATION frames included. SBI heads are small (a bearer token of
    /// a few hundred octets is the largest field).
    pub max_header_list_size: u32,
    /// `SETTINGS_MAX_FRAME_SIZE`: 16 KiB, the protocol's minimum (no AKMA body needs more).
    pub max_frame_size: u32,
    /// `SETTINGS_INITIAL_WINDOW_SIZE`: what a client may send on one stream before the
    /// server reads it. Twice [`Limits::max_body`]: a body never waits for a window
    /// update, and a stream never buffers much more than a body.
    pub stream_window: u32,
    /// The connection's flow-control window: all streams together.
    pub connection_window: u32,
    /// What the server buffers for sending on one stream.
    pub max_send_buffer: usize,
    /// Streams a client opened and reset before the server accepted them (rapid reset,
    /// CVE-2023-44487); beyond, `GOAWAY`. h2's default (20).
    pub max_pending_accept_reset_streams: usize,
    /// Streams the server reset because of the client's errors (RUSTSEC-2024-0003);
    /// beyond, `GOAWAY`.
    pub max_local_error_reset_streams: usize,
    /// PING interval on a connection (a dead peer is found and its connection freed).
    pub keep_alive_interval: Duration,
    /// Time for the PING's acknowledgement.
    pub keep_alive_timeout: Duration,
    /// A connection with no stream in progress for this long gets `GOAWAY` and closes.
    pub idle_timeout: Duration,
    /// The largest request body (the largest AKMA body is about 700 octets; see
    /// `e2m_akma::MAX_BODY`).
    pub max_body: usize,
    /// Time for a request's body once its headers arrived.
    pub body_timeout: Duration,
    /// Each peer's request budget (by its first certificate name, or h2c source name).
    pub rate: RateLimit,
    /// How long [`ServerHandle::shutdown`] (and an idle `GOAWAY`) lets streams in progress
    /// finish.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        let max_body = e2m_akma::MAX_BODY;
        Limits {
            client_hello_timeout: Duration::from_secs(2),
            handshake_timeout: Duration::from_secs(3),
            max_awaiting_hello: 4096,
            max_awaiting_hello_per_source: 256,
            max_handshaking: 256,
            max_handshaking_per_source: 32,
            max_connections: 256,
            max_concurrent_streams: 100,
            max_header_list_size: 16 * 1024,
            max_frame_size: 16 * 1024,
            stream_window: u32::try_from(2 * max_body).unwrap_or(u32::MAX),
            connection_window: 1024 * 1024,
            max_send_buffer: 64 * 1024,
            max_pending_accept_reset_streams: 20,
            max_local_error_reset_streams: 256,
            keep_alive_interval: Duration::from_secs(30),
            keep_alive_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            max_body,
            body_timeout: Duration::from_secs(10),
            rate: RateLimit {
                per_second: 5_000.0,
                burst: 10_000,
            },
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// The names the operator gives the sources of h2c connections (the address plan of its
/// trust domain): an h2c peer has no certificate, so this is its identity. A source not
/// named here is known by its address alone (which the AAnF's configuration may still
/// name as an AUSF or NEF).
#[derive(Clone, Debug, Default)]
pub struct H2cPeers {
    by_address: HashMap<IpAddr, Vec<Host>>,
}

impl H2cPeers {
    /// No names.
    pub fn new() -> H2cPeers {
        H2cPeers::default()
    }

    /// Calls the peer at `address` by `names` (as a certificate would), besides its
    /// address.
    #[must_use]
    pub fn name(mut self, address: IpAddr, names: impl IntoIterator<Item = Host>) -> Self {
        self.by_address
            .entry(address.to_canonical())
            .or_default()
            .extend(names);
        self
    }

    fn peer(&self, address: IpAddr) -> Peer {
        let address = address.to_canonical();
        let named = self.by_address.get(&address).into_iter().flatten().cloned();
        Peer::new(named.chain([Host::Ip(address)]))
    }
}

/// How a listener is served.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Transport {
    /// HTTP/2 over TLS with mutual certificates (ALPN `h2`; see [`crate::tls::server_config`]).
    Tls(Arc<rustls::ServerConfig>),
    /// HTTP/2 in clear with prior knowledge (RFC 9113 §3.3), inside an operator's trust
    /// domain only: the peers are named by address ([`H2cPeers`]).
    H2c(H2cPeers),
}

/// The authenticated peer of a connection.
#[derive(Clone, Debug)]
pub struct SbiPeer {
    /// Its names (the certificate's, or the h2c address plan's).
    pub peer: Peer,
    /// Its NF instance ID, from its certificate (`urn:uuid:`), if it has one.
    pub nf_instance: Option<Arc<str>>,
    /// Its address.
    pub remote: SocketAddr,
    /// Whether it came over TLS (else h2c).
    pub tls: bool,
}

impl SbiPeer {
    /// The name its rate limit and log lines use: its first name.
    fn key(&self) -> Host {
        self.peer
            .names()
            .first()
            .cloned()
            .unwrap_or(Host::Ip(self.remote.ip()))
    }
}

/// One complete request. Its `Debug` shows the peer, method, path, header names and body
/// length only (a body may carry K_AKMA; a header, a token).
pub struct SbiRequest {
    /// Who sent it.
    pub peer: Arc<SbiPeer>,
    /// The method.
    pub method: Method,
    /// The request target.
    pub uri: Uri,
    /// The headers.
    pub headers: HeaderMap,
    /// The whole body (at most [`Limits::max_body`] octets).
    pub body: Bytes,
}

impl core::fmt::Debug for SbiRequest {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SbiRequest")
            .field("peer", &self.peer)
            .field("method", &self.method)
            .field("path", &self.uri.path())
            .field("header_names", &self.headers.keys().collect::<Vec<_>>())
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// Why the stack answered without asking the handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// The body is (or declares to be) over [`Limits::max_body`]: 413.
    PayloadTooLarge,
    /// The peer's budget is spent: 429 with `Retry-After` of this many seconds.
    RateLimited {
        /// Seconds until a request would be admitted (at least 1).
        retry_after_secs: u64,
    },
    /// The body did not arrive within [`Limits::body_timeout`]: 408.
    BodyTimeout,
    /// The body could not be read (the stream was reset, a bad frame): 400.
    BadBody,
    /// The header list is over [`Limits::max_header_list_size`]: 431.
    HeadersTooLarge,
    /// An HTTP/1.1 request: 505.
    Http11,
}

impl Rejection {
    /// The HTTP status.
    pub fn status(self) -> StatusCode {
        match self {
            Rejection::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Rejection::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Rejection::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Rejection::BadBody => StatusCode::BAD_REQUEST,
            Rejection::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Rejection::Http11 => StatusCode::HTTP_VERSION_NOT_SUPPORTED,
        }
    }
}

/// What serves the requests of a [`serve`]d listener.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request.
    fn handle(&self, request: SbiRequest) -> impl Future<Output = HttpResponse> + Send;

    /// The answer to a request the stack refused itself: by default a TS 29.500 problem
    /// document ([`crate::respond::rejection`]).
    fn reject(&self, rejection: Rejection) -> HttpResponse {
        crate::respond::rejection(rejection)
    }

    /// A connection ended before its TLS handshake (or h2c preface) completed; keep it
    /// cheap. The default does nothing.
    fn handshake_failed(&self, failure: HandshakeFailure) {
        let _ = failure;
    }
}

/// A running server.
#[derive(Debug)]
pub struct ServerHandle {
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl ServerHandle {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, sends `GOAWAY` on every connection, lets streams in progress
    /// finish for [`Limits::shutdown_grace`], then closes what is left.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

/// Serves `listener` with `transport` and `handler` on the current tokio runtime.
///
/// # Errors
/// The listener's address cannot be read.
pub fn serve<H: Handler>(
    listener: TcpListener,
    transport: Transport,
    limits: Limits,
    handler: Arc<H>,
) -> std::io::Result<ServerHandle> {
    let local_addr = listener.local_addr()?;
    let (shutdown, stop) = watch::channel(false);
    let shared = Arc::new(Shared {
        awaiting: Arc::new(Pool::new(
            limits.max_awaiting_hello,
            limits.max_awaiting_hello_per_source,
        )),
        handshaking: Arc::new(Pool::new(
            limits.max_handshaking,
            limits.max_handshaking_per_source,
        )),
        slots: Arc::new(Semaphore::new(limits.max_connections.max(1))),
        limiter: PeerLimiter::new(limits.rate),
        transport,
        limits,
        handler,
    });
    let task = tokio::spawn(accept_loop(listener, shared, stop));
    Ok(ServerHandle {
        local_addr,
        shutdown,
        task,
    })
}

struct Shared<H> {
    transport: Transport,
    limits: Limits,
    handler: Arc<H>,
    awaiting: Arc<Pool>,
    handshaking: Arc<Pool>,
    slots: Arc<Semaphore>,
    limiter: PeerLimiter,
}

impl<H: Handler> Shared<H> {
    fn failed(&self, remote: SocketAddr, failure: HandshakeFailure) {
        tracing::debug!(%remote, reason = failure.as_str(), "connection ended before HTTP/2");
        self.handler.handshake_failed(failure);
    }
}

/// The stop signal (shutdown begins) and the halt signal (the grace is over).
#[derive(Clone)]
struct Ends {
    stop: watch::Receiver<bool>,
    halt: watch::Receiver<bool>,
}

async fn accept_loop<H: Handler>(
    listener: TcpListener,
    shared: Arc<Shared<H>>,
    mut stop: watch::Receiver<bool>,
) {
    let (halt_tx, halt) = watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors: close the oldest silent connection of the
                    // heaviest source, as the HTTP/1.1 stack does; otherwise back off.
                    if !shared.awaiting.evict_one() {
                        tracing::warn!(%error, "accept failed");
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let source = Source::of(remote.ip());
        let ticket = match shared.awaiting.admit(source) {
            Ok(ticket) => ticket,
            Err(Refusal::SourceFull | Refusal::Full) => {
                drop(tcp);
                shared.failed(remote, HandshakeFailure::Refused);
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let ends = Ends {
            stop: stop.clone(),
            halt: halt.clone(),
        };
        connections.spawn(connection(shared.clone(), tcp, remote, ticket, ends));
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let grace = shared.limits.shutdown_grace;
    let _ = tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    let _ = halt_tx.send(true);
    while connections.join_next().await.is_some() {}
}

/// One connection: first octets, TLS or preface, then HTTP/2 (or the HTTP/1.1 refusal).
async fn connection<H: Handler>(
    shared: Arc<Shared<H>>,
    tcp: TcpStream,
    remote: SocketAddr,
    mut ticket: e2m_https::admission::Ticket,
    ends: Ends,
) {
    let arrived = Instant::now();
    let limits = &shared.limits;
    let deadlines = Deadlines {
        hello: arrived + limits.client_hello_timeout.min(limits.handshake_timeout),
        handshake: arrived + limits.handshake_timeout,
    };
    let mut stop = ends.stop.clone();
    let mut first = [0u8; 1];
    let peeked = tokio::select! {
        peeked = tokio::time::timeout_at(deadlines.hello, tcp.peek(&mut first)) => peeked,
        () = ticket.evicted() => return shared.failed(remote, HandshakeFailure::Evicted),
        _ = stop.wait_for(|s| *s) => return,
    };
    match peeked {
        Ok(Ok(1..)) => {}
        Ok(Ok(0)) => return shared.failed(remote, HandshakeFailure::Closed),
        Ok(Err(error)) => return shared.failed(remote, HandshakeFailure::of_error(&error)),
        Err(_) => return shared.failed(remote, HandshakeFailure::HelloTimeout),
    }
    match shared.transport.clone() {
        Transport::Tls(config) => {
            Box::pin(tls_handshake(
                shared, tcp, remote, ticket, ends, config, deadlines,
            ))
            .await;
        }
        Transport::H2c(peers) => {
            Box::pin(h2c_preface(
                shared,
                tcp,
                remote,
                ticket,
                ends,
                deadlines.hello,
                peers,
            ))
            .await;
        }
    }
}

/// When the ClientHello (or preface), and the whole handshake, must be done.
#[derive(Clone, Copy)]
struct Deadlines {
    hello: Instant,
    handshake: Instant,
}

/// The ClientHello (still in the large pool), the handshake (in the small pool).
#[allow(
    clippy::too_many_arguments,
    reason = "one connection's state, passed once"
)]
async fn tls_handshake<H: Handler>(
    shared: Arc<Shared<H>>,
    tcp: TcpStream,
    remote: SocketAddr,
    mut ticket: e2m_https::admission::Ticket,
    ends: Ends,
    config: Arc<rustls::ServerConfig>,
    deadlines: Deadlines,
) {
    let mut stop = ends.stop.clone();
    let hello = tokio::select! {
        hello = tokio::time::timeout_at(
            deadlines.hello,
            LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp),
        ) => hello,
        () = ticket.evicted() => return shared.failed(remote, HandshakeFailure::Evicted),
        _ = stop.wait_for(|s| *s) => return,
    };
    drop(ticket);
    let start = match hello {
        Ok(Ok(start)) => start,
        Ok(Err(error)) => return shared.failed(remote, HandshakeFailure::of_error(&error)),
        Err(_) => return shared.failed(remote, HandshakeFailure::HelloTimeout),
    };
    let Ok(mut ticket) = shared.handshaking.admit(Source::of(remote.ip())) else {
        return shared.failed(remote, HandshakeFailure::Refused);
    };
    let done = tokio::select! {
        done = tokio::time::timeout_at(deadlines.handshake, start.into_stream(config)) => done,
        () = ticket.evicted() => return shared.failed(remote, HandshakeFailure::Evicted),
        _ = stop.wait_for(|s| *s) => return,
    };
    drop(ticket);
    let tls = match done {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => return shared.failed(remote, HandshakeFailure::of_error(&error)),
        Err(_) => return shared.failed(remote, HandshakeFailure::Timeout),
    };
    let (_, conn) = tls.get_ref();
    let names = conn
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|leaf| cert_names(leaf))
        .unwrap_or_default();
    let h2 = conn.alpn_protocol() == Some(ALPN_H2);
    let peer = Arc::new(SbiPeer {
        peer: Peer::new(names.hosts),
        nf_instance: names.nf_instance.map(Arc::from),
        remote,
        tls: true,
    });
    Box::pin(established(shared, tls, peer, h2, ends)).await;
}

/// The h2c connection preface: read until it is complete or the octets differ from it.
#[allow(
    clippy::too_many_arguments,
    reason = "one connection's state, passed once"
)]
async fn h2c_preface<H: Handler>(
    shared: Arc<Shared<H>>,
    mut tcp: TcpStream,
    remote: SocketAddr,
    mut ticket: e2m_https::admission::Ticket,
    ends: Ends,
    deadline: Instant,
    peers: H2cPeers,
) {
    let mut stop = ends.stop.clone();
    let mut read = Vec::with_capacity(PREFACE.len());
    let reading = async {
        let mut buf = [0u8; PREFACE.len()];
        while read.len() < PREFACE.len() {
            let n = tcp.read(&mut buf[..PREFACE.len() - read.len()]).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            read.extend_from_slice(&buf[..n]);
            if !PREFACE.starts_with(&read) {
                break;
            }
        }
        Ok::<_, std::io::Error>(())
    };
    let outcome = tokio::select! {
        outcome = tokio::time::timeout_at(deadline, reading) => outcome,
        () = ticket.evicted() => return shared.failed(remote, HandshakeFailure::Evicted),
        _ = stop.wait_for(|s| *s) => return,
    };
    drop(ticket);
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(error)) => return shared.failed(remote, HandshakeFailure::of_error(&error)),
        Err(_) => return shared.failed(remote, HandshakeFailure::HelloTimeout),
    }
    let h2 = read == PREFACE;
    let peer = Arc::new(SbiPeer {
        peer: peers.peer(remote.ip()),
        nf_instance: None,
        remote,
        tls: false,
    });
    let io = Prefixed {
        prefix: read,
        at: 0,
        io: tcp,
    };
    Box::pin(established(shared, io, peer, h2, ends)).await;
}

/// An established connection: HTTP/2, or the HTTP/1.1 refusal.
async fn established<H, IO>(
    shared: Arc<Shared<H>>,
    io: IO,
    peer: Arc<SbiPeer>,
    h2: bool,
    ends: Ends,
) where
    H: Handler,
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Ok(_slot) = shared.slots.clone().try_acquire_owned() else {
        tracing::info!(remote = %peer.remote, "connection limit reached; connection closed");
        return;
    };
    if h2 {
        serve_h2(shared, io, peer, ends).await;
    } else {
        refuse_http11(&shared, io, &peer).await;
    }
}

/// One HTTP/1.1 exchange answered 505 with the handler's problem document, then close.
async fn refuse_http11<H: Handler, IO>(shared: &Arc<Shared<H>>, io: IO, peer: &SbiPeer)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tracing::debug!(remote = %peer.remote, "HTTP/1.1 refused: HTTP/2 only");
    let handler = shared.handler.clone();
    let service = hyper::service::service_fn(move |_request: hyper::Request<Incoming>| {
        let mut response = handler.reject(Rejection::Http11);
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        async move { Ok::<_, Infallible>(response) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(shared.limits.body_timeout)
        .max_buf_size(16 * 1024)
        .keep_alive(false);
    let connection = builder.serve_connection(TokioIo::new(io), service);
    let _ = tokio::time::timeout(shared.limits.body_timeout, connection).await;
}

/// Streams in progress on one connection, and when the last one ended.
struct Activity {
    in_flight: AtomicUsize,
    last: Mutex<Instant>,
}

struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        *self.0.last.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Activity {
    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// Completes once no stream has been in progress for `timeout`.
    async fn idle(&self, timeout: Duration) {
        loop {
            let last = *self.last.lock().unwrap_or_else(PoisonError::into_inner);
            tokio::time::sleep_until(last + timeout).await;
            let last = *self.last.lock().unwrap_or_else(PoisonError::into_inner);
            if self.in_flight.load(Ordering::Acquire) == 0 && last + timeout <= Instant::now() {
                return;
            }
            if self.in_flight.load(Ordering::Acquire) > 0 {
                tokio::time::sleep(timeout).await;
            }
        }
    }
}

fn h2_builder(limits: &Limits) -> hyper::server::conn::http2::Builder<TokioExecutor> {
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_concurrent_streams)
        .max_header_list_size(limits.max_header_list_size.saturating_mul(2))
        .max_frame_size(limits.max_frame_size)
        .initial_stream_window_size(limits.stream_window)
        .initial_connection_window_size(limits.connection_window)
        .adaptive_window(false)
        .max_send_buf_size(limits.max_send_buffer.min(u32::MAX as usize))
        .max_pending_accept_reset_streams(limits.max_pending_accept_reset_streams)
        .max_local_error_reset_streams(limits.max_local_error_reset_streams)
        .keep_alive_interval(limits.keep_alive_interval)
        .keep_alive_timeout(limits.keep_alive_timeout);
    builder
}

async fn serve_h2<H, IO>(shared: Arc<Shared<H>>, io: IO, peer: Arc<SbiPeer>, ends: Ends)
where
    H: Handler,
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tracing::debug!(remote = %peer.remote, peer = %peer.peer, "HTTP/2 connection");
    let activity = Arc::new(Activity {
        in_flight: AtomicUsize::new(0),
        last: Mutex::new(Instant::now()),
    });
    let service = {
        let shared = shared.clone();
        let peer = peer.clone();
        let activity = activity.clone();
        hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let shared = shared.clone();
            let peer = peer.clone();
            let busy = activity.begin();
            // Boxed: hyper spawns a task per stream holding this future, and the future of
            // a whole request is a few KiB that the spawn and the task's end would otherwise
            // copy (issue 18's profile: 2.5 % of the CPU in those copies).
            Box::pin(async move {
                let response = handle_request(&shared, peer, request).await;
                drop(busy);
                Ok::<_, Infallible>(response)
            })
        })
    };
    let builder = h2_builder(&shared.limits);
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    let Ends { mut stop, mut halt } = ends;
    let mut closing_since: Option<Instant> = None;
    let grace = shared.limits.shutdown_grace;
    loop {
        let closing = closing_since.is_some();
        let give_up = closing_since.map_or_else(|| Instant::now() + grace, |t| t + grace);
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(error) = served {
                    tracing::debug!(remote = %peer.remote, %error, "HTTP/2 connection ended with an error");
                }
                return;
            }
            () = activity.idle(shared.limits.idle_timeout), if !closing => {
                tracing::debug!(remote = %peer.remote, "idle HTTP/2 connection: GOAWAY");
                connection.as_mut().graceful_shutdown();
                closing_since = Some(Instant::now());
            }
            _ = stop.wait_for(|s| *s), if !closing => {
                connection.as_mut().graceful_shutdown();
                closing_since = Some(Instant::now());
            }
            () = tokio::time::sleep_until(give_up), if closing => return,
            _ = halt.wait_for(|h| *h) => return,
        }
    }
}

/// The header list size of RFC 9113 §6.5.2 (names, values, 32 octets per field), with the
/// pseudo-header fields the request line stands for.
fn header_list_size(request: &hyper::Request<Incoming>) -> usize {
    let fields: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 32)
        .sum();
    let pseudo = request.method().as_str().len()
        + request
            .uri()
            .path_and_query()
            .map_or(1, |p| p.as_str().len())
        + request.uri().authority().map_or(0, |a| a.as_str().len())
        + request.uri().scheme_str().map_or(0, str::len)
        + 4 * 32;
    fields + pseudo
}

async fn handle_request<H: Handler>(
    shared: &Shared<H>,
    peer: Arc<SbiPeer>,
    request: hyper::Request<Incoming>,
) -> HttpResponse {
    let started = std::time::Instant::now();
    let method = request.method().clone();
    let response = match admit(shared, &peer, request).await {
        Ok(request) => shared.handler.handle(request).await,
        Err(rejection) => {
            audit_rejection(&peer, rejection);
            let mut response = shared.handler.reject(rejection);
            if let Rejection::RateLimited { retry_after_secs } = rejection {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            }
            response
        }
    };
    tracing::debug!(
        peer = %peer.peer,
        %method,
        status = response.status().as_u16(),
        micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        "request"
    );
    response
}

/// The most of a refused request's body that is read (and dropped) before the answer.
const LINGER_BODY_MAX: u64 = 64 * 1024;

/// Reads and drops what is left of a refused request's body (frame by frame, never kept),
/// at most [`LINGER_BODY_MAX`] octets within the body timeout, so that the client is not
/// still sending when the answer and the stream's reset (RST_STREAM NO_ERROR, RFC 9113
/// §8.1) arrive: some clients (curl) then report a stream error instead of reading the
/// answer. Beyond the bound the answer goes at once and the stream is reset.
async fn drain(mut body: Incoming, limits: &Limits) {
    let reading = async {
        let mut read = 0u64;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => {
                    read += frame.data_ref().map_or(0, |d| d.len() as u64);
                    if read > LINGER_BODY_MAX {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
    };
    let _ = tokio::time::timeout(limits.body_timeout, reading).await;
}

/// The per-request checks before the handler: rate, header list, body.
async fn admit<H: Handler>(
    shared: &Shared<H>,
    peer: &Arc<SbiPeer>,
    request: hyper::Request<Incoming>,
) -> Result<SbiRequest, Rejection> {
    let limits = &shared.limits;
    let early = shared.limiter.check(&peer.key()).and_then(|()| {
        if header_list_size(&request) > limits.max_header_list_size as usize {
            Err(Rejection::HeadersTooLarge)
        } else {
            Ok(())
        }
    });
    let (parts, body) = request.into_parts();
    if let Err(rejection) = early {
        drain(body, limits).await;
        return Err(rejection);
    }
    if let Some(length) = parts.headers.get(header::CONTENT_LENGTH) {
        let declared = length
            .to_str()
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or(Rejection::BadBody)?;
        if declared > limits.max_body as u64 {
            if declared <= LINGER_BODY_MAX {
                drain(body, limits).await;
            }
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
    Ok(SbiRequest {
        peer: peer.clone(),
        method: parts.method,
        uri: parts.uri,
        headers: parts.headers,
        body,
    })
}

/// Refusals by the stack at info level, one line per power of two of each cause, so that
/// a flood cannot flood the log.
fn audit_rejection(peer: &SbiPeer, rejection: Rejection) {
    static COUNTS: [AtomicUsize; 6] = [const { AtomicUsize::new(0) }; 6];
    let (index, cause) = match rejection {
        Rejection::RateLimited { .. } => (0, "rate-limited"),
        Rejection::PayloadTooLarge => (1, "payload-too-large"),
        Rejection::BodyTimeout => (2, "body-timeout"),
        Rejection::HeadersTooLarge => (3, "headers-too-large"),
        Rejection::BadBody => (4, "bad-body"),
        Rejection::Http11 => (5, "http11"),
    };
    let n = COUNTS[index].fetch_add(1, Ordering::Relaxed) + 1;
    if n.is_power_of_two() {
        tracing::info!(target: "e2m::audit", peer = %peer.peer, cause, refused_so_far = n, "request refused by the transport");
    }
}

/// Each peer's request budget (GCRA, as `e2m_https::ratelimit`), keyed by its first name.
struct PeerLimiter {
    gcra: DefaultKeyedRateLimiter<Host>,
    checks: AtomicUsize,
}

impl PeerLimiter {
    fn new(limit: RateLimit) -> PeerLimiter {
        let per_second = if limit.per_second.is_finite() && limit.per_second > 0.0 {
            limit.per_second
        } else {
            RateLimit::DEFAULT.per_second
        };
        let period =
            Duration::from_secs_f64((1.0 / per_second).min(1e9)).max(Duration::from_nanos(1));
        let burst = NonZeroU32::new(limit.burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        PeerLimiter {
            gcra: RateLimiter::keyed(quota),
            checks: AtomicUsize::new(0),
        }
    }

    fn check(&self, key: &Host) -> Result<(), Rejection> {
        if self
            .checks
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(1024)
            && self.gcra.len() > 4096
        {
            self.gcra.retain_recent();
        }
        self.gcra.check_key(key).map_err(|not_until| {
            use governor::clock::{Clock, DefaultClock};
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            Rejection::RateLimited {
                retry_after_secs: wait.as_secs().saturating_add(1).min(3600),
            }
        })
    }
}

/// A stream with octets already read from it in front.
struct Prefixed<IO> {
    prefix: Vec<u8>,
    at: usize,
    io: IO,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Prefixed<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.at < this.prefix.len() {
            let rest = &this.prefix[this.at..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.at += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Prefixed<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
