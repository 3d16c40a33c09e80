//! The `emks` example's operations endpoint: `/healthz`, `/readyz` and `/metrics`
//! (Prometheus / OpenMetrics text) on a separate plain-HTTP listener.
//!
//! Metrics come from `e2m_https::metrics::EmksObserver` events, kept in `prometheus-client`
//! types (the Prometheus project's own Rust client: typed label sets, an explicit registry
//! instead of a global recorder, and a small dependency tree — `dtoa`, `itoa`,
//! `parking_lot`; `metrics-exporter-prometheus` would bring its own HTTP listener and, by
//! default, a push-gateway client with a second TLS stack). Gauges of state (keys held,
//! sessions) are read from the stores when `/metrics` is scraped; with the shared
//! PostgreSQL store they are left out (see `Operations::refresh`).
//!
//! With `--aanf-listen`, the AAnF's counters join them under `e2m_emks_aanf_`: requests by
//! operation and status, refusals by status and TS 29.500 cause, and service-disablement
//! notification deliveries by outcome (`AanfMetrics`, fed by e2m-sbi's `AanfObserver` and
//! `DeliveryObserver`).
//!
//! The listener is plain HTTP without authentication: it exposes counts, never keys,
//! identities or session ids, but bind it to loopback or a management network only.
//!
//! It is as strict as the API port (issue 16), with its own small HTTP/1.1 reader over
//! `httparse` (the parser hyper uses): e2m-https's request-head checks are internal to that
//! crate, and this endpoint needs far less (GET and HEAD, no bodies). HTTP/1.1 only (505
//! otherwise); the target in origin form, RFC 3986 characters only, no fragment (400:
//! absolute, authority and asterisk forms are refused); exactly one `Host` (400); no body
//! (400, or 405 for another method, and the connection is closed); a head of at most
//! 8 KiB and 32 header lines (431). Errors are RFC 9457 problem documents
//! (`application/problem+json`); `/healthz` and `/readyz` answer short text.
//!
//! Readiness (`/readyz`) is the EMKS serving (not starting, not draining at a stop) and, with
//! a durable store, the store writing: a task asks the store for a test commit every second
//! (`RedbStore::check_writable`, `PgBackend::check_writable`; 2 s at most) and `/readyz`
//! answers from its latest result, so a probe never waits for the store and never causes a
//! write of its own.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use e2m_https::e2m_msg::ProblemCause;
use e2m_https::e2m_msg::rest::Operation;
use e2m_https::metrics::{EmksObserver, HandshakeFailure, NotificationEvent, operation_label};
use e2m_sbi::aanf::AanfObserver;
use e2m_sbi::delivery::{DeliveryEvent, DeliveryObserver};
use e2m_sbi::e2m_akma::Operation as AanfOperation;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

/// The OpenMetrics text format's media type (what `prometheus_client::encoding::text` writes).
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Connections the operations listener serves at once (scrapers and probes are few).
const MAX_CONNECTIONS: usize = 32;

/// The longest request head (request line and header lines) read.
const MAX_HEAD: usize = 8 * 1024;

/// Header lines a request may have.
const MAX_HEADERS: usize = 32;

/// Time allowed for a request head once its first octet arrived.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// How long an idle kept-alive connection is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// How often the store is asked whether it can write, and how long one answer may take.
const PROBE_EVERY: Duration = Duration::from_secs(1);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    operation: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabels {
    cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DiameterLabels {
    result_code: u32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AanfRefusalLabels {
    status: u16,
    cause: &'static str,
}

/// The AAnF's counters (under `e2m_emks_aanf_`), when `--aanf-listen` serves it.
#[derive(Debug, Default)]
pub(crate) struct AanfMetrics {
    /// `e2m_emks_aanf_requests_total{operation,status}`: answers of the AAnF's routes.
    requests: Family<RequestLabels, Counter>,
    /// `e2m_emks_aanf_refusals_total{status,cause}`: answers with a problem document, by
    /// status and TS 29.500 cause (`none` where the document carries none, e.g. a 403).
    refusals: Family<AanfRefusalLabels, Counter>,
    /// `e2m_emks_aanf_notifications_total{outcome}`: service-disablement notification
    /// deliveries (delivered, failed and retried later, dropped).
    notifications: Family<OutcomeLabels, Counter>,
}

/// A short, stable label for an AAnF operation (`None`: `unrouted`).
fn aanf_operation_label(operation: Option<AanfOperation>) -> &'static str {
    match operation {
        Some(AanfOperation::RegisterAnchorKey) => "register-anchorkey",
        Some(AanfOperation::RetrieveApplicationKey) => "retrieve-applicationkey",
        Some(AanfOperation::RemoveContext) => "remove-context",
        Some(AanfOperation::NefRetrieve) => "nef-retrieve",
        Some(_) => "other",
        None => "unrouted",
    }
}

fn delivery_label(event: DeliveryEvent) -> &'static str {
    match event {
        DeliveryEvent::Delivered => "delivered",
        DeliveryEvent::Failed => "failed",
        DeliveryEvent::Dropped => "dropped",
        _ => "other",
    }
}

