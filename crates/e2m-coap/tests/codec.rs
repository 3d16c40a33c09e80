//! The codec against hand-checked RFC 7252 octets, every malformed shape, and properties.
#![allow(clippy::unwrap_used, reason = "tests")]

use e2m_coap::{CoapError, Code, Message, MessageType, MessageView, OptionNumber, Options, Token};
use proptest::prelude::*;

/// RFC 8613 Appendix C.4's unprotected request: CON GET, MID 0x5d1f, token 0x00003974,
/// Uri-Host "localhost", Uri-Path "tv1" (the RFC's field-by-field breakdown of RFC 7252
/// octets; used here only as a known-good CoAP message).
const GET_TV1: &str = "44015d1f00003974396c6f63616c686f737483747631";

#[test]
fn decodes_a_known_request() {
    let octets = hex::decode(GET_TV1).unwrap();
    let m = Message::decode(&octets).unwrap();
    assert_eq!(m.mtype, MessageType::Confirmable);
    assert_eq!(m.code, Code::GET);
    assert_eq!(m.message_id, 0x5d1f);
    assert_eq!(m.token.as_bytes(), &[0, 0, 0x39, 0x74]);
    assert_eq!(
        m.options.get(OptionNumber::URI_HOST),
        Some(&b"localhost"[..])
    );
    assert_eq!(m.uri_path(), "tv1");
    assert!(m.payload.is_empty());
    assert_eq!(m.encode(), octets);
}

#[test]
fn every_malformed_shape_is_typed() {
    let cases: &[(&[u8], CoapError)] = &[
        (&[], CoapError::Truncated),
        (&[0x40, 1, 0], CoapError::Truncated),
        (&[0x80, 1, 0, 0], CoapError::Version),
        (&[0x00, 1, 0, 0], CoapError::Version),
        (&[0x49, 1, 0, 0], CoapError::TokenLength),
        (&[0x4f, 1, 0, 0], CoapError::TokenLength),
        (&[0x42, 1, 0, 0, 1], CoapError::Truncated),
        (&[0x40, 1, 0, 0, 0xff], CoapError::EmptyPayload),
        (&[0x40, 1, 0, 0, 0xf0], CoapError::ReservedNibble),
        (&[0x40, 1, 0, 0, 0x0f], CoapError::ReservedNibble),
        (&[0x40, 1, 0, 0, 0xd0], CoapError::Truncated),
        (&[0x40, 1, 0, 0, 0xe0, 1], CoapError::Truncated),
        (&[0x40, 1, 0, 0, 0x0d], CoapError::Truncated),
        (&[0x40, 1, 0, 0, 0xb5, b'a'], CoapError::Truncated),
        // 269 + 0xffff is past 65535.
        (&[0x40, 1, 0, 0, 0xe0, 0xff, 0xff], CoapError::OptionNumber),
        (&[0x41, 0, 0, 0, 7], CoapError::EmptyNotEmpty),
        (&[0x40, 0, 0, 0, 0xff, 1], CoapError::EmptyNotEmpty),
    ];
    for (octets, want) in cases {
        assert_eq!(Message::decode(octets), Err(*want), "{octets:02x?}");
    }
    assert_eq!(Token::new(&[0; 9]), Err(CoapError::TokenTooLong));
    for len in 0..=Token::MAX_LEN {
        let octets: Vec<u8> = (1..=len as u8).map(|b| b.wrapping_mul(0x9d)).collect();
        let token = Token::new(&octets).unwrap();
        assert_eq!(token.as_bytes(), octets, "{len}");
        // Tokens compare by their octets (the unused ones stay zero).
        assert_eq!(token, Token::new(&octets).unwrap());
        assert_ne!(len > 0, token == Token::EMPTY, "{len}");
    }
    // An Empty message (a bare ACK or RST) is fine.
    let ack = Message::decode(&[0x60, 0, 0x12, 0x34]).unwrap();
    assert_eq!(ack.mtype, MessageType::Acknowledgement);
    assert!(ack.code.is_empty());
}

fn arb_message() -> impl Strategy<Value = Message> {
    (
        0u8..4,
        any::<u8>(),
        any::<u16>(),
        proptest::collection::vec(any::<u8>(), 0..=8),
        proptest::collection::vec(
            (
                prop_oneof![0u16..300, any::<u16>()],
                proptest::collection::vec(any::<u8>(), 0..300),
            ),
            0..6,
        ),
        proptest::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(t, code, mid, token, opts, payload)| {
            let code = if code == 0 { Code::GET } else { Code(code) };
            let mut m = Message::new(
                MessageType::from_bits(t),
                code,
                mid,
                Token::new(&token).unwrap(),
            );
            for (n, v) in opts {
                m.options.push(OptionNumber(n), &v).unwrap();
            }
            m.payload = payload;
            m
        })
}

proptest! {
    #[test]
    fn decode_encode_round_trips(m in arb_message()) {
        let octets = m.encode();
        prop_assert_eq!(Message::decode(&octets), Ok(m));
    }

    #[test]
    fn encode_decode_is_identity_on_valid_octets(octets in proptest::collection::vec(any::<u8>(), 0..80)) {
        if let Ok(m) = Message::decode(&octets) {
            prop_assert_eq!(m.encode(), octets);
        }
    }

    #[test]
    fn the_view_agrees_with_decode(octets in proptest::collection::vec(any::<u8>(), 0..80)) {
        match (Message::decode(&octets), MessageView::parse(&octets)) {
            (Ok(m), Ok(v)) => {
                prop_assert_eq!((m.mtype, m.code, m.message_id, m.token), (v.mtype, v.code, v.message_id, v.token));
                prop_assert!(m.options.iter().eq(v.options()));
                prop_assert_eq!(&m.payload[..], v.payload);
            }
            (Err(a), Err(b)) => prop_assert_eq!(a, b),
            (a, b) => prop_assert!(false, "decode {:?} vs view {:?}", a, b),
        }
    }

    #[test]
    fn options_alone_round_trip(m in arb_message()) {
        let mut out = Vec::new();
        m.options.encode_with_payload(&m.payload, &mut out);
        let (options, payload) = Options::decode_with_payload(&out).unwrap();
        prop_assert_eq!(options, m.options);
        prop_assert_eq!(payload, &m.payload[..]);
    }
}
