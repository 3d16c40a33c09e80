//! Property tests: for every message, decode(encode(m)) == m and the encoding is a fixed point
//! (1,000 cases each); and a few hundred generated messages of each kind validate against the
//! XSD with xmllint.
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
    CallbackUri, EventSet, EventType, IntermediateKeyPush, KeyIdSource, KeyRequest, KeyResponse,
    Notification, NotificationId, Problem, ProblemCause, ProblemDetail, Registration,
    RegistrationResult, Route, SessionId, Subscription, SubscriptionId, SubscriptionResult,
    Timestamp, UeRef, XmlMessage,
};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;

fn app_identity() -> impl Strategy<Value = AppIdentity> {
    // Printable ASCII (markup characters included) and a few multi-octet characters; at most
    // 28 characters of at most 4 octets fit the 114-octet limit.
    "[!-~é€😀ß]{1,28}".prop_map(|s| AppIdentity::new(&s).unwrap())
}

fn emse_id() -> impl Strategy<Value = EmseId> {
    // ASCII: without e2m-kdf's `nfkc` feature, only ASCII text is known to be NFKC.
    "[!-~]{1,60}".prop_map(|s| EmseId::new(&s).unwrap())
}

fn imsi() -> impl Strategy<Value = Imsi> {
    "[0-9]{6,15}".prop_map(|s| Imsi::new(&s).unwrap())
}

fn ue() -> impl Strategy<Value = UeRef> {
    prop_oneof![
        app_identity().prop_map(UeRef::AppIdentity),
        imsi().prop_map(UeRef::Imsi)
    ]
}

fn key_id() -> impl Strategy<Value = KeyId> {
    any::<u32>().prop_map(KeyId::from_u32)
}

fn timestamp() -> impl Strategy<Value = Timestamp> {
    // Whole seconds (the 20-character form) and any millisecond (a 1-3 digit fraction).
    prop_oneof![
        (0..=Timestamp::MAX.as_unix_secs()).prop_map(Timestamp::from_unix_secs),
        (0..=Timestamp::MAX.as_unix_millis()).prop_map(Timestamp::from_unix_millis),
    ]
}

fn session_id() -> impl Strategy<Value = SessionId> {
    any::<[u8; 16]>().prop_map(SessionId::from_array)
}

fn subscription_id() -> impl Strategy<Value = SubscriptionId> {
    prop_oneof![
        (0u64..10).prop_map(SubscriptionId::from_u64),
        any::<u64>().prop_map(SubscriptionId::from_u64),
    ]
}

fn callback() -> impl Strategy<Value = CallbackUri> {
    "https://[a-z0-9.-]{1,20}(:[0-9]{1,5})?(/([A-Za-z0-9._~!$'()*+,;=:@-]|%[0-9A-F]{2}){0,10}){0,3}(\\?[A-Za-z0-9=&%]{0,10})?"
        .prop_filter_map("valid URI", |s| CallbackUri::new(&s).ok())
}

fn event() -> impl Strategy<Value = EventType> {
    prop::sample::select(EventType::ALL.to_vec())
}

fn events() -> impl Strategy<Value = EventSet> {
    prop::collection::vec(event(), 1..4).prop_map(|v| EventSet::from_events(v).unwrap())
}

fn registration() -> impl Strategy<Value = Registration> {
    (emse_id(), prop::option::of(callback()))
        .prop_map(|(emse_id, callback)| Registration { emse_id, callback })
}

fn registration_result() -> impl Strategy<Value = RegistrationResult> {
    (session_id(), timestamp()).prop_map(|(session_id, expires)| RegistrationResult {
        session_id,
        expires,
    })
}

fn key_response() -> impl Strategy<Value = KeyResponse> {
    (ue(), key_id(), any::<[u8; 32]>(), timestamp()).prop_map(|(ue, key_id, key, expires)| {
        KeyResponse {
            ue,
            key_id,
            key: E2mKey::from_array(key),
            expires,
        }
    })
}

fn subscription() -> impl Strategy<Value = Subscription> {
    (events(), prop::option::of(ue()), callback()).prop_map(|(events, ue, callback)| Subscription {
        events,
        ue,
        callback,
    })
}

fn subscription_result() -> impl Strategy<Value = SubscriptionResult> {
    (subscription_id(), timestamp()).prop_map(|(subscription_id, expires)| SubscriptionResult {
        subscription_id,
        expires,
    })
}

