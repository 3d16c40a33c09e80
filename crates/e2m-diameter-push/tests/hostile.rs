//! Hostile pushes at the application level (SPEC.md, "Validation"): bad AVP values, wrong
//! key lengths, missing, repeated and forbidden AVPs. Each is answered with the spec's
//! Result-Code and a Failed-AVP holding the offending AVP (or, for a missing one, an
//! example of it), as a node running the push dictionary answers it: the dictionary check
//! first (`check_request`), then `decode_request`. Never a panic, never a push.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use e2m_diameter::{
    AvpBuf, AvpCode, AvpHeader, AvpIter, AvpKey, CommandFlags, Header, Limits, MessageBuilder,
    MessageView, ProtocolError, ResultCode, check_request,
};
use e2m_diameter_push::PushProfile;
use proptest::prelude::*;

const P: PushProfile = PushProfile::PROVISIONAL;
const V: u32 = 32473;

/// One AVP of the request under construction: header and data.
#[derive(Clone, Debug)]
struct Item {
    header: AvpHeader,
    data: Vec<u8>,
}

fn m(code: u32) -> AvpHeader {
    AvpHeader::mandatory(AvpCode(code))
}

fn vm(code: u32) -> AvpHeader {
    AvpHeader::mandatory(AvpCode(code)).with_vendor(V)
}

fn v(code: u32) -> AvpHeader {
    AvpHeader::new(AvpCode(code)).with_vendor(V)
}

fn item(header: AvpHeader, data: &[u8]) -> Item {
    Item {
        header,
        data: data.to_vec(),
    }
}

const SCHEME: u32 = 0xE2_0002;
const KEY_ID: u32 = 0xE2_0001;
const INT_KEY: u32 = 0xE2_0003;
const CREATED: u32 = 0xE2_0004;
const FRACTION: u32 = 0xE2_0005;
const EXPIRY: u32 = 0xE2_0006;

/// A valid RAND_LSB32 push, AVP by AVP.
fn valid() -> Vec<Item> {
    vec![
        item(m(263), b"hss.e2m.test;1;1"),
        item(m(277), &1u32.to_be_bytes()),
        item(m(264), b"hss.e2m.test"),
        item(m(296), b"e2m.test"),
        item(m(283), b"e2m.test"),
        item(m(1), b"001010123456789"),
        item(vm(SCHEME), &0u32.to_be_bytes()),
        item(vm(KEY_ID), &0xae47_bf35u32.to_be_bytes()),
        item(vm(INT_KEY), &[0x5a; 32]),
        item(vm(CREATED), &0xeeb3_cc18u32.to_be_bytes()),
        item(v(FRACTION), &17u32.to_be_bytes()),
    ]
}

fn build(items: &[Item]) -> Vec<u8> {
    let mut b = MessageBuilder::new(Header {
        version: 1,
        length: 0,
        flags: CommandFlags::REQUEST | CommandFlags::PROXIABLE,
        command: P.command(),
        application: P.application_id(),
        hop_by_hop: 7,
        end_to_end: 8,
    });
    for i in items {
        b.octets(i.header, &i.data);
    }
    b.finish().unwrap()
}

/// What a node running the push dictionary answers: its check, then the application's.
fn answer(octets: &[u8]) -> Result<(), ProtocolError> {
    let view = MessageView::parse(octets).unwrap();
    let dict = P.dictionary().unwrap();
    check_request(
        &dict,
        dict.command(P.application_id(), P.command()),
        &view,
        &Limits::default(),
    )?;
    P.decode_request(&view).map(|_| ())
}

/// The one AVP in a Failed-AVP: its key and data.
fn failed_avp(error: &ProtocolError) -> (AvpKey, Vec<u8>) {
    let mut avps = AvpIter::new(&error.failed_avps);
    let avp = avps
        .next()
        .expect("a Failed-AVP")
        .expect("a framed Failed-AVP");
    assert!(avps.next().is_none(), "one AVP in the Failed-AVP");
    (avp.key(), avp.data().to_vec())
}

fn refused(items: &[Item]) -> ProtocolError {
    answer(&build(items)).expect_err("refused")
}

#[test]
fn the_valid_push_is_accepted() {
    answer(&build(&valid())).unwrap();
}

