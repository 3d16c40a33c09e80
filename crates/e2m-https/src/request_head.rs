//! Request heads and bodies as RFC 9112 frames them, checked strictly: the parsing half of
//! the stack's HTTP/1.1 ([`super::http1`] does the I/O).
//!
//! Why our own checks, and since issue 20 our own HTTP/1.1: hyper answered the errors it
//! found itself (a duplicate `Content-Length`, a head over its size limit) with a bare 400
//! or 431 and no body, and `http::Uri` drops a fragment silently, so `POST
//! /e2m/v1/sessions#frag` used to be served (issue 9 item 8). The heads were therefore
//! parsed and checked here first and then parsed again by hyper; the profile of a key fetch
//! (issue 20) found hyper's parse, dispatch and request building a third of the server's
//! user time. Now each head is parsed once (httparse), checked here, and the request built
//! from that one parse.
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
//! Bodies are followed by their framing (a length, or the chunked coding, RFC 9112 §7.1),
//! octet by octet for the chunked coding, with bounded chunk sizes, extensions and
//! trailers; a broken coding is reported where it breaks, and nothing after it is read.

use super::server::Rejection;

/// Header lines a request may have (hyper's default limit).
pub(crate) const MAX_HEADERS: usize = 100;

/// Octets a chunk extension, and the trailer section, may have.
const MAX_CHUNK_EXTENSION: usize = 4096;

/// How a message's body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// This many octets (RFC 9112 §6.2).
    Length(u64),
    /// The chunked coding (RFC 9112 §7.1).
    Chunked(Chunked),
}

/// What a complete head that passed the checks says about its message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Head {
    /// Octets of the head, its empty line included.
    pub(crate) len: usize,
    /// The body's framing; `None`: no body.
    pub(crate) framing: Option<Framing>,
    /// The client waits for `100 Continue` before it sends the body (RFC 9110 §10.1.1).
    pub(crate) expects_continue: bool,
    /// The request asked for the connection to end after it (RFC 9112 §9.6).
    pub(crate) close: bool,
}

/// What [`parse_head`] found at the start of the input.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HeadStatus<T> {
    /// No complete head yet: read more.
    Partial,
    /// A head that must not be served (the connection ends after the answer).
    Refused(Rejection),
    /// A head that passed the checks, and what `then` made of it.
    Complete(Head, T),
}

/// Looks for a complete request head at the start of `input`, at most `max_head` octets,
/// and checks it (see the module docs); `then` gets a head that passed, with httparse's
/// view of it (borrowing `input`), to take what it needs.
///
/// `searched`: how much of `input` an earlier call already looked at. A head can only be
/// complete once a line has ended since then, so it is parsed again only then: a head
/// dribbled one octet at a time is not parsed for every octet. Set to 0 after a head is
/// taken off the input.
pub(crate) fn parse_head<T>(
    input: &[u8],
    searched: &mut usize,
    max_head: usize,
    then: impl FnOnce(&Head, &httparse::Request<'_, '_>) -> T,
) -> HeadStatus<T> {
    let from = (*searched).min(input.len());
    if !input[from..].contains(&b'\n') {
        return incomplete(input, searched, max_head);
    }
    // Uninitialised header slots, as hyper uses: initialising 100 of them for every head
    // was a measurable share of a refusal's cost.
    let mut headers =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut []);
    match request.parse_with_uninit_headers(input, &mut headers) {
        Ok(httparse::Status::Complete(len)) if len <= max_head => match check(&request) {
            Ok(framing) => {
                let head = Head {
                    len,
                    framing,
                    expects_continue: expects_continue(&request),
                    close: asks_to_close(&request),
                };
                let made = then(&head, &request);
                HeadStatus::Complete(head, made)
            }
            Err(rejection) => HeadStatus::Refused(rejection),
        },
        Ok(httparse::Status::Complete(_)) | Err(httparse::Error::TooManyHeaders) => {
            HeadStatus::Refused(Rejection::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) => incomplete(input, searched, max_head),
        Err(_) => HeadStatus::Refused(Rejection::MalformedHead),
    }
}

fn incomplete<T>(input: &[u8], searched: &mut usize, max_head: usize) -> HeadStatus<T> {
    if input.len() > max_head {
        return HeadStatus::Refused(Rejection::HeadTooLarge);
    }
    *searched = input.len();
    HeadStatus::Partial
}

/// Whether the request's `Connection` header has the `close` option (RFC 9112 §9.6).
fn asks_to_close(request: &httparse::Request<'_, '_>) -> bool {
    has_close_option(
        request
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("connection"))
            .map(|h| h.value),
    )
}

/// Whether `Connection` header values (comma-separated options, RFC 9110 §7.6.1) include
/// `close`, in any case.
pub(crate) fn has_close_option<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> bool {
    values
        .into_iter()
        .flat_map(|value| value.split(|&b| b == b','))
        .any(|option| option.trim_ascii().eq_ignore_ascii_case(b"close"))
}

