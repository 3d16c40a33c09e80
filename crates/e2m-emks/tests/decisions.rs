//! The EMKS's security decisions, one test each.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod common;

use common::*;
use e2m_emks::{Action, EmksConfig, Peer, Verdict};
use e2m_keyid::{EmseId, KeyId};
use e2m_keystore::{SessionStore, SubscriptionPolicy, SubscriptionStore};
use e2m_msg::{
    Deregistration, EventSet, EventType, IntermediateKeyPush, KeyIdSource, Notification,
    ProblemCause, Registration, SessionId, Subscription, SubscriptionId, UeRef,
};

fn world() -> World {
    World::new(EmksConfig::default())
}

#[test]
fn registration_emse_id_must_equal_the_certificate_identity() {
    let w = world();
    // Each of these is a different identity from the certificate's "emse-a.example.com".
    let claimed = [
        "EMSE-A.example.com",       // case
        "emse-a.example.com.",      // trailing dot
        "emse-b.example.com",       // another EMSE
        "emse-\u{430}.example.com", // Cyrillic а, a look-alike
        "emse-a.example.co",        // prefix
        "xn--emse-a.example.com",
    ];
    for text in claimed {
        // Without e2m-kdf's `nfkc` feature non-ASCII text is no EmseId at all; with it, the
        // look-alike is a valid but different identity. Either way it cannot register as A.
        let Ok(claimed_id) = EmseId::new(text) else {
            assert!(!text.is_ascii(), "{text}");
            continue;
        };
        let out = block_on(w.emks.register(
            &w.a,
            &Registration {
                emse_id: claimed_id,
                callback: None,
            },
            at(0),
        ));
        let audit = out.effects.audit.clone();
        assert_eq!(
            w.record(out).err(),
            Some(ProblemCause::EmseNotAuthorized),
            "{text}"
        );
        assert_eq!(audit.len(), 1);
        assert_eq!(
            audit[0].verdict,
            Verdict::Refused(ProblemCause::EmseNotAuthorized)
        );
        assert_eq!(audit[0].session, None);
    }
    // White space and invisible characters cannot even be spelled as an EmseId.
    assert!(EmseId::new("emse-a.example.com ").is_err());
    assert!(EmseId::new("emse-a\u{200b}.example.com").is_err());
    assert!(
        w.emks.sessions().is_empty(),
        "a refused registration created a session"
    );
    assert!(w.register(&w.a, at(0)).is_ok());
}

#[test]
fn roles_are_enforced() {
    let w = world();
    w.push(0, 1, at(0), at(0)).unwrap();
    let session = w.register(&w.a, at(0)).unwrap();
    // An EMSE may not push keys.
    let push = IntermediateKeyPush {
        imsi: imsi(0),
        key_id: KeyIdSource::RandLsb32(KeyId::from_u32(9)),
        int_key: e2m_kdf::E2mIntKey::from_array([9; 32]),
        created: at(0),
    };
    let out = block_on(w.emks.push_intermediate_key(&w.a, &push, at(1)));
    assert_eq!(w.record(out).err(), Some(ProblemCause::EmseNotAuthorized));
    // The HSS and other peers may not register or fetch.
    for peer in [w.hss.clone(), Peer::Other("monitor".into())] {
        let out = block_on(w.emks.register(
            &peer,
            &Registration {
                emse_id: emse_id(A),
                callback: None,
            },
            at(1),
        ));
        assert_eq!(w.record(out).err(), Some(ProblemCause::EmseNotAuthorized));
        assert_eq!(
            w.fetch(&peer, &session, app_ue(0, A), 1, at(1)).err(),
            Some(ProblemCause::EmseNotAuthorized)
        );
    }
    assert!(w.fetch(&w.a, &session, app_ue(0, A), 1, at(1)).is_ok());
}

#[test]
fn the_key_is_derived_for_the_sessions_emse_id() {
    let w = world();
    w.push(2, 7, at(0), at(0)).unwrap();
    let sa = w.register(&w.a, at(0)).unwrap();
    let sb = w.register(&w.b, at(0)).unwrap();
    let ka = w.fetch(&w.a, &sa, app_ue(2, A), 7, at(1)).unwrap();
    let kb = w.fetch(&w.b, &sb, app_ue(2, B), 7, at(1)).unwrap();
    assert!(ka.key == w.expected_key(2, 7, 0, A));
    assert!(kb.key == w.expected_key(2, 7, 0, B));
    assert!(ka.key != kb.key, "two EMSEs got the same key");
    assert_eq!(ka.key_id, KeyId::from_u32(7));
    assert_eq!(ka.ue, app_ue(2, A));
}

