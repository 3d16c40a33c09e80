//! Every example body reads and writes back to the same octets; hostile and ill-typed JSON
//! is refused with the TS 29.500 cause the crate documents; keys never show in errors or
//! `Debug`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use e2m_akma::e2m_keyid::akma::{AKid, AfId, Gpsi, Supi};
use e2m_akma::e2m_keyid::e2m_kdf::{Kaf, Kakma};
use e2m_akma::{
    AkmaAfKeyData, AkmaAfKeyRequest, AkmaKeyInfo, CtxRemove, DecodeError, JsonBody, MAX_BODY,
    NefAkmaAfKeyData, NotifUri, Operation, ProblemDetails, ServiceDisableNotif, UeId, cause,
};
use proptest::prelude::*;

fn example(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/examples/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn round_trip<T: JsonBody>(name: &str) -> T {
    let body = example(name);
    let value = T::from_json(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(
        String::from_utf8(value.to_json().to_vec()).unwrap(),
        String::from_utf8(body).unwrap(),
        "{name}"
    );
    value
}

#[test]
fn every_example_round_trips() {
    let info: AkmaKeyInfo = round_trip("register-anchorkey.request.json");
    assert!(matches!(info.ue, UeId::Supi(_)));
    let info: AkmaKeyInfo = round_trip("register-anchorkey-gpsi.request.json");
    assert!(matches!(info.ue, UeId::Gpsi(_)));
    let req: AkmaAfKeyRequest = round_trip("retrieve-applicationkey.request.json");
    assert!(!req.anon_ind && req.notif_uri.is_some());
    let req: AkmaAfKeyRequest = round_trip("retrieve-applicationkey-anonymous.request.json");
    assert!(req.anon_ind);
    let data: AkmaAfKeyData = round_trip("retrieve-applicationkey.response.json");
    assert!(data.supi.is_some());
    let _: AkmaAfKeyData = round_trip("retrieve-applicationkey-gpsi.response.json");
    let _: CtxRemove = round_trip("remove-context.request.json");
    let _: ServiceDisableNotif = round_trip("service-disable.notification.json");
    let _: NefAkmaAfKeyData = round_trip("nef-retrieve.response.json");
}

/// The keys of the examples are the reference values of akma set 1 (e2m-keyid's
/// tests/data/akma.txt): reading them gives those keys.
#[test]
fn keys_read_as_the_reference_values() {
    let info = AkmaKeyInfo::from_json(&example("register-anchorkey.request.json")).unwrap();
    let want = "0e53d2e2e2e22c5cbd216782c4828c1725717b2cd56b8e2bd777f43c860e6a2b";
    assert!(info.k_akma == Kakma::from_hex(want).unwrap());
    let data = AkmaAfKeyData::from_json(&example("retrieve-applicationkey.response.json")).unwrap();
    let want = "da565072dcd984d4595185ccf43d2583c1ee1e494f6ef3a7018f53369c01e427";
    assert!(data.kaf == Kaf::from_hex(want).unwrap());
}

fn refused<T: JsonBody + std::fmt::Debug>(body: &str) -> DecodeError {
    T::from_json(body.as_bytes()).expect_err(body)
}

const AKID: &str = "a@b.org";
const AFID: &str = "af.example.com;ua=010001c0a8";
const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

#[test]
fn malformed_bodies_are_invalid_msg_format() {
    let bad = [
        "",
        "null",
        "[]",
        "\"x\"",
        "{",
        r#"{"afId":"af.example.com;ua=010001c0a8","aKId":"a@b.org"} trailing"#,
        // Unknown attribute (its name is never echoed).
        r#"{"afId":"af.example.com;ua=010001c0a8","aKId":"a@b.org","secretName":1}"#,
        // Duplicate attribute: which one wins would be the parser's choice, so neither does.
        r#"{"afId":"af.example.com;ua=010001c0a8","aKId":"a@b.org","aKId":"c@d.org"}"#,
        // Wrong case of a name is another (unknown) name.
        r#"{"afid":"af.example.com;ua=010001c0a8","aKId":"a@b.org"}"#,
    ];
    for body in bad {
        let err = refused::<AkmaAfKeyRequest>(body);
        assert!(
            matches!(err, DecodeError::Malformed { .. }),
            "{body}: {err:?}"
        );
        let problem = err.problem();
        assert_eq!(problem.status, Some(400));
        assert_eq!(problem.cause.as_deref(), Some(cause::INVALID_MSG_FORMAT));
        let json = String::from_utf8(problem.to_json()).unwrap();
        assert!(!json.contains("secretName"), "{json}");
    }
}

#[test]
fn deep_nesting_and_huge_numbers_are_refused() {
    // Nesting inside an attribute: serde_json's recursion limit, or the attribute's type.
    let deep = format!(
        r#"{{"afId":{}1{},"aKId":"a@b.org"}}"#,
        "[".repeat(5000),
        "]".repeat(5000)
    );
    assert!(matches!(
        refused::<AkmaAfKeyRequest>(&deep),
        DecodeError::Malformed { .. } | DecodeError::TooLarge { .. }
    ));
    // A known attribute holds its value as raw text, skipped without recursion: refused for
    // its type. An unknown one is refused by name before its value is read.
    let deep = format!(
        r#"{{"afId":{}1{},"aKId":"a@b.org"}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    assert_eq!(
        refused::<AkmaAfKeyRequest>(&deep),
        DecodeError::Incorrect {
            ie: "/afId",
            mandatory: true,
            reason: "not a string"
        }
    );
    let deep = format!(
        r#"{{"x":{}1{},"aKId":"a@b.org"}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    assert!(matches!(
        refused::<AkmaAfKeyRequest>(&deep),
        DecodeError::Malformed { .. }
    ));
    let deep = format!(
        r#"{{"aKId":"a@b.org","x":{}1{}}}"#,
        "{\"a\":".repeat(500),
        "}".repeat(500)
    );
    assert!(matches!(
        refused::<AkmaAfKeyRequest>(&deep),
        DecodeError::Malformed { .. }
    ));
    let huge = format!(r#"{{"afId":{},"aKId":"a@b.org"}}"#, "9".repeat(4000));
    assert_eq!(
        refused::<AkmaAfKeyRequest>(&huge),
        DecodeError::Incorrect {
            ie: "/afId",
            mandatory: true,
            reason: "not a string"
        }
    );
    let body = format!(
        r#"{{"supi":"imsi-208930000000001","pad":"{}"}}"#,
        "x".repeat(MAX_BODY)
    );
    assert_eq!(
        refused::<CtxRemove>(&body),
        DecodeError::TooLarge {
            len: body.len(),
            max: MAX_BODY
        }
    );
    assert_eq!(refused::<CtxRemove>(&body).problem().status, Some(413));
}

#[test]
fn missing_and_incorrect_attributes_name_the_attribute() {
    let cases: Vec<(DecodeError, &str, &str)> = vec![
        (
            refused::<AkmaAfKeyRequest>(r#"{"aKId":"a@b.org"}"#),
            "/afId",
            cause::MANDATORY_IE_MISSING,
        ),
        (
            refused::<AkmaAfKeyRequest>(r#"{"afId":null,"aKId":"a@b.org"}"#),
            "/afId",
            cause::MANDATORY_IE_MISSING,
        ),
        (
            refused::<AkmaAfKeyRequest>(r#"{"afId":"af.example.com","aKId":"a@b.org"}"#),
            "/afId",
            cause::MANDATORY_IE_INCORRECT,
        ),
        (
            refused::<AkmaAfKeyRequest>(&format!(r#"{{"afId":"{AFID}","aKId":"no-realm"}}"#)),
            "/aKId",
            cause::MANDATORY_IE_INCORRECT,
        ),
        (
            refused::<AkmaAfKeyRequest>(&format!(
                r#"{{"afId":"{AFID}","aKId":"{AKID}","anonInd":"true"}}"#
            )),
            "/anonInd",
            cause::OPTIONAL_IE_INCORRECT,
        ),
        (
            refused::<AkmaAfKeyRequest>(&format!(
                r#"{{"afId":"{AFID}","aKId":"{AKID}","notifUri":"ftp://x"}}"#
            )),
            "/notifUri",
            cause::OPTIONAL_IE_INCORRECT,
        ),
        (
            refused::<AkmaAfKeyRequest>(&format!(
                r#"{{"afId":"{AFID}","aKId":"{AKID}","suppFeat":"xyz"}}"#
            )),
            "/suppFeat",
            cause::OPTIONAL_IE_INCORRECT,
        ),
        (
            refused::<AkmaKeyInfo>(&format!(r#"{{"aKId":"{AKID}","kAkma":"{KEY}"}}"#)),
            "/supi",
            cause::MANDATORY_IE_MISSING,
        ),
        (
            refused::<AkmaKeyInfo>(&format!(
                r#"{{"supi":"imsi-208930000000001","gpsi":"msisdn-12345","aKId":"{AKID}","kAkma":"{KEY}"}}"#
            )),
            "/gpsi",
            cause::MANDATORY_IE_INCORRECT,
        ),
        (
            refused::<AkmaKeyInfo>(&format!(
                r#"{{"supi":"208930000000001","aKId":"{AKID}","kAkma":"{KEY}"}}"#
            )),
            "/supi",
            cause::MANDATORY_IE_INCORRECT,
        ),
        (
            refused::<AkmaKeyInfo>(&format!(
                r#"{{"supi":"imsi-208930000000001","aKId":"{AKID}"}}"#
            )),
            "/kAkma",
            cause::MANDATORY_IE_MISSING,
        ),
        (
            refused::<AkmaKeyInfo>(&format!(
                r#"{{"supi":"imsi-208930000000001","aKId":"{AKID}","kAkma":"{}"}}"#,
                &KEY[2..]
            )),
            "/kAkma",
            cause::MANDATORY_IE_INCORRECT,
        ),
        (
            refused::<AkmaKeyInfo>(&format!(
                r#"{{"supi":"imsi-208930000000001","aKId":"{AKID}","kAkma":"{}zz"}}"#,
                &KEY[2..]
            )),
            "/kAkma",
            cause::MANDATORY_IE_INCORRECT,
        ),
        // An escaped digit is the same JSON string, but a key never needs escapes: refused.
        (
            refused::<AkmaKeyInfo>(&format!(
                r#"{{"supi":"imsi-208930000000001","aKId":"{AKID}","kAkma":"\u0030{}"}}"#,
                &KEY[1..]
            )),
            "/kAkma",
            cause::MANDATORY_IE_INCORRECT,
        ),
        (
            refused::<AkmaKeyInfo>(&format!(
                r#"{{"supi":"imsi-208930000000001","aKId":"{AKID}","kAkma":12345}}"#
            )),
            "/kAkma",
            cause::MANDATORY_IE_INCORRECT,
        ),
        (
            refused::<CtxRemove>("{}"),
            "/supi",
            cause::MANDATORY_IE_MISSING,
        ),
        (
            refused::<AkmaAfKeyData>(&format!(r#"{{"kaf":"{KEY}","expiry":"tomorrow"}}"#)),
            "/expiry",
            cause::MANDATORY_IE_INCORRECT,
        ),
        (
            refused::<AkmaAfKeyData>(&format!(r#"{{"kaf":"{KEY}"}}"#)),
            "/expiry",
            cause::MANDATORY_IE_MISSING,
        ),
        (
            refused::<ServiceDisableNotif>(r#"{"aKId":7}"#),
            "/aKId",
            cause::MANDATORY_IE_INCORRECT,
        ),
    ];
    for (err, ie, want) in cases {
        let problem = err.problem();
        assert_eq!(problem.cause.as_deref(), Some(want), "{err:?}");
        assert_eq!(problem.invalid_params.len(), 1, "{err:?}");
        assert_eq!(problem.invalid_params[0].param, ie, "{err:?}");
    }
}

#[test]
fn nef_answer_never_carries_a_supi() {
    let data = AkmaAfKeyData::from_json(&example("retrieve-applicationkey.response.json")).unwrap();
    assert!(data.supi.is_some());
    let nef = NefAkmaAfKeyData::from(data);
    let json = String::from_utf8(nef.to_json().to_vec()).unwrap();
    assert!(!json.contains("supi") && !json.contains("imsi-"), "{json}");
    // And an answer that carries one is refused by the NEF's client type.
    assert!(matches!(
        NefAkmaAfKeyData::from_json(&example("retrieve-applicationkey.response.json")),
        Err(DecodeError::Malformed { .. })
    ));
}

#[test]
fn keys_never_show_in_debug_errors_or_problems() {
    let mut body = example("register-anchorkey.request.json");
    let info = AkmaKeyInfo::from_json_wiping(&mut body).unwrap();
    assert!(body.iter().all(|&b| b == 0), "the caller's buffer is wiped");
    let debug = format!("{info:?}");
    assert!(
        !debug.contains("0e53d2e2") && debug.contains("redacted"),
        "{debug}"
    );
    let bad = format!(
        r#"{{"supi":"imsi-208930000000001","aKId":"{AKID}","kAkma":"{}g"}}"#,
        &KEY[1..]
    );
    let err = AkmaKeyInfo::from_json(bad.as_bytes()).unwrap_err();
    let text = format!(
        "{err} {err:?} {}",
        String::from_utf8(err.problem().to_json()).unwrap()
    );
    assert!(!text.contains(&KEY[1..20]), "{text}");
}

#[test]
fn operations_and_problem_details() {
    for op in Operation::ALL {
        assert_eq!(Operation::from_path(op.path()), Some(op));
    }
    assert_eq!(Operation::RemoveContext.success_status(), 204);
    assert_eq!(Operation::from_path("/naanf-akma/v1/other"), None);
    // Problem details from another NF: unknown attributes are skipped, typed ones checked.
    let p = ProblemDetails::from_json(br#"{"status":403,"cause":"X","nrfId":"nrf.example","accessTokenError":{"error":"invalid_scope"}}"#).unwrap();
    assert_eq!((p.status, p.cause.as_deref()), (Some(403), Some("X")));
    assert!(ProblemDetails::from_json(br#"{"status":"403"}"#).is_err());
    assert!(ProblemDetails::from_json(br#"{"status":99999}"#).is_err());
}

fn supi() -> impl Strategy<Value = Supi> {
    prop_oneof![
        "[0-9]{6,15}".prop_map(|d| Supi::parse(&format!("imsi-{d}")).unwrap()),
        "[a-z0-9]{1,12}".prop_map(|u| Supi::parse(&format!("nai-{u}@home.example.net")).unwrap()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// What is written reads back to the same value.
    #[test]
    fn written_bodies_read_back(
        supi in supi(),
        use_gpsi in any::<bool>(),
        key in any::<[u8; 32]>(),
        user in "[a-z0-9]{1,10}(\\.[a-z0-9]{1,10}){0,2}",
        anon in any::<bool>(),
        ms in 0u64..253_402_300_799_999,
    ) {
        let a_kid = AKid::parse(&format!("{user}@5gc.mnc093.mcc208.3gppnetwork.org")).unwrap();
        let ue = if use_gpsi { UeId::Gpsi(Gpsi::parse("msisdn-33612345678").unwrap()) } else { UeId::Supi(supi) };
        let info = AkmaKeyInfo { ue, a_kid, k_akma: Kakma::from_array(key), supp_feat: None };
        let back = AkmaKeyInfo::from_json(&info.to_json()).unwrap();
        prop_assert_eq!(back.ue, info.ue);
        prop_assert_eq!(back.a_kid, info.a_kid);
        prop_assert!(back.k_akma == info.k_akma);

        let req = AkmaAfKeyRequest {
            af_id: AfId::parse(AFID).unwrap(), a_kid, anon_ind: anon,
            notif_uri: Some(NotifUri::parse("https://af.example.com/n").unwrap()), supp_feat: None,
        };
        prop_assert_eq!(AkmaAfKeyRequest::from_json(&req.to_json()).unwrap(), req);

        let expiry = e2m_akma::Timestamp::from_unix_millis(ms);
        let data = AkmaAfKeyData { kaf: Kaf::from_array(key), expiry, supi: Some(supi), gpsi: None, supp_feat: None };
        let back = AkmaAfKeyData::from_json(&data.to_json()).unwrap();
        prop_assert!(back.kaf == data.kaf);
        prop_assert_eq!(back.expiry, expiry);
        prop_assert_eq!(back.supi, data.supi);
    }

    /// Arbitrary octets never panic, in any body type.
    #[test]
    fn arbitrary_input_is_a_typed_error_or_a_value(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = AkmaKeyInfo::from_json(&bytes);
        let _ = AkmaAfKeyRequest::from_json(&bytes);
        let _ = AkmaAfKeyData::from_json(&bytes);
        let _ = NefAkmaAfKeyData::from_json(&bytes);
        let _ = CtxRemove::from_json(&bytes);
        let _ = ServiceDisableNotif::from_json(&bytes);
        let _ = ProblemDetails::from_json(&bytes);
    }

    /// Near-valid JSON: a valid request with one attribute's value replaced by arbitrary JSON
    /// text is a value or a typed error naming that attribute.
    #[test]
    fn near_valid_requests(value in prop_oneof![
        Just("null".to_owned()), Just("true".to_owned()), "-?[0-9]{1,30}(\\.[0-9]{1,5})?".prop_map(|s| s),
        "\"[ -~]{0,40}\"".prop_map(|s| s), Just("{}".to_owned()), Just("[]".to_owned()),
    ], field in prop::sample::select(vec!["afId", "aKId", "notifUri", "anonInd", "suppFeat"])) {
        let mut attrs = vec![("afId", format!("{AFID:?}")), ("aKId", format!("{AKID:?}"))];
        attrs.retain(|(k, _)| *k != field);
        attrs.push((field, value));
        let body = format!("{{{}}}", attrs.iter().map(|(k, v)| format!("{k:?}:{v}")).collect::<Vec<_>>().join(","));
        match AkmaAfKeyRequest::from_json(body.as_bytes()) {
            Ok(req) => prop_assert_eq!(AkmaAfKeyRequest::from_json(&req.to_json()).unwrap(), req),
            Err(DecodeError::Missing { ie } | DecodeError::Incorrect { ie, .. }) => prop_assert_eq!(ie, format!("/{field}")),
            Err(DecodeError::Malformed { .. }) => {
                // Only when the replaced text was not one JSON value.
                prop_assert!(serde_json::from_str::<serde_json::Value>(&body).is_err(), "{}", body);
            }
            Err(other) => prop_assert!(false, "{:?}", other),
        }
    }
}

proptest! {
    /// Appending chunks holds their concatenation while it fits the bound; a chunk that
    /// would not fit is refused and leaves the buffer as it was.
    #[test]
    fn secret_buffer_holds_what_fits(
        initial in 0usize..64,
        max in 0usize..512,
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..100), 0..12),
    ) {
        let mut buffer = e2m_akma::SecretBuffer::new(initial, max);
        let mut expected = Vec::new();
        for chunk in &chunks {
            let fits = expected.len() + chunk.len() <= max;
            prop_assert_eq!(buffer.extend(chunk).is_ok(), fits);
            if fits {
                expected.extend_from_slice(chunk);
            }
            prop_assert_eq!(buffer.as_slice(), &expected[..]);
            prop_assert_eq!(buffer.len(), expected.len());
        }
        let shown = format!("{buffer:?}");
        prop_assert!(!shown.contains('['), "octets in Debug: {}", shown);
        prop_assert_eq!(&buffer.into_inner()[..], &expected[..]);
    }
}
