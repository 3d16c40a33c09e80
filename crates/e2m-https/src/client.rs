//! The HTTPS clients of the reference point: the EMSE's and the HSS's client to the EMKS
//! ([`EmksClient`]) and the EMKS's client to the EMSEs' notification endpoints
//! ([`Notifier`]).
//!
//! Built on `reqwest` (connection pool, keep-alive, timeouts) given a complete rustls
//! configuration from [`super::tls::client_config`]: the profile's versions and suites, the
//! *ring* provider named explicitly, the client certificate, and a server check that adds
//! the e2m role or identity to webpki's chain and host-name checks.
//!
//! Errors never carry the request URL (it holds session ids and UE identities; see
//! [`ClientError`]), and response bodies that hold key material are zeroized after decoding
//! where the buffer is ours to clear.
//!
//! # Retries
//!
//! A request that fails without an answer is sent again, after a wait drawn at random up
//! to a ceiling that doubles with each failure ([`RetryPolicy`]: "full jitter", so that a
//! crowd of requests refused together does not come back together):
//!
//! - **a connection refused or reset before the request went out** (the server's
//!   admission bound, e.g. more than 32 handshakes at once from one address; a TLS
//!   handshake the server dropped; a connect timeout): retried for every request, since
//!   the server saw nothing of it;
//! - **no answer after the request went out** (the connection closed or reset before any
//!   response arrived, e.g. a server closing an idle keep-alive connection just as the
//!   client reused it, with or without TLS `close_notify`): retried only for idempotent
//!   requests: key fetches (`GET`), deregistration and unsubscription (`DELETE`; a repeat
//!   of one that took effect is answered `unknown-session` / `unknown-subscription`, which
//!   [`EmseSession::close`] counts as done), key pushes (`POST`, idempotent by key id: the
//!   EMKS holds a key once, however often it is pushed) and notifications to an EMSE
//!   (idempotent by `notificationId`). A registration, subscription or EMSE notification
//!   is not sent twice: its error is returned.
//!
//! A certificate the client refuses, or one the server refuses, is never retried, nor is a
//! request that timed out ([`ClientOptions::request_timeout`] bounds each attempt).
//!
//! A key push answered `429 Too Many Requests` is sent again after the server's
//! `Retry-After` (counted from when the answer arrived, at most
//! [`ClientOptions::max_retry_wait`]), up to [`ClientOptions::push_retries`] times. Only
//! the refused push waits: the client's other requests go on, **paced** ([`EmksClient`]'s
//! clones share one pace). After a 429 the client spaces its requests at a little under
//! the rate the server accepted lately, cuts that rate by a fifth at each further 429 (once
//! per 100 ms), raises it while requests are accepted (doubling per second until the
//! server refuses at that pace, then by a quarter per second near it), and stops pacing
//! after 10 s without a 429: AIMD with a slow start, as TCP paces a congested path. So a
//! burst of pushes runs at about the server's budget instead of stopping whole seconds at
//! a time with every worker waiting together (a simulation of 128 pushing tasks against
//! the server's budget of 500/s with bursts of 20, in the tests of the crate's private
//! `pace` module: 500/s paced, 49/s unpaced).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2m_keyid::{EmseId, KeyId};
use e2m_msg::rest::{self, MEDIA_TYPE_PROBLEM_XML, MEDIA_TYPE_XML};
use e2m_msg::{
    CallbackUri, DecodeError, Deregistration, IntermediateKeyPush, KeyRequest, KeyResponse,
    Notification, Problem, Registration, RegistrationResult, SessionId, Subscription,
    SubscriptionId, SubscriptionResult, UeRef, XmlMessage,
};
use hyper::body::Bytes;
use rustls::pki_types::CertificateDer;
use zeroize::Zeroize;

use super::pace::Pacer;
use super::tls::{ExpectedServer, TlsSetupError, client_config};
use crate::pki::{Credentials, PeerIdentity, PkiDir, PkiError, Role};

/// Largest response body a client reads (the same cap as the server's request cap).
pub const MAX_RESPONSE_BODY: usize = e2m_msg::MAX_DOCUMENT_LEN;

/// Largest problem document (an answer other than the one expected) a client reads and
/// decodes. Any problem document an EMKS or EMSE of this crate sends is far smaller (a
/// few hundred octets); 8 KiB holds even one whose detail has
/// [`ProblemDetail::MAX_LEN`](e2m_msg::ProblemDetail::MAX_LEN) octets, each escaped. A
/// larger one is neither read to its end nor decoded (the error is then
/// [`ClientError::UnexpectedStatus`], or [`ClientError::RetryLater`] without a problem),
/// so that a hostile peer (e.g. an EMSE's notification endpoint answering the notifier)
/// cannot make each answer cost a 64 KiB decode.
pub const MAX_PROBLEM_BODY: usize = 8 * 1024;