#[test]
fn a_session_presented_by_another_certificate_is_refused() {
    let w = world();
    w.push(0, 1, at(0), at(0)).unwrap();
    let sa = w.register(&w.a, at(0)).unwrap();
    w.register(&w.b, at(0)).unwrap();
    // B presents A's session id, naming a UE B knows: refused, nothing derived, and with
    // the very answer a made-up id gets (issue 9 item 6: no existence oracle).
    let made_up = SessionId::from_array([0x5a; 16]);
    let unknown = w.fetch(&w.b, &made_up, app_ue(0, B), 1, at(1)).err();
    assert_eq!(unknown, Some(ProblemCause::UnknownSession));
    assert_eq!(w.fetch(&w.b, &sa, app_ue(0, B), 1, at(1)).err(), unknown);
    assert_eq!(w.fetch(&w.b, &sa, app_ue(0, A), 1, at(1)).err(), unknown);
    // Nor can B end A's session.
    let out = block_on(w.emks.deregister(
        &w.b,
        &Deregistration {
            session_id: sa.copy_secret(),
        },
        at(1),
    ));
    assert_eq!(w.record(out).err(), Some(ProblemCause::UnknownSession));
    assert!(w.fetch(&w.a, &sa, app_ue(0, A), 1, at(1)).is_ok());
}

#[test]
fn unknown_and_unprovisioned_ues_get_the_same_answer() {
    let w = world();
    w.push(0, 1, at(0), at(0)).unwrap();
    let sa = w.register(&w.a, at(0)).unwrap();
    let unknown = w.fetch(&w.a, &sa, UeRef::AppIdentity(app("nobody@a")), 1, at(1));
    // ue-0@b exists, but only for EMSE B.
    let elsewhere = w.fetch(&w.a, &sa, app_ue(0, B), 1, at(1));
    assert_eq!(unknown.err(), Some(ProblemCause::UeUnknown));
    assert_eq!(elsewhere.err(), Some(ProblemCause::UeUnknown));
    let l = w.ledger.borrow();
    let n = l.problems.len();
    assert_eq!(
        l.problems[n - 2],
        l.problems[n - 4],
        "the two problem bodies differ"
    );
}

#[test]
fn imsi_names_a_ue_only_for_emses_allowed_to() {
    let w = World::new(EmksConfig::default().allow_imsi(&emse_id(B)));
    w.push(3, 1, at(0), at(0)).unwrap();
    let sa = w.register(&w.a, at(0)).unwrap();
    let sb = w.register(&w.b, at(0)).unwrap();
    assert_eq!(
        w.fetch(&w.a, &sa, UeRef::Imsi(imsi(3)), 1, at(1)).err(),
        Some(ProblemCause::EmseNotAuthorized)
    );
    let k = w.fetch(&w.b, &sb, UeRef::Imsi(imsi(3)), 1, at(1)).unwrap();
    assert!(k.key == w.expected_key(3, 1, 0, B));
}

#[test]
fn a_key_id_not_held_means_reauthenticate() {
    let w = world();
    let s = w.register(&w.a, at(0)).unwrap();
    w.push(1, 0x10, at(0), at(0)).unwrap();
    assert_eq!(
        w.fetch(&w.a, &s, app_ue(1, A), 0x11, at(1)).err(),
        Some(ProblemCause::KeyNotAvailable),
        "never pushed"
    );
    for id in 0x11..=0x14 {
        w.push(1, id, at(u64::from(id)), at(u64::from(id))).unwrap();
    }
    assert_eq!(
        w.fetch(&w.a, &s, app_ue(1, A), 0x10, at(30)).err(),
        Some(ProblemCause::KeyNotAvailable),
        "evicted"
    );
    // A UE one or more AKA runs behind (the seed's cases a and b) still gets its key.
    assert!(w.fetch(&w.a, &s, app_ue(1, A), 0x11, at(30)).is_ok());
    // At the maximum age the key stops being served.
    let s2 = w.register(&w.a, at(0x14 + MAX_AGE - 1)).unwrap();
    assert!(
        w.fetch(&w.a, &s2, app_ue(1, A), 0x14, at(0x14 + MAX_AGE - 1))
            .is_ok()
    );
    assert_eq!(
        w.fetch(&w.a, &s2, app_ue(1, A), 0x14, at(0x14 + MAX_AGE))
            .err(),
        Some(ProblemCause::KeyNotAvailable),
        "expired"
    );
}

