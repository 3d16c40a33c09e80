#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod error;
mod events;
mod session;
mod subscription;
mod time;
mod ue;

pub use error::ParseError;
pub use events::{EventSet, EventType};
pub use session::SessionId;
pub use subscription::SubscriptionId;
pub use time::{Timestamp, TimestampText};
pub use ue::UeRef;

// The identities that `UeRef` holds, so that a user of this crate can name them.
pub use e2m_keyid::{AppIdentity, Imsi};
