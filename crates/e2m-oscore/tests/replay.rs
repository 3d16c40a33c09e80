//! Replay protection (RFC 8613 §7.4) and reboots (Appendix B.1.1, B.1.2): a replayed request
//! is refused, a reordered one inside the window accepted, and a rebooted endpoint never
//! gets (or gives) a response under a reused nonce.
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]

use std::collections::HashSet;

use e2m_coap::{Code, Message, MessageType, OptionNumber, Token};
use e2m_oscore::*;

const SECRET: &[u8] = b"0123456789abcdef";

fn pair(client_seq: SenderSequence) -> (SecurityContext, SecurityContext) {
    let secret = MasterSecret::new(SECRET).unwrap();
    let input = |sender: &'static [u8], recipient: &'static [u8]| ContextInput {
        master_secret: &secret,
        master_salt: b"salt",
        id_context: None,
        sender_id: sender,
        recipient_id: recipient,
    };
    let client = SecurityContext::derive(&input(b"\x01", b""), client_seq).unwrap();
    let server = SecurityContext::derive(&input(b"", b"\x01"), SenderSequence::volatile()).unwrap();
    (client, server)
}

fn server_only() -> SecurityContext {
    pair(SenderSequence::volatile()).1
}

fn get(mid: u16, path: &str) -> Message {
    let mut m = Message::new(
        MessageType::Confirmable,
        Code::GET,
        mid,
        Token::new(&mid.to_be_bytes()).unwrap(),
    );
    m.set_uri_path(path).unwrap();
    m
}

