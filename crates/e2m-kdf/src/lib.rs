#![doc = include_str!("../README.md")]
#![cfg_attr(not(test), no_std)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "alloc")]
extern crate alloc;

mod derive;
mod engine;
mod error;
mod fc;
mod profile;
mod secret;
mod text;

pub use derive::{
    ATid, a_tid, ck_ik_prime, e2m_int_key, kaf, kakma, kasme, kausf, ks_naf, res_star,
};
pub use engine::{KdfInput, KdfKey, kdf};
pub use error::{KdfError, KeyError};
pub use fc::Fc;
pub use profile::E2mProfile;
pub use secret::{
    Ck, CkPrime, E2mIntKey, E2mKey, Ik, IkPrime, Kaf, Kakma, Kasme, Kausf, KdfOutput, Ks, KsNaf,
    ResStar,
};
#[cfg(feature = "nfkc")]
#[cfg_attr(docsrs, doc(cfg(feature = "nfkc")))]
pub use text::normalize_text;
pub use text::text_param;