#[test]
fn a_derived_key_never_outlives_its_intermediate_key() {
    let w = world();
    let s = w.register(&w.a, at(0)).unwrap();
    w.push(0, 1, at(0), at(10)).unwrap();
    let k = w.fetch(&w.a, &s, app_ue(0, A), 1, at(20)).unwrap();
    assert_eq!(k.expires, at(MAX_AGE));
    // A creation time in the future is taken as the arrival time.
    w.push(0, 2, at(100_000), at(30)).unwrap();
    let k = w.fetch(&w.a, &s, app_ue(0, A), 2, at(31)).unwrap();
    assert_eq!(k.expires, at(30 + MAX_AGE));
}

#[test]
fn unknown_expired_and_ended_sessions() {
    let w = world();
    w.push(0, 1, at(0), at(0)).unwrap();
    let never = SessionId::from_array([7; 16]);
    assert_eq!(
        w.fetch(&w.a, &never, app_ue(0, A), 1, at(1)).err(),
        Some(ProblemCause::UnknownSession)
    );
    // (A malformed id never reaches the core: `SessionId` holds only 128-bit values, and
    // the router refuses any other text; see e2m-msg's rest tests.)
    let s = w.register(&w.a, at(0)).unwrap();
    assert_eq!(
        w.fetch(&w.a, &s, app_ue(0, A), 1, at(SESSION_TTL)).err(),
        Some(ProblemCause::UnknownSession),
        "expired"
    );
    let s = w.register(&w.a, at(1)).unwrap();
    let out = block_on(w.emks.deregister(
        &w.a,
        &Deregistration {
            session_id: s.copy_secret(),
        },
        at(2),
    ));
    assert!(w.record(out).is_ok());
    assert_eq!(
        w.fetch(&w.a, &s, app_ue(0, A), 1, at(3)).err(),
        Some(ProblemCause::UnknownSession),
        "deregistered"
    );
    let out = block_on(w.emks.deregister(
        &w.a,
        &Deregistration {
            session_id: s.copy_secret(),
        },
        at(3),
    ));
    assert_eq!(w.record(out).err(), Some(ProblemCause::UnknownSession));
}

fn subscribe(
    w: &World,
    peer: &Peer,
    ue: Option<UeRef>,
    events: EventSet,
    now: u64,
) -> Result<SubscriptionId, ProblemCause> {
    let name = match peer {
        Peer::Emse(id) => id.as_str().to_owned(),
        _ => "other.example.com".to_owned(),
    };
    let out = block_on(w.emks.subscribe(
        peer,
        &Subscription {
            events,
            ue,
            callback: callback(&name),
        },
        at(now),
    ));
    w.record(out).map(|r| r.subscription_id)
}

#[test]
fn a_new_key_notifies_matching_subscribers() {
    let w = World::new(EmksConfig::default().allow_imsi(&emse_id(B)));
    w.register(&w.a, at(0)).unwrap();
    w.register(&w.b, at(0)).unwrap();
    let both = EventSet::single(EventType::KeyAvailable).with(EventType::KeyRetired);
    let sa = subscribe(&w, &w.a, Some(app_ue(1, A)), both, 0).unwrap();
    let sb = subscribe(&w, &w.b, None, EventSet::single(EventType::KeyAvailable), 0).unwrap();

    let out = block_on(w.emks.push_intermediate_key(
        &w.hss,
        &IntermediateKeyPush {
            imsi: imsi(1),
            key_id: KeyIdSource::RandLsb32(KeyId::from_u32(0x21)),
            int_key: e2m_kdf::E2mIntKey::from_array([1; 32]),
            created: at(1),
        },
        at(1),
    ));
    assert!(out.effects.notifications_recorded);
    w.record(out).unwrap();
    let sent = w.sent(at(1));
    assert_eq!(sent.len(), 2);
    let to_a = sent
        .iter()
        .find(|n| n.notification.subscription_id == sa)
        .unwrap();
    assert_eq!(to_a.callback, callback(A));
    assert_eq!(to_a.emse, emse_id(A));
    assert_eq!(to_a.notification.event, EventType::KeyAvailable);
    assert_eq!(
        to_a.notification.ue,
        app_ue(1, A),
        "A must see its own name for the UE"
    );
    assert_eq!(to_a.notification.key_id, KeyId::from_u32(0x21));
    let to_b = sent
        .iter()
        .find(|n| n.notification.subscription_id == sb)
        .unwrap();
    assert_eq!(to_b.notification.ue, UeRef::Imsi(imsi(1)));

    // Another UE: only B's unfiltered subscription matches.
    w.push(2, 0x30, at(2), at(2)).unwrap();
    // Four more keys for UE 1: the fourth evicts 0x21, and A hears of it.
    let mut retired = Vec::new();
    for id in 0x22..=0x25 {
        let push = IntermediateKeyPush {
            imsi: imsi(1),
            key_id: KeyIdSource::RandLsb32(KeyId::from_u32(id)),
            int_key: e2m_kdf::E2mIntKey::from_array([id as u8; 32]),
            created: at(u64::from(id)),
        };
        let out = block_on(
            w.emks
                .push_intermediate_key(&w.hss, &push, at(u64::from(id))),
        );
        w.record(out).unwrap();
        retired.extend(
            w.sent(at(u64::from(id)))
                .iter()
                .filter(|n| n.notification.event == EventType::KeyRetired)
                .map(|n| (n.notification.subscription_id, n.notification.key_id)),
        );
    }
    assert_eq!(retired, [(sa, KeyId::from_u32(0x21))]);
}