fn fresh(server: &mut SecurityContext, request: &Message) -> (Message, RequestId) {
    match server.verify_request(request) {
        Ok(VerifiedRequest::Fresh { message, request }) => (message, request),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_replayed_or_altered_datagram_is_refused_in_place_and_can_still_be_answered() {
    let (mut client, mut server) = pair(SenderSequence::volatile());
    let mut captured = Vec::new();
    client
        .protect_request_datagram(&get(1, "door/open"), false, &mut captured)
        .unwrap();
    let mut first = captured.clone();
    match server.verify_request_in_place(&mut first).unwrap() {
        VerifiedRequest::Fresh { message, .. } => {
            assert!(
                message
                    .option_values(OptionNumber::URI_PATH)
                    .eq([&b"door"[..], b"open"])
            );
        }
        other => panic!("{other:?}"),
    }
    // The captured datagram again: refused before decryption, the octets untouched.
    let mut replay = captured.clone();
    assert_eq!(
        server.verify_request_in_place(&mut replay).err(),
        Some(OscoreError::Replay)
    );
    assert_eq!(replay, captured);
    // The next request with its tag altered: refused, and the window has not moved (the
    // unaltered one is still fresh).
    let mut next = Vec::new();
    client
        .protect_request_datagram(&get(2, "door/open"), false, &mut next)
        .unwrap();
    let mut altered = next.clone();
    *altered.last_mut().unwrap() ^= 1;
    assert_eq!(
        server.verify_request_in_place(&mut altered).err(),
        Some(OscoreError::DecryptionFailed)
    );
    // The header, token and options are as received, so the §8.2 answer can be built.
    let received = Message::decode(&altered).unwrap();
    let answer = unprotected_error(&received, OscoreError::DecryptionFailed).unwrap();
    assert_eq!(answer.code, Code::BAD_REQUEST);
    assert_eq!((answer.message_id, answer.token), (2, received.token));
    assert!(matches!(
        server.verify_request_in_place(&mut next),
        Ok(VerifiedRequest::Fresh { .. })
    ));
}

#[test]
fn a_replayed_request_is_refused() {
    let (mut client, mut server) = pair(SenderSequence::volatile());
    let (protected, _) = client.protect_request(&get(1, "door/open"), false).unwrap();
    let (message, _) = fresh(&mut server, &protected);
    assert_eq!(message.uri_path(), "door/open");
    // The captured datagram, sent again: refused, and the answer is the §8.2 unprotected 4.01.
    let replay = Message::decode(&protected.encode()).unwrap();
    assert_eq!(
        server.verify_request(&replay).err(),
        Some(OscoreError::Replay)
    );
    let answer = unprotected_error(&replay, OscoreError::Replay).unwrap();
    assert_eq!(answer.code, Code::UNAUTHORIZED);
    assert_eq!(answer.payload, b"Replay detected");
    assert!(!answer.options.contains(OptionNumber::OSCORE));
}

#[test]
fn reordered_requests_within_the_window_are_accepted() {
    let (mut client, mut server) = pair(SenderSequence::volatile());
    let requests: Vec<Message> = (0..40u16)
        .map(|i| client.protect_request(&get(i, "t"), false).unwrap().0)
        .collect();
    // Deliver 39 first, then older ones out of order: all inside the 32-wide window.
    for i in [39usize, 20, 38, 8, 30, 9, 25] {
        fresh(&mut server, &requests[i]);
    }
    for i in [39usize, 20, 8] {
        assert_eq!(
            server.verify_request(&requests[i]).err(),
            Some(OscoreError::Replay),
            "{i}"
        );
    }
    // 7 = 39 - 32 is left of the window: it cannot be told from a replay.
    assert_eq!(
        server.verify_request(&requests[7]).err(),
        Some(OscoreError::Replay)
    );
    // A forged request does not move the window (only verified ones do).
    let mut forged = requests[10].clone();
    forged.payload[0] ^= 1;
    assert_eq!(
        server.verify_request(&forged).err(),
        Some(OscoreError::DecryptionFailed)
    );
    fresh(&mut server, &requests[10]);
}

#[test]
fn a_rebooted_client_with_persisted_sequence_never_reuses_a_nonce() {
    // Appendix B.1.1: the client reserves 8 numbers at a time in "non-volatile memory".
    let mut nv_memory = 0u64;
    let (mut client, mut server) = pair(SenderSequence::persistent(8));
    let mut request_nonces = HashSet::new();
    let mut response_count = 0;
    for boot in 0..4 {
        if boot > 0 {
            // Reboot: RAM (context, sequence) is lost; the context is re-derived from the
            // same Master Secret and the sequence resumes from non-volatile memory.
            client = pair(SenderSequence::resume(nv_memory, 8)).0;
        }
        for i in 0..11u16 {
            let request = get(i, "sensor");
            let (protected, request_id) = match client.protect_request(&request, false) {
                Err(OscoreError::ReservationNeeded) => {
                    nv_memory = client.sequence().reservation_needed().unwrap();
                    client.sequence_mut().reservation_persisted(nv_memory);
                    client.protect_request(&request, false).unwrap()
                }
                other => other.unwrap(),
            };
            // The nonce is a function of (sender id, Partial IV): unique PIVs = unique nonces.
            assert!(
                request_nonces.insert(request_id.partial_iv().sequence()),
                "boot {boot}"
            );
            let (_, server_request) = fresh(&mut server, &protected);
            let response = request.piggybacked_response(Code::CONTENT, b"21.5".to_vec());
            let protected_response = server
                .protect_response(&response, &server_request, false)
                .unwrap();
            let plain = client
                .verify_response(&protected_response, &request_id)
                .unwrap();
            assert_eq!(plain.payload, b"21.5");
            response_count += 1;
        }
    }
    assert_eq!(response_count, 44);
}

#[test]
fn a_rebooted_client_that_lost_its_sequence_gets_no_response() {
    let (mut client, mut server) = pair(SenderSequence::volatile());
    for i in 0..5u16 {
        let (protected, _) = client.protect_request(&get(i, "a"), false).unwrap();
        fresh(&mut server, &protected);
    }
    // A client without B.1.1 that reboots starts at 0 again and reuses its nonces. The
    // server's replay window refuses every such request, so the server never protects a
    // response with the reused (key, nonce) pair.
    let (mut rebooted, _) = pair(SenderSequence::volatile());
    for i in 0..5u16 {
        let (protected, _) = rebooted.protect_request(&get(100 + i, "b"), false).unwrap();
        assert_eq!(
            server.verify_request(&protected).err(),
            Some(OscoreError::Replay),
            "{i}"
        );
    }
    // Its first number beyond the old ones is accepted again.
    let (protected, _) = rebooted.protect_request(&get(200, "c"), false).unwrap();
    fresh(&mut server, &protected);
}

#[test]
fn a_rebooted_server_recovers_its_window_with_echo() {
    // Appendix B.1.2. The server persists its own sequence (B.1.1) but not its window.
    let (mut client, mut server) = pair(SenderSequence::volatile());
    let (old, _) = client.protect_request(&get(1, "door/open"), false).unwrap();
    fresh(&mut server, &old);

    let mut server = server_only();
    server.forget_replay_window();
    // A replay of the captured request after the reboot: authentic but not processed.
    let VerifiedRequest::EchoRequired { request: old_id } = server.verify_request(&old).unwrap()
    else {
        panic!("processed a request with an unknown window");
    };
    let _ = old_id;

    // The client's next request is challenged with a protected 4.01 + Echo.
    let request = get(2, "door/status");
    let (protected, request_id) = client.protect_request(&request, false).unwrap();
    let VerifiedRequest::EchoRequired { request: server_id } =
        server.verify_request(&protected).unwrap()
    else {
        panic!("processed a request with an unknown window");
    };
    let challenge = server
        .echo_challenge(&protected, &server_id, b"\x8a\x17\x03\x99\xe4\x5b\x21\x0c")
        .unwrap();
    let option = oscore_option(&challenge).unwrap();
    assert!(
        option.partial_iv.is_some(),
        "the challenge must not reuse the request nonce"
    );
    let challenge = client.verify_response(&challenge, &request_id).unwrap();
    assert_eq!(challenge.code, Code::UNAUTHORIZED);
    let echo = challenge.options.get(OptionNumber::ECHO).unwrap().to_vec();

    // A wrong Echo is still challenged; the right one is processed and sets the window.
    let mut wrong = request.clone();
    wrong.options.push(OptionNumber::ECHO, b"guess").unwrap();
    let (wrong, _) = client.protect_request(&wrong, false).unwrap();
    assert!(matches!(
        server.verify_request(&wrong),
        Ok(VerifiedRequest::EchoRequired { .. })
    ));
    // The same through the in-place verifier (a challenged request moves nothing).
    assert!(matches!(
        server.verify_request_in_place(&mut wrong.encode()),
        Ok(VerifiedRequest::EchoRequired { .. })
    ));

    let mut retry = request.clone();
    retry.options.push(OptionNumber::ECHO, &echo).unwrap();
    let (retry, _) = client.protect_request(&retry, false).unwrap();
    // Answered in place: the Echo is read from the decrypted datagram.
    let mut octets = retry.encode();
    let VerifiedRequest::Fresh { message, .. } =
        server.verify_request_in_place(&mut octets).unwrap()
    else {
        panic!("the right Echo was challenged again");
    };
    assert_eq!(message.to_message().uri_path(), "door/status");
    assert_eq!(message.option(OptionNumber::ECHO), Some(&echo[..]));
    // From now on the window works: the old capture and the retry are both refused.
    assert_eq!(server.verify_request(&old).err(), Some(OscoreError::Replay));
    assert_eq!(
        server.verify_request(&retry).err(),
        Some(OscoreError::Replay)
    );
}
