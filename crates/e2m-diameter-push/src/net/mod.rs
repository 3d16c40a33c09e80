//! The push application over the network (feature `net`): the EMKS's Diameter listener
//! ([`start_emks_diameter`]), which hands every push to the same core decision as the
//! HTTPS interface, and the HSS's Diameter client ([`HssDiameter`]), both over
//! `e2m-diameter-net`'s tokio driver, on TCP or TLS with the e2m certificates.

mod emks;
mod hss;
mod tls;

pub use emks::{EmksDiameter, EmksDiameterConfig, EmksDiameterOptions, start_emks_diameter};
pub use hss::{HssDiameter, HssDiameterConfig, HssPeer, PushAck, PushError, RetryPolicy};
pub use tls::{DiameterTls, emks_server_config, hss_client_config};

pub use e2m_diameter_net;

/// Product-Name of our CER/CEA.
const PRODUCT_NAME: &str = "e2m-diameter-push";

/// Why a Diameter role could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiameterStartError {
    /// The node's configuration (an identity that is not a DiameterIdentity, timers).
    #[error("Diameter configuration: {0}")]
    Config(#[from] e2m_diameter::ConfigError),
    /// The profile's dictionary clashes with the base protocol.
    #[error("Diameter dictionary: {0}")]
    Dictionary(#[from] e2m_diameter::DictionaryError),
    /// TLS material.
    #[error(transparent)]
    Tls(#[from] e2m_https::tls::TlsSetupError),
    /// A peer asks for TLS and no TLS material was given.
    #[error("peer {0} needs TLS (aaas://) but no certificate was given")]
    TlsMissing(String),
    /// A peer identity that cannot be a TLS server name.
    #[error("{0} is not a host name")]
    Identity(String),
    /// The socket.
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
}

/// DiameterIdentities compare case-insensitively (RFC 6733 §4.3.1, FQDNs).
fn same_host(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// The Unix time in seconds, as an Origin-State-Id that grows across restarts.
fn unix_now_u32() -> u32 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    u32::try_from(secs).unwrap_or(u32::MAX)
}

/// Fresh randomness for the node (first Hop-by-Hop and End-to-End ids, watchdog jitter):
/// the clock's nanoseconds mixed with the process id and the address of a stack value
/// (RFC 6733 §3 asks only that End-to-End ids not repeat soon, across restarts too).
fn seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let local = 0u8;
    let addr = &local as *const u8 as usize as u64;
    (nanos as u64) ^ (u64::from(std::process::id()) << 32) ^ addr.rotate_left(17)
}
