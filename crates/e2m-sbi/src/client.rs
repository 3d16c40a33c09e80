//! The SBI's HTTP/2 clients: [`SbiClient`] (a few HTTP/2 connections to one producer, many
//! streams on each; TLS with a client certificate, or h2c with prior knowledge), and on it
//! the clients of the three consumers of the AAnF:
//!
//! - [`AusfClient`]: the AUSF registers K_AKMA and the A-KID after primary authentication
//!   (`register-anchorkey`) and removes a UE's context (`remove-context`);
//! - [`AfClient`]: an AF (or a NEF on behalf of one) asks for K_AF by A-KID
//!   (`retrieve-applicationkey`; through the NEF's API, `/3gpp-akma/v1/retrieve`);
//! - [`Notifier`]: the AAnF's side of the service-disablement callback, to any AF's
//!   `notifUri`.
//!
//! Every request is a POST of a JSON body read and written by `e2m-akma`; every answer is
//! decoded strictly (a 200 body that does not decode is an error, not a key). Keys in
//! answers are read from a buffer that is wiped afterwards. All four AKMA operations are
//! idempotent (a repeated registration replaces the context with itself, a repeated
//! retrieval derives the same K_AF, a repeated removal answers 204), so a request that
//! found its connection closed before any answer is sent once more on a new connection.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use e2m_akma::e2m_keyid::akma::Supi;
use e2m_akma::{
    AkmaAfKeyData, AkmaAfKeyRequest, AkmaKeyInfo, CtxRemove, DecodeError, JsonBody,
    NefAkmaAfKeyData, NotifUri, Operation, ProblemDetails, ServiceDisableNotif,
};
use e2m_https::pki::Credentials;
use e2m_https::tls::TlsSetupError;
use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Method, StatusCode, Uri};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use zeroize::Zeroizing;

use crate::respond::MEDIA_TYPE_JSON;
use crate::tls::{ALPN_H2, client_config};

/// Why a request did not give the answer asked for.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The base URL or a `notifUri` is not an absolute `http` or `https` URL.
    #[error("bad URL: {0}")]
    Url(&'static str),
    /// An `http://` URL where this client speaks TLS only (or the other way round).
    #[error("URL scheme not served by this client: {0}")]
    Scheme(&'static str),
    /// The TLS configuration could not be built.
    #[error(transparent)]
    TlsSetup(#[from] TlsSetupError),
    /// No connection (resolution, TCP, TLS handshake).
    #[error("connection failed: {0}")]
    Connect(std::io::Error),
    /// The server did not agree to HTTP/2 (ALPN).
    #[error("the server did not negotiate h2")]
    NotH2,
    /// HTTP/2 failed (connection or stream error).
    #[error("HTTP/2: {0}")]
    Http(#[from] h2::Error),
    /// No answer within the client's timeout.
    #[error("no answer in time")]
    Timeout,
    /// The producer refused with a problem document (TS 29.500 §5.2.7).
    #[error("refused with {status}{}", cause_text(.details))]
    Problem {
        /// The HTTP status.
        status: u16,
        /// The problem document, if the answer had a readable one.
        details: Option<Box<ProblemDetails>>,
        /// `Retry-After` of a 429 or 503.
        retry_after: Option<Duration>,
    },
    /// An answer this operation does not define (status, media type).
    #[error("unexpected answer: status {status}")]
    Unexpected {
        /// The HTTP status.
        status: u16,
    },
    /// A success answer whose body does not decode.
    #[error("answer body: {0}")]
    Decode(#[from] DecodeError),
}

fn cause_text(details: &Option<Box<ProblemDetails>>) -> String {
    details
        .as_ref()
        .and_then(|d| d.cause.as_deref())
        .map(|c| format!(" {c}"))
        .unwrap_or_default()
}

impl ClientError {
    /// The HTTP status of a refusal, if the producer answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Problem { status, .. } | ClientError::Unexpected { status } => {
                Some(*status)
            }
            _ => None,
        }
    }

    /// The TS 29.500 cause of a refusal, if any.
    pub fn cause(&self) -> Option<&str> {
        match self {
            ClientError::Problem {
                details: Some(details),
                ..
            } => details.cause.as_deref(),
            _ => None,
        }
    }
}

/// An answer, whole.
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The media type (`Content-Type` without parameters), if any.
    pub content_type: Option<String>,
    /// `Retry-After` in seconds, if any.
    pub retry_after: Option<Duration>,
    /// The body, wiped when dropped (it may hold a key).
    pub body: Zeroizing<Vec<u8>>,
}

