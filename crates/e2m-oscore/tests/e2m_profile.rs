//! The e2m profile against the independent Python reference (tests/data/e2m_profile.txt,
//! written by vectors/generate.py), and the EMSE's admission decisions: context lookup,
//! key fetch, re-authentication, fetch budget and Echo return routability.
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]

mod common;

use common::cases;
use e2m_coap::{Code, Message, MessageType, OptionNumber, Token};
use e2m_kdf::{E2mKey, E2mProfile, Fc};
use e2m_keyid::{AppIdentity, KeyId};
use e2m_oscore::e2m::*;
use e2m_oscore::*;

const PROFILE_VECTORS: &str = include_str!("data/e2m_profile.txt");
const P: E2mOscoreProfile<'static> = E2mOscoreProfile::PROVISIONAL;

fn fixture() -> (E2mKey, AppIdentity, KeyId) {
    let all = cases(PROFILE_VECTORS);
    let c = &all[0];
    (
        E2mKey::from_hex(c.text("e2m_key")).unwrap(),
        AppIdentity::new(c.text("identity")).unwrap(),
        KeyId::from_u32(u32::from_str_radix(c.text("key_id"), 16).unwrap()),
    )
}

#[test]
fn profile_matches_the_python_reference() {
    let all = cases(PROFILE_VECTORS);
    let (c, m) = (&all[0], &all[1]);
    let (key, identity, key_id) = fixture();
    assert_eq!(
        hex::encode(P.master_secret(&key).unwrap().expose_secret()),
        c.text("master_secret")
    );
    assert_eq!(hex::encode(id_context(&identity)), c.text("id_context"));
    let mut ue = P
        .ue_context(&key, &identity, key_id, SenderSequence::volatile())
        .unwrap();
    let mut emse = P
        .emse_context(&key, &identity, key_id, SenderSequence::volatile())
        .unwrap();
    assert_eq!(
        hex::encode(ue.sender_key().expose_secret()),
        c.text("ue_sender_key")
    );
    assert_eq!(
        hex::encode(emse.sender_key().expose_secret()),
        c.text("emse_sender_key")
    );
    assert_eq!(
        hex::encode(ue.common_iv().expose_secret()),
        c.text("common_iv")
    );
    assert_eq!(ue.sender_id(), key_id.to_be_bytes());
    assert_eq!(emse.sender_id(), EMSE_SENDER_ID);

    // Request with the ID Context, its response, a second request without it.
    let request = Message::decode(&m.bytes("request")).unwrap();
    let (protected, request_id) = ue.protect_request(&request, true).unwrap();
    assert_eq!(hex::encode(protected.encode()), m.text("request_protected"));
    let hint = RequestHint::from_request(&protected).unwrap();
    assert_eq!(
        hint,
        RequestHint {
            key_id,
            identity: Some(identity.clone())
        }
    );
    let VerifiedRequest::Fresh {
        message,
        request: emse_id,
    } = emse.verify_request(&protected).unwrap()
    else {
        panic!()
    };
    assert_eq!(message, request);
    let response = Message::decode(&m.bytes("response")).unwrap();
    let protected = emse.protect_response(&response, &emse_id, false).unwrap();
    assert_eq!(
        hex::encode(protected.encode()),
        m.text("response_protected")
    );
    assert_eq!(
        ue.verify_response(&protected, &request_id).unwrap(),
        response
    );

    let request2 = Message::decode(&m.bytes("request2")).unwrap();
    let (protected, _) = ue.protect_request(&request2, false).unwrap();
    assert_eq!(
        hex::encode(protected.encode()),
        m.text("request2_protected")
    );
    assert_eq!(
        RequestHint::from_request(&protected).unwrap().identity,
        None
    );
    assert!(matches!(
        emse.verify_request(&protected),
        Ok(VerifiedRequest::Fresh { .. })
    ));
}