fn notification() -> impl Strategy<Value = Notification> {
    (
        subscription_id(),
        event(),
        ue(),
        key_id(),
        timestamp(),
        proptest::option::of(any::<u64>().prop_map(NotificationId::from_u64)),
    )
        .prop_map(
            |(subscription_id, event, ue, key_id, time, id)| Notification {
                subscription_id,
                event,
                ue,
                key_id,
                time,
                id,
            },
        )
}

fn intermediate_key_push() -> impl Strategy<Value = IntermediateKeyPush> {
    (
        imsi(),
        prop_oneof![
            key_id().prop_map(KeyIdSource::RandLsb32),
            Just(KeyIdSource::ShortHash)
        ],
        any::<[u8; 32]>(),
        timestamp(),
    )
        .prop_map(|(imsi, key_id, key, created)| IntermediateKeyPush {
            imsi,
            key_id,
            int_key: E2mIntKey::from_array(key),
            created,
        })
}

fn problem() -> impl Strategy<Value = Problem> {
    (
        prop::sample::select(ProblemCause::ALL.to_vec()),
        prop::option::of("[ -~é€]{1,100}".prop_map(|s| ProblemDetail::new(&s).unwrap())),
    )
        .prop_map(|(cause, detail)| Problem { cause, detail })
}

fn round_trip<M: XmlMessage + PartialEq + core::fmt::Debug>(m: &M) -> Result<(), TestCaseError> {
    let encoded = m.encode();
    prop_assert!(encoded.len() <= m.max_encoded_len());
    let decoded = M::decode(encoded.as_bytes())
        .map_err(|e| TestCaseError::fail(format!("{e}: {}", encoded.as_str())))?;
    prop_assert_eq!(&decoded, m);
    let again = decoded.encode();
    prop_assert_eq!(again.as_str(), encoded.as_str());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn registration_round_trips(m in registration()) { round_trip(&m)?; }

    #[test]
    fn registration_result_round_trips(m in registration_result()) { round_trip(&m)?; }

    #[test]
    fn key_response_round_trips(m in key_response()) { round_trip(&m)?; }

    #[test]
    fn subscription_round_trips(m in subscription()) { round_trip(&m)?; }

    #[test]
    fn subscription_result_round_trips(m in subscription_result()) { round_trip(&m)?; }

    #[test]
    fn notification_round_trips(m in notification()) { round_trip(&m)?; }

    #[test]
    fn intermediate_key_push_round_trips(m in intermediate_key_push()) { round_trip(&m)?; }

    #[test]
    fn problem_round_trips(m in problem()) { round_trip(&m)?; }

    #[test]
    fn key_request_target_round_trips(session_id in session_id(), ue in ue(), key_id in key_id()) {
        let request = KeyRequest { session_id, ue, key_id };
        let target = request.to_target();
        prop_assert_eq!(Route::parse("GET", &target), Ok(Route::FetchKey(request)));
    }

    #[test]
    fn timestamp_text_round_trips(t in timestamp()) {
        let text = t.to_string();
        prop_assert!((Timestamp::MIN_TEXT_LEN..=Timestamp::MAX_TEXT_LEN).contains(&text.len()));
        prop_assert_eq!(text.len() == Timestamp::MIN_TEXT_LEN, t.subsec_millis() == 0);
        prop_assert_eq!(text.parse::<Timestamp>(), Ok(t));
    }
}

/// `count` values drawn deterministically from `strategy`, encoded.
fn sample<M: XmlMessage, S: Strategy<Value = M>>(
    name: &str,
    strategy: S,
    count: usize,
    out: &mut Vec<(String, String)>,
) {
    let mut runner = TestRunner::deterministic();
    for _ in 0..count {
        let value = strategy.new_tree(&mut runner).unwrap().current();
        out.push((name.to_owned(), value.encode().to_string()));
    }
}

#[test]
fn generated_messages_validate_against_the_xsd() {
    let mut docs = Vec::new();
    sample("registration", registration(), 200, &mut docs);
    sample("registrationResult", registration_result(), 200, &mut docs);
    sample("keyResponse", key_response(), 200, &mut docs);
    sample("subscription", subscription(), 200, &mut docs);
    sample("subscriptionResult", subscription_result(), 200, &mut docs);
    sample("notification", notification(), 200, &mut docs);
    sample(
        "intermediateKeyPush",
        intermediate_key_push(),
        200,
        &mut docs,
    );
    sample("problem", problem(), 200, &mut docs);
    common::xmllint_validate(&docs);
}
