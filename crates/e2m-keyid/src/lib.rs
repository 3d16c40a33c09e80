#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(not(test), no_std)]

pub mod akma;
mod derive;
mod identity;
mod key_id;
mod psk_identity;

pub use derive::{E2mKeyDeriver, e2m_key};
pub use identity::{AppIdentity, EmseId, IdentityError, Imsi};
pub use key_id::{KeyId, KeyIdError, KeyIdScheme};
pub use psk_identity::{PskIdentity, PskIdentityError};

/// The KDF crate whose types (`E2mIntKey`, `E2mKey`, `E2mProfile`, `KdfError`) this crate's
/// signatures expose.
pub use e2m_kdf;
