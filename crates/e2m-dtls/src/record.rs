//! Just enough of the DTLS 1.2 record and handshake framing (RFC 6347 §4.1, §4.2.2) to
//! read a ClientHello's cookie and parameters, to answer one statelessly (a
//! HelloVerifyRequest, RFC 6347 §4.2.1, or a fatal alert), to read the `psk_identity` of a
//! ClientKeyExchange (RFC 4279 §2) before the datagram reaches the DTLS state machine, and
//! to build the plaintext alert the EMSE sends when a handshake fails (RFC 5246 §7.2).
//! Nothing here decrypts or trusts anything: the cookie's MAC is checked elsewhere
//! ([`crate::cookie`]), and a wrong `psk_identity` can only make the EMSE fetch a key for an
//! identity the handshake then fails on.

/// Record header: type(1) version(2) epoch(2) sequence_number(6) length(2).
const RECORD_HEADER: usize = 13;
/// Handshake header: msg_type(1) length(3) message_seq(2) fragment_offset(3)
/// fragment_length(3).
const HANDSHAKE_HEADER: usize = 12;
const CONTENT_ALERT: u8 = 21;
const CONTENT_HANDSHAKE: u8 = 22;
const CLIENT_HELLO: u8 = 1;
const HELLO_VERIFY_REQUEST: u8 = 3;
const SERVER_KEY_EXCHANGE: u8 = 12;
const CLIENT_KEY_EXCHANGE: u8 = 16;
/// DTLS 1.2 on the wire (RFC 6347 §4.1: {254, 253}).
const DTLS_1_2: [u8; 2] = [0xfe, 0xfd];
/// DTLS 1.0: the HelloVerifyRequest's `server_version` (RFC 6347 §4.2.1: "DTLS 1.2 server
/// implementations SHOULD use DTLS version 1.0 regardless of the version of TLS that is
/// expected to be negotiated").
const DTLS_1_0: [u8; 2] = [0xfe, 0xff];
/// The one suite we serve: TLS_PSK_WITH_AES_128_CCM_8 (RFC 6655).
const PSK_AES128_CCM_8: [u8; 2] = [0xc0, 0xa8];
/// A ClientHello's `random` (RFC 5246 §7.4.1.2).
pub(crate) const RANDOM_LEN: usize = 32;

fn u24(b: &[u8]) -> usize {
    (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2])
}

/// The plaintext (epoch 0) handshake messages of a datagram: `(msg_type, total length,
/// fragment offset, fragment bytes)`. Encrypted records (epoch > 0) are skipped: under
/// PSK the ClientKeyExchange always precedes ChangeCipherSpec, so it travels in epoch 0.
fn epoch0_handshakes(datagram: &[u8]) -> impl Iterator<Item = (u8, usize, usize, &[u8])> {
    let mut rest = datagram;
    core::iter::from_fn(move || {
        loop {
            if rest.len() < RECORD_HEADER {
                return None;
            }
            let content_type = rest[0];
            let epoch = u16::from_be_bytes([rest[3], rest[4]]);
            let len = usize::from(u16::from_be_bytes([rest[11], rest[12]]));
            let body = rest.get(RECORD_HEADER..RECORD_HEADER + len)?;
            rest = &rest[RECORD_HEADER + len..];
            if content_type != CONTENT_HANDSHAKE || epoch != 0 || body.len() < HANDSHAKE_HEADER {
                continue;
            }
            let msg_type = body[0];
            let total = u24(&body[1..4]);
            let offset = u24(&body[6..9]);
            let frag_len = u24(&body[9..12]);
            let Some(fragment) = body.get(HANDSHAKE_HEADER..HANDSHAKE_HEADER + frag_len) else {
                continue;
            };
            return Some((msg_type, total, offset, fragment));
        }
    })
}

