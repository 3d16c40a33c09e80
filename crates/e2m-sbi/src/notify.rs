//! An AF's notification endpoint: the server side of the `ServiceDisablementNotification`
//! callback (TS 29.535 §5.1.5.2; TS 29.522 §5.14.2.2), on the same HTTP/2 stack.
//!
//! It accepts `POST <path>` with a `ServiceDisableNotif` from a peer its configuration
//! names (the AAnF's client certificate, or the NEF's), answers 204 once the notification
//! is queued for the AF, and 503 with `Retry-After` while its queue is full (the AAnF's
//! deliverer then tries again later: nothing is lost). A repeat of a notification already
//! received is answered 204 again (delivery is at least once).

use std::sync::Arc;

use e2m_aanf::Host;
use e2m_akma::{JsonBody, ServiceDisableNotif};
use hyper::Method;
use hyper::header::{self, HeaderValue};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::respond;
use crate::server::{
    self, Handler, HttpResponse, Limits, SbiPeer, SbiRequest, ServerHandle, Transport,
};

/// One notification received.
#[derive(Clone, Debug)]
pub struct Received {
    /// What it says: the A-KID whose AKMA service is disabled.
    pub notification: ServiceDisableNotif,
    /// Who sent it.
    pub from: Arc<SbiPeer>,
}

/// The endpoint's handler: the path it serves, who may notify, and where notifications go.
#[derive(Debug)]
pub struct NotificationEndpoint {
    path: String,
    notifiers: Vec<Host>,
    queue: mpsc::Sender<Received>,
}

impl NotificationEndpoint {
    /// Queue length of [`Self::channel`].
    pub const QUEUE: usize = 1024;

    /// An endpoint serving `POST path` to peers whose names `notifiers` cover (none: any
    /// authenticated peer), and the receiving end of its queue.
    pub fn channel(
        path: &str,
        notifiers: Vec<Host>,
    ) -> (NotificationEndpoint, mpsc::Receiver<Received>) {
        let (queue, received) = mpsc::channel(Self::QUEUE);
        (
            NotificationEndpoint {
                path: path.to_owned(),
                notifiers,
                queue,
            },
            received,
        )
    }

    fn allowed(&self, peer: &SbiPeer) -> bool {
        self.notifiers.is_empty()
            || peer
                .peer
                .names()
                .iter()
                .any(|name| self.notifiers.iter().any(|n| n.covers(name)))
    }
}

impl Handler for NotificationEndpoint {
    async fn handle(&self, request: SbiRequest) -> HttpResponse {
        if request.uri.path() != self.path {
            return respond::problem_with(
                404,
                "Not Found",
                Some(e2m_akma::cause::RESOURCE_URI_STRUCTURE_NOT_FOUND),
            );
        }
        if request.method != Method::POST {
            let mut response = respond::problem_with(405, "Method Not Allowed", None);
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            return response;
        }
        if !self.allowed(&request.peer) {
            tracing::info!(target: "e2m::audit", peer = %request.peer.peer, "notification from a peer not configured as a notifier refused");
            return respond::problem_with(403, "Forbidden", None);
        }
        let notification = match ServiceDisableNotif::from_json(&request.body) {
            Ok(notification) => notification,
            Err(error) => return respond::problem(&error.problem()),
        };
        match self.queue.try_send(Received {
            notification,
            from: request.peer,
        }) {
            Ok(()) => respond::empty(204),
            Err(_) => {
                let mut response = respond::problem_with(
                    503,
                    "Service Unavailable",
                    Some(e2m_akma::cause::NF_CONGESTION),
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                response
            }
        }
    }
}

/// Serves `endpoint` on `listener`.
///
/// # Errors
/// The listener's address cannot be read.
pub fn serve_notifications(
    listener: TcpListener,
    transport: Transport,
    limits: Limits,
    endpoint: NotificationEndpoint,
) -> std::io::Result<ServerHandle> {
    server::serve(listener, transport, limits, Arc::new(endpoint))
}
