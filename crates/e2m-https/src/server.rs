//! A hardened HTTPS (HTTP/1.1 over TLS, mutual authentication) server stack, generic over the
//! request handler: the EMKS serves the REST binding with it, an EMSE its notification
//! endpoint, and the benchmark a fixed body (the baseline).
//!
//! Every connection goes through the same steps, each bounded:
//!
//! 1. admission on arrival, before any TLS work, to the pool of connections **waiting for
//!    their ClientHello**: large ([`Limits::max_awaiting_hello`], at most
//!    [`Limits::max_awaiting_hello_per_source`] from one source), since such a connection
//!    costs a socket and a small task and nothing else (nothing is read or allocated for it
//!    until its first octet arrives), and short ([`Limits::client_hello_timeout`]). A
//!    connection that has sent nothing holds no scarce slot (issue 16 item 2; issue 9
//!    item 2 bounded it per source only);
//! 2. once the ClientHello has arrived, admission to the small pool of **handshakes in
//!    progress** ([`Limits::max_handshaking`], [`Limits::max_handshaking_per_source`]):
//!    the key exchange and the signature are the server's real cost. Both pools are fair
//!    between sources (an IPv4 address or an IPv6 /64): when one is full, a connection
//!    from a source holding fewer takes the place of the oldest connection of the source
//!    holding the most, so a flood from many addresses slows only itself, and a source
//!    holding nothing gets in as long as any source holds two or more; over its source's
//!    bound, or when no source holds two more than its own, a connection is closed at
//!    once;
//! 3. the TLS handshake, the whole of it (from arrival) under [`Limits::handshake_timeout`]
//!    (a client that stalls or dribbles its handshake is dropped), then an authenticated
//!    connection slot (at most [`Limits::max_connections`] at once; over it, the
//!    connection is closed). Every connection that ends before its handshake completes is
//!    reported with its reason class to [`Handler::handshake_failed`] (metrics);
//! 4. the peer's identity from its **verified** certificate (the handshake already refused
//!    anyone else, see [`super::tls`]);
//! 5. HTTP/1.1, the stack's own (issue 20: hyper parsed every head a second time after
//!    our checks): each request head must arrive whole within [`Limits::header_timeout`]
//!    of the moment the connection waits for it, which also closes idle keep-alive
//!    connections, and is checked strictly (origin-form target without fragment, one
//!    `Host`, at most one `Content-Length`, only `chunked` as transfer coding, at most
//!    [`Limits::max_header_bytes`]); the peer's rate limit is taken as soon as the head is
//!    complete: a refused request never reaches the handler, its body is skipped unread,
//!    and the handler's problem document answers it in its turn ([`Rejection`]; issue 9
//!    items 3 and 8);
//! 6. per request: the declared length (413 before reading, and before any `100 Continue`),
//!    then the body, read with a size cap (413) under [`Limits::body_timeout`] (408); a
//!    broken chunked coding is answered 400 at once;
//! 7. the handler, given the peer identity and the complete body; its answer is written
//!    with its length and date, under the head timeout.
//!
//! Every error the stack answers goes through [`Handler::reject`], so a handler with its
//! own problem vocabulary (the EMKS: RFC 9457 `application/problem+xml`) answers all of
//! them.
//!
//! Closing: whenever the server ends an established connection (the idle keep-alive
//! timeout, after an answer that closes it, at shutdown, on an error) it sends TLS
//! `close_notify` first, then closes its side and reads what the client still sends for a
//! moment, so that a client reusing an idle connection learns that the server closed it
//! rather than seeing a truncated stream or a reset (issue 16 item 8). At shutdown, open
//! connections finish their requests for [`Limits::shutdown_grace`] and are then closed.
//!
//! Logging: the stack logs the peer identity (not secret), the method and the status, never
//! the request target (it contains session ids) and never a body (it may contain keys).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, StatusCode, Uri};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_rustls::LazyConfigAcceptor;

