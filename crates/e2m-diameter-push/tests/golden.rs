//! The push messages against their golden encodings (`golden/*.hex`), which python-diameter
//! built (not this crate: see each file's header): this crate must write exactly those
//! octets from the same values, and read them back to the same values.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::path::Path;
use std::time::Duration;

use e2m_diameter::{MessageView, ResultCode, Time};
use e2m_diameter_push::{PushAnswer, PushProfile, PushStatus, Refusal, Routing, key_expiry};
use e2m_msg::{E2mIntKey, Imsi, IntermediateKeyPush, KeyId, KeyIdSource, ProblemCause, Timestamp};

fn golden(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("golden")
        .join(format!("{name}.hex"));
    let text = std::fs::read_to_string(&path).unwrap();
    let hex: String = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .flat_map(|l| l.chars().filter(char::is_ascii_hexdigit))
        .collect();
    hex::decode(hex).unwrap()
}

const KEY: &str = "9b3e5a7c1d2f4860a1b2c3d4e5f60718293a4b5c6d7e8f9010213243546576f8";
/// 2026-11-27T09:30:00.017Z, as in crates/e2m-msg/golden/intermediate_key_push_fraction.xml.
const CREATED_MS: u64 = 1_795_771_800_017;

fn push(key_id: KeyIdSource, created_ms: u64) -> IntermediateKeyPush {
    IntermediateKeyPush {
        imsi: Imsi::new("001010123456789").unwrap(),
        key_id,
        int_key: E2mIntKey::from_slice(&hex::decode(KEY).unwrap()).unwrap(),
        created: Timestamp::from_unix_millis(created_ms),
    }
}

fn routing(session_id: &str) -> Routing<'_> {
    Routing {
        session_id,
        origin_host: "hss1.hss.example",
        origin_realm: "hss.example",
        destination_realm: "emks.example",
        destination_host: None,
    }
}

/// The golden files carry Hop-by-Hop 1 (a node sets it when sending; the encoder leaves 0).
fn with_hop_by_hop(mut octets: Vec<u8>, hop_by_hop: u32) -> Vec<u8> {
    octets[12..16].copy_from_slice(&hop_by_hop.to_be_bytes());
    octets
}

#[test]
fn requests_are_written_as_python_diameter_writes_them() {
    let p = PushProfile::PROVISIONAL;
    let rand = p
        .encode_request(
            &routing("hss1.hss.example;1795771800;1;e2m"),
            &push(
                KeyIdSource::RandLsb32(KeyId::from_u32(0xae47_bf35)),
                CREATED_MS,
            ),
            2,
        )
        .unwrap();
    assert_eq!(
        hex::encode(with_hop_by_hop(rand, 1)),
        hex::encode(golden("request_rand_lsb32"))
    );
    let short = p
        .encode_request(
            &routing("hss1.hss.example;1795771800;2;e2m"),
            &push(KeyIdSource::ShortHash, 1_795_771_800_000),
            3,
        )
        .unwrap();
    assert_eq!(
        hex::encode(with_hop_by_hop(short, 1)),
        hex::encode(golden("request_short_hash"))
    );
}

#[test]
fn golden_requests_decode_to_the_values_they_were_built_from() {
    let p = PushProfile::PROVISIONAL;
    let octets = golden("request_rand_lsb32");
    let view = MessageView::parse(&octets).unwrap();
    let r = p.decode_request(&view).unwrap();
    assert_eq!(r.session_id, "hss1.hss.example;1795771800;1;e2m");
    assert_eq!(r.origin_host, "hss1.hss.example");
    assert_eq!(r.origin_realm, "hss.example");
    assert_eq!(r.destination_realm, "emks.example");
    assert_eq!(r.destination_host, None);
    assert!(!r.retransmitted);
    assert_eq!(r.push.imsi.as_str(), "001010123456789");
    assert_eq!(
        r.push.key_id,
        KeyIdSource::RandLsb32(KeyId::from_u32(0xae47_bf35))
    );
    assert_eq!(hex::encode(r.push.int_key.expose_secret()), KEY);
    assert_eq!(r.push.created.as_unix_millis(), CREATED_MS);
    let debug = format!("{r:?}");
    assert!(
        !debug.contains("9b3e") && !debug.contains("155, 62"),
        "{debug}"
    );

    let octets = golden("request_short_hash");
    let r = p
        .decode_request(&MessageView::parse(&octets).unwrap())
        .unwrap();
    assert_eq!(r.push.key_id, KeyIdSource::ShortHash);
    assert_eq!(r.push.created.as_unix_millis(), 1_795_771_800_000);
}

