//! The EMKS over HTTPS: the REST binding of `e2m-msg` served by the hardened stack of
//! [`super::server`], every decision taken by the sans-IO core `e2m-emks`.
//!
//! For each request: the route from [`e2m_msg::Route::parse`] (method + target, strict);
//! the body decoded strictly (XML, `application/xml`); the core called with the peer from the
//! **verified certificate** (never from the request) and `now`; the answer built as the
//! binding says (201 + `Location`, 200 + `Cache-Control: no-store`, 204, or a problem); and
//! the side effects carried out: audit records written to `tracing` (target `e2m::audit`,
//! their `Display` form, which holds no key bytes and no session ids — the core guarantees
//! it and the tests check it), and the deliverer woken for the notifications the store
//! recorded in its outbox, in the push's own transaction ([`crate::delivery`]).
//!
//! The core's decisions are `async fn`s over the async store traits, awaited inline on the
//! worker: over the in-memory stores they are ready at once (a hash lookup and one
//! HMAC-SHA-256 for a key fetch, around a microsecond), and a networked store awaits its
//! I/O without blocking the worker. Bodies are decoded on the worker too, except those
//! larger than any valid message (over 4 KiB), which go to tokio's blocking pool so that
//! no peer can hold the workers with costly documents (issue 16).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2m_emks::{Effects, Emks, Outcome, Peer, Timestamp};
use e2m_keystore::{
    IdentityMap, InstanceId, IntKeyStore, NotificationOutbox, SessionStore, SubscriptionStore,
};
use e2m_msg::rest::{self, Operation, Route, RouteError};
use e2m_msg::{
    IntermediateKeyPush, Notification, ProblemCause, Registration, Subscription, XmlMessage,
};
use hyper::header::{self, HeaderValue};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::client::{ClientOptions, Notifier};
use super::delivery::{Deliverer, DeliveryOptions};
use super::metrics::{EmksObserver, HandshakeFailure};
use super::respond;
use super::server::{Handler, HttpResponse, Limits, Rejection, Request, ServerHandle, serve};
use super::tls::{TlsSetupError, server_config};
use crate::pki::{PeerIdentity, PkiDir, PkiError, Role};

/// The core's view of a verified certificate identity.
pub fn core_peer(identity: &PeerIdentity) -> Peer {
    match identity {
        PeerIdentity::Emse(id) => Peer::emse(id.clone()),
        PeerIdentity::Hss(name) => Peer::hss(name.as_str()),
        PeerIdentity::Emks(name) => Peer::Other(name.as_str().into()),
    }
}

/// Carries out a decision's side effects: audit records to `tracing`, and a wake-up of the
/// deliverer when the store recorded notifications (the notifications themselves are in
/// the store's outbox, not here: see [`crate::delivery`]).
#[derive(Debug)]
struct EffectRunner {
    wake: Arc<Notify>,
    observer: Option<Arc<dyn EmksObserver>>,
}

impl EffectRunner {
    fn run(&self, effects: Effects) {
        for record in &effects.audit {
            log_audit(record);
        }
        if effects.notifications_recorded {
            self.wake.notify_one();
        }
    }
}

/// Writes one audit record to `tracing` (target `e2m::audit`, message `audit`) with each
/// of its parts as a field of its own, so that a structured log format (JSON) carries them
/// as fields; a text format shows them as `key=value`. A record holds no key bytes and no
/// session id (it names a session by its non-secret reference); absent parts are left out.
fn log_audit(record: &e2m_emks::AuditRecord) {
    use tracing::field::display as shown;
    let (verdict, cause) = match record.verdict {
        e2m_emks::Verdict::Granted => ("granted", None),
        e2m_emks::Verdict::Refused(cause) => ("refused", Some(cause.as_str())),
        _ => ("other", None),
    };
    let ue = record.ue.as_ref().map(ShownUe);
    tracing::info!(
        target: "e2m::audit",
        time = record.time.as_unix_secs(),
        action = %record.action.as_str(),
        peer = record.peer.as_ref().map(shown),
        session = record.session.map(shown),
        ue = ue.map(shown),
        imsi = record.imsi.as_ref().map(shown),
        key_id = record.key_id.map(shown),
        subscription = record.subscription.map(shown),
        verdict = %verdict,
        cause = cause.map(shown),
        count = (record.count != 1).then_some(record.count),
        reason = (!record.reason.is_empty()).then_some(shown(record.reason)),
        "audit"
    );
}