/// What a datagram says about the ClientKeyExchange.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum CkePeek<'a> {
    /// No ClientKeyExchange in this datagram.
    Absent,
    /// The `psk_identity` octets (RFC 4279 §2: `opaque psk_identity<0..2^16-1>`).
    Identity(&'a [u8]),
    /// A ClientKeyExchange whose identity is not in the first fragment. The e2m
    /// `psk_identity` is at most 128 octets (RFC 4279 §5.1) and fits any sane MTU, so a
    /// client that fragments it is not one of ours; the handshake fails like an unknown
    /// identity.
    Fragmented,
}

/// Finds the `psk_identity` of a ClientKeyExchange in a datagram, if any.
pub(crate) fn peek_psk_identity(datagram: &[u8]) -> CkePeek<'_> {
    for (msg_type, total, offset, fragment) in epoch0_handshakes(datagram) {
        if msg_type != CLIENT_KEY_EXCHANGE {
            continue;
        }
        if offset != 0 || fragment.len() < 2 {
            return CkePeek::Fragmented;
        }
        let id_len = usize::from(u16::from_be_bytes([fragment[0], fragment[1]]));
        if 2 + id_len > total {
            return CkePeek::Fragmented;
        }
        return match fragment.get(2..2 + id_len) {
            Some(identity) => CkePeek::Identity(identity),
            None => CkePeek::Fragmented,
        };
    }
    CkePeek::Absent
}

/// The `psk_identity_hint` of a PSK ServerKeyExchange in a datagram, if it carries one
/// whole (RFC 4279 §2: `opaque psk_identity_hint<0..2^16-1>`, the message's only field).
/// The UE reads it to report what the server asked for (TS 24.109 K.3.2 d)); the Finished
/// check covers the ServerKeyExchange the DTLS state machine processed.
pub(crate) fn peek_psk_identity_hint(datagram: &[u8]) -> Option<&[u8]> {
    epoch0_handshakes(datagram).find_map(|(msg_type, total, offset, fragment)| {
        if msg_type != SERVER_KEY_EXCHANGE || offset != 0 || fragment.len() < total {
            return None;
        }
        let hint_len = usize::from(u16::from_be_bytes([*fragment.first()?, *fragment.get(1)?]));
        if 2 + hint_len != total {
            return None;
        }
        fragment.get(2..2 + hint_len)
    })
}

/// A ClientHello that arrived whole in the first record of a datagram, in epoch 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClientHello<'a> {
    /// The record's epoch and sequence number (8 octets): the HelloVerifyRequest reuses
    /// them (RFC 6347 §4.2.1).
    pub record_sequence: [u8; 8],
    /// The handshake `message_seq` (0 for the first ClientHello, 1 after a
    /// HelloVerifyRequest; RFC 6347 §4.2.2).
    pub message_seq: u16,
    /// The whole handshake message, header and body, as the client sent it.
    pub message: &'a [u8],
    /// `client_version`.
    pub client_version: [u8; 2],
    /// `random`.
    pub random: &'a [u8; RANDOM_LEN],
    /// `session_id`.
    pub session_id: &'a [u8],
    /// `cookie` (empty in a first ClientHello).
    pub cookie: &'a [u8],
    /// `cipher_suites` (pairs of octets).
    pub cipher_suites: &'a [u8],
    /// `compression_methods`.
    pub compression_methods: &'a [u8],
}

impl ClientHello<'_> {
    /// Whether the client offers TLS_PSK_WITH_AES_128_CCM_8, the only suite we serve.
    pub(crate) fn offers_our_suite(&self) -> bool {
        self.cipher_suites
            .chunks_exact(2)
            .any(|suite| suite == PSK_AES128_CCM_8)
    }
}

/// Splits `n` octets off the front of `rest`.
fn take<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    let (head, tail) = rest.split_at_checked(n)?;
    *rest = tail;
    Some(head)
}

/// A vector with a one- or two-octet length prefix (RFC 5246 §4.3).
fn take_vec<'a>(rest: &mut &'a [u8], prefix: usize) -> Option<&'a [u8]> {
    let len = match take(rest, prefix)? {
        [n] => usize::from(*n),
        [hi, lo] => usize::from(u16::from_be_bytes([*hi, *lo])),
        _ => return None,
    };
    take(rest, len)
}

