//! The request heads of a connection, checked on the wire before hyper sees them.
//!
//! hyper answers the errors it finds itself (a duplicate `Content-Length`, a head over its
//! size limit) with a bare 400 or 431 and no body, and `http::Uri` drops a fragment
//! silently, so `POST /e2m/v1/sessions#frag` used to be served (issue 9 item 8). This
//! layer sits between the TLS stream and hyper: it reads each request head itself
//! (httparse, the parser hyper uses), checks it strictly, and hands hyper only heads that
//! pass. A head that does not pass never reaches hyper: in its place hyper gets a *marker*
//! request, `OPTIONS * HTTP/1.1`, and the refusal is queued for the server to answer with
//! a problem document in order, after the responses to the requests before it. A client
//! cannot forge a marker: an asterisk-form target from a client is itself refused here.
//!
//! The per-peer rate limit is checked here too (issue 9 item 3), as soon as a head is
//! complete: an over-limit request is answered through a marker as well, and its body is
//! skipped on the wire without being buffered or parsed, so that a refusal costs a head
//! parse and a prebuilt answer, and the connection stays usable.
//!
//! What a head must be (RFC 9112 §2.2, §3, §6; stricter than hyper where hyper is lenient):
//! - HTTP/1.1 (anything else: 505);
//! - a request target in origin form (RFC 9112 §3.2.1: absolute path and optional query,
//!   RFC 3986 characters only, `%` followed by two hex digits, no fragment) — absolute,
//!   authority and asterisk forms are refused (400);
//! - exactly one `Host` (RFC 9112 §3.2: 400 otherwise);
//! - at most one `Content-Length`, decimal digits only; `Transfer-Encoding` only alone and
//!   only `chunked`, never together with `Content-Length` (RFC 9112 §6.3: 400 otherwise);
//! - at most [`MAX_HEADERS`] header lines and `max_head` octets in all (431 otherwise).
//!
//! To find where the next head starts, the body of each message is followed by its framing
//! (a length, or the chunked coding, RFC 9112 §7.1). Body bytes pass through unchanged;
//! if the chunked coding is broken (an invalid chunk size, a missing CRLF, an overlong
//! extension), the bytes up to the error still reach hyper, then a read error: hyper fails
//! the body at once and the server answers 400 (issue 16: it used to wait for more body
//! until the body timeout). Nothing after the error is read: a message whose end is
//! uncertain is the last one on its connection.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::server::Rejection;

/// Header lines a request may have (hyper's default limit).
pub(crate) const MAX_HEADERS: usize = 100;

/// Octets read from the stream at once.
const READ_SIZE: usize = 8192;

/// Octets a chunk extension, and the trailer section, may have.
const MAX_CHUNK_EXTENSION: usize = 4096;

/// The request hyper gets in place of a refused one. Its target is asterisk-form, which no
/// client request can reach hyper with.
const MARKER: &[u8] = b"OPTIONS * HTTP/1.1\r\n\r\n";

/// A request refused on the wire, to be answered in its place in the sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HeadRefusal {
    /// Why.
    pub rejection: Rejection,
    /// Whether the connection ends after the answer (nothing after the refused head is
    /// read).
    pub close: bool,
}

/// The refusals of one connection, in order; the server takes one for each marker request.
#[derive(Debug, Default)]
pub(crate) struct Refusals(Mutex<VecDeque<HeadRefusal>>);

impl Refusals {
    fn push(&self, refusal: HeadRefusal) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push_back(refusal);
    }

    /// The refusal a marker request stands for.
    pub(crate) fn take(&self) -> Option<HeadRefusal> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop_front()
    }
}

/// Whether a request hyper parsed is a marker (stands for a refusal in [`Refusals`]).
pub(crate) fn is_marker<B>(request: &hyper::Request<B>) -> bool {
    request.method() == hyper::Method::OPTIONS && request.uri() == "*"
}

/// Takes one request from the peer's budget, or says how long until one is available.
pub(crate) type Admit = Box<dyn Fn() -> Result<(), Duration> + Send + Sync>;