#[test]
fn provisional_profile_is_valid_and_separate() {
    P.validate(&E2mProfile::PROVISIONAL).unwrap();
    let fc = P.master_secret_fc.as_bytes()[0];
    // TS 33.220 Annex B allocations (DESIGN.md §4) and e2m's own 0xE0-0xE2.
    let taken = |v: u8| matches!(v, 0x01 | 0x10..=0x3F | 0x50..=0x52 | 0x63..=0x64 | 0x69..=0x84 | 0x8C..=0x8E | 0xE0..=0xE2 | 0xFF);
    assert!(!taken(fc));
    let clash = E2mOscoreProfile {
        master_secret_fc: Fc::E2M_KEY_PROVISIONAL,
        ..P
    };
    assert_eq!(
        clash.validate(&E2mProfile::PROVISIONAL),
        Err(E2mOscoreError::FcCollision)
    );
    let empty = E2mOscoreProfile {
        master_secret_label: "",
        ..P
    };
    assert!(empty.validate(&E2mProfile::PROVISIONAL).is_err());
    // The master secret is not the DTLS PSK.
    let (key, _, _) = fixture();
    assert_ne!(
        P.master_secret(&key).unwrap().expose_secret(),
        key.expose_secret()
    );
}

#[test]
fn reauthentication_yields_a_new_context() {
    let (key, identity, key_id) = fixture();
    let new_key = E2mKey::from_array([0x5a; 32]);
    let new_id = KeyId::from_u32(0x0102_0304);
    let mut old_ue = P
        .ue_context(&key, &identity, key_id, SenderSequence::volatile())
        .unwrap();
    let mut new_emse = P
        .emse_context(&new_key, &identity, new_id, SenderSequence::volatile())
        .unwrap();
    let (protected, _) = old_ue.protect_request(&get(1), true).unwrap();
    // Another key id is another kid: the new context does not even try to decrypt.
    assert_eq!(
        new_emse.verify_request(&protected).err(),
        Some(OscoreError::ContextNotFound)
    );
    // Malformed ID Contexts are refused.
    assert_eq!(parse_id_context(b"\x02x"), Err(E2mOscoreError::IdContext));
    assert_eq!(parse_id_context(b""), Err(E2mOscoreError::IdContext));
    assert_eq!(parse_id_context(&id_context(&identity)), Ok(identity));
}

fn get(mid: u16) -> Message {
    let mut m = Message::new(
        MessageType::Confirmable,
        Code::GET,
        mid,
        Token::new(&[9, 9]).unwrap(),
    );
    m.set_uri_path("temperature").unwrap();
    m
}

fn ue(seq: u64) -> (SecurityContext, AppIdentity, KeyId) {
    let (key, identity, key_id) = fixture();
    let ctx = P
        .ue_context(&key, &identity, key_id, SenderSequence::volatile_from(seq))
        .unwrap();
    (ctx, identity, key_id)
}

#[test]
fn gate_routes_known_unknown_and_evicted_contexts() {
    let mut gate = EmseGate::new(
        FetchGuard::Budget(FetchBudgetConfig::default()),
        &[7; 32],
        30_000,
    );
    let (mut ue, identity, key_id) = ue(0);
    let (with_ctx, _) = ue.protect_request(&get(1), true).unwrap();
    let (without_ctx, _) = ue.protect_request(&get(2), false).unwrap();

    // Known context: verify.
    let c = gate.classify(&with_ctx, b"10.0.0.1:5683", 0, |h| h.key_id == key_id);
    assert!(matches!(c, Classified::Verify(h) if h.identity.as_ref() == Some(&identity)));
    // Unknown, with identity: fetch exactly (identity, key id), as psk_identity would.
    match gate.classify(&with_ctx, b"10.0.0.1:5683", 0, |_| false) {
        Classified::Fetch {
            identity: i,
            key_id: k,
        } => assert_eq!((i, k), (identity.clone(), key_id)),
        other => panic!("{other:?}"),
    }
    // Unknown, without identity: 4.01, and the UE retries with the ID Context.
    let Classified::Answer(answer) = gate.classify(&without_ctx, b"10.0.0.1:5683", 0, |_| false)
    else {
        panic!()
    };
    assert_eq!(answer.code, Code::UNAUTHORIZED);
    assert_eq!(answer.payload, b"Security context not found");
    assert_eq!(answer.token, without_ctx.token);
    assert_eq!(ue_action(&answer, false), UeAction::RetryWithIdContext);
    // The EMKS no longer holds the key id: the same 4.01, now to a request with the ID
    // Context, tells the UE to re-authenticate.
    let evicted = context_not_found(&with_ctx);
    assert_eq!(ue_action(&evicted, true), UeAction::Reauthenticate);
    // Garbage in the OSCORE option: 4.02 without any fetch.
    let mut bad = with_ctx.clone();
    bad.options.set(OptionNumber::OSCORE, &[0xff]).unwrap();
    let Classified::Answer(answer) = gate.classify(&bad, b"x", 0, |_| panic!("looked up")) else {
        panic!()
    };
    assert_eq!(answer.code, Code::BAD_OPTION);
    // Not an e2m kid (not 4 octets): context not found.
    let mut other = with_ctx.clone();
    other
        .options
        .set(OptionNumber::OSCORE, &[0x09, 0x01, 0xaa])
        .unwrap();
    let Classified::Answer(answer) = gate.classify(&other, b"x", 0, |_| panic!("looked up")) else {
        panic!()
    };
    assert_eq!(answer.code, Code::UNAUTHORIZED);
}

