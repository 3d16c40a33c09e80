//! e2m-diameter's Node fed a sequence of transport events, octets and timer ticks decoded
//! from the input: it never panics, and every message it writes is well-formed (it parses
//! and its AVPs frame). Input: one octet of configuration, then operations
//! `[op][conn][len_hi][len_lo][payload...]`. Seed corpus: capabilities exchanges followed by
//! requests, watchdogs and hostile messages (`fuzz/corpus/diameter_node/`).
#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use e2m_diameter::{
    AdvertisedApplication, Application, ApplicationId, ApplicationKind, AvpCode, AvpHeader, AvpRule, CommandCode,
    CommandDef, ConnectionId, Dictionary, DisconnectCause, Event, Grammar, MessageBuilder, MessageView, Node, NodeConfig,
    PeerConfig, ResultCode,
};
use libfuzzer_sys::fuzz_target;

const APP: ApplicationId = ApplicationId(16_777_999);

fn node(flags: u8, now: Instant) -> Node {
    let mut c = NodeConfig::new("b.example.com", "example.com", vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]);
    c.applications = vec![AdvertisedApplication::auth(APP)];
    c.relay = flags & 1 != 0;
    c.accept_unknown_peers = flags & 2 != 0;
    c.watchdog_interval = Duration::from_secs(6);
    c.max_pending_per_peer = 4;
    c.max_incoming_per_peer = 4;
    c.dedup_capacity = 8;
    c.limits.max_message_len = 4096;
    c.seed = u64::from(flags);
    let mut n = Node::new(c, dictionary()).expect("valid configuration");
    n.add_peer(PeerConfig { host: "a.example.net".into(), initiate: flags & 4 != 0 }, now).expect("peer");
    n.add_peer(PeerConfig { host: "c.example.org".into(), initiate: false }, now).expect("peer");
    n
}

fn dictionary() -> Dictionary {
    let mut d = Dictionary::base();
    d.add_application(Application {
        id: APP,
        name: "test".into(),
        kind: ApplicationKind::Auth,
        vendor_id: None,
        avps: vec![],
        commands: vec![CommandDef {
            name: "Test".into(),
            code: CommandCode(999),
            application: APP,
            proxiable: true,
            request: Grammar::open(vec![
                AvpRule::required(AvpCode::SESSION_ID),
                AvpRule::required(AvpCode::ORIGIN_HOST),
                AvpRule::required(AvpCode::ORIGIN_REALM),
                AvpRule::required(AvpCode::DESTINATION_REALM),
            ]),
            answer: Grammar::open(vec![AvpRule::required(AvpCode::RESULT_CODE)]),
        }],
    })
    .expect("test application");
    d
}

fn drain(n: &mut Node, conns: &mut Vec<ConnectionId>, pending: &mut Vec<e2m_diameter::IncomingId>, now: Instant) {
    for _ in 0..1000 {
        let mut moved = false;
        while let Some(t) = n.poll_transmit() {
            moved = true;
            let mut rest = &t.data[..];
            while !rest.is_empty() {
                let len = e2m_diameter::frame_len(rest, usize::MAX).expect("frames").expect("whole");
                let msg = MessageView::parse(&rest[..len]).expect("the node writes well-formed messages");
                msg.check_framing().expect("and well-framed AVPs");
                rest = &rest[len..];
            }
        }
        while let Some(ev) = n.poll_event() {
            moved = true;
            match ev {
                Event::Connect { conn, .. } => {
                    conns.push(conn);
                    n.connected(conn, now);
                }
                Event::Request { id, .. } => pending.push(id),
                _ => {}
            }
        }
        if !moved {
            return;
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, mut ops)) = data.split_first() else { return };
    let mut now = Instant::now();
    let mut n = node(flags, now);
    let mut conns: Vec<ConnectionId> = Vec::new();
    let mut pending = Vec::new();
    drain(&mut n, &mut conns, &mut pending, now);
    let mut steps = 0;
    while ops.len() >= 4 && steps < 200 {
        steps += 1;
        let (op, which) = (ops[0], ops[1] as usize);
        let len = (usize::from(ops[2]) << 8 | usize::from(ops[3])).min(ops.len() - 4);
        let payload = &ops[4..4 + len];
        ops = &ops[4 + len..];
        let conn = if conns.is_empty() { None } else { Some(conns[which % conns.len()]) };
        match op % 8 {
            0 => {
                if let Some(c) = conn {
                    n.handle_input(c, payload, now);
                }
            }
            1 => {
                let ms = payload.iter().fold(0u64, |a, b| a.wrapping_mul(256).wrapping_add(u64::from(*b))) % 120_000;
                now += Duration::from_millis(ms);
                n.handle_timeout(now);
            }
            2 => {
                if let Some(c) = n.accept(now) {
                    conns.push(c);
                }
            }
            3 => {
                if let Some(c) = conn {
                    n.connection_lost(c, now);
                }
            }
            4 => {
                if let Some(id) = pending.pop() {
                    let mut b = MessageBuilder::answer_to(&MessageView::parse(&[1, 0, 0, 20, 0x80, 0, 3, 0xe7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).expect("header"));
                    b.u32(AvpHeader::mandatory(AvpCode::RESULT_CODE), ResultCode::SUCCESS.0);
                    let _ = n.answer(id, b.finish().expect("answer"));
                }
            }
            5 => {
                let _ = n.send_request(payload.to_vec(), now);
            }
            6 => {
                let peer = e2m_diameter::PeerId(u32::from(which as u8 % 2));
                match payload.first().copied().unwrap_or(0) % 3 {
                    0 => n.connect(peer, now),
                    1 => n.disconnect(peer, DisconnectCause(i32::from(which as u8 % 3)), now),
                    _ => n.set_transport_identities(conn.unwrap_or(ConnectionId(0)), vec!["a.example.net".into()]),
                }
            }
            _ => {
                if let Some(c) = conn {
                    n.connect_failed(c, now);
                }
            }
        }
        drain(&mut n, &mut conns, &mut pending, now);
    }
});
