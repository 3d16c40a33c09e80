#![doc = include_str!("../README.md")]

mod audit;
mod callback;
mod config;
mod emks;
mod peer;

pub use audit::{
    Action, AuditRecord, AuditRecords, Effects, OutboundNotification, Outcome, Verdict,
};
pub use callback::{
    AllowedCallback, BadAllowedCallback, BadCallbackHost, CallbackHost, HTTPS_DEFAULT_PORT,
    callback_target,
};
pub use config::EmksConfig;
// The crates whose types the core's signatures expose, so that a user of this crate names
// them without adding dependencies (the hkdf `pub use hmac` / rustls `pki_types` pattern).
pub use e2m_types::Timestamp;
pub use emks::Emks;
pub use peer::{EmsePeer, Peer};
pub use {e2m_kdf, e2m_keyid, e2m_keystore, e2m_msg, e2m_types};
