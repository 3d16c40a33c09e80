#![doc = include_str!("../README.md")]

mod aanf;
mod audit;
mod config;
mod peer;

pub use aanf::{Aanf, OutboundNotification};
pub use audit::{Action, AuditRecord, Effects, Outcome, Problem, Role, Verdict};
pub use config::{AanfConfig, AfPolicy, ConfigError};
pub use peer::{BadHost, Caller, Host, Peer, Scope, Scopes};
// The crates whose types the core's signatures expose, so that a binding names them without
// adding dependencies.
pub use e2m_types::Timestamp;
pub use {e2m_akma, e2m_kdf, e2m_keyid, e2m_keystore};
