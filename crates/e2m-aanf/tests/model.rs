//! Model-based property test of the AAnF's decisions (proptest-state-machine): random
//! sequences of registrations, retrievals by every kind of caller (with and without
//! `notifUri`, named and anonymous), removals, time and sweeps, against a plain model.
//!
//! After every step: a retrieval is answered iff the model holds a live context for its
//! A-KID; K_AF is the one computed here with the raw KDF (`e2m_kdf::kaf` on the AF_ID's
//! octets) from that context's K_AKMA; its expiry is `min(K_AKMA expiry, now + lifetime)`;
//! the SUPI only ever reaches AF A (whose policy allows it), never the NEF, never an
//! anonymous request; a removal records exactly one notification per (AF, A-KID) the model
//! holds live for the UE.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test fails by panicking, with the model's view in the message"
)]

mod common;

use std::collections::BTreeMap;

use common::*;
use e2m_aanf::Caller;
use e2m_aanf::e2m_kdf::Kakma;
use e2m_aanf::e2m_keyid::akma::UeId;
use proptest::prelude::*;
use proptest_state_machine::{ReferenceStateMachine, StateMachineTest, prop_state_machine};

/// Who asks: AF A (SUPI and GPSI allowed), AF B (neither), the NEF for X, the NEF for A,
/// X itself on the NEF API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    A,
    B,
    NefForX,
    NefForA,
    XOnNefApi,
}

