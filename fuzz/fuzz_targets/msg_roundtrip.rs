//! decode → encode → decode for every message kind: whatever the strict decoder accepts, the
//! encoder writes back in a form that decodes to the same value and re-encodes to the same
//! bytes (hickory-dns style parse/serialize fuzzing). Seed corpus: the golden documents.
#![no_main]

use e2m_msg::{
    IntermediateKeyPush, KeyResponse, Notification, Problem, Registration, RegistrationResult,
    Subscription, SubscriptionResult, XmlMessage,
};
use libfuzzer_sys::fuzz_target;

fn round_trip<M: XmlMessage + PartialEq + core::fmt::Debug>(data: &[u8]) {
    let Ok(first) = M::decode(data) else { return };
    let encoded = first.encode();
    let second = match M::decode(encoded.as_bytes()) {
        Ok(m) => m,
        Err(e) => panic!("re-decode failed: {e}\n{}", encoded.as_str()),
    };
    assert_eq!(first, second);
    assert_eq!(encoded.as_str(), second.encode().as_str());
    assert!(encoded.len() <= first.max_encoded_len());
}

fuzz_target!(|data: &[u8]| {
    round_trip::<Registration>(data);
    round_trip::<RegistrationResult>(data);
    round_trip::<KeyResponse>(data);
    round_trip::<Subscription>(data);
    round_trip::<SubscriptionResult>(data);
    round_trip::<Notification>(data);
    round_trip::<IntermediateKeyPush>(data);
    round_trip::<Problem>(data);
});
