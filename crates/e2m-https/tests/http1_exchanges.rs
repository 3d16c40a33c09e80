//! The stack's own HTTP/1.1 (issue 20), exchange by exchange on the wire: what hyper did for
//! the server before and the stack does itself now — pipelined requests answered in order,
//! both body framings decoded (chunk extensions and trailers dropped), `HEAD` answered
//! without a body, `100 Continue` before a body the client holds back, the client's
//! `Connection: close`, a half-closed client still answered, and a request running at
//! shutdown answered before its connection ends.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests"
)]

mod server_support;

use std::sync::Arc;
use std::time::Duration;

use e2m_https::server::{Handler, HttpResponse, Limits, Request, ServerHandle};
use http_body_util::Full;
use hyper::body::Bytes;
use server_support::{TestPki, raw_tls, start};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The test's end of a connection.
type ClientTls = tokio_rustls::client::TlsStream<TcpStream>;

/// Answers with what it was given: method, target, one header and the body's octets.
struct Mirror;

impl Handler for Mirror {
    async fn handle(&self, request: Request) -> HttpResponse {
        let text = format!(
            "{} {} x-tag={} body={}",
            request.method,
            request.uri,
            request
                .headers
                .get("x-tag")
                .map_or("-", |v| v.to_str().unwrap_or("?")),
            String::from_utf8_lossy(&request.body)
        );
        hyper::Response::new(Full::new(Bytes::from(text)))
    }
}

/// One parsed answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one answer (head, then `Content-Length` octets of body unless `head_only`) from
/// `stream`, whose unread octets are kept in `pending` between calls.
async fn read_answer<R: AsyncRead + Unpin>(
    stream: &mut R,
    pending: &mut Vec<u8>,
    head_only: bool,
) -> Answer {
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("an answer within 5 s")
            .unwrap();
        assert!(n > 0, "closed before a whole head: {pending:?}");
        pending.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8(pending[..head_end].to_vec()).unwrap();
    pending.drain(..head_end);
    let mut lines = head.trim_end().split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line[9..12].parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.to_owned(), v.trim().to_owned())
        })
        .collect();
    let mut answer = Answer {
        status,
        headers,
        body: String::new(),
    };
    let length: usize = answer
        .header("content-length")
        .map_or(0, |v| v.parse().unwrap());
    if head_only || status == 100 {
        return answer;
    }
    while pending.len() < length {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("a body within 5 s")
            .unwrap();
        assert!(n > 0, "closed within a body");
        pending.extend_from_slice(&buf[..n]);
    }
    answer.body = String::from_utf8(pending[..length].to_vec()).unwrap();
    pending.drain(..length);
    answer
}

/// A server for `handler` with default limits, and one connection to it from an EMSE.
async fn connected<H: Handler>(handler: H) -> (TestPki, ServerHandle, ClientTls) {
    let pki = TestPki::new();
    let server = start(&pki, Limits::default(), Arc::new(handler)).await;
    let tls = raw_tls(server.local_addr(), pki.emse_tls("emse-a"))
        .await
        .unwrap();
    (pki, server, tls)
}

