//! When `SbiClient` sends a request again, against an HTTP/2 server written here on the `h2`
//! crate (h2c on loopback) that misbehaves on purpose: a request the server refused before
//! processing it (`REFUSED_STREAM`, RFC 9113 §8.7) or whose connection went away before any
//! answer is sent once more on a new connection; a request the server reset for another
//! reason is not.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use e2m_sbi::client::{ClientError, ClientTransport, SbiClient};
use tokio::net::TcpListener;

/// What the test server does with the requests of its n-th connection.
#[derive(Clone, Copy, Debug)]
enum Behaviour {
    /// `RST_STREAM` with `REFUSED_STREAM`: not processed, safe to retry.
    Refuse,
    /// Drops the connection (TCP close) with the request open and unanswered.
    Vanish,
    /// `RST_STREAM` with `INTERNAL_ERROR`: may have been processed.
    Fail,
    /// 204.
    Answer,
}

struct Server {
    address: SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
}

/// A server whose connections behave as `script` says, in order (the last one repeats).
async fn server(script: &'static [Behaviour]) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let (counted_connections, counted_requests) = (connections.clone(), requests.clone());
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let n = counted_connections.fetch_add(1, Ordering::SeqCst);
            let behaviour = script[n.min(script.len() - 1)];
            let requests = counted_requests.clone();
            tokio::spawn(async move {
                let mut connection = h2::server::handshake(tcp).await.unwrap();
                while let Some(accepted) = connection.accept().await {
                    let Ok((_request, mut respond)) = accepted else {
                        return;
                    };
                    requests.fetch_add(1, Ordering::SeqCst);
                    match behaviour {
                        Behaviour::Refuse => respond.send_reset(h2::Reason::REFUSED_STREAM),
                        Behaviour::Vanish => return,
                        Behaviour::Fail => respond.send_reset(h2::Reason::INTERNAL_ERROR),
                        Behaviour::Answer => {
                            let answer = hyper::Response::builder().status(204).body(()).unwrap();
                            respond.send_response(answer, true).unwrap();
                        }
                    }
                }
            });
        }
    });
    Server {
        address,
        connections,
        requests,
    }
}

fn client(server: &Server) -> SbiClient {
    SbiClient::new(
        &format!("http://127.0.0.1:{}", server.address.port()),
        &ClientTransport::H2c,
    )
    .unwrap()
    .connections(1)
    .timeout(Duration::from_secs(5))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_stream_is_sent_again_on_a_new_connection() {
    let server = server(&[Behaviour::Refuse, Behaviour::Answer]).await;
    let reply = client(&server).post("/op", b"{}").await.unwrap();
    assert_eq!(reply.status, 204);
    assert_eq!(server.requests.load(Ordering::SeqCst), 2);
    assert_eq!(server.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_connection_vanished_is_sent_again() {
    let server = server(&[Behaviour::Vanish, Behaviour::Answer]).await;
    let reply = client(&server).post("/op", b"{}").await.unwrap();
    assert_eq!(reply.status, 204);
    assert_eq!(server.requests.load(Ordering::SeqCst), 2);
    assert_eq!(server.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_sent_twice_at_most() {
    let server = server(&[Behaviour::Refuse, Behaviour::Refuse, Behaviour::Answer]).await;
    let refused = client(&server).post("/op", b"{}").await;
    assert!(
        matches!(&refused, Err(ClientError::Http(e)) if e.reason() == Some(h2::Reason::REFUSED_STREAM)),
        "{refused:?}"
    );
    assert_eq!(server.requests.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_reset_for_another_reason_is_not_sent_again() {
    let server = server(&[Behaviour::Fail, Behaviour::Answer]).await;
    let failed = client(&server).post("/op", b"{}").await;
    assert!(
        matches!(&failed, Err(ClientError::Http(e)) if e.reason() == Some(h2::Reason::INTERNAL_ERROR)),
        "{failed:?}"
    );
    assert_eq!(server.requests.load(Ordering::SeqCst), 1);
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);
}