use super::admission::{Pool, Refusal, Source, Ticket};
use super::closing::ClosingStream;
use super::http1;
use super::ratelimit::{RateLimit, RateLimiter};
use super::tls::{peer_hosts, peer_identity};
use crate::metrics::HandshakeFailure;
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
    /// Time allowed for the whole TLS handshake, from the connection's arrival to the
    /// verified peer (short: until then, the client is not authenticated).
    pub handshake_timeout: Duration,
    /// Time allowed from the connection's arrival to its complete ClientHello (short: a
    /// connection that sends nothing is closed after it). At most `handshake_timeout`
    /// counts.
    pub client_hello_timeout: Duration,
    /// Connections waiting for their ClientHello at once, from all sources. Large: such a
    /// connection costs a socket and a small task; the process needs a file descriptor for
    /// each (see the crate README on `RLIMIT_NOFILE`).
    pub max_awaiting_hello: usize,
    /// Connections waiting for their ClientHello at once from one source (an IPv4 address
    /// or an IPv6 /64).
    pub max_awaiting_hello_per_source: usize,
    /// TLS handshakes in progress (ClientHello received) at once, from all sources.
    pub max_handshaking: usize,
    /// TLS handshakes in progress at once from one source (an IPv4 address or an IPv6 /64).
    pub max_handshaking_per_source: usize,
    /// Time allowed for a request head to arrive, and for a keep-alive connection to idle.
    pub header_timeout: Duration,
    /// Time allowed for a request body to arrive once its head has.
    pub body_timeout: Duration,
    /// Authenticated connections (handshake done) handled at once.
    pub max_connections: usize,
    /// Each EMSE's request budget (and any role without its own).
    pub rate: RateLimit,
    /// The HSS's own budget (issue 9 item 12): key pushes come in bursts after AKA storms
    /// and must not share the EMSEs' budget; each HSS identity has this one.
    pub hss_rate: RateLimit,
    /// How long [`ServerHandle::shutdown`] lets open connections finish their requests
    /// before it closes them.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body: 64 * 1024,
            max_header_bytes: 16 * 1024,
            handshake_timeout: Duration::from_secs(3),
            client_hello_timeout: Duration::from_secs(2),
            max_awaiting_hello: 4096,
            max_awaiting_hello_per_source: 256,
            max_handshaking: 256,
            max_handshaking_per_source: 32,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            max_connections: 1024,
            rate: RateLimit::DEFAULT,
            hss_rate: RateLimit::HSS_DEFAULT,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// One complete, authenticated request.
///
/// Its `Debug` is redacted (issue 9 item 9): the target's path may carry a session id and
/// its query an application identity, and the body may carry key material, so `{:?}`
/// shows the peer, the method, the path with every segment after `sessions/` replaced,
/// the header names and the body's length only.
pub struct Request {
    /// Who sent it, from the verified client certificate.
    pub peer: PeerIdentity,
    /// The hosts the verified client certificate names (subjectAltName dNSName and
    /// iPAddress): where an EMSE may ask for callbacks (issue 9 item 5).
    pub peer_hosts: Arc<[e2m_emks::CallbackHost]>,
    /// The method.
    pub method: Method,
    /// The request target (path and query).
    pub uri: Uri,
    /// The headers.
    pub headers: HeaderMap,
    /// The whole body (at most [`Limits::max_body`] octets).
    pub body: Bytes,
}

impl core::fmt::Debug for Request {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        struct Path<'a>(&'a str);
        impl core::fmt::Debug for Path<'_> {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                let mut after_sessions = false;
                for (i, segment) in self.0.split('/').enumerate() {
                    if i > 0 {
                        f.write_str("/")?;
                    }
                    if after_sessions && !segment.is_empty() {
                        f.write_str("<redacted>")?;
                        after_sessions = false;
                    } else {
                        f.write_str(segment)?;
                        after_sessions = segment == "sessions";
                    }
                }
                Ok(())
            }
        }
        struct Names<'a>(&'a HeaderMap);
        impl core::fmt::Debug for Names<'_> {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.debug_list().entries(self.0.keys()).finish()
            }
        }
        f.debug_struct("Request")
            .field("peer", &self.peer)
            .field("peer_hosts", &self.peer_hosts)
            .field("method", &self.method)
            .field("path", &Path(self.uri.path()))
            .field("query", &self.uri.query().map(|_| "<redacted>"))
            .field("header_names", &Names(&self.headers))
            .field("body_len", &self.body.len())
            .finish()
    }
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
    /// The request head is over [`Limits::max_header_bytes`] or has too many header
    /// lines: 431. The connection is closed.
    HeadTooLarge,
    /// The request head is not a well-formed HTTP/1.1 head, or its framing headers are
    /// ambiguous (two `Content-Length`s, `Content-Length` with `Transfer-Encoding`, a
    /// transfer coding other than `chunked`, no or two `Host`s): 400. The connection is
    /// closed.
    MalformedHead,
    /// The request target is not in origin form (a fragment, absolute form, authority or
    /// asterisk form): 400. The connection is closed.
    TargetNotOriginForm,
    /// Not HTTP/1.1: 505. The connection is closed.
    VersionNotSupported,
}

