#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod aanf;
pub mod client;
pub mod delivery;
pub mod notify;
pub mod pki;
pub mod respond;
pub mod server;
pub mod tls;
pub mod token;

// The crates whose types this crate's signatures expose.
pub use e2m_aanf;
pub use e2m_akma;
pub use e2m_https;
pub use e2m_keystore;
pub use rustls;
