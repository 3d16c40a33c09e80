//! Responses of the binding: JSON bodies, TS 29.500 problem documents
//! (`application/problem+json`, TS 29.500 §5.2.7), and the answers to the stack's own
//! refusals.

use e2m_akma::{ProblemDetails, cause};
use http_body_util::Full;
use hyper::StatusCode;
use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};
use zeroize::Zeroizing;

use crate::server::{HttpResponse, Rejection};

/// `application/json`.
pub const MEDIA_TYPE_JSON: &str = "application/json";

/// A body buffer wiped when hyper drops its last reference (the copies h2 and rustls make
/// in their own buffers are beyond this crate's reach).
struct Wiped(Zeroizing<Vec<u8>>);

impl AsRef<[u8]> for Wiped {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// `body` as `Bytes` that wipe it when the last reference goes (a request or answer that
/// may hold a key).
pub(crate) fn wiped_bytes(body: Zeroizing<Vec<u8>>) -> Bytes {
    Bytes::from_owner(Wiped(body))
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// A JSON answer with `code`. With `secret` (a body holding K_AKMA or K_AF), the buffer is
/// wiped when dropped and `Cache-Control: no-store` is set (RFC 9111 §5.2.2.5), so that no
/// cache on the way keeps the key.
pub fn json(code: u16, body: Zeroizing<Vec<u8>>, secret: bool) -> HttpResponse {
    let mut response = hyper::Response::new(Full::new(wiped_bytes(body)));
    *response.status_mut() = status(code);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(MEDIA_TYPE_JSON),
    );
    if secret {
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// An answer without a body (204).
pub fn empty(code: u16) -> HttpResponse {
    let mut response = hyper::Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status(code);
    response
}

/// A problem document with the status of `details` (500 if it has none).
pub fn problem(details: &ProblemDetails) -> HttpResponse {
    let mut response = hyper::Response::new(Full::new(Bytes::from(details.to_json())));
    *response.status_mut() = status(details.status.unwrap_or(500));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(ProblemDetails::MEDIA_TYPE),
    );
    response
}

/// A problem document with `code`, a title and, if given, a TS 29.500 cause.
pub fn problem_with(code: u16, title: &str, cause: Option<&str>) -> HttpResponse {
    let mut details = ProblemDetails::new(code, cause);
    details.title = Some(title.into());
    problem(&details)
}

/// The answer to a request the stack refused itself: 413, 429 `NF_CONGESTION_RISK`
/// (TS 29.500 Table 5.2.7.2-1), 408, 400 `INVALID_MSG_FORMAT`, 431 and 505, each a problem
/// document.
pub fn rejection(rejection: Rejection) -> HttpResponse {
    let code = rejection.status().as_u16();
    match rejection {
        Rejection::PayloadTooLarge => problem_with(code, "Payload Too Large", None),
        Rejection::RateLimited { .. } => {
            problem_with(code, "Too Many Requests", Some(cause::NF_CONGESTION_RISK))
        }
        Rejection::BodyTimeout => problem_with(code, "Request Timeout", None),
        Rejection::BadBody => problem_with(code, "Bad Request", Some(cause::INVALID_MSG_FORMAT)),
        Rejection::HeadersTooLarge => problem_with(code, "Request Header Fields Too Large", None),
        Rejection::Http11 => {
            let mut details = ProblemDetails::new(code, None);
            details.title = Some("HTTP Version Not Supported".into());
            details.detail = Some("the service-based interface is served over HTTP/2 only".into());
            problem(&details)
        }
    }
}