/// Why a call to the EMKS (or an EMSE) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The TLS configuration could not be built.
    #[error("TLS setup: {0}")]
    Setup(#[from] TlsSetupError),
    /// Certificates or keys could not be loaded.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// The base URL is not `https://host:port`.
    #[error("base URL must be https://host[:port] without a path")]
    BadBaseUrl,
    /// This operation needs a certificate of another role (e.g. registering with the HSS's).
    #[error("the client certificate has role {actual}, this operation needs {needed}")]
    WrongRole {
        /// The role the operation needs.
        needed: Role,
        /// The role of this client's certificate.
        actual: Role,
    },
    /// The client certificate names no e2m identity.
    #[error("client certificate carries no e2m identity")]
    NoIdentity,
    /// Connection, TLS or HTTP failure (the URL is stripped: it may hold session ids).
    ///
    /// Its `Display` shows the whole chain of causes (e.g. `transport: error sending
    /// request: client error (Connect): tcp connect error: Connection refused (os error
    /// 111)`), so that a log line says what failed; `source()` therefore returns nothing
    /// more (a reporter walking the chain would print each cause twice). The inner error
    /// is the variant's field. No request target, and so no session id or UE identity,
    /// is ever part of the text.
    #[error("transport: {}", TransportChain(.0))]
    Transport(reqwest::Error),
    /// The server answered with a problem document (RFC 9457).
    #[error("problem {status}: {}", .problem.cause)]
    Problem {
        /// The HTTP status.
        status: u16,
        /// The decoded problem.
        problem: Problem,
    },
    /// The server answered with a status the operation does not expect and no problem
    /// document.
    #[error("unexpected HTTP status {0}")]
    UnexpectedStatus(u16),
    /// The response body is not the expected message.
    #[error("bad response body: {0}")]
    Decode(#[from] DecodeError),
    /// The response body is larger than [`MAX_RESPONSE_BODY`].
    #[error("response body too large")]
    ResponseTooLarge,
    /// A `201 Created` without a usable `Location`.
    #[error("201 without a valid Location header")]
    BadLocation,
    /// `429 Too Many Requests`: the server refused the request for now (after the retries
    /// the operation makes, if any).
    #[error("refused for now (HTTP 429){}", .problem.as_ref().map(|p| format!(": {}", p.cause)).unwrap_or_default())]
    RetryLater {
        /// The server's `Retry-After` (delay-seconds), if it sent one.
        retry_after: Option<Duration>,
        /// The problem document, if the answer had one.
        problem: Option<Problem>,
    },
}

/// Displays a transport error and every cause under it, `: `-separated, with any URL an
/// inner `reqwest::Error` still carries replaced (the outer one's is stripped already).
struct TransportChain<'a>(&'a reqwest::Error);

impl std::fmt::Display for TransportChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = std::error::Error::source(self.0);
        // Bounded: a chain is a few links; a cycle (never seen) must not loop forever.
        let mut links = 0;
        while let Some(cause) = source {
            links += 1;
            if links > 16 {
                return f.write_str(": …");
            }
            let text = cause.to_string();
            match cause
                .downcast_ref::<reqwest::Error>()
                .and_then(reqwest::Error::url)
            {
                Some(url) => write!(f, ": {}", text.replace(url.as_str(), "<url>"))?,
                None => write!(f, ": {text}")?,
            }
            source = cause.source();
        }
        Ok(())
    }
}

impl ClientError {
    fn transport(error: reqwest::Error) -> Self {
        ClientError::Transport(error.without_url())
    }

    /// The problem's cause, if the server answered with a problem document.
    pub fn problem_cause(&self) -> Option<e2m_msg::ProblemCause> {
        match self {
            ClientError::Problem { problem, .. } => Some(problem.cause),
            ClientError::RetryLater {
                problem: Some(problem),
                ..
            } => Some(problem.cause),
            _ => None,
        }
    }

    /// How long the server asked to wait, for [`ClientError::RetryLater`].
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ClientError::RetryLater { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Timeouts and pool settings of a client.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Whole-request timeout (connect, TLS, request, response).
    pub request_timeout: Duration,
    /// How long an idle pooled connection is kept. Below the server's idle (header) timeout,
    /// so that the client never reuses a connection the server is about to close.
    pub pool_idle_timeout: Duration,
    /// How many times a key push answered 429 is sent again, each after the server's
    /// `Retry-After` (issue 9 item 12: a refused push is a lost key); after the last one
    /// the 429 is returned as the error, so a finally refused push is visible to the caller.
    pub push_retries: u32,
    /// The longest `Retry-After` honoured; a longer one is cut to this.
    pub max_retry_wait: Duration,
    /// How requests that failed without an answer are retried (see the module docs).
    pub retry: RetryPolicy,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(15),
            pool_idle_timeout: Duration::from_secs(5),
            push_retries: 5,
            max_retry_wait: Duration::from_secs(10),
            retry: RetryPolicy::DEFAULT,
        }
    }
}

/// How a request that failed without an answer is retried: at most `retries` more times,
/// the `n`-th after a wait drawn uniformly from zero to `first_wait · 2^(n-1)` (at most
/// `max_wait`). Which failures are retried is in the [module docs](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts after the first (0: none).
    pub retries: u32,
    /// The ceiling of the first wait.
    pub first_wait: Duration,
    /// The highest ceiling.
    pub max_wait: Duration,
}

impl RetryPolicy {
    /// 8 retries, ceilings 25 ms doubling to 2 s: a request refused at a server's
    /// admission bound eight times in a row has waited about 2.7 s on average (5.4 s at
    /// most), long enough for a burst of a few hundred handshakes to be admitted 32 at a
    /// time; an idle connection closed under a request costs one retry, at once.
    pub const DEFAULT: RetryPolicy = RetryPolicy {
        retries: 8,
        first_wait: Duration::from_millis(25),
        max_wait: Duration::from_secs(2),
    };