#[test]
fn a_missing_required_avp_is_5005_with_an_example_of_it() {
    // (code, vendor, example data length): zero-filled minimum values (RFC 6733 §7.5).
    let required = [
        (263, 0, 0),
        (277, 0, 4),
        (264, 0, 0),
        (296, 0, 0),
        (283, 0, 0),
        (1, 0, 0),
        (SCHEME, V, 4),
        (INT_KEY, V, 0),
        (CREATED, V, 4),
    ];
    for (code, vendor, len) in required {
        let mut items = valid();
        items.retain(|i| !(i.header.code.0 == code && i.header.vendor_id.unwrap_or(0) == vendor));
        let e = refused(&items);
        assert_eq!(e.result_code, ResultCode::MISSING_AVP, "AVP {code}");
        let (key, data) = failed_avp(&e);
        assert_eq!(key, AvpKey::vendor(AvpCode(code), vendor), "AVP {code}");
        assert_eq!(data, vec![0; len], "AVP {code}");
    }
    // E2M-Key-Id is required with RAND_LSB32 only.
    let mut items = valid();
    items.retain(|i| i.header.code.0 != KEY_ID);
    let e = refused(&items);
    assert_eq!(e.result_code, ResultCode::MISSING_AVP);
    assert_eq!(
        failed_avp(&e),
        (AvpKey::vendor(AvpCode(KEY_ID), V), vec![0; 4])
    );
}

#[test]
fn a_repeated_avp_is_5009_with_the_second_occurrence() {
    for code in [1, SCHEME, KEY_ID, INT_KEY, CREATED, FRACTION, 283] {
        let mut items = valid();
        let i = items.iter().position(|i| i.header.code.0 == code).unwrap();
        let mut second = items[i].clone();
        if code == 1 {
            second.data = b"001010000000002".to_vec();
        }
        items.push(second.clone());
        let e = refused(&items);
        assert_eq!(
            e.result_code,
            ResultCode::AVP_OCCURS_TOO_MANY_TIMES,
            "AVP {code}"
        );
        assert_eq!(failed_avp(&e).1, second.data, "AVP {code}: the second one");
    }
}

#[test]
fn avps_not_allowed_are_5008() {
    // E2M-Key-Id with SHORT_HASH.
    let mut items = valid();
    items[6].data = 1u32.to_be_bytes().to_vec();
    let e = refused(&items);
    assert_eq!(e.result_code, ResultCode::AVP_NOT_ALLOWED);
    assert_eq!(failed_avp(&e).0, AvpKey::vendor(AvpCode(KEY_ID), V));
    // E2M-Key-Expiry-Time (an answer's AVP) in a request.
    let mut items = valid();
    items.push(item(v(EXPIRY), &0xeeb5_1d98u32.to_be_bytes()));
    let e = refused(&items);
    assert_eq!(e.result_code, ResultCode::AVP_NOT_ALLOWED);
    assert_eq!(failed_avp(&e).0, AvpKey::vendor(AvpCode(EXPIRY), V));
}

#[test]
fn an_unknown_avp_with_the_m_bit_is_5001_without_it_ignored() {
    for vendor in [None, Some(V), Some(10415)] {
        let mut header = m(0xE2_00FF);
        if let Some(vendor) = vendor {
            header = header.with_vendor(vendor);
        }
        let mut items = valid();
        items.push(item(header, b"surprise"));
        let e = refused(&items);
        assert_eq!(e.result_code, ResultCode::AVP_UNSUPPORTED, "{vendor:?}");
        assert_eq!(failed_avp(&e).1, b"surprise".to_vec());
        let mut items = valid();
        items.push(item(AvpHeader::new(AvpCode(0xE2_00FF)), b"ignored"));
        answer(&build(&items)).unwrap();
    }
}

#[test]
fn invalid_values_are_5004_with_the_avp() {
    let cases: Vec<(&str, u32, Vec<u8>)> = vec![
        ("User-Name not an IMSI", 1, b"00101012345678a".to_vec()),
        ("User-Name too short", 1, b"00101".to_vec()),
        ("User-Name too long", 1, b"0010101234567890".to_vec()),
        ("User-Name not UTF-8", 1, vec![0xff, 0xfe, 0x30]),
        ("key of 31 octets", INT_KEY, vec![1; 31]),
        ("key of 33 octets", INT_KEY, vec![1; 33]),
        ("empty key", INT_KEY, vec![]),
        ("key of 64 octets", INT_KEY, vec![1; 64]),
        ("scheme 2", SCHEME, 2u32.to_be_bytes().to_vec()),
        ("scheme -1", SCHEME, u32::MAX.to_be_bytes().to_vec()),
        ("fraction 1000", FRACTION, 1000u32.to_be_bytes().to_vec()),
        ("Auth-Session-State 0", 277, 0u32.to_be_bytes().to_vec()),
        // NTP 0x80000000 = 1968-01-20: before 1970, not an e2m timestamp.
        (
            "created before 1970",
            CREATED,
            0x8000_0000u32.to_be_bytes().to_vec(),
        ),
        ("Origin-Host not an identity", 264, b"hss e2m".to_vec()),
    ];
    for (what, code, data) in cases {
        let mut items = valid();
        let i = items.iter().position(|i| i.header.code.0 == code).unwrap();
        items[i].data.clone_from(&data);
        let e = refused(&items);
        assert_eq!(e.result_code, ResultCode::INVALID_AVP_VALUE, "{what}");
        let (key, got) = failed_avp(&e);
        assert_eq!(key.code, AvpCode(code), "{what}");
        assert_eq!(got, data, "{what}: the AVP as received");
    }
}

