//! Hostile input: the malformed-message classes that crashed other Diameter stacks (AVP
//! length below 8 or past the message, Grouped AVPs overrunning their parent, message
//! length lies, deep nesting, zero-length and huge messages, a CER with hundreds or
//! thousands of application ids, version other than 1, reserved bits), each fed to a node
//! on a fresh connection (as a CER) and on an open one (as a request). Each must get the
//! Result-Code RFC 6733 §7.1 names, or the connection closed; never a panic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

mod support;

use e2m_diameter::{AvpCode, AvpHeader, Event, MessageBuilder, MessageView, ResultCode};
use support::{APP, World, cer, config, request};

/// What a node must do with a hostile message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// An answer with this Result-Code; `close`: the connection is closed after it.
    Answer(ResultCode, bool),
    /// The connection is closed without an answer.
    Close,
    /// Nothing yet (an incomplete message is waited for).
    Wait,
}

fn server() -> World {
    let mut w = World::new();
    let mut c = config("b.example.com", "example.com");
    c.accept_unknown_peers = true;
    w.add(c);
    w
}

fn fix_len(mut m: Vec<u8>) -> Vec<u8> {
    let len = m.len() as u32;
    m[1..4].copy_from_slice(&len.to_be_bytes()[1..]);
    m
}

fn with_avp(mut m: Vec<u8>, avp: &[u8]) -> Vec<u8> {
    m.extend_from_slice(avp);
    fix_len(m)
}

fn run(w: &mut World, conn: e2m_diameter::ConnectionId, input: &[u8], expect: Expect, name: &str) {
    let (out, closed) = w.raw_exchange(0, conn, input);
    match expect {
        Expect::Answer(rc, close) => {
            assert_eq!(
                out.len(),
                1,
                "{name}: one answer expected, got {}",
                out.len()
            );
            let a = MessageView::parse(&out[0])
                .unwrap_or_else(|e| panic!("{name}: answer does not parse: {e}"));
            assert!(!a.is_request(), "{name}");
            assert_eq!(a.result_code(), Some(rc), "{name}");
            assert_eq!(
                a.flags().is_error(),
                rc.is_protocol_error(),
                "{name}: E bit"
            );
            assert_eq!(a.origin_host(), Some("b.example.com"), "{name}");
            // Every answer we write frames cleanly, Failed-AVP included.
            a.check_framing().unwrap();
            if let Some(f) = a.find(AvpCode::FAILED_AVP) {
                assert!(f.grouped().all(|c| c.is_ok()), "{name}: Failed-AVP frames");
            }
            assert_eq!(closed, close, "{name}: close");
        }
        Expect::Close => {
            assert!(out.is_empty(), "{name}: no answer expected");
            assert!(closed, "{name}: connection must close");
        }
        Expect::Wait => {
            assert!(out.is_empty() && !closed, "{name}: must wait");
        }
    }
}

fn valid_cer() -> Vec<u8> {
    cer("a.example.net", "example.net", &[APP.0])
}

