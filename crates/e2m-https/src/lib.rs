//! The EMKS transport: RESTful HTTPS with mutual TLS between EMSE and EMKS (seed clause
//! 6.x.2.2) and the HSS's push of intermediate keys, around the sans-IO core `e2m-emks`.
//!
//! - [`admission`]: the pre-TLS admission pools (fair between sources), shared with other
//!   server stacks;
//! - [`pki`]: where an e2m identity sits in a certificate, credentials and PKI directories
//!   (and, with the `pki-gen` feature, certificate generation for tests and demos);
//! - [`tls`]: the TLS profile (TS 33.310 Annex E → TS 33.210 §6.2) and the certificate
//!   identity checks of both ends;
//! - [`server`]: the hardened HTTPS server stack, generic over a [`server::Handler`];
//! - [`ratelimit`]: the per-peer request budget;
//! - [`metrics`]: the events an operator's metrics observe ([`metrics::EmksObserver`]);
//! - [`emks`]: the EMKS itself ([`emks::start_emks`]): routes, core calls, effects;
//! - [`delivery`]: the deliverer of the notifications in the store's outbox (lease,
//!   retry with backoff, a budget per EMSE);
//! - [`client`]: the EMSE's and HSS's client ([`client::EmksClient`]) and the EMKS's
//!   notifier;
//! - [`notify`]: the EMSE's notification endpoint;
//! - [`respond`]: responses and problem documents of the binding.
//!
//! Each side is a feature (the README's "Features"): `client` ([`client`]), `server`
//! ([`server`], [`ratelimit`], [`respond`], [`metrics`]), `emks` ([`emks`], [`delivery`];
//! implies both), `notify-endpoint` ([`notify`]), `pki-gen` (certificate generation). The
//! default is all but `pki-gen`; [`pki`] and [`tls`] are always there. An EMSE that only
//! fetches keys builds with `default-features = false, features = ["client"]`.
//!
//! Composing the system (what the examples and the demo do):
//!
//! ```no_run
//! # #[cfg(all(feature = "pki-gen", feature = "emks"))]
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use e2m_https::{client::EmksClient, emks::{start_emks, EmksServerOptions}};
//! use e2m_https::pki::{GeneratedPki, PkiSpec};
//! use e2m_keyid::EmseId;
//!
//! let spec = PkiSpec::new(vec![EmseId::new("emse-a")?])?;
//! let pki = GeneratedPki::generate(&spec)?.write_to(std::path::Path::new("/tmp/e2m-pki"))?;
//! let core = Arc::new(e2m_emks::Emks::in_memory(Default::default()));
//! let emks = start_emks(core, &pki, EmksServerOptions::default()).await?; // 127.0.0.1:0
//! let ca = pki.ca_certificates()?;
//! let emse = EmksClient::new(&emks.base_url(), &pki.emse(&EmseId::new("emse-a")?)?, &ca)?;
//! let session = emse.register(None).await?;
//! emse.deregister(session.session_id).await?;
//! emks.shutdown().await;
//! # Ok(()) }
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub mod admission;
#[cfg(feature = "client")]
#[cfg_attr(docsrs, doc(cfg(feature = "client")))]
pub mod client;
#[cfg(feature = "server")]
mod closing;
#[cfg(feature = "emks")]
#[cfg_attr(docsrs, doc(cfg(feature = "emks")))]
pub mod delivery;
#[cfg(feature = "emks")]
#[cfg_attr(docsrs, doc(cfg(feature = "emks")))]
pub mod emks;
#[cfg(feature = "server")]
mod http1;
#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub mod metrics;
#[cfg(feature = "notify-endpoint")]
#[cfg_attr(docsrs, doc(cfg(feature = "notify-endpoint")))]
pub mod notify;
// The pace after 429s: the client's, and (with `emks`, which implies `client`) the
// deliverer's per EMSE.
#[cfg(feature = "client")]
mod pace;
pub mod pki;
#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub mod ratelimit;
#[cfg(feature = "server")]
mod request_head;
#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub mod respond;
#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub mod server;
pub mod tls;

// The crates whose types this crate's signatures expose, so that a user needs no second
// dependency to name them (the hkdf `pub use hmac` / rustls `pki_types` pattern).
#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub use e2m_emks;
pub use e2m_keyid;
#[cfg(feature = "emks")]
#[cfg_attr(docsrs, doc(cfg(feature = "emks")))]
pub use e2m_keystore;
#[cfg(any(feature = "client", feature = "server"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "client", feature = "server"))))]
pub use e2m_msg;
pub use rustls;
