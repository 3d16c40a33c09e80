//! The in-memory AKMA context store: the conformance suite (one test per check), the
//! threaded registrations check, and a model-based property test against a plain model.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test fails by panicking, with the model's view in the message"
)]

use std::collections::BTreeMap;
use std::time::Duration;

use e2m_kdf::Kakma;
use e2m_keyid::akma::{AKid, Fqdn, UeId};
use e2m_keystore::conformance::{self, BlockOn};
use e2m_keystore::{
    AkmaContexts, AkmaOutbox, AkmaPolicy, AkmaRegistered, Claim, InstanceId, Limit,
    MemoryAkmaContexts, NotifyTarget, StoreError, Timestamp, block_on,
};
use proptest::prelude::*;
use proptest_state_machine::{ReferenceStateMachine, StateMachineTest, prop_state_machine};

mod memory {
    e2m_keystore::akma_conformance_tests! {
        run: e2m_keystore::block_on,
        akma: e2m_keystore::MemoryAkmaContexts::new,
    }
}

#[test]
fn the_whole_suite_runs_every_check() {
    let report = block_on(conformance::akma(&MemoryAkmaContexts::new));
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.results.len(), conformance::AKMA_CHECKS.len());
    assert_eq!(memory::akma::CHECKS, conformance::AKMA_CHECKS);
}

#[test]
fn concurrent_registrations_of_one_ue_leave_one_context() {
    let store = MemoryAkmaContexts::default();
    let report = conformance::concurrent_akma_registrations(&store, &BlockOn, 8, 200);
    assert!(report.is_ok(), "{report}");
}

// ---------------------------------------------------------------------------------------
// The model.

const MAX_AGE: u64 = 100;
const T0: u64 = 1_800_000_000;
const CAP: usize = 3;

fn at(s: u64) -> Timestamp {
    Timestamp::from_unix_secs(T0 + s)
}

fn ue(n: u8) -> UeId {
    // UEs 0..3 by SUPI, 3..5 by GPSI.
    if n < 3 {
        UeId::parse(&format!("imsi-0010100000000{n:02}")).unwrap()
    } else {
        UeId::parse(&format!("msisdn-3361234560{n}")).unwrap()
    }
}

fn a_kid(n: u8) -> AKid {
    AKid::parse(&format!(
        "rid0.atid{n:064x}@5gc.mnc001.mcc001.3gppnetwork.org"
    ))
    .unwrap()
}

fn key(n: u8, seed: u8) -> [u8; 32] {
    let mut k = [seed; 32];
    k[0] = n;
    k
}

