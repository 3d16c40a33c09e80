//! The EMSE's notification endpoint: a small HTTPS server (the same hardened stack as the
//! EMKS) that takes notifications POSTed by the EMKS (seed 6.x.2.2.1: "EMKS and EMSE act as
//! both HTTP client and server. Thus, there is a TCP connection for each direction.").
//!
//! Only a peer whose certificate has the EMKS role gets past the handshake; each valid
//! notification is handed to the EMSE's code through a bounded channel (full → 503, so a
//! slow consumer pushes back instead of growing memory).

use std::sync::Arc;

use e2m_msg::rest::NOTIFICATIONS_PATH;
use e2m_msg::{CallbackUri, Notification, ProblemCause, XmlMessage};
use hyper::Method;
use hyper::header::{self, HeaderValue};
use rustls::pki_types::CertificateDer;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::respond;
use super::server::{Handler, HttpResponse, Limits, Rejection, Request, ServerHandle, serve};
use super::tls::server_config;
use crate::pki::{Credentials, PeerIdentity, Role};

/// Notifications the endpoint buffers before answering 503.
pub const NOTIFICATION_QUEUE: usize = 256;

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
        match self.tx.try_send(ReceivedNotification {
            from: request.peer,
            notification,
        }) {
            Ok(()) => respond::empty(204),
            Err(_) => respond::cause(ProblemCause::Unavailable),
        }
    }

    fn reject(&self, rejection: Rejection) -> HttpResponse {
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
    /// The notifications, in arrival order.
    pub notifications: mpsc::Receiver<ReceivedNotification>,
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

/// Starts an EMSE's notification endpoint on `listener` with the EMSE's `credentials`
/// (which must have `serverAuth`, as [`crate::pki`] issues them), admitting only EMKS
/// certificates chaining to `ca`.
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
    let handle = serve(listener, tls, limits, Arc::new(NotificationEndpoint { tx }))?;
    Ok(NotificationServer {
        handle,
        callback,
        notifications,
    })
}
