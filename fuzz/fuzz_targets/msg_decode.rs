//! Every e2m-msg decoder on arbitrary bytes: a typed error or a message, never a panic, and
//! every error renders. Seed corpus: the golden documents (`fuzz/corpus/msg_decode/`).
#![no_main]

use e2m_msg::{
    IntermediateKeyPush, KeyResponse, Notification, Problem, Registration, RegistrationResult,
    Subscription, SubscriptionResult, XmlMessage,
};
use libfuzzer_sys::fuzz_target;

fn one<M: XmlMessage>(data: &[u8]) {
    if let Err(e) = M::decode(data) {
        let _ = e.to_string();
    }
}

fuzz_target!(|data: &[u8]| {
    one::<Registration>(data);
    one::<RegistrationResult>(data);
    one::<KeyResponse>(data);
    one::<Subscription>(data);
    one::<SubscriptionResult>(data);
    one::<Notification>(data);
    one::<IntermediateKeyPush>(data);
    one::<Problem>(data);
});
