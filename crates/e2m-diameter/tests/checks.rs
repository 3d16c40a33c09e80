//! Message checks against the base dictionary: each malformed or non-conforming request gets
//! the Result-Code RFC 6733 §7.1 names and the Failed-AVP §7.1.5 asks for.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::net::{IpAddr, Ipv4Addr};

use e2m_diameter::{
    ApplicationId, AvpBuf, AvpCode, AvpHeader, AvpIter, CommandCode, CommandFlags, Dictionary,
    Limits, MessageBuilder, MessageView, ProtocolError, ResultCode, check_request, error_answer,
};

fn m(code: AvpCode) -> AvpHeader {
    AvpHeader::mandatory(code)
}

/// A valid CER; `extra` adds AVPs, `skip` leaves one out.
fn cer(skip: Option<AvpCode>, extra: impl FnOnce(&mut AvpBuf)) -> Vec<u8> {
    let mut b = MessageBuilder::request(
        CommandCode::CAPABILITIES_EXCHANGE,
        ApplicationId::COMMON,
        CommandFlags::NONE,
    );
    b.set_ids(7, 9);
    let keep = |c: AvpCode| skip != Some(c);
    if keep(AvpCode::ORIGIN_HOST) {
        b.identity(m(AvpCode::ORIGIN_HOST), "hss.example.org");
    }
    if keep(AvpCode::ORIGIN_REALM) {
        b.identity(m(AvpCode::ORIGIN_REALM), "example.org");
    }
    if keep(AvpCode::HOST_IP_ADDRESS) {
        b.ip_address(m(AvpCode::HOST_IP_ADDRESS), IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    if keep(AvpCode::VENDOR_ID) {
        b.u32(m(AvpCode::VENDOR_ID), 0);
    }
    if keep(AvpCode::PRODUCT_NAME) {
        b.utf8(AvpHeader::new(AvpCode::PRODUCT_NAME), "test");
    }
    b.u32(m(AvpCode::AUTH_APPLICATION_ID), 16_777_220);
    extra(&mut b);
    b.finish().unwrap()
}

fn check(octets: &[u8]) -> Result<(), ProtocolError> {
    let d = Dictionary::base();
    let msg = MessageView::parse(octets).unwrap();
    let def = d.command(msg.application(), msg.command());
    check_request(&d, def, &msg, &Limits::default())
}

fn failed(e: &ProtocolError) -> Vec<(AvpCode, Vec<u8>)> {
    AvpIter::new(&e.failed_avps)
        .map(|a| a.unwrap())
        .map(|a| (a.code(), a.data().to_vec()))
        .collect()
}

#[test]
fn valid_cer_passes() {
    check(&cer(None, |_| {})).unwrap();
}

#[test]
fn missing_avp_5005_with_zero_filled_example() {
    let e = check(&cer(Some(AvpCode::VENDOR_ID), |_| {})).unwrap_err();
    assert_eq!(e.result_code, ResultCode::MISSING_AVP);
    assert!(!e.error_bit());
    // §7.1.5: an example of the missing AVP, value of the correct minimum length, zeroes.
    assert_eq!(failed(&e), vec![(AvpCode::VENDOR_ID, vec![0, 0, 0, 0])]);
    let e = check(&cer(Some(AvpCode::HOST_IP_ADDRESS), |_| {})).unwrap_err();
    assert_eq!(failed(&e), vec![(AvpCode::HOST_IP_ADDRESS, vec![0, 0])]);
}

#[test]
fn unknown_mandatory_avp_5001_unknown_optional_kept() {
    let e = check(&cer(None, |b| {
        b.octets(m(AvpCode(9999)), b"opaque");
    }))
    .unwrap_err();
    assert_eq!(e.result_code, ResultCode::AVP_UNSUPPORTED);
    assert_eq!(failed(&e), vec![(AvpCode(9999), b"opaque".to_vec())]);
    check(&cer(None, |b| {
        b.octets(AvpHeader::new(AvpCode(9999)), b"opaque");
    }))
    .unwrap();
}

#[test]
fn flag_rule_3009() {
    let e = check(&cer(None, |b| {
        b.u32(m(AvpCode::FIRMWARE_REVISION), 1);
    }))
    .unwrap_err();
    assert_eq!(e.result_code, ResultCode::INVALID_AVP_BITS);
    assert!(e.error_bit());
}

#[test]
fn value_length_5014_and_value_5004() {
    let e = check(&cer(None, |b| {
        b.octets(m(AvpCode::ORIGIN_STATE_ID), &[1, 2, 3, 4, 5]);
    }))
    .unwrap_err();
    assert_eq!(e.result_code, ResultCode::INVALID_AVP_LENGTH);
    assert_eq!(failed(&e), vec![(AvpCode::ORIGIN_STATE_ID, vec![0; 4])]);
    let e = check(&cer(None, |b| {
        b.octets(m(AvpCode::HOST_IP_ADDRESS), &[0, 1, 10, 0, 0]);
    }))
    .unwrap_err();
    assert_eq!(e.result_code, ResultCode::INVALID_AVP_VALUE);
    let e = check(&cer(None, |b| {
        b.utf8(AvpHeader::new(AvpCode::ERROR_MESSAGE), "x");
        b.octets(AvpHeader::new(AvpCode::FIRMWARE_REVISION), &[0; 4]);
        b.octets(m(AvpCode::SESSION_ID), b"\xff\xfe");
    }))
    .unwrap_err();
    assert_eq!(
        e.result_code,
        ResultCode::INVALID_AVP_VALUE,
        "Session-Id is UTF8String"
    );
}

#[test]
fn occurrences_5009() {
    let e = check(&cer(None, |b| {
        b.utf8(AvpHeader::new(AvpCode::PRODUCT_NAME), "second");
    }))
    .unwrap_err();
    assert_eq!(e.result_code, ResultCode::AVP_OCCURS_TOO_MANY_TIMES);
    // §7.1.5: a copy of the first instance that exceeded the maximum.
    assert_eq!(
        failed(&e),
        vec![(AvpCode::PRODUCT_NAME, b"second".to_vec())]
    );
}

#[test]
fn vendor_specific_application_id_rules() {
    // §6.11: neither Auth- nor Acct-Application-Id: DIAMETER_MISSING_AVP with an example of both.
    let e = check(&cer(None, |b| {
        b.grouped(m(AvpCode::VENDOR_SPECIFIC_APPLICATION_ID), |g| {
            g.u32(m(AvpCode::VENDOR_ID), 10415);
        });
    }))
    .unwrap_err();
    assert_eq!(e.result_code, ResultCode::MISSING_AVP);
    let codes: Vec<_> = failed(&e).into_iter().map(|(c, _)| c).collect();
    assert_eq!(
        codes,
        vec![AvpCode::AUTH_APPLICATION_ID, AvpCode::ACCT_APPLICATION_ID]
    );
    // Both: DIAMETER_AVP_OCCURS_TOO_MANY_TIMES with both received AVPs.
    let e = check(&cer(None, |b| {
        b.grouped(m(AvpCode::VENDOR_SPECIFIC_APPLICATION_ID), |g| {
            g.u32(m(AvpCode::VENDOR_ID), 10415);
            g.u32(m(AvpCode::AUTH_APPLICATION_ID), 1);
            g.u32(m(AvpCode::ACCT_APPLICATION_ID), 2);
        });
    }))
    .unwrap_err();
    assert_eq!(e.result_code, ResultCode::AVP_OCCURS_TOO_MANY_TIMES);
    assert_eq!(
        failed(&e),
        vec![
            (AvpCode::AUTH_APPLICATION_ID, vec![0, 0, 0, 1]),
            (AvpCode::ACCT_APPLICATION_ID, vec![0, 0, 0, 2])
        ]
    );
}

#[test]
fn header_bits_3008() {
    let mut octets = cer(None, |_| {});
    octets[4] |= CommandFlags::PROXIABLE.bits();
    assert_eq!(
        check(&octets).unwrap_err().result_code,
        ResultCode::INVALID_HDR_BITS
    );
    let mut octets = cer(None, |_| {});
    octets[4] |= CommandFlags::ERROR.bits();
    assert_eq!(
        check(&octets).unwrap_err().result_code,
        ResultCode::INVALID_HDR_BITS
    );
    // Reserved bits are ignored by the receiver (§3).
    let mut octets = cer(None, |_| {});
    octets[4] |= CommandFlags::RESERVED.bits();
    check(&octets).unwrap();
}

#[test]
fn failed_avp_content_is_not_checked() {
    // A Failed-AVP carries someone else's offending AVPs, unknown M bits included.
    let mut b = MessageBuilder::request(
        CommandCode::DEVICE_WATCHDOG,
        ApplicationId::COMMON,
        CommandFlags::NONE,
    );
    b.identity(m(AvpCode::ORIGIN_HOST), "a.example")
        .identity(m(AvpCode::ORIGIN_REALM), "example");
    b.grouped(m(AvpCode::FAILED_AVP), |g| {
        g.octets(m(AvpCode(4242)), b"x");
    });
    check(&b.finish().unwrap()).unwrap();
}

#[test]
fn limits_depth_and_count() {
    // Proxy-Info inside Proxy-Info ... 40 deep: past the depth limit of 16.
    fn nest(b: &mut AvpBuf, n: usize) {
        b.grouped(m(AvpCode::PROXY_INFO), |g| {
            g.identity(m(AvpCode::PROXY_HOST), "p.example");
            g.octets(m(AvpCode::PROXY_STATE), b"s");
            if n > 0 {
                nest(g, n - 1);
            }
        });
    }
    let e = check(&cer(None, |b| nest(b, 40))).unwrap_err();
    assert_eq!(e.result_code, ResultCode::UNABLE_TO_COMPLY);
    check(&cer(None, |b| nest(b, 10))).unwrap();
    // 2,000 Supported-Vendor-Id AVPs: past the 1,024 AVPs per message.
    let e = check(&cer(None, |b| {
        for v in 1..=2000 {
            b.u32(m(AvpCode::SUPPORTED_VENDOR_ID), v);
        }
    }))
    .unwrap_err();
    assert_eq!(e.result_code, ResultCode::UNABLE_TO_COMPLY);
    // 500 application ids pass.
    check(&cer(None, |b| {
        for v in 1..=500 {
            b.u32(m(AvpCode::AUTH_APPLICATION_ID), v);
        }
    }))
    .unwrap();
}

#[test]
fn grouped_child_overrunning_its_parent_5014() {
    let mut octets = cer(None, |b| {
        b.grouped(m(AvpCode::VENDOR_SPECIFIC_APPLICATION_ID), |g| {
            g.u32(m(AvpCode::VENDOR_ID), 10415);
            g.u32(m(AvpCode::AUTH_APPLICATION_ID), 1);
        });
    });
    // The last child (Auth-Application-Id, 12 octets at the end) claims 16 octets.
    let n = octets.len();
    octets[n - 12 + 7] = 16;
    let e = check(&octets).unwrap_err();
    assert_eq!(e.result_code, ResultCode::INVALID_AVP_LENGTH);
    // §7.1.5: the header with a zero-filled payload of the minimum length for its type.
    assert_eq!(failed(&e), vec![(AvpCode::AUTH_APPLICATION_ID, vec![0; 4])]);
}

#[test]
fn error_answers_carry_e_bit_failed_avp_and_session_id() {
    let octets = cer(None, |b| {
        b.octets(m(AvpCode(9999)), b"opaque");
    });
    let req = MessageView::parse(&octets).unwrap();
    let e = check(&octets).unwrap_err();
    let ans = error_answer(
        req.header(),
        Some(&req),
        "emks.example.org",
        "example.org",
        &e,
    )
    .unwrap();
    let a = MessageView::parse(&ans).unwrap();
    assert!(!a.is_request());
    assert!(!a.flags().is_error(), "5xxx: E bit clear");
    assert_eq!(a.header().hop_by_hop, 7);
    assert_eq!(a.header().end_to_end, 9);
    assert_eq!(a.result_code(), Some(ResultCode::AVP_UNSUPPORTED));
    let f = a.find(AvpCode::FAILED_AVP).unwrap();
    let inner: Vec<_> = f.grouped().map(|x| x.unwrap().code()).collect();
    assert_eq!(inner, vec![AvpCode(9999)]);
    let e = ProtocolError::new(ResultCode::UNABLE_TO_DELIVER, "no route");
    let ans = error_answer(
        req.header(),
        Some(&req),
        "emks.example.org",
        "example.org",
        &e,
    )
    .unwrap();
    assert!(
        MessageView::parse(&ans).unwrap().flags().is_error(),
        "3xxx: E bit set"
    );
}
