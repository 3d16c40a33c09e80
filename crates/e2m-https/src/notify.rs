//! The EMSE's notification endpoint: a small HTTPS server (the same hardened stack as the
//! EMKS) that takes notifications POSTed by the EMKS (seed 6.x.2.2.1: "EMKS and EMSE act as
//! both HTTP client and server. Thus, there is a TCP connection for each direction.").
//!
//! Only a peer whose certificate has the EMKS role gets past the handshake; each valid
//! notification is handed to the EMSE's code through a bounded channel (full → 503, so a
//! slow consumer pushes back instead of growing memory; the EMKS retries later).
//!
//! Its request budget for the EMKS is [`EMKS_BUDGET`] when started with
//! [`endpoint_limits`]: twice what one EMKS's deliverer sends one EMSE at most
//! ([`DeliveryOptions::per_emse_rate`](crate::delivery::DeliveryOptions::per_emse_rate),
//! 1,000/s), so that neither one instance nor two at their most meet a 429 (issue 16 item
//! 9: the stack's default of 500/s for any peer refused 9,073 deliveries of an EMKS that
//! pushed 750/s). Over it, the endpoint answers 429 with `Retry-After`, which the deliverer
//! honours and paces its lane by; [`NotificationServer::rate_limited`] counts them.
//!
//! The EMKS delivers at least once (its outbox retries until a 204 comes back), so the same
//! notification can arrive twice. The endpoint drops a repeat: a notification whose
//! `(subscriptionId, notificationId)` it has accepted among the last
//! [`RECENT_NOTIFICATION_IDS`] is answered 204 again and not handed on (counted in
//! [`NotificationServer::duplicates_dropped`]).

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use e2m_msg::rest::NOTIFICATIONS_PATH;
use e2m_msg::{CallbackUri, Notification, ProblemCause, XmlMessage};
use hyper::Method;
use hyper::header::{self, HeaderValue};
use rustls::pki_types::CertificateDer;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::ratelimit::RateLimit;
use super::respond;
use super::server::{Handler, HttpResponse, Limits, Rejection, Request, ServerHandle, serve};
use super::tls::server_config;
use crate::pki::{Credentials, PeerIdentity, Role};

/// Notifications the endpoint buffers before answering 503.
pub const NOTIFICATION_QUEUE: usize = 256;

/// The request budget of each EMKS at an endpoint started with [`endpoint_limits`]: 2,000
/// notifications per second, bursts of 2,000 (twice one deliverer's most to one EMSE).
pub const EMKS_BUDGET: RateLimit = RateLimit {
    per_second: 2000.0,
    burst: 2000,
};

/// The transport bounds of a notification endpoint: the server stack's defaults
/// ([`Limits::default`]), with [`EMKS_BUDGET`] as the budget of each peer (the endpoint
/// admits EMKS certificates only).
pub fn endpoint_limits() -> Limits {
    Limits {
        rate: EMKS_BUDGET,
        ..Limits::default()
    }
}

/// How many recently accepted notification ids the endpoint remembers to drop repeats.
pub const RECENT_NOTIFICATION_IDS: usize = 4096;

/// The ids of the last accepted notifications, oldest first, bounded.
#[derive(Debug, Default)]
struct RecentIds {
    order: VecDeque<(u64, u64)>,
    seen: HashSet<(u64, u64)>,
}

impl RecentIds {
    /// Remembers `key`; false if it was already remembered (a repeat).
    fn first_time(&mut self, key: (u64, u64)) -> bool {
        if !self.seen.insert(key) {
            return false;
        }
        self.order.push_back(key);
        if self.order.len() > RECENT_NOTIFICATION_IDS
            && let Some(old) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
        true
    }
}

/// A received notification and who sent it.
#[derive(Debug)]
pub struct ReceivedNotification {
    /// The sender (an EMKS, from its verified certificate).
    pub from: PeerIdentity,
    /// The notification.
    pub notification: Notification,
}

/// The handler of the notification endpoint.
#[derive(Debug)]
pub struct NotificationEndpoint {
    tx: mpsc::Sender<ReceivedNotification>,
    recent: Mutex<RecentIds>,
    duplicates: Arc<AtomicU64>,
    rate_limited: Arc<AtomicU64>,
}