impl Rejection {
    /// The HTTP status for this rejection.
    pub fn status(self) -> StatusCode {
        match self {
            Rejection::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Rejection::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Rejection::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Rejection::BadBody | Rejection::MalformedHead | Rejection::TargetNotOriginForm => {
                StatusCode::BAD_REQUEST
            }
            Rejection::HeadTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Rejection::VersionNotSupported => StatusCode::HTTP_VERSION_NOT_SUPPORTED,
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

    /// A connection ended before its TLS handshake completed, for `failure` (called once
    /// per such connection, on its task or on the accept loop: keep it cheap, e.g. an
    /// atomic counter). The default does nothing.
    fn handshake_failed(&self, failure: HandshakeFailure) {
        let _ = failure;
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

    /// Stops accepting, closes the connections that have not completed their handshake,
    /// lets open connections finish their requests for [`Limits::shutdown_grace`], then
    /// closes them (each with `close_notify`). Returns when the server is gone.
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

/// What the accept loop and every connection task share.
struct Shared<H> {
    tls: Arc<rustls::ServerConfig>,
    handler: Arc<H>,
    limits: Limits,
    limiter: RoleLimiters,
    /// Authenticated connections.
    slots: Arc<Semaphore>,
    /// Connections waiting for their ClientHello.
    awaiting_hello: Arc<Pool>,
    /// Handshakes in progress.
    handshaking: Arc<Pool>,
    /// Connections closed on arrival or evicted, for the aggregated log lines.
    refused: AtomicU64,
    evicted: AtomicU64,
}

impl<H: Handler> Shared<H> {
    /// Reports a connection that ended before its handshake completed.
    fn failed(&self, remote: SocketAddr, failure: HandshakeFailure) {
        tracing::debug!(%remote, reason = failure.as_str(), "connection ended before its TLS handshake completed");
        let aggregate = match failure {
            HandshakeFailure::Refused => Some((
                &self.refused,
                "connections refused before the TLS handshake (per-source bound, or full and fair)",
            )),
            HandshakeFailure::Evicted => Some((
                &self.evicted,
                "connections closed before the TLS handshake to make room for lighter sources",
            )),
            _ => None,
        };
        if let Some((counter, message)) = aggregate {
            // One line per power of two: visible, yet a flood cannot flood the log.
            let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::info!(count = n, "{message}");
            }
        }
        self.handler.handshake_failed(failure);
    }
}

async fn accept_loop<H: Handler>(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    limits: Limits,
    handler: Arc<H>,
    mut stop: watch::Receiver<bool>,
) {
    let shared = Arc::new(Shared {
        tls,
        handler,
        limiter: RoleLimiters {
            hss: RateLimiter::new(limits.hss_rate),
            others: RateLimiter::new(limits.rate),
        },
        slots: Arc::new(Semaphore::new(limits.max_connections.max(1))),
        awaiting_hello: Arc::new(Pool::new(
            limits.max_awaiting_hello,
            limits.max_awaiting_hello_per_source,
        )),
        handshaking: Arc::new(Pool::new(
            limits.max_handshaking,
            limits.max_handshaking_per_source,
        )),
        limits,
        refused: AtomicU64::new(0),
        evicted: AtomicU64::new(0),
    });
    // Sent when the shutdown grace is over: connections still open then are closed.
    let (halt, halted) = watch::channel(false);
    // Every connection's task holds a sender: once all are dropped, `recv` says so.
    let (open, mut all_closed) = mpsc::channel::<()>(1);
    loop {
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors: a connection waiting for its ClientHello,
                    // from the source holding the most, gives its own back. Otherwise
                    // (other errors, or none waiting) back off instead of spinning.
                    if out_of_descriptors(&error) && shared.awaiting_hello.evict_one() {
                        // A few more, so that a full accept queue drains in a moment.
                        for _ in 1..EVICT_WHEN_OUT_OF_DESCRIPTORS {
                            if !shared.awaiting_hello.evict_one() {
                                break;
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    } else {
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        // Admission before any TLS work: refusing costs one accept and one close.
        let source = Source::of(remote.ip());
        let ticket = match shared.awaiting_hello.admit(source) {
            Ok(ticket) => ticket,
            Err(Refusal::SourceFull | Refusal::Full) => {
                drop(tcp);
                shared.failed(remote, HandshakeFailure::Refused);
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let arrival = Arrival {
            tcp,
            remote,
            source,
            ticket,
        };
        let ends = ConnectionEnds {
            stop: stop.clone(),
            halt: halted.clone(),
            _open: open.clone(),
        };
        tokio::spawn(connection(shared.clone(), arrival, ends));
    }
    drop(listener);
    drop(open);
    let limits_grace = shared.limits.shutdown_grace;
    if tokio::time::timeout(limits_grace, all_closed.recv())
        .await
        .is_err()
    {
        tracing::debug!("shutdown grace period over; closing open connections");
    }
    let _ = halt.send(true);
}

/// How many connections waiting for their ClientHello are closed when the process has no
/// file descriptor left for a new one.
const EVICT_WHEN_OUT_OF_DESCRIPTORS: usize = 8;

/// Whether an accept error says that the process (EMFILE) or the system (ENFILE) has no
/// file descriptor left (the same numbers on Linux, the BSDs and macOS; WSAEMFILE).
fn out_of_descriptors(error: &std::io::Error) -> bool {
    match error.raw_os_error() {
        Some(23 | 24) => cfg!(unix),
        Some(10024) => cfg!(windows),
        _ => false,
    }
}

/// A connection just accepted, with its place among those waiting for a ClientHello.
struct Arrival {
    tcp: TcpStream,
    remote: SocketAddr,
    source: Source,
    ticket: Ticket,
}

/// How a connection learns that the server is stopping.
struct ConnectionEnds {
    /// The server stopped accepting (connections not yet established end at once,
    /// established ones once idle).
    stop: watch::Receiver<bool>,
    /// The shutdown grace is over (established connections end).
    halt: watch::Receiver<bool>,
    /// Held while the connection is open: the accept loop waits for every one to drop.
    _open: mpsc::Sender<()>,
}

/// One connection, from its arrival to its end.
///
/// Each stage runs in its own boxed future, entered when the one before it is done, so
/// that the task of a connection that has sent nothing is only as large as the first
/// stage's state (a socket, a ticket, two receivers; the TLS state machine alone is over a
/// kilobyte, the HTTP/1.1 state with its buffers more).
async fn connection<H: Handler>(shared: Arc<Shared<H>>, arrival: Arrival, ends: ConnectionEnds) {
    let arrived = tokio::time::Instant::now();
    let deadlines = Deadlines {
        hello: (arrived + shared.limits.client_hello_timeout)
            .min(arrived + shared.limits.handshake_timeout),
        handshake: arrived + shared.limits.handshake_timeout,
    };
    let Arrival {
        tcp,
        remote,
        source,
        mut ticket,
    } = arrival;
    let mut stop = ends.stop.clone();
    // Waiting for the first octet: nothing is read, nothing allocated.
    let mut first = [0u8; 1];
    let first_octet = tokio::select! {
        peeked = tokio::time::timeout_at(deadlines.hello, tcp.peek(&mut first)) => peeked,
        () = ticket.evicted() => return shared.failed(remote, HandshakeFailure::Evicted),
        _ = stop.wait_for(|stopped| *stopped) => return,
    };
    match first_octet {
        Ok(Ok(1..)) => {}
        Ok(Ok(0)) => return shared.failed(remote, HandshakeFailure::Closed),
        Ok(Err(error)) => {
            tracing::debug!(%remote, %error, "no ClientHello");
            return shared.failed(remote, HandshakeFailure::of_error(&error));
        }
        Err(_) => return shared.failed(remote, HandshakeFailure::HelloTimeout),
    }
    let arrival = Arrival {
        tcp,
        remote,
        source,
        ticket,
    };
    Box::pin(handshake(shared, arrival, ends, deadlines)).await;
}

/// When the ClientHello, and the whole handshake, must be done.
#[derive(Clone, Copy)]
struct Deadlines {
    hello: tokio::time::Instant,
    handshake: tokio::time::Instant,
}

/// The rest of the ClientHello (still in the large pool), then the handshake (in the small
/// pool), then the established connection.
async fn handshake<H: Handler>(
    shared: Arc<Shared<H>>,
    arrival: Arrival,
    ends: ConnectionEnds,
    deadlines: Deadlines,
) {
    let Arrival {
        tcp,
        remote,
        source,
        mut ticket,
    } = arrival;
    let mut stop = ends.stop.clone();
    let hello = tokio::select! {
        hello = tokio::time::timeout_at(
            deadlines.hello,
            LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp),
        ) => hello,
        () = ticket.evicted() => return shared.failed(remote, HandshakeFailure::Evicted),
        _ = stop.wait_for(|stopped| *stopped) => return,
    };
    drop(ticket);
    let start = match hello {
        Ok(Ok(start)) => start,
        Ok(Err(error)) => {
            tracing::debug!(%remote, %error, "no ClientHello");
            return shared.failed(remote, HandshakeFailure::of_error(&error));
        }
        Err(_) => return shared.failed(remote, HandshakeFailure::HelloTimeout),
    };

    // The handshake, in the small pool.
    let Ok(mut ticket) = shared.handshaking.admit(source) else {
        return shared.failed(remote, HandshakeFailure::Refused);
    };
    let handshake = tokio::select! {
        done = tokio::time::timeout_at(
            deadlines.handshake,
            start.into_stream(shared.tls.clone()),
        ) => done,
        () = ticket.evicted() => return shared.failed(remote, HandshakeFailure::Evicted),
        _ = stop.wait_for(|stopped| *stopped) => return,
    };
    drop(ticket);
    let tls = match handshake {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            tracing::debug!(%remote, %error, "TLS handshake failed");
            return shared.failed(remote, HandshakeFailure::of_error(&error));
        }
        Err(_) => return shared.failed(remote, HandshakeFailure::Timeout),
    };
    Box::pin(established(shared, tls, remote, ends)).await;
}

/// An authenticated connection: HTTP/1.1 until it ends.
async fn established<H: Handler>(
    shared: Arc<Shared<H>>,
    tls: tokio_rustls::server::TlsStream<TcpStream>,
    remote: SocketAddr,
    ends: ConnectionEnds,
) {
    let ConnectionEnds { stop, mut halt, .. } = ends;
    let Ok(_permit) = shared.slots.clone().try_acquire_owned() else {
        tracing::info!(%remote, "authenticated connection limit reached; connection closed");
        return;
    };
    let Some(peer) = peer_identity(tls.get_ref().1) else {
        // Unreachable with our verifier (it requires an identity); refuse anyway.
        tracing::warn!(%remote, "verified peer without an e2m identity");
        return;
    };
    let hosts: Arc<[e2m_emks::CallbackHost]> = peer_hosts(tls.get_ref().1).into();
    tracing::debug!(%remote, %peer, "TLS connection established");
    let admit = || shared.limiter.check(&peer);
    let exchange = http1::Exchange {
        handler: &*shared.handler,
        limits: &shared.limits,
        peer: &peer,
        peer_hosts: &hosts,
        admit: &admit,
    };
    // Whichever way it ends, dropping the stream sends close_notify (ClosingStream).
    tokio::select! {
        () = http1::serve(ClosingStream::new(tls), exchange, stop) => {}
        _ = halt.wait_for(|halted| *halted) => {
            tracing::debug!(%remote, "connection closed at the end of the shutdown grace");
        }
    }
}

/// One request budget per role: the HSS's pushes never compete with the EMSEs' fetches.
struct RoleLimiters {
    hss: RateLimiter,
    others: RateLimiter,
}

impl RoleLimiters {
    fn check(&self, peer: &PeerIdentity) -> Result<(), Duration> {
        match peer {
            PeerIdentity::Hss(_) => self.hss.check(peer),
            _ => self.others.check(peer),
        }
    }
}

/// Every refusal by the stack is visible at info level with its cause and the peer (an
/// identity from its certificate, not a secret), aggregated so that a flood cannot flood
/// the log (issue 9 item 13): a line for the 1st, 2nd, 4th, 8th, … refusal of each cause.
pub(crate) fn audit_rejection(peer: &PeerIdentity, rejection: Rejection) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTS: [AtomicU64; 7] = [const { AtomicU64::new(0) }; 7];
    let (index, cause) = match rejection {
        Rejection::RateLimited { .. } => (0, "rate-limited"),
        Rejection::PayloadTooLarge => (1, "payload-too-large"),
        Rejection::BodyTimeout => (2, "body-timeout"),
        Rejection::HeadTooLarge => (3, "head-too-large"),
        Rejection::TargetNotOriginForm => (4, "target-not-origin-form"),
        Rejection::VersionNotSupported => (5, "version-not-supported"),
        Rejection::BadBody | Rejection::MalformedHead => (6, "malformed"),
    };
    let n = COUNTS[index].fetch_add(1, Ordering::Relaxed) + 1;
    if n.is_power_of_two() {
        tracing::info!(target: "e2m::audit", %peer, cause, refused_so_far = n, "request refused by the transport");
    }
}

#[cfg(test)]
mod refusal_audit_tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::pki::NodeName;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn refusals_are_audited_at_info_and_aggregated() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let peer = PeerIdentity::Hss(NodeName::new("hss-1").unwrap());
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..1000 {
                audit_rejection(
                    &peer,
                    Rejection::RateLimited {
                        retry_after_secs: 1,
                    },
                );
            }
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("rate-limited"))
            .collect();
        // 1, 2, 4, …, 512: ten lines for a thousand refusals, each at INFO with the peer.
        assert_eq!(lines.len(), 10, "{text}");
        assert!(
            lines
                .iter()
                .all(|l| l.contains("INFO") && l.contains("hss-1"))
        );
    }
}