impl core::fmt::Debug for Reply {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Reply")
            .field("status", &self.status)
            .field("content_type", &self.content_type)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

impl Reply {
    fn is(&self, media: &str) -> bool {
        self.content_type
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case(media))
    }

    /// The refusal this answer stands for.
    fn into_error(self) -> ClientError {
        let status = self.status.as_u16();
        if self.is(ProblemDetails::MEDIA_TYPE) {
            ClientError::Problem {
                status,
                details: ProblemDetails::from_json(&self.body).ok().map(Box::new),
                retry_after: self.retry_after,
            }
        } else if status >= 400 {
            ClientError::Problem {
                status,
                details: None,
                retry_after: self.retry_after,
            }
        } else {
            ClientError::Unexpected { status }
        }
    }

    /// A 200 `application/json` body read as `T`, 204 as `None`, anything else an error.
    fn decode<T: JsonBody>(mut self, allow_204: bool) -> Result<Option<T>, ClientError> {
        match self.status {
            StatusCode::OK if self.is(MEDIA_TYPE_JSON) => {
                Ok(Some(T::from_json_wiping(&mut self.body)?))
            }
            StatusCode::NO_CONTENT if allow_204 => Ok(None),
            _ => Err(self.into_error()),
        }
    }
}

/// How a client reaches its producer.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ClientTransport {
    /// TLS (ALPN `h2`) with this configuration ([`crate::tls::client_config`]): for
    /// `https://` URLs.
    Tls(Arc<rustls::ClientConfig>),
    /// HTTP/2 in clear with prior knowledge: for `http://` URLs, inside a trust domain.
    H2c,
}