/// Reads the ClientHello that a datagram starts with: the first record must be an epoch-0
/// handshake record holding one whole, unfragmented ClientHello (RFC 6347 §4.2.3 lets a
/// message be fragmented, but a ClientHello of ours or OpenSSL's fits one datagram; a
/// server that must answer statelessly cannot reassemble). Anything else: `None`.
pub(crate) fn parse_client_hello(datagram: &[u8]) -> Option<ClientHello<'_>> {
    let mut rest = datagram;
    let header = take(&mut rest, RECORD_HEADER)?;
    if header[0] != CONTENT_HANDSHAKE || header[3..5] != [0, 0] {
        return None;
    }
    let record_len = usize::from(u16::from_be_bytes([header[11], header[12]]));
    let mut record = take(&mut rest, record_len)?;
    let message = record;
    let hs = take(&mut record, HANDSHAKE_HEADER)?;
    let length = u24(&hs[1..4]);
    if hs[0] != CLIENT_HELLO || u24(&hs[6..9]) != 0 || u24(&hs[9..12]) != length {
        return None;
    }
    let message = message.get(..HANDSHAKE_HEADER + length)?;
    let mut body = take(&mut record, length)?;
    let client_version = take(&mut body, 2)?;
    let random = take(&mut body, RANDOM_LEN)?;
    let session_id = take_vec(&mut body, 1)?;
    let cookie = take_vec(&mut body, 1)?;
    let cipher_suites = take_vec(&mut body, 2)?;
    let compression_methods = take_vec(&mut body, 1)?;
    Some(ClientHello {
        record_sequence: header[3..11].try_into().ok()?,
        message_seq: u16::from_be_bytes([hs[4], hs[5]]),
        message,
        client_version: client_version.try_into().ok()?,
        random: random.try_into().ok()?,
        session_id,
        cookie,
        cipher_suites,
        compression_methods,
    })
}

/// A plaintext epoch-0 record of `content_type` around `body`.
fn epoch0_record(content_type: u8, record_sequence: [u8; 8], body: &[u8]) -> Vec<u8> {
    let mut record = Vec::with_capacity(RECORD_HEADER + body.len());
    record.push(content_type);
    record.extend_from_slice(&DTLS_1_2);
    record.extend_from_slice(&record_sequence);
    // Bodies here are a few dozen octets: the length always fits.
    record.extend_from_slice(&u16::try_from(body.len()).unwrap_or(u16::MAX).to_be_bytes());
    record.extend_from_slice(body);
    record
}

/// A HelloVerifyRequest carrying `cookie`, answering `hello` (RFC 6347 §4.2.1): in the
/// ClientHello's record sequence number, with `message_seq` 0 and `server_version` DTLS
/// 1.0. It is smaller than the ClientHello it answers, so a spoofed source cannot use the
/// EMSE to amplify traffic.
pub(crate) fn hello_verify_request(hello: &ClientHello<'_>, cookie: &[u8; 32]) -> Vec<u8> {
    let body_len = 2 + 1 + cookie.len();
    let mut handshake = Vec::with_capacity(HANDSHAKE_HEADER + body_len);
    handshake.push(HELLO_VERIFY_REQUEST);
    let len = [0, 0, body_len as u8];
    handshake.extend_from_slice(&len); // length
    handshake.extend_from_slice(&[0, 0]); // message_seq
    handshake.extend_from_slice(&[0, 0, 0]); // fragment_offset
    handshake.extend_from_slice(&len); // fragment_length
    handshake.extend_from_slice(&DTLS_1_0);
    handshake.push(cookie.len() as u8);
    handshake.extend_from_slice(cookie);
    epoch0_record(CONTENT_HANDSHAKE, hello.record_sequence, &handshake)
}