#[test]
fn subscription_rules() {
    let w = world();
    let all = EventSet::single(EventType::KeyAvailable);
    // No session yet.
    assert_eq!(
        subscribe(&w, &w.a, Some(app_ue(0, A)), all, 0).err(),
        Some(ProblemCause::UnknownSession)
    );
    w.register(&w.a, at(0)).unwrap();
    w.register(&w.b, at(0)).unwrap();
    // Every UE (notifications would name IMSIs) or by IMSI: needs the permission.
    assert_eq!(
        subscribe(&w, &w.a, None, all, 0).err(),
        Some(ProblemCause::EmseNotAuthorized)
    );
    assert_eq!(
        subscribe(&w, &w.a, Some(UeRef::Imsi(imsi(0))), all, 0).err(),
        Some(ProblemCause::EmseNotAuthorized)
    );
    // A UE not provisioned for A.
    assert_eq!(
        subscribe(&w, &w.a, Some(app_ue(0, B)), all, 0).err(),
        Some(ProblemCause::UeUnknown)
    );
    // key-in-use flows the other way.
    assert_eq!(
        subscribe(
            &w,
            &w.a,
            Some(app_ue(0, A)),
            EventSet::single(EventType::KeyInUse),
            0
        )
        .err(),
        Some(ProblemCause::Malformed)
    );
    // The HSS subscribes to nothing.
    assert_eq!(
        subscribe(&w, &w.hss, None, all, 0).err(),
        Some(ProblemCause::EmseNotAuthorized)
    );

    let id = subscribe(&w, &w.a, Some(app_ue(0, A)), all, 0).unwrap();
    // Only A may remove it; to B it does not exist.
    let out = block_on(w.emks.unsubscribe(&w.b, &id, at(1)));
    assert_eq!(w.record(out).err(), Some(ProblemCause::UnknownSubscription));
    let out = block_on(w.emks.unsubscribe(&w.a, &id, at(1)));
    assert!(w.record(out).is_ok());
    let out = block_on(w.emks.unsubscribe(&w.a, &id, at(1)));
    assert_eq!(w.record(out).err(), Some(ProblemCause::UnknownSubscription));
    let bogus = SubscriptionId::from_u64(7);
    let out = block_on(w.emks.unsubscribe(&w.a, &bogus, at(1)));
    assert_eq!(w.record(out).err(), Some(ProblemCause::UnknownSubscription));
}

#[test]
fn deregistration_ends_subscriptions() {
    let w = world();
    let s = w.register(&w.a, at(0)).unwrap();
    subscribe(
        &w,
        &w.a,
        Some(app_ue(0, A)),
        EventSet::single(EventType::KeyAvailable),
        0,
    )
    .unwrap();
    let out = block_on(w.emks.deregister(
        &w.a,
        &Deregistration {
            session_id: s.copy_secret(),
        },
        at(1),
    ));
    w.record(out).unwrap();
    let out = block_on(w.emks.push_intermediate_key(
        &w.hss,
        &IntermediateKeyPush {
            imsi: imsi(0),
            key_id: KeyIdSource::RandLsb32(KeyId::from_u32(1)),
            int_key: e2m_kdf::E2mIntKey::from_array([3; 32]),
            created: at(2),
        },
        at(2),
    ));
    w.record(out).unwrap();
    // The push changed keys, but the ended session's subscription records nothing.
    assert!(w.sent(at(2)).is_empty());
}

fn key_in_use(ue: UeRef, id: u32) -> Notification {
    Notification {
        subscription_id: SubscriptionId::from_u64(1),
        event: EventType::KeyInUse,
        ue,
        key_id: KeyId::from_u32(id),
        time: at(5),
        id: None,
    }
}