#[test]
fn answers_are_written_as_python_diameter_writes_them() {
    let p = PushProfile::PROVISIONAL;
    let request = golden("request_rand_lsb32");
    let view = MessageView::parse(&request).unwrap();
    let decoded = p.decode_request(&view).unwrap();
    // 24 h after the creation time (whole seconds, rounded down), the example's policy.
    let now = Timestamp::from_unix_millis(CREATED_MS + 5_000);
    let expiry = key_expiry(decoded.push.created, now, Duration::from_secs(86_400));
    assert_eq!(expiry.unix(), 1_795_858_200);
    let write = |answer: &PushAnswer| {
        p.encode_answer(&view, "emks1.emks.example", "emks.example", answer)
            .unwrap()
    };
    let cases = [
        (
            "answer_success",
            PushAnswer::for_outcome(Ok(()), expiry, &decoded),
        ),
        (
            "answer_user_unknown",
            PushAnswer::for_outcome(Err(ProblemCause::UeUnknown), expiry, &decoded),
        ),
        (
            "answer_too_busy",
            PushAnswer::for_outcome(Err(ProblemCause::Unavailable), expiry, &decoded),
        ),
        (
            "answer_not_authorized",
            PushAnswer::for_outcome(Err(ProblemCause::EmseNotAuthorized), expiry, &decoded),
        ),
        (
            "answer_invalid_user_name",
            PushAnswer::for_outcome(Err(ProblemCause::Malformed), expiry, &decoded),
        ),
    ];
    for (name, answer) in &cases {
        assert_eq!(
            hex::encode(write(answer)),
            hex::encode(golden(name)),
            "{name}"
        );
    }
    // HTTPS's 429 is backpressure too.
    assert_eq!(
        PushAnswer::for_outcome(Err(ProblemCause::RateLimited), expiry, &decoded),
        PushAnswer::TooBusy
    );
    assert_eq!(
        PushAnswer::for_outcome(Err(ProblemCause::Internal), expiry, &decoded),
        PushAnswer::UnableToComply
    );
}

#[test]
fn golden_answers_tell_the_hss_what_to_do() {
    let p = PushProfile::PROVISIONAL;
    let read = |name: &str| {
        let octets = golden(name);
        p.decode_answer(&MessageView::parse(&octets).unwrap())
            .unwrap()
    };
    let ok = read("answer_success");
    assert_eq!(
        ok.status(),
        PushStatus::Acknowledged {
            expiry: Some(Time::from_unix(1_795_858_200).unwrap())
        }
    );
    assert_eq!(
        read("answer_user_unknown").status(),
        PushStatus::Refused(Refusal::UserUnknown)
    );
    let busy = read("answer_too_busy");
    assert!(busy.error_bit);
    assert_eq!(busy.status(), PushStatus::Retry(ResultCode::TOO_BUSY));
    assert_eq!(
        read("answer_not_authorized").status(),
        PushStatus::Refused(Refusal::Result(ResultCode::AUTHORIZATION_REJECTED))
    );
    assert_eq!(
        read("answer_invalid_user_name").status(),
        PushStatus::Refused(Refusal::Result(ResultCode::INVALID_AVP_VALUE))
    );
    // An answer is not a request, nor the other way round.
    let request = golden("request_rand_lsb32");
    assert!(
        p.decode_answer(&MessageView::parse(&request).unwrap())
            .is_err()
    );
    let answer = golden("answer_success");
    assert!(
        p.decode_request(&MessageView::parse(&answer).unwrap())
            .is_err()
    );
}

#[test]
fn the_dictionary_accepts_the_golden_messages() {
    let p = PushProfile::PROVISIONAL;
    let dict = p.dictionary().unwrap();
    let def = dict.command(p.application_id(), p.command());
    for name in ["request_rand_lsb32", "request_short_hash"] {
        let octets = golden(name);
        let view = MessageView::parse(&octets).unwrap();
        e2m_diameter::check_request(&dict, def, &view, &Default::default()).unwrap();
    }
    for name in [
        "answer_success",
        "answer_user_unknown",
        "answer_too_busy",
        "answer_not_authorized",
        "answer_invalid_user_name",
    ] {
        let octets = golden(name);
        let view = MessageView::parse(&octets).unwrap();
        e2m_diameter::check_answer(&dict, def, &view, &Default::default())
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
    }
}