impl AanfMetrics {
    fn register(&self, registry: &mut Registry) {
        for event in [
            DeliveryEvent::Delivered,
            DeliveryEvent::Failed,
            DeliveryEvent::Dropped,
        ] {
            let _ = self.notifications.get_or_create(&OutcomeLabels {
                outcome: delivery_label(event),
            });
        }
        let aanf = registry.sub_registry_with_prefix("aanf");
        aanf.register(
            "requests",
            "AAnF requests answered, by operation and HTTP status",
            self.requests.clone(),
        );
        aanf.register(
            "refusals",
            "AAnF requests refused with a problem document, by status and TS 29.500 cause",
            self.refusals.clone(),
        );
        aanf.register(
            "notifications",
            "AKMA service-disablement notification deliveries, by outcome",
            self.notifications.clone(),
        );
    }
}

impl AanfObserver for AanfMetrics {
    fn answered(&self, operation: Option<AanfOperation>, status: u16, cause: Option<&'static str>) {
        self.requests
            .get_or_create(&RequestLabels {
                operation: aanf_operation_label(operation),
                status,
            })
            .inc();
        if status >= 400 {
            self.refusals
                .get_or_create(&AanfRefusalLabels {
                    status,
                    cause: cause.unwrap_or("none"),
                })
                .inc();
        }
    }
}

impl DeliveryObserver for AanfMetrics {
    fn delivery(&self, event: DeliveryEvent) {
        self.notifications
            .get_or_create(&OutcomeLabels {
                outcome: delivery_label(event),
            })
            .inc();
    }
}

/// The EMKS's metrics (all under the `e2m_emks_` prefix).
#[derive(Debug, Default)]
pub(crate) struct EmksMetrics {
    /// `e2m_emks_requests_total{operation,status}`.
    requests: Family<RequestLabels, Counter>,
    /// `e2m_emks_refusals_total{cause}`: answers with a problem document, by its cause.
    refusals: Family<CauseLabels, Counter>,
    /// `e2m_emks_fetch_duration_seconds`: key fetches, from complete request to answer.
    fetch_seconds: FetchHistogram,
    /// `e2m_emks_keys_held`: intermediate keys in the store (expired ones until swept).
    pub(crate) keys_held: Gauge,
    /// `e2m_emks_sessions`: EMSE sessions in the store.
    pub(crate) sessions: Gauge,
    /// `e2m_emks_notifications_pending`: deliveries started and not yet finished.
    notifications_pending: Gauge,
    /// `e2m_emks_notifications_total{outcome}`: delivered, failed, dropped.
    notifications: Family<OutcomeLabels, Counter>,
    /// `e2m_emks_store_writable`: 1 while the store's last test commit succeeded, 0 while
    /// it cannot write (durable stores only).
    store_writable: Gauge,
    /// `e2m_emks_tls_handshake_failures_total{reason}`: connections that ended before
    /// their TLS handshake completed, by reason class (`HandshakeFailure::as_str`).
    handshake_failures: Family<ReasonLabels, Counter>,
    /// `e2m_emks_diameter_pushes_total{result_code}`: pushes over Diameter, by the
    /// Result-Code (or Experimental-Result-Code) answered; refusals are also counted in
    /// `e2m_emks_refusals_total{cause}` with the HTTPS push's cause.
    diameter_pushes: Family<DiameterLabels, Counter>,
    /// The AAnF's counters (registered only where the AAnF is served).
    pub(crate) aanf: Arc<AanfMetrics>,
}