#[test]
fn emse_notifications_are_accepted_from_its_session_only() {
    let w = world();
    // Without a session: refused.
    let out = block_on(w.emks.notify(&w.a, &key_in_use(app_ue(0, A), 1), at(5)));
    assert_eq!(w.record(out).err(), Some(ProblemCause::UnknownSession));
    w.register(&w.a, at(0)).unwrap();
    let out = block_on(w.emks.notify(&w.a, &key_in_use(app_ue(0, A), 1), at(5)));
    let audit = out.effects.audit.clone();
    assert!(w.record(out).is_ok());
    assert_eq!(audit[0].action, Action::Notify);
    assert_eq!(audit[0].verdict, Verdict::Granted);
    assert!(
        audit[0].session.is_some(),
        "not recorded against the session"
    );
    assert_eq!(audit[0].imsi, Some(imsi(0)));
    assert_eq!(audit[0].key_id, Some(KeyId::from_u32(1)));
    // About a UE it does not know; from the HSS; an event it may not send.
    let out = block_on(w.emks.notify(&w.a, &key_in_use(app_ue(0, B), 1), at(5)));
    assert_eq!(w.record(out).err(), Some(ProblemCause::UeUnknown));
    let out = block_on(w.emks.notify(&w.hss, &key_in_use(app_ue(0, A), 1), at(5)));
    assert_eq!(w.record(out).err(), Some(ProblemCause::EmseNotAuthorized));
    let mut n = key_in_use(app_ue(0, A), 1);
    n.event = EventType::KeyAvailable;
    let out = block_on(w.emks.notify(&w.a, &n, at(5)));
    assert_eq!(w.record(out).err(), Some(ProblemCause::Malformed));
    // B has no session, even though A has.
    let out = block_on(w.emks.notify(&w.b, &key_in_use(app_ue(0, B), 1), at(5)));
    assert_eq!(w.record(out).err(), Some(ProblemCause::UnknownSession));
}

#[test]
fn short_hash_key_ids_are_computed_at_push() {
    let w = world();
    let int_key = e2m_kdf::E2mIntKey::from_array([0x42; 32]);
    let id = KeyId::short_hash(&int_key, &w.profile).unwrap();
    let out = block_on(w.emks.push_intermediate_key(
        &w.hss,
        &IntermediateKeyPush {
            imsi: imsi(0),
            key_id: KeyIdSource::ShortHash,
            int_key,
            created: at(0),
        },
        at(0),
    ));
    w.record(out).unwrap();
    let s = w.register(&w.a, at(0)).unwrap();
    assert!(w.fetch(&w.a, &s, app_ue(0, A), id.as_u32(), at(1)).is_ok());
}

#[test]
fn expiry_ends_sessions_and_retires_keys() {
    let w = World::new(EmksConfig::default().allow_imsi(&emse_id(B)));
    w.register(&w.a, at(0)).unwrap();
    w.register(&w.b, at(MAX_AGE)).unwrap();
    // A's subscription ends with A's session (at SESSION_TTL), before the key expires.
    let retired = EventSet::single(EventType::KeyRetired);
    subscribe(&w, &w.a, Some(app_ue(0, A)), retired, 0).unwrap();
    subscribe(
        &w,
        &w.b,
        None,
        EventSet::single(EventType::KeyRetired),
        MAX_AGE,
    )
    .unwrap();
    w.push(0, 1, at(0), at(0)).unwrap();
    let effects = block_on(w.emks.expire(at(MAX_AGE + 1)));
    w.record_effects(&effects);
    let expired: Vec<_> = effects
        .audit
        .iter()
        .filter(|r| r.action == Action::SessionExpired)
        .collect();
    assert_eq!(expired.len(), 1, "A's session should have expired");
    let keys = effects
        .audit
        .iter()
        .find(|r| r.action == Action::KeysExpired)
        .unwrap();
    assert_eq!(keys.count, 1);
    assert!(effects.notifications_recorded);
    let sent = w.sent(at(MAX_AGE + 1));
    assert_eq!(sent.len(), 1);
    let n = &sent[0].notification;
    assert_eq!(
        (n.event, n.ue.clone(), n.key_id),
        (
            EventType::KeyRetired,
            UeRef::Imsi(imsi(0)),
            KeyId::from_u32(1)
        )
    );
}

