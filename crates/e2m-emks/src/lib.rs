#![doc = include_str!("../README.md")]

mod audit;
mod config;
mod convert;
mod emks;
mod peer;

pub use audit::{Action, AuditRecord, Effects, OutboundNotification, Outcome, Verdict};
pub use config::EmksConfig;
pub use e2m_keystore::Timestamp;
pub use emks::Emks;
pub use peer::Peer;
