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

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

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

use super::tls::{ExpectedServer, TlsSetupError, client_config};
use crate::pki::{Credentials, PeerIdentity, PkiDir, PkiError, Role};

/// Largest response body a client reads (the same cap as the server's request cap).
pub const MAX_RESPONSE_BODY: usize = e2m_msg::MAX_DOCUMENT_LEN;

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
    #[error("transport: {0}")]
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
}

impl ClientError {
    fn transport(error: reqwest::Error) -> Self {
        ClientError::Transport(error.without_url())
    }

    /// The problem's cause, if the server answered with a problem document.
    pub fn problem_cause(&self) -> Option<e2m_msg::ProblemCause> {
        match self {
            ClientError::Problem { problem, .. } => Some(problem.cause),
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
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(15),
            pool_idle_timeout: Duration::from_secs(5),
            push_retries: 5,
            max_retry_wait: Duration::from_secs(10),
        }
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

/// Turns a response into its body if it has `expected` status, else into the error.
async fn expect_status(
    response: reqwest::Response,
    expected: u16,
) -> Result<(reqwest::header::HeaderMap, Vec<u8>), ClientError> {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = read_body(response).await?;
    if status == expected {
        return Ok((headers, body));
    }
    let is_problem = headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(MEDIA_TYPE_PROBLEM_XML));
    if is_problem && let Ok(problem) = Problem::decode(&body) {
        return Err(ClientError::Problem { status, problem });
    }
    Err(ClientError::UnexpectedStatus(status))
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
/// Cheap to clone (the connection pool is shared); connections are kept alive and reused.
#[derive(Clone, Debug)]
pub struct EmksClient {
    http: reqwest::Client,
    base: String,
    identity: PeerIdentity,
    push_retries: u32,
    max_retry_wait: Duration,
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

    async fn post<M: XmlMessage>(
        &self,
        target: &str,
        message: &M,
    ) -> Result<reqwest::Response, ClientError> {
        let body = message.encode();
        // reqwest needs an owned body; the copy is what goes on the wire.
        let response = self
            .http
            .post(self.url(target))
            .header(reqwest::header::CONTENT_TYPE, MEDIA_TYPE_XML)
            .body(body.as_bytes().to_vec())
            .send()
            .await
            .map_err(ClientError::transport)?;
        Ok(response)
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
            .post(rest::SESSIONS_PATH, &Registration { emse_id, callback })
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
        let response = self
            .http
            .get(self.url(&request.to_target()))
            .send()
            .await
            .map_err(ClientError::transport)?;
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
        let target = Deregistration { session_id }.to_target();
        let response = self
            .http
            .delete(self.url(&target))
            .send()
            .await
            .map_err(ClientError::transport)?;
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
        let response = self.post(rest::SUBSCRIPTIONS_PATH, subscription).await?;
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
        let response = self
            .http
            .delete(self.url(&rest::subscription_path(subscription_id)))
            .send()
            .await
            .map_err(ClientError::transport)?;
        expect_status(response, 204).await.map(|_| ())
    }

    /// Sends a notification to the EMKS (EMSE → EMKS, e.g. `key-in-use`): 204.
    ///
    /// # Errors
    /// A problem from the EMKS.
    pub async fn notify(&self, notification: &Notification) -> Result<(), ClientError> {
        let response = self.post(rest::NOTIFICATIONS_PATH, notification).await?;
        expect_status(response, 204).await.map(|_| ())
    }

    /// HSS role: pushes an intermediate key (seed 6.x.2.1 step 1, prerequisite a): 204.
    ///
    /// # Errors
    /// [`ClientError::WrongRole`] for a non-HSS certificate; a problem from the EMKS.
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
        let mut retries = 0;
        loop {
            let response = self.post(rest::INTERMEDIATE_KEYS_PATH, push).await?;
            if response.status().as_u16() == 429 && retries < self.push_retries {
                let wait = retry_after(response.headers())
                    .unwrap_or(Duration::from_secs(1))
                    .min(self.max_retry_wait);
                // Read the problem body so that the connection can be reused.
                let _ = read_body(response).await;
                tracing::info!(
                    retry = retries + 1,
                    wait_ms = wait.as_millis() as u64,
                    "key push rate-limited by the EMKS; retrying after Retry-After"
                );
                tokio::time::sleep(wait).await;
                retries += 1;
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
        // Jitter from the clock's nanoseconds: no secret, only spread.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let quarter = wait / 4;
        let cut = quarter.mul_f64(f64::from(nanos % 1000) / 1000.0);
        wait - cut
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
        ClientError::Transport(_) | ClientError::UnexpectedStatus(_) => true,
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
    /// # Errors
    /// A transport error (including a callback served by anyone but `to`), a problem or an
    /// unexpected status from the EMSE.
    pub async fn notify(
        &self,
        to: &EmseId,
        callback: &CallbackUri,
        notification: &Notification,
    ) -> Result<(), ClientError> {
        let client = self.client_for(to)?;
        let response = client
            .post(callback.as_str())
            .header(reqwest::header::CONTENT_TYPE, MEDIA_TYPE_XML)
            .body(notification.encode().as_bytes().to_vec())
            .send()
            .await
            .map_err(ClientError::transport)?;
        expect_status(response, 204).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

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
