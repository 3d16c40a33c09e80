//! What the EMKS server tells an operator's metrics while it runs: each answered request
//! (operation, status, handling time), each refusal with its cause, each connection that
//! ended before its TLS handshake completed ([`HandshakeFailure`]), and each notification
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

/// Why a connection ended before its TLS handshake completed (so before any request):
/// the reason classes an operator tells apart on a dashboard. The server stack reports
/// each such connection once, through [`Handler::handshake_failed`]
/// (the EMKS passes it on to [`EmksObserver::handshake_failed`]).
///
/// [`Handler::handshake_failed`]: crate::server::Handler::handshake_failed
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HandshakeFailure {
    /// Closed at once, on arrival or when its ClientHello arrived: its source already held
    /// as many connections waiting for a ClientHello (or handshakes in progress) as it may,
    /// or every place was held by sources holding no more than it.
    Refused,
    /// Closed while waiting, to make room for a connection from a source that held fewer
    /// (fairness between sources; a flood from some addresses cannot lock out the others).
    Evicted,
    /// No complete ClientHello within [`Limits::client_hello_timeout`] (an idle or
    /// dribbling connection).
    ///
    /// [`Limits::client_hello_timeout`]: crate::server::Limits::client_hello_timeout
    HelloTimeout,
    /// The handshake did not complete within [`Limits::handshake_timeout`].
    ///
    /// [`Limits::handshake_timeout`]: crate::server::Limits::handshake_timeout
    Timeout,
    /// The client sent no certificate (mutual authentication is mandatory).
    NoCertificate,
    /// The client's certificate was refused: not from the e2m CA, expired, without
    /// `clientAuth`, or without an e2m identity of an accepted role.
    BadCertificate,
    /// Nothing in common: protocol version, cipher suite, key exchange group, signature
    /// scheme or ALPN protocol outside the profile.
    Incompatible,
    /// The client ended the handshake with an alert (e.g. it refused the server's
    /// certificate).
    ClientAlert,
    /// Not TLS, or TLS messages that are malformed or out of order.
    Protocol,
    /// The client closed the connection (or it failed) before the handshake completed.
    Closed,
}

impl HandshakeFailure {
    /// Every reason, for metrics that start each series at zero.
    pub const ALL: [HandshakeFailure; 10] = [
        HandshakeFailure::Refused,
        HandshakeFailure::Evicted,
        HandshakeFailure::HelloTimeout,
        HandshakeFailure::Timeout,
        HandshakeFailure::NoCertificate,
        HandshakeFailure::BadCertificate,
        HandshakeFailure::Incompatible,
        HandshakeFailure::ClientAlert,
        HandshakeFailure::Protocol,
        HandshakeFailure::Closed,
    ];

    /// A short, stable label (`refused`, `evicted`, `hello-timeout`, `timeout`,
    /// `no-certificate`, `bad-certificate`, `incompatible`, `client-alert`, `protocol`,
    /// `closed`).
    pub const fn as_str(self) -> &'static str {
        match self {
            HandshakeFailure::Refused => "refused",
            HandshakeFailure::Evicted => "evicted",
            HandshakeFailure::HelloTimeout => "hello-timeout",
            HandshakeFailure::Timeout => "timeout",
            HandshakeFailure::NoCertificate => "no-certificate",
            HandshakeFailure::BadCertificate => "bad-certificate",
            HandshakeFailure::Incompatible => "incompatible",
            HandshakeFailure::ClientAlert => "client-alert",
            HandshakeFailure::Protocol => "protocol",
            HandshakeFailure::Closed => "closed",
        }
    }

    /// The class of a failed handshake's error (from the TLS acceptor: a `rustls::Error`
    /// inside an `io::Error`, or an I/O error of the connection).
    pub fn of_error(error: &std::io::Error) -> HandshakeFailure {
        let Some(tls) = error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        else {
            return HandshakeFailure::Closed;
        };
        match tls {
            rustls::Error::NoCertificatesPresented => HandshakeFailure::NoCertificate,
            rustls::Error::InvalidCertificate(_) | rustls::Error::InvalidCertRevocationList(_) => {
                HandshakeFailure::BadCertificate
            }
            rustls::Error::PeerIncompatible(_) | rustls::Error::NoApplicationProtocol => {
                HandshakeFailure::Incompatible
            }
            rustls::Error::AlertReceived(_) => HandshakeFailure::ClientAlert,
            _ => HandshakeFailure::Protocol,
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

    /// A connection ended before its TLS handshake completed.
    fn handshake_failed(&self, failure: HandshakeFailure) {
        let _ = failure;
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
