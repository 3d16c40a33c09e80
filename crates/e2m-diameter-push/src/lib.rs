#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod answer;
mod profile;
mod request;

#[cfg(feature = "net")]
#[cfg_attr(docsrs, doc(cfg(feature = "net")))]
pub mod net;

pub use answer::{
    AnswerError, ExperimentalResult, PushAnswer, PushAnswerInfo, PushStatus, Refusal, key_expiry,
};
pub use profile::{
    AvpCodes, E2M_ERROR_USER_UNKNOWN, NO_STATE_MAINTAINED, ProfileError, PushProfile,
    SCHEME_RAND_LSB32, SCHEME_SHORT_HASH,
};
pub use request::{PushEncodeError, PushRequest, Routing};

// The crates whose types this crate's signatures expose (the hkdf `pub use hmac` pattern).
pub use {e2m_diameter, e2m_msg};
