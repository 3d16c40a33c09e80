//! Property test of the node under random connection cuts, hung peers and time: every
//! request a client sends ends exactly once (its answer or a failure), the answer is the one
//! to that request, and the server's application never sees one request twice, however
//! often it was resent with the T flag (duplicate detection by Origin-Host and End-to-End
//! id). This is the "nothing lost or stored twice" of a pushing HSS.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

mod support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use e2m_diameter::{Event, MessageView, RequestId};
use proptest::prelude::*;
use support::{World, config, request};

#[derive(Clone, Debug)]
enum Op {
    Send,
    Cut,
    Mute,
    Unmute,
    Advance(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Send),
        1 => Just(Op::Cut),
        1 => Just(Op::Mute),
        1 => Just(Op::Unmute),
        3 => (0u8..20).prop_map(Op::Advance),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn every_request_ends_once_and_is_applied_once(ops in proptest::collection::vec(op(), 1..40)) {
        let mut w = World::new();
        let mut ca = config("a.example.net", "example.net");
        ca.request_timeout = Duration::from_secs(90);
        let a = w.add(ca);
        let b = w.add(config("b.example.com", "example.com"));
        w.peer(b, "a.example.net", false);
        w.peer(a, "b.example.com", true);
        w.pump();
        w.auto_answer.insert(b);
        let mut sent: HashMap<RequestId, String> = HashMap::new();
        for (i, op) in ops.iter().enumerate() {
            match op {
                Op::Send => {
                    let session = format!("a.example.net;{i}");
                    let now = w.now;
                    if let Ok(id) = w.nodes[a].send_request(request("a.example.net", "example.net", "example.com", None, &session), now) {
                        sent.insert(id, session);
                    }
                    w.pump();
                }
                Op::Cut => w.cut(a, b),
                Op::Mute => {
                    w.mute.insert(b);
                }
                Op::Unmute => {
                    w.mute.remove(&b);
                }
                Op::Advance(s) => w.advance(Duration::from_secs(u64::from(*s))),
            }
        }
        // Heal and let everything finish.
        w.mute.clear();
        w.advance(Duration::from_secs(200));

        let mut ended: HashMap<RequestId, usize> = HashMap::new();
        for e in &w.events[a] {
            match e {
                Event::Answer { request, message } => {
                    *ended.entry(*request).or_default() += 1;
                    let answer = MessageView::parse(message).unwrap();
                    prop_assert_eq!(answer.session_id(), Some(sent[request].as_str()), "the answer to that request");
                }
                Event::RequestFailed { request, .. } => *ended.entry(*request).or_default() += 1,
                _ => {}
            }
        }
        for id in sent.keys() {
            prop_assert_eq!(ended.get(id).copied(), Some(1), "request {:?} must end exactly once", id);
        }
        let mut seen = HashSet::new();
        for m in &w.seen_requests[b] {
            let v = MessageView::parse(m).unwrap();
            prop_assert!(seen.insert(v.header().end_to_end), "the application saw End-to-End id {:#x} twice", v.header().end_to_end);
        }
    }
}