impl ClientTransport {
    /// TLS with `credentials` as the client certificate and `ca` as the trust anchors.
    ///
    /// # Errors
    /// [`ClientError::TlsSetup`].
    pub fn tls(
        credentials: &Credentials,
        ca: &[CertificateDer<'static>],
    ) -> Result<ClientTransport, ClientError> {
        Ok(ClientTransport::Tls(client_config(credentials, ca)?))
    }
}

/// Where and how a client connects.
#[derive(Clone)]
struct Target {
    tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    scheme: &'static str,
    authority: String,
    host: String,
    port: u16,
    base_path: String,
}

impl Target {
    fn parse(url: &str, transport: &ClientTransport) -> Result<Target, ClientError> {
        let uri: Uri = url.parse().map_err(|_| ClientError::Url("not a URI"))?;
        let authority = uri.authority().ok_or(ClientError::Url("no authority"))?;
        if authority.as_str().contains('@') {
            return Err(ClientError::Url("user information"));
        }
        let (scheme, default_port) = match uri.scheme_str() {
            Some("https") => ("https", 443),
            Some("http") => ("http", 80),
            _ => return Err(ClientError::Url("scheme is neither http nor https")),
        };
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = authority.port_u16().unwrap_or(default_port);
        let tls = match (transport, scheme) {
            (ClientTransport::Tls(config), "https") => {
                let name = ServerName::try_from(host.clone())
                    .map_err(|_| ClientError::Url("host is not a DNS name or IP address"))?;
                Some((config.clone(), name))
            }
            (ClientTransport::H2c, "http") => None,
            (ClientTransport::Tls(_), _) => return Err(ClientError::Scheme("http with TLS")),
            (ClientTransport::H2c, _) => return Err(ClientError::Scheme("https with h2c")),
        };
        Ok(Target {
            tls,
            scheme,
            authority: authority.as_str().to_owned(),
            host,
            port,
            base_path: uri.path().trim_end_matches('/').to_owned(),
        })
    }
}

/// An HTTP/2 client of one producer: `connections` connections (2 by default), opened on
/// first use and again when one closes, with many streams on each (requests are spread
/// over the connections in turn).
#[derive(Clone)]
pub struct SbiClient {
    inner: Arc<Inner>,
}

struct Inner {
    target: Target,
    connect_to: Option<SocketAddr>,
    slots: Vec<tokio::sync::Mutex<Option<Connection>>>,
    next: AtomicUsize,
    token: Option<HeaderValue>,
    timeout: Duration,
    max_answer: usize,
}

impl core::fmt::Debug for SbiClient {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let t = &self.inner.target;
        f.debug_struct("SbiClient")
            .field("scheme", &t.scheme)
            .field("authority", &t.authority)
            .field("connections", &self.inner.slots.len())
            .field("token", &self.inner.token.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

impl SbiClient {
    /// The default timeout of a request (connection, answer and body).
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

    /// A client of the producer at `base_url` (`https://aanf.example:8443`, or an
    /// `http://` URL with [`ClientTransport::H2c`]); paths of requests are appended to its
    /// path.
    ///
    /// # Errors
    /// [`ClientError::Url`] or [`ClientError::Scheme`].
    pub fn new(base_url: &str, transport: &ClientTransport) -> Result<SbiClient, ClientError> {
        Ok(SbiClient {
            inner: Arc::new(Inner {
                target: Target::parse(base_url, transport)?,
                connect_to: None,
                slots: (0..2).map(|_| tokio::sync::Mutex::new(None)).collect(),
                next: AtomicUsize::new(0),
                token: None,
                timeout: Self::DEFAULT_TIMEOUT,
                max_answer: 2 * e2m_akma::MAX_BODY,
            }),
        })
    }

    fn with(self, change: impl FnOnce(&mut Inner)) -> SbiClient {
        let mut inner = match Arc::try_unwrap(self.inner) {
            Ok(inner) => inner,
            Err(shared) => Inner {
                target: shared.target.clone(),
                connect_to: shared.connect_to,
                slots: (0..shared.slots.len())
                    .map(|_| tokio::sync::Mutex::new(None))
                    .collect(),
                next: AtomicUsize::new(0),
                token: shared.token.clone(),
                timeout: shared.timeout,
                max_answer: shared.max_answer,
            },
        };
        change(&mut inner);
        SbiClient {
            inner: Arc::new(inner),
        }
    }

    /// Connects to `address` whatever the URL's host resolves to (the host still names the
    /// server for TLS and `:authority`), as `curl --resolve` does.
    #[must_use]
    pub fn resolve(self, address: SocketAddr) -> SbiClient {
        self.with(|i| i.connect_to = Some(address))
    }

    /// Uses `n` connections (at least 1).
    #[must_use]
    pub fn connections(self, n: usize) -> SbiClient {
        self.with(|i| {
            i.slots = (0..n.max(1))
                .map(|_| tokio::sync::Mutex::new(None))
                .collect();
        })
    }

    /// Sends `Authorization: Bearer <token>` with every request (an OAuth2 access token
    /// from the NRF, TS 33.501 §13.4.1).
    ///
    /// # Errors
    /// [`ClientError::Url`] if the token is not a valid header value.
    pub fn bearer_token(self, token: &str) -> Result<SbiClient, ClientError> {
        let mut value = HeaderValue::try_from(format!("Bearer {token}"))
            .map_err(|_| ClientError::Url("token is not a header value"))?;
        value.set_sensitive(true);
        Ok(self.with(|i| i.token = Some(value)))
    }

    /// A request timeout other than [`Self::DEFAULT_TIMEOUT`].
    #[must_use]
    pub fn timeout(self, timeout: Duration) -> SbiClient {
        self.with(|i| i.timeout = timeout)
    }

    async fn connect(&self) -> Result<Connection, ClientError> {
        let target = &self.inner.target;
        let address = match self.inner.connect_to {
            Some(address) => address,
            None => tokio::net::lookup_host((target.host.as_str(), target.port))
                .await
                .map_err(ClientError::Connect)?
                .next()
                .ok_or_else(|| ClientError::Connect(std::io::ErrorKind::NotFound.into()))?,
        };
        let tcp = TcpStream::connect(address)
            .await
            .map_err(ClientError::Connect)?;
        let _ = tcp.set_nodelay(true);
        match &target.tls {
            Some((config, name)) => {
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(ClientError::Connect)?;
                if tls.get_ref().1.alpn_protocol() != Some(ALPN_H2) {
                    return Err(ClientError::NotH2);
                }
                Connection::start(tls).await
            }
            None => Connection::start(tcp).await,
        }
    }

    /// A live connection from the next slot (opened if needed); its slot index.
    async fn sender(&self) -> Result<(h2::client::SendRequest<Bytes>, usize), ClientError> {
        let index = self.inner.next.fetch_add(1, Ordering::Relaxed) % self.inner.slots.len();
        let mut slot = self.inner.slots[index].lock().await;
        if let Some(connection) = slot.as_ref().filter(|c| !c.closed.load(Ordering::Acquire)) {
            return Ok((connection.send.clone(), index));
        }
        let connection = self.connect().await?;
        let send = connection.send.clone();
        *slot = Some(connection);
        Ok((send, index))
    }

    async fn forget(&self, index: usize) {
        *self.inner.slots[index].lock().await = None;
    }

    fn request(&self, path: &str) -> Result<hyper::Request<()>, ClientError> {
        let target = &self.inner.target;
        let uri = format!(
            "{}://{}{}{}",
            target.scheme, target.authority, target.base_path, path
        );
        let mut builder = hyper::Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(header::CONTENT_TYPE, MEDIA_TYPE_JSON)
            .header(header::ACCEPT, "application/json, application/problem+json");
        if let Some(token) = &self.inner.token {
            builder = builder.header(header::AUTHORIZATION, token.clone());
        }
        builder
            .body(())
            .map_err(|_| ClientError::Url("path is not a URI path"))
    }

    /// POSTs `body` (JSON) to the base path followed by `path`, and reads the whole
    /// answer. A request whose connection closed before any answer is sent once more on a
    /// new connection.
    ///
    /// # Errors
    /// [`ClientError`] for anything but an answer (any status is an answer here).
    pub async fn post(&self, path: &str, body: &[u8]) -> Result<Reply, ClientError> {
        self.post_wiped(path, Zeroizing::new(body.to_vec())).await
    }

    /// [`SbiClient::post`] of a body that may hold a key: sent without a copy, wiped when
    /// the request is done.
    pub(crate) async fn post_wiped(
        &self,
        path: &str,
        body: Zeroizing<Vec<u8>>,
    ) -> Result<Reply, ClientError> {
        let body = crate::respond::wiped_bytes(body);
        let attempt = async {
            let mut last = None;
            for _ in 0..2 {
                let (send, index) = self.sender().await?;
                let request = self.request(path)?;
                match self.exchange(send, request, body.clone()).await {
                    Ok(reply) => return Ok(reply),
                    // Refused before any processing (GOAWAY past this stream, REFUSED_STREAM:
                    // RFC 9113 §8.7) or the connection gone: a new connection, once.
                    Err(Exchange::NotProcessed(error)) => {
                        self.forget(index).await;
                        last = Some(error);
                    }
                    Err(Exchange::Failed(error)) => {
                        if matches!(&error, ClientError::Http(e) if e.is_io() || e.is_go_away()) {
                            self.forget(index).await;
                        }
                        return Err(error);
                    }
                }
            }
            Err(last.unwrap_or(ClientError::Timeout))
        };
        tokio::time::timeout(self.inner.timeout, attempt)
            .await
            .map_err(|_| ClientError::Timeout)?
    }

    /// Sends one request on `send` and reads its whole answer.
    async fn exchange(
        &self,
        send: h2::client::SendRequest<Bytes>,
        request: hyper::Request<()>,
        body: Bytes,
    ) -> Result<Reply, Exchange> {
        let not_processed = |error: h2::Error| {
            if error.is_io()
                || error.is_go_away()
                || error.reason() == Some(h2::Reason::REFUSED_STREAM)
            {
                Exchange::NotProcessed(ClientError::Http(error))
            } else {
                Exchange::Failed(ClientError::Http(error))
            }
        };
        let mut send = send.ready().await.map_err(not_processed)?;
        let end_of_stream = body.is_empty();
        let (answer, mut stream) = send
            .send_request(request, end_of_stream)
            .map_err(not_processed)?;
        // The body is buffered by h2 and sent as the stream's window allows; AKMA bodies
        // are far below the default window. Sending it fails when the server has already
        // reset the stream (`REFUSED_STREAM` may arrive before the body goes out): the
        // reason comes with the answer, awaited either way, which says whether to send
        // the request again. An answer that came although the body could not be sent is
        // an answer (a server may refuse before reading a body).
        if !end_of_stream {
            let _ = stream.send_data(body, true);
        }
        let answer = answer.await.map_err(not_processed)?;
        self.read(answer).await.map_err(Exchange::Failed)
    }

    async fn read(&self, answer: hyper::Response<h2::RecvStream>) -> Result<Reply, ClientError> {
        let (parts, mut body) = answer.into_parts();
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase());
        let retry_after = parts
            .headers
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        // Room for the declared length (most answers are one DATA frame of it), grown by
        // copy-then-wipe otherwise: a key answer leaves no copy in freed memory, and no
        // answer costs a `max_answer` allocation and wipe.
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(e2m_akma::SecretBuffer::TYPICAL);
        let mut out = e2m_akma::SecretBuffer::new(declared, self.inner.max_answer);
        let too_long = || ClientError::Unexpected {
            status: parts.status.as_u16(),
        };
        while let Some(data) = body.data().await {
            let data = data?;
            // Returned to the window at once: the octets are kept here, not in h2.
            let _ = body.flow_control().release_capacity(data.len());
            out.extend(&data).map_err(|_| too_long())?;
        }
        Ok(Reply {
            status: parts.status,
            content_type,
            retry_after,
            body: out.into_inner(),
        })
    }
}

/// How one exchange failed: before the server processed the request (safe to send again
/// on another connection), or otherwise.
enum Exchange {
    NotProcessed(ClientError),
    Failed(ClientError),
}

/// One HTTP/2 connection of an [`SbiClient`]: the handle to open streams on it, and whether
/// the task driving it has ended.
struct Connection {
    send: h2::client::SendRequest<Bytes>,
    closed: Arc<AtomicBool>,
}

impl Connection {
    /// Pings an idle or busy connection this often (as hyper's client did for this crate)
    /// and drops it when no PONG comes back in [`Connection::KEEP_ALIVE_TIMEOUT`].
    const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
    const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);