/// Whether the stream ends (with `close_notify`: `Ok(0)`) within 3 s, nothing read before.
async fn ends<R: AsyncRead + Unpin>(stream: &mut R) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buf)).await,
        Ok(Ok(0))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_of_both_framings_are_answered_in_order() {
    let (_pki, server, mut tls) = connected(Mirror).await;
    // Three requests in one write: a length, a chunked body with an extension and a
    // trailer, and no body.
    tls.write_all(
        b"POST /a?q=1 HTTP/1.1\r\nhost: h\r\nx-tag: one\r\ncontent-length: 5\r\n\r\nhello\
          PUT /b HTTP/1.1\r\nhost: h\r\nx-tag: two\r\ntransfer-encoding: chunked\r\n\r\n\
          3;name=value\r\nwor\r\n2\r\nld\r\n0\r\nx-trailer: t\r\n\r\n\
          GET /c HTTP/1.1\r\nhost: h\r\nx-tag: three\r\n\r\n",
    )
    .await
    .unwrap();
    let mut pending = Vec::new();
    let mut bodies = Vec::new();
    for _ in 0..3 {
        let answer = read_answer(&mut tls, &mut pending, false).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        assert!(answer.header("date").is_some(), "{answer:?}");
        assert_eq!(answer.header("connection"), None, "{answer:?}");
        bodies.push(answer.body);
    }
    assert_eq!(
        bodies,
        [
            "POST /a?q=1 x-tag=one body=hello",
            "PUT /b x-tag=two body=world",
            "GET /c x-tag=three body=",
        ]
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_is_answered_without_a_body_and_the_connection_goes_on() {
    let (_pki, server, mut tls) = connected(Mirror).await;
    tls.write_all(b"HEAD /x HTTP/1.1\r\nhost: h\r\n\r\n")
        .await
        .unwrap();
    let mut pending = Vec::new();
    let head = read_answer(&mut tls, &mut pending, true).await;
    assert_eq!(head.status, 200);
    // The length of the body a GET would have had ("HEAD /x x-tag=- body=").
    assert_eq!(head.header("content-length"), Some("21"), "{head:?}");
    // Nothing of a body follows: the next answer starts right after the head.
    tls.write_all(b"GET /y HTTP/1.1\r\nhost: h\r\n\r\n")
        .await
        .unwrap();
    let next = read_answer(&mut tls, &mut pending, false).await;
    assert_eq!(next.status, 200, "{next:?}");
    assert_eq!(next.body, "GET /y x-tag=- body=");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_waits_gets_100_continue_then_its_answer() {
    let (_pki, server, mut tls) = connected(Mirror).await;
    tls.write_all(
        b"POST /x HTTP/1.1\r\nhost: h\r\nexpect: 100-continue\r\ncontent-length: 4\r\n\r\n",
    )
    .await
    .unwrap();
    let mut pending = Vec::new();
    let interim = read_answer(&mut tls, &mut pending, false).await;
    assert_eq!(interim.status, 100, "{interim:?}");
    tls.write_all(b"body").await.unwrap();
    let answer = read_answer(&mut tls, &mut pending, false).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body, "POST /x x-tag=- body=body");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_asking_to_close_is_answered_then_closed() {
    let (_pki, server, mut tls) = connected(Mirror).await;
    // The second request is never read: the first asked to close.
    tls.write_all(
        b"GET /x HTTP/1.1\r\nhost: h\r\nconnection: keep-alive, Close\r\n\r\n\
          GET /y HTTP/1.1\r\nhost: h\r\n\r\n",
    )
    .await
    .unwrap();
    let mut pending = Vec::new();
    let answer = read_answer(&mut tls, &mut pending, false).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("connection"), Some("close"), "{answer:?}");
    assert!(pending.is_empty(), "nothing after the answer");
    assert!(ends(&mut tls).await);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_closed_client_is_still_answered() {
    let (_pki, server, mut tls) = connected(Mirror).await;
    tls.write_all(b"POST /x HTTP/1.1\r\nhost: h\r\ncontent-length: 2\r\n\r\nok")
        .await
        .unwrap();
    // close_notify and FIN: the client sends nothing more but still reads.
    tls.shutdown().await.unwrap();
    let mut pending = Vec::new();
    let answer = read_answer(&mut tls, &mut pending, false).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body, "POST /x x-tag=- body=ok");
    assert!(ends(&mut tls).await);
    server.shutdown().await;
}

/// Answers after a moment (a request still running when the server starts to stop).
struct Late;

impl Handler for Late {
    async fn handle(&self, _request: Request) -> HttpResponse {
        tokio::time::sleep(Duration::from_millis(400)).await;
        hyper::Response::new(Full::new(Bytes::from_static(b"late")))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_running_at_shutdown_is_answered_and_its_connection_closed() {
    let (_pki, server, mut tls) = connected(Late).await;
    tls.write_all(b"GET /x HTTP/1.1\r\nhost: h\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopping = tokio::spawn(server.shutdown());
    let mut pending = Vec::new();
    let answer = read_answer(&mut tls, &mut pending, false).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body, "late");
    assert_eq!(answer.header("connection"), Some("close"), "{answer:?}");
    assert!(ends(&mut tls).await);
    tokio::time::timeout(Duration::from_secs(3), stopping)
        .await
        .expect("the server stops once the answer is out")
        .unwrap();
}