#[test]
fn every_decision_is_audited() {
    let w = world();
    let s = w.register(&w.a, at(0)).unwrap();
    w.push(0, 1, at(0), at(0)).unwrap();
    w.fetch(&w.a, &s, app_ue(0, A), 1, at(1)).unwrap();
    w.fetch(&w.a, &s, app_ue(0, A), 2, at(1)).err();
    w.fetch(&w.b, &s, app_ue(0, A), 1, at(1)).err();
    let l = w.ledger.borrow();
    assert_eq!(l.audit.len(), 5);
    assert!(l.audit[0].contains("action=register") && l.audit[0].contains("verdict=granted"));
    assert!(
        l.audit[1].contains("action=push-intermediate-key")
            && l.audit[1].contains("imsi=001010000000000")
    );
    assert!(l.audit[2].contains("action=fetch-key") && l.audit[2].contains("key_id=00000001"));
    assert!(l.audit[3].contains("cause=key-not-available"));
    // The peer is told "unknown session"; the audit keeps the real reason.
    assert!(
        l.audit[4].contains("cause=unknown-session")
            && l.audit[4].contains("session bound to another EMSE")
            && l.audit[4].contains("peer=emse:emse-b.example.com")
    );
}

/// Issue 9 item 5 and issue 16 item 4: a callback is accepted only for a host the EMSE's
/// certificate names, on port 443 unless the operator allows more, or for a host *and
/// port* on the operator's allow-list; refused, it is refused when given, so nothing ever
/// connects to it.
#[test]
fn callbacks_must_name_a_host_of_the_certificate_or_the_allow_list() {
    let subscribe_to = |w: &World, uri: &str| {
        let out = block_on(w.emks.subscribe(
            &w.a,
            &Subscription {
                events: EventSet::single(EventType::KeyAvailable),
                ue: Some(app_ue(1, A)),
                callback: e2m_msg::CallbackUri::new(uri).unwrap(),
            },
            at(1),
        ));
        let reason = out.effects.audit.first().map(|r| r.reason);
        (w.record(out).map(|r| r.subscription_id), reason)
    };
    let register_with = |w: &World, uri: &str| {
        let out = block_on(w.emks.register(
            &w.a,
            &Registration {
                emse_id: EmseId::new(A).unwrap(),
                callback: Some(e2m_msg::CallbackUri::new(uri).unwrap()),
            },
            at(1),
        ));
        w.record(out).map(|r| r.session_id)
    };
    let refused = |w: &World, uri: &str, why: &str| {
        let (result, reason) = subscribe_to(w, uri);
        assert_eq!(result.err(), Some(ProblemCause::EmseNotAuthorized), "{uri}");
        assert_eq!(reason, Some(why), "{uri}");
        assert_eq!(
            register_with(w, uri).err(),
            Some(ProblemCause::EmseNotAuthorized),
            "{uri}"
        );
    };
    const NOT_NAMED: &str = "callback host neither named by the EMSE's certificate nor allowed";
    const PORT: &str =
        "callback port not allowed for certificate-named hosts, nor on the allow-list";
    let w = world();
    w.register(&w.a, at(0)).unwrap();
    // The certificate names A: port 443, written or not (any path; case does not matter).
    for ok in [
        format!("https://{A}/e2m/v1/notifications"),
        format!("https://{}:443/cb", A.to_uppercase()),
    ] {
        assert!(subscribe_to(&w, &ok).0.is_ok(), "{ok}");
        assert!(register_with(&w, &ok).is_ok(), "{ok}");
    }
    // Any other port of that host: ssh, a metrics port, an EMKS port, an alternative
    // HTTPS port the operator did not allow.
    for port in [22, 80, 8443, 9464, 65535] {
        refused(&w, &format!("https://{A}:{port}/cb"), PORT);
    }
    // Another EMSE's host, an internal address, a port probe: refused, with the reason in
    // the audit only.
    for bad in [
        format!("https://{B}/e2m/v1/notifications"),
        "https://10.0.0.1:22/".to_owned(),
        "https://127.0.0.1:6379/".to_owned(),
        "https://[::1]:25/".to_owned(),
        "https://metadata.internal/".to_owned(),
    ] {
        refused(&w, &bad, NOT_NAMED);
    }
    // The operator lets certificate-named hosts use 8443 as well: that port, not others.
    let w = World::new(EmksConfig::default().allow_certificate_callback_ports(8443..=8443));
    w.register(&w.a, at(0)).unwrap();
    assert!(subscribe_to(&w, &format!("https://{A}:8443/cb")).0.is_ok());
    assert!(subscribe_to(&w, &format!("https://{A}/cb")).0.is_ok());
    refused(&w, &format!("https://{A}:22/cb"), PORT);
    refused(&w, &format!("https://{B}:8443/cb"), NOT_NAMED);
    // The operator's allow-list lets any EMSE name these hosts, each on its one port.
    let w = World::new(
        EmksConfig::default()
            .allow_callback("10.0.0.1:8443".parse().unwrap())
            .allow_callback("*.gw.example.net:443".parse().unwrap()),
    );
    w.register(&w.a, at(0)).unwrap();
    assert!(subscribe_to(&w, "https://10.0.0.1:8443/cb").0.is_ok());
    assert!(subscribe_to(&w, "https://eu.gw.example.net/cb").0.is_ok());
    for bad in [
        "https://10.0.0.1/cb",
        "https://10.0.0.1:22/cb",
        "https://eu.gw.example.net:8443/cb",
        "https://10.0.0.2:8443/cb",
        "https://gw.example.net/cb",
    ] {
        refused(&w, bad, NOT_NAMED);
    }
}

