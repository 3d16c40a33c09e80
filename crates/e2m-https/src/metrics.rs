//! What the EMKS server tells an operator's metrics while it runs: each answered request
//! (operation, status, handling time), each refusal with its cause, and each notification
//! delivery. The crate picks no metrics library: an [`EmksObserver`] given in
//! [`EmksServerOptions::observer`](crate::emks::EmksServerOptions::observer) receives the
//! events (the `emks` example exports them to Prometheus with `prometheus-client`).
//!
//! Every method has an empty default and is called on the request's task, so an
//! implementation must be cheap and must not block (atomic counters are the intent).
//! No event carries key material, session ids or identities.

use std::time::Duration;

use e2m_msg::ProblemCause;
use e2m_msg::rest::Operation;

/// What happened to one notification delivery (seed 6.x.2.2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NotificationEvent {
    /// A delivery started (it is pending until it is delivered or fails).
    Started,
    /// The subscriber answered 204.
    Delivered,
    /// The attempt failed (connection, TLS, timeout or a non-204 answer); the notification
    /// stays in the outbox and is tried again after a backoff.
    Failed,
    /// Not attempted, and settled: the notification can no longer be sent (its subscriber
    /// lost the IMSI permission, or its callback no longer validates).
    Dropped,
}

impl NotificationEvent {
    /// A short label (`started`, `delivered`, `failed`, `dropped`).
    pub const fn as_str(self) -> &'static str {
        match self {
            NotificationEvent::Started => "started",
            NotificationEvent::Delivered => "delivered",
            NotificationEvent::Failed => "failed",
            NotificationEvent::Dropped => "dropped",
        }
    }
}

/// Receives the EMKS server's events (see the module docs).
pub trait EmksObserver: Send + Sync + std::fmt::Debug + 'static {
    /// One answered request. `operation` is `None` when the request matched no operation
    /// of the binding or the transport refused it before routing (rate limit, body limits);
    /// `elapsed` is the time from the complete request to the answer.
    fn request(&self, operation: Option<Operation>, status: u16, elapsed: Duration) {
        let _ = (operation, status, elapsed);
    }

    /// A request was answered with a problem document with this cause.
    fn refused(&self, cause: ProblemCause) {
        let _ = cause;
    }

    /// A notification delivery changed state.
    fn notification(&self, event: NotificationEvent) {
        let _ = event;
    }

    /// A key push over Diameter was answered (the e2m push application of
    /// `e2m-diameter-push`): its Result-Code, or its Experimental-Result-Code, and the time
    /// from the complete request to the answer. A refused push is also reported to
    /// [`EmksObserver::refused`] with the cause the same push over HTTPS would have had, so
    /// that refusals count alike on both interfaces.
    fn diameter_push(&self, result_code: u32, elapsed: Duration) {
        let _ = (result_code, elapsed);
    }
}

/// A short, stable label for an operation (`None`: `unrouted`), for metric labels and logs.
pub const fn operation_label(operation: Option<Operation>) -> &'static str {
    match operation {
        Some(Operation::Register) => "register",
        Some(Operation::FetchKey) => "fetch-key",
        Some(Operation::Deregister) => "deregister",
        Some(Operation::Subscribe) => "subscribe",
        Some(Operation::Unsubscribe) => "unsubscribe",
        Some(Operation::Notify) => "notify",
        Some(Operation::PushIntermediateKey) => "push-intermediate-key",
        #[allow(
            unreachable_patterns,
            reason = "issue 10 makes Operation #[non_exhaustive]; a new one is labelled, not a compile error"
        )]
        Some(_) => "other",
        None => "unrouted",
    }
}
