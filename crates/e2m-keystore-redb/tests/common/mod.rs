//! Shared fixtures of the integration tests: KEKs and fresh stores in temporary directories.
#![allow(dead_code, reason = "each test file uses a different part")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a broken fixture fails the test loudly"
)]

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use e2m_keystore_redb::e2m_seal::{Kek, KekVersion, format_kek_file};
use e2m_keystore_redb::{Keyring, RedbStore, RedbStoreConfig};

/// A KEK of `version` whose key is 32 octets of `fill`.
pub(crate) fn kek(version: u32, fill: u8) -> Kek {
    let v = KekVersion::new(version).unwrap();
    Kek::parse(format_kek_file(v, &[fill; 32]).as_bytes()).unwrap()
}

/// The keyring of one KEK, version 1.
pub(crate) fn keyring() -> Keyring {
    Keyring::new([kek(1, 0x42)]).unwrap()
}

/// A fresh store in a new subdirectory of `base` each call.
pub(crate) fn fresh(base: &Path, config: RedbStoreConfig) -> RedbStore {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = base.join(format!("store-{}", N.fetch_add(1, Ordering::Relaxed)));
    RedbStore::open(dir, keyring(), config).expect("open a fresh store")
}

pub(crate) mod tmpfs;