/// Hostile CERs on a new connection: refused with a CEA and closed (§5.3, §5.6.1).
#[test]
fn hostile_cers() {
    let base = valid_cer();
    let n = base.len();
    let mut cases: Vec<(&str, Vec<u8>, Expect)> = Vec::new();
    let answer = |rc| Expect::Answer(rc, true);

    // AVP length below the header (0, 7; 8 and 11 with the V bit).
    for (flags, len) in [(0x40u8, 0u32), (0x40, 7), (0xc0, 8), (0xc0, 11)] {
        let mut avp = vec![0, 0, 1, 9, flags];
        avp.extend_from_slice(&len.to_be_bytes()[1..]);
        avp.extend_from_slice(&[0, 0, 0, 0]);
        cases.push((
            "AVP length below the header",
            with_avp(base.clone(), &avp),
            answer(ResultCode::INVALID_AVP_LENGTH),
        ));
    }
    // AVP length past the end of the message.
    cases.push((
        "AVP length past the message",
        with_avp(
            base.clone(),
            &[0, 0, 1, 9, 0x40, 0x00, 0x10, 0x00, 0, 0, 0, 1],
        ),
        answer(ResultCode::INVALID_AVP_LENGTH),
    ));
    // A Grouped AVP whose child overruns it.
    let mut vsai = vec![0, 0, 1, 4, 0x40, 0, 0, 32];
    vsai.extend_from_slice(&[0, 0, 1, 10, 0x40, 0, 0, 12, 0, 0, 0x28, 0xaf]);
    vsai.extend_from_slice(&[0, 0, 1, 2, 0x40, 0, 0, 40, 0, 0, 0, 1]);
    cases.push((
        "grouped child overruns its parent",
        with_avp(base.clone(), &vsai),
        answer(ResultCode::INVALID_AVP_LENGTH),
    ));
    // A Grouped AVP overrunning the message.
    let mut over = vsai.clone();
    over[7] = 200;
    cases.push((
        "grouped AVP overruns the message",
        with_avp(base.clone(), &over),
        answer(ResultCode::INVALID_AVP_LENGTH),
    ));
    // Message length not a multiple of 4 (the octets follow it): DIAMETER_INVALID_MESSAGE_LENGTH.
    let mut odd = base.clone();
    odd.extend_from_slice(&[0, 0]);
    let odd = fix_len(odd);
    cases.push((
        "message length not a multiple of 4",
        odd,
        answer(ResultCode::INVALID_MESSAGE_LENGTH),
    ));
    // Version 2.
    let mut v2 = base.clone();
    v2[0] = 2;
    cases.push(("version 2", v2, answer(ResultCode::UNSUPPORTED_VERSION)));
    // A header-only CER (zero AVPs).
    cases.push((
        "empty CER",
        fix_len(base[..20].to_vec()),
        answer(ResultCode::MISSING_AVP),
    ));
    // E bit in a request; P bit in a CER.
    let mut e = base.clone();
    e[4] |= 0x20;
    cases.push((
        "E bit in a request",
        e,
        answer(ResultCode::INVALID_HDR_BITS),
    ));
    let mut p = base.clone();
    p[4] |= 0x40;
    cases.push(("P bit in a CER", p, answer(ResultCode::INVALID_HDR_BITS)));
    // Unknown AVP with the M bit.
    cases.push((
        "unknown mandatory AVP",
        with_avp(
            base.clone(),
            &[0, 0, 0x30, 0x39, 0x40, 0, 0, 12, 1, 2, 3, 4],
        ),
        answer(ResultCode::AVP_UNSUPPORTED),
    ));
    // An unknown M-bit AVP inside Vendor-Specific-Application-Id.
    let mut vsai_m = vec![0, 0, 1, 4, 0x40, 0, 0, 44];
    vsai_m.extend_from_slice(&[0, 0, 1, 10, 0x40, 0, 0, 12, 0, 0, 0x28, 0xaf]);
    vsai_m.extend_from_slice(&[0, 0, 1, 2, 0x40, 0, 0, 12, 0, 0, 0, 1]);
    vsai_m.extend_from_slice(&[0, 0, 0x30, 0x39, 0x40, 0, 0, 12, 1, 2, 3, 4]);
    cases.push((
        "unknown mandatory AVP in a Grouped AVP",
        with_avp(base.clone(), &vsai_m),
        answer(ResultCode::AVP_UNSUPPORTED),
    ));
    // Wrong lengths and values of typed AVPs.
    cases.push((
        "Origin-State-Id of 3 octets",
        with_avp(base.clone(), &[0, 0, 1, 22, 0x40, 0, 0, 11, 1, 2, 3, 0]),
        answer(ResultCode::INVALID_AVP_LENGTH),
    ));
    cases.push((
        "IPv4 Host-IP-Address of 16 octets",
        with_avp(
            base.clone(),
            &[
                0, 0, 1, 1, 0x40, 0, 0, 26, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                0, 0,
            ],
        ),
        answer(ResultCode::INVALID_AVP_VALUE),
    ));
    cases.push((
        "Product-Name with the M bit",
        with_avp(base.clone(), &[0, 0, 1, 13, 0x40, 0, 0, 9, b'x', 0, 0, 0]),
        answer(ResultCode::INVALID_AVP_BITS),
    ));
    cases.push((
        "Origin-Host twice",
        with_avp(base.clone(), &[0, 0, 1, 8, 0x40, 0, 0, 9, b'x', 0, 0, 0]),
        answer(ResultCode::AVP_OCCURS_TOO_MANY_TIMES),
    ));
    // Hundreds of application ids: accepted; thousands of AVPs: refused (limit 1,024).
    let mut many = base.clone();
    for app in 1..=500u32 {
        many.extend_from_slice(&[0, 0, 1, 2, 0x40, 0, 0, 12]);
        many.extend_from_slice(&app.to_be_bytes());
    }
    cases.push((
        "CER with 500 application ids",
        fix_len(many.clone()),
        Expect::Answer(ResultCode::SUCCESS, false),
    ));
    for app in 501..=3000u32 {
        many.extend_from_slice(&[0, 0, 1, 2, 0x40, 0, 0, 12]);
        many.extend_from_slice(&app.to_be_bytes());
    }
    cases.push((
        "CER with 3,000 application ids",
        fix_len(many),
        answer(ResultCode::UNABLE_TO_COMPLY),
    ));
    // Deep nesting of Vendor-Specific-Application-Id inside itself.
    let mut deep: Vec<u8> = vec![0, 0, 1, 10, 0x40, 0, 0, 12, 0, 0, 0x28, 0xaf];
    for _ in 0..2000 {
        let mut outer = vec![0, 0, 1, 4, 0x40];
        outer.extend_from_slice(&((deep.len() + 8) as u32).to_be_bytes()[1..]);
        outer.extend_from_slice(&deep);
        deep = outer;
    }
    cases.push((
        "Grouped AVPs nested 2,000 deep",
        with_avp(base.clone(), &deep),
        answer(ResultCode::UNABLE_TO_COMPLY),
    ));
    // Reserved bits in the header and AVP flags are ignored (§3, §4.1).
    let mut reserved = base.clone();
    reserved[4] |= 0x0f;
    reserved[20 + 4] |= 0x1f;
    cases.push((
        "reserved bits",
        reserved,
        Expect::Answer(ResultCode::SUCCESS, false),
    ));
    // Framing lies: the connection cannot be framed and is closed without an answer.
    let mut short = base.clone();
    short[1..4].copy_from_slice(&[0, 0, 19]);
    cases.push(("message length 19", short, Expect::Close));
    cases.push(("message length 0", vec![1, 0, 0, 0], Expect::Close));
    cases.push((
        "message length 16 MiB",
        vec![1, 0xff, 0xff, 0xfc, 0x80, 0, 1, 1],
        Expect::Close,
    ));
    // A length promising more than was sent: the node waits (then times out, below).
    let mut long = base.clone();
    long[1..4].copy_from_slice(&((n + 400) as u32).to_be_bytes()[1..]);
    cases.push(("message length larger than the octets", long, Expect::Wait));
    // Not a CER first: closed (§5.6.1).
    cases.push((
        "a request before the CER",
        request("a.example.net", "example.net", "example.com", None, "s"),
        Expect::Close,
    ));
    let mut cea = base.clone();
    cea[4] &= !0x80;
    cases.push(("a CEA before the CER", cea, Expect::Close));

    for (name, input, expect) in cases {
        let mut w = server();
        let conn = w.raw_accept(0);
        run(&mut w, conn, &input, expect, name);
        if expect == Expect::Wait {
            // No CER in time: closed.
            w.advance(std::time::Duration::from_secs(11));
            let (_, closed) = w.drain_raw(0, conn);
            assert!(
                closed
                    || w.events[0]
                        .iter()
                        .any(|e| matches!(e, Event::Discarded { .. })),
                "{name}: timeout closes"
            );
        }
    }
}