/// The same datagram with the ClientHello's `message_seq` set to 0: the "first"
/// ClientHello that leads `dimpl` through its own cookie step (see [`crate::cookie`]; fed
/// outside the deferral, so `dimpl` finds no cookie of its own in it). `None` if
/// `datagram` does not start with a ClientHello.
pub(crate) fn as_first_client_hello(datagram: &[u8]) -> Option<Vec<u8>> {
    parse_client_hello(datagram)?;
    let mut first = datagram.to_vec();
    // message_seq sits at offset 4 of the handshake header.
    first[RECORD_HEADER + 4] = 0;
    first[RECORD_HEADER + 5] = 0;
    Some(first)
}

/// A fatal alert (RFC 5246 §7.2) as a plaintext epoch-0 record with sequence number
/// `sequence`. The EMSE sends it before its ChangeCipherSpec, while its write state is
/// still the null cipher of epoch 0, which is the state RFC 5246 §7.2 says alerts use.
pub(crate) fn fatal_alert(description: u8, sequence: u64) -> Vec<u8> {
    let mut record_sequence = [0u8; 8];
    // Epoch 0 in the top two octets; the 48-bit sequence number below.
    record_sequence[2..].copy_from_slice(&sequence.to_be_bytes()[2..]);
    epoch0_record(CONTENT_ALERT, record_sequence, &[2, description])
}

/// The highest epoch-0 record sequence number among the records of a datagram we send, so
/// that an alert sent after them is not discarded as a replay (RFC 6347 §4.1.2.6).
pub(crate) fn max_epoch0_sequence(datagram: &[u8]) -> Option<u64> {
    let mut rest = datagram;
    let mut highest = None;
    while let Some(header) = take(&mut rest, RECORD_HEADER) {
        let len = usize::from(u16::from_be_bytes([header[11], header[12]]));
        if header[3..5] == [0, 0] {
            let mut sequence = [0u8; 8];
            sequence[2..].copy_from_slice(&header[5..11]);
            highest = highest.max(Some(u64::from_be_bytes(sequence)));
        }
        if take(&mut rest, len).is_none() {
            break;
        }
    }
    highest
}

#[cfg(test)]
#[allow(
    clippy::expect_used,
    reason = "a test fails by panicking, with a message"
)]
mod tests {
    use super::*;

    fn record(content_type: u8, epoch: u16, body: &[u8]) -> Vec<u8> {
        let mut r = vec![content_type, 0xfe, 0xfd];
        r.extend_from_slice(&epoch.to_be_bytes());
        r.extend_from_slice(&[0, 0, 0, 0, 0, 1]);
        r.extend_from_slice(&(body.len() as u16).to_be_bytes());
        r.extend_from_slice(body);
        r
    }

    fn handshake(msg_type: u8, body: &[u8], offset: usize, frag: &[u8]) -> Vec<u8> {
        let mut h = vec![msg_type];
        h.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        h.extend_from_slice(&[0, 2]);
        h.extend_from_slice(&(offset as u32).to_be_bytes()[1..]);
        h.extend_from_slice(&(frag.len() as u32).to_be_bytes()[1..]);
        h.extend_from_slice(frag);
        h
    }

    #[test]
    fn finds_the_identity_after_other_records() {
        let id = b"e2m1.ae47bf35.sensor@iot.example";
        let mut cke = (id.len() as u16).to_be_bytes().to_vec();
        cke.extend_from_slice(id);
        let mut dgram = record(20, 0, &[1]);
        dgram.extend(record(CONTENT_HANDSHAKE, 0, &handshake(16, &cke, 0, &cke)));
        dgram.extend(record(CONTENT_HANDSHAKE, 1, &[0xaa; 40]));
        assert_eq!(peek_psk_identity(&dgram), CkePeek::Identity(id));
        assert!(parse_client_hello(&dgram).is_none());
    }

