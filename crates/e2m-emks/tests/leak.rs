//! No key and no session id in any audit record, problem response or notification.
//!
//! Every test world (see `common`) searches its own output when it is dropped, so every
//! test in `decisions.rs` is also a leak test; this one drives every entry point through
//! both its granted and refused paths and checks that the search really ran.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use common::*;
use e2m_emks::EmksConfig;
use e2m_msg::{
    Deregistration, EventSet, EventType, KeyIdSource, Notification, SessionId, Subscription,
    SubscriptionId, UeRef,
};

#[test]
fn no_secret_in_any_audit_record_problem_or_notification() {
    let w = World::new(EmksConfig::default().allow_imsi(&emse_id(B)));
    let sa = w.register(&w.a, at(0)).unwrap();
    let sb = w.register(&w.b, at(0)).unwrap();
    let sub = |peer: &e2m_emks::Peer, ue: Option<UeRef>| {
        let out = block_on(w.emks.subscribe(
            peer,
            &Subscription {
                events: EventSet::single(EventType::KeyAvailable).with(EventType::KeyRetired),
                ue,
                callback: callback(peer.name()),
            },
            at(1),
        ));
        w.record(out)
    };
    sub(&w.a, Some(app_ue(0, A))).unwrap();
    sub(&w.b, None).unwrap();
    sub(&w.a, None).unwrap_err();
    for ue in 0..4 {
        for id in 1..=6 {
            w.push(ue, id, at(u64::from(id)), at(u64::from(id)))
                .unwrap();
        }
        // Replace one key id with other octets.
        w.push_variant(ue, 6, 1, at(7), at(7)).unwrap();
    }
    // The notifications those pushes recorded, as they go on the wire.
    assert!(!w.sent(at(8)).is_empty());
    for ue in 0..4 {
        for id in 0..=7 {
            let _ = w.fetch(&w.a, &sa, app_ue(ue, A), id, at(10));
            let _ = w.fetch(&w.b, &sb, UeRef::Imsi(imsi(ue)), id, at(10));
            // Refused: the other EMSE's session, IMSI without permission, unknown UE.
            let _ = w.fetch(&w.b, &sa, app_ue(ue, B), id, at(10));
            let _ = w.fetch(&w.a, &sa, UeRef::Imsi(imsi(ue)), id, at(10));
            let _ = w.fetch(&w.a, &sa, app_ue(ue, B), id, at(10));
        }
    }
    let _ = w.fetch(
        &w.a,
        &SessionId::from_array([1; 16]),
        app_ue(0, A),
        1,
        at(10),
    );
    let n = Notification {
        subscription_id: SubscriptionId::from_u64(1),
        event: EventType::KeyInUse,
        ue: app_ue(0, A),
        key_id: e2m_keyid::KeyId::from_u32(6),
        time: at(10),
        id: None,
    };
    let out = block_on(w.emks.notify(&w.a, &n, at(10)));
    w.record(out).unwrap();
    let out = block_on(w.emks.notify(&w.hss, &n, at(10)));
    w.record(out).unwrap_err();
    let out = block_on(w.emks.deregister(
        &w.b,
        &Deregistration {
            session_id: sa.copy_secret(),
        },
        at(11),
    ));
    w.record(out).unwrap_err();
    let out = block_on(w.emks.deregister(
        &w.a,
        &Deregistration {
            session_id: sa.copy_secret(),
        },
        at(11),
    ));
    w.record(out).unwrap();
    let out = block_on(w.emks.push_intermediate_key(
        &w.a,
        &e2m_msg::IntermediateKeyPush {
            imsi: imsi(0),
            key_id: KeyIdSource::ShortHash,
            int_key: e2m_kdf::E2mIntKey::from_array(World::int_key_bytes(9, 9, 9)),
            created: at(12),
        },
        at(12),
    ));
    w.ledger
        .borrow_mut()
        .int_keys
        .push(World::int_key_bytes(9, 9, 9));
    w.record(out).unwrap_err();
    let effects = block_on(w.emks.expire(at(MAX_AGE + 100)));
    w.record_effects(&effects);
    w.sent(at(MAX_AGE + 100));

    let hits = w.leaks();
    assert!(hits.is_empty(), "{hits:#?}");
    let (secrets, texts) = w.captured();
    // The search must have had something to find: keys and ids, and plenty of output.
    assert!(secrets > 40, "{secrets} secrets");
    assert!(texts > 200, "{texts} texts");
    let l = w.ledger.borrow();
    assert!(l.keys.len() >= 16, "{} keys fetched", l.keys.len());
    assert!(l.problems.len() >= 50, "{} problems", l.problems.len());
    assert!(!l.notifications.is_empty());
}

#[test]
fn the_search_finds_a_planted_leak() {
    // The detector itself: a key planted in an audit line must be found.
    let w = World::new(EmksConfig::default());
    let sa = w.register(&w.a, at(0)).unwrap();
    w.push(0, 1, at(0), at(0)).unwrap();
    let key = w.fetch(&w.a, &sa, app_ue(0, A), 1, at(1)).unwrap();
    let hex = base16ct::lower::encode_string(key.key.expose_secret());
    w.ledger.borrow_mut().audit.push(format!("oops key={hex}"));
    w.ledger
        .borrow_mut()
        .audit
        .push(format!("oops session={}", sa.to_text().as_str()));
    let hits = w.leaks();
    assert_eq!(hits.len(), 3, "{hits:#?}"); // full hex, its 16-digit prefix, session id
    w.ledger.borrow_mut().audit.clear();
}