/// issue 16: a request whose key the EMSE has at hand goes to `Fetch` without a token; the
/// budget still bounds the others.
#[test]
fn a_key_at_hand_spends_no_fetch_token() {
    let mut gate = EmseGate::new(
        FetchGuard::Budget(FetchBudgetConfig {
            burst: 1,
            per_minute: 0,
            max_sources: 4,
        }),
        &[7; 32],
        30_000,
    );
    let (mut ue, identity, key_id) = ue(0);
    let (request, _) = ue.protect_request(&get(1), true).unwrap();
    let source = b"10.0.0.1";
    // The one token, on a fetch.
    assert!(matches!(
        gate.classify(&request, source, 0, |_| false),
        Classified::Fetch { .. }
    ));
    // Spent: a request whose key is at hand still goes through, as often as it comes.
    for _ in 0..10 {
        match gate.classify_lookup(&request, source, 0, |_| ContextLookup::KeyAtHand) {
            Classified::Fetch {
                identity: i,
                key_id: k,
            } => assert_eq!((i, k), (identity.clone(), key_id)),
            other => panic!("{other:?}"),
        }
    }
    // One that needs the key server is refused (5.03): the budget is as it was.
    let Classified::Answer(answer) =
        gate.classify_lookup(&request, source, 0, |_| ContextLookup::Absent)
    else {
        panic!("fetched past the budget")
    };
    assert_eq!(answer.code, Code::SERVICE_UNAVAILABLE);
    // Held is Verify, as `true` is.
    assert!(matches!(
        gate.classify_lookup(&request, source, 0, |_| ContextLookup::Held),
        Classified::Verify(_)
    ));
}

/// The token-bucket arithmetic the gate and the DTLS server share: burst, refill in exact
/// integer steps, the wait until the next token, give-back capped at the burst, and the
/// bounded table.
#[test]
fn fetch_buckets_take_refill_give_back_and_bound_sources() {
    use std::time::Duration;
    let mut b: FetchBuckets<Vec<u8>> = FetchBuckets::new(FetchBudgetConfig {
        burst: 3,
        per_minute: 30,
        max_sources: 2,
    });
    let (one, two, three) = (&[1u8][..], &[2u8][..], &[3u8][..]);
    for _ in 0..3 {
        assert_eq!(b.take(one, 0), Ok(()));
    }
    // 30 per minute: a token every 2,000 ms; 1,999 ms in, 1 ms short.
    assert_eq!(b.take(one, 0), Err(Some(Duration::from_secs(2))));
    assert_eq!(b.take(one, 1_999), Err(Some(Duration::from_millis(1))));
    assert_eq!(b.take(one, 2_000), Ok(()));
    // Give-back: one token per call, never past the burst.
    for _ in 0..10 {
        b.give_back(one, 2_000);
    }
    for _ in 0..3 {
        assert_eq!(b.take(one, 2_000), Ok(()));
    }
    assert!(b.take(one, 2_000).is_err());
    // A source not tracked gains nothing from a give-back.
    b.give_back(two, 2_000);
    assert_eq!(b.sources(), 1);
    assert_eq!(b.take(two, 2_000), Ok(()));
    // Two sources tracked, both spent: a third is refused until one has refilled.
    assert_eq!(b.take(three, 2_000), Err(None));
    // 2 s later `two` is full again (2 + 1 tokens) and so forgotten; `one` (1 token) is not.
    assert_eq!(b.take(three, 4_000), Ok(()));
    assert_eq!(b.sources(), 2);
    assert_eq!(b.take(one, 4_000), Ok(()));
    assert!(b.take(one, 4_000).is_err(), "one kept its state");
    assert_eq!(b.config().burst, 3);
}

