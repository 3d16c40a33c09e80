#![doc = include_str!("../README.md")]
#![cfg_attr(not(test), no_std)]

extern crate alloc;

mod cbor;
mod context;
pub mod derived;
pub mod e2m;
mod error;
mod option;
mod protect;
mod replay;
mod secret;
mod sequence;

pub use context::{
    ALG_AES_CCM_16_64_128, ContextInput, MAX_ID_CONTEXT_LEN, MAX_ID_LEN, NONCE_LEN, SecurityContext,
};
pub use error::{OptionError, OscoreError};
pub use option::{OscoreOption, PartialIv};
pub use protect::{DecryptedView, RequestId, VerifiedRequest, oscore_option, unprotected_error};
pub use replay::{Freshness, ReplayWindow};
pub use secret::{AeadKey, CommonIv, MasterSecret};
pub use sequence::SenderSequence;

// The crates whose types this crate's signatures expose (CoAP messages, `E2mKey`,
// `AppIdentity`, `KeyId`), so that a user needs no second dependency to name them.
pub use {e2m_coap, e2m_kdf, e2m_keyid};
