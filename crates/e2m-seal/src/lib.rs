#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod aead;
mod check;
mod error;
#[cfg(feature = "fs")]
mod fs;
mod kek;
mod keyring;
mod record;

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
pub use record::{FORMAT_V1, IntKeyRecord, SealNonce, SealedKey};

// The types a backend names when it calls this crate, so that it needs no other import.
pub use e2m_kdf::E2mIntKey;
pub use e2m_keyid::{Imsi, KeyId};
pub use e2m_types::Timestamp;