/// A UE reference as the audit record's `ue` field shows it (`app:<identity>` or
/// `imsi:<IMSI>`), written only when a subscriber records the event: no string is built
/// per request.
struct ShownUe<'a>(&'a e2m_msg::UeRef);

impl std::fmt::Display for ShownUe<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            e2m_msg::UeRef::AppIdentity(app) => write!(f, "app:{app}"),
            e2m_msg::UeRef::Imsi(imsi) => write!(f, "imsi:{imsi}"),
        }
    }
}

/// The EMKS's request handler: routes, decodes, asks the core, answers, runs effects.
pub struct EmksService<K, M, S, B> {
    core: Arc<Emks<K, M, S, B>>,
    effects: EffectRunner,
}

impl<K, M, S, B> std::fmt::Debug for EmksService<K, M, S, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmksService").finish_non_exhaustive()
    }
}

impl<K, M, S, B> EmksService<K, M, S, B>
where
    K: IntKeyStore + NotificationOutbox + 'static,
    M: IdentityMap + 'static,
    S: SessionStore + 'static,
    B: SubscriptionStore + 'static,
{
    /// A service over `core`. Notifications are recorded by the store; a deliverer
    /// ([`start_emks`] starts one) sends them.
    pub fn new(core: Arc<Emks<K, M, S, B>>) -> Self {
        EmksService {
            core,
            effects: EffectRunner {
                wake: Arc::new(Notify::new()),
                observer: None,
            },
        }
    }

    /// This service, waking the deliverer through `wake` when it records notifications
    /// (the deliverer waits on the same handle).
    #[must_use]
    pub fn with_wake(mut self, wake: Arc<Notify>) -> Self {
        self.effects.wake = wake;
        self
    }

    /// The handle the service notifies when it records notifications.
    pub fn wake(&self) -> &Arc<Notify> {
        &self.effects.wake
    }

    /// This service, reporting its requests, refusals and notifications to `observer`.
    #[must_use]
    pub fn with_observer(mut self, observer: Arc<dyn EmksObserver>) -> Self {
        self.effects.observer = Some(observer);
        self
    }

    /// Tells the observer (if any) about an answer.
    fn observe(&self, operation: Option<Operation>, response: &HttpResponse, started: Instant) {
        let Some(observer) = &self.effects.observer else {
            return;
        };
        observer.request(operation, response.status().as_u16(), started.elapsed());
        if let Some(cause) = response.extensions().get::<ProblemCause>() {
            observer.refused(*cause);
        }
    }

    /// The core.
    pub fn core(&self) -> &Arc<Emks<K, M, S, B>> {
        &self.core
    }

    /// Runs the core's expiry sweep at `now` and carries out its effects.
    pub async fn expire(&self, now: Timestamp) {
        let mut effects = self.core.expire(now).await;
        // A sweep that removed nothing is not worth a log line every few seconds.
        effects.audit.retain(|record| record.count > 0);
        self.effects.run(effects);
    }

    fn finish<T>(&self, outcome: Outcome<T>, ok: impl FnOnce(T) -> HttpResponse) -> HttpResponse {
        let Outcome { result, effects } = outcome;
        self.effects.run(effects);
        match result {
            Ok(value) => ok(value),
            Err(problem) => respond::problem(&problem),
        }
    }

    /// Routes and answers `request`; returns its operation (if it matched one) as well.
    async fn dispatch(&self, request: &Request) -> (Option<Operation>, HttpResponse) {
        let peer = match &request.peer {
            // The hosts its certificate names: where its callbacks may go (issue 9 item 5).
            PeerIdentity::Emse(id) => Peer::emse_naming(id.clone(), request.peer_hosts.clone()),
            other => core_peer(other),
        };
        let now = Timestamp::now_from_system_clock();
        let target = request
            .uri
            .path_and_query()
            .map(|pq| pq.as_str())
            .unwrap_or("");
        let route = match Route::parse(request.method.as_str(), target) {
            Ok(route) => route,
            Err(error) => return (None, route_problem(error)),
        };
        let operation = route.operation();
        (
            Some(operation),
            self.answer(route, request, &peer, now).await,
        )
    }

    async fn answer(
        &self,
        route: Route,
        request: &Request,
        peer: &Peer,
        now: Timestamp,
    ) -> HttpResponse {
        let has_body = !request.body.is_empty();
        // Every operation but the key fetch runs boxed: a future is as large as its largest
        // state, and each `.await` copies it whole, so the rare large operations
        // (registration, subscriptions) would make every fetch copy their size (issue 20's
        // profile: 6 % of the server's CPU in those copies). A box costs one allocation on
        // those rarer paths.
        match route {
            Route::Register => match decode::<Registration>(request).await {
                Ok(registration) => self.finish(
                    Box::pin(self.core.register(peer, &registration, now)).await,
                    |result| {
                        let mut response = respond::message(201, &result, false);
                        set_location(&mut response, &rest::session_path(&result.session_id));
                        response
                    },
                ),
                Err(cause) => respond::cause(cause),
            },
            Route::FetchKey(key_request) if !has_body => self
                .finish(self.core.fetch_key(peer, &key_request, now).await, |key| {
                    respond::message(200, &key, true)
                }),
            Route::Deregister(deregistration) if !has_body => self.finish(
                Box::pin(self.core.deregister(peer, &deregistration, now)).await,
                |()| respond::empty(204),
            ),
            Route::Subscribe => match decode::<Subscription>(request).await {
                Ok(subscription) => self.finish(
                    Box::pin(self.core.subscribe(peer, &subscription, now)).await,
                    |result| {
                        let mut response = respond::message(201, &result, false);
                        set_location(
                            &mut response,
                            &rest::subscription_path(&result.subscription_id),
                        );
                        response
                    },
                ),
                Err(cause) => respond::cause(cause),
            },
            Route::Unsubscribe(id) if !has_body => self.finish(
                Box::pin(self.core.unsubscribe(peer, &id, now)).await,
                |()| respond::empty(204),
            ),
            Route::Notify => match decode::<Notification>(request).await {
                Ok(notification) => self.finish(
                    Box::pin(self.core.notify(peer, &notification, now)).await,
                    |()| respond::empty(204),
                ),
                Err(cause) => respond::cause(cause),
            },
            Route::PushIntermediateKey => match decode::<IntermediateKeyPush>(request).await {
                Ok(push) => self.finish(
                    Box::pin(self.core.push_intermediate_key(peer, &push, now)).await,
                    |()| respond::empty(204),
                ),
                Err(cause) => respond::cause(cause),
            },
            // GET and DELETE carry everything in the target: a body is a malformed request.
            Route::FetchKey(_) | Route::Deregister(_) | Route::Unsubscribe(_) => {
                respond::cause(ProblemCause::Malformed)
            }
            // A route a later e2m-msg adds that this server does not serve.
            _ => respond::cause(ProblemCause::NotFound),
        }
    }
}

