//! Model-based property test: the in-memory key store against a `VecDeque` model, with
//! proptest-state-machine (256 cases of 200 operations each).
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test fails by panicking, with the model's view in the message"
)]

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use e2m_kdf::E2mIntKey;
use e2m_keyid::{Imsi, KeyId};
use e2m_keystore::conformance::test_key_bytes;
use e2m_keystore::{
    IntKeyStore, MemoryIntKeyStore, PushOutcome, RetentionPolicy, Timestamp, block_on,
};
use proptest::prelude::*;
use proptest_state_machine::{ReferenceStateMachine, StateMachineTest, prop_state_machine};

const N: usize = 4;
const MAX_AGE: u64 = 100;
const T0: u64 = 1_800_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    id: u32,
    created: u64,
    seed: u64,
}

#[derive(Clone, Debug, Default)]
struct Model {
    now: u64,
    /// Per UE, live and expired keys in creation order (ties: arrival).
    ues: BTreeMap<u8, VecDeque<Entry>>,
    /// What the last transition should have returned.
    expect: Option<PushOutcome>,
    /// Live keys the last `RemoveUe` removed.
    removed_live: usize,
}

impl Model {
    fn live(&self, ue: u8) -> VecDeque<Entry> {
        self.ues
            .get(&ue)
            .map(|d| {
                d.iter()
                    .copied()
                    .filter(|e| self.now < e.created + MAX_AGE)
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[derive(Clone, Debug)]
enum Op {
    Push {
        ue: u8,
        id: u32,
        seed: u64,
        age: i64,
    },
    Get {
        ue: u8,
        id: u32,
    },
    Latest {
        ue: u8,
    },
    RemoveUe {
        ue: u8,
    },
    Sweep,
    Advance(u64),
}

struct RefMachine;

impl ReferenceStateMachine for RefMachine {
    type State = Model;
    type Transition = Op;

    fn init_state() -> BoxedStrategy<Model> {
        Just(Model::default()).boxed()
    }

    fn transitions(_: &Model) -> BoxedStrategy<Op> {
        // Few UEs and key ids, so that replacement, idempotence and eviction happen often;
        // ages around MAX_AGE so that expiry, stale and future keys do too.
        let ue = 0u8..3;
        let id = 0u32..7;
        prop_oneof![
            5 => (ue.clone(), id.clone(), 0u64..2, -5i64..120)
                .prop_map(|(ue, id, seed, age)| Op::Push { ue, id, seed, age }),
            3 => (ue.clone(), id).prop_map(|(ue, id)| Op::Get { ue, id }),
            1 => ue.clone().prop_map(|ue| Op::Latest { ue }),
            1 => ue.prop_map(|ue| Op::RemoveUe { ue }),
            1 => Just(Op::Sweep),
            2 => (0u64..40).prop_map(Op::Advance),
        ]
        .boxed()
    }

    fn apply(mut m: Model, op: &Op) -> Model {
        m.expect = None;
        match *op {
            Op::Push { ue, id, seed, age } => {
                let created = (m.now as i64 - age).max(0) as u64;
                let new = Entry { id, created, seed };
                if m.now >= created + MAX_AGE {
                    m.expect = Some(PushOutcome::Expired);
                    return m;
                }
                let mut live = m.live(ue);
                let outcome = if let Some(pos) = live.iter().position(|e| e.id == id) {
                    if live[pos] == new {
                        m.expect = Some(PushOutcome::Unchanged);
                        return m;
                    }
                    if live[pos].created > created {
                        // Newest wins for one id too.
                        m.expect = Some(PushOutcome::Stale);
                        return m;
                    }
                    live.remove(pos);
                    PushOutcome::Replaced
                } else if live.len() >= N {
                    if (created, id) < (live[0].created, live[0].id) {
                        m.expect = Some(PushOutcome::Stale);
                        return m;
                    }
                    let old = live.pop_front().map(|e| KeyId::from_u32(e.id));
                    PushOutcome::Stored { evicted: old }
                } else {
                    PushOutcome::Stored { evicted: None }
                };
                // Retention order: creation time, then key id; never arrival.
                let at = live.partition_point(|e| (e.created, e.id) < (created, id));
                live.insert(at, new);
                m.ues.insert(ue, live);
                m.expect = Some(outcome);
            }
            Op::RemoveUe { ue } => {
                m.removed_live = m.live(ue).len();
                m.ues.remove(&ue);
            }
            Op::Sweep => {
                let now = m.now;
                for d in m.ues.values_mut() {
                    d.retain(|e| now < e.created + MAX_AGE);
                }
                m.ues.retain(|_, d| !d.is_empty());
            }
            Op::Advance(s) => m.now += s,
            Op::Get { .. } | Op::Latest { .. } => {}
        }
        m
    }
}

fn imsi(ue: u8) -> Imsi {
    Imsi::new(&format!("0010100000{ue:05}")).unwrap()
}

fn at(s: u64) -> Timestamp {
    Timestamp::from_unix_secs(T0 + s)
}

struct StoreTest;

impl StateMachineTest for StoreTest {
    type SystemUnderTest = MemoryIntKeyStore;
    type Reference = RefMachine;

    fn init_test(_: &Model) -> MemoryIntKeyStore {
        let policy = RetentionPolicy::new(N, Duration::from_secs(MAX_AGE)).unwrap();
        // Two shards: the model's three UEs share a lock at times, as in production.
        MemoryIntKeyStore::with_shards(policy, 2)
    }

    fn apply(store: MemoryIntKeyStore, m: &Model, op: Op) -> MemoryIntKeyStore {
        let now = at(m.now);
        match op {
            Op::Push { ue, id, seed, age } => {
                let created = at((m.now as i64 - age).max(0) as u64);
                let key = E2mIntKey::from_array(test_key_bytes(seed, id));
                let got = block_on(store.push(&imsi(ue), KeyId::from_u32(id), &key, created, now))
                    .unwrap();
                assert_eq!(Some(got), m.expect, "push outcome; model {m:?}");
            }
            Op::Get { ue, id } => {
                let want = m.live(ue).into_iter().find(|e| e.id == id);
                let got = block_on(store.get(&imsi(ue), KeyId::from_u32(id), now)).unwrap();
                match (got, want) {
                    (None, None) => {}
                    (Some(k), Some(e)) => {
                        assert_eq!(k.info.key_id.as_u32(), e.id);
                        assert_eq!(k.info.created, at(e.created));
                        assert_eq!(k.info.expires, at(e.created + MAX_AGE));
                        assert!(k.key.expose_secret() == &test_key_bytes(e.seed, e.id));
                    }
                    (got, want) => panic!("get: store {got:?}, model {want:?}"),
                }
            }
            Op::Latest { ue } => {
                let want = m.live(ue).back().map(|e| (e.id, e.seed));
                let got = block_on(store.latest(&imsi(ue), now)).unwrap();
                let got_pair = got.as_ref().map(|k| k.info.key_id.as_u32());
                assert_eq!(got_pair, want.map(|w| w.0), "latest");
                if let (Some(k), Some((id, seed))) = (got, want) {
                    assert!(k.key.expose_secret() == &test_key_bytes(seed, id));
                }
            }
            Op::RemoveUe { ue } => {
                let n = block_on(store.remove_ue(&imsi(ue))).unwrap();
                // Expired keys not yet swept may be counted too, so at least the live ones.
                let before = m.removed_live;
                assert!(n >= before, "remove_ue returned {n}, {before} were live");
            }
            Op::Sweep => {
                block_on(store.sweep(now)).unwrap();
            }
            Op::Advance(_) => {}
        }
        store
    }

    fn check_invariants(store: &MemoryIntKeyStore, m: &Model) {
        for ue in 0..3 {
            let held: Vec<(u32, Timestamp)> = block_on(store.held(&imsi(ue), at(m.now)))
                .unwrap()
                .iter()
                .map(|k| (k.key_id.as_u32(), k.created))
                .collect();
            let want: Vec<(u32, Timestamp)> =
                m.live(ue).iter().map(|e| (e.id, at(e.created))).collect();
            assert_eq!(held, want, "UE {ue} at +{}", m.now);
            assert!(held.len() <= N);
        }
    }
}

prop_state_machine! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        .. ProptestConfig::default()
    })]
    #[test]
    fn memory_store_matches_the_vecdeque_model(sequential 200..=200 => StoreTest);
}