/// The fetch latency histogram: 25 µs to about 0.4 s in factors of 2.
#[derive(Debug)]
struct FetchHistogram(Histogram);

impl Default for FetchHistogram {
    fn default() -> Self {
        FetchHistogram(Histogram::new(exponential_buckets(25e-6, 2.0, 15)))
    }
}

impl EmksMetrics {
    /// Metrics with every refusal cause and notification outcome at zero, so that a
    /// dashboard's rate() has a start point and an alert can name a series that never moved.
    pub(crate) fn new() -> Self {
        let metrics = EmksMetrics::default();
        for cause in ProblemCause::ALL {
            let _ = metrics.refusals.get_or_create(&CauseLabels {
                cause: cause.as_str(),
            });
        }
        for outcome in [
            NotificationEvent::Delivered,
            NotificationEvent::Failed,
            NotificationEvent::Dropped,
        ] {
            let _ = metrics.notifications.get_or_create(&OutcomeLabels {
                outcome: outcome.as_str(),
            });
        }
        for failure in HandshakeFailure::ALL {
            let _ = metrics.handshake_failures.get_or_create(&ReasonLabels {
                reason: failure.as_str(),
            });
        }
        metrics
    }

    /// The registry that `/metrics` encodes; `store_gauges` adds the gauges read from the
    /// store at each scrape, `store_probe` the store's writability, `aanf` the AAnF's
    /// counters.
    pub(crate) fn registry(
        self: &Arc<Self>,
        store_gauges: bool,
        store_probe: bool,
        aanf: bool,
    ) -> Registry {
        let mut registry = Registry::with_prefix("e2m_emks");
        registry.register(
            "requests",
            "Requests answered, by operation and HTTP status",
            self.requests.clone(),
        );
        registry.register(
            "refusals",
            "Requests refused with a problem document, by cause",
            self.refusals.clone(),
        );
        registry.register(
            "fetch_duration_seconds",
            "Key fetch handling time, from the complete request to the answer",
            self.fetch_seconds.0.clone(),
        );
        if store_gauges {
            registry.register(
                "keys_held",
                "Intermediate keys held (expired keys count until the sweep)",
                self.keys_held.clone(),
            );
            registry.register("sessions", "EMSE sessions held", self.sessions.clone());
        }
        registry.register(
            "notifications_pending",
            "Notification deliveries in flight",
            self.notifications_pending.clone(),
        );
        registry.register(
            "notifications",
            "Notification deliveries, by outcome",
            self.notifications.clone(),
        );
        if store_probe {
            registry.register(
                "store_writable",
                "1 while the store's last test commit (each second) succeeded, 0 while it cannot write",
                self.store_writable.clone(),
            );
        }
        registry.register(
            "tls_handshake_failures",
            "Connections that ended before their TLS handshake completed, by reason",
            self.handshake_failures.clone(),
        );
        registry.register(
            "diameter_pushes",
            "Key pushes answered over Diameter, by Result-Code",
            self.diameter_pushes.clone(),
        );
        if aanf {
            self.aanf.register(&mut registry);
        }
        registry
    }
}

impl EmksObserver for EmksMetrics {
    fn request(&self, operation: Option<Operation>, status: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                operation: operation_label(operation),
                status,
            })
            .inc();
        if operation == Some(Operation::FetchKey) {
            self.fetch_seconds.0.observe(elapsed.as_secs_f64());
        }
    }

    fn refused(&self, cause: ProblemCause) {
        self.refusals
            .get_or_create(&CauseLabels {
                cause: cause.as_str(),
            })
            .inc();
    }

    fn diameter_push(&self, result_code: u32, _elapsed: Duration) {
        self.diameter_pushes
            .get_or_create(&DiameterLabels { result_code })
            .inc();
    }

    fn notification(&self, event: NotificationEvent) {
        match event {
            NotificationEvent::Started => {
                self.notifications_pending.inc();
                return;
            }
            NotificationEvent::Delivered | NotificationEvent::Failed => {
                self.notifications_pending.dec();
            }
            _ => {}
        }
        self.notifications
            .get_or_create(&OutcomeLabels {
                outcome: event.as_str(),
            })
            .inc();
    }

    fn handshake_failed(&self, failure: HandshakeFailure) {
        self.handshake_failures
            .get_or_create(&ReasonLabels {
                reason: failure.as_str(),
            })
            .inc();
    }
}