/// Issue 16 item 4: however often an EMSE subscribes to one UE's events, one push sends it
/// at most `SubscriptionPolicy::max_per_ue` notifications from its filtered subscriptions
/// and as many from its unfiltered ones; each subscription over the limit replaces the
/// EMSE's oldest one for that UE (audited), so the EMSE is never locked out.
#[test]
fn one_push_fans_out_to_at_most_max_per_ue_subscriptions_per_emse() {
    let w = World::new(EmksConfig::default().allow_imsi(&emse_id(B)));
    let cap = SubscriptionPolicy::DEFAULT.max_per_ue;
    assert_eq!(cap, 4, "the documented default");
    w.register(&w.a, at(0)).unwrap();
    w.register(&w.b, at(0)).unwrap();
    let both = EventSet::single(EventType::KeyAvailable).with(EventType::KeyRetired);
    let mut a_ids = Vec::new();
    let mut replaced = 0;
    for n in 0..40 {
        // Several sessions, as an EMSE that restarts without unsubscribing has.
        if n % 10 == 9 {
            w.register(&w.a, at(n)).unwrap();
        }
        let out = block_on(w.emks.subscribe(
            &w.a,
            &Subscription {
                events: both,
                ue: Some(app_ue(1, A)),
                callback: callback(A),
            },
            at(n),
        ));
        replaced += out
            .effects
            .audit
            .iter()
            .filter(|r| r.action == Action::Unsubscribe && r.reason.contains("replaced"))
            .count();
        a_ids.push(w.record(out).unwrap().subscription_id);
        // A's subscriptions for another UE are counted apart.
        if n < 2 {
            subscribe(&w, &w.a, Some(app_ue(2, A)), both, n).unwrap();
        }
    }
    assert_eq!(
        replaced,
        40 - cap,
        "every subscription over the limit replaced one"
    );
    for _ in 0..10 {
        subscribe(&w, &w.b, None, both, 1).unwrap();
        subscribe(&w, &w.b, Some(UeRef::Imsi(imsi(1))), both, 1).unwrap();
    }
    w.push(1, 0x31, at(50), at(50)).unwrap();
    let sent = w.sent(at(50));
    let to = |emse: &str| sent.iter().filter(|n| n.emse == emse_id(emse)).count();
    assert_eq!(to(A), cap, "filtered subscriptions of A for UE 1");
    assert_eq!(
        to(B),
        2 * cap,
        "B's filtered plus its unfiltered subscriptions"
    );
    // The newest subscriptions are the ones kept.
    let mut kept: Vec<_> = sent
        .iter()
        .filter(|n| n.emse == emse_id(A))
        .map(|n| n.notification.subscription_id)
        .collect();
    kept.sort_unstable();
    assert_eq!(kept, a_ids[a_ids.len() - cap..]);
    // The replaced ones are gone: A cannot remove them any more.
    let gone = block_on(w.emks.unsubscribe(&w.a, &a_ids[0], at(51)));
    assert_eq!(
        w.record(gone).err(),
        Some(ProblemCause::UnknownSubscription)
    );
}

/// Issue 16 item 4: a callback stored before the port rule (or before the operator narrowed
/// it) whose port is no longer allowed is never connected to: the notification for it is
/// settled as undeliverable.
#[test]
fn a_stored_callback_on_a_port_no_longer_allowed_is_not_delivered() {
    use e2m_keystore::{PendingNotification, SessionRef, SubscriptionRecord, UeFilter};
    let pending = |callback: &str| PendingNotification {
        id: 1,
        subscription: SubscriptionId::from_u64(1),
        record: SubscriptionRecord {
            session: SessionRef::from_u64(1),
            emse: emse_id(A),
            events: EventSet::single(EventType::KeyAvailable),
            ue: Some(UeFilter {
                imsi: imsi(1),
                name: app_ue(1, A),
            }),
            callback: callback.to_owned(),
        },
        event: EventType::KeyAvailable,
        imsi: imsi(1),
        key_id: KeyId::from_u32(1),
        time: at(1),
        attempts: 0,
    };
    let w = world();
    assert!(
        w.emks
            .outbound(&pending(&format!("https://{A}/cb")))
            .is_some()
    );
    assert!(
        w.emks
            .outbound(&pending(&format!("https://{A}:443/cb")))
            .is_some()
    );
    for port in [22, 8443, 9464] {
        let uri = format!("https://{A}:{port}/cb");
        assert!(w.emks.outbound(&pending(&uri)).is_none(), "{uri}");
    }
    let w = World::new(
        EmksConfig::default()
            .allow_certificate_callback_ports(8443..=8443)
            .allow_callback("gw.example.net:9443".parse().unwrap()),
    );
    assert!(
        w.emks
            .outbound(&pending(&format!("https://{A}:8443/cb")))
            .is_some()
    );
    assert!(
        w.emks
            .outbound(&pending("https://gw.example.net:9443/cb"))
            .is_some()
    );
    assert!(
        w.emks
            .outbound(&pending("https://gw.example.net:22/cb"))
            .is_none()
    );
}