    /// No retries.
    pub const NEVER: RetryPolicy = RetryPolicy {
        retries: 0,
        first_wait: Duration::ZERO,
        max_wait: Duration::ZERO,
    };

    /// The ceiling of the wait before retry `n` (1-based).
    fn ceiling(&self, n: u32) -> Duration {
        self.first_wait
            .saturating_mul(1u32 << n.saturating_sub(1).min(20))
            .min(self.max_wait)
    }

    /// The wait before retry `n` (1-based): uniform in `[0, ceiling]`.
    fn wait(&self, n: u32) -> Duration {
        self.ceiling(n).mul_f64(random_unit())
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::DEFAULT
    }
}

/// A number in `[0, 1)` for spreading waits (no secret: only spread). splitmix64 over a
/// process-wide counter and the clock, so that tasks asking at the same instant get
/// different numbers.
fn random_unit() -> f64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut z = COUNTER
        .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
        .wrapping_add(nanos);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    // The top 53 bits, as f64's mantissa holds them.
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// How far a failed request got, judged from its error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Failure {
    /// The connection was refused, reset or timed out before the request went out.
    NotSent,
    /// The request went out (perhaps in part); the connection closed or reset before any
    /// answer arrived.
    NoAnswer,
    /// Anything else (a certificate refused, a timeout, a protocol error): not retried.
    Final,
}

/// Reads the error chain: connect-phase failures did not send the request; a closed or
/// reset connection without a response sent it but got nothing back. A TLS error (a
/// certificate refused by either side) is final, whatever the phase.
fn failure_of(error: &reqwest::Error) -> Failure {
    let mut closed = false;
    let mut canceled = false;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.is::<rustls::Error>() {
            return Failure::Final;
        }
        let mut next = e.source();
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            // `io::Error::source` skips the error it wraps (e.g. an `io::Error` around
            // rustls's): go on from that one instead.
            if let Some(inner) = io.get_ref() {
                next = Some(inner);
            }
            closed |= matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::NotConnected
            );
        }
        if let Some(hyper) = e.downcast_ref::<hyper::Error>() {
            closed |= hyper.is_incomplete_message();
            // The connection closed before the request was written (hyper-util retries
            // this itself on a reused connection; on a fresh one it reports it).
            canceled |= hyper.is_canceled();
        }
        source = next;
    }
    if error.is_connect() || canceled {
        // Refused, reset or timed out while connecting or in the handshake.
        Failure::NotSent
    } else if error.is_timeout() {
        Failure::Final
    } else if closed {
        Failure::NoAnswer
    } else {
        Failure::Final
    }
}

/// Whether a request is sent again after it went out and no answer came back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Idempotent {
    Yes,
    No,
}

/// Sends the request `build` makes, retrying as `policy` and the [module docs](self) say.
async fn send_retrying(
    policy: &RetryPolicy,
    idempotent: Idempotent,
    build: impl Fn() -> reqwest::RequestBuilder,
) -> Result<reqwest::Response, ClientError> {
    let mut retries = 0;
    loop {
        let error = match build().send().await {
            Ok(response) => return Ok(response),
            Err(error) => error,
        };
        let failure = failure_of(&error);
        let retry = match failure {
            Failure::NotSent => true,
            Failure::NoAnswer => idempotent == Idempotent::Yes,
            Failure::Final => false,
        };
        if !retry || retries >= policy.retries {
            return Err(ClientError::transport(error));
        }
        retries += 1;
        let wait = policy.wait(retries);
        tracing::debug!(
            retry = retries,
            wait_ms = wait.as_millis() as u64,
            sent = failure == Failure::NoAnswer,
            error = %error.without_url(),
            "request failed without an answer; retrying"
        );
        tokio::time::sleep(wait).await;
    }
}

fn build_http(
    credentials: &Credentials,
    ca: &[CertificateDer<'static>],
    expected: ExpectedServer,
    options: &ClientOptions,
) -> Result<reqwest::Client, ClientError> {
    let tls = client_config(credentials, ca, expected)?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        // Loopback and operator networks: never route through an environment proxy.
        .no_proxy()
        .https_only(true)
        // Never follow a redirect: a 3xx from an EMKS or an EMSE endpoint is an answer to
        // report, and following it would present this client's certificate (and resend a
        // key push's body) to whatever the `Location` names.
        .redirect(reqwest::redirect::Policy::none())
        .http1_only()
        .connect_timeout(options.connect_timeout)
        .timeout(options.request_timeout)
        .pool_idle_timeout(options.pool_idle_timeout)
        .build()
        .map_err(ClientError::transport)
}

fn check_base_url(base_url: &str) -> Result<String, ClientError> {
    let base = base_url.trim_end_matches('/');
    let authority = base
        .strip_prefix("https://")
        .ok_or(ClientError::BadBaseUrl)?;
    if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
        return Err(ClientError::BadBaseUrl);
    }
    Ok(base.to_owned())
}

