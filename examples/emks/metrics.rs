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
//! The listener is plain HTTP without authentication: it exposes counts, never keys,
//! identities or session ids, but bind it to loopback or a management network only.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use e2m_https::e2m_msg::ProblemCause;
use e2m_https::e2m_msg::rest::Operation;
use e2m_https::metrics::{EmksObserver, NotificationEvent, operation_label};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

/// The OpenMetrics text format's media type (what `prometheus_client::encoding::text` writes).
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Connections the operations listener serves at once (scrapers and probes are few).
const MAX_CONNECTIONS: usize = 32;

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
struct DiameterLabels {
    result_code: u32,
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
    /// `e2m_emks_diameter_pushes_total{result_code}`: pushes over Diameter, by the
    /// Result-Code (or Experimental-Result-Code) answered; refusals are also counted in
    /// `e2m_emks_refusals_total{cause}` with the HTTPS push's cause.
    diameter_pushes: Family<DiameterLabels, Counter>,
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
        metrics
    }

    /// The registry that `/metrics` encodes; `store_gauges` adds the gauges read from the
    /// store at each scrape.
    pub(crate) fn registry(self: &Arc<Self>, store_gauges: bool) -> Registry {
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
        registry.register(
            "diameter_pushes",
            "Key pushes answered over Diameter, by Result-Code",
            self.diameter_pushes.clone(),
        );
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
}

/// Reads the state gauges from the stores into the metrics (before each scrape).
pub(crate) type Refresh = Box<dyn Fn(&EmksMetrics) + Send + Sync>;

/// What the operations endpoint serves.
pub(crate) struct Operations {
    /// The metrics.
    pub(crate) metrics: Arc<EmksMetrics>,
    /// Whether the EMKS accepts requests (false before it listens and once it stops).
    pub(crate) ready: Arc<AtomicBool>,
    /// Reads the state gauges from the stores before each scrape. `None` (the shared
    /// PostgreSQL store) leaves the gauges out: every instance would count the same shared
    /// tables at every scrape, load on the database for a figure PostgreSQL's own
    /// statistics (`pg_stat_user_tables`) already give; a gauge that always read 0 would lie.
    pub(crate) refresh: Option<Refresh>,
}

/// The running listener.
pub(crate) struct OperationsServer {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl OperationsServer {
    /// Binds `addr` and serves `/healthz`, `/readyz` and `/metrics` on the current runtime.
    pub(crate) async fn start(addr: SocketAddr, operations: Operations) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let (stop, stopped) = watch::channel(false);
        let registry = operations.metrics.registry(operations.refresh.is_some());
        let state = Arc::new(State {
            operations,
            registry,
        });
        let task = tokio::spawn(accept_loop(listener, state, stopped));
        Ok(OperationsServer {
            local_addr,
            stop,
            task,
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
    }
}

struct State {
    operations: Operations,
    registry: Registry,
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
            let service = service_fn(move |request: hyper::Request<Incoming>| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(answer(&state, &request)) }
            });
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(5))
                .keep_alive(true)
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

fn answer(state: &State, request: &hyper::Request<Incoming>) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match request.uri().path() {
        // Liveness: the process answers.
        "/healthz" => text(StatusCode::OK, "ok\n"),
        // Readiness: the EMKS listener is up and not shutting down.
        "/readyz" => {
            if state.operations.ready.load(Ordering::Acquire) {
                text(StatusCode::OK, "ready\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
            }
        }
        "/metrics" => {
            if let Some(refresh) = &state.operations.refresh {
                refresh(&state.operations.metrics);
            }
            let mut body = String::new();
            if encode(&mut body, &state.registry).is_err() {
                return text(StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n");
            }
            let mut response = Response::new(Full::new(Bytes::from(body)));
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(OPENMETRICS));
            response
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