impl Who {
    fn af(self) -> &'static str {
        match self {
            Who::A | Who::NefForA => A,
            Who::B => B,
            Who::NefForX | Who::XOnNefApi => X,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Ctx {
    a_kid: u32,
    registered: u64,
}

#[derive(Clone, Debug, Default)]
struct Model {
    now: u64,
    /// UE number → its context (UEs 0..3 by SUPI, 3..5 by GPSI).
    contexts: BTreeMap<u32, Ctx>,
    /// (UE, AF, A-KID) → until.
    targets: BTreeMap<(u32, &'static str, u32), u64>,
    /// Notifications the last removal owed.
    owed: usize,
    /// Whether the last retrieval's target was refused (the UE's targets at their limit).
    full: bool,
}

/// The world's `AkmaPolicy::notify_per_ue`.
const TARGETS_PER_UE: usize = 8;

fn ue(n: u32) -> UeId {
    if n < 3 { supi(n) } else { gpsi(n) }
}

impl Model {
    fn holder(&self, a_kid: u32) -> Option<(u32, Ctx)> {
        self.contexts
            .iter()
            .find(|(_, c)| c.a_kid == a_kid && self.now < c.registered + MAX_AGE)
            .map(|(u, c)| (*u, *c))
    }
}

#[derive(Clone, Debug)]
enum Op {
    Register {
        ue: u32,
        a_kid: u32,
    },
    Retrieve {
        who: Who,
        a_kid: u32,
        notify: bool,
        anon: bool,
    },
    Remove {
        ue: u32,
    },
    Advance(u64),
    Expire,
}

struct RefMachine;

impl ReferenceStateMachine for RefMachine {
    type State = Model;
    type Transition = Op;

    fn init_state() -> BoxedStrategy<Model> {
        Just(Model::default()).boxed()
    }

    fn transitions(_: &Model) -> BoxedStrategy<Op> {
        let who = prop_oneof![
            Just(Who::A),
            Just(Who::B),
            Just(Who::NefForX),
            Just(Who::NefForA),
            Just(Who::XOnNefApi)
        ];
        prop_oneof![
            3 => (0u32..5, 0u32..10).prop_map(|(ue, a_kid)| Op::Register { ue, a_kid }),
            5 => (who, 0u32..10, any::<bool>(), any::<bool>())
                .prop_map(|(who, a_kid, notify, anon)| Op::Retrieve { who, a_kid, notify, anon }),
            1 => (0u32..3).prop_map(|ue| Op::Remove { ue }),
            2 => (1u64..3000).prop_map(Op::Advance),
            1 => Just(Op::Expire),
        ]
        .boxed()
    }

    fn apply(mut m: Model, op: &Op) -> Model {
        match *op {
            Op::Register { ue, a_kid } => {
                if m.holder(a_kid).is_none_or(|(u, _)| u == ue) {
                    let now = m.now;
                    m.contexts.retain(|u, c| !(c.a_kid == a_kid && *u != ue));
                    m.contexts.insert(
                        ue,
                        Ctx {
                            a_kid,
                            registered: now,
                        },
                    );
                }
            }
            Op::Retrieve {
                who, a_kid, notify, ..
            } => {
                m.full = false;
                if let (Some((u, c)), true) = (m.holder(a_kid), notify) {
                    let now = m.now;
                    let key = (u, who.af(), a_kid);
                    let live = m
                        .targets
                        .iter()
                        .filter(|((tu, _, _), until)| *tu == u && **until > now)
                        .count();
                    let known = m.targets.get(&key).is_some_and(|until| *until > now);
                    if known || live < TARGETS_PER_UE {
                        m.targets.insert(key, c.registered + MAX_AGE);
                    } else {
                        m.full = true;
                    }
                }
            }
            Op::Remove { ue } => {
                let now = m.now;
                m.contexts.remove(&ue);
                m.owed = m
                    .targets
                    .iter()
                    .filter(|((u, _, _), until)| *u == ue && **until > now)
                    .count();
                m.targets.retain(|(u, _, _), _| *u != ue);
            }
            Op::Advance(s) => m.now += s,
            Op::Expire => {
                let now = m.now;
                m.contexts.retain(|_, c| now < c.registered + MAX_AGE);
                m.targets.retain(|_, until| *until > now);
            }
        }
        m
    }
}

struct Sut {
    w: World,
}

fn caller(w: &World, who: Who) -> Caller {
    match who {
        Who::A => w.a.clone(),
        Who::B => w.b.clone(),
        Who::NefForX | Who::NefForA => w.nef.clone(),
        Who::XOnNefApi => w.x.clone(),
    }
}

impl StateMachineTest for Sut {
    type SystemUnderTest = Sut;
    type Reference = RefMachine;

    fn init_test(_: &Model) -> Sut {
        Sut { w: World::new() }
    }

    fn apply(sut: Sut, m: &Model, op: Op) -> Sut {
        // `m` is the model after the transition; for a removal, the model before it is
        // needed to count what it owed: recomputed below from the store's outbox instead.
        let w = &sut.w;
        let now = at(m.now);
        match op {
            Op::Register { ue: u, a_kid } => {
                let got = w.register(ue(u), a_kid, now);
                let stored = m
                    .contexts
                    .get(&u)
                    .is_some_and(|c| c.a_kid == a_kid && c.registered == m.now);
                assert_eq!(got.is_ok(), stored, "{op:?}: {:?}", got.err());
            }
            Op::Retrieve {
                who,
                a_kid,
                notify,
                anon,
            } => {
                let mut request = World::request(who.af(), a_kid);
                request.anon_ind = anon;
                if notify {
                    let host = if matches!(who, Who::NefForX | Who::NefForA) {
                        NEF
                    } else {
                        who.af()
                    };
                    request = World::with_notify(request, &format!("https://{host}/akma"));
                }
                let c = caller(w, who);
                if m.full {
                    let refused = match who {
                        Who::XOnNefApi => w.nef_retrieve(&c, &request, now).map(drop),
                        _ => w.retrieve(&c, &request, now).map(drop),
                    };
                    assert_eq!(
                        refused,
                        Err(e2m_aanf::Problem::INSUFFICIENT_RESOURCES),
                        "{op:?}"
                    );
                    return sut;
                }
                let (kaf, expiry, supi, gpsi) = match who {
                    Who::XOnNefApi => match w.nef_retrieve(&c, &request, now).unwrap() {
                        None => {
                            assert!(m.holder(a_kid).is_none(), "{op:?}: 204 for a live context");
                            return sut;
                        }
                        Some(d) => (d.kaf, d.expiry, None, d.gpsi),
                    },
                    _ => match w.retrieve(&c, &request, now).unwrap() {
                        None => {
                            assert!(m.holder(a_kid).is_none(), "{op:?}: 204 for a live context");
                            return sut;
                        }
                        Some(d) => (d.kaf, d.expiry, d.supi, d.gpsi),
                    },
                };
                let (u, ctx) = m
                    .holder(a_kid)
                    .unwrap_or_else(|| panic!("{op:?}: a key without a context"));
                let k_akma = Kakma::from_array(key_bytes(ctx.a_kid));
                let expected =
                    e2m_aanf::e2m_kdf::kaf(&k_akma, &af_id(who.af()).kdf_param()).unwrap();
                assert!(
                    kaf == expected,
                    "{op:?}: not the K_AF of the context's K_AKMA"
                );
                let kakma_expiry = ctx.registered + MAX_AGE;
                assert_eq!(expiry, at(kakma_expiry.min(m.now + KAF_LIFETIME)), "{op:?}");
                let supi_allowed = who == Who::A && !anon && u < 3;
                assert_eq!(supi.is_some(), supi_allowed, "{op:?}: SUPI");
                let gpsi_allowed =
                    matches!(who, Who::A | Who::NefForA | Who::NefForX | Who::XOnNefApi)
                        && !anon
                        && u >= 3;
                assert_eq!(gpsi.is_some(), gpsi_allowed, "{op:?}: GPSI");
            }
            Op::Remove { ue: u } => {
                let outcome = w.remove(&w.ausf, u, now);
                assert_eq!(outcome.effects.audit.notifications, m.owed, "{op:?}");
                assert_eq!(outcome.effects.notifications_recorded, m.owed > 0);
                w.record(outcome).unwrap();
                let sent = w.sent(now);
                assert_eq!(sent.len(), m.owed, "{op:?}: notifications delivered");
            }
            Op::Advance(_) => {}
            Op::Expire => {
                w.record_effects(&block_on(w.aanf.expire(now)));
            }
        }
        sut
    }

    fn check_invariants(sut: &Sut, m: &Model) {
        // Nothing but a removal records notifications (each removal's went out above).
        assert!(
            sut.w.sent(at(m.now)).is_empty(),
            "a notification without a removal"
        );
        for u in 0..5 {
            let held = block_on(e2m_aanf::e2m_keystore::AkmaContexts::context_of(
                sut.w.aanf.contexts(),
                &ue(u),
                at(m.now),
            ))
            .unwrap();
            let want = m
                .contexts
                .get(&u)
                .filter(|c| m.now < c.registered + MAX_AGE);
            assert_eq!(
                held.map(|c| c.a_kid),
                want.map(|c| a_kid(c.a_kid)),
                "UE {u}"
            );
        }
    }
}

prop_state_machine! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]
    #[test]
    fn the_aanf_follows_the_model(sequential 1..60 => Sut);
}
