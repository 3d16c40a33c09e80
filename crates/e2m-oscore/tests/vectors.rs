//! RFC 8613 Appendix C: every vector, in both directions (protect gives the RFC's octets;
//! verify of the RFC's octets gives the unprotected message back). Sources are cited in the
//! data files.
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]

mod common;

use common::{Case, cases};
use e2m_coap::Message;
use e2m_oscore::*;

const KEY_DERIVATION: &str = include_str!("data/rfc8613_key_derivation.txt");
const MESSAGES: &str = include_str!("data/rfc8613_messages.txt");

fn context(c: &Case, sequence: SenderSequence) -> SecurityContext {
    let secret = MasterSecret::new(&c.bytes("master_secret")).unwrap();
    let salt = c.opt_bytes("master_salt").unwrap_or_default();
    let id_context = c.opt_bytes("id_context");
    let input = ContextInput {
        master_secret: &secret,
        master_salt: &salt,
        id_context: id_context.as_deref(),
        sender_id: &c.bytes("sender_id"),
        recipient_id: &c.bytes("recipient_id"),
    };
    SecurityContext::derive(&input, sequence).unwrap_or_else(|e| panic!("{c:?}{e}"))
}

/// The peer's context: the same inputs with Sender and Recipient ID swapped.
fn peer_context(c: &Case) -> SecurityContext {
    let secret = MasterSecret::new(&c.bytes("master_secret")).unwrap();
    let salt = c.opt_bytes("master_salt").unwrap_or_default();
    let id_context = c.opt_bytes("id_context");
    let input = ContextInput {
        master_secret: &secret,
        master_salt: &salt,
        id_context: id_context.as_deref(),
        sender_id: &c.bytes("recipient_id"),
        recipient_id: &c.bytes("sender_id"),
    };
    SecurityContext::derive(&input, SenderSequence::volatile()).unwrap()
}

#[test]
fn key_derivation_matches_appendix_c1_to_c3() {
    let all = cases(KEY_DERIVATION);
    assert_eq!(all.len(), 6);
    for c in &all {
        let ctx = context(c, SenderSequence::volatile());
        let hex = |b: &[u8]| hex::encode(b);
        assert_eq!(
            hex(ctx.sender_key().expose_secret()),
            c.text("sender_key"),
            "{c:?}"
        );
        assert_eq!(
            hex(ctx.recipient_key().expose_secret()),
            c.text("recipient_key"),
            "{c:?}"
        );
        assert_eq!(
            hex(ctx.common_iv().expose_secret()),
            c.text("common_iv"),
            "{c:?}"
        );
        let zero = PartialIv::from_sequence(0).unwrap();
        assert_eq!(
            hex(&ctx.nonce(ctx.sender_id(), &zero)),
            c.text("sender_nonce"),
            "{c:?}"
        );
        assert_eq!(
            hex(&ctx.nonce(ctx.recipient_id(), &zero)),
            c.text("recipient_nonce"),
            "{c:?}"
        );
    }
}

