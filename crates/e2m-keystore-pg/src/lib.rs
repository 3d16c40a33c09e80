#![doc = include_str!("../README.md")]

mod akma;
mod backend;
mod config;
mod error;
mod identities;
mod int_keys;
mod outbox;
mod schema;
mod sessions;
mod subscriptions;

pub use akma::PgAkmaContexts;
pub use backend::PgBackend;
pub use config::PgConfig;
pub use error::{BackendError, ConnectError, PoolError};
pub use identities::PgIdentityMap;
pub use int_keys::PgIntKeyStore;
pub use sessions::PgSessionStore;
pub use subscriptions::PgSubscriptionStore;
// What the constructors take, so that a user needs no second dependency to call them.
pub use e2m_keystore;
pub use e2m_seal;