/// Hostile requests on an open connection: answered, and the connection stays usable.
#[test]
fn hostile_requests_on_an_open_connection() {
    let mut w = server();
    let (conn, cea) = w.raw_open(0, "a.example.net", "example.net");
    assert_eq!(
        MessageView::parse(&cea).unwrap().result_code(),
        Some(ResultCode::SUCCESS)
    );
    let good = request("a.example.net", "example.net", "example.com", None, "s;1");
    let keep = |rc| Expect::Answer(rc, false);
    let mut cases: Vec<(&str, Vec<u8>, Expect)> = vec![
        (
            "AVP length 7",
            with_avp(good.clone(), &[0, 0, 1, 9, 0x40, 0, 0, 7, 0, 0, 0, 0]),
            keep(ResultCode::INVALID_AVP_LENGTH),
        ),
        (
            "unknown mandatory AVP",
            with_avp(
                good.clone(),
                &[0, 0, 0x30, 0x39, 0x40, 0, 0, 12, 1, 2, 3, 4],
            ),
            keep(ResultCode::AVP_UNSUPPORTED),
        ),
        (
            "missing Destination-Realm",
            missing(&good, AvpCode::DESTINATION_REALM),
            keep(ResultCode::MISSING_AVP),
        ),
    ];
    let mut v2 = good.clone();
    v2[0] = 2;
    cases.push(("version 2", v2, keep(ResultCode::UNSUPPORTED_VERSION)));
    let mut app = good.clone();
    app[8..12].copy_from_slice(&5u32.to_be_bytes());
    cases.push((
        "unsupported application",
        app,
        keep(ResultCode::APPLICATION_UNSUPPORTED),
    ));
    let mut cmd = good.clone();
    cmd[5..8].copy_from_slice(&[0, 0x03, 0xe8]);
    cases.push((
        "unsupported command",
        cmd,
        keep(ResultCode::COMMAND_UNSUPPORTED),
    ));
    let mut noproxy = good.clone();
    noproxy[4] &= !0x40;
    cases.push((
        "P bit clear on a proxiable command",
        noproxy,
        keep(ResultCode::INVALID_HDR_BITS),
    ));
    let mut b = MessageBuilder::request(support::CMD, APP, e2m_diameter::CommandFlags::PROXIABLE);
    b.utf8(AvpHeader::mandatory(AvpCode::SESSION_ID), "s;2");
    b.identity(AvpHeader::mandatory(AvpCode::ORIGIN_HOST), "a.example.net");
    b.identity(AvpHeader::mandatory(AvpCode::ORIGIN_REALM), "example.net");
    b.identity(
        AvpHeader::mandatory(AvpCode::DESTINATION_REALM),
        "example.org",
    );
    cases.push((
        "a realm this node does not serve",
        b.finish().unwrap(),
        keep(ResultCode::REALM_NOT_SERVED),
    ));
    // An answer to nothing: thrown away, connection kept.
    let mut stray = good.clone();
    stray[4] &= !0x80;
    for (name, input, expect) in cases {
        run(&mut w, conn, &input, expect, name);
    }
    let (out, closed) = w.raw_exchange(0, conn, &stray);
    assert!(out.is_empty() && !closed);
    // Fragmented delivery, one octet at a time: the same answer.
    let bad = with_avp(
        good.clone(),
        &[0, 0, 0x30, 0x39, 0x40, 0, 0, 12, 1, 2, 3, 4],
    );
    for (i, octet) in bad.iter().enumerate() {
        let (out, closed) = w.raw_exchange(0, conn, std::slice::from_ref(octet));
        assert!(!closed);
        if i + 1 < bad.len() {
            assert!(out.is_empty());
        } else {
            assert_eq!(
                MessageView::parse(&out[0]).unwrap().result_code(),
                Some(ResultCode::AVP_UNSUPPORTED)
            );
        }
    }
    // The connection still serves a good request.
    let (out, _) = w.raw_exchange(0, conn, &good);
    assert!(out.is_empty(), "delivered to the application");
    assert!(
        w.events[0]
            .iter()
            .any(|e| matches!(e, Event::Request { .. }))
    );
    // A message longer than the limit closes the connection.
    let (out, closed) = w.raw_exchange(0, conn, &[1, 0x01, 0x00, 0x04, 0x80, 0, 3, 0xe7]);
    assert!(out.is_empty() && closed);
}

fn missing(msg: &[u8], code: AvpCode) -> Vec<u8> {
    let view = MessageView::parse(msg).unwrap();
    let mut b = MessageBuilder::new(*view.header());
    for avp in view.avps().map(Result::unwrap).filter(|a| a.code() != code) {
        b.copy(&avp);
    }
    b.finish().unwrap()
}
