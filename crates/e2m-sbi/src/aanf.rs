//! The AAnF on the SBI ([`start_aanf`]): Naanf_AKMA (TS 29.535) and, where configured, the
//! NEF's AKMA API (TS 29.522) over the [`crate::server`] stack, around the sans-IO core
//! `e2m_aanf::Aanf`; the deliverer of its notifications ([`crate::delivery`]); and the
//! periodic expiry of contexts.
//!
//! Per request: the route (`e2m_akma::Operation::from_path`; anything else 404
//! `RESOURCE_URI_STRUCTURE_NOT_FOUND`), POST only (405), `application/json` only (415),
//! the caller (the peer's verified names, and where a [`TokenPolicy`] is configured the
//! bearer token's scopes; a token that fails any check: 401 `invalid_token`), the body
//! (`JsonBody::from_json`; a refusal is `Aanf::undecodable`'s problem), the core's
//! decision, its answer (`Cache-Control: no-store` on bodies with K_AKMA or K_AF) and its
//! audit record (target `e2m::audit`, never a key or a token).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use e2m_aanf::{Aanf, Caller, Outcome, Problem};
use e2m_akma::{
    AkmaAfKeyRequest, AkmaKeyInfo, CtxRemove, JsonBody, Operation, ProblemDetails, cause,
};
use e2m_https::delivery::DeliveryOptions;
use e2m_keystore::{AkmaContexts, AkmaOutbox, InstanceId};
use e2m_types::Timestamp;
use hyper::Method;
use hyper::header::{self, HeaderValue};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::client::Notifier;
use crate::delivery::{Deliverer, DeliveryObserver};
use crate::respond::{self, MEDIA_TYPE_JSON};
use crate::server::{self, Handler, HttpResponse, Limits, SbiRequest, ServerHandle, Transport};
use crate::token::TokenPolicy;

/// How [`start_aanf`] serves.
pub struct AanfServerOptions {
    /// Where to listen (port 0 picks one).
    pub listen: SocketAddr,
    /// TLS with mutual certificates, or h2c.
    pub transport: Transport,
    /// The bounds of the server stack.
    pub limits: Limits,
    /// How to validate OAuth2 access tokens; `None`: mutual TLS alone (a token sent then
    /// is ignored). The core's `AanfConfig::require_tokens` says whether one is required.
    pub tokens: Option<TokenPolicy>,
    /// Serve the NEF's AKMA API (`/3gpp-akma/v1/retrieve`) too.
    pub nef_api: bool,
    /// How the deliverer reaches the AFs' `notifUri`s.
    pub notifier: Notifier,
    /// How the deliverer claims, paces and retries.
    pub delivery: DeliveryOptions,
    /// This instance's name among those sharing a store (random if `None`).
    pub instance: Option<InstanceId>,
    /// Woken by the store when another instance recorded notifications (PostgreSQL's
    /// `PgBackend::outbox_wakeups`).
    pub outbox_wake: Option<Arc<Notify>>,
    /// How often expired contexts are removed from the store.
    pub expire_every: Duration,
    /// Sees each notification delivery's outcome.
    pub delivery_observer: Option<Arc<dyn DeliveryObserver>>,
    /// Sees each request the AAnF's routes answered.
    pub observer: Option<Arc<dyn AanfObserver>>,
}

/// Sees each request the AAnF's routes answered (metrics). Refusals of the server stack
/// itself, before a route runs (rate limit 429, body limits 413 and 408, header list 431,
/// HTTP/1.1 505), are not seen here.
pub trait AanfObserver: Send + Sync {
    /// A request was answered with `status`. `operation` is `None` when its path names no
    /// operation served here (404); `cause` is the TS 29.500 cause of a refusal's problem
    /// document, where it carried one.
    fn answered(&self, operation: Option<Operation>, status: u16, cause: Option<&'static str>);
}

impl AanfServerOptions {
    /// Options for `transport` on 127.0.0.1, port 0, with `notifier`; everything else at
    /// its default (no tokens, no NEF API, expiry every minute).
    pub fn new(transport: Transport, notifier: Notifier) -> AanfServerOptions {
        AanfServerOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            transport,
            limits: Limits::default(),
            tokens: None,
            nef_api: false,
            notifier,
            delivery: DeliveryOptions::default(),
            instance: None,
            outbox_wake: None,
            expire_every: Duration::from_secs(60),
            delivery_observer: None,
            observer: None,
        }
    }
}

