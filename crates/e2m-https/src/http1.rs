//! HTTP/1.1 (RFC 9112), server side, over one authenticated connection of the stack: the
//! requests of a connection, one after another, each read, answered and written here.
//!
//! Why not hyper (which served this until issue 20): every head was already parsed and
//! checked by [`super::request_head`] before hyper parsed it again, and the profile of a
//! served key fetch found hyper's parse, dispatch (a request future moved into its state,
//! a body channel) and request building a third of the server's user time, where the
//! fetch itself (session, identity, key, KDF, XML) took less. What hyper did for the stack
//! is here, each with its bound:
//!
//! - the head within [`Limits::header_timeout`] of the moment the connection waits for it
//!   (after the handshake, or after the previous answer was written), which also closes
//!   idle keep-alive connections; at most [`Limits::max_header_bytes`] octets;
//! - the body by its framing, at most [`Limits::max_body`] octets, within
//!   [`Limits::body_timeout`]; `100 Continue` sent before it is read when the client waits
//!   for one (RFC 9110 §10.1.1), never before a 413;
//! - pipelined requests answered in order (RFC 9112 §9.3.2): what follows a request in the
//!   input stays there for the next round;
//! - the answer: status line, the handler's headers, `Content-Length` (none for 1xx and
//!   204, RFC 9110 §8.6), `Date` (RFC 9110 §6.6.1), `Connection: close` when the
//!   connection ends after it; no body for `HEAD` (RFC 9110 §9.3.2); written whole,
//!   within [`Limits::header_timeout`];
//! - the end: on the client's request (`Connection: close`), after an answer that closes,
//!   at the head timeout, on the client's end of stream, and at shutdown (an idle
//!   connection at once, a busy one after its answer). Whichever way, dropping the stream
//!   sends `close_notify` (see [`super::closing`]).
//!
//! Buffers: one input buffer per connection, grown by copy-then-wipe and wiped when the
//! connection ends (it held session ids and, for HSS pushes, keys), and one output buffer,
//! wiped after each answer (it held the answer's keys).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use hyper::body::{Body as _, Bytes};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, StatusCode, Uri};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Sleep;
use zeroize::Zeroize;

use super::request_head::{
    Advance, Framing, Head, HeadStatus, advance, decode, has_close_option, parse_head,
};
use super::server::{Handler, HttpResponse, Limits, Rejection, Request};
use crate::pki::PeerIdentity;

/// The input buffer's first size, and the least room a read is given.
const READ_SIZE: usize = 8192;

/// The largest declared body that a 413 still reads (and discards) before answering, so
/// that the client can finish sending and read the answer (RFC 9112 §9.6).
const LINGER_BODY_MAX: u64 = 256 * 1024;

/// The interim answer to a client that waits before sending its body.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// What the requests of one connection are served with.
pub(crate) struct Exchange<'a, H> {
    /// Answers the requests.
    pub(crate) handler: &'a H,
    /// The bounds.
    pub(crate) limits: &'a Limits,
    /// Who the peer is (from its verified certificate).
    pub(crate) peer: &'a PeerIdentity,
    /// The hosts its certificate names.
    pub(crate) peer_hosts: &'a Arc<[e2m_emks::CallbackHost]>,
    /// Takes one request from the peer's budget, or says how long until one is available.
    pub(crate) admit: &'a (dyn Fn() -> Result<(), Duration> + Send + Sync),
}

