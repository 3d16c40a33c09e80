//! The EMSE's and the UE's UDP endpoints on e2m keys: DTLS 1.2 with a pre-shared key
//! (seed 6.x.2.3 steps 1–8, on the sans-IO `dimpl` state machine) and, beside it, CoAP
//! protected with OSCORE (RFC 8613, the e2m profile of the sans-IO `e2m-oscore`), over tokio
//! UDP. Both resolve a UE's key through the same [`PskResolver`] (in the EMSE: the EMKS key
//! source with its cache, feature `emks`).
//!
//! - One cipher suite only: TLS_PSK_WITH_AES_128_CCM_8 (0xC0A8, RFC 6655), the suite CoAP
//!   mandates for PSK mode (RFC 7252 §9.1.3.1) and the RFC 7925 §4.2 IoT profile uses.
//! - `psk_identity` = the e2m [`PskIdentity`] text (application identity and key id, seed
//!   step 4); the PSK = the 32 octets of [`E2mKey`] (seed step 3 / step 7).
//! - [`client::DtlsClient`] is the UE side; [`server::DtlsServer`] the EMSE side, which asks
//!   a [`PskResolver`] (in the demo: the EMKS client, seed steps 5–6) for the key of each
//!   identity without blocking the runtime (see [`server`] for how).
//! - Cookie first (RFC 6347 §4.2.1): [`server::DtlsServer`] answers a new source address
//!   statelessly with a HelloVerifyRequest; only a returned cookie creates per-peer state,
//!   and only such a peer can make the EMSE fetch a key. Peers are bounded globally and per
//!   source IP ([`server::ServerConfig`]), and so are key fetches that find no key
//!   ([`server::ServerConfig::fetch_budget`]).
//! - A failed handshake ends with a fatal alert ([`AlertDescription`]; which one for a PSK
//!   failure: [`server::PskFailureAlert`]), which the client reports as
//!   [`DtlsError::Alert`].
//! - The AKMA Ua* profile (TS 24.109 K.3.2) beside the e2m one: [`akma`] (the
//!   `"3GPP-AKMA"` hint and `psk_identity`, K_AF as the PSK), served by
//!   [`server::DtlsServer::bind_with_akma`] with K_AF from an [`akma::AkmaResolver`]
//!   ([`akma_source::AkmaKeySource`] over the AAnF client), spoken by
//!   [`client::UeDtlsConfig::akma`]. A handshake names a [`PeerIdentity`] of either profile.
//! - CoAP ([`e2m_coap`], re-exported) is the application protocol on top.
//! - [`oscore_server::OscoreServer`] is the EMSE's OSCORE endpoint (keys through the same
//!   resolver; spoofed sources bounded by a fetch budget per source address) and
//!   [`oscore_client::OscoreClient`] the UE's. Their decisions are `e2m-oscore`'s.
//!
//! Secrets: the PSK is handed to `dimpl` as a `Vec<u8>` because that is its API; `dimpl`
//! keeps it (and the master secret) in memory it does not zeroize. Our own copies are
//! zeroized; no log line at any level carries key bytes (dimpl logs only lengths).

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod akma;
pub mod akma_source;
mod budget;
pub mod client;
mod cookie;
mod crypto;
pub mod derived_record;
#[cfg(feature = "emks")]
#[cfg_attr(docsrs, doc(cfg(feature = "emks")))]
pub mod emks_source;
pub mod oscore_client;
pub mod oscore_server;
mod record;
pub mod server;
mod udp;

use std::sync::Arc;
use std::time::Duration;

use dimpl::crypto::Dtls12CipherSuite;
use e2m_keyid::PskIdentity;
use e2m_keyid::akma::AKid;

pub use e2m_coap;
pub use e2m_kdf::{E2mKey, Kaf};
pub use e2m_keyid;
pub use e2m_oscore;

/// Why the EMSE has no key for a `psk_identity`. By default the handshake then fails
/// exactly as for a wrong PSK, with a `decrypt_error` alert (RFC 4279 §2 lets a server
/// abort with `unknown_psk_identity` instead, but answering like a wrong key does not tell
/// a prober which identities exist; [`server::PskFailureAlert`] chooses).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// The key server does not know this UE for this EMSE, or refuses it (one answer for
    /// both, DESIGN "REST binding").
    #[error("unknown identity or not provisioned for this EMSE")]
    UnknownIdentity,
    /// The key id names a key that is no longer held: the UE must re-authenticate
    /// (seed "Considerations on the key identifier").
    #[error("key id not held (the UE must re-authenticate)")]
    KeyNotHeld,
    /// The key server could not be asked (transport, status, timeout); a short reason
    /// without key material.
    #[error("key server unavailable: {0}")]
    Unavailable(String),
}