impl Handler for NotificationEndpoint {
    async fn handle(&self, request: Request) -> HttpResponse {
        if request.peer.role() != Role::Emks {
            // The handshake admits EMKS certificates only; kept as a second line.
            return respond::cause(ProblemCause::EmseNotAuthorized);
        }
        if request.uri.path() != NOTIFICATIONS_PATH || request.uri.query().is_some() {
            return respond::cause(ProblemCause::NotFound);
        }
        if request.method != Method::POST {
            let mut response = respond::cause(ProblemCause::MethodNotAllowed);
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            return response;
        }
        if !respond::is_xml(&request.headers) {
            return respond::cause(ProblemCause::UnsupportedMediaType);
        }
        let notification = match Notification::decode(&request.body) {
            Ok(n) => n,
            Err(_) => return respond::cause(ProblemCause::Malformed),
        };
        tracing::debug!(
            from = %request.peer,
            event = %notification.event,
            key_id = %notification.key_id,
            "notification received"
        );
        // A repeat of one already accepted (the EMKS did not see our 204): answer it again,
        // hand it on once. Held while sending, so two copies arriving at once pass once.
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        let key = notification
            .id
            .map(|id| (notification.subscription_id.as_u64(), id.as_u64()));
        if let Some(key) = key
            && recent.seen.contains(&key)
        {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
            return respond::empty(204);
        }
        match self.tx.try_send(ReceivedNotification {
            from: request.peer,
            notification,
        }) {
            Ok(()) => {
                if let Some(key) = key {
                    recent.first_time(key);
                }
                respond::empty(204)
            }
            Err(_) => respond::cause(ProblemCause::Unavailable),
        }
    }

    fn reject(&self, rejection: Rejection) -> HttpResponse {
        if matches!(rejection, Rejection::RateLimited { .. }) {
            self.rate_limited.fetch_add(1, Ordering::Relaxed);
        }
        respond::rejection(rejection)
    }
}

/// A running notification endpoint.
#[derive(Debug)]
pub struct NotificationServer {
    /// The server (address, shutdown).
    pub handle: ServerHandle,
    /// The callback URI to give the EMKS in registrations and subscriptions.
    pub callback: CallbackUri,
    /// The notifications, in arrival order, each once.
    pub notifications: mpsc::Receiver<ReceivedNotification>,
    /// Repeats answered 204 and not handed on (see the module docs).
    pub duplicates_dropped: Arc<AtomicU64>,
    /// Requests answered 429 (an EMKS over its budget, see the module docs).
    pub rate_limited: Arc<AtomicU64>,
}

/// Why the notification endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointStartError {
    /// TLS configuration.
    #[error(transparent)]
    Tls(#[from] super::tls::TlsSetupError),
    /// Socket.
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    /// The listener's address makes no valid callback URI.
    #[error("callback URI: {0}")]
    Callback(e2m_msg::ValueError),
}

/// Starts an EMSE's notification endpoint on `listener` with the EMSE's callback
/// `credentials` (a certificate with `serverAuth` naming the EMSE and the callback host:
/// [`PkiDir::emse_callback`](crate::pki::PkiDir::emse_callback) in the generated PKI),
/// admitting only EMKS certificates chaining to `ca`, under `limits` ([`endpoint_limits`]
/// unless the operator has reasons for others).
///
/// # Errors
/// [`EndpointStartError`].
pub fn start_notification_endpoint(
    listener: TcpListener,
    credentials: &Credentials,
    ca: &[CertificateDer<'static>],
    limits: Limits,
) -> Result<NotificationServer, EndpointStartError> {
    let tls = server_config(credentials, ca, &[Role::Emks])?;
    let addr = listener.local_addr()?;
    let callback = CallbackUri::new(&format!("https://{addr}{NOTIFICATIONS_PATH}"))
        .map_err(EndpointStartError::Callback)?;
    let (tx, notifications) = mpsc::channel(NOTIFICATION_QUEUE);
    let duplicates_dropped = Arc::new(AtomicU64::new(0));
    let rate_limited = Arc::new(AtomicU64::new(0));
    let endpoint = NotificationEndpoint {
        tx,
        recent: Mutex::new(RecentIds::default()),
        duplicates: Arc::clone(&duplicates_dropped),
        rate_limited: Arc::clone(&rate_limited),
    };
    let handle = serve(listener, tls, limits, Arc::new(endpoint))?;
    Ok(NotificationServer {
        handle,
        callback,
        notifications,
        duplicates_dropped,
        rate_limited,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_admits_two_deliverers_at_their_most() {
        let deliverer = crate::delivery::DeliveryOptions::default().per_emse_rate;
        assert!(EMKS_BUDGET.per_second >= 2.0 * deliverer);
        assert!(f64::from(EMKS_BUDGET.burst) >= 2.0 * deliverer);
        assert_eq!(endpoint_limits().rate, EMKS_BUDGET);
    }

    #[test]
    fn recent_ids_forget_the_oldest_beyond_the_bound() {
        let mut recent = RecentIds::default();
        assert!(recent.first_time((1, 1)));
        assert!(!recent.first_time((1, 1)));
        assert!(recent.first_time((2, 1)), "another subscription's id 1");
        for n in 0..RECENT_NOTIFICATION_IDS as u64 {
            recent.first_time((9, n));
        }
        assert_eq!(recent.order.len(), RECENT_NOTIFICATION_IDS);
        assert!(recent.first_time((1, 1)), "forgotten after the bound");
    }
}