/// Reads the state gauges from the stores into the metrics (before each scrape).
pub(crate) type Refresh = Box<dyn Fn(&EmksMetrics) + Send + Sync>;

/// A future of the store's answer to "can you write now?" (`Err` says why, for the log).
pub(crate) type ProbeFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// Asks the store for a test commit (see the module docs).
pub(crate) type StoreProbe = Box<dyn Fn() -> ProbeFuture + Send + Sync>;

/// What the operations endpoint serves.
pub(crate) struct Operations {
    /// The metrics.
    pub(crate) metrics: Arc<EmksMetrics>,
    /// Whether the EMKS accepts requests (false before it listens and from the moment a
    /// stop begins, while it drains).
    pub(crate) ready: Arc<AtomicBool>,
    /// Reads the state gauges from the stores before each scrape. `None` (the shared
    /// PostgreSQL store) leaves the gauges out: every instance would count the same shared
    /// tables at every scrape, load on the database for a figure PostgreSQL's own
    /// statistics (`pg_stat_user_tables`) already give; a gauge that always read 0 would lie.
    pub(crate) refresh: Option<Refresh>,
    /// Asks a durable store whether it can write; `None` (in memory): always.
    pub(crate) store_probe: Option<StoreProbe>,
    /// Whether the AAnF is served (its counters are then exposed).
    pub(crate) aanf: bool,
}

/// The running listener.
pub(crate) struct OperationsServer {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    prober: Option<JoinHandle<()>>,
}

impl OperationsServer {
    /// Binds `addr` and serves `/healthz`, `/readyz` and `/metrics` on the current runtime
    /// (and, with a store probe, asks the store every second).
    pub(crate) async fn start(
        addr: SocketAddr,
        mut operations: Operations,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let (stop, stopped) = watch::channel(false);
        let registry = operations.metrics.registry(
            operations.refresh.is_some(),
            operations.store_probe.is_some(),
            operations.aanf,
        );
        let store = Arc::new(StoreState::default());
        operations.metrics.store_writable.set(1);
        let prober = operations.store_probe.take().map(|probe| {
            tokio::spawn(watch_store(
                probe,
                store.clone(),
                operations.metrics.clone(),
                stopped.clone(),
            ))
        });
        let state = Arc::new(State {
            operations,
            registry,
            store,
        });
        let task = tokio::spawn(accept_loop(listener, state, stopped));
        Ok(OperationsServer {
            local_addr,
            stop,
            task,
            prober,
        })
    }

    /// The address it listens on (useful after binding port 0).
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops listening; open connections are dropped.
    pub(crate) async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        if let Some(prober) = self.prober {
            let _ = prober.await;
        }
    }
}

struct State {
    operations: Operations,
    registry: Registry,
    store: Arc<StoreState>,
}

/// The store's writability as last tested.
#[derive(Debug)]
struct StoreState {
    writable: AtomicBool,
    /// Why not, while not (for the log; `/readyz` says only that it cannot write).
    reason: Mutex<Option<String>>,
}

impl Default for StoreState {
    fn default() -> Self {
        // The store has just opened (and written its start-up checks).
        StoreState {
            writable: AtomicBool::new(true),
            reason: Mutex::new(None),
        }
    }
}

/// Tests the store every [`PROBE_EVERY`] until the listener stops; logs each change.
async fn watch_store(
    probe: StoreProbe,
    store: Arc<StoreState>,
    metrics: Arc<EmksMetrics>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let result = match tokio::time::timeout(PROBE_TIMEOUT, probe()).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
        };
        let was = store.writable.swap(result.is_ok(), Ordering::AcqRel);
        metrics.store_writable.set(i64::from(result.is_ok()));
        match (was, &result) {
            (true, Err(reason)) => {
                tracing::warn!(%reason, "the store cannot write: not ready until it can");
            }
            (false, Ok(())) => tracing::info!("the store writes again: ready"),
            _ => {}
        }
        *store.reason.lock().unwrap_or_else(PoisonError::into_inner) = result.err();
        tokio::select! {
            _ = tokio::time::sleep(PROBE_EVERY) => {}
            _ = stop.changed() => return,
        }
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>, mut stop: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "operations listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        // Over the bound, the connection is closed at once (a probe then fails, as it should
        // when something floods the operations port).
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let _permit = permit;
            serve_connection(tcp, &state).await;
        });
    }
}