/// Serves the requests of `io` until the connection ends (see the module docs); `stop`
/// turns true when the server is shutting down.
pub(crate) async fn serve<IO, H>(io: IO, exchange: Exchange<'_, H>, mut stop: watch::Receiver<bool>)
where
    IO: AsyncRead + AsyncWrite + Unpin,
    H: Handler,
{
    let limits = exchange.limits;
    let mut wire = Wire {
        io,
        input: Vec::with_capacity(READ_SIZE),
        searched: 0,
        output: Vec::new(),
        refused_until: None,
    };
    // One timer for the connection, moved to each new deadline (a head, a body, a write)
    // rather than one registered per wait.
    let deadline = tokio::time::sleep(limits.header_timeout);
    tokio::pin!(deadline);
    loop {
        // The head's deadline is set when the connection first has to wait for it: a
        // busy server usually finds the next request already there, and then reads no
        // clock and moves no timer for it.
        let mut waiting = false;
        let next = loop {
            if let Some(next) = wire.next_head(&exchange) {
                break next;
            }
            if !waiting {
                let read = wire.read_more();
                tokio::pin!(read);
                let first = std::future::poll_fn(|cx| Poll::Ready(read.as_mut().poll(cx)));
                if let Poll::Ready(read) = first.await {
                    if !matches!(read, Ok(1..)) {
                        return;
                    }
                    continue;
                }
                waiting = true;
                deadline
                    .as_mut()
                    .reset(tokio::time::Instant::now() + limits.header_timeout);
            }
            // Shutting down: a connection waiting for a new request ends now; one in the
            // middle of a head gets its answer.
            let idle = wire.input.is_empty();
            let read = tokio::select! {
                biased;
                read = wire.read_more() => read,
                () = deadline.as_mut() => return,
                _ = stop.wait_for(|stopped| *stopped), if idle => return,
            };
            if !matches!(read, Ok(1..)) {
                return;
            }
        };
        let (response, head_only, close) = match next {
            Next::Refused {
                rejection,
                close,
                skip,
            } => {
                let close = close || *stop.borrow();
                let response = refusal(exchange.handler, exchange.peer, rejection, close);
                if !wire
                    .respond(response, false, close, deadline.as_mut(), limits)
                    .await
                    || close
                {
                    return;
                }
                if let Some(framing) = skip {
                    // The refused request's body is skipped on the wire, in the time its
                    // next head has.
                    deadline
                        .as_mut()
                        .reset(tokio::time::Instant::now() + limits.header_timeout);
                    if !wire.discard(framing, deadline.as_mut()).await {
                        return;
                    }
                }
                continue;
            }
            Next::Request(head, parts) => {
                let started = tracing::enabled!(tracing::Level::DEBUG).then(Instant::now);
                let method = parts.method.clone();
                let body = wire.body(&head, limits, deadline.as_mut()).await;
                let (response, close) = match body {
                    Ok(body) => {
                        let request = Request {
                            peer: exchange.peer.clone(),
                            peer_hosts: exchange.peer_hosts.clone(),
                            method: parts.method,
                            uri: parts.uri,
                            headers: parts.headers,
                            body,
                        };
                        (exchange.handler.handle(request).await, head.close)
                    }
                    Err(rejection) => {
                        super::server::audit_rejection(exchange.peer, rejection);
                        // The rest of the body was not read: the connection cannot be
                        // reused.
                        (exchange.handler.reject(rejection), true)
                    }
                };
                if let Some(started) = started {
                    tracing::debug!(
                        peer = %exchange.peer,
                        %method,
                        status = response.status().as_u16(),
                        micros = started.elapsed().as_micros() as u64,
                        "request"
                    );
                }
                (response, method == Method::HEAD, close)
            }
        };
        let close = close || *stop.borrow() || asks_to_close(response.headers());
        if !wire
            .respond(response, head_only, close, deadline.as_mut(), limits)
            .await
            || close
        {
            return;
        }
    }
}

/// The answer to a request the stack refused: the handler's problem for it, with
/// `Retry-After` for a rate limit, and `Connection: close` when nothing after it is read.
fn refusal<H: Handler>(
    handler: &H,
    peer: &PeerIdentity,
    rejection: Rejection,
    close: bool,
) -> HttpResponse {
    super::server::audit_rejection(peer, rejection);
    let mut response = handler.reject(rejection);
    if let Rejection::RateLimited { retry_after_secs } = rejection {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
    }
    if close {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// What comes next on a connection.
#[allow(
    clippy::large_enum_variant,
    reason = "made once per request and taken apart at once; boxing would allocate per request"
)]
enum Next {
    /// A request that passed the checks and the rate limit; its body is still to be read.
    Request(Head, Parts),
    /// A request answered without the handler: `close` ends the connection after the
    /// answer; otherwise the body `skip` frames (if any) is skipped first.
    Refused {
        rejection: Rejection,
        close: bool,
        skip: Option<Framing>,
    },
}

/// A request's method, target and headers, built from the one parse of its head.
struct Parts {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

impl Parts {
    /// The parts of `request`, parsed from `head` (the head's octets: every slice of
    /// `request` lies in it). The head is copied once; the target and the header values
    /// are views of that copy.
    fn of(request: &httparse::Request<'_, '_>, head: &[u8]) -> Result<Parts, Rejection> {
        let shared = Bytes::copy_from_slice(head);
        let base = head.as_ptr() as usize;
        // Where a slice of the head lies in `shared`.
        let view = |slice: &[u8]| {
            let at = (slice.as_ptr() as usize).wrapping_sub(base);
            let range = at..at.checked_add(slice.len())?;
            shared.get(range.clone()).map(|_| shared.slice(range))
        };
        let method = request
            .method
            .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
            .ok_or(Rejection::MalformedHead)?;
        let uri = request
            .path
            .and_then(|p| view(p.as_bytes()))
            .and_then(|p| Uri::from_maybe_shared(p).ok())
            .ok_or(Rejection::TargetNotOriginForm)?;
        let mut headers = HeaderMap::with_capacity(request.headers.len());
        for h in request.headers.iter() {
            let name =
                HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| Rejection::MalformedHead)?;
            let value = view(h.value)
                .and_then(|v| HeaderValue::from_maybe_shared(v).ok())
                .ok_or(Rejection::MalformedHead)?;
            headers.append(name, value);
        }
        Ok(Parts {
            method,
            uri,
            headers,
        })
    }
}

/// The connection's stream and buffers.
struct Wire<IO> {
    io: IO,
    /// Received, not yet handled, from its start.
    input: Vec<u8>,
    /// How much of `input` the head search already looked at.
    searched: usize,
    /// An answer being written.
    output: Vec<u8>,
    /// Until when the peer is known to be over its budget: requests before then are
    /// refused without asking the limiter (a refused request takes nothing from the
    /// budget, so the earliest admission time only moves later).
    refused_until: Option<Instant>,
}

impl<IO: AsyncRead + AsyncWrite + Unpin> Wire<IO> {
    /// The next request, if its head is in the input: checked, admitted (or refused) and
    /// taken off the input.
    fn next_head<H>(&mut self, exchange: &Exchange<'_, H>) -> Option<Next> {
        let max_head = exchange.limits.max_header_bytes;
        let status = parse_head(
            &self.input,
            &mut self.searched,
            max_head,
            |head, request| {
                admit(&mut self.refused_until, exchange.admit)
                    .map(|()| Parts::of(request, &self.input[..head.len]))
            },
        );
        let refused = |rejection| Next::Refused {
            rejection,
            close: true,
            skip: None,
        };
        // The octets of the head to take off the input (none when the connection ends
        // after the answer: nothing more is read).
        let (next, taken) = match status {
            HeadStatus::Partial => return None,
            HeadStatus::Refused(rejection) | HeadStatus::Complete(_, Ok(Err(rejection))) => {
                (refused(rejection), None)
            }
            HeadStatus::Complete(head, Ok(Ok(parts))) => {
                (Next::Request(head, parts), Some(head.len))
            }
            HeadStatus::Complete(head, Err(wait)) => {
                let retry_after_secs = wait.as_secs_f64().ceil().max(1.0) as u64;
                let rejection = Rejection::RateLimited { retry_after_secs };
                // Skip the body on the wire when its end is known and near; otherwise
                // (chunked, long, or a client waiting for 100-continue, which may never
                // send it) the refusal ends the connection.
                match head.framing {
                    _ if head.close => (refused(rejection), None),
                    None => (
                        Next::Refused {
                            rejection,
                            close: false,
                            skip: None,
                        },
                        Some(head.len),
                    ),
                    Some(Framing::Length(n))
                        if n <= exchange.limits.max_body as u64 && !head.expects_continue =>
                    {
                        (
                            Next::Refused {
                                rejection,
                                close: false,
                                skip: Some(Framing::Length(n)),
                            },
                            Some(head.len),
                        )
                    }
                    Some(_) => (refused(rejection), None),
                }
            }
        };
        if let Some(len) = taken {
            self.input.drain(..len);
            self.searched = 0;
        }
        Some(next)
    }

    /// Reads more input (at least one octet, or 0 at the end of the stream).
    async fn read_more(&mut self) -> io::Result<usize> {
        if self.input.capacity() - self.input.len() < READ_SIZE / 8 {
            let wanted = (self.input.capacity() * 2).max(READ_SIZE);
            grow_wiping(&mut self.input, wanted);
        }
        self.io.read_buf(&mut self.input).await
    }

    /// The body of the request `head` heads, read whole under the body timeout, or why not.
    async fn body(
        &mut self,
        head: &Head,
        limits: &Limits,
        mut deadline: Pin<&mut Sleep>,
    ) -> Result<Bytes, Rejection> {
        let Some(framing) = head.framing else {
            return Ok(Bytes::new());
        };
        deadline
            .as_mut()
            .reset(tokio::time::Instant::now() + limits.body_timeout);
        if let Framing::Length(declared) = framing
            && declared > limits.max_body as u64
        {
            // A client may already be sending the body: closing the connection with unread
            // octets resets it, and the client sees a broken pipe instead of the 413
            // (lingering close). A body up to LINGER_BODY_MAX is read and discarded, never
            // kept, within the body timeout; a larger one is refused at once. A client that
            // waits for `100 Continue` sends nothing before our answer: it gets the 413 at
            // once, and no `100 Continue` before it.
            if declared <= LINGER_BODY_MAX && !head.expects_continue {
                self.discard(framing, deadline).await;
            }
            return Err(Rejection::PayloadTooLarge);
        }
        if head.expects_continue && !write(&mut self.io, CONTINUE, deadline.as_mut(), None).await {
            return Err(Rejection::BadBody);
        }
        let max_body = limits.max_body;
        let mut body = match framing {
            // At most max_body: checked above.
            Framing::Length(n) => Vec::with_capacity(n as usize),
            Framing::Chunked(_) => Vec::new(),
        };
        let mut framing = framing;
        loop {
            let mut over = false;
            let (used, next) = decode(framing, &self.input, |data| {
                if body.len() + data.len() > max_body {
                    over = true;
                } else {
                    if body.capacity() - body.len() < data.len() {
                        let wanted = (body.len() + data.len()).max(body.capacity() * 2);
                        grow_wiping(&mut body, wanted.min(max_body));
                    }
                    body.extend_from_slice(data);
                }
            });
            self.input.drain(..used);
            if over {
                body.zeroize();
                return Err(Rejection::PayloadTooLarge);
            }
            match next {
                Advance::Done => return Ok(Bytes::from(body)),
                Advance::Broken => {
                    body.zeroize();
                    return Err(Rejection::BadBody);
                }
                Advance::More(rest) => framing = rest,
            }
            let read = tokio::select! {
                biased;
                read = self.read_more() => read,
                () = deadline.as_mut() => {
                    body.zeroize();
                    return Err(Rejection::BodyTimeout);
                }
            };
            if !matches!(read, Ok(1..)) {
                body.zeroize();
                return Err(Rejection::BadBody);
            }
        }
    }

    /// Reads and drops a body of `framing` until its end; whether it ended (false: the
    /// deadline passed, the stream ended, or the coding broke).
    async fn discard(&mut self, mut framing: Framing, mut deadline: Pin<&mut Sleep>) -> bool {
        loop {
            let (used, next) = advance(framing, &self.input);
            self.input.drain(..used);
            match next {
                Advance::Done => return true,
                Advance::Broken => return false,
                Advance::More(rest) => framing = rest,
            }
            let read = tokio::select! {
                biased;
                read = self.read_more() => read,
                () = deadline.as_mut() => return false,
            };
            if !matches!(read, Ok(1..)) {
                return false;
            }
        }
    }

    /// Writes `response` (without its body for `head_only`, with `Connection: close` for
    /// `close`) under the head timeout; whether it was written.
    async fn respond(
        &mut self,
        response: HttpResponse,
        head_only: bool,
        close: bool,
        deadline: Pin<&mut Sleep>,
        limits: &Limits,
    ) -> bool {
        let (parts, body) = response.into_parts();
        let body = full_body(body);
        encode(&mut self.output, &parts, &body, head_only, close);
        let written = write(
            &mut self.io,
            &self.output,
            deadline,
            Some(limits.header_timeout),
        )
        .await;
        self.output.zeroize();
        written
    }
}

/// Writes and flushes `octets` to `io` before `deadline`, or, with `within`, within that
/// long of the moment the write has to wait; whether it did.
async fn write<IO: AsyncWrite + Unpin>(
    io: &mut IO,
    octets: &[u8],
    mut deadline: Pin<&mut Sleep>,
    within: Option<Duration>,
) -> bool {
    let write = async move {
        io.write_all(octets).await?;
        io.flush().await
    };
    tokio::pin!(write);
    // Most answers fit in the socket's buffer: written at the first poll, they need
    // no deadline (and no clock read to set one).
    let first = std::future::poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx)));
    if let Poll::Ready(written) = first.await {
        return written.is_ok();
    }
    if let Some(within) = within {
        deadline
            .as_mut()
            .reset(tokio::time::Instant::now() + within);
    }
    tokio::select! {
        biased;
        written = write => written.is_ok(),
        () = deadline => false,
    }
}