    /// The HTTP/2 handshake on `io`, and a task driving the connection until it ends.
    async fn start<IO>(io: IO) -> Result<Connection, ClientError>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (send, mut connection) = h2::client::Builder::new()
            .enable_push(false)
            .max_header_list_size(16 * 1024)
            .handshake::<_, Bytes>(io)
            .await?;
        let closed = Arc::new(AtomicBool::new(false));
        let ended = closed.clone();
        let mut ping = connection.ping_pong();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval_at(
                tokio::time::Instant::now() + Self::KEEP_ALIVE_INTERVAL,
                Self::KEEP_ALIVE_INTERVAL,
            );
            loop {
                tokio::select! {
                    ended = &mut connection => {
                        if let Err(error) = ended {
                            tracing::debug!(%error, "HTTP/2 client connection ended");
                        }
                        break;
                    }
                    _ = ticks.tick() => {
                        let Some(ping) = ping.as_mut() else { continue };
                        let pong = tokio::time::timeout(
                            Self::KEEP_ALIVE_TIMEOUT,
                            ping.ping(h2::Ping::opaque()),
                        );
                        // The connection is driven while the PONG is awaited.
                        tokio::select! {
                            ended = &mut connection => {
                                if let Err(error) = ended {
                                    tracing::debug!(%error, "HTTP/2 client connection ended");
                                }
                                break;
                            }
                            answered = pong => if !matches!(answered, Ok(Ok(_))) {
                                tracing::debug!("no PONG in time: HTTP/2 client connection dropped");
                                break;
                            }
                        }
                    }
                }
            }
            ended.store(true, Ordering::Release);
        });
        Ok(Connection { send, closed })
    }
}