/// A request that passed the checks.
struct Request {
    head: bool,
    get: bool,
    path: String,
    close: bool,
}

/// Why a request is refused: status, problem title, detail; the connection is closed after
/// the answer when `close`.
struct Refusal {
    status: u16,
    detail: &'static str,
    close: bool,
    allow: bool,
}

impl Refusal {
    const fn new(status: u16, detail: &'static str) -> Self {
        Refusal {
            status,
            detail,
            close: true,
            allow: false,
        }
    }
}

/// Serves requests on one connection until it closes, a refusal closes it, or it idles.
async fn serve_connection(mut tcp: TcpStream, state: &State) {
    let _ = tcp.set_nodelay(true);
    let mut input: Vec<u8> = Vec::with_capacity(1024);
    loop {
        let parsed = match read_request(&mut tcp, &mut input).await {
            Some(parsed) => parsed,
            None => return,
        };
        let (response, close) = match parsed {
            Ok(request) => {
                let close = request.close;
                (answer(state, &request), close)
            }
            Err(refusal) => {
                let close = refusal.close;
                (problem(&refusal), close)
            }
        };
        if tcp.write_all(&response.encode(close)).await.is_err() {
            return;
        }
        if close {
            linger(tcp).await;
            return;
        }
    }
}

/// Closes after an answer the peer may still be sending to (a refused head, an unread
/// body): our side first, then what arrives is read and dropped for a moment, so that the
/// kernel does not answer it with a reset that destroys the answer before it is read
/// (RFC 9112 §9.6).
async fn linger(mut tcp: TcpStream) {
    let _ = tcp.shutdown().await;
    let mut sink = [0u8; 4096];
    let mut left: usize = 256 * 1024;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while left > 0 {
        match tokio::time::timeout_at(deadline, tcp.read(&mut sink)).await {
            Ok(Ok(n)) if n > 0 => left = left.saturating_sub(n),
            _ => return,
        }
    }
}

/// Reads and checks the next request head; `None` when the connection ends or idles.
/// The head's octets are removed from `input` (what follows stays for the next request).
async fn read_request(
    tcp: &mut TcpStream,
    input: &mut Vec<u8>,
) -> Option<Result<Request, Refusal>> {
    let mut chunk = [0u8; 2048];
    loop {
        if !input.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut request = httparse::Request::new(&mut headers);
            match request.parse(input) {
                Ok(httparse::Status::Complete(len)) => {
                    let checked = check(&request);
                    input.drain(..len);
                    return Some(checked);
                }
                Ok(httparse::Status::Partial) if input.len() > MAX_HEAD => {
                    return Some(Err(Refusal::new(431, "the request head is over 8 KiB")));
                }
                Ok(httparse::Status::Partial) => {}
                Err(httparse::Error::TooManyHeaders) => {
                    return Some(Err(Refusal::new(431, "more than 32 header lines")));
                }
                Err(_) => return Some(Err(Refusal::new(400, "the request head does not parse"))),
            }
        }
        // Idle between requests, then a bounded time for the rest of a head.
        let limit = if input.is_empty() {
            IDLE_TIMEOUT
        } else {
            HEADER_TIMEOUT
        };
        match tokio::time::timeout(limit, tcp.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => input.extend_from_slice(&chunk[..n]),
            _ => return None,
        }
    }
}

