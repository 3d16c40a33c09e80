// The README is the crate documentation; its example uses `SealNonce::random` (feature
// `getrandom`, on by default), so a build without that feature gets a one-line summary
// instead of a doctest that cannot compile.
#![cfg_attr(feature = "getrandom", doc = include_str!("../README.md"))]
#![cfg_attr(
    not(feature = "getrandom"),
    doc = "Sealing of e2m intermediate keys at rest (AES-256-GCM-SIV under versioned operator KEKs). Full documentation: build with the default feature `getrandom`, or read README.md."
)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod aead;
mod akma;
mod check;
mod error;
#[cfg(feature = "fs")]
mod fs;
mod kek;
mod keyring;
mod record;

pub use akma::AkmaKeyRecord;
pub use check::{CheckRecord, StartupCheck};
pub use error::{CheckError, KekFileError, KeyringError, OpenError, SealError};
#[cfg(all(feature = "fs", feature = "getrandom"))]
pub use fs::write_new_kek_file;
#[cfg(feature = "fs")]
pub use fs::{KekFileIoError, read_kek_file};
#[cfg(feature = "getrandom")]
pub use kek::generate_kek_file;
pub use kek::{Kek, KekVersion, format_kek_file};
pub use keyring::Keyring;
pub use record::{FORMAT, IntKeyRecord, SealNonce, SealedKey};

// The types a backend names when it calls this crate, so that it needs no other import.
pub use e2m_kdf::{E2mIntKey, Kakma};
pub use e2m_keyid::akma::{AKid, UeId};
pub use e2m_keyid::{Imsi, KeyId};
pub use e2m_types::Timestamp;