/// Reads a response body with a size cap.
async fn read_body(mut response: reqwest::Response) -> Result<Vec<u8>, ClientError> {
    if response
        .content_length()
        .is_some_and(|n| n > MAX_RESPONSE_BODY as u64)
    {
        return Err(ClientError::ResponseTooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(ClientError::transport)? {
        if body.len() + chunk.len() > MAX_RESPONSE_BODY {
            body.zeroize();
            return Err(ClientError::ResponseTooLarge);
        }
        body.extend_from_slice(&chunk);
        wipe(chunk);
    }
    Ok(body)
}

/// Clears a received chunk if this is its only owner (hyper hands out unique buffers for
/// each read; if another handle exists, there is nothing we may clear).
fn wipe(chunk: Bytes) {
    if let Ok(mut unique) = chunk.try_into_mut() {
        unique.zeroize();
    }
}

/// Reads a problem body of at most [`MAX_PROBLEM_BODY`] octets; `None` for a larger one,
/// which is left unread (its connection is then not reused) or, when its length was not
/// declared, read no further than the cap.
async fn read_problem_body(mut response: reqwest::Response) -> Option<Vec<u8>> {
    if response
        .content_length()
        .is_some_and(|n| n > MAX_PROBLEM_BODY as u64)
    {
        return None;
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.ok()? {
        if body.len() + chunk.len() > MAX_PROBLEM_BODY {
            return None;
        }
        body.extend_from_slice(&chunk);
    }
    Some(body)
}

/// Turns a response into its body if it has `expected` status, else into the error.
async fn expect_status(
    response: reqwest::Response,
    expected: u16,
) -> Result<(reqwest::header::HeaderMap, Vec<u8>), ClientError> {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    if status == expected {
        let body = read_body(response).await?;
        return Ok((headers, body));
    }
    let is_problem = headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(MEDIA_TYPE_PROBLEM_XML));
    // Only a problem document is read, and only a small one (MAX_PROBLEM_BODY); any other
    // body is dropped unread.
    let problem = if is_problem {
        read_problem_body(response)
            .await
            .and_then(|body| Problem::decode(&body).ok())
    } else {
        None
    };
    match (status, problem) {
        (429, problem) => Err(ClientError::RetryLater {
            retry_after: retry_after(&headers),
            problem,
        }),
        (status, Some(problem)) => Err(ClientError::Problem { status, problem }),
        (status, None) => Err(ClientError::UnexpectedStatus(status)),
    }
}

/// `Retry-After` in delay-seconds form (RFC 9110 §10.2.3); the HTTP-date form is not used
/// by e2m's server and is read as absent.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// The last segment of a `Location` header under `collection` (e.g. the session id).
fn location_id<'h>(headers: &'h reqwest::header::HeaderMap, collection: &str) -> Option<&'h str> {
    let location = headers.get(reqwest::header::LOCATION)?.to_str().ok()?;
    // Relative (`/e2m/v1/sessions/{id}`) or absolute (`https://host/e2m/v1/sessions/{id}`).
    let path = match location.find(collection) {
        Some(at) => &location[at..],
        None => return None,
    };
    path.strip_prefix(collection)?.strip_prefix('/')
}

/// The EMSE's or the HSS's HTTPS client to the EMKS (seed 6.x.2.2.2 procedures, and the
/// HSS push, e2m's stand-in for the stage-3 Diameter interface).
///
/// Cheap to clone (the connection pool and the pace after 429s are shared); connections are
/// kept alive and reused; requests that get no answer are retried as the [module
/// docs](self) say.
#[derive(Clone, Debug)]
pub struct EmksClient {
    http: reqwest::Client,
    base: String,
    identity: PeerIdentity,
    push_retries: u32,
    max_retry_wait: Duration,
    retry: RetryPolicy,
    pacer: Arc<Pacer>,
}