/// How a message's body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    /// This many octets (RFC 9112 §6.2).
    Length(u64),
    /// The chunked coding (RFC 9112 §7.1).
    Chunked(Chunked),
}

/// Where the reader is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading a request head.
    Head {
        /// Input already searched for the end of the head.
        searched: usize,
    },
    /// Passing a body through to hyper.
    Body(Framing),
    /// Skipping the body of a refused request.
    Skip(Framing),
    /// The body's chunked coding broke: once hyper has the octets before the error, its
    /// next read fails (and nothing more is read).
    Broken,
    /// Nothing more is read from this connection.
    Closed,
}

/// A connection's byte stream with its request heads checked (see the module docs).
pub(crate) struct CheckedHeads<IO> {
    inner: IO,
    state: State,
    /// Received, not yet handled.
    input: Vec<u8>,
    /// Where reads from the stream land first.
    scratch: Box<[u8; READ_SIZE]>,
    /// Ready for hyper, from `output[given..]`.
    output: Vec<u8>,
    given: usize,
    max_head: usize,
    max_skip: u64,
    refusals: Arc<Refusals>,
    admit: Admit,
    /// Until when this connection's peer is known to be over its budget: requests before
    /// then are refused without asking the limiter (a refused request takes nothing from
    /// the budget, so the earliest admission time only moves later).
    refused_until: Option<Instant>,
}

impl<IO> CheckedHeads<IO> {
    /// Checks the heads read from `inner` (at most `max_head` octets each), asks `admit`
    /// for each request, and skips at most `max_skip` body octets of a refused request
    /// (beyond that, the connection is closed after the refusal).
    pub(crate) fn new(
        inner: IO,
        max_head: usize,
        max_skip: u64,
        refusals: Arc<Refusals>,
        admit: Admit,
    ) -> Self {
        CheckedHeads {
            inner,
            state: State::Head { searched: 0 },
            input: Vec::new(),
            scratch: Box::new([0; READ_SIZE]),
            output: Vec::new(),
            given: 0,
            max_head,
            max_skip,
            refusals,
            admit,
            refused_until: None,
        }
    }

    fn refuse(&mut self, rejection: Rejection, close: bool) {
        self.refusals.push(HeadRefusal { rejection, close });
        self.output.extend_from_slice(MARKER);
        if close {
            self.state = State::Closed;
            self.input.clear();
        }
    }

    fn admit(&mut self) -> Result<(), Duration> {
        let now = Instant::now();
        if let Some(until) = self.refused_until {
            if now < until {
                return Err(until - now);
            }
            self.refused_until = None;
        }
        (self.admit)().inspect_err(|wait| self.refused_until = Some(now + *wait))
    }

    /// Handles as much input as possible, moving what hyper may see to `output`.
    /// Returns whether more input is needed to go on.
    fn process(&mut self) {
        loop {
            match self.state {
                State::Closed | State::Broken => {
                    self.input.clear();
                    return;
                }
                State::Head { searched } => {
                    if !self.head(searched) {
                        return;
                    }
                }
                State::Body(framing) => {
                    let (used, next) = advance(framing, &self.input);
                    self.output.extend_from_slice(&self.input[..used]);
                    self.input.drain(..used);
                    match next {
                        Advance::More(framing) => {
                            self.state = State::Body(framing);
                            return;
                        }
                        Advance::Done => self.state = State::Head { searched: 0 },
                        Advance::Broken => self.state = State::Broken,
                    }
                }
                State::Skip(framing) => {
                    let (used, next) = advance(framing, &self.input);
                    self.input.drain(..used);
                    match next {
                        Advance::More(framing) => {
                            self.state = State::Skip(framing);
                            return;
                        }
                        Advance::Done => self.state = State::Head { searched: 0 },
                        // The refusal was answered with keep-alive; the client's framing
                        // is broken, so nothing after it is read (hyper closes the
                        // connection when its idle timer runs out).
                        Advance::Broken => self.state = State::Closed,
                    }
                }
            }
        }
    }