#[test]
fn fetch_budget_bounds_each_source() {
    let budget = FetchBudgetConfig {
        burst: 2,
        per_minute: 6,
        max_sources: 2,
    };
    let mut gate = EmseGate::new(FetchGuard::Budget(budget), &[7; 32], 30_000);
    let (mut ue, _, _) = ue(0);
    let (req, _) = ue.protect_request(&get(1), true).unwrap();
    let fetches = |gate: &mut EmseGate, source: &[u8], now: u64| {
        matches!(
            gate.classify(&req, source, now, |_| false),
            Classified::Fetch { .. }
        )
    };
    assert!(fetches(&mut gate, b"a", 0));
    assert!(fetches(&mut gate, b"a", 0));
    let Classified::Answer(busy) = gate.classify(&req, b"a", 0, |_| false) else {
        panic!()
    };
    assert_eq!(busy.code, Code::SERVICE_UNAVAILABLE);
    assert_eq!(ue_action(&busy, true), UeAction::RetryAfter(11));
    // Another source has its own bucket; a third is refused while both are busy (memory bound).
    assert!(fetches(&mut gate, b"b", 0));
    assert!(!fetches(&mut gate, b"c", 0));
    // 6 per minute: one token back after 10 s.
    assert!(!fetches(&mut gate, b"a", 9_999));
    assert!(fetches(&mut gate, b"a", 10_000));
    // Once a bucket is full again, its source is forgotten and a new one fits.
    assert!(fetches(&mut gate, b"c", 60_000));
}

#[test]
fn echo_guard_wants_return_routability_before_any_fetch() {
    let budget = FetchBudgetConfig::default();
    let mut gate = EmseGate::new(FetchGuard::EchoThenBudget(budget), &[42; 32], 30_000);
    let (mut ue, _, key_id) = ue(0);
    let (req, _) = ue.protect_request(&get(1), true).unwrap();
    let Classified::Answer(challenge) = gate.classify(&req, b"198.51.100.7:5683", 1_000, |_| false)
    else {
        panic!("fetched without a challenge")
    };
    assert_eq!(challenge.code, Code::UNAUTHORIZED);
    assert!(
        !challenge.options.contains(OptionNumber::OSCORE),
        "unprotected: no key yet"
    );
    let UeAction::AnswerEcho(echo) = ue_action(&challenge, true) else {
        panic!()
    };

    // The UE protects the request again and adds the Echo outside the encryption.
    let (mut retry, _) = ue.protect_request(&get(1), true).unwrap();
    add_outer_echo(&mut retry, &echo);
    match gate.classify(&retry, b"198.51.100.7:5683", 2_000, |_| false) {
        Classified::Fetch { key_id: k, .. } => assert_eq!(k, key_id),
        other => panic!("{other:?}"),
    }
    // The same Echo from another source, a forged one, or a stale one: challenged again.
    for (source, now, echo) in [
        (&b"203.0.113.9:5683"[..], 2_000, echo.clone()),
        (&b"198.51.100.7:5683"[..], 2_000, vec![0; 12]),
        (&b"198.51.100.7:5683"[..], 61_000, echo.clone()),
    ] {
        let mut r = retry.clone();
        add_outer_echo(&mut r, &echo);
        assert!(matches!(
            gate.classify(&r, source, now, |_| false),
            Classified::Answer(_)
        ));
    }
    // The outer Echo does not disturb verification (outer Class E options are discarded).
    let (key, identity, key_id) = fixture();
    let mut emse = P
        .emse_context(&key, &identity, key_id, SenderSequence::volatile())
        .unwrap();
    let VerifiedRequest::Fresh { message, .. } = emse.verify_request(&retry).unwrap() else {
        panic!()
    };
    assert!(!message.options.contains(OptionNumber::ECHO));
}