/// The checks of a complete head (see the module docs).
fn check(request: &httparse::Request<'_, '_>) -> Result<Request, Refusal> {
    if request.version != Some(1) {
        return Err(Refusal::new(505, "HTTP/1.1 only"));
    }
    let target = request.path.unwrap_or_default();
    if !origin_form(target) {
        return Err(Refusal::new(
            400,
            "the request target must be an absolute path (origin form), RFC 3986 characters only, no fragment",
        ));
    }
    let named = |name: &'static str| {
        request
            .headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
    };
    let hosts: Vec<_> = named("host").collect();
    if hosts.len() != 1 || !hosts[0].value.iter().all(|b| b.is_ascii_graphic()) {
        return Err(Refusal::new(400, "a request needs exactly one Host header"));
    }
    let close = named("connection").any(|h| {
        h.value
            .split(|&b| b == b',')
            .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"close"))
    });
    let method = request.method.unwrap_or_default();
    let (get, head) = (method == "GET", method == "HEAD");
    let lengths: Vec<_> = named("content-length").collect();
    let has_body = named("transfer-encoding").next().is_some()
        || lengths.len() > 1
        || lengths.first().is_some_and(|h| h.value != b"0");
    if !get && !head {
        // Its body, if any, is not read: the connection ends after the answer.
        return Err(Refusal {
            allow: true,
            close: has_body || close,
            ..Refusal::new(405, "GET or HEAD only")
        });
    }
    if has_body {
        return Err(Refusal::new(400, "a GET or HEAD request has no body here"));
    }
    let path = target.split('?').next().unwrap_or_default().to_owned();
    Ok(Request {
        head,
        get,
        path,
        close,
    })
}

/// RFC 9112 §3.2.1 origin form: `/` then RFC 3986 path and query characters, `%` only
/// before two hex digits; no fragment.
fn origin_form(target: &str) -> bool {
    let bytes = target.as_bytes();
    if bytes.first() != Some(&b'/') {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = |j: usize| bytes.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return false;
            }
            i += 3;
            continue;
        }
        let allowed = b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?".contains(&b);
        if !allowed {
            return false;
        }
        i += 1;
    }
    true
}

/// An answer to write.
struct Answer {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
    /// A HEAD request: the headers of the GET answer, no body.
    head: bool,
    allow: bool,
}

impl Answer {
    fn encode(&self, close: bool) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        )
        .into_bytes();
        if self.allow {
            out.extend_from_slice(b"Allow: GET, HEAD\r\n");
        }
        if close {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !self.head {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// An RFC 9457 problem document (JSON) for a refused request. Its text is ours: nothing
/// of the request is echoed.
fn problem(refusal: &Refusal) -> Answer {
    let body = format!(
        "{{\"type\":\"about:blank\",\"title\":\"{}\",\"status\":{},\"detail\":\"{}\"}}\n",
        reason(refusal.status),
        refusal.status,
        refusal.detail
    );
    Answer {
        status: refusal.status,
        content_type: "application/problem+json",
        body: body.into_bytes(),
        head: false,
        allow: refusal.allow,
    }
}

fn answer(state: &State, request: &Request) -> Answer {
    debug_assert!(request.get || request.head);
    let mut answer = match request.path.as_str() {
        // Liveness: the process answers.
        "/healthz" => text(200, "ok\n"),
        // Readiness: the EMKS listener is up and not stopping, and the store can write.
        "/readyz" => {
            if !state.operations.ready.load(Ordering::Acquire) {
                text(503, "not ready: not serving (starting or stopping)\n")
            } else if !state.store.writable.load(Ordering::Acquire) {
                text(503, "not ready: the store cannot write\n")
            } else {
                text(200, "ready\n")
            }
        }
        "/metrics" => {
            if let Some(refresh) = &state.operations.refresh {
                refresh(&state.operations.metrics);
            }
            let mut body = String::new();
            if encode(&mut body, &state.registry).is_err() {
                problem(&Refusal::new(500, "the metrics could not be encoded"))
            } else {
                Answer {
                    status: 200,
                    content_type: OPENMETRICS,
                    body: body.into_bytes(),
                    head: false,
                    allow: false,
                }
            }
        }
        _ => problem(&Refusal {
            close: false,
            ..Refusal::new(
                404,
                "no such resource: /healthz, /readyz and /metrics are served",
            )
        }),
    };
    answer.head = request.head;
    answer
}

fn text(status: u16, body: &'static str) -> Answer {
    Answer {
        status,
        content_type: "text/plain; charset=utf-8",
        body: body.as_bytes().to_vec(),
        head: false,
        allow: false,
    }
}