impl EmksClient {
    /// A client of the EMKS at `base_url` (`https://127.0.0.1:8443`), authenticating with
    /// `credentials`, trusting `ca`, and accepting only a server certificate with the EMKS
    /// role.
    ///
    /// # Errors
    /// [`ClientError::BadBaseUrl`], [`ClientError::NoIdentity`] or a TLS setup error.
    pub fn new(
        base_url: &str,
        credentials: &Credentials,
        ca: &[CertificateDer<'static>],
    ) -> Result<EmksClient, ClientError> {
        Self::with_options(base_url, credentials, ca, &ClientOptions::default())
    }

    /// As [`Self::new`], with explicit timeouts.
    ///
    /// # Errors
    /// As [`Self::new`].
    pub fn with_options(
        base_url: &str,
        credentials: &Credentials,
        ca: &[CertificateDer<'static>],
        options: &ClientOptions,
    ) -> Result<EmksClient, ClientError> {
        let base = check_base_url(base_url)?;
        let identity = credentials
            .identity()
            .map_err(|_| ClientError::NoIdentity)?;
        let http = build_http(
            credentials,
            ca,
            ExpectedServer::AnyOfRole(Role::Emks),
            options,
        )?;
        Ok(EmksClient {
            http,
            base,
            identity,
            push_retries: options.push_retries,
            max_retry_wait: options.max_retry_wait,
            retry: options.retry,
            pacer: Arc::new(Pacer::new()),
        })
    }

    /// An EMSE's client: its credentials and the CA from a PKI directory.
    ///
    /// # Errors
    /// [`ClientError::Pki`] if the files cannot be loaded, or as [`Self::new`].
    pub fn for_emse(
        base_url: &str,
        pki: &PkiDir,
        emse: &EmseId,
    ) -> Result<EmksClient, ClientError> {
        let ca = pki.ca_certificates()?;
        Self::new(base_url, &pki.emse(emse)?, &ca)
    }

    /// The HSS's client: its credentials and the CA from a PKI directory.
    ///
    /// # Errors
    /// [`ClientError::Pki`] if the files cannot be loaded, or as [`Self::new`].
    pub fn for_hss(base_url: &str, pki: &PkiDir) -> Result<EmksClient, ClientError> {
        let ca = pki.ca_certificates()?;
        Self::new(base_url, &pki.hss()?, &ca)
    }

    /// The identity of this client's certificate (what the EMKS will see).
    pub fn identity(&self) -> &PeerIdentity {
        &self.identity
    }

    fn url(&self, target: &str) -> String {
        format!("{}{}", self.base, target)
    }

    fn own_emse_id(&self) -> Result<&EmseId, ClientError> {
        match &self.identity {
            PeerIdentity::Emse(id) => Ok(id),
            other => Err(ClientError::WrongRole {
                needed: Role::Emse,
                actual: other.role(),
            }),
        }
    }

    /// Sends one request in its pace slot, retrying as the module docs say; tells the
    /// pace whether the server accepted or refused it (429).
    async fn send(
        &self,
        idempotent: Idempotent,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        self.pacer.slot().await;
        let response = send_retrying(&self.retry, idempotent, build).await?;
        match response.status().as_u16() {
            429 => self.pacer.refused(Instant::now()),
            status if status < 400 => self.pacer.accepted(),
            _ => {}
        }
        Ok(response)
    }

    async fn post<M: XmlMessage>(
        &self,
        target: &str,
        message: &M,
        idempotent: Idempotent,
    ) -> Result<reqwest::Response, ClientError> {
        let body = Bytes::from(message.encode().as_bytes().to_vec());
        let url = self.url(target);
        // reqwest needs an owned body; the copy is what goes on the wire (the `Bytes` is
        // shared by the attempts, not copied again). It may hold a key (a push): cleared
        // once the attempts are over, if no other handle on it is left.
        let response = self
            .send(idempotent, || {
                self.http
                    .post(&url)
                    .header(reqwest::header::CONTENT_TYPE, MEDIA_TYPE_XML)
                    .body(body.clone())
            })
            .await;
        wipe(body);
        response
    }

    /// Initial registration (seed 6.x.2.2.2.1) with this client's own EMSE_Id, the one in
    /// its certificate; `callback` is where it takes notifications.
    ///
    /// # Errors
    /// [`ClientError::WrongRole`] for a non-EMSE certificate; a problem from the EMKS.
    pub async fn register(
        &self,
        callback: Option<CallbackUri>,
    ) -> Result<RegistrationResult, ClientError> {
        let emse_id = self.own_emse_id()?.clone();
        self.register_as(emse_id, callback).await
    }

    /// Registration claiming `emse_id`, whatever the certificate says (the EMKS refuses a
    /// mismatch with `emse-not-authorized`; this exists to show and test that).
    ///
    /// # Errors
    /// A problem from the EMKS, or a transport or decoding error.
    pub async fn register_as(
        &self,
        emse_id: EmseId,
        callback: Option<CallbackUri>,
    ) -> Result<RegistrationResult, ClientError> {
        let response = self
            .post(
                rest::SESSIONS_PATH,
                &Registration { emse_id, callback },
                Idempotent::No,
            )
            .await?;
        let (headers, body) = expect_status(response, 201).await?;
        let result = RegistrationResult::decode(&body)?;
        if location_id(&headers, rest::SESSIONS_PATH) != Some(result.session_id.to_text().as_str())
        {
            return Err(ClientError::BadLocation);
        }
        Ok(result)
    }

    /// Fetches the UE's `e2m_key` (seed 6.x.2.2.2.2; 6.x.2.3 steps 5–6): 200 with the key.
    ///
    /// # Errors
    /// A problem from the EMKS (e.g. `key-not-available`: the UE must re-authenticate).
    pub async fn fetch_key(&self, request: &KeyRequest) -> Result<KeyResponse, ClientError> {
        let url = self.url(&request.to_target());
        let response = self.send(Idempotent::Yes, || self.http.get(&url)).await?;
        let (_, mut body) = expect_status(response, 200).await?;
        let decoded = KeyResponse::decode(&body);
        body.zeroize();
        Ok(decoded?)
    }

    /// Deregistration (seed 6.x.2.2.2.3): DELETE on the session, 204.
    ///
    /// # Errors
    /// A problem from the EMKS (e.g. `unknown-session`).
    pub async fn deregister(&self, session_id: SessionId) -> Result<(), ClientError> {
        let url = self.url(&Deregistration { session_id }.to_target());
        let response = self
            .send(Idempotent::Yes, || self.http.delete(&url))
            .await?;
        expect_status(response, 204).await.map(|_| ())
    }

    /// Subscribes to notifications (seed 6.x.2.2.2 "Subscription to Notification"): 201.
    ///
    /// # Errors
    /// A problem from the EMKS.
    pub async fn subscribe(
        &self,
        subscription: &Subscription,
    ) -> Result<SubscriptionResult, ClientError> {
        let response = self
            .post(rest::SUBSCRIPTIONS_PATH, subscription, Idempotent::No)
            .await?;
        let (headers, body) = expect_status(response, 201).await?;
        let result = SubscriptionResult::decode(&body)?;
        if location_id(&headers, rest::SUBSCRIPTIONS_PATH)
            != Some(result.subscription_id.to_string().as_str())
        {
            return Err(ClientError::BadLocation);
        }
        Ok(result)
    }

    /// Ends a subscription: DELETE, 204.
    ///
    /// # Errors
    /// A problem from the EMKS (e.g. `unknown-subscription`).
    pub async fn unsubscribe(&self, subscription_id: &SubscriptionId) -> Result<(), ClientError> {
        let url = self.url(&rest::subscription_path(subscription_id));
        let response = self
            .send(Idempotent::Yes, || self.http.delete(&url))
            .await?;
        expect_status(response, 204).await.map(|_| ())
    }

    /// Sends a notification to the EMKS (EMSE → EMKS, e.g. `key-in-use`): 204.
    ///
    /// # Errors
    /// A problem from the EMKS.
    pub async fn notify(&self, notification: &Notification) -> Result<(), ClientError> {
        let response = self
            .post(rest::NOTIFICATIONS_PATH, notification, Idempotent::No)
            .await?;
        expect_status(response, 204).await.map(|_| ())
    }

    /// HSS role: pushes an intermediate key (seed 6.x.2.1 step 1, prerequisite a): 204.
    ///
    /// A push is idempotent by key id (the EMKS holds a key once, however often it is
    /// pushed), so a push that got no answer (a refused or reset connection, a keep-alive
    /// connection closed under it) is sent again as [`ClientOptions::retry`] says, and a
    /// push answered 429 is sent again after `Retry-After`, up to
    /// [`ClientOptions::push_retries`] times, while the client's other requests go on at a
    /// pace the server accepts (see the module docs). Pushes from many tasks at once
    /// should share one client (clone it): they then share its connections and its pace.
    ///
    /// # Errors
    /// [`ClientError::WrongRole`] for a non-HSS certificate; a problem from the EMKS;
    /// [`ClientError::RetryLater`] if the last retry was refused too; a transport error
    /// when the retries ran out.
    pub async fn push_intermediate_key(
        &self,
        push: &IntermediateKeyPush,
    ) -> Result<(), ClientError> {
        if self.identity.role() != Role::Hss {
            return Err(ClientError::WrongRole {
                needed: Role::Hss,
                actual: self.identity.role(),
            });
        }
        let mut refusals = 0;
        loop {
            let response = self
                .post(rest::INTERMEDIATE_KEYS_PATH, push, Idempotent::Yes)
                .await?;
            if response.status().as_u16() == 429 && refusals < self.push_retries {
                let received = Instant::now();
                refusals += 1;
                // The server's wait, counted from its answer; without one, the transport
                // retry's (shorter than a whole second, spread at random).
                let wait = retry_after(response.headers())
                    .unwrap_or_else(|| self.retry.wait(refusals))
                    .min(self.max_retry_wait);
                // Read the (small) problem body so that the connection can be reused.
                let _ = read_problem_body(response).await;
                tracing::debug!(
                    retry = refusals,
                    wait_ms = wait.as_millis() as u64,
                    "key push rate-limited by the EMKS; retrying after Retry-After"
                );
                tokio::time::sleep_until((received + wait).into()).await;
                continue;
            }
            return expect_status(response, 204).await.map(|_| ());
        }
    }
}

/// How an [`EmseSession`] retries its registration: waits from `initial`, doubled after
/// each failure up to `max`, each shortened by up to a quarter at random (so that EMSEs
/// restarted together do not retry together), for at most `attempts` tries (`None`: until
/// it succeeds or the caller gives up, e.g. on a signal).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The first wait.
    pub initial: Duration,
    /// The longest wait.
    pub max: Duration,
    /// The most registration attempts (`None`: no limit).
    pub attempts: Option<u32>,
}

impl Backoff {
    /// 200 ms, doubling to 10 s, without limit.
    pub const DEFAULT: Backoff = Backoff {
        initial: Duration::from_millis(200),
        max: Duration::from_secs(10),
        attempts: None,
    };