    #[test]
    fn truncated_and_odd_input_never_panics() {
        let id = b"abc";
        let mut cke = (id.len() as u16).to_be_bytes().to_vec();
        cke.extend_from_slice(id);
        let dgram = record(CONTENT_HANDSHAKE, 0, &handshake(16, &cke, 0, &cke));
        for cut in 0..dgram.len() {
            let _ = peek_psk_identity(&dgram[..cut]);
            let _ = parse_client_hello(&dgram[..cut]);
            let _ = max_epoch0_sequence(&dgram[..cut]);
        }
        // Identity longer than the message: refused, not read past.
        let mut lying = cke.clone();
        lying[1] = 200;
        let dgram = record(CONTENT_HANDSHAKE, 0, &handshake(16, &lying, 0, &lying));
        assert_eq!(peek_psk_identity(&dgram), CkePeek::Fragmented);
        // Later fragment only.
        let dgram = record(CONTENT_HANDSHAKE, 0, &handshake(16, &cke, 2, &cke[2..]));
        assert_eq!(peek_psk_identity(&dgram), CkePeek::Fragmented);
        // Epoch 1 (encrypted) is never read.
        let dgram = record(CONTENT_HANDSHAKE, 1, &handshake(16, &cke, 0, &cke));
        assert_eq!(peek_psk_identity(&dgram), CkePeek::Absent);
    }

    #[test]
    fn reads_the_hint_of_a_whole_server_key_exchange_only() {
        let mut ske = 9u16.to_be_bytes().to_vec();
        ske.extend_from_slice(b"3GPP-AKMA");
        let mut flight = record(CONTENT_HANDSHAKE, 0, &handshake(2, &[0; 38], 0, &[0; 38]));
        flight.extend(record(CONTENT_HANDSHAKE, 0, &handshake(12, &ske, 0, &ske)));
        flight.extend(record(CONTENT_HANDSHAKE, 0, &handshake(14, &[], 0, &[])));
        assert_eq!(peek_psk_identity_hint(&flight), Some(&b"3GPP-AKMA"[..]));
        // No ServerKeyExchange (a server without a hint), a fragment, a lying length,
        // epoch 1, and every truncation: nothing, and no panic.
        let done = record(CONTENT_HANDSHAKE, 0, &handshake(14, &[], 0, &[]));
        assert_eq!(peek_psk_identity_hint(&done), None);
        let frag = record(CONTENT_HANDSHAKE, 0, &handshake(12, &ske, 0, &ske[..5]));
        assert_eq!(peek_psk_identity_hint(&frag), None);
        let mut lying = ske.clone();
        lying[1] = 30;
        let lie = record(CONTENT_HANDSHAKE, 0, &handshake(12, &lying, 0, &lying));
        assert_eq!(peek_psk_identity_hint(&lie), None);
        let epoch1 = record(CONTENT_HANDSHAKE, 1, &handshake(12, &ske, 0, &ske));
        assert_eq!(peek_psk_identity_hint(&epoch1), None);
        for cut in 0..flight.len() {
            let _ = peek_psk_identity_hint(&flight[..cut]);
        }
    }

    /// A ClientHello body: version, random, session id, cookie, one suite, null
    /// compression, no extensions.
    fn hello_body(cookie: &[u8]) -> Vec<u8> {
        let mut body = vec![0xfe, 0xfd];
        body.extend_from_slice(&[0x11; 32]);
        body.extend_from_slice(&[2, 0xaa, 0xbb]);
        body.push(cookie.len() as u8);
        body.extend_from_slice(cookie);
        body.extend_from_slice(&[0, 4, 0xc0, 0xa8, 0x00, 0xff]);
        body.extend_from_slice(&[1, 0]);
        body
    }

