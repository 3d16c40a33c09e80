//! The golden documents: hand-written, independent of the encoder. Each decodes, re-encodes to
//! exactly the same bytes, and validates against the XSD (xmllint).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

mod common;

use e2m_kdf::{E2mIntKey, E2mKey};
use e2m_keyid::{AppIdentity, EmseId, Imsi, KeyId};
use e2m_msg::{
    CallbackUri, EventSet, EventType, IntermediateKeyPush, KeyIdSource, KeyResponse, Notification,
    NotificationId, Problem, ProblemCause, ProblemDetail, Registration, RegistrationResult,
    SessionId, Subscription, SubscriptionId, SubscriptionResult, Timestamp, UeRef, XmlMessage,
};

fn ts(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn app() -> UeRef {
    UeRef::AppIdentity(AppIdentity::new("sensor-17@iot.example.com").unwrap())
}

const KEY: &str = "4f1c9e2ab8d7035e6a91c4f0b2d8e7a35c6f09e1d2b4a7c8e3f5061928374655";
const INT_KEY: &str = "9b3e5a7c1d2f4860a1b2c3d4e5f60718293a4b5c6d7e8f9010213243546576f8";

/// Decodes the golden document, compares with the expected value, re-encodes exactly.
fn check<M: XmlMessage + PartialEq + core::fmt::Debug>(name: &str, expected: &M) {
    let golden = common::golden(name);
    let decoded = M::decode(golden.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(&decoded, expected, "{name}: decoded value");
    assert_eq!(expected.encode().as_str(), golden, "{name}: encoding");
    assert!(
        expected.encode().len() <= expected.max_encoded_len(),
        "{name}: length bound"
    );
}

#[test]
fn registration() {
    check(
        "registration",
        &Registration {
            emse_id: EmseId::new("emse-a.example.com").unwrap(),
            callback: Some(
                CallbackUri::new("https://emse-a.example.com/e2m/v1/notifications").unwrap(),
            ),
        },
    );
}

#[test]
fn registration_result() {
    check(
        "registration_result",
        &RegistrationResult {
            session_id: SessionId::parse("Bq3vL9sKp2RtY7wZ1bN4cA").unwrap(),
            expires: ts("2026-11-28T21:00:00Z"),
        },
    );
}

#[test]
fn key_response() {
    check(
        "key_response",
        &KeyResponse {
            ue: app(),
            key_id: KeyId::from_u32(0xae47_bf35),
            key: E2mKey::from_hex(KEY).unwrap(),
            expires: ts("2026-11-28T09:30:00Z"),
        },
    );
    check(
        "key_response_imsi",
        &KeyResponse {
            ue: UeRef::Imsi(Imsi::new("001010123456789").unwrap()),
            key_id: KeyId::from_u32(0xae47_bf35),
            key: E2mKey::from_hex(KEY).unwrap(),
            expires: ts("2026-11-28T09:30:00Z"),
        },
    );
}

#[test]
fn subscription() {
    check(
        "subscription",
        &Subscription {
            events: EventSet::single(EventType::KeyRetired).with(EventType::KeyAvailable),
            ue: Some(app()),
            callback: CallbackUri::new("https://emse-a.example.com/e2m/v1/notifications").unwrap(),
        },
    );
}

#[test]
fn subscription_result() {
    check(
        "subscription_result",
        &SubscriptionResult {
            subscription_id: "7042".parse::<SubscriptionId>().unwrap(),
            expires: ts("2026-12-27T21:00:00Z"),
        },
    );
}

#[test]
fn notification() {
    check(
        "notification",
        &Notification {
            subscription_id: "7042".parse::<SubscriptionId>().unwrap(),
            event: EventType::KeyAvailable,
            ue: app(),
            key_id: KeyId::from_u32(0x0c41_d7e2),
            time: ts("2026-11-27T21:18:12Z"),
            id: Some(NotificationId::from_u64(918_273)),
        },
    );
}

#[test]
fn intermediate_key_push() {
    check(
        "intermediate_key_push",
        &IntermediateKeyPush {
            imsi: Imsi::new("001010123456789").unwrap(),
            key_id: KeyIdSource::RandLsb32(KeyId::from_u32(0xae47_bf35)),
            int_key: E2mIntKey::from_hex(INT_KEY).unwrap(),
            created: ts("2026-11-27T09:30:00Z"),
        },
    );
    check(
        "intermediate_key_push_short_hash",
        &IntermediateKeyPush {
            imsi: Imsi::new("001010123456789").unwrap(),
            key_id: KeyIdSource::ShortHash,
            int_key: E2mIntKey::from_hex(INT_KEY).unwrap(),
            created: ts("2026-11-27T09:30:00Z"),
        },
    );
    // A creation time with milliseconds (issue 9 item 15: pushes within one second are
    // ordered by it). 2026-11-27T09:30:00Z is Unix time 1795771800
    // (`date -u -d 2026-11-27T09:30:00Z +%s`), so .017 is 1795771800017 ms.
    check(
        "intermediate_key_push_fraction",
        &IntermediateKeyPush {
            imsi: Imsi::new("001010123456789").unwrap(),
            key_id: KeyIdSource::RandLsb32(KeyId::from_u32(0xae47_bf35)),
            int_key: E2mIntKey::from_hex(INT_KEY).unwrap(),
            created: Timestamp::from_unix_millis(1_795_771_800_017),
        },
    );
}

#[test]
fn problem() {
    check(
        "problem",
        &Problem::new(ProblemCause::KeyNotAvailable).with_detail(
            ProblemDetail::new("No key with this key id is held for this UE & EMSE.").unwrap(),
        ),
    );
}

#[test]
fn every_golden_document_validates_against_the_xsd() {
    let names: Vec<String> = common::golden_names();
    assert!(names.len() >= 10);
    let docs: Vec<(String, String)> = names
        .iter()
        .map(|n| (n.clone(), common::golden(n)))
        .collect();
    common::xmllint_validate(&docs);
}

#[test]
fn debug_output_never_shows_key_material() {
    let response = KeyResponse::decode(common::golden("key_response").as_bytes()).unwrap();
    let text = format!("{response:?}");
    assert!(!text.contains(&KEY[..8]), "{text}");
    assert!(text.contains("redacted"));
    let push =
        IntermediateKeyPush::decode(common::golden("intermediate_key_push").as_bytes()).unwrap();
    let text = format!("{push:?}");
    assert!(!text.contains(&INT_KEY[..8]), "{text}");
}

#[test]
fn the_xsd_refuses_what_the_decoder_refuses() {
    // Each golden document with one value or structure broken: the schema must reject it as
    // the decoder does (the schema is no looser than the documented rules it can express).
    let kr = common::golden("key_response");
    let reg = common::golden("registration");
    let sub = common::golden("subscription");
    let push = common::golden("intermediate_key_push");
    let bad = [
        kr.replace("ae47bf35", "AE47BF35"),
        kr.replace("ae47bf35", "ae47bf3"),
        kr.replace(KEY, &KEY.to_uppercase()),
        kr.replace(KEY, &KEY[2..]),
        kr.replace("2026-11-28T09:30:00Z", "2026-11-28T09:30:00+01:00"),
        kr.replace("2026-11-28T09:30:00Z", "1969-12-31T23:59:59Z"),
        kr.replace("sensor-17@iot.example.com", "sensor 17"),
        kr.replace("sensor-17@iot.example.com", "sensor\u{200B}17"),
        kr.replace("<appIdentity>sensor-17@iot.example.com</appIdentity>", ""),
        kr.replace("<keyId>ae47bf35</keyId>\n  <e2mKey>", "<e2mKey>"),
        reg.replace("https://emse-a.example.com", "http://emse-a.example.com"),
        reg.replace(
            "https://emse-a.example.com",
            "https://user@emse-a.example.com",
        ),
        reg.replace("</emseId>", "</emseId>\n  <extra/>"),
        reg.replace("urn:e2m:xml:ns:emse-emks:1", "urn:e2m:xml:ns:emse-emks:2"),
        sub.replace("key-retired", "key-lost"),
        push.replace("001010123456789", "00101"),
        // The creation time's fraction: one canonical spelling of at most three digits.
        push.replace("09:30:00Z", "09:30:00.0Z"),
        push.replace("09:30:00Z", "09:30:00.250Z"),
        push.replace("09:30:00Z", "09:30:00.1234Z"),
        push.replace("09:30:00Z", "09:30:00.Z"),
        push.replace("09:30:00Z", "09:30:00,5Z"),
        push.replace("09:30:00Z", "09:30:00.5"),
        push.replace(
            "<randLsb32>ae47bf35</randLsb32>",
            "<randLsb32>ae47bf35</randLsb32><shortHash/>",
        ),
    ];
    for doc in &bad {
        assert!(
            <e2m_msg::KeyResponse as XmlMessage>::decode(doc.as_bytes()).is_err()
                && Registration::decode(doc.as_bytes()).is_err()
                && Subscription::decode(doc.as_bytes()).is_err()
                && IntermediateKeyPush::decode(doc.as_bytes()).is_err(),
            "decoder accepted:\n{doc}"
        );
    }
    let verdicts = common::xmllint_verdicts(&bad);
    for (doc, valid) in bad.iter().zip(verdicts) {
        assert!(!valid, "the XSD accepted:\n{doc}");
    }
}
