//! Codec round trips (decode(encode(x)) == x) as property tests, and typed values.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::net::IpAddr;

use e2m_diameter::{
    AaaProtocol, Address, ApplicationId, AvpCode, AvpFlags, AvpHeader, AvpIter, AvpKey,
    CommandCode, CommandFlags, DiameterUri, Header, Message, MessageBuilder, MessageView, OwnedAvp,
    OwnedValue, Time, Transport, VERSION,
};
use proptest::prelude::*;

/// AVP codes 1000..1004 are read as Grouped in these tests.
fn is_grouped(key: AvpKey) -> bool {
    (1000..1004).contains(&key.code.0)
}

fn avp_header(grouped: bool) -> impl Strategy<Value = AvpHeader> {
    let code = if grouped {
        (1000u32..1004).boxed()
    } else {
        prop_oneof![0u32..1000, 1004u32..=u32::MAX].boxed()
    };
    (code, any::<u8>(), proptest::option::of(any::<u32>())).prop_map(|(code, flags, vendor)| {
        AvpHeader {
            code: AvpCode(code),
            flags: AvpFlags::from_bits(flags).without(AvpFlags::VENDOR),
            vendor_id: vendor,
        }
    })
}

fn avp() -> impl Strategy<Value = OwnedAvp> {
    let leaf = (
        avp_header(false),
        proptest::collection::vec(any::<u8>(), 0..40),
    )
        .prop_map(|(header, data)| OwnedAvp {
            header,
            value: OwnedValue::Octets(data),
        });
    leaf.prop_recursive(4, 64, 6, |inner| {
        (avp_header(true), proptest::collection::vec(inner, 0..6)).prop_map(|(header, children)| {
            OwnedAvp {
                header,
                value: OwnedValue::Grouped(children),
            }
        })
    })
}

fn message() -> impl Strategy<Value = Message> {
    (
        any::<u8>(),
        0u32..0x0100_0000,
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        proptest::collection::vec(avp(), 0..8),
    )
        .prop_map(
            |(flags, command, application, hop_by_hop, end_to_end, avps)| Message {
                header: Header {
                    version: VERSION,
                    length: 0,
                    flags: CommandFlags::from_bits(flags),
                    command: CommandCode(command),
                    application: ApplicationId(application),
                    hop_by_hop,
                    end_to_end,
                },
                avps,
            },
        )
}

proptest! {
    #[test]
    fn message_round_trip(msg in message()) {
        let octets = msg.encode().unwrap();
        prop_assert_eq!(octets.len() % 4, 0);
        let mut decoded = Message::decode(&octets, &is_grouped, 16).unwrap();
        prop_assert_eq!(decoded.header.length as usize, octets.len());
        decoded.header.length = 0;
        prop_assert_eq!(&decoded, &msg);
        // And the octets are canonical: encoding the decoded tree gives them back.
        prop_assert_eq!(decoded.encode().unwrap(), octets);
    }

    #[test]
    fn every_prefix_and_corruption_is_an_error_or_a_message(msg in message(), cut in any::<prop::sample::Index>(), flip in any::<(prop::sample::Index, u8)>()) {
        let octets = msg.encode().unwrap();
        let n = cut.index(octets.len() + 1);
        let _ = Message::decode(&octets[..n], &is_grouped, 16);
        let mut bad = octets.clone();
        let i = flip.0.index(bad.len());
        bad[i] ^= flip.1 | 1;
        if let Ok(m) = Message::decode(&bad, &is_grouped, 16) {
            // Whatever decodes re-encodes to something that decodes to the same tree.
            let again = Message::decode(&m.encode().unwrap(), &is_grouped, 16).unwrap();
            prop_assert_eq!(again.avps, m.avps);
        }
    }

    #[test]
    fn typed_values_round_trip(u in any::<u32>(), w in any::<u64>(), i in any::<i32>(), l in any::<i64>(), f in any::<f32>(), d in any::<f64>(), s in ".{0,20}", unix in Time::MIN_UNIX..=Time::MAX_UNIX, ip in any::<IpAddr>()) {
        let h = |c: u32| AvpHeader::mandatory(AvpCode(c));
        let mut b = MessageBuilder::request(CommandCode(1), ApplicationId(2), CommandFlags::NONE);
        b.u32(h(1), u).u64(h(2), w).i32(h(3), i).i64(h(4), l).f32(h(5), f).f64(h(6), d).utf8(h(7), &s)
            .time(h(8), Time::from_unix(unix).unwrap()).ip_address(h(9), ip);
        let octets = b.finish().unwrap();
        let m = MessageView::parse(&octets).unwrap();
        let get = |c: u32| m.find(AvpCode(c)).unwrap();
        prop_assert_eq!(get(1).u32().unwrap(), u);
        prop_assert_eq!(get(2).u64().unwrap(), w);
        prop_assert_eq!(get(3).i32().unwrap(), i);
        prop_assert_eq!(get(4).i64().unwrap(), l);
        prop_assert_eq!(get(5).f32().unwrap().to_bits(), f.to_bits());
        prop_assert_eq!(get(6).f64().unwrap().to_bits(), d.to_bits());
        prop_assert_eq!(get(7).utf8().unwrap(), s.as_str());
        prop_assert_eq!(get(8).time().unwrap().unix(), unix);
        prop_assert_eq!(get(9).address().unwrap().ip(), Some(ip));
    }

    #[test]
    fn uri_round_trip(host in "[a-z][a-z0-9-]{0,10}(\\.[a-z][a-z0-9]{0,8}){0,3}", secure in any::<bool>(), port in proptest::option::of(any::<u16>()), t in proptest::option::of(0..3u8), p in proptest::option::of(0..3u8)) {
        let uri = DiameterUri {
            secure,
            fqdn: &host,
            port,
            transport: t.map(|t| [Transport::Tcp, Transport::Sctp, Transport::Udp][t as usize]),
            protocol: p.map(|p| [AaaProtocol::Diameter, AaaProtocol::Radius, AaaProtocol::TacacsPlus][p as usize]),
        };
        let text = uri.to_string();
        match DiameterUri::parse(&text) {
            Ok(parsed) => prop_assert_eq!(parsed, uri),
            // The one combination the grammar forbids.
            Err(_) => prop_assert!(uri.transport() == Transport::Udp && uri.protocol() == AaaProtocol::Diameter),
        }
    }
}

