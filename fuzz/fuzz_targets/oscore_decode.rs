//! CoAP and OSCORE decoding on arbitrary octets: typed errors or values, never a panic.
//! * CoAP: decode → encode is the identity (one encoding per message); the borrowed
//!   `MessageView` accepts exactly the same inputs.
//! * The datagram entry points (`verify_*_datagram`) refuse everything, never panic; the
//!   in-place ones (`verify_*_in_place`) refuse with the same error and leave the octets
//!   before the payload as they were.
//! * The OSCORE option value: decode → encode is the identity.
//! * Any CoAP message with an OSCORE option goes through the EMSE's request hint, request
//!   verification and the client's response verification of real contexts: everything must
//!   be refused (the fuzzer cannot forge the AEAD) without a panic.
#![no_main]

use e2m_coap::{Code, Message, MessageType, MessageView, Token};
use e2m_oscore::e2m::{RequestHint, ue_action};
use e2m_oscore::{
    ContextInput, MasterSecret, OscoreOption, RequestId, SecurityContext, SenderSequence,
    VerifiedRequest, oscore_option,
};
use libfuzzer_sys::fuzz_target;

fn context(sender: &[u8], recipient: &[u8]) -> Option<SecurityContext> {
    let secret = MasterSecret::new(b"fuzz master secret").ok()?;
    let input = ContextInput {
        master_secret: &secret,
        master_salt: b"salt",
        id_context: Some(b"\x01fuzz@example.com"),
        sender_id: sender,
        recipient_id: recipient,
    };
    SecurityContext::derive(&input, SenderSequence::volatile()).ok()
}

fn request_id(client: &mut SecurityContext) -> Option<RequestId> {
    let request = Message::new(
        MessageType::Confirmable,
        Code::GET,
        1,
        Token::new(&[1]).ok()?,
    );
    Some(client.protect_request(&request, true).ok()?.1)
}

fuzz_target!(|data: &[u8]| {
    // The borrowed view accepts exactly what the owned decoder accepts.
    assert_eq!(
        MessageView::parse(data).is_ok(),
        Message::decode(data).is_ok(),
        "view and decoder disagree"
    );
    if let (Some(mut server), Some(mut client)) = (
        context(b"", b"\xae\x47\xbf\x35"),
        context(b"\xae\x47\xbf\x35", b""),
    ) {
        let owned = server.verify_request_datagram(data).err();
        assert!(owned.is_some(), "forged datagram verified");
        // In place: the same error, and the octets before the payload left as received.
        let mut copy = data.to_vec();
        assert_eq!(
            server.verify_request_in_place(&mut copy).err(),
            owned,
            "in-place and datagram verification disagree"
        );
        let head = MessageView::parse(data).map_or(0, |m| data.len() - m.payload.len());
        assert_eq!(
            copy[..head],
            data[..head],
            "in-place verification changed the header"
        );
        if let Some(id) = request_id(&mut client) {
            let owned = client.verify_response_datagram(data, &id).err();
            assert!(owned.is_some(), "forged response verified");
            let mut copy = data.to_vec();
            assert_eq!(client.verify_response_in_place(&mut copy, &id).err(), owned);
            assert_eq!(copy[..head], data[..head]);
        }
    }
    if let Ok(option) = OscoreOption::decode(data) {
        let mut out = Vec::new();
        option.encode(&mut out);
        assert_eq!(out, data, "non-canonical OSCORE option accepted");
    }
    let Ok(message) = Message::decode(data) else {
        return;
    };
    assert_eq!(
        message.encode(),
        data,
        "non-canonical CoAP message accepted"
    );
    if oscore_option(&message).is_err() {
        return;
    }
    let _ = RequestHint::from_request(&message);
    let _ = ue_action(&message, true);
    let (Some(mut client), Some(mut server)) = (
        context(b"\xae\x47\xbf\x35", b""),
        context(b"", b"\xae\x47\xbf\x35"),
    ) else {
        return;
    };
    match server.verify_request(&message) {
        Ok(VerifiedRequest::Fresh { .. }) | Ok(VerifiedRequest::EchoRequired { .. }) => {
            panic!("forged request verified")
        }
        Err(e) => {
            let _ = e.response_code();
        }
    }
    if let Some(id) = request_id(&mut client) {
        assert!(
            client.verify_response(&message, &id).is_err(),
            "forged response verified"
        );
    }
});