    /// Tries to complete and check a head; returns whether it did (and the state moved on).
    fn head(&mut self, searched: usize) -> bool {
        // A head can only be complete once a line has ended since the last look: parse
        // again only then, so that a head dribbled one octet at a time is not parsed for
        // every octet (`contains` on octets is a memchr).
        if !self.input[searched..].contains(&b'\n') {
            return self.incomplete_head();
        }
        let parsed = {
            // Uninitialised header slots, as hyper uses: initialising 100 of them for every
            // head was a measurable share of a refusal's cost.
            let mut headers =
                [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
            let mut request = httparse::Request::new(&mut []);
            match request.parse_with_uninit_headers(&self.input, &mut headers) {
                Ok(httparse::Status::Complete(len)) if len <= self.max_head => Ok(Some((
                    len,
                    check(&request),
                    expects_continue(&request),
                    asks_to_close(&request),
                ))),
                Ok(httparse::Status::Complete(_)) | Err(httparse::Error::TooManyHeaders) => {
                    Err(Rejection::HeadTooLarge)
                }
                Ok(httparse::Status::Partial) => Ok(None),
                Err(_) => Err(Rejection::MalformedHead),
            }
        };
        match parsed {
            Ok(Some((len, Ok(framing), expects_continue, close))) => {
                self.admit_head(len, framing, expects_continue, close);
            }
            Ok(Some((_, Err(rejection), _, _))) | Err(rejection) => self.refuse(rejection, true),
            Ok(None) => return self.incomplete_head(),
        }
        true
    }

    fn incomplete_head(&mut self) -> bool {
        if self.input.len() > self.max_head {
            self.refuse(Rejection::HeadTooLarge, true);
            return true;
        }
        self.state = State::Head {
            searched: self.input.len(),
        };
        false
    }

    /// A head that passed the checks: hyper gets it, unless the peer is over its budget.
    /// `close`: the request asked for the connection to end after it (its head, with that
    /// `Connection: close`, is not what hyper sees when it is refused).
    fn admit_head(
        &mut self,
        len: usize,
        framing: Option<Framing>,
        expects_continue: bool,
        close: bool,
    ) {
        match self.admit() {
            Ok(()) => {
                self.output.extend_from_slice(&self.input[..len]);
                self.input.drain(..len);
                self.state = match framing {
                    Some(framing) => State::Body(framing),
                    None => State::Head { searched: 0 },
                };
            }
            Err(wait) => {
                self.input.drain(..len);
                let retry_after_secs = wait.as_secs_f64().ceil().max(1.0) as u64;
                // Skip the body on the wire when its end is known and near; otherwise
                // (chunked, long, or a client waiting for 100-continue, which may never
                // send it) the refusal ends the connection.
                let skip = match framing {
                    _ if close => None,
                    None => Some(None),
                    Some(Framing::Length(n)) if n <= self.max_skip && !expects_continue => {
                        Some(Some(Framing::Length(n)))
                    }
                    Some(_) => None,
                };
                let rejection = Rejection::RateLimited { retry_after_secs };
                match skip {
                    Some(framing) => {
                        self.refuse(rejection, false);
                        self.state = match framing {
                            Some(framing) => State::Skip(framing),
                            None => State::Head { searched: 0 },
                        };
                    }
                    None => self.refuse(rejection, true),
                }
            }
        }
    }
}

/// Whether the request's `Connection` header has the `close` option (RFC 9112 §9.6).
fn asks_to_close(request: &httparse::Request<'_, '_>) -> bool {
    request
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .flat_map(|h| h.value.split(|&b| b == b','))
        .any(|option| option.trim_ascii().eq_ignore_ascii_case(b"close"))
}

fn expects_continue(request: &httparse::Request<'_, '_>) -> bool {
    request
        .headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("expect"))
}

