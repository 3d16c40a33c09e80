//! The EMKS over HTTPS: the REST binding of `e2m-msg` served by the hardened stack of
//! [`super::server`], every decision taken by the sans-IO core `e2m-emks`.
//!
//! For each request: the route from [`e2m_msg::Route::parse`] (method + target, strict);
//! the body decoded strictly (XML, `application/xml`); the core called with the peer from the
//! **verified certificate** (never from the request) and `now`; the answer built as the
//! binding says (201 + `Location`, 200 + `Cache-Control: no-store`, 204, or a problem); and
//! the side effects carried out: audit records written to `tracing` (target `e2m::audit`,
//! their `Display` form, which holds no key bytes and no session ids — the core guarantees
//! it and the tests check it), notifications POSTed to the subscribers' callbacks.
//!
//! The core's decisions are `async fn`s over the async store traits, awaited inline on the
//! worker: over the in-memory stores they are ready at once (a hash lookup and one
//! HMAC-SHA-256 for a key fetch, around a microsecond), and a networked store awaits its
//! I/O without blocking the worker.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2m_emks::{Action, Effects, Emks, OutboundNotification, Outcome, Peer, Timestamp, Verdict};
use e2m_keyid::EmseId;
use e2m_keystore::{IdentityMap, IntKeyStore, SessionRef, SessionStore, SubscriptionStore};
use e2m_msg::rest::{self, Operation, Route, RouteError};
use e2m_msg::{
    IntermediateKeyPush, Notification, ProblemCause, Registration, Subscription, XmlMessage,
};
use hyper::header::{self, HeaderValue};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::client::{ClientOptions, Notifier};
use super::metrics::{EmksObserver, NotificationEvent};
use super::respond;
use super::server::{Handler, HttpResponse, Limits, Rejection, Request, ServerHandle, serve};
use super::tls::{TlsSetupError, server_config};
use crate::pki::{PeerIdentity, PkiDir, PkiError, Role};

/// Notification deliveries in flight at once; beyond it, new ones are dropped (and
/// logged): notifications are advisory, a key fetch always tells the truth.
pub const MAX_DELIVERIES_IN_FLIGHT: usize = 256;

/// The core's view of a verified certificate identity.
pub fn core_peer(identity: &PeerIdentity) -> Peer {
    match identity {
        PeerIdentity::Emse(id) => Peer::emse(id.clone()),
        PeerIdentity::Hss(name) => Peer::hss(name.as_str()),
        PeerIdentity::Emks(name) => Peer::Other(name.as_str().into()),
    }
}

/// Which EMSE owns each session, learnt from the core's audit records (registrations and
/// session ends), so that a notification for a session is sent only to a server whose
/// certificate names that EMSE.
#[derive(Debug, Default)]
struct SessionOwners(Mutex<HashMap<SessionRef, EmseId>>);

impl SessionOwners {
    fn learn(&self, effects: &Effects) {
        let mut owners = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for record in &effects.audit {
            let (Some(session), Verdict::Granted) = (record.session, record.verdict) else {
                continue;
            };
            match (record.action, &record.peer) {
                (Action::Register | Action::Subscribe, Some(Peer::Emse(emse))) => {
                    owners.insert(session, EmseId::clone(emse));
                }
                (Action::Deregister | Action::SessionExpired, _) => {
                    owners.remove(&session);
                }
                _ => {}
            }
        }
    }

    fn owner(&self, session: SessionRef) -> Option<EmseId> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&session)
            .cloned()
    }
}

/// Carries out a decision's side effects: audit records to `tracing`, notifications to
/// their callbacks (in background tasks, bounded).
#[derive(Debug)]
struct EffectRunner {
    notifier: Option<Arc<Notifier>>,
    owners: SessionOwners,
    deliveries: Arc<Semaphore>,
    observer: Option<Arc<dyn EmksObserver>>,
}

impl EffectRunner {
    fn run(&self, effects: Effects) {
        self.owners.learn(&effects);
        for record in &effects.audit {
            // The record's Display form holds no key bytes and no session ids (it names a
            // session by its non-secret reference).
            tracing::info!(target: "e2m::audit", "{record}");
        }
        for outbound in effects.notifications {
            self.deliver(outbound);
        }
    }

    fn observe(&self, event: NotificationEvent) {
        if let Some(observer) = &self.observer {
            observer.notification(event);
        }
    }