/// The AUSF's client of the AAnF (TS 29.535 §5.1.4.2, §5.1.4.4).
///
/// ```no_run
/// # async fn run(credentials: e2m_https::pki::Credentials,
/// #              ca: Vec<rustls::pki_types::CertificateDer<'static>>,
/// #              info: e2m_sbi::e2m_akma::AkmaKeyInfo)
/// #              -> Result<(), Box<dyn std::error::Error>> {
/// use e2m_sbi::client::{AusfClient, ClientTransport, SbiClient};
///
/// let transport = ClientTransport::tls(&credentials, &ca)?;
/// let ausf = AusfClient::new(SbiClient::new("https://aanf.example:8443", &transport)?);
/// let registered = ausf.register(&info).await?; // 200: the AkmaKeyInfo stored
/// ausf.remove(*registered.ue.supi().ok_or("by GPSI")?).await?; // 204
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct AusfClient {
    sbi: SbiClient,
}

impl AusfClient {
    /// The AUSF's client over `sbi` (whose credentials are the AUSF's).
    pub fn new(sbi: SbiClient) -> AusfClient {
        AusfClient { sbi }
    }

    /// `Naanf_AKMA_AnchorKey_Register`: registers K_AKMA and the A-KID of a UE; the AAnF
    /// answers the `AkmaKeyInfo` it stored (200).
    ///
    /// # Errors
    /// [`ClientError`]: a refusal (`Problem`: 400 for an A-KID another UE holds, 403 for a
    /// peer that is not a configured AUSF, 401/403 for a token), or no answer.
    pub async fn register(&self, info: &AkmaKeyInfo) -> Result<AkmaKeyInfo, ClientError> {
        let reply = self
            .sbi
            .post_wiped(Operation::RegisterAnchorKey.path(), info.to_json())
            .await?;
        reply
            .decode(false)?
            .ok_or(ClientError::Unexpected { status: 204 })
    }

