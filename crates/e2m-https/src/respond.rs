//! Building responses of the REST binding: messages and RFC 9457 problem documents from
//! `e2m-msg`, with the headers the binding requires.

use e2m_msg::rest::{MEDIA_TYPE_PROBLEM_XML, MEDIA_TYPE_XML};
use e2m_msg::{Problem, ProblemCause, XmlMessage};
use http_body_util::Full;
use hyper::StatusCode;
use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};

use super::server::{HttpResponse, Rejection};

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// A problem response: the document, `Content-Type: application/problem+xml`, and the
/// cause's status.
pub fn problem(problem: &Problem) -> HttpResponse {
    let body = problem.encode();
    let mut response = hyper::Response::new(Full::new(Bytes::copy_from_slice(body.as_bytes())));
    *response.status_mut() = status(problem.status());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(MEDIA_TYPE_PROBLEM_XML),
    );
    // For observers (crate::metrics): the cause travels with the response, not on the wire.
    response.extensions_mut().insert(problem.cause);
    response
}

/// A problem response for a bare cause.
pub fn cause(cause: ProblemCause) -> HttpResponse {
    problem(&Problem::new(cause))
}

/// A message response with `status`. When `secret` (a key response), the body buffer we
/// encoded into is zeroized on drop and `Cache-Control: no-store` is set (RFC 9111
/// §5.2.2.5), so that no cache keeps the key. The copy handed to hyper is freed without
/// clearing: hyper and rustls keep their own buffers, which this crate cannot reach.
pub fn message<M: XmlMessage>(code: u16, message: &M, secret: bool) -> HttpResponse {
    let encoded = message.encode();
    let mut response = hyper::Response::new(Full::new(Bytes::copy_from_slice(encoded.as_bytes())));
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

/// The problem for a request the transport rejected (413, 429, 408 → `malformed`, 400).
pub fn rejection(rejection: Rejection) -> HttpResponse {
    match rejection {
        Rejection::PayloadTooLarge => cause(ProblemCause::PayloadTooLarge),
        Rejection::RateLimited { .. } => cause(ProblemCause::RateLimited),
        Rejection::BodyTimeout => {
            // e2m-msg has no "timeout" cause: the request is incomplete, i.e. malformed, but
            // the status says what happened (RFC 9110 §15.5.9).
            let mut response = cause(ProblemCause::Malformed);
            *response.status_mut() = StatusCode::REQUEST_TIMEOUT;
            response
        }
        Rejection::BadBody => cause(ProblemCause::Malformed),
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