/// Whether the request has an `Expect` header (RFC 9110 §10.1.1). Any expectation
/// counts: the only one defined is `100-continue`, and a client that sent another one
/// waits for an answer too.
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
pub(crate) enum Advance {
    /// The body goes on.
    More(Framing),
    /// The body ended (the octets used included its last one).
    Done,
    /// The chunked coding is broken at the octet after those used.
    Broken,
}

/// Steps through `input` as body octets of `framing`: how many belong to the body, and
/// what comes next.
pub(crate) fn advance(framing: Framing, input: &[u8]) -> (usize, Advance) {
    decode(framing, input, |_| {})
}

/// [`advance`], handing the body's content to `data` as it goes (chunk data only, without
/// the chunked coding's size lines and trailers).
pub(crate) fn decode(
    framing: Framing,
    input: &[u8],
    mut data: impl FnMut(&[u8]),
) -> (usize, Advance) {
    match framing {
        Framing::Length(left) => {
            let used = (input.len() as u64).min(left);
            data(&input[..used as usize]);
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
                    data(&input[used..used + take as usize]);
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
pub(crate) enum Chunked {
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

    /// `body` in the chunked coding, in chunks of the given sizes (the rest in one), with an
    /// extension on the first chunk and a trailer.
    fn chunked(body: &[u8], sizes: &[usize]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = body;
        let mut sizes = sizes.iter();
        while !rest.is_empty() {
            let n = sizes.next().map_or(rest.len(), |&n| n.clamp(1, rest.len()));
            let ext = if out.is_empty() { ";a=b" } else { "" };
            out.extend_from_slice(format!("{n:x}{ext}\r\n").as_bytes());
            out.extend_from_slice(&rest[..n]);
            out.extend_from_slice(b"\r\n");
            rest = &rest[n..];
        }
        out.extend_from_slice(b"0\r\nx-t: 1\r\n\r\n");
        out
    }

    /// Decodes `wire` fed in pieces cut at `cuts`, as a connection receives it: the content,
    /// and the octets left after the body.
    fn decode_in_pieces(framing: Framing, wire: &[u8], cuts: &[usize]) -> Option<(Vec<u8>, usize)> {
        let mut content = Vec::new();
        let mut input = Vec::new();
        let mut fed = 0;
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
        cuts.push(wire.len());
        cuts.sort_unstable();
        let mut framing = framing;
        for cut in cuts {
            input.extend_from_slice(&wire[fed..cut.max(fed)]);
            fed = cut.max(fed);
            let (used, next) = decode(framing, &input, |d| content.extend_from_slice(d));
            input.drain(..used);
            match next {
                Advance::Done => return Some((content, wire.len() - fed + input.len())),
                Advance::Broken => return None,
                Advance::More(f) => framing = f,
            }
        }
        None
    }

    proptest::proptest! {
        /// Any octets: the head parser answers without panicking, and a complete head it
        /// accepts is no longer than the bound and than the input.
        #[test]
        fn any_input_is_parsed_or_refused(input in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600), max in 1usize..700) {
            let mut searched = 0;
            if let HeadStatus::Complete(head, ()) = parse_head(&input, &mut searched, max, |_, _| ()) {
                proptest::prop_assert!(head.len <= max && head.len <= input.len());
            }
        }

        /// Any body, chunked in any sizes and received in any pieces, decodes to itself
        /// and ends where it ends; a length-framed one likewise.
        #[test]
        fn bodies_decode_to_themselves_however_they_arrive(
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            sizes in proptest::collection::vec(1usize..40, 0..10),
            cuts in proptest::collection::vec(0usize..1000, 0..8),
        ) {
            let mut wire = chunked(&body, &sizes);
            wire.extend_from_slice(b"GET");
            let decoded = decode_in_pieces(Framing::Chunked(Chunked::default()), &wire, &cuts);
            proptest::prop_assert_eq!(decoded, Some((body.clone(), 3)));
            let mut wire = body.clone();
            wire.extend_from_slice(b"GET");
            let decoded = decode_in_pieces(Framing::Length(body.len() as u64), &wire, &cuts);
            if body.is_empty() {
                // A zero length is no body at all (the head says so): nothing to decode.
                proptest::prop_assert!(decoded.is_none() || decoded == Some((Vec::new(), 3)));
            } else {
                proptest::prop_assert_eq!(decoded, Some((body, 3)));
            }
        }

        /// Any octets as a chunked body: decoding never panics, and never yields more
        /// content than it used octets.
        #[test]
        fn any_chunked_input_is_decoded_or_broken(input in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let mut content = 0;
            let (used, _) = decode(Framing::Chunked(Chunked::default()), &input, |d| content += d.len());
            proptest::prop_assert!(used <= input.len() && content <= used);
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