/// A running AAnF: its server, its deliverer and its expiry task.
#[derive(Debug)]
pub struct AanfServer {
    server: ServerHandle,
    tasks: Vec<JoinHandle<()>>,
    tls: bool,
}

impl AanfServer {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// `https://ADDR` (TLS) or `http://ADDR` (h2c).
    pub fn base_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.local_addr())
    }

    /// Stops the deliverer and the expiry task, then the server (streams in progress
    /// finish within the grace).
    pub async fn shutdown(self) {
        for task in &self.tasks {
            task.abort();
        }
        self.server.shutdown().await;
    }
}

/// Starts the AAnF over `core` with `options` on the current tokio runtime.
///
/// # Errors
/// The listener cannot be bound, or an instance id cannot be drawn.
pub async fn start_aanf<C>(
    core: Arc<Aanf<C>>,
    options: AanfServerOptions,
) -> std::io::Result<AanfServer>
where
    C: AkmaContexts + AkmaOutbox + 'static,
{
    let listener = TcpListener::bind(options.listen).await?;
    let wake = options.outbox_wake.unwrap_or_default();
    let instance = match options.instance {
        Some(instance) => instance,
        None => InstanceId::random().map_err(std::io::Error::other)?,
    };
    let tls = matches!(options.transport, Transport::Tls(_));
    let handler = Arc::new(AanfHandler {
        core: core.clone(),
        tokens: options.tokens,
        nef_api: options.nef_api,
        wake: wake.clone(),
        observer: options.observer,
    });
    let server = server::serve(listener, options.transport, options.limits, handler)?;
    let deliverer = Arc::new(Deliverer::new(
        core.clone(),
        Arc::new(options.notifier),
        instance,
        options.delivery,
        wake,
        options.delivery_observer,
    ));
    let delivering = tokio::spawn(deliverer.run());
    let every = options.expire_every.max(Duration::from_secs(1));
    let expiring = tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let effects = core.expire(Timestamp::now_from_system_clock()).await;
            if effects.audit.count > 0 || !effects.audit.reason.is_empty() {
                tracing::info!(target: "e2m::audit", "{}", effects.audit);
            }
        }
    });
    Ok(AanfServer {
        server,
        tasks: vec![delivering, expiring],
        tls,
    })
}

/// The Naanf_AKMA (and NEF AKMA) routes.
struct AanfHandler<C> {
    core: Arc<Aanf<C>>,
    tokens: Option<TokenPolicy>,
    nef_api: bool,
    wake: Arc<Notify>,
    observer: Option<Arc<dyn AanfObserver>>,
}