    /// `Naanf_AKMA_ContextRemove`: removes the UE's context (204, also when there was
    /// none); the AAnF notifies the AFs that asked to be told.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn remove(&self, supi: Supi) -> Result<(), ClientError> {
        let reply = self
            .sbi
            .post_wiped(
                Operation::RemoveContext.path(),
                CtxRemove { supi }.to_json(),
            )
            .await?;
        match reply.status {
            StatusCode::NO_CONTENT => Ok(()),
            _ => Err(reply.into_error()),
        }
    }

    /// The underlying HTTP/2 client.
    pub fn sbi(&self) -> &SbiClient {
        &self.sbi
    }
}

/// An AF's client of the AAnF (TS 29.535 §5.1.4.3), or of the NEF's AKMA API
/// (TS 29.522 §5.14); a NEF serving an AF outside the operator's domain uses
/// [`AfClient::retrieve`] with its own credentials and the AF's `afId`.
///
/// ```no_run
/// # async fn run(transport: e2m_sbi::client::ClientTransport,
/// #              request: e2m_sbi::e2m_akma::AkmaAfKeyRequest)
/// #              -> Result<(), Box<dyn std::error::Error>> {
/// use e2m_sbi::client::{AfClient, SbiClient};
///
/// let af = AfClient::new(SbiClient::new("https://aanf.example:8443", &transport)?);
/// match af.retrieve(&request).await? {
///     Some(data) => { /* data.kaf: the PSK of the Ua* protocol, until data.expiry */ }
///     None => { /* 204: no AKMA context for this A-KID (the UE must re-authenticate) */ }
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct AfClient {
    sbi: SbiClient,
}

impl AfClient {
    /// The AF's client over `sbi` (whose credentials name the AF's FQDN).
    pub fn new(sbi: SbiClient) -> AfClient {
        AfClient { sbi }
    }

    /// `Naanf_AKMA_ApplicationKey_Get` (or its anonymous variant, `anonInd`): K_AF for
    /// the A-KID, `None` when the AAnF has no context for it (204).
    ///
    /// # Errors
    /// [`ClientError`]: a refusal (403 for an `afId` whose FQDN the certificate does not
    /// name, or an AF not allowed AKMA), or no answer.
    pub async fn retrieve(
        &self,
        request: &AkmaAfKeyRequest,
    ) -> Result<Option<AkmaAfKeyData>, ClientError> {
        self.sbi
            .post_wiped(Operation::RetrieveApplicationKey.path(), request.to_json())
            .await?
            .decode(true)
    }

    /// The NEF's AKMA API (`POST /3gpp-akma/v1/retrieve`): K_AF and at most the GPSI,
    /// never the SUPI (an answer carrying one does not decode).
    ///
    /// # Errors
    /// As [`Self::retrieve`].
    pub async fn retrieve_via_nef(
        &self,
        request: &AkmaAfKeyRequest,
    ) -> Result<Option<NefAkmaAfKeyData>, ClientError> {
        self.sbi
            .post_wiped(Operation::NefRetrieve.path(), request.to_json())
            .await?
            .decode(true)
    }

    /// The underlying HTTP/2 client.
    pub fn sbi(&self) -> &SbiClient {
        &self.sbi
    }
}