/// Where the EMSE gets the PSK for a `psk_identity` (seed 6.x.2.3 steps 5–7).
///
/// The future must be `Send`: it runs on the peer's own task, so while it waits other
/// peers' handshakes carry on.
///
/// ```
/// use e2m_dtls::{PskResolver, ResolveError};
/// use e2m_kdf::E2mKey;
/// use e2m_keyid::PskIdentity;
///
/// struct Static(E2mKey);
/// impl PskResolver for Static {
///     async fn resolve(&self, _identity: &PskIdentity) -> Result<E2mKey, ResolveError> {
///         Ok(self.0.copy_secret())
///     }
/// }
/// ```
pub trait PskResolver: Send + Sync + 'static {
    /// The `e2m_key` for `identity`.
    ///
    /// # Errors
    /// A [`ResolveError`]; the handshake then fails.
    fn resolve(
        &self,
        identity: &PskIdentity,
    ) -> impl Future<Output = Result<E2mKey, ResolveError>> + Send;

    /// The answer for `identity` if the resolver has it at hand, without asking its key
    /// server (a cache hit, positive or negative), else `None` (the default).
    ///
    /// The DTLS server asks this first and spends the source's fetch budget
    /// ([`server::ServerConfig::fetch_budget`]) only when it returns `None`, so that a UE
    /// whose key is cached connects even when another host behind its address has spent
    /// the budget. An answer given here must be one [`PskResolver::resolve`] would give.
    fn resolve_local(&self, identity: &PskIdentity) -> Option<Result<E2mKey, ResolveError>> {
        let _ = identity;
        None
    }
}

impl<R: PskResolver> PskResolver for Arc<R> {
    fn resolve(
        &self,
        identity: &PskIdentity,
    ) -> impl Future<Output = Result<E2mKey, ResolveError>> + Send {
        (**self).resolve(identity)
    }

    fn resolve_local(&self, identity: &PskIdentity) -> Option<Result<E2mKey, ResolveError>> {
        (**self).resolve_local(identity)
    }
}

/// One key for every identity (the `emse` example's `--psk-hex` mode and the tests).
pub struct StaticPsk(pub E2mKey);

impl PskResolver for StaticPsk {
    async fn resolve(&self, _identity: &PskIdentity) -> Result<E2mKey, ResolveError> {
        Ok(self.0.copy_secret())
    }

    fn resolve_local(&self, _identity: &PskIdentity) -> Option<Result<E2mKey, ResolveError>> {
        Some(Ok(self.0.copy_secret()))
    }
}

/// A resolver that knows no e2m identity: for an AF that serves only the AKMA profile
/// ([`server::DtlsServer::bind_with_akma`]). Every e2m identity fails as unknown, without
/// a fetch.
pub struct NoPsk;

impl PskResolver for NoPsk {
    async fn resolve(&self, _identity: &PskIdentity) -> Result<E2mKey, ResolveError> {
        Err(ResolveError::UnknownIdentity)
    }

    fn resolve_local(&self, _identity: &PskIdentity) -> Option<Result<E2mKey, ResolveError>> {
        Some(Err(ResolveError::UnknownIdentity))
    }
}

/// Whom a handshake names: the `psk_identity` as the EMSE/AF read it, in one of the two
/// profiles one server can serve.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PeerIdentity {
    /// The e2m profile: application identity and key id (seed step 4).
    E2m(PskIdentity),
    /// The AKMA Ua* profile (TS 24.109 K.3.2 e)): the A-KID after the `"3GPP-AKMA"` prefix.
    Akma(AKid),
}

impl PeerIdentity {
    /// The e2m identity, if this is one.
    pub fn e2m(&self) -> Option<&PskIdentity> {
        match self {
            PeerIdentity::E2m(id) => Some(id),
            PeerIdentity::Akma(_) => None,
        }
    }

    /// The A-KID, if this is an AKMA identity.
    pub fn akma(&self) -> Option<&AKid> {
        match self {
            PeerIdentity::Akma(a_kid) => Some(a_kid),
            PeerIdentity::E2m(_) => None,
        }
    }
}

impl From<PskIdentity> for PeerIdentity {
    fn from(id: PskIdentity) -> Self {
        PeerIdentity::E2m(id)
    }
}

impl From<AKid> for PeerIdentity {
    fn from(a_kid: AKid) -> Self {
        PeerIdentity::Akma(a_kid)
    }
}

impl PartialEq<PskIdentity> for PeerIdentity {
    fn eq(&self, other: &PskIdentity) -> bool {
        self.e2m() == Some(other)
    }
}

impl PartialEq<AKid> for PeerIdentity {
    fn eq(&self, other: &AKid) -> bool {
        self.akma() == Some(other)
    }
}

/// The e2m identity in its `psk_identity` text; an A-KID as `3GPP-AKMA` and the A-KID
/// (the `psk_identity` of [`akma::AkmaIdentityForm::Prefixed`]).
impl core::fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PeerIdentity::E2m(id) => core::fmt::Display::fmt(id, f),
            PeerIdentity::Akma(a_kid) => write!(f, "{}{a_kid}", akma::AKMA_PSK_IDENTITY_PREFIX),
        }
    }
}

/// The PSK of one handshake, of either profile. Crate-private: outside it the two kinds
/// of key stay apart ([`E2mKey`], [`Kaf`]).
pub(crate) enum PskKey {
    E2m(E2mKey),
    Af(Kaf),
}

