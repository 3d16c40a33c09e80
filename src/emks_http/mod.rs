//! The EMKS transport: RESTful HTTPS with mutual TLS between EMSE and EMKS (seed clause
//! 6.x.2.2) and the HSS's push of intermediate keys, around the sans-IO core `e2m-emks`.
//!
//! - [`tls`]: the TLS profile (TS 33.310 Annex E → TS 33.210 §6.2) and the certificate
//!   identity checks of both ends;
//! - [`server`]: the hardened HTTPS server stack, generic over a [`server::Handler`];
//! - [`ratelimit`]: the per-peer request budget.

pub mod client;
pub mod emks;
pub mod notify;
pub mod ratelimit;
pub mod respond;
pub mod server;
pub mod tls;