    fn deliver(&self, outbound: OutboundNotification) {
        let Some(notifier) = self.notifier.clone() else {
            return;
        };
        let Some(emse) = self.owners.owner(outbound.session) else {
            tracing::warn!(session = %outbound.session, "notification for a session with no known owner dropped");
            self.observe(NotificationEvent::Dropped);
            return;
        };
        let Ok(permit) = self.deliveries.clone().try_acquire_owned() else {
            tracing::warn!(%emse, "too many notifications in flight; one dropped");
            self.observe(NotificationEvent::Dropped);
            return;
        };
        self.observe(NotificationEvent::Started);
        let observer = self.observer.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let event = outbound.notification.event;
            let delivered = match notifier
                .notify(&emse, &outbound.callback, &outbound.notification)
                .await
            {
                Ok(()) => {
                    tracing::debug!(%emse, %event, "notification delivered");
                    NotificationEvent::Delivered
                }
                Err(error) => {
                    tracing::warn!(%emse, %event, %error, "notification not delivered");
                    NotificationEvent::Failed
                }
            };
            if let Some(observer) = observer {
                observer.notification(delivered);
            }
        });
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
    K: IntKeyStore + 'static,
    M: IdentityMap + 'static,
    S: SessionStore + 'static,
    B: SubscriptionStore + 'static,
{
    /// A service over `core`; notifications go out through `notifier` (none: not sent).
    pub fn new(core: Arc<Emks<K, M, S, B>>, notifier: Option<Arc<Notifier>>) -> Self {
        EmksService {
            core,
            effects: EffectRunner {
                notifier,
                owners: SessionOwners::default(),
                deliveries: Arc::new(Semaphore::new(MAX_DELIVERIES_IN_FLIGHT)),
                observer: None,
            },
        }
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
        match route {
            Route::Register => match decode::<Registration>(request) {
                Ok(registration) => self.finish(
                    self.core.register(peer, &registration, now).await,
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
                self.core.deregister(peer, &deregistration, now).await,
                |()| respond::empty(204),
            ),
            Route::Subscribe => match decode::<Subscription>(request) {
                Ok(subscription) => self.finish(
                    self.core.subscribe(peer, &subscription, now).await,
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
            Route::Unsubscribe(id) if !has_body => self
                .finish(self.core.unsubscribe(peer, &id, now).await, |()| {
                    respond::empty(204)
                }),
            Route::Notify => match decode::<Notification>(request) {
                Ok(notification) => self
                    .finish(self.core.notify(peer, &notification, now).await, |()| {
                        respond::empty(204)
                    }),
                Err(cause) => respond::cause(cause),
            },
            Route::PushIntermediateKey => match decode::<IntermediateKeyPush>(request) {
                Ok(push) => self.finish(
                    self.core.push_intermediate_key(peer, &push, now).await,
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

/// Checks the media type and strictly decodes the body.
fn decode<M: XmlMessage>(request: &Request) -> Result<M, ProblemCause> {
    if !respond::is_xml(&request.headers) {
        return Err(ProblemCause::UnsupportedMediaType);
    }
    M::decode(&request.body).map_err(|_| ProblemCause::Malformed)
}

impl<K, M, S, B> Handler for EmksService<K, M, S, B>
where
    K: IntKeyStore + 'static,
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
    pub notifications: bool,
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
            observer: None,
        }
    }
}

/// A running EMKS: its address, its core, and the way to stop it.
pub struct EmksServer<K, M, S, B> {
    handle: ServerHandle,
    service: Arc<EmksService<K, M, S, B>>,
    sweeper: JoinHandle<()>,
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
    K: IntKeyStore + 'static,
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

    /// Stops the server (graceful, bounded by the limits' shutdown grace).
    pub async fn shutdown(self) {
        self.sweeper.abort();
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
    K: IntKeyStore + 'static,
    M: IdentityMap + 'static,
    S: SessionStore + 'static,
    B: SubscriptionStore + 'static,
{
    let credentials = pki.emks()?;
    let ca = pki.ca_certificates()?;
    let tls = server_config(&credentials, &ca, &[Role::Emse, Role::Hss])?;
    let notifier = options
        .notifications
        .then(|| Arc::new(Notifier::new(credentials, ca, ClientOptions::default())));
    let mut service = EmksService::new(core, notifier);
    if let Some(observer) = options.observer {
        service = service.with_observer(observer);
    }
    let service = Arc::new(service);
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
    })
}
