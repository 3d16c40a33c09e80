//! The node between real peers of the same crate in an in-memory world: capabilities
//! exchange, the RFC 3539 watchdog, DPR/DPA, the election, routing through a relay,
//! failover with the T flag, duplicate detection and the refusals of §7.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

mod support;

use std::time::Duration;

use e2m_diameter::{
    AdvertisedApplication, ApplicationId, AvpCode, DisconnectCause, DownReason, Event, MessageView,
    PeerState, RequestFailure, ResultCode, SendError, WatchdogState,
};
use support::{APP, World, config, request};

/// A client `a.example.net` connecting to a server `b.example.com`.
fn client_server() -> (World, usize, usize) {
    let mut w = World::new();
    let a = w.add(config("a.example.net", "example.net"));
    let b = w.add(config("b.example.com", "example.com"));
    w.peer(b, "a.example.net", false);
    w.peer(a, "b.example.com", true);
    w.pump();
    (w, a, b)
}

fn answers(w: &World, node: usize) -> Vec<Vec<u8>> {
    w.events[node]
        .iter()
        .filter_map(|e| match e {
            Event::Answer { message, .. } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn capabilities_exchange_opens_both_sides() {
    let (w, a, b) = client_server();
    let pa = w.nodes[a].peer_by_host("b.example.com").unwrap();
    let pb = w.nodes[b].peer_by_host("A.EXAMPLE.NET").unwrap();
    assert_eq!(w.nodes[a].peer_state(pa), Some(PeerState::IOpen));
    assert_eq!(w.nodes[b].peer_state(pb), Some(PeerState::ROpen));
    assert!(w.nodes[a].is_usable(pa) && w.nodes[b].is_usable(pb));
    let info = w.nodes[a].peer_info(pa).unwrap();
    assert_eq!(info.origin_realm, "example.com");
    assert_eq!(info.applications, vec![APP]);
    assert_eq!(w.count(a, |e| matches!(e, Event::PeerUp { .. })), 1);
    assert_eq!(w.count(b, |e| matches!(e, Event::PeerUp { .. })), 1);
}

#[test]
fn no_common_application_5010_and_close() {
    let mut w = World::new();
    let a = w.add(config("a.example.net", "example.net"));
    let mut cb = config("b.example.com", "example.com");
    cb.applications = vec![AdvertisedApplication::auth(ApplicationId(4))];
    let b = w.add(cb);
    w.peer(b, "a.example.net", false);
    let pa = w.peer(a, "b.example.com", true);
    w.pump();
    assert!(w.events[a].contains(&Event::CapabilitiesExchangeFailed {
        peer: pa,
        result_code: Some(ResultCode::NO_COMMON_APPLICATION)
    }));
    assert_eq!(w.nodes[a].peer_state(pa), Some(PeerState::Closed));
    assert_eq!(w.links_between(a, b), 0, "connection closed");
}

#[test]
fn relay_application_is_common_with_everyone() {
    let mut w = World::new();
    let a = w.add(config("a.example.net", "example.net"));
    let mut cr = config("relay.example.org", "example.org");
    cr.relay = true;
    cr.applications.clear();
    let r = w.add(cr);
    w.peer(r, "a.example.net", false);
    let pa = w.peer(a, "relay.example.org", true);
    w.pump();
    assert!(w.nodes[a].is_usable(pa));
    assert!(w.nodes[a].peer_info(pa).unwrap().relay);
    let _ = r;
}

#[test]
fn unknown_peer_3010() {
    let mut w = World::new();
    let a = w.add(config("a.example.net", "example.net"));
    let _b = w.add(config("b.example.com", "example.com"));
    // b does not know a.
    let pa = w.peer(a, "b.example.com", true);
    w.pump();
    assert!(w.events[a].contains(&Event::CapabilitiesExchangeFailed {
        peer: pa,
        result_code: Some(ResultCode::UNKNOWN_PEER)
    }));
}

#[test]
fn request_and_answer() {
    let (mut w, a, b) = client_server();
    w.auto_answer.insert(b);
    let now = w.now;
    let id = w.nodes[a]
        .send_request(
            request("a.example.net", "example.net", "example.com", None, "s;1"),
            now,
        )
        .unwrap();
    w.pump();
    assert_eq!(w.seen_requests[b].len(), 1);
    let answer = answers(&w, a);
    assert_eq!(answer.len(), 1);
    let view = MessageView::parse(&answer[0]).unwrap();
    assert_eq!(view.result_code(), Some(ResultCode::SUCCESS));
    assert_eq!(view.session_id(), Some("s;1"));
    assert!(
        w.events[a]
            .iter()
            .any(|e| matches!(e, Event::Answer { request, .. } if *request == id))
    );
    let pa = w.nodes[a].peer_by_host("b.example.com").unwrap();
    assert_eq!(w.nodes[a].pending_requests(pa), 0);
}

#[test]
fn watchdog_exchanges_dwr_and_detects_a_hung_peer() {
    let (mut w, a, b) = client_server();
    let pa = w.nodes[a].peer_by_host("b.example.com").unwrap();
    // Tw = 6 s ± 2 s: after a minute of silence both sides are still OKAY (DWR/DWA flowed).
    w.advance(Duration::from_secs(60));
    assert_eq!(w.nodes[a].watchdog_state(pa), Some(WatchdogState::Okay));
    // b hangs: a's DWR goes unanswered: SUSPECT after the next timer, DOWN after another.
    w.mute.insert(b);
    w.advance(Duration::from_secs(9));
    w.advance(Duration::from_secs(9));
    assert!(w.events[a].contains(&Event::PeerDown {
        peer: pa,
        reason: DownReason::WatchdogSuspect
    }));
    w.advance(Duration::from_secs(9));
    assert_eq!(w.nodes[a].watchdog_state(pa), Some(WatchdogState::Down));
    assert_ne!(w.nodes[a].peer_state(pa), Some(PeerState::IOpen));
    // b recovers: a reconnects (AttemptOpen), REOPEN needs three DWAs before OKAY.
    w.mute.clear();
    w.advance(Duration::from_secs(8));
    assert_eq!(w.nodes[a].watchdog_state(pa), Some(WatchdogState::Reopen));
    assert!(!w.nodes[a].is_usable(pa));
    w.advance(Duration::from_secs(30));
    assert_eq!(w.nodes[a].watchdog_state(pa), Some(WatchdogState::Okay));
    assert!(w.nodes[a].is_usable(pa));
}

#[test]
fn dpr_dpa() {
    let (mut w, a, b) = client_server();
    let pa = w.nodes[a].peer_by_host("b.example.com").unwrap();
    let pb = w.nodes[b].peer_by_host("a.example.net").unwrap();
    let now = w.now;
    w.nodes[a].disconnect(pa, DisconnectCause::DO_NOT_WANT_TO_TALK_TO_YOU, now);
    w.pump();
    assert_eq!(w.nodes[a].peer_state(pa), Some(PeerState::Closed));
    assert_eq!(w.nodes[b].peer_state(pb), Some(PeerState::Closed));
    assert!(w.events[a].contains(&Event::PeerDown {
        peer: pa,
        reason: DownReason::Disconnected
    }));
    assert!(w.events[b].contains(&Event::PeerDown {
        peer: pb,
        reason: DownReason::Disconnected
    }));
    // a does not reconnect by itself after its own Stop.
    w.advance(Duration::from_secs(60));
    assert_eq!(w.nodes[a].peer_state(pa), Some(PeerState::Closed));
    // On request it does.
    let now = w.now;
    w.nodes[a].connect(pa, now);
    w.pump();
    assert!(w.nodes[a].is_usable(pa));
}

#[test]
fn election_keeps_one_connection() {
    let mut w = World::new();
    let a = w.add(config("a.example.net", "example.net"));
    let b = w.add(config("b.example.com", "example.com"));
    // Both connect at once; the CERs cross.
    let pb = w.peer(a, "b.example.com", true);
    let pa = w.peer(b, "a.example.net", true);
    w.pump();
    assert!(w.nodes[a].is_usable(pb), "{:?}", w.nodes[a].peer_state(pb));
    assert!(w.nodes[b].is_usable(pa), "{:?}", w.nodes[b].peer_state(pa));
    assert_eq!(w.links_between(a, b), 1, "exactly one connection survives");
    // §5.6.4: b.example.com > a.example.net, so b keeps its responder connection (R-Open),
    // a keeps its initiator connection (I-Open).
    assert_eq!(w.nodes[b].peer_state(pa), Some(PeerState::ROpen));
    assert_eq!(w.nodes[a].peer_state(pb), Some(PeerState::IOpen));
    w.advance(Duration::from_secs(30));
    assert!(w.nodes[a].is_usable(pb) && w.nodes[b].is_usable(pa));
}

#[test]
fn failover_to_another_peer_with_t_flag() {
    let mut w = World::new();
    let a = w.add(config("a.example.net", "example.net"));
    let b1 = w.add(config("b1.example.com", "example.com"));
    let b2 = w.add(config("b2.example.com", "example.com"));
    w.peer(b1, "a.example.net", false);
    w.peer(b2, "a.example.net", false);
    w.peer(a, "b1.example.com", true);
    w.peer(a, "b2.example.com", true);
    w.pump();
    w.auto_answer.insert(b2);
    let now = w.now;
    w.nodes[a]
        .send_request(
            request("a.example.net", "example.net", "example.com", None, "s;2"),
            now,
        )
        .unwrap();
    w.pump();
    // b1 got it first and does not answer; its connection breaks.
    assert_eq!(w.seen_requests[b1].len(), 1);
    w.cut(a, b1);
    assert_eq!(w.seen_requests[b2].len(), 1, "{:?}", w.events[a]);
    let first = MessageView::parse(&w.seen_requests[b1][0]).unwrap();
    let resent = MessageView::parse(&w.seen_requests[b2][0]).unwrap();
    assert!(!first.flags().is_retransmitted());
    assert!(resent.flags().is_retransmitted(), "resent with the T flag");
    assert_eq!(
        first.header().end_to_end,
        resent.header().end_to_end,
        "same End-to-End id"
    );
    assert_ne!(
        first.header().hop_by_hop,
        resent.header().hop_by_hop,
        "new Hop-by-Hop id"
    );
    assert!(w.events[b2].iter().any(|e| matches!(
        e,
        Event::Request {
            retransmitted: true,
            ..
        }
    )));
    assert_eq!(
        answers(&w, a).len(),
        1,
        "{:?} {:?}",
        w.events[a],
        w.events[b2]
    );
}

#[test]
fn pending_request_resent_after_reconnection_and_answered_once() {
    let (mut w, a, b) = client_server();
    let pa = w.nodes[a].peer_by_host("b.example.com").unwrap();
    let now = w.now;
    w.nodes[a]
        .send_request(
            request("a.example.net", "example.net", "example.com", None, "s;3"),
            now,
        )
        .unwrap();
    w.pump();
    // b's application answers, but the answer is lost with the connection.
    assert_eq!(w.seen_requests[b].len(), 1);
    w.mute.insert(b);
    w.auto_answer.insert(b);
    let (id, _) = match &w.events[b]
        .iter()
        .rev()
        .find(|e| matches!(e, Event::Request { .. }))
        .unwrap()
    {
        Event::Request { id, message, .. } => (*id, message.clone()),
        _ => unreachable!(),
    };
    let req = MessageView::parse(&w.seen_requests[b][0]).unwrap();
    let mut ans = e2m_diameter::MessageBuilder::answer_to(&req);
    ans.u32(
        e2m_diameter::AvpHeader::mandatory(AvpCode::RESULT_CODE),
        2001,
    );
    ans.identity(
        e2m_diameter::AvpHeader::mandatory(AvpCode::ORIGIN_HOST),
        "b.example.com",
    );
    ans.identity(
        e2m_diameter::AvpHeader::mandatory(AvpCode::ORIGIN_REALM),
        "example.com",
    );
    w.nodes[b].answer(id, ans.finish().unwrap()).unwrap();
    w.pump();
    w.mute.clear();
    w.cut(a, b);
    assert!(answers(&w, a).is_empty());
    // a reconnects (watchdog timer), validates with three DWAs, resends with the T flag; b
    // recognises the duplicate and sends the answer it already gave; its application does
    // not see the request again.
    w.advance(Duration::from_secs(30));
    assert!(w.nodes[a].is_usable(pa));
    let got = answers(&w, a);
    assert_eq!(got.len(), 1, "answered once");
    assert_eq!(
        MessageView::parse(&got[0]).unwrap().result_code(),
        Some(ResultCode::SUCCESS)
    );
    assert_eq!(
        w.seen_requests[b].len(),
        1,
        "the application saw the request once"
    );
}

#[test]
fn a_retransmission_of_a_request_refused_too_busy_is_delivered_again() {
    let (mut w, a, b) = client_server();
    let now = w.now;
    let mut octets = request(
        "a.example.net",
        "example.net",
        "example.com",
        None,
        "s;busy",
    );
    octets[16..20].copy_from_slice(&0x0bad_cafe_u32.to_be_bytes());
    w.nodes[a].send_request(octets.clone(), now).unwrap();
    w.pump();
    // b's application is busy: DIAMETER_TOO_BUSY (E bit).
    let (id, message) = match w.events[b]
        .iter()
        .rev()
        .find(|e| matches!(e, Event::Request { .. }))
        .unwrap()
    {
        Event::Request { id, message, .. } => (*id, message.clone()),
        _ => unreachable!(),
    };
    let busy = e2m_diameter::ProtocolError::new(ResultCode::TOO_BUSY, "busy");
    w.nodes[b].refuse(id, &message, &busy).unwrap();
    w.pump();
    let got = answers(&w, a);
    assert_eq!(
        MessageView::parse(&got[0]).unwrap().result_code(),
        Some(ResultCode::TOO_BUSY)
    );
    // The sender tries again later with the T flag and the same End-to-End id: b's
    // application gets it again (a refused request was not processed), and its answer is
    // the one a further duplicate gets.
    w.auto_answer.insert(b);
    for _ in 0..2 {
        let mut again = octets.clone();
        again[4] |= 0x10;
        let now = w.now;
        w.nodes[a].send_request(again, now).unwrap();
        w.pump();
    }
    assert_eq!(
        w.seen_requests[b].len(),
        2,
        "delivered twice: first, then after the 3004"
    );
    let got = answers(&w, a);
    assert_eq!(got.len(), 3);
    for answer in &got[1..] {
        let view = MessageView::parse(answer).unwrap();
        assert_eq!(view.result_code(), Some(ResultCode::SUCCESS));
        assert_eq!(view.header().end_to_end, 0x0bad_cafe);
    }
}

#[test]
fn request_times_out_without_a_peer() {
    let (mut w, a, b) = client_server();
    w.mute.insert(b);
    let now = w.now;
    let id = w.nodes[a]
        .send_request(
            request("a.example.net", "example.net", "example.com", None, "s;4"),
            now,
        )
        .unwrap();
    w.advance(Duration::from_secs(121));
    assert!(w.events[a].contains(&Event::RequestFailed {
        request: id,
        reason: RequestFailure::Timeout
    }));
}

#[test]
fn limits_on_pending_requests() {
    let mut w = World::new();
    let mut ca = config("a.example.net", "example.net");
    ca.max_pending_per_peer = 2;
    let a = w.add(ca);
    let mut cb = config("b.example.com", "example.com");
    cb.max_incoming_per_peer = 1;
    let b = w.add(cb);
    w.peer(b, "a.example.net", false);
    w.peer(a, "b.example.com", true);
    w.pump();
    let now = w.now;
    w.nodes[a]
        .send_request(
            request("a.example.net", "example.net", "example.com", None, "s;5"),
            now,
        )
        .unwrap();
    w.nodes[a]
        .send_request(
            request("a.example.net", "example.net", "example.com", None, "s;6"),
            now,
        )
        .unwrap();
    assert_eq!(
        w.nodes[a].send_request(
            request("a.example.net", "example.net", "example.com", None, "s;7"),
            now
        ),
        Err(SendError::TooBusy)
    );
    w.pump();
    // b takes one from a and answers the second DIAMETER_TOO_BUSY with the E bit.
    assert_eq!(w.seen_requests[b].len(), 1);
    let got = answers(&w, a);
    assert_eq!(got.len(), 1);
    let busy = MessageView::parse(&got[0]).unwrap();
    assert_eq!(busy.result_code(), Some(ResultCode::TOO_BUSY));
    assert!(busy.flags().is_error());
}

#[test]
fn relay_forwards_with_route_record_and_detects_loops() {
    let mut w = World::new();
    let a = w.add(config("a.example.net", "example.net"));
    let mut cr = config("relay.example.org", "example.org");
    cr.relay = true;
    cr.accept_unknown_peers = true;
    cr.applications.clear();
    let r = w.add(cr);
    let b = w.add(config("b.example.com", "example.com"));
    w.peer(r, "a.example.net", false);
    w.peer(b, "relay.example.org", false);
    let rb = w.peer(r, "b.example.com", true);
    let ar = w.peer(a, "relay.example.org", true);
    w.pump();
    w.nodes[a].add_route(Some("example.com"), None, ar);
    w.nodes[r].add_route(Some("example.com"), Some(support::APP), rb);
    w.auto_answer.insert(b);
    let now = w.now;
    let mut req = request("a.example.net", "example.net", "example.com", None, "s;8");
    // An AVP the relay does not know, with the M bit: relays pass it on (§4.1).
    let mut extra = e2m_diameter::AvpBuf::new();
    extra.octets(
        e2m_diameter::AvpHeader::mandatory(AvpCode(7777)).with_vendor(99),
        b"opaque!",
    );
    let extra = extra.finish().unwrap();
    req.extend_from_slice(&extra);
    let len = req.len() as u32;
    req[1..4].copy_from_slice(&len.to_be_bytes()[1..]);
    w.nodes[a].send_request(req, now).unwrap();
    w.pump();
    assert_eq!(
        w.seen_requests[b].len(),
        0,
        "b does not serve a request with an unknown M AVP"
    );
    let got = answers(&w, a);
    assert_eq!(
        MessageView::parse(&got[0]).unwrap().result_code(),
        Some(ResultCode::AVP_UNSUPPORTED)
    );

    let now = w.now;
    w.nodes[a]
        .send_request(
            request("a.example.net", "example.net", "example.com", None, "s;9"),
            now,
        )
        .unwrap();
    w.pump();
    let seen = MessageView::parse(&w.seen_requests[b][0]).unwrap();
    let records: Vec<_> = seen
        .find_all(AvpCode::ROUTE_RECORD)
        .map(|a| a.identity().unwrap().to_owned())
        .collect();
    assert_eq!(
        records,
        vec!["a.example.net".to_owned()],
        "the relay added the identity of the peer it came from"
    );
    let got = answers(&w, a);
    assert_eq!(
        MessageView::parse(&got[1]).unwrap().result_code(),
        Some(ResultCode::SUCCESS)
    );

    // A request whose Route-Record already holds the relay: a does not route it there
    // (§6.1.7 predictive loop avoidance) ...
    let mut looped = request("x.example.net", "example.net", "example.com", None, "s;10");
    let mut rr = e2m_diameter::AvpBuf::new();
    rr.identity(
        e2m_diameter::AvpHeader::mandatory(AvpCode::ROUTE_RECORD),
        "relay.example.org",
    );
    looped.extend_from_slice(&rr.finish().unwrap());
    let len = looped.len() as u32;
    looped[1..4].copy_from_slice(&len.to_be_bytes()[1..]);
    let now = w.now;
    assert_eq!(
        w.nodes[a].send_request(looped.clone(), now),
        Err(SendError::NoRoute)
    );
    // ... and the relay answers it DIAMETER_LOOP_DETECTED (§6.1.3) when it gets it anyway.
    let (conn, _) = w.raw_open(r, "x.example.net", "example.net");
    let (out, _) = w.raw_exchange(r, conn, &looped);
    let answer = MessageView::parse(&out[0]).unwrap();
    assert_eq!(answer.result_code(), Some(ResultCode::LOOP_DETECTED));
    assert!(answer.flags().is_error());
}

#[test]
fn refusals_for_local_requests() {
    let (mut w, a, b) = client_server();
    let _ = b;
    // Unknown realm at a non-relay: DIAMETER_REALM_NOT_SERVED... a has a route to b only
    // through b's realm; send to b with Destination-Host b but an unserved application.
    let pa = w.nodes[a].peer_by_host("b.example.com").unwrap();
    w.nodes[a].add_route(None, None, pa);
    let cases: [(Vec<u8>, ResultCode); 2] = [
        (
            request("a.example.net", "example.net", "example.org", None, "s;11"),
            ResultCode::REALM_NOT_SERVED,
        ),
        (
            request(
                "a.example.net",
                "example.net",
                "example.com",
                Some("c.example.com"),
                "s;12",
            ),
            ResultCode::UNABLE_TO_DELIVER,
        ),
    ];
    for (req, _) in &cases {
        let now = w.now;
        w.nodes[a].send_request(req.clone(), now).unwrap();
    }
    w.pump();
    let got: Vec<_> = answers(&w, a)
        .iter()
        .map(|m| MessageView::parse(m).unwrap().result_code().unwrap())
        .collect();
    assert_eq!(got, cases.iter().map(|c| c.1).collect::<Vec<_>>());
}

#[test]
fn application_helpers_build_requests_answers_and_refusals() {
    let (mut w, a, b) = client_server();
    // a builds with new_request, b answers the first with new_answer and refuses the second.
    for n in 0..2 {
        let session = w.nodes[a].new_session_id();
        let mut req = w.nodes[a].new_request(support::CMD, APP, true, Some(&session));
        req.identity(
            e2m_diameter::AvpHeader::mandatory(AvpCode::DESTINATION_REALM),
            "example.com",
        );
        let now = w.now;
        w.nodes[a].send_request(req.finish().unwrap(), now).unwrap();
        w.pump();
        let (id, message) = match w.events[b]
            .iter()
            .rev()
            .find(|e| matches!(e, Event::Request { .. }))
            .unwrap()
        {
            Event::Request { id, message, .. } => (*id, message.clone()),
            _ => unreachable!(),
        };
        let view = MessageView::parse(&message).unwrap();
        assert_eq!(view.session_id(), Some(session.as_str()));
        assert_eq!(
            view.avps().next().unwrap().unwrap().code(),
            AvpCode::SESSION_ID,
            "Session-Id first"
        );
        if n == 0 {
            let answer = w.nodes[b]
                .new_answer(&view, ResultCode::SUCCESS)
                .finish()
                .unwrap();
            w.nodes[b].answer(id, answer).unwrap();
        } else {
            let busy = e2m_diameter::ProtocolError::new(ResultCode::TOO_BUSY, "store busy");
            w.nodes[b].refuse(id, &message, &busy).unwrap();
            assert_eq!(
                w.nodes[b].refuse(id, &message, &busy),
                Err(e2m_diameter::AnswerError::UnknownRequest)
            );
        }
        w.pump();
    }
    let got: Vec<_> = answers(&w, a)
        .iter()
        .map(|m| {
            let v = MessageView::parse(m).unwrap();
            (
                v.result_code().unwrap(),
                v.flags().is_error(),
                v.origin_host().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (ResultCode::SUCCESS, false, "b.example.com".to_owned()),
            (ResultCode::TOO_BUSY, true, "b.example.com".to_owned()),
        ]
    );
}

#[test]
fn unknown_peers_live_as_long_as_their_connection() {
    let mut w = World::new();
    let mut c = config("b.example.com", "example.com");
    c.accept_unknown_peers = true;
    let b = w.add(c);
    let (conn, _) = w.raw_open(b, "x.example.net", "example.net");
    let x = w.nodes[b].peer_by_host("x.example.net").unwrap();
    assert!(w.nodes[b].is_usable(x));
    let now = w.now;
    w.nodes[b].connection_lost(conn, now);
    assert_eq!(
        w.nodes[b].peer_by_host("x.example.net"),
        None,
        "gone with its connection"
    );
    // The next unknown peer takes its slot: the peer table does not grow.
    let (_, _) = w.raw_open(b, "y.example.net", "example.net");
    assert_eq!(w.nodes[b].peer_by_host("y.example.net"), Some(x));
}

#[test]
fn origin_host_must_match_the_transport_identity() {
    let mut w = World::new();
    let mut c = config("b.example.com", "example.com");
    c.accept_unknown_peers = true;
    let b = w.add(c);
    // TLS verified a certificate for z.example.net; the CER claims a.example.net.
    let conn = w.raw_accept(b);
    w.nodes[b].set_transport_identities(conn, vec!["z.example.net".to_owned()]);
    let (out, closed) = w.raw_exchange(
        b,
        conn,
        &support::cer("a.example.net", "example.net", &[APP.0]),
    );
    let cea = MessageView::parse(&out[0]).unwrap();
    assert_eq!(cea.result_code(), Some(ResultCode::UNKNOWN_PEER));
    assert!(cea.flags().is_error() && closed);
    // The matching name (compared case-insensitively) is accepted.
    let conn = w.raw_accept(b);
    w.nodes[b].set_transport_identities(conn, vec!["A.Example.NET".to_owned()]);
    let (out, closed) = w.raw_exchange(
        b,
        conn,
        &support::cer("a.example.net", "example.net", &[APP.0]),
    );
    assert_eq!(
        MessageView::parse(&out[0]).unwrap().result_code(),
        Some(ResultCode::SUCCESS)
    );
    assert!(!closed);
}

#[test]
fn configurations_are_checked() {
    use e2m_diameter::{ConfigError, Dictionary, Node, NodeConfig};
    let ok = config("a.example.net", "example.net");
    let bad = |f: &dyn Fn(&mut NodeConfig)| {
        let mut c = ok.clone();
        f(&mut c);
        Node::new(c, Dictionary::base()).err()
    };
    assert_eq!(bad(&|_| {}), None);
    assert_eq!(
        bad(&|c| c.origin_host = "a b".into()),
        Some(ConfigError::OriginHost)
    );
    assert_eq!(
        bad(&|c| c.host_ip_addresses.clear()),
        Some(ConfigError::NoHostIpAddress)
    );
    assert_eq!(
        bad(&|c| c.watchdog_interval = Duration::from_secs(5)),
        Some(ConfigError::WatchdogInterval)
    );
    assert_eq!(
        bad(&|c| c.applications.clear()),
        Some(ConfigError::NoApplication)
    );
    assert_eq!(
        bad(&|c| c.request_timeout = Duration::MAX),
        Some(ConfigError::Timer)
    );
    assert_eq!(
        bad(&|c| c.reopen_watchdogs = 0),
        Some(ConfigError::ReopenWatchdogs)
    );
    assert_eq!(
        bad(&|c| c.limits.max_message_len = 1 << 24),
        Some(ConfigError::MessageLimit)
    );
}

#[test]
fn disconnect_cause_decides_reconnection() {
    // §5.4.3: after REBOOTING the peer may reconnect; after BUSY it should not.
    for (cause, reconnects) in [
        (DisconnectCause::REBOOTING, true),
        (DisconnectCause::BUSY, false),
    ] {
        let (mut w, a, b) = client_server();
        let pa = w.nodes[a].peer_by_host("b.example.com").unwrap();
        let pb = w.nodes[b].peer_by_host("a.example.net").unwrap();
        let now = w.now;
        w.nodes[b].disconnect(pb, cause, now);
        w.pump();
        assert_eq!(
            w.nodes[a].peer_state(pa),
            Some(PeerState::Closed),
            "{cause:?}"
        );
        w.advance(Duration::from_secs(20));
        assert_eq!(w.nodes[a].is_usable(pa), reconnects, "{cause:?}");
        assert_eq!(w.nodes[b].is_usable(pb), reconnects, "{cause:?}");
    }
}

#[test]
fn debug_output_never_shows_message_octets() {
    let (mut w, a, _) = client_server();
    let now = w.now;
    let secret = "s;SECRET-KEY-MATERIAL";
    w.nodes[a]
        .send_request(
            request("a.example.net", "example.net", "example.com", None, secret),
            now,
        )
        .unwrap();
    let t = w.nodes[a].poll_transmit().unwrap();
    let text = format!("{t:?}");
    assert!(
        !text.contains('[') && text.contains(&format!("len: {}", t.data.len())),
        "{text}"
    );
    let event = Event::Request {
        id: e2m_diameter::IncomingId(1),
        peer: e2m_diameter::PeerId(0),
        message: secret.as_bytes().to_vec(),
        retransmitted: false,
    };
    let text = format!("{event:?}");
    assert!(!text.contains('[') && text.contains("len: 21"), "{text}");
}

#[test]
fn reopen_needs_the_configured_number_of_dwas() {
    // With reopen_watchdogs = 1 a reconnected peer takes requests after its first DWA.
    let mut w = World::new();
    let mut ca = config("a.example.net", "example.net");
    ca.reopen_watchdogs = 1;
    let a = w.add(ca);
    let b = w.add(config("b.example.com", "example.com"));
    w.peer(b, "a.example.net", false);
    let pa = w.peer(a, "b.example.com", true);
    w.pump();
    w.cut(a, b);
    assert_eq!(w.nodes[a].watchdog_state(pa), Some(WatchdogState::Down));
    // The reconnection happens at the next watchdog timer (Tw = 6 s ± 2 s); its DWR is
    // answered at once.
    w.advance(Duration::from_secs(8));
    assert_eq!(w.nodes[a].watchdog_state(pa), Some(WatchdogState::Okay));
    assert!(w.nodes[a].is_usable(pa));
}