/// The checks of the module docs on a complete head; the body's framing if it has one.
fn check(request: &httparse::Request<'_, '_>) -> Result<Option<Framing>, Rejection> {
    if request.version != Some(1) {
        return Err(Rejection::VersionNotSupported);
    }
    if !request.path.is_some_and(|p| is_origin_form(p.as_bytes())) {
        return Err(Rejection::TargetNotOriginForm);
    }
    let mut hosts = 0;
    let mut length = None;
    let mut chunked = false;
    for header in request.headers.iter() {
        if header.name.eq_ignore_ascii_case("host") {
            hosts += 1;
        } else if header.name.eq_ignore_ascii_case("content-length") {
            let value = header.value;
            if length.is_some()
                || value.is_empty()
                || value.len() > 19
                || !value.iter().all(u8::is_ascii_digit)
            {
                return Err(Rejection::MalformedHead);
            }
            // At most 19 decimal digits: below 2^64, no overflow.
            length = Some(
                value
                    .iter()
                    .fold(0u64, |n, digit| n * 10 + u64::from(digit - b'0')),
            );
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            if chunked || !header.value.eq_ignore_ascii_case(b"chunked") {
                return Err(Rejection::MalformedHead);
            }
            chunked = true;
        }
    }
    if hosts != 1 {
        return Err(Rejection::MalformedHead);
    }
    match (length, chunked) {
        (Some(_), true) => Err(Rejection::MalformedHead),
        (Some(0), false) | (None, false) => Ok(None),
        (Some(n), false) => Ok(Some(Framing::Length(n))),
        (None, true) => Ok(Some(Framing::Chunked(Chunked::default()))),
    }
}

/// RFC 9112 §3.2.1 origin form: `absolute-path [ "?" query ]`, RFC 3986 characters only
/// (pchar, `/`, `?`; `%` followed by two hex digits), hence no fragment.
fn is_origin_form(target: &[u8]) -> bool {
    if target.first() != Some(&b'/') {
        return false;
    }
    let mut i = 0;
    while i < target.len() {
        let b = target[i];
        if ORIGIN_FORM[usize::from(b)] {
            i += 1;
        } else if b == b'%'
            && target.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
            && target.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
        {
            i += 3;
        } else {
            return false;
        }
    }
    true
}

/// The octets that stand for themselves in an origin-form target: RFC 3986 unreserved,
/// sub-delims, `:` `@` (pchar) and `/` `?` (`%` is handled apart). A table, since every
/// octet of every target is looked up.
static ORIGIN_FORM: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'@'
                    | b'/'
                    | b'?'
            );
        b += 1;
    }
    table
};

/// What a step through a body found.
#[derive(Debug, PartialEq, Eq)]
enum Advance {
    /// The body goes on.
    More(Framing),
    /// The body ended (the octets used included its last one).
    Done,
    /// The chunked coding is broken at the octet after those used.
    Broken,
}

/// Steps through `input` as body octets of `framing`: how many belong to the body, and
/// what comes next.
fn advance(framing: Framing, input: &[u8]) -> (usize, Advance) {
    match framing {
        Framing::Length(left) => {
            let used = (input.len() as u64).min(left);
            let left = left - used;
            let next = if left == 0 {
                Advance::Done
            } else {
                Advance::More(Framing::Length(left))
            };
            (used as usize, next)
        }
        Framing::Chunked(mut chunked) => {
            let mut used = 0;
            while used < input.len() {
                if let Chunked::Data { left } = chunked {
                    let take = ((input.len() - used) as u64).min(left);
                    used += take as usize;
                    chunked = if left == take {
                        Chunked::DataCr
                    } else {
                        Chunked::Data { left: left - take }
                    };
                    continue;
                }
                match chunked.step(input[used]) {
                    Some(Chunked::End) => return (used + 1, Advance::Done),
                    Some(next) => chunked = next,
                    None => return (used, Advance::Broken),
                }
                used += 1;
            }
            (used, Advance::More(Framing::Chunked(chunked)))
        }
    }
}