/// Issue 9 item 11: an EMSE that registers again and again without deregistering (a crash
/// loop) is not locked out at its session limit: each new registration replaces its oldest
/// session, whose subscriptions end with it; another EMSE is not touched.
#[test]
fn a_registration_at_the_session_limit_replaces_the_oldest_session() {
    let w = world();
    let limit = w.emks.sessions().session_policy().max_per_emse();
    let b = w.register(&w.b, at(0)).unwrap();
    let first = w.register(&w.a, at(0)).unwrap();
    // The first session's subscription.
    subscribe(
        &w,
        &w.a,
        Some(app_ue(1, A)),
        EventSet::single(EventType::KeyAvailable),
        0,
    )
    .unwrap();
    let mut later = Vec::new();
    for n in 1..limit {
        later.push(w.register(&w.a, at(u64::try_from(n).unwrap())).unwrap());
    }
    let out = block_on(w.emks.register(
        &w.a,
        &Registration {
            emse_id: EmseId::new(A).unwrap(),
            callback: None,
        },
        at(100),
    ));
    let audit = out.effects.audit.clone();
    // The registration over the limit succeeds.
    let newest = w.record(out).unwrap();
    let live = |id: &SessionId| {
        block_on(w.emks.sessions().get(id, at(101)))
            .unwrap()
            .is_some()
    };
    assert!(!live(&first), "the oldest session was not replaced");
    assert!(live(&newest.session_id) && later.iter().all(live) && live(&b));
    assert_eq!(audit.len(), 2, "{audit:?}");
    assert_eq!(audit[0].action, Action::Register);
    assert_eq!(audit[1].action, Action::SessionExpired);
    assert!(
        audit[1].reason.starts_with("replaced"),
        "{}",
        audit[1].reason
    );
    // The replaced session's subscription ended with it.
    assert!(
        block_on(
            w.emks
                .subscriptions()
                .matching(&imsi(1), EventSet::single(EventType::KeyAvailable))
        )
        .unwrap()
        .is_empty()
    );
}

#[test]
fn fetch_audit_names_the_ue_once_its_identity_resolved() {
    // A fetch by application identity goes through `IdentityMap::resolve_key`: the audit
    // record names the IMSI for a served key and for a key not held, and no IMSI for an
    // identity that did not resolve (unknown, or another EMSE's).
    let w = world();
    w.push(0, 1, at(0), at(0)).unwrap();
    let sa = w.register(&w.a, at(0)).unwrap();
    let cases = [
        (app_ue(0, A), 1, None, Some(imsi(0))),
        (
            app_ue(0, A),
            2,
            Some(ProblemCause::KeyNotAvailable),
            Some(imsi(0)),
        ),
        (app_ue(0, B), 1, Some(ProblemCause::UeUnknown), None),
        (
            UeRef::AppIdentity(app("nobody@a")),
            1,
            Some(ProblemCause::UeUnknown),
            None,
        ),
    ];
    for (ue, id, refused, audited_imsi) in cases {
        let out = block_on(w.emks.fetch_key(
            &w.a,
            &e2m_msg::KeyRequest {
                session_id: sa.copy_secret(),
                ue: ue.clone(),
                key_id: KeyId::from_u32(id),
            },
            at(1),
        ));
        let audit = out.effects.audit.clone();
        assert_eq!(audit.len(), 1);
        assert_eq!(audit[0].action, Action::FetchKey);
        assert_eq!(audit[0].imsi, audited_imsi, "{ue:?} key {id}");
        assert_eq!(audit[0].ue.as_ref(), Some(&ue));
        assert_eq!(w.record(out).err(), refused, "{ue:?} key {id}");
    }
}
