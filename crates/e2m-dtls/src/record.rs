//! Just enough of the DTLS 1.2 record and handshake framing (RFC 6347 §4.1, §4.2.2) to
//! spot a ClientHello and to read the `psk_identity` of a ClientKeyExchange (RFC 4279 §2)
//! before the datagram reaches the DTLS state machine. Nothing here decrypts or trusts
//! anything: a wrong answer can only make the EMSE fetch a key for an identity the
//! handshake then fails on.

/// Record header: type(1) version(2) epoch(2) sequence_number(6) length(2).
const RECORD_HEADER: usize = 13;
/// Handshake header: msg_type(1) length(3) message_seq(2) fragment_offset(3)
/// fragment_length(3).
const HANDSHAKE_HEADER: usize = 12;
const CONTENT_HANDSHAKE: u8 = 22;
const CLIENT_HELLO: u8 = 1;
const CLIENT_KEY_EXCHANGE: u8 = 16;

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

/// Does the datagram start a handshake (carry a ClientHello in epoch 0)? Only such a
/// datagram may create per-peer state at the EMSE.
pub(crate) fn has_client_hello(datagram: &[u8]) -> bool {
    epoch0_handshakes(datagram).any(|(t, _, off, _)| t == CLIENT_HELLO && off == 0)
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

#[cfg(test)]
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
        assert!(!has_client_hello(&dgram));
    }

    #[test]
    fn truncated_and_odd_input_never_panics() {
        let id = b"abc";
        let mut cke = (id.len() as u16).to_be_bytes().to_vec();
        cke.extend_from_slice(id);
        let dgram = record(CONTENT_HANDSHAKE, 0, &handshake(16, &cke, 0, &cke));
        for cut in 0..dgram.len() {
            let _ = peek_psk_identity(&dgram[..cut]);
            let _ = has_client_hello(&dgram[..cut]);
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
    fn spots_a_client_hello() {
        let dgram = record(CONTENT_HANDSHAKE, 0, &handshake(1, &[0; 60], 0, &[0; 60]));
        assert!(has_client_hello(&dgram));
        assert_eq!(peek_psk_identity(&dgram), CkePeek::Absent);
        assert!(!has_client_hello(&record(23, 1, &[0; 30])));
    }
}