/// The AAnF's client of the AFs' notification endpoints: POSTs a `ServiceDisableNotif` to
/// a `notifUri` (TS 29.535 §5.1.5.2) and expects 204 (any 2xx is taken as delivered).
///
/// `https://` URIs: TLS with the AAnF's client certificate; the AF's server certificate
/// must chain to the CA and name the URI's host (the AAnF checked, when the URI was given,
/// that the requesting AF's certificate names that host too). `http://` URIs: h2c, only
/// where allowed ([`Notifier::allow_h2c`]); otherwise refused. One [`SbiClient`] per
/// origin, at most [`Notifier::MAX_ORIGINS`] kept.
pub struct Notifier {
    tls: Option<ClientTransport>,
    h2c: bool,
    resolve: HashMap<String, IpAddr>,
    timeout: Duration,
    clients: Mutex<HashMap<String, SbiClient>>,
}

impl core::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Notifier")
            .field("tls", &self.tls.is_some())
            .field("h2c", &self.h2c)
            .field("resolve", &self.resolve)
            .finish_non_exhaustive()
    }
}

impl Notifier {
    /// Origins with a kept client, at most.
    pub const MAX_ORIGINS: usize = 1024;

    /// A notifier for `https://` URIs with `transport` (the AAnF's client credentials).
    pub fn new(transport: ClientTransport) -> Notifier {
        Notifier {
            tls: Some(transport),
            h2c: false,
            resolve: HashMap::new(),
            timeout: SbiClient::DEFAULT_TIMEOUT,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// A notifier for `http://` URIs only (h2c), inside a trust domain.
    pub fn h2c_only() -> Notifier {
        Notifier {
            tls: None,
            h2c: true,
            resolve: HashMap::new(),
            timeout: SbiClient::DEFAULT_TIMEOUT,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Also POSTs to `http://` URIs, over h2c.
    #[must_use]
    pub fn allow_h2c(mut self) -> Notifier {
        self.h2c = true;
        self
    }

    /// Connects to `address` for URIs whose host is `host` (a demo or a test without DNS).
    #[must_use]
    pub fn resolve(mut self, host: &str, address: IpAddr) -> Notifier {
        self.resolve.insert(host.to_ascii_lowercase(), address);
        self
    }

    /// A request timeout other than [`SbiClient::DEFAULT_TIMEOUT`].
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Notifier {
        self.timeout = timeout;
        self
    }

    fn client_for(&self, origin: &str) -> Result<SbiClient, ClientError> {
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(client) = clients.get(origin) {
            return Ok(client.clone());
        }
        let transport = if origin.starts_with("https://") {
            self.tls
                .clone()
                .ok_or(ClientError::Scheme("https without TLS credentials"))?
        } else if self.h2c {
            ClientTransport::H2c
        } else {
            return Err(ClientError::Scheme("http notifUri without h2c allowed"));
        };
        let mut client = SbiClient::new(origin, &transport)?
            .connections(1)
            .timeout(self.timeout);
        let target = &client.inner.target;
        if let Some(ip) = self.resolve.get(&target.host.to_ascii_lowercase()) {
            let address = SocketAddr::new(*ip, target.port);
            client = client.resolve(address);
        }
        if clients.len() >= Self::MAX_ORIGINS {
            clients.clear();
        }
        clients.insert(origin.to_owned(), client.clone());
        Ok(client)
    }

    /// POSTs `body` to `uri`.
    ///
    /// # Errors
    /// [`ClientError`]: not delivered (no connection, a refusal, no answer in time); a 429
    /// or 503 carries its `Retry-After`.
    pub async fn notify(
        &self,
        uri: &NotifUri,
        body: &ServiceDisableNotif,
    ) -> Result<(), ClientError> {
        let parsed: Uri = uri
            .as_str()
            .parse()
            .map_err(|_| ClientError::Url("notifUri is not a URI"))?;
        let scheme = parsed.scheme_str().ok_or(ClientError::Url("no scheme"))?;
        let authority = parsed.authority().ok_or(ClientError::Url("no authority"))?;
        let origin = format!("{scheme}://{authority}");
        let path = parsed.path_and_query().map_or("/", |p| p.as_str());
        let client = self.client_for(&origin)?;
        let reply = client.post_wiped(path, body.to_json()).await?;
        if reply.status.is_success() {
            Ok(())
        } else {
            Err(reply.into_error())
        }
    }
}