    /// The wait after the `failures`-th failure (1-based).
    fn wait(&self, failures: u32) -> Duration {
        let doubled = self
            .initial
            .saturating_mul(1u32 << failures.saturating_sub(1).min(20));
        let wait = doubled.min(self.max);
        let quarter = wait / 4;
        wait - quarter.mul_f64(random_unit())
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::DEFAULT
    }
}

/// Whether a failed registration may succeed later: the EMKS unreachable or not ready
/// (transport, 503, 429, or a status without a problem document), not a refusal of this
/// EMSE (403, 400, …), which retrying would only repeat.
fn worth_retrying(error: &ClientError) -> bool {
    match error {
        ClientError::Transport(_)
        | ClientError::UnexpectedStatus(_)
        | ClientError::RetryLater { .. } => true,
        ClientError::Problem { problem, .. } => matches!(
            problem.cause,
            e2m_msg::ProblemCause::Unavailable | e2m_msg::ProblemCause::RateLimited
        ),
        _ => false,
    }
}

/// The session the EMSE currently holds, numbered so that concurrent fetches that all find
/// it gone re-register once, not once each.
struct HeldSession {
    id: SessionId,
    generation: u64,
}

/// An EMSE's session with the EMKS, kept alive across EMKS outages and restarts (issue 9
/// item 11): registration is retried with [`Backoff`] while the EMKS is unreachable; a key
/// fetch answered `unknown-session` (the EMKS restarted without its state, or the session
/// expired or was replaced) registers again, once, and repeats the fetch; [`Self::close`]
/// deregisters. Concurrent fetches share one re-registration.
///
/// The EMKS replaces an EMSE's oldest session when a registration finds it at its session
/// limit, so an EMSE that crashes without deregistering is never locked out; deregistering
/// on exit still frees its place at once.
pub struct EmseSession {
    client: EmksClient,
    callback: Option<CallbackUri>,
    backoff: Backoff,
    held: tokio::sync::Mutex<HeldSession>,
}

impl std::fmt::Debug for EmseSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmseSession")
            .field("identity", self.client.identity())
            .finish_non_exhaustive()
    }
}