/// The chunked coding (RFC 9112 §7.1), octet by octet, as strictly as hyper's decoder or
/// more: lines end in CRLF, chunk sizes have at most 16 hex digits, extensions and trailer
/// sections are bounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunked {
    /// In a chunk-size: the digits read and the value so far.
    Size {
        digits: u8,
        value: u64,
    },
    /// After the size: whitespace or an extension, up to CR.
    Extension {
        size: u64,
        len: usize,
    },
    /// The LF after a chunk-size line.
    SizeLf {
        size: u64,
    },
    /// Chunk data.
    Data {
        left: u64,
    },
    /// The CRLF after chunk data.
    DataCr,
    DataLf,
    /// The trailer section after the last chunk: a line, `len` octets in.
    Trailer {
        line: usize,
        total: usize,
    },
    /// The LF ending a trailer line (an empty line ends the body).
    TrailerLf {
        empty: bool,
        total: usize,
    },
    /// The body's last octet was read.
    End,
}

impl Default for Chunked {
    fn default() -> Self {
        Chunked::Size {
            digits: 0,
            value: 0,
        }
    }
}

impl Chunked {
    /// The state after `b`, or `None` if `b` breaks the coding.
    fn step(self, b: u8) -> Option<Chunked> {
        Some(match self {
            Chunked::Size { digits, value } => match b {
                _ if b.is_ascii_hexdigit() && digits < 16 => Chunked::Size {
                    digits: digits + 1,
                    value: value * 16 + u64::from(hex_value(b)),
                },
                b'\r' if digits > 0 => Chunked::SizeLf { size: value },
                b';' | b' ' | b'\t' if digits > 0 => Chunked::Extension {
                    size: value,
                    len: 1,
                },
                _ => return None,
            },
            Chunked::Extension { size, len } => match b {
                b'\r' => Chunked::SizeLf { size },
                b'\n' => return None,
                _ if len < MAX_CHUNK_EXTENSION => Chunked::Extension { size, len: len + 1 },
                _ => return None,
            },
            Chunked::SizeLf { size } => match b {
                b'\n' if size == 0 => Chunked::Trailer { line: 0, total: 0 },
                b'\n' => Chunked::Data { left: size },
                _ => return None,
            },
            // Data is consumed in bulk by `advance`; one octet of it here.
            Chunked::Data { left } if left > 1 => Chunked::Data { left: left - 1 },
            Chunked::Data { .. } => Chunked::DataCr,
            Chunked::DataCr if b == b'\r' => Chunked::DataLf,
            Chunked::DataLf if b == b'\n' => Chunked::default(),
            Chunked::Trailer { line, total } => match b {
                b'\r' => Chunked::TrailerLf {
                    empty: line == 0,
                    total,
                },
                b'\n' => return None,
                _ if total < MAX_CHUNK_EXTENSION => Chunked::Trailer {
                    line: line + 1,
                    total: total + 1,
                },
                _ => return None,
            },
            Chunked::TrailerLf { empty, total } if b == b'\n' => {
                if empty {
                    Chunked::End
                } else {
                    Chunked::Trailer { line: 0, total }
                }
            }
            Chunked::DataCr | Chunked::DataLf | Chunked::TrailerLf { .. } | Chunked::End => {
                return None;
            }
        })
    }
}

fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for CheckedHeads<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.given < this.output.len() {
                let n = (this.output.len() - this.given).min(buf.remaining());
                buf.put_slice(&this.output[this.given..this.given + n]);
                this.given += n;
                if this.given == this.output.len() {
                    this.output.clear();
                    this.given = 0;
                }
                return Poll::Ready(Ok(()));
            }
            match this.state {
                // Nothing after a refused head reaches hyper, not even the end of the
                // stream: hyper answers the marker, then closes (the answer says so).
                State::Closed => return Poll::Pending,
                // hyper is reading the body: the error fails it now (the server answers
                // 400 and closes), rather than when the body timeout runs out.
                State::Broken => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "broken chunked coding",
                    )));
                }
                _ => {}
            }
            // The connection's own scratch buffer, zeroed once: zeroing one on the stack
            // for every read (most of which find nothing and return Pending) cost more than
            // the rest of a refusal.
            let mut read = ReadBuf::new(&mut this.scratch[..]);
            match Pin::new(&mut this.inner).poll_read(cx, &mut read) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Ready(Ok(())) if read.filled().is_empty() => {
                    // The end of the stream: hyper sees it once what came before is out.
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Ok(())) => {
                    let n = read.filled().len();
                    this.input.extend_from_slice(&this.scratch[..n]);
                    this.process();
                }
            }
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for CheckedHeads<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]
    use super::*;

    fn parse(head: &[u8]) -> Result<Option<Framing>, Rejection> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(head) {
            Ok(httparse::Status::Complete(_)) => check(&request),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn targets_must_be_origin_form() {
        for ok in [
            &b"/e2m/v1/sessions"[..],
            b"/",
            b"/a?b=c&d=%2F",
            b"/e2m/v1/sessions/AAAA/keys?ue=x%40y:z",
        ] {
            assert!(is_origin_form(ok), "{}", String::from_utf8_lossy(ok));
        }
        for bad in [
            &b"/e2m/v1/sessions#frag"[..],
            b"https://emks/e2m/v1/sessions",
            b"emks:443",
            b"*",
            b"",
            b"/a%2",
            b"/a%zz",
            b"/a b",
            b"/a\"b",
            b"/a{b}",
            b"/a\\b",
        ] {
            assert!(!is_origin_form(bad), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn heads_are_checked() {
        let ok = b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n";
        assert_eq!(parse(ok), Ok(Some(Framing::Length(5))));
        let chunked = b"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n";
        assert_eq!(
            parse(chunked),
            Ok(Some(Framing::Chunked(Chunked::default())))
        );
        assert_eq!(parse(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n"), Ok(None));
        for (bad, why) in [
            (
                &b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"[..],
                Rejection::MalformedHead,
            ),
            (
                b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n",
                Rejection::MalformedHead,
            ),
            (
                b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
                Rejection::MalformedHead,
            ),
            (
                b"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                Rejection::MalformedHead,
            ),
            (b"GET /x HTTP/1.1\r\n\r\n", Rejection::MalformedHead),
            (
                b"GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
                Rejection::MalformedHead,
            ),
            (
                b"GET /x HTTP/1.0\r\nHost: h\r\n\r\n",
                Rejection::VersionNotSupported,
            ),
            (
                b"GET /x#f HTTP/1.1\r\nHost: h\r\n\r\n",
                Rejection::TargetNotOriginForm,
            ),
            (
                b"GET http://h/x HTTP/1.1\r\nHost: h\r\n\r\n",
                Rejection::TargetNotOriginForm,
            ),
            (
                b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
                Rejection::TargetNotOriginForm,
            ),
        ] {
            assert_eq!(parse(bad), Err(why), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn chunked_bodies_end_where_they_end() {
        let body = b"5\r\nhello\r\n3;ext=1\r\nabc\r\n0\r\nX-T: 1\r\n\r\nGET";
        let framing = Framing::Chunked(Chunked::default());
        // In one piece and octet by octet, the body ends before "GET".
        assert_eq!(advance(framing, body), (body.len() - 3, Advance::Done));
        let mut state = framing;
        let mut total = 0;
        for (i, b) in body.iter().enumerate() {
            let (used, next) = advance(state, std::slice::from_ref(b));
            total += used;
            match next {
                Advance::More(f) => state = f,
                Advance::Done => {
                    assert_eq!(i, body.len() - 4);
                    break;
                }
                Advance::Broken => panic!("broken at {i}"),
            }
        }
        assert_eq!(total, body.len() - 3);
        for broken in [
            &b"x\r\n"[..],
            b"5\nhello\r\n",
            b"5\r\nhelloXX",
            b"11111111111111111\r\n",
            b"0\r\nX-T: 1\n",
        ] {
            assert!(
                matches!(advance(framing, broken).1, Advance::Broken),
                "{}",
                String::from_utf8_lossy(broken)
            );
        }
    }

    #[test]
    fn lengths_end_where_they_end() {
        assert_eq!(advance(Framing::Length(3), b"abcdef"), (3, Advance::Done));
        assert_eq!(
            advance(Framing::Length(10), b"abc"),
            (3, Advance::More(Framing::Length(7)))
        );
    }
}
