//! What the client's errors say and what they cost (issue 16 follow-ups): a transport
//! error shows its whole chain of causes (and never the request target, which holds
//! session ids and UE identities); a problem document is read and decoded only up to
//! `client::MAX_PROBLEM_BODY`, whoever answers; a redirect is an answer, never followed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests"
)]

mod server_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use e2m_https::client::{ClientError, ClientOptions, EmksClient, MAX_PROBLEM_BODY, RetryPolicy};
use e2m_https::server::{Handler, HttpResponse, Limits, Request};
use e2m_keyid::{AppIdentity, KeyId};
use e2m_msg::{KeyRequest, Problem, ProblemCause, SessionId, UeRef, XmlMessage};
use http_body_util::Full;
use hyper::body::Bytes;
use server_support::{Echo, TestPki, start};

fn options() -> ClientOptions {
    ClientOptions {
        retry: RetryPolicy::NEVER,
        ..ClientOptions::default()
    }
}

/// A key request whose target holds a session id and a UE identity no error may show.
fn request() -> KeyRequest {
    KeyRequest {
        session_id: SessionId::from_array([0xc3; 16]),
        ue: UeRef::AppIdentity(AppIdentity::new("secret-ue-4711@iot.example.com").unwrap()),
        key_id: KeyId::from_u32(0x0102_0304),
    }
}

fn assert_no_target(text: &str) {
    let session = request().session_id.to_text();
    for hidden in [session.as_str(), "secret-ue-4711", "/e2m/v1", "01020304"] {
        assert!(!text.contains(hidden), "{hidden:?} in {text:?}");
    }
}

#[tokio::test]
async fn a_transport_error_shows_its_causes_and_never_the_target() {
    let pki = TestPki::new();
    // A port nobody listens on: connection refused.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let client = EmksClient::with_options(
        &format!("https://{closed}"),
        &pki.emse("emse-a"),
        &pki.ca(),
        &options(),
    )
    .unwrap();
    let error = client.fetch_key(&request()).await.unwrap_err();
    assert!(matches!(error, ClientError::Transport(_)), "{error:?}");
    let text = error.to_string();
    // Before: "transport: error sending request", nothing more.
    assert!(
        text.to_ascii_lowercase().contains("connection refused"),
        "{text}"
    );
    assert_no_target(&text);

    // A server whose certificate the client cannot trust: the TLS reason is shown.
    let other = TestPki::new();
    let server = start(&pki, Limits::default(), Arc::new(Echo)).await;
    let client = EmksClient::with_options(
        &format!("https://{}", server.local_addr()),
        &pki.emse("emse-a"),
        &other.ca(),
        &options(),
    )
    .unwrap();
    let text = client.fetch_key(&request()).await.unwrap_err().to_string();
    // (The other CA has the same name: the chain fails on its signature.)
    assert!(text.contains("invalid peer certificate"), "{text}");
    assert_no_target(&text);
    server.shutdown().await;
}

/// Answers every request 400 with a valid problem document (cause `malformed`) padded by
/// an extension member to `size` octets.
struct PaddedProblem {
    size: AtomicUsize,
}

fn padded_problem(size: usize) -> String {
    let head = "<problem xmlns=\"urn:ietf:rfc:7807\"><cause>malformed</cause><pad>";
    let tail = "</pad></problem>";
    let pad = size.saturating_sub(head.len() + tail.len());
    format!("{head}{}{tail}", "x".repeat(pad))
}

impl Handler for PaddedProblem {
    async fn handle(&self, _request: Request) -> HttpResponse {
        let body = padded_problem(self.size.load(Ordering::SeqCst));
        let mut response = hyper::Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = hyper::StatusCode::BAD_REQUEST;
        response.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/problem+xml"),
        );
        response
    }
}

#[tokio::test]
async fn a_problem_body_is_decoded_only_up_to_the_cap() {
    let pki = TestPki::new();
    let handler = Arc::new(PaddedProblem {
        size: AtomicUsize::new(0),
    });
    let server = start(&pki, Limits::default(), Arc::clone(&handler)).await;
    let client = EmksClient::with_options(
        &format!("https://{}", server.local_addr()),
        &pki.emse("emse-a"),
        &pki.ca(),
        &options(),
    )
    .unwrap();
    for (size, decoded) in [
        (300, true),
        (MAX_PROBLEM_BODY, true),
        (MAX_PROBLEM_BODY + 1, false),
        (60 * 1024, false),
    ] {
        // Every body is a problem document the decoder accepts: only its size differs.
        let body = padded_problem(size);
        assert_eq!(body.len(), size);
        assert_eq!(
            Problem::decode(body.as_bytes()).unwrap().cause,
            ProblemCause::Malformed
        );
        handler.size.store(size, Ordering::SeqCst);
        let error = client.fetch_key(&request()).await.unwrap_err();
        if decoded {
            assert_eq!(
                error.problem_cause(),
                Some(ProblemCause::Malformed),
                "{size}: {error:?}"
            );
        } else {
            // Before: decoded whatever its size (up to 64 KiB).
            assert!(
                matches!(error, ClientError::UnexpectedStatus(400)),
                "{size}: {error:?}"
            );
        }
    }
    // The client still works after a body it left unread.
    handler.size.store(300, Ordering::SeqCst);
    let error = client.fetch_key(&request()).await.unwrap_err();
    assert_eq!(error.problem_cause(), Some(ProblemCause::Malformed));
    server.shutdown().await;
}

/// Answers every request with a 307 to a second server, and counts the requests it gets.
struct Redirect {
    to: String,
}

impl Handler for Redirect {
    async fn handle(&self, _request: Request) -> HttpResponse {
        let mut response = hyper::Response::new(Full::new(Bytes::new()));
        *response.status_mut() = hyper::StatusCode::TEMPORARY_REDIRECT;
        response.headers_mut().insert(
            hyper::header::LOCATION,
            hyper::header::HeaderValue::from_str(&self.to).unwrap(),
        );
        response
    }
}

/// Counts the requests that reach it.
struct Counting {
    seen: AtomicUsize,
}

impl Handler for Counting {
    async fn handle(&self, _request: Request) -> HttpResponse {
        self.seen.fetch_add(1, Ordering::SeqCst);
        hyper::Response::new(Full::new(Bytes::new()))
    }
}

#[tokio::test]
async fn a_redirect_is_reported_and_never_followed() {
    let pki = TestPki::new();
    let target = Arc::new(Counting {
        seen: AtomicUsize::new(0),
    });
    let elsewhere = start(&pki, Limits::default(), Arc::clone(&target)).await;
    let redirect = Arc::new(Redirect {
        to: format!(
            "https://{}/e2m/v1/intermediate-keys",
            elsewhere.local_addr()
        ),
    });
    let server = start(&pki, Limits::default(), redirect).await;
    let client = EmksClient::with_options(
        &format!("https://{}", server.local_addr()),
        &pki.emse("emse-a"),
        &pki.ca(),
        &options(),
    )
    .unwrap();
    let error = client.fetch_key(&request()).await.unwrap_err();
    // Before: reqwest followed the 307 and sent the request, with this client's
    // certificate, to the second server.
    assert!(
        matches!(error, ClientError::UnexpectedStatus(307)),
        "{error:?}"
    );
    assert_eq!(target.seen.load(Ordering::SeqCst), 0);
    server.shutdown().await;
    elsewhere.shutdown().await;
}