    #[test]
    fn reads_a_client_hello_and_only_a_whole_one_in_epoch_0() {
        let body = hello_body(&[7; 32]);
        let dgram = record(CONTENT_HANDSHAKE, 0, &handshake(1, &body, 0, &body));
        let hello = parse_client_hello(&dgram).expect("a ClientHello");
        // Every proper prefix is refused, without reading past it.
        for cut in 0..dgram.len() {
            assert!(parse_client_hello(&dgram[..cut]).is_none(), "cut at {cut}");
            assert!(
                as_first_client_hello(&dgram[..cut]).is_none(),
                "cut at {cut}"
            );
        }
        assert_eq!(hello.message_seq, 2);
        assert_eq!(hello.record_sequence, [0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(hello.client_version, [0xfe, 0xfd]);
        assert_eq!(hello.random, &[0x11; 32]);
        assert_eq!(hello.session_id, &[0xaa, 0xbb]);
        assert_eq!(hello.cookie, &[7; 32]);
        assert_eq!(hello.cipher_suites, &[0xc0, 0xa8, 0x00, 0xff]);
        assert_eq!(hello.compression_methods, &[0]);
        assert!(hello.offers_our_suite());
        assert_eq!(peek_psk_identity(&dgram), CkePeek::Absent);
        // A fragment, another epoch, another message, a truncated body: not read.
        let frag = record(CONTENT_HANDSHAKE, 0, &handshake(1, &body, 0, &body[..40]));
        assert!(parse_client_hello(&frag).is_none());
        let epoch1 = record(CONTENT_HANDSHAKE, 1, &handshake(1, &body, 0, &body));
        assert!(parse_client_hello(&epoch1).is_none());
        assert!(parse_client_hello(&record(23, 1, &[0; 30])).is_none());
        let cut = &hello_body(&[])[..36];
        let truncated = record(CONTENT_HANDSHAKE, 0, &handshake(1, cut, 0, cut));
        assert!(parse_client_hello(&truncated).is_none());
        // Without our suite.
        let mut other = hello_body(&[]);
        let at = other.len() - 6;
        other[at..at + 4].copy_from_slice(&[0x00, 0xa8, 0x00, 0xff]);
        let dgram = record(CONTENT_HANDSHAKE, 0, &handshake(1, &other, 0, &other));
        assert!(
            !parse_client_hello(&dgram)
                .expect("hello")
                .offers_our_suite()
        );
    }

    #[test]
    fn the_hello_verify_request_echoes_the_record_sequence_and_carries_the_cookie() {
        let body = hello_body(&[]);
        let dgram = record(CONTENT_HANDSHAKE, 0, &handshake(1, &body, 0, &body));
        let hello = parse_client_hello(&dgram).expect("hello");
        let hvr = hello_verify_request(&hello, &[0x5a; 32]);
        let mut expected = vec![22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 1, 0, 12 + 35];
        expected.extend_from_slice(&[3, 0, 0, 35, 0, 0, 0, 0, 0, 0, 0, 35, 0xfe, 0xff, 32]);
        expected.extend_from_slice(&[0x5a; 32]);
        assert_eq!(hvr, expected);
        assert!(
            hvr.len() < dgram.len() + 32,
            "no amplification beyond the cookie"
        );
        let first = as_first_client_hello(&dgram).expect("hello");
        assert_eq!(parse_client_hello(&first).expect("hello").message_seq, 0);
        assert_eq!(first[RECORD_HEADER + 6..], dgram[RECORD_HEADER + 6..]);
    }

    #[test]
    fn alerts_are_numbered_after_the_records_sent() {
        assert_eq!(
            fatal_alert(51, 0x0102_0304_0506),
            vec![21, 0xfe, 0xfd, 0, 0, 1, 2, 3, 4, 5, 6, 0, 2, 2, 51]
        );
        let mut flight = record(CONTENT_HANDSHAKE, 0, &[0; 20]);
        flight.extend(record(20, 0, &[1]));
        flight.extend(record(CONTENT_HANDSHAKE, 1, &[0; 20]));
        // `record` numbers every record 1; epoch 1 is not counted.
        assert_eq!(max_epoch0_sequence(&flight), Some(1));
        assert_eq!(max_epoch0_sequence(&record(23, 1, &[0; 4])), None);
    }
}