impl<IO> Drop for Wire<IO> {
    fn drop(&mut self) {
        self.input.zeroize();
        self.output.zeroize();
    }
}

/// Takes one request from the budget (see [`Wire::refused_until`]).
fn admit(
    refused_until: &mut Option<Instant>,
    admit: &(dyn Fn() -> Result<(), Duration> + Send + Sync),
) -> Result<(), Duration> {
    // The clock is read only when the peer was refused before (the limiter keeps its own):
    // a clock read is tens of nanoseconds in a virtual machine, on every request.
    if let Some(until) = *refused_until {
        let now = Instant::now();
        if now < until {
            return Err(until - now);
        }
        *refused_until = None;
    }
    admit().inspect_err(|wait| *refused_until = Some(Instant::now() + *wait))
}

/// Moves `buffer` into a new allocation of at least `capacity` octets and wipes the old
/// one (growing a `Vec` in place would free the old allocation as it is).
fn grow_wiping(buffer: &mut Vec<u8>, capacity: usize) {
    let mut grown = Vec::with_capacity(capacity.max(buffer.len()));
    grown.extend_from_slice(buffer);
    buffer.zeroize();
    *buffer = grown;
}

/// The octets of a complete body (the stack's bodies are `Full`: one data frame, or none).
fn full_body(mut body: http_body_util::Full<Bytes>) -> Bytes {
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    match Pin::new(&mut body).poll_frame(&mut context) {
        Poll::Ready(Some(Ok(frame))) => frame.into_data().unwrap_or_default(),
        _ => Bytes::new(),
    }
}