impl PskKey {
    pub(crate) fn expose_secret(&self) -> &[u8; 32] {
        match self {
            PskKey::E2m(key) => key.expose_secret(),
            PskKey::Af(key) => key.expose_secret(),
        }
    }
}

/// Why a DTLS operation failed. No variant carries key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DtlsError {
    /// Socket error.
    #[error("UDP: {0}")]
    Io(#[from] std::io::Error),
    /// The DTLS state machine failed (fatal for the connection, as all dimpl errors are).
    #[error("DTLS: {0}")]
    Protocol(String),
    /// No answer within the time allowed.
    #[error("timed out")]
    Timeout,
    /// The peer closed the connection (close_notify).
    #[error("peer closed the connection")]
    Closed,
    /// The configuration was refused.
    #[error("configuration: {0}")]
    Config(String),
    /// The peer ended the handshake with a fatal alert (RFC 5246 §7.2).
    #[error("the peer sent a fatal alert: {0}")]
    Alert(AlertDescription),
}

impl From<dimpl::Error> for DtlsError {
    fn from(e: dimpl::Error) -> Self {
        match e {
            dimpl::Error::SecurityError(dimpl::SecurityError::FatalAlert { description }) => {
                DtlsError::Alert(AlertDescription(description))
            }
            // dimpl's errors name states and alerts, never key bytes.
            e => DtlsError::Protocol(format!("{e:?}")),
        }
    }
}

/// A TLS alert description (RFC 5246 §7.2, RFC 4279 §2): an open newtype over the wire
/// octet with the values this crate sends and reports named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AlertDescription(pub u8);

impl AlertDescription {
    /// `unexpected_message` (10).
    pub const UNEXPECTED_MESSAGE: Self = Self(10);
    /// `handshake_failure` (40): no acceptable set of security parameters, e.g. no common
    /// cipher suite (RFC 5246 §7.2.2).
    pub const HANDSHAKE_FAILURE: Self = Self(40);
    /// `illegal_parameter` (47).
    pub const ILLEGAL_PARAMETER: Self = Self(47);
    /// `decode_error` (50).
    pub const DECODE_ERROR: Self = Self(50);
    /// `decrypt_error` (51): the Finished check failed, i.e. the two sides do not share
    /// the PSK (RFC 4279 §2: also the answer for an identity the server hides).
    pub const DECRYPT_ERROR: Self = Self(51);
    /// `protocol_version` (70).
    pub const PROTOCOL_VERSION: Self = Self(70);
    /// `internal_error` (80): the EMSE could not get a key for reasons that are not the
    /// UE's (its key server did not answer); trying again later may succeed.
    pub const INTERNAL_ERROR: Self = Self(80);
    /// `unknown_psk_identity` (115, RFC 4279 §2): the server knows no key for this
    /// identity (for e2m: unknown UE, or a key id no longer held — re-authenticate).
    pub const UNKNOWN_PSK_IDENTITY: Self = Self(115);

    /// The alert's name in RFC 5246 / RFC 4279, if it is one of the named ones.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            Self::UNEXPECTED_MESSAGE => "unexpected_message",
            Self::HANDSHAKE_FAILURE => "handshake_failure",
            Self::ILLEGAL_PARAMETER => "illegal_parameter",
            Self::DECODE_ERROR => "decode_error",
            Self::DECRYPT_ERROR => "decrypt_error",
            Self::PROTOCOL_VERSION => "protocol_version",
            Self::INTERNAL_ERROR => "internal_error",
            Self::UNKNOWN_PSK_IDENTITY => "unknown_psk_identity",
            _ => return None,
        })
    }
}

impl core::fmt::Display for AlertDescription {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} ({})", self.0),
            None => write!(f, "alert {}", self.0),
        }
    }
}

/// Timing and size limits shared by client and server.
#[derive(Debug, Clone)]
pub struct DtlsLimits {
    /// Whole-handshake deadline (RFC 6347 §4.2.4 leaves it to the implementation).
    pub handshake_timeout: Duration,
    /// First retransmission timer (RFC 6347 §4.2.4.1 recommends 1 s).
    pub flight_start_rto: Duration,
    /// Largest datagram produced (RFC 7925 §11 asks for small records on constrained links).
    pub mtu: usize,
}

impl Default for DtlsLimits {
    fn default() -> Self {
        DtlsLimits {
            handshake_timeout: Duration::from_secs(10),
            flight_start_rto: Duration::from_secs(1),
            mtu: 1150,
        }
    }
}

fn builder(limits: &DtlsLimits) -> dimpl::ConfigBuilder {
    dimpl::Config::builder()
        .with_crypto_provider(crypto::provider())
        .dtls12_cipher_suites(&[Dtls12CipherSuite::PSK_AES128_CCM_8])
        // DTLS 1.2 only: the seed's flow and RFC 7925 are DTLS 1.2.
        .dtls13_cipher_suites(&[])
        .handshake_timeout(limits.handshake_timeout)
        .flight_start_rto(limits.flight_start_rto)
        .mtu(limits.mtu)
}

/// Largest datagram we accept from the socket.
const MAX_DATAGRAM: usize = 2048;
