#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![allow(
    clippy::needless_doctest_main,
    reason = "the README's conformance example needs `fn main` to hold a block gated on the feature"
)]

pub mod akma;
mod block_on;
pub mod cache;
mod error;
mod identities;
pub mod identity_keys;
pub mod import;
mod inline_bytes;
mod int_keys;
mod open_table;
mod outbox;
mod packed;
mod sessions;
mod shard;
mod subscriptions;

#[cfg(feature = "conformance")]
#[cfg_attr(docsrs, doc(cfg(feature = "conformance")))]
pub mod conformance;

pub use akma::{
    AkmaContext, AkmaContexts, AkmaOutbox, AkmaPendingNotification, AkmaPolicy, AkmaRegistered,
    AkmaRemoved, MemoryAkmaContexts, NotifyTarget,
};
pub use block_on::block_on;
pub use cache::{
    CacheConfig, CachedIdentities, CachedIntKeys, CachedSessions, ManualClock, MonotonicClock,
};
pub use error::{Limit, PolicyError, StoreError};
pub use identities::{IdentityMap, MemoryIdentityMap, Provisioned};
pub use identity_keys::{DatabaseId, IdentityKey, IdentityKeyError};
pub use int_keys::{
    HeldKey, IntKeyStore, KeyInfo, MemoryIntKeyStore, PushOutcome, RetentionPolicy,
};
pub use outbox::{Claim, InstanceId, NotificationOutbox, PendingNotification, events_of_push};
pub use sessions::{
    MemorySessionStore, SessionDigest, SessionInfo, SessionPolicy, SessionRef, SessionStore,
    generate_session_id,
};
pub use subscriptions::{
    MemorySubscriptionStore, SubscriptionPolicy, SubscriptionRecord, SubscriptionStore, UeFilter,
};
// The shared vocabulary the store traits speak (one definition for every e2m layer), and
// the identities they hold, so that a backend needs no second dependency to name them.
pub use e2m_kdf::E2mIntKey;
pub use e2m_keyid::{AppIdentity, EmseId, Imsi, KeyId};
pub use e2m_types::{EventSet, EventType, SessionId, SubscriptionId, Timestamp, UeRef};
pub use {e2m_kdf, e2m_keyid, e2m_types};