fn problem_response(problem: &Problem) -> HttpResponse {
    let mut response = respond::problem(&problem.details());
    if problem.status == 401 {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

/// Whether the request's `Content-Type` is `application/json` (parameters allowed).
fn is_json(headers: &hyper::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(MEDIA_TYPE_JSON))
}

impl<C: AkmaContexts + AkmaOutbox + 'static> AanfHandler<C> {
    /// The caller: the peer, with the token's scopes where tokens are validated and one
    /// was sent; an answer instead where the token fails a check.
    fn caller(&self, request: &SbiRequest, now: Timestamp) -> Result<Caller, Box<HttpResponse>> {
        let peer = request.peer.peer.clone();
        let Some(policy) = &self.tokens else {
            return Ok(Caller::mutual_tls(peer));
        };
        let Some(value) = request.headers.get(header::AUTHORIZATION) else {
            // The core answers 401 if tokens are required.
            return Ok(Caller::mutual_tls(peer));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.get(..7)
                    .filter(|p| p.eq_ignore_ascii_case("bearer "))
                    .map(|_| v[7..].trim())
            })
            .unwrap_or("");
        match policy.validate(token, request.peer.nf_instance.as_deref(), now) {
            Ok(valid) => Ok(Caller::with_token(peer, valid.scopes)),
            Err(error) => {
                tracing::info!(target: "e2m::audit", peer = %request.peer.peer, %error, "access token refused");
                let mut details = ProblemDetails::new(401, None);
                details.title = Some("Unauthorized".into());
                details.detail = Some("invalid access token".into());
                let mut response = respond::problem(&details);
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                );
                Err(Box::new(response))
            }
        }
    }

    /// Tells the observer, if any, how a request was answered.
    fn observe(&self, op: Option<Operation>, response: &HttpResponse, cause: Option<&'static str>) {
        if let Some(observer) = &self.observer {
            observer.answered(op, response.status().as_u16(), cause);
        }
    }

    /// Writes the audit record, wakes the deliverer if needed, tells the observer, and
    /// answers.
    fn finish<T>(
        &self,
        op: Operation,
        outcome: Outcome<T>,
        answer: impl FnOnce(T) -> HttpResponse,
    ) -> HttpResponse {
        tracing::info!(target: "e2m::audit", "{}", outcome.effects.audit);
        if outcome.effects.notifications_recorded {
            self.wake.notify_one();
        }
        let (response, cause) = match outcome.result {
            Ok(value) => (answer(value), None),
            Err(problem) => (problem_response(&problem), problem.cause),
        };
        self.observe(Some(op), &response, cause);
        response
    }

    async fn serve(
        &self,
        op: Operation,
        request: &SbiRequest,
        caller: &Caller,
        now: Timestamp,
    ) -> HttpResponse {
        let body = &request.body[..];
        let core = &self.core;
        // The decode error's problem, with its audit record.
        macro_rules! decode {
            ($t:ty) => {
                match <$t>::from_json(body) {
                    Ok(value) => value,
                    Err(error) => {
                        return self.finish(op, core.undecodable(caller, op, &error, now), |()| {
                            respond::empty(204)
                        });
                    }
                }
            };
        }
        match op {
            Operation::RegisterAnchorKey => {
                let info = decode!(AkmaKeyInfo);
                let outcome = core.register_anchor_key(caller, &info, now).await;
                self.finish(op, outcome, |stored| {
                    respond::json(op.success_status(), stored.to_json(), true)
                })
            }
            Operation::RetrieveApplicationKey => {
                let req = decode!(AkmaAfKeyRequest);
                let outcome = core.retrieve_application_key(caller, &req, now).await;
                self.finish(op, outcome, |data| match data {
                    Some(data) => respond::json(op.success_status(), data.to_json(), true),
                    None => respond::empty(204),
                })
            }
            Operation::RemoveContext => {
                let req = decode!(CtxRemove);
                let outcome = core.remove_context(caller, &req, now).await;
                self.finish(op, outcome, |()| respond::empty(op.success_status()))
            }
            Operation::NefRetrieve => {
                let req = decode!(AkmaAfKeyRequest);
                let outcome = core.nef_retrieve(caller, &req, now).await;
                self.finish(op, outcome, |data| match data {
                    Some(data) => respond::json(op.success_status(), data.to_json(), true),
                    None => respond::empty(204),
                })
            }
            _ => {
                let not_found = Some(cause::RESOURCE_URI_STRUCTURE_NOT_FOUND);
                let response = respond::problem_with(404, "Not Found", not_found);
                self.observe(None, &response, not_found);
                response
            }
        }
    }
}

impl<C: AkmaContexts + AkmaOutbox + 'static> Handler for AanfHandler<C> {
    async fn handle(&self, request: SbiRequest) -> HttpResponse {
        let op = Operation::from_path(request.uri.path())
            .filter(|op| self.nef_api || *op != Operation::NefRetrieve);
        let Some(op) = op else {
            let not_found = Some(cause::RESOURCE_URI_STRUCTURE_NOT_FOUND);
            let response = respond::problem_with(404, "Not Found", not_found);
            self.observe(None, &response, not_found);
            return response;
        };
        if request.method != Method::POST {
            let mut response = respond::problem_with(405, "Method Not Allowed", None);
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            self.observe(Some(op), &response, None);
            return response;
        }
        if !is_json(&request.headers) {
            let response = respond::problem_with(415, "Unsupported Media Type", None);
            self.observe(Some(op), &response, None);
            return response;
        }
        let now = Timestamp::now_from_system_clock();
        let caller = match self.caller(&request, now) {
            Ok(caller) => caller,
            Err(response) => {
                self.observe(Some(op), &response, None);
                return *response;
            }
        };
        self.serve(op, &request, &caller, now).await
    }
}