#[test]
fn budget_then_echo_fetches_at_once_and_challenges_past_the_budget() {
    let budget = FetchBudgetConfig {
        burst: 1,
        per_minute: 1,
        max_sources: 16,
    };
    let mut gate = EmseGate::new(FetchGuard::BudgetThenEcho(budget), &[9; 32], 30_000);
    let (mut ue, _, key_id) = ue(0);
    let victim = &b"\xc6\x33\x64\x07"[..];
    let (req, _) = ue.protect_request(&get(1), true).unwrap();
    // First contact within the budget: fetched at once, no challenge (one round trip).
    assert!(matches!(
        gate.classify(&req, victim, 0, |_| false),
        Classified::Fetch { key_id: k, .. } if k == key_id
    ));
    // A spoofer spends the victim's budget: what it gets now is an Echo challenge (which
    // it cannot read at the victim's address), not a fetch and not 5.03.
    let (spoofed, _) = ue.protect_request(&get(1), true).unwrap();
    let Classified::Answer(challenge) = gate.classify(&spoofed, victim, 100, |_| false) else {
        panic!("fetched past the budget without return routability")
    };
    assert_eq!(challenge.code, Code::UNAUTHORIZED);
    assert!(!challenge.options.contains(OptionNumber::OSCORE));
    let UeAction::AnswerEcho(echo) = ue_action(&challenge, true) else {
        panic!("{challenge:?}")
    };
    // The real UE at that address answers the Echo and is fetched for, from the routable
    // bucket; a wrong or foreign Echo is challenged again.
    let (mut retry, _) = ue.protect_request(&get(1), true).unwrap();
    let mut forged = retry.clone();
    add_outer_echo(&mut forged, &[0; 12]);
    assert!(matches!(
        gate.classify(&forged, victim, 200, |_| false),
        Classified::Answer(a) if a.options.contains(OptionNumber::ECHO)
    ));
    add_outer_echo(&mut retry, &echo);
    assert!(
        matches!(
            gate.classify(&retry, &b"\xcb\x00\x71\x09"[..], 200, |_| false),
            Classified::Fetch { .. }
        ),
        "another source has its own, unspent budget"
    );
    assert!(matches!(
        gate.classify(&retry, victim, 200, |_| false),
        Classified::Fetch { .. }
    ));
    // The routable bucket is bounded too: past it, 5.03.
    let Classified::Answer(busy) = gate.classify(&retry, victim, 300, |_| false) else {
        panic!("unbounded fetches for a routable source")
    };
    assert_eq!(busy.code, Code::SERVICE_UNAVAILABLE);
}

#[test]
fn ue_action_acts_only_on_the_answers_the_profile_defines() {
    let (mut ue, _, _) = ue(0);
    let (req, _) = ue.protect_request(&get(1), true).unwrap();
    // "Security context not found": re-authenticate (ID Context sent) or send it.
    let not_found = context_not_found(&req);
    assert_eq!(ue_action(&not_found, true), UeAction::Reauthenticate);
    assert_eq!(ue_action(&not_found, false), UeAction::RetryWithIdContext);
    // "Replay detected": protect again (new Partial IV), no new AKA run.
    let replay = unprotected_error(&req, OscoreError::Replay).unwrap();
    assert_eq!(replay.code, Code::UNAUTHORIZED);
    assert_eq!(ue_action(&replay, true), UeAction::SendAgain);
    // A bare 4.01, or one with another diagnostic: an error, never a re-authentication.
    let mut bare = context_not_found(&req);
    bare.payload.clear();
    assert_eq!(ue_action(&bare, true), UeAction::Error(Code::UNAUTHORIZED));
    bare.payload = b"Unauthorized".to_vec();
    assert_eq!(ue_action(&bare, true), UeAction::Error(Code::UNAUTHORIZED));
    // 4.00 "Decryption failed": an error.
    let failed = unprotected_error(&req, OscoreError::DecryptionFailed).unwrap();
    assert_eq!(ue_action(&failed, true), UeAction::Error(Code::BAD_REQUEST));
}
