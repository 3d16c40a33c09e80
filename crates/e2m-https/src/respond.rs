//! Building responses of the REST binding: messages and RFC 9457 problem documents from
//! `e2m-msg`, with the headers the binding requires.
//!
//! The document of each bare cause (no detail, the cause's own status: every refusal the
//! core and the transport make) is encoded once and shared afterwards, so that answering
//! a flood of refusals encodes no XML (issue 9 item 3).

use std::sync::OnceLock;

use e2m_msg::rest::{MEDIA_TYPE_PROBLEM_XML, MEDIA_TYPE_XML};
use e2m_msg::{Problem, ProblemCause, ProblemDetail, XmlMessage};
use http_body_util::Full;
use hyper::StatusCode;
use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};

use super::server::{HttpResponse, Rejection};

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// The encoded document of a bare cause, built once per cause.
fn bare_document(cause: ProblemCause) -> Bytes {
    static DOCUMENTS: OnceLock<Vec<(ProblemCause, Bytes)>> = OnceLock::new();
    let documents = DOCUMENTS.get_or_init(|| {
        ProblemCause::ALL
            .iter()
            .map(|&cause| (cause, encode(&Problem::new(cause))))
            .collect()
    });
    match documents.iter().find(|(known, _)| *known == cause) {
        Some((_, document)) => document.clone(),
        // A cause a later e2m-msg adds: encoded each time.
        None => encode(&Problem::new(cause)),
    }
}

fn encode(problem: &Problem) -> Bytes {
    Bytes::copy_from_slice(problem.encode().as_bytes())
}

/// A problem response: the document, `Content-Type: application/problem+xml`, and the
/// cause's status.
pub fn problem(problem: &Problem) -> HttpResponse {
    let body = match problem.detail {
        None => bare_document(problem.cause),
        Some(_) => encode(problem),
    };
    problem_response(body, status(problem.status()), problem.cause)
}

fn problem_response(body: Bytes, status: StatusCode, cause: ProblemCause) -> HttpResponse {
    let mut response = hyper::Response::new(Full::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(MEDIA_TYPE_PROBLEM_XML),
    );
    // For observers (crate::metrics): the cause travels with the response, not on the wire.
    response.extensions_mut().insert(cause);
    response
}

/// A problem response for `cause` sent with another status than the cause's own (e2m-msg
/// has no cause for it): the document's `status` member says the status sent, as RFC 9457
/// §3.1.3 requires, and `detail` says what happened.
fn problem_with_status(cause: ProblemCause, sent: StatusCode, detail: &str) -> HttpResponse {
    let mut document = Problem::new(cause);
    document.detail = ProblemDetail::new(detail).ok();
    let own = format!("<status>{}</status>", cause.status());
    let text = document.encode().as_str().replacen(
        &own,
        &format!("<status>{}</status>", sent.as_u16()),
        1,
    );
    problem_response(Bytes::from(text), sent, cause)
}

/// A problem response for a bare cause.
pub fn cause(cause: ProblemCause) -> HttpResponse {
    problem(&Problem::new(cause))
}

/// A message response with `status`. The body is the buffer the message was encoded into,
/// handed on without a copy and zeroized when dropped. When `secret` (a key response),
/// `Cache-Control: no-store` is set (RFC 9111 §5.2.2.5), so that no cache keeps the key.
/// The server stack copies the answer into its output buffer, which it wipes once the
/// answer is written; rustls's own buffers (the record being encrypted) are out of this
/// crate's reach.
pub fn message<M: XmlMessage>(code: u16, message: &M, secret: bool) -> HttpResponse {
    let mut response = hyper::Response::new(Full::new(Bytes::from_owner(message.encode())));
    *response.status_mut() = status(code);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(MEDIA_TYPE_XML),
    );
    if secret {
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// An empty response with `code` (204).
pub fn empty(code: u16) -> HttpResponse {
    let mut response = hyper::Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status(code);
    response
}

/// The problem for a request the transport rejected: 413, 429 (the prebuilt document),
/// 400 `malformed` (a bad body, head or request target), and `malformed` with the status
/// that says what happened where e2m-msg has no cause of its own: 408 (RFC 9110
/// §15.5.9), 431 (RFC 6585 §5), 505 (RFC 9110 §15.6.6).
pub fn rejection(rejection: Rejection) -> HttpResponse {
    match rejection {
        Rejection::PayloadTooLarge => cause(ProblemCause::PayloadTooLarge),
        Rejection::RateLimited { .. } => cause(ProblemCause::RateLimited),
        Rejection::BodyTimeout => problem_with_status(
            ProblemCause::Malformed,
            StatusCode::REQUEST_TIMEOUT,
            "the request body did not arrive in time",
        ),
        Rejection::HeadTooLarge => problem_with_status(
            ProblemCause::Malformed,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "the request head is too large",
        ),
        Rejection::VersionNotSupported => problem_with_status(
            ProblemCause::Malformed,
            StatusCode::HTTP_VERSION_NOT_SUPPORTED,
            "only HTTP/1.1 is served",
        ),
        Rejection::BadBody | Rejection::MalformedHead | Rejection::TargetNotOriginForm => {
            cause(ProblemCause::Malformed)
        }
    }
}

/// Whether a request's `Content-Type` is `application/xml` (parameters allowed).
pub fn is_xml(headers: &hyper::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(MEDIA_TYPE_XML))
}
