//! Properties: protect/verify round-trips for any request and response, and no single
//! flipped bit gets through: a flip inside the protected part (OSCORE option, ciphertext,
//! tag) is always refused, and a flip anywhere else can only change what RFC 8613 leaves
//! unprotected on purpose (message type, message ID, token, outer code, Class U options),
//! never the decrypted code, Class E options or payload.
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]

use e2m_coap::{Code, Message, MessageType, OptionNumber, Token};
use e2m_oscore::*;
use proptest::prelude::*;

fn contexts(id_context: bool) -> (SecurityContext, SecurityContext) {
    let secret = MasterSecret::new(b"property master secret").unwrap();
    let ctx: &[u8] = b"\x01sensor@example.com";
    let input = |sender: &'static [u8], recipient: &'static [u8]| ContextInput {
        master_secret: &secret,
        master_salt: &[],
        id_context: id_context.then_some(ctx),
        sender_id: sender,
        recipient_id: recipient,
    };
    (
        SecurityContext::derive(
            &input(b"\xae\x47\xbf\x35", b""),
            SenderSequence::volatile_from(7),
        )
        .unwrap(),
        SecurityContext::derive(&input(b"", b"\xae\x47\xbf\x35"), SenderSequence::volatile())
            .unwrap(),
    )
}

/// Option numbers a CoAP message may carry through OSCORE: everything but OSCORE itself and
/// Proxy-Uri (which must be decomposed first, §4.1.3.3).
fn option_number() -> impl Strategy<Value = OptionNumber> {
    prop_oneof![
        Just(OptionNumber::URI_HOST),
        Just(OptionNumber::URI_PORT),
        Just(OptionNumber::URI_PATH),
        Just(OptionNumber::URI_QUERY),
        Just(OptionNumber::CONTENT_FORMAT),
        Just(OptionNumber::OBSERVE),
        Just(OptionNumber::ETAG),
        Just(OptionNumber::ECHO),
        Just(OptionNumber::PROXY_SCHEME),
        (0u16..2000)
            .prop_filter("not OSCORE or Proxy-Uri", |n| *n != 9 && *n != 35)
            .prop_map(OptionNumber),
    ]
}

fn message(code: impl Strategy<Value = Code>) -> impl Strategy<Value = Message> {
    (
        0u8..4,
        code,
        any::<u16>(),
        proptest::collection::vec(any::<u8>(), 0..=8),
        proptest::collection::vec(
            (
                option_number(),
                proptest::collection::vec(any::<u8>(), 0..20),
            ),
            0..5,
        ),
        proptest::collection::vec(any::<u8>(), 0..48),
    )
        .prop_map(|(t, code, mid, token, options, payload)| {
            let mut m = Message::new(
                MessageType::from_bits(t),
                code,
                mid,
                Token::new(&token).unwrap(),
            );
            for (n, v) in options {
                m.options.push(n, &v).unwrap();
            }
            m.payload = payload;
            m
        })
}

fn request_code() -> impl Strategy<Value = Code> {
    (1u8..32).prop_map(|d| Code::new(0, d))
}

fn response_code() -> impl Strategy<Value = Code> {
    (prop_oneof![Just(2u8), Just(4), Just(5)], 0u8..32).prop_map(|(c, d)| Code::new(c, d))
}

/// What OSCORE protects of a message: code, Class E options, payload.
type ProtectedContent = (Code, Vec<(OptionNumber, Vec<u8>)>, Vec<u8>);

fn protected_content(m: &Message) -> ProtectedContent {
    // RFC 8613 §4.1.3: Class U options stay outside, unprotected; a flipped outer bit may
    // add or change one of them (Proxy-Uri included: §4.1.3.3 keeps its scheme and
    // authority outer), which is allowed as long as the protected content is unchanged.
    let class_u = [
        OptionNumber::URI_HOST,
        OptionNumber::URI_PORT,
        OptionNumber::PROXY_SCHEME,
        OptionNumber::PROXY_URI,
    ];
    let inner = m
        .options
        .iter()
        .filter(|(n, _)| !class_u.contains(n))
        .map(|(n, v)| (n, v.to_vec()))
        .collect();
    (m.code, inner, m.payload.clone())
}