fn set_location(response: &mut HttpResponse, path: &str) {
    if let Ok(value) = HeaderValue::from_str(path) {
        response.headers_mut().insert(header::LOCATION, value);
    }
}

fn route_problem(error: RouteError) -> HttpResponse {
    let mut response = respond::cause(error.cause());
    if let RouteError::MethodNotAllowed { allow } = error {
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
    }
    response
}

/// The largest body decoded on the worker that serves the connection (issue 16 item 1).
/// Every message the EMKS takes is far smaller (a registration with the longest EMSE_Id and
/// callback is about 1.5 KiB; a key push 0.3 KiB) and decodes in a few microseconds; a
/// body this size costs at most about 0.3 million instructions (the decoder is linear, at
/// most about 75 instructions per octet for an e2m message), some 0.1 ms.
const DECODE_ON_WORKER_MAX: usize = 4 * 1024;

/// Checks the media type and strictly decodes the body.
///
/// A body over [`DECODE_ON_WORKER_MAX`] (up to the 64 KiB limit, about 5 million
/// instructions at worst, 1–2 ms) is decoded on tokio's blocking pool, so that a peer
/// sending such bodies holds none of the shared worker threads that serve every other
/// connection; the hand-off (about 15–25 µs) is paid only by bodies no valid message needs.
async fn decode<M: XmlMessage + Send + 'static>(request: &Request) -> Result<M, ProblemCause> {
    if !respond::is_xml(&request.headers) {
        return Err(ProblemCause::UnsupportedMediaType);
    }
    let decoded = if request.body.len() <= DECODE_ON_WORKER_MAX {
        M::decode(&request.body)
    } else {
        let body = request.body.clone();
        match tokio::task::spawn_blocking(move || M::decode(&body)).await {
            Ok(decoded) => decoded,
            // The decoder does not panic (fuzzed); the runtime is shutting down.
            Err(_) => return Err(ProblemCause::Unavailable),
        }
    };
    decoded.map_err(|_| ProblemCause::Malformed)
}