impl EmseSession {
    /// Registers `client`'s EMSE (with `callback`, if any), retrying as `backoff` says
    /// while the EMKS is unreachable or not ready.
    ///
    /// # Errors
    /// The EMKS refused the registration (e.g. `emse-not-authorized`), or the attempts
    /// ran out (the last error).
    pub async fn establish(
        client: EmksClient,
        callback: Option<CallbackUri>,
        backoff: Backoff,
    ) -> Result<EmseSession, ClientError> {
        let id = register_with_backoff(&client, callback.as_ref(), backoff).await?;
        Ok(EmseSession {
            client,
            callback,
            backoff,
            held: tokio::sync::Mutex::new(HeldSession { id, generation: 0 }),
        })
    }

    /// Keeps the session `id` that `client`'s EMSE registered itself (with `callback`, if
    /// any): from then on as [`Self::establish`] would (re-registration with the same
    /// callback when the EMKS forgets it, retried as `backoff` says).
    pub fn adopt(
        client: EmksClient,
        callback: Option<CallbackUri>,
        id: SessionId,
        backoff: Backoff,
    ) -> EmseSession {
        EmseSession {
            client,
            callback,
            backoff,
            held: tokio::sync::Mutex::new(HeldSession { id, generation: 0 }),
        }
    }

    /// The client (to subscribe and notify).
    pub fn client(&self) -> &EmksClient {
        &self.client
    }

    /// A copy of the current session id.
    pub async fn session_id(&self) -> SessionId {
        self.held.lock().await.id.copy_secret()
    }

    /// Fetches a UE's key in the current session; if the EMKS no longer knows the session,
    /// registers again (once, shared with concurrent fetches) and repeats the fetch.
    ///
    /// # Errors
    /// As [`EmksClient::fetch_key`]; a failed re-registration's error.
    pub async fn fetch_key(&self, ue: UeRef, key_id: KeyId) -> Result<KeyResponse, ClientError> {
        let (id, generation) = {
            let held = self.held.lock().await;
            (held.id.copy_secret(), held.generation)
        };
        let request = KeyRequest {
            session_id: id,
            ue,
            key_id,
        };
        match self.client.fetch_key(&request).await {
            Err(error) if error.problem_cause() == Some(e2m_msg::ProblemCause::UnknownSession) => {
                let id = self.renew(generation).await?;
                let request = KeyRequest {
                    session_id: id,
                    ..request
                };
                self.client.fetch_key(&request).await
            }
            other => other,
        }
    }

    /// A live session id: the current one if another task already renewed the session
    /// that `seen` numbered, else a new registration.
    async fn renew(&self, seen: u64) -> Result<SessionId, ClientError> {
        let mut held = self.held.lock().await;
        if held.generation == seen {
            tracing::info!(
                emse = %self.client.identity(),
                "the EMKS does not know this EMSE's session (restart or expiry); registering again"
            );
            held.id =
                register_with_backoff(&self.client, self.callback.as_ref(), self.backoff).await?;
            held.generation += 1;
        }
        Ok(held.id.copy_secret())
    }

    /// Deregisters (seed 6.x.2.2.2.3). A session the EMKS no longer knows is already gone:
    /// that counts as done.
    ///
    /// # Errors
    /// A transport error or another problem from the EMKS.
    pub async fn close(&self) -> Result<(), ClientError> {
        // Held across the request, so that no fetch renews the session meanwhile.
        let held = self.held.lock().await;
        match self.client.deregister(held.id.copy_secret()).await {
            Err(error) if error.problem_cause() == Some(e2m_msg::ProblemCause::UnknownSession) => {
                Ok(())
            }
            other => other,
        }
    }
}

