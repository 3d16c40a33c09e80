//! Strict decoding (being written).
#![allow(dead_code, reason = "stub until the strict decoder lands")]

use crate::DecodeError;
use crate::message::{
    IntermediateKeyPush, KeyResponse, Notification, Registration, RegistrationResult, Subscription,
    SubscriptionResult,
};
use crate::problem::Problem;

macro_rules! stub {
    ($($f:ident -> $t:ty),*) => {$(
        pub(crate) fn $f(_document: &[u8]) -> Result<$t, DecodeError> {
            Err(DecodeError::NoRoot)
        }
    )*};
}
stub!(registration -> Registration, registration_result -> RegistrationResult,
    key_response -> KeyResponse, subscription -> Subscription,
    subscription_result -> SubscriptionResult, notification -> Notification,
    intermediate_key_push -> IntermediateKeyPush, problem -> Problem);