#[test]
fn requests_match_appendix_c4_to_c6() {
    let all: Vec<_> = cases(MESSAGES)
        .into_iter()
        .filter(|c| c.text("role") == "client")
        .collect();
    assert_eq!(all.len(), 3);
    for c in &all {
        let mut client = context(c, SenderSequence::volatile_from(c.number("ssn")));
        let unprotected = Message::decode(&c.bytes("unprotected")).unwrap();
        let (protected, request_id) = client
            .protect_request(&unprotected, c.flag("with_kid_context"))
            .unwrap();
        assert_eq!(
            hex::encode(protected.encode()),
            c.text("protected"),
            "{c:?}"
        );
        assert_eq!(request_id.partial_iv().sequence(), c.number("ssn"));

        // The datagram path gives the same octets (from the same sequence number).
        let mut again = context(c, SenderSequence::volatile_from(c.number("ssn")));
        let mut datagram = Vec::new();
        let id = again
            .protect_request_datagram(&unprotected, c.flag("with_kid_context"), &mut datagram)
            .unwrap();
        assert_eq!(hex::encode(&datagram), c.text("protected"), "{c:?}");
        assert_eq!(id, request_id);
        let mut server = peer_context(c);
        match server
            .verify_request_datagram(&c.bytes("protected"))
            .unwrap()
        {
            VerifiedRequest::Fresh { message, .. } => {
                assert_eq!(message.encode(), c.bytes("unprotected"), "{c:?}")
            }
            other => panic!("{c:?}{other:?}"),
        }
        // Decrypted in place: the same request, read from the datagram's own octets.
        let mut server = peer_context(c);
        let mut octets = c.bytes("protected");
        match server.verify_request_in_place(&mut octets).unwrap() {
            VerifiedRequest::Fresh { message, request } => {
                let want = Message::decode(&c.bytes("unprotected")).unwrap();
                assert_eq!(message.code, want.code, "{c:?}");
                assert!(message.options().eq(want.options.iter()), "{c:?}");
                assert_eq!(message.payload, want.payload, "{c:?}");
                assert_eq!(message.to_message(), want, "{c:?}");
                assert_eq!(request, request_id);
            }
            other => panic!("{c:?}{other:?}"),
        }

        // The server side: the RFC's octets verify to the unprotected request.
        let mut server = peer_context(c);
        let on_wire = Message::decode(&c.bytes("protected")).unwrap();
        match server.verify_request(&on_wire).unwrap() {
            VerifiedRequest::Fresh { message, request } => {
                assert_eq!(message.encode(), c.bytes("unprotected"), "{c:?}");
                assert_eq!(request, request_id);
            }
            other => panic!("{c:?}{other:?}"),
        }
    }
}

#[test]
fn responses_match_appendix_c7_and_c8() {
    let all: Vec<_> = cases(MESSAGES)
        .into_iter()
        .filter(|c| c.text("role") == "server")
        .collect();
    assert_eq!(all.len(), 2);
    for c in &all {
        let mut server = context(c, SenderSequence::volatile_from(c.number("ssn")));
        let request = Message::decode(&c.bytes("request")).unwrap();
        let VerifiedRequest::Fresh {
            request: request_id,
            ..
        } = server.verify_request(&request).unwrap()
        else {
            panic!("{c:?}");
        };
        let unprotected = Message::decode(&c.bytes("unprotected")).unwrap();
        let protected = server
            .protect_response(&unprotected, &request_id, c.flag("with_partial_iv"))
            .unwrap();
        assert_eq!(
            hex::encode(protected.encode()),
            c.text("protected"),
            "{c:?}"
        );

        let mut again = context(c, SenderSequence::volatile_from(c.number("ssn")));
        let mut datagram = Vec::new();
        again
            .protect_response_datagram(
                &unprotected,
                &request_id,
                c.flag("with_partial_iv"),
                &mut datagram,
            )
            .unwrap();
        assert_eq!(hex::encode(&datagram), c.text("protected"), "{c:?}");
        let client = peer_context(c);
        let message = client
            .verify_response_datagram(&c.bytes("protected"), &request_id)
            .unwrap();
        assert_eq!(message.encode(), c.bytes("unprotected"), "{c:?}");
        let mut octets = c.bytes("protected");
        let view = client
            .verify_response_in_place(&mut octets, &request_id)
            .unwrap();
        assert_eq!(view.to_message().encode(), c.bytes("unprotected"), "{c:?}");
        assert!(view.options().eq(message.options.iter()), "{c:?}");
        assert_eq!(view.payload, message.payload, "{c:?}");

        // The client side verifies the RFC's octets.
        let client = peer_context(c);
        let on_wire = Message::decode(&c.bytes("protected")).unwrap();
        let message = client.verify_response(&on_wire, &request_id).unwrap();
        assert_eq!(message.encode(), c.bytes("unprotected"), "{c:?}");
    }
}