/// Whether the `Connection` header has the `close` option.
fn asks_to_close(headers: &HeaderMap) -> bool {
    has_close_option(
        headers
            .get_all(header::CONNECTION)
            .iter()
            .map(HeaderValue::as_bytes),
    )
}

/// Writes an answer into `output` (emptied first): status line, headers, then the body
/// unless `head_only`.
fn encode(
    output: &mut Vec<u8>,
    parts: &hyper::http::response::Parts,
    body: &[u8],
    head_only: bool,
    close: bool,
) {
    output.clear();
    let status = parts.status;
    output.extend_from_slice(b"HTTP/1.1 ");
    output.extend_from_slice(status.as_str().as_bytes());
    output.push(b' ');
    output.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    output.extend_from_slice(b"\r\n");
    let mut has_date = false;
    let mut has_close = false;
    for (name, value) in &parts.headers {
        // The framing is ours to say (the body is whole).
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            continue;
        }
        has_date |= name == header::DATE;
        has_close |= name == header::CONNECTION;
        output.extend_from_slice(name.as_str().as_bytes());
        output.extend_from_slice(b": ");
        output.extend_from_slice(value.as_bytes());
        output.extend_from_slice(b"\r\n");
    }
    // RFC 9110 §8.6: no Content-Length in a 1xx or 204 answer.
    let bodyless = status.is_informational() || status == StatusCode::NO_CONTENT;
    if !bodyless {
        use std::io::Write as _;
        // Writing into a `Vec` cannot fail.
        let _ = write!(output, "content-length: {}\r\n", body.len());
    }
    if !has_date {
        output.extend_from_slice(b"date: ");
        output.extend_from_slice(&http_date());
        output.extend_from_slice(b"\r\n");
    }
    if close && !has_close {
        output.extend_from_slice(b"connection: close\r\n");
    }
    output.extend_from_slice(b"\r\n");
    if !head_only && !bodyless {
        output.extend_from_slice(body);
    }
}

