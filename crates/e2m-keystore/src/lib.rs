#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod error;
mod identities;
mod int_keys;
mod packed;
mod sessions;
mod shard;
mod subscriptions;
mod time;

#[cfg(feature = "conformance")]
#[cfg_attr(docsrs, doc(cfg(feature = "conformance")))]
pub mod conformance;

pub use error::{Limit, PolicyError, StoreError};
pub use identities::{IdentityMap, MemoryIdentityMap, Provisioned};
pub use int_keys::{
    HeldKey, IntKeyStore, KeyInfo, MemoryIntKeyStore, PushOutcome, RetentionPolicy,
};
pub use sessions::{
    MemorySessionStore, SessionId, SessionIdError, SessionInfo, SessionPolicy, SessionRef,
    SessionStore,
};
pub use subscriptions::{
    EventSet, MemorySubscriptionStore, Subscription, SubscriptionId, SubscriptionPolicy,
    SubscriptionStore, UeFilter, UeName,
};
pub use time::Timestamp;