impl<K, M, S, B> Handler for EmksService<K, M, S, B>
where
    K: IntKeyStore + NotificationOutbox + 'static,
    M: IdentityMap + 'static,
    S: SessionStore + 'static,
    B: SubscriptionStore + 'static,
{
    async fn handle(&self, request: Request) -> HttpResponse {
        let started = Instant::now();
        let (operation, response) = self.dispatch(&request).await;
        self.observe(operation, &response, started);
        response
    }

    fn reject(&self, rejection: Rejection) -> HttpResponse {
        let response = respond::rejection(rejection);
        self.observe(None, &response, Instant::now());
        response
    }

    fn handshake_failed(&self, failure: HandshakeFailure) {
        if let Some(observer) = &self.effects.observer {
            observer.handshake_failed(failure);
        }
    }
}

/// Why the EMKS server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmksStartError {
    /// Certificates could not be loaded.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// TLS configuration.
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
    /// Socket.
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
}

/// How the EMKS server runs.
#[derive(Clone, Debug)]
pub struct EmksServerOptions {
    /// Where to listen (`127.0.0.1:0` for an ephemeral port).
    pub listen: SocketAddr,
    /// Transport bounds (body cap, timeouts, rate limit, connections).
    pub limits: Limits,
    /// How often the core's expiry sweep runs.
    pub expire_every: Duration,
    /// Send notifications to subscribers (needs the EMKS certificate's `clientAuth`).
    /// Without it, notifications stay in the store's outbox (for another instance that
    /// delivers, or until their subscriptions end).
    pub notifications: bool,
    /// How notifications are claimed, paced and retried.
    pub delivery: DeliveryOptions,
    /// Wakes the deliverer when another party recorded notifications, e.g. the
    /// PostgreSQL backend's `LISTEN` handle for pushes taken by other instances (this
    /// instance's own pushes wake it anyway).
    pub outbox_wake: Option<Arc<Notify>>,
    /// This instance's name in the outbox's claims (random if `None`).
    pub instance: Option<InstanceId>,
    /// Who is told about requests, refusals and notifications (metrics; none by default).
    pub observer: Option<Arc<dyn EmksObserver>>,
}