fn af(n: u8) -> Fqdn {
    Fqdn::parse(&format!("af-{n}.example.com")).unwrap()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Ctx {
    a_kid: u8,
    seed: u8,
    registered: u64,
}

#[derive(Clone, Debug, Default)]
struct Model {
    now: u64,
    contexts: BTreeMap<u8, Ctx>,
    /// (UE, AF, A-KID) → until.
    targets: BTreeMap<(u8, u8, u8), u64>,
    /// Outbox entries: (AF, A-KID) in recording order.
    outbox: Vec<(u8, u8)>,
}

impl Model {
    fn live(&self, c: &Ctx) -> bool {
        self.now < c.registered + MAX_AGE
    }

    /// The live context whose A-KID is `n`.
    fn holder(&self, n: u8) -> Option<(u8, Ctx)> {
        self.contexts
            .iter()
            .find(|(_, c)| c.a_kid == n && self.live(c))
            .map(|(u, c)| (*u, *c))
    }
}

#[derive(Clone, Debug)]
enum Op {
    Register { ue: u8, a_kid: u8, seed: u8 },
    Retrieve { a_kid: u8, notify: Option<u8> },
    Remove { ue: u8 },
    Sweep,
    Advance(u64),
    DeliverAll,
}

struct RefMachine;

impl ReferenceStateMachine for RefMachine {
    type State = Model;
    type Transition = Op;

    fn init_state() -> BoxedStrategy<Model> {
        Just(Model::default()).boxed()
    }

    fn transitions(_: &Model) -> BoxedStrategy<Op> {
        prop_oneof![
            4 => (0u8..5, 0u8..8, any::<u8>()).prop_map(|(ue, a_kid, seed)| Op::Register { ue, a_kid, seed }),
            4 => (0u8..8, prop::option::of(0u8..5)).prop_map(|(a_kid, notify)| Op::Retrieve { a_kid, notify }),
            1 => (0u8..5).prop_map(|ue| Op::Remove { ue }),
            1 => Just(Op::Sweep),
            2 => (1u64..60).prop_map(Op::Advance),
            1 => Just(Op::DeliverAll),
        ]
        .boxed()
    }

    fn apply(mut m: Model, op: &Op) -> Model {
        match *op {
            Op::Register { ue, a_kid, seed } => {
                let taken = m.holder(a_kid).is_some_and(|(u, _)| u != ue);
                if !taken {
                    // An expired holder of this A-KID gives way.
                    let now = m.now;
                    m.contexts.retain(|u, c| {
                        !(c.a_kid == a_kid && *u != ue && now >= c.registered + MAX_AGE)
                    });
                    m.contexts.insert(
                        ue,
                        Ctx {
                            a_kid,
                            seed,
                            registered: m.now,
                        },
                    );
                }
            }
            Op::Retrieve { a_kid, notify } => {
                if let (Some((ue, c)), Some(af)) = (m.holder(a_kid), notify) {
                    let now = m.now;
                    let live = m
                        .targets
                        .iter()
                        .filter(|((u, _, _), until)| *u == ue && **until > now)
                        .count();
                    let known = m.targets.get(&(ue, af, a_kid)).is_some_and(|u| *u > now);
                    if known || live < CAP {
                        m.targets.insert((ue, af, a_kid), c.registered + MAX_AGE);
                    }
                }
            }
            Op::Remove { ue } => {
                m.contexts.remove(&ue);
                let now = m.now;
                let mine: Vec<_> = m
                    .targets
                    .keys()
                    .filter(|(u, _, _)| *u == ue)
                    .copied()
                    .collect();
                for key in mine {
                    if let Some(until) = m.targets.remove(&key)
                        && until > now
                    {
                        m.outbox.push((key.1, key.2));
                    }
                }
            }
            Op::Sweep => {
                let now = m.now;
                m.contexts.retain(|_, c| now < c.registered + MAX_AGE);
                m.targets.retain(|_, until| *until > now);
            }
            Op::Advance(s) => m.now += s,
            Op::DeliverAll => m.outbox.clear(),
        }
        m
    }
}

struct Sut {
    store: MemoryAkmaContexts,
}

impl StateMachineTest for Sut {
    type SystemUnderTest = Sut;
    type Reference = RefMachine;

    fn init_test(_: &Model) -> Sut {
        let policy = AkmaPolicy::new(Duration::from_secs(MAX_AGE), CAP).unwrap();
        Sut {
            store: MemoryAkmaContexts::new(policy),
        }
    }

    fn apply(sut: Sut, m: &Model, op: Op) -> Sut {
        // `m` is the model *after* the transition.
        let now = at(m.now);
        let s = &sut.store;
        match op {
            Op::Register {
                ue: u,
                a_kid: n,
                seed,
            } => {
                let got =
                    block_on(s.register(&ue(u), &a_kid(n), &Kakma::from_array(key(n, seed)), now))
                        .unwrap();
                let stored = m
                    .contexts
                    .get(&u)
                    .is_some_and(|c| c.a_kid == n && c.seed == seed && c.registered == m.now);
                assert_eq!(got == AkmaRegistered::AKidTaken, !stored, "{op:?}: {got:?}");
            }
            Op::Retrieve { a_kid: n, notify } => {
                let target = notify.map(|f| {
                    NotifyTarget::new(af(f), &format!("https://af-{f}.example.com/n")).unwrap()
                });
                let got = block_on(s.retrieve(&a_kid(n), target.as_ref(), now));
                match (m.holder(n), got) {
                    (None, Ok(None)) => {}
                    (Some((u, c)), Ok(Some(found))) => {
                        assert_eq!(found.ue, ue(u));
                        assert!(
                            found.k_akma == Kakma::from_array(key(n, c.seed)),
                            "{op:?}: wrong key"
                        );
                        assert_eq!(found.registered, at(c.registered));
                        if let Some(f) = notify {
                            assert!(
                                m.targets.contains_key(&(u, f, n)),
                                "{op:?}: target stored, model refused"
                            );
                        }
                    }
                    (Some((u, _)), Err(StoreError::LimitReached(Limit::NotifyTargetsPerUe))) => {
                        let f = notify.unwrap();
                        let live = m
                            .targets
                            .iter()
                            .filter(|((x, _, _), until)| *x == u && **until > m.now)
                            .count();
                        assert!(
                            live >= CAP && !m.targets.contains_key(&(u, f, n)),
                            "{op:?}: refused below the cap"
                        );
                    }
                    (model, got) => panic!(
                        "{op:?}: model {model:?}, store {:?}",
                        got.map(|c| c.map(|c| c.a_kid))
                    ),
                }
            }
            Op::Remove { ue: u } => {
                block_on(s.remove(&ue(u), now)).unwrap();
            }
            Op::Sweep => {
                block_on(s.sweep(now)).unwrap();
            }
            Op::Advance(_) => {}
            Op::DeliverAll => {
                let claim = Claim {
                    instance: InstanceId::from_u64(1),
                    now: at(u64::from(u32::MAX)),
                    lease: Duration::from_secs(1),
                    max: usize::MAX,
                    per_emse: usize::MAX,
                    skip: &[],
                };
                for e in block_on(s.claim_due(&claim)).unwrap() {
                    assert!(block_on(s.delivered(e.id)).unwrap());
                }
            }
        }
        sut
    }

    fn check_invariants(sut: &Sut, m: &Model) {
        let s = &sut.store;
        let now = at(m.now);
        // Every UE: context_of agrees with the model; every A-KID finds its live holder only.
        for u in 0..5 {
            let got = block_on(s.context_of(&ue(u), now)).unwrap();
            let want = m.contexts.get(&u).filter(|c| m.live(c));
            assert_eq!(
                got.as_ref().map(|c| c.a_kid),
                want.map(|c| a_kid(c.a_kid)),
                "UE {u}"
            );
        }
        for n in 0..8 {
            let got = block_on(s.retrieve(&a_kid(n), None, now)).unwrap();
            assert_eq!(
                got.map(|c| c.ue),
                m.holder(n).map(|(u, _)| ue(u)),
                "A-KID {n}"
            );
        }
        // The outbox holds what the model's removals recorded.
        let pending = block_on(s.pending()).unwrap();
        assert_eq!(pending, m.outbox.len() as u64, "outbox");
    }
}

prop_state_machine! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn memory_akma_store_follows_the_model(sequential 1..120 => Sut);
}
