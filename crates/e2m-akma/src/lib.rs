#![doc = include_str!("../README.md")]

mod api;
mod error;
mod messages;
mod problem;
mod types;
mod wire;

pub use api::{NAANF_AKMA_ROOT, NEF_AKMA_ROOT, Operation, scope};
pub use error::DecodeError;
pub use messages::{
    AkmaAfKeyData, AkmaAfKeyRequest, AkmaKeyInfo, CtxRemove, NefAkmaAfKeyData, ServiceDisableNotif,
    UeId,
};
pub use problem::{InvalidParam, ProblemDetails, cause};
pub use types::{NotifUri, SupportedFeatures, ValueError};
pub use wire::{JsonBody, MAX_BODY, SecretBuffer};

/// The identifier crate whose types (`Supi`, `Gpsi`, `AKid`, `AfId`) the bodies hold.
pub use e2m_keyid;
/// The time type of `expiry`.
pub use e2m_types::Timestamp;