impl Default for EmksServerOptions {
    fn default() -> Self {
        EmksServerOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            limits: Limits::default(),
            expire_every: Duration::from_secs(30),
            notifications: true,
            delivery: DeliveryOptions::default(),
            outbox_wake: None,
            instance: None,
            observer: None,
        }
    }
}

/// A running EMKS: its address, its core, and the way to stop it.
pub struct EmksServer<K, M, S, B> {
    handle: ServerHandle,
    service: Arc<EmksService<K, M, S, B>>,
    sweeper: JoinHandle<()>,
    deliverer: Option<JoinHandle<()>>,
}

impl<K, M, S, B> std::fmt::Debug for EmksServer<K, M, S, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmksServer")
            .field("addr", &self.handle.local_addr())
            .finish_non_exhaustive()
    }
}

impl<K, M, S, B> EmksServer<K, M, S, B>
where
    K: IntKeyStore + NotificationOutbox + 'static,
    M: IdentityMap + 'static,
    S: SessionStore + 'static,
    B: SubscriptionStore + 'static,
{
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.handle.local_addr()
    }

    /// The base URL for [`super::client::EmksClient::new`]: `https://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("https://{}", self.handle.local_addr())
    }

    /// The core (e.g. to provision the identity map).
    pub fn core(&self) -> &Arc<Emks<K, M, S, B>> {
        self.service.core()
    }

    /// Stops the server (graceful, bounded by the limits' shutdown grace). Deliveries in
    /// flight are abandoned: their outbox entries come due again when their lease runs out.
    pub async fn shutdown(self) {
        self.sweeper.abort();
        if let Some(deliverer) = &self.deliverer {
            deliverer.abort();
        }
        self.handle.shutdown().await;
    }
}

/// Starts the EMKS on `options.listen` with the EMKS credentials and CA of `pki`, over
/// `core`. Client certificates must chain to the CA and have the EMSE or HSS role.
///
/// # Errors
/// [`EmksStartError`] if certificates, TLS or the socket fail.
pub async fn start_emks<K, M, S, B>(
    core: Arc<Emks<K, M, S, B>>,
    pki: &PkiDir,
    options: EmksServerOptions,
) -> Result<EmksServer<K, M, S, B>, EmksStartError>
where
    K: IntKeyStore + NotificationOutbox + 'static,
    M: IdentityMap + 'static,
    S: SessionStore + 'static,
    B: SubscriptionStore + 'static,
{
    let credentials = pki.emks()?;
    let ca = pki.ca_certificates()?;
    let tls = server_config(&credentials, &ca, &[Role::Emse, Role::Hss])?;
    let wake = options
        .outbox_wake
        .clone()
        .unwrap_or_else(|| Arc::new(Notify::new()));
    let mut service = EmksService::new(Arc::clone(&core)).with_wake(Arc::clone(&wake));
    if let Some(observer) = options.observer.clone() {
        service = service.with_observer(observer);
    }
    let service = Arc::new(service);
    let deliverer = if options.notifications {
        let notifier = Arc::new(Notifier::new(credentials, ca, ClientOptions::default()));
        let instance = match options.instance {
            Some(instance) => instance,
            None => InstanceId::random().map_err(|_| {
                EmksStartError::Io(std::io::Error::other("random generator unavailable"))
            })?,
        };
        let deliverer = Arc::new(Deliverer::new(
            core,
            notifier,
            instance,
            options.delivery.clone(),
            wake,
            options.observer.clone(),
        ));
        Some(tokio::spawn(deliverer.run()))
    } else {
        None
    };
    let listener = TcpListener::bind(options.listen).await?;
    let handle = serve(listener, tls, options.limits, service.clone())?;
    let sweeper = {
        let service = service.clone();
        let every = options.expire_every.max(Duration::from_secs(1));
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                service.expire(Timestamp::now_from_system_clock()).await;
            }
        })
    };
    tracing::info!(addr = %handle.local_addr(), "EMKS listening (HTTPS, mutual TLS)");
    Ok(EmksServer {
        handle,
        service,
        sweeper,
        deliverer,
    })
}