#[test]
fn fixed_size_avps_of_another_length_are_5014() {
    for code in [SCHEME, KEY_ID, CREATED, FRACTION, 277] {
        for len in [0, 3, 5, 8] {
            let mut items = valid();
            let i = items.iter().position(|i| i.header.code.0 == code).unwrap();
            items[i].data = vec![0; len];
            let e = refused(&items);
            assert_eq!(
                e.result_code,
                ResultCode::INVALID_AVP_LENGTH,
                "{code} {len}"
            );
            let (key, data) = failed_avp(&e);
            assert_eq!(key.code, AvpCode(code));
            assert_eq!(
                data,
                vec![0; 4],
                "a zero-filled example of the right length"
            );
        }
    }
}

#[test]
fn flag_and_vendor_application_rules() {
    // M set on E2M-Creation-Time-Fraction, whose M must be clear: 3009.
    let mut items = valid();
    items[10].header = vm(FRACTION);
    assert_eq!(refused(&items).result_code, ResultCode::INVALID_AVP_BITS);
    // M clear on E2M-Int-Key, whose M must be set: 3009.
    let mut items = valid();
    items[8].header = v(INT_KEY);
    assert_eq!(refused(&items).result_code, ResultCode::INVALID_AVP_BITS);
    // A matching Vendor-Specific-Application-Id is ignored; another one is 5004.
    for (app, ok) in [(P.application_id().0, true), (16_777_220, false)] {
        let mut g = AvpBuf::new();
        g.u32(AvpHeader::mandatory(AvpCode::VENDOR_ID), V);
        g.u32(AvpHeader::mandatory(AvpCode::AUTH_APPLICATION_ID), app);
        let mut items = valid();
        items.push(item(m(260), g.as_bytes()));
        match answer(&build(&items)) {
            Ok(()) => assert!(ok),
            Err(e) => {
                assert!(!ok);
                assert_eq!(e.result_code, ResultCode::INVALID_AVP_VALUE);
            }
        }
    }
    // The decoder alone refuses another command or application.
    let octets = build(&valid());
    let mut other = octets.clone();
    other[8..12].copy_from_slice(&16_777_220u32.to_be_bytes());
    let view = MessageView::parse(&other).unwrap();
    assert_eq!(
        P.decode_request(&view).unwrap_err().result_code,
        ResultCode::APPLICATION_UNSUPPORTED
    );
    let mut answer_bit = octets;
    answer_bit[4] &= !0x80;
    let view = MessageView::parse(&answer_bit).unwrap();
    assert_eq!(
        P.decode_request(&view).unwrap_err().result_code,
        ResultCode::COMMAND_UNSUPPORTED
    );
}

proptest! {
    /// Any AVP list at all (valid AVPs of the push shuffled, dropped, repeated, with random
    /// data) is decoded or refused with a Result-Code, never a panic; a refusal's
    /// Failed-AVP is always a framed AVP.
    #[test]
    fn any_list_of_push_avps_is_answered(
        picks in proptest::collection::vec((0usize..11, any::<bool>(), proptest::collection::vec(any::<u8>(), 0..40)), 0..16)
    ) {
        let base = valid();
        let items: Vec<Item> = picks
            .into_iter()
            .map(|(i, random, data)| {
                let mut it = base[i].clone();
                if random {
                    it.data = data;
                }
                it
            })
            .collect();
        let octets = build(&items);
        let view = MessageView::parse(&octets).unwrap();
        match P.decode_request(&view) {
            Ok(r) => prop_assert!(r.push.imsi.as_str().len() >= 6),
            Err(e) => {
                prop_assert!(e.result_code.0 >= 3000);
                for avp in AvpIter::new(&e.failed_avps) {
                    prop_assert!(avp.is_ok());
                }
            }
        }
        let _ = answer(&octets);
    }
}

#[test]
fn a_refusal_does_not_show_the_avp_it_copies_in_debug() {
    let mut items = valid();
    items[8].data = vec![0x5a; 31];
    let e = refused(&items);
    let answer = e2m_diameter_push::PushAnswer::Refused(e);
    let text = format!("{answer:?}");
    assert!(
        text.contains("5004") || text.contains("INVALID_AVP_VALUE"),
        "{text}"
    );
    assert!(!text.contains("90, 90") && !text.contains("5a5a"), "{text}");
}