/// The byte ranges of the OSCORE option value and of the payload in `octets`.
fn protected_ranges(octets: &[u8]) -> Vec<std::ops::Range<usize>> {
    let m = Message::decode(octets).unwrap();
    let value = m.options.get(OptionNumber::OSCORE).unwrap();
    // Options below 9 come first; then the OSCORE option's header octet, plus one extended
    // length octet when the value has 13 to 268 octets (RFC 7252 §3.1; delta ≤ 9 needs none).
    let mut before = e2m_coap::Options::new();
    for (n, v) in m.options.iter().filter(|(n, _)| n.0 < 9) {
        before.push(n, v).unwrap();
    }
    let mut prefix = Vec::new();
    before.encode_with_payload(&[], &mut prefix);
    let start = 4 + m.token.as_bytes().len() + prefix.len() + 1 + usize::from(value.len() >= 13);
    assert_eq!(&octets[start..start + value.len()], value);
    let payload_start = octets.len() - m.payload.len();
    vec![start..start + value.len(), payload_start..octets.len()]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn requests_and_responses_round_trip(
        request in message(request_code()),
        response in message(response_code()),
        with_ctx in any::<bool>(),
        with_piv in any::<bool>(),
    ) {
        let (mut client, mut server) = contexts(true);
        let (protected, request_id) = client.protect_request(&request, with_ctx).unwrap();
        let wire = Message::decode(&protected.encode()).unwrap();
        let VerifiedRequest::Fresh { message, request: server_id } = server.verify_request(&wire).unwrap() else {
            panic!("not fresh");
        };
        prop_assert_eq!(&message, &request);
        let protected = server.protect_response(&response, &server_id, with_piv).unwrap();
        let wire = Message::decode(&protected.encode()).unwrap();
        prop_assert_eq!(&client.verify_response(&wire, &request_id).unwrap(), &response);

        // The datagram paths agree with the message paths.
        let mut datagram = Vec::new();
        let request_id = client.protect_request_datagram(&request, with_ctx, &mut datagram).unwrap();
        let VerifiedRequest::Fresh { message, request: server_id } = server.verify_request_datagram(&datagram).unwrap() else {
            panic!("not fresh");
        };
        prop_assert_eq!(&message, &request);
        let mut datagram = Vec::new();
        server.protect_response_datagram(&response, &server_id, with_piv, &mut datagram).unwrap();
        prop_assert_eq!(&client.verify_response_datagram(&datagram, &request_id).unwrap(), &response);

        // And so do the in-place paths (the request read from the view, as a handler does).
        let mut datagram = Vec::new();
        let request_id = client.protect_request_datagram(&request, with_ctx, &mut datagram).unwrap();
        let VerifiedRequest::Fresh { message, request: server_id } = server.verify_request_in_place(&mut datagram).unwrap() else {
            panic!("not fresh");
        };
        prop_assert_eq!(message.code, request.code);
        prop_assert!(message.options().eq(request.options.iter()));
        for (number, _) in request.options.iter() {
            prop_assert!(message.option_values(number).eq(request.options.get_all(number)));
            prop_assert_eq!(message.option(number), request.options.get(number));
        }
        prop_assert_eq!(message.payload, &request.payload[..]);
        prop_assert_eq!(&message.to_message(), &request);
        let mut datagram = Vec::new();
        server.protect_response_datagram(&response, &server_id, with_piv, &mut datagram).unwrap();
        prop_assert_eq!(client.verify_response_in_place(&mut datagram, &request_id).unwrap().to_message(), response);
    }

    #[test]
    fn no_single_bit_flip_gets_through(
        request in message(request_code()),
        response in message(response_code()),
    ) {
        let (mut client, _) = contexts(false);
        let (protected, request_id) = client.protect_request(&request, false).unwrap();
        let octets = protected.encode();
        let ranges = protected_ranges(&octets);
        for bit in 0..octets.len() * 8 {
            let mut flipped = octets.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            let in_protected = ranges.iter().any(|r| r.contains(&(bit / 8)));
            // A fresh server each time, so that the replay window is not what refuses it.
            let (_, mut server) = contexts(false);
            let outcome = Message::decode(&flipped).map_err(|_| ()).and_then(|m| server.verify_request(&m).map_err(|_| ()));
            // The in-place path refuses and accepts exactly the same (with the same error).
            let (_, mut in_place) = contexts(false);
            let (_, mut owned) = contexts(false);
            let mut copy = flipped.clone();
            match (in_place.verify_request_in_place(&mut copy), owned.verify_request_datagram(&flipped)) {
                (Err(a), Err(b)) => prop_assert_eq!(a, b, "bit {}", bit),
                (Ok(VerifiedRequest::Fresh { message: a, .. }), Ok(VerifiedRequest::Fresh { message: b, .. })) => {
                    prop_assert_eq!(a.to_message(), b, "bit {}", bit);
                }
                (a, b) => panic!("bit {bit}: in place {a:?}, datagram {b:?}"),
            }
            match outcome {
                Err(()) => {}
                Ok(VerifiedRequest::Fresh { message, .. }) => {
                    prop_assert!(!in_protected, "bit {} of the protected part accepted", bit);
                    prop_assert_eq!(protected_content(&message), protected_content(&request), "bit {}", bit);
                }
                Ok(other) => panic!("{other:?}"),
            }
        }

        // The same for a response, verified by the client.
        let (_, mut server) = contexts(false);
        let VerifiedRequest::Fresh { request: server_id, .. } = server.verify_request(&protected).unwrap() else {
            panic!("not fresh");
        };
        let octets = server.protect_response(&response, &server_id, false).unwrap().encode();
        let ranges = protected_ranges(&octets);
        for bit in 0..octets.len() * 8 {
            let mut flipped = octets.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            let in_protected = ranges.iter().any(|r| r.contains(&(bit / 8)));
            let mut copy = flipped.clone();
            match (client.verify_response_in_place(&mut copy, &request_id), client.verify_response_datagram(&flipped, &request_id)) {
                (Err(a), Err(b)) => prop_assert_eq!(a, b, "bit {}", bit),
                (Ok(a), Ok(b)) => prop_assert_eq!(a.to_message(), b, "bit {}", bit),
                (a, b) => panic!("bit {bit}: in place {a:?}, datagram {b:?}"),
            }
            match Message::decode(&flipped).map_err(|_| ()).and_then(|m| client.verify_response(&m, &request_id).map_err(|_| ())) {
                Err(()) => {}
                Ok(message) => {
                    prop_assert!(!in_protected, "bit {} of the protected response accepted", bit);
                    prop_assert_eq!(protected_content(&message), protected_content(&response), "bit {}", bit);
                }
            }
        }
    }
}