#[test]
fn grouped_avps_iterate_lazily_with_message_offsets() {
    let mut b = MessageBuilder::request(
        CommandCode::CAPABILITIES_EXCHANGE,
        ApplicationId::COMMON,
        CommandFlags::NONE,
    );
    b.grouped(
        AvpHeader::mandatory(AvpCode::VENDOR_SPECIFIC_APPLICATION_ID),
        |g| {
            g.u32(AvpHeader::mandatory(AvpCode::VENDOR_ID), 10415);
            g.u32(
                AvpHeader::mandatory(AvpCode::AUTH_APPLICATION_ID),
                16_777_220,
            );
        },
    );
    let octets = b.finish().unwrap();
    let m = MessageView::parse(&octets).unwrap();
    let vsai = m.find(AvpCode::VENDOR_SPECIFIC_APPLICATION_ID).unwrap();
    assert_eq!(vsai.offset(), 20);
    let children: Vec<_> = vsai.grouped().map(Result::unwrap).collect();
    assert_eq!(children[0].offset(), 28);
    assert_eq!(children[1].offset(), 40);
    assert_eq!(children[1].u32().unwrap(), 16_777_220);
    // The child's raw octets sit in the message at its offset.
    assert_eq!(&octets[40..52], children[1].raw());
}

#[test]
fn address_of_other_family_round_trips() {
    let mut b = MessageBuilder::request(CommandCode(1), ApplicationId(0), CommandFlags::NONE);
    b.address(
        AvpHeader::new(AvpCode::HOST_IP_ADDRESS),
        Address {
            family: 8,
            octets: b"4912345",
        },
    );
    let octets = b.finish().unwrap();
    let a = MessageView::parse(&octets)
        .unwrap()
        .find(AvpCode::HOST_IP_ADDRESS)
        .unwrap();
    assert_eq!(
        a.address().unwrap(),
        Address {
            family: 8,
            octets: b"4912345"
        }
    );
}

#[test]
fn header_checks() {
    let ok = MessageBuilder::request(CommandCode(1), ApplicationId(0), CommandFlags::NONE)
        .finish()
        .unwrap();
    assert!(MessageView::parse(&ok).is_ok());
    let mut v2 = ok.clone();
    v2[0] = 2;
    assert_eq!(
        MessageView::parse(&v2),
        Err(e2m_diameter::DecodeError::UnsupportedVersion(2))
    );
    let mut long = ok.clone();
    long[3] = 24;
    assert!(matches!(
        MessageView::parse(&long),
        Err(e2m_diameter::DecodeError::LengthMismatch { .. })
    ));
    let mut odd = ok.clone();
    odd.push(0);
    odd[3] = 21;
    assert_eq!(
        MessageView::parse(&odd),
        Err(e2m_diameter::DecodeError::LengthNotAligned(21))
    );
    assert_eq!(
        MessageView::parse(&ok[..19]),
        Err(e2m_diameter::DecodeError::Truncated)
    );
    // An AVP iterator over nothing yields nothing.
    assert_eq!(AvpIter::new(&[]).count(), 0);
}