async fn register_with_backoff(
    client: &EmksClient,
    callback: Option<&CallbackUri>,
    backoff: Backoff,
) -> Result<SessionId, ClientError> {
    let mut failures = 0u32;
    loop {
        match client.register(callback.cloned()).await {
            Ok(result) => return Ok(result.session_id),
            Err(error) => {
                failures += 1;
                let out_of_attempts = backoff.attempts.is_some_and(|n| failures >= n);
                if !worth_retrying(&error) || out_of_attempts {
                    return Err(error);
                }
                let wait = backoff.wait(failures);
                tracing::info!(
                    attempt = failures,
                    wait_ms = wait.as_millis() as u64,
                    %error,
                    "registration with the EMKS failed; retrying"
                );
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// The EMKS's client for notifications to EMSEs (seed 6.x.2.2.1: "EMKS and EMSE act as both
/// HTTP client and server. Thus, there is a TCP connection for each direction.").
///
/// The callback URI comes from the EMSE, so the EMKS must not trust its host: each EMSE gets
/// its own connection pool whose TLS check demands that the server certificate names *that*
/// EMSE (`urn:e2m:emse:<EMSE_Id>`). A callback pointing at another EMSE, or anywhere else,
/// fails in the handshake, before any notification byte is sent.
#[derive(Debug)]
pub struct Notifier {
    credentials: Credentials,
    ca: Vec<CertificateDer<'static>>,
    options: ClientOptions,
    clients: Mutex<HashMap<EmseId, reqwest::Client>>,
}

impl Notifier {
    /// A notifier authenticating with the EMKS's `credentials`, trusting `ca`.
    pub fn new(
        credentials: Credentials,
        ca: Vec<CertificateDer<'static>>,
        options: ClientOptions,
    ) -> Notifier {
        Notifier {
            credentials,
            ca,
            options,
            clients: Mutex::new(HashMap::new()),
        }
    }

    fn client_for(&self, emse: &EmseId) -> Result<reqwest::Client, ClientError> {
        let mut clients = self
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(client) = clients.get(emse) {
            return Ok(client.clone());
        }
        let client = build_http(
            &self.credentials,
            &self.ca,
            ExpectedServer::Exactly(PeerIdentity::Emse(emse.clone())),
            &self.options,
        )?;
        clients.insert(emse.clone(), client.clone());
        Ok(client)
    }

    /// Forgets the connection pool of an EMSE (after it deregisters).
    pub fn forget(&self, emse: &EmseId) {
        self.clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(emse);
    }

    /// POSTs `notification` to `callback`, which must be served by EMSE `to`: 204.
    ///
    /// A notification is idempotent by its `notificationId` (the EMSE's endpoint drops a
    /// repeat), so one that got no answer is sent again as [`ClientOptions::retry`] says,
    /// at most twice: the deliverer's outbox retries anything longer with its own backoff.
    /// A 429 is returned at once as [`ClientError::RetryLater`] with the EMSE's
    /// `Retry-After`: the deliverer paces that EMSE by it.
    ///
    /// # Errors
    /// A transport error (including a callback served by anyone but `to`), a problem or an
    /// unexpected status from the EMSE, [`ClientError::RetryLater`].
    pub async fn notify(
        &self,
        to: &EmseId,
        callback: &CallbackUri,
        notification: &Notification,
    ) -> Result<(), ClientError> {
        let client = self.client_for(to)?;
        let body = Bytes::from(notification.encode().as_bytes().to_vec());
        let policy = RetryPolicy {
            retries: self.options.retry.retries.min(2),
            ..self.options.retry
        };
        let response = send_retrying(&policy, Idempotent::Yes, || {
            client
                .post(callback.as_str())
                .header(reqwest::header::CONTENT_TYPE, MEDIA_TYPE_XML)
                .body(body.clone())
        })
        .await?;
        expect_status(response, 204).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn retry_waits_are_spread_under_a_doubling_ceiling() {
        let policy = RetryPolicy::DEFAULT;
        let ceilings: Vec<u64> = (1..=9)
            .map(|n| policy.ceiling(n).as_millis() as u64)
            .collect();
        assert_eq!(ceilings, [25, 50, 100, 200, 400, 800, 1600, 2000, 2000]);
        // Full jitter: 1,000 draws of the first wait cover [0, 25 ms] evenly enough.
        let waits: Vec<Duration> = (0..1000).map(|_| policy.wait(1)).collect();
        assert!(waits.iter().all(|w| *w <= Duration::from_millis(25)));
        let low = waits
            .iter()
            .filter(|w| **w < Duration::from_millis(12))
            .count();
        assert!((350..650).contains(&low), "{low} of 1000 in the lower half");
        let mut distinct = waits.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert!(distinct.len() > 900, "draws at the same instant repeat");
    }

    #[test]
    fn base_url_is_checked() {
        assert!(check_base_url("https://127.0.0.1:8443").is_ok());
        assert_eq!(
            check_base_url("https://127.0.0.1:8443/").unwrap(),
            "https://127.0.0.1:8443"
        );
        for bad in [
            "http://127.0.0.1",
            "https://",
            "https://a/b",
            "https://u@h",
            "127.0.0.1",
        ] {
            assert!(check_base_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn location_id_reads_relative_and_absolute() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::LOCATION,
            "/e2m/v1/sessions/abc".parse().unwrap(),
        );
        assert_eq!(location_id(&headers, rest::SESSIONS_PATH), Some("abc"));
        headers.insert(
            reqwest::header::LOCATION,
            "https://h:1/e2m/v1/sessions/xyz".parse().unwrap(),
        );
        assert_eq!(location_id(&headers, rest::SESSIONS_PATH), Some("xyz"));
        headers.insert(reqwest::header::LOCATION, "/other".parse().unwrap());
        assert_eq!(location_id(&headers, rest::SESSIONS_PATH), None);
    }
}
