#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod akma;
mod backup;
mod codec;
mod error;
mod handle;
mod identities;
mod int_keys;
mod outbox;
mod sessions;
mod store;
mod subscriptions;
mod tables;
mod writer;

pub use akma::RedbAkmaContexts;
pub use backup::{BackupSummary, RestoreSummary};
pub use error::RedbStoreError;
pub use store::{
    DATABASE_FILE, RedbIdentityMap, RedbIntKeyStore, RedbSessionStore, RedbStore, RedbStoreConfig,
    RedbSubscriptionStore,
};
// What a caller names to open a store, so that it needs no other import.
pub use e2m_keystore;
pub use e2m_seal::{self, Keyring};