/// The current time as an IMF-fixdate (RFC 9110 §5.6.7), formatted once a second per
/// thread.
fn http_date() -> [u8; 29] {
    use std::cell::Cell;
    use std::time::SystemTime;
    thread_local! {
        static CACHED: Cell<(u64, [u8; 29])> = const { Cell::new((u64::MAX, [0; 29])) };
    }
    let now = SystemTime::now();
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    CACHED.with(|cached| {
        let (at, date) = cached.get();
        if at == secs {
            return date;
        }
        let mut formatted = [0u8; 29];
        let text = httpdate::fmt_http_date(now);
        if let Some(place) = formatted.get_mut(..text.len()) {
            place.copy_from_slice(text.as_bytes());
        }
        cached.set((secs, formatted));
        formatted
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use http_body_util::Full;

    fn encoded(response: HttpResponse, head_only: bool, close: bool) -> String {
        let (parts, body) = response.into_parts();
        let mut out = b"left over".to_vec();
        encode(&mut out, &parts, &full_body(body), head_only, close);
        String::from_utf8(out).unwrap()
    }

    fn response(status: u16, body: &'static str) -> HttpResponse {
        let mut r = hyper::Response::new(Full::new(Bytes::from_static(body.as_bytes())));
        *r.status_mut() = StatusCode::from_u16(status).unwrap();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/xml"),
        );
        r
    }

    #[test]
    fn answers_are_framed_by_their_length_and_dated() {
        let text = encoded(response(200, "<a/>"), false, false);
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let mut lines = head.split("\r\n");
        assert_eq!(lines.next(), Some("HTTP/1.1 200 OK"));
        let lines: Vec<&str> = lines.collect();
        assert!(lines.contains(&"content-type: application/xml"));
        assert!(lines.contains(&"content-length: 4"));
        let date = lines.iter().find_map(|l| l.strip_prefix("date: ")).unwrap();
        assert!(httpdate::parse_http_date(date).is_ok(), "{date}");
        assert!(!head.contains("connection"));
        assert_eq!(body, "<a/>");
    }

    #[test]
    fn head_answers_keep_the_length_but_not_the_body_and_204_has_neither() {
        let text = encoded(response(405, "<problem/>"), true, true);
        assert!(text.contains("content-length: 10\r\n"));
        assert!(text.contains("connection: close\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
        let text = encoded(response(204, ""), false, false);
        assert!(text.starts_with("HTTP/1.1 204 No Content\r\n"));
        assert!(!text.contains("content-length"));
    }

    #[test]
    fn the_handlers_framing_headers_are_replaced() {
        let mut r = response(200, "abc");
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("99"));
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        let text = encoded(r, false, true);
        assert_eq!(text.matches("content-length").count(), 1);
        assert!(text.contains("content-length: 3\r\n"));
        assert_eq!(text.matches("connection").count(), 1);
    }

    #[test]
    fn parts_are_views_of_one_copy_of_the_head() {
        let head = b"GET /e2m/v1/x?ue=a%40b HTTP/1.1\r\nHost: emks\r\nX-Y: z\r\n\r\n";
        let mut searched = 0;
        let HeadStatus::Complete(h, parts) = parse_head(head, &mut searched, 1024, |h, r| {
            Parts::of(r, &head[..h.len])
        }) else {
            unreachable!()
        };
        let parts = parts.unwrap();
        assert_eq!(h.len, head.len());
        assert_eq!(parts.method, Method::GET);
        assert_eq!(parts.uri.path(), "/e2m/v1/x");
        assert_eq!(parts.uri.query(), Some("ue=a%40b"));
        assert_eq!(parts.headers["host"], "emks");
        assert_eq!(parts.headers["x-y"], "z");
    }
}
