//! The TLS profile of the EMSE↔EMKS reference point and the certificate checks on both ends.
//!
//! Seed 6.x.2.2.1: "The profile for TLS implementation and usage shall follow the provisions
//! given in 3GPP TS 33.310 Annex E", which for TLS points to the 3GPP TLS profile of
//! TS 33.210 §6.2:
//!
//! - §6.2.1: TLS 1.2 and TLS 1.3 only (SSL, TLS 1.0/1.1 "shall not be supported"); HTTP is run
//!   over a raw TLS connection, never upgraded (we only ever speak HTTPS);
//! - §6.2.2 (TLS 1.3): RFC 8446 §9.1 suites — TLS_AES_128_GCM_SHA256 (must),
//!   TLS_AES_256_GCM_SHA384 and TLS_CHACHA20_POLY1305_SHA256 (should); secp384r1 should be
//!   supported (it is, with X25519 and secp256r1); no 0-RTT (rustls servers refuse early data
//!   unless `max_early_data_size` is raised, which we never do);
//! - §6.2.3 (TLS 1.2): ECDHE with AEAD AES-GCM suites only; no renegotiation (rustls has
//!   none), no compression (rustls has none).
//!
//! The crypto provider is *ring*, installed explicitly in every configuration built here
//! ([`profile_provider`]), never picked up implicitly from the process default.
//!
//! Peer authentication: the server demands a client certificate chaining to the e2m CA
//! (webpki, including the `clientAuth` extended key usage) **and** carrying one e2m identity
//! of an accepted role ([`PeerIdentity`], see [`crate::pki`]); the handshake fails otherwise,
//! so an unauthenticated or unknown peer never reaches HTTP. The client checks the server's
//! certificate as usual (chain + host name) **and** that it names the expected role or
//! identity: an EMSE certificate, which has `serverAuth` for the notification endpoint, cannot
//! pose as the EMKS, and the EMKS posts a notification only to the EMSE that subscribed.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, ring as ring_provider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, Error, RootCertStore,
    ServerConfig, SignatureScheme,
};

use crate::pki::{Credentials, PeerIdentity, Role};

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsSetupError {
    /// rustls refused the configuration (bad key, unsupported version set, …).
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The trust anchors could not be used.
    #[error("CA certificate: {0}")]
    Roots(String),
    /// The verifier could not be built.
    #[error("certificate verifier: {0}")]
    Verifier(String),
}

/// The cipher suites of the profile (TS 33.210 §6.2.2 and §6.2.3; all AEAD).
pub fn profile_cipher_suites() -> Vec<rustls::SupportedCipherSuite> {
    use ring_provider::cipher_suite as cs;
    vec![
        cs::TLS13_AES_128_GCM_SHA256,
        cs::TLS13_AES_256_GCM_SHA384,
        cs::TLS13_CHACHA20_POLY1305_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ]
}

/// The protocol versions of the profile (TS 33.210 §6.2.1): TLS 1.3 and TLS 1.2.
pub static PROFILE_VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The *ring* provider restricted to the profile's suites (key exchange groups: X25519,
/// secp256r1, secp384r1, ring's full set).
pub fn profile_provider() -> Arc<CryptoProvider> {
    Arc::new(CryptoProvider {
        cipher_suites: profile_cipher_suites(),
        ..ring_provider::default_provider()
    })
}

/// Installs the profile provider as the process default, for any library that builds a
/// rustls configuration without being given a provider. Idempotent; a different provider
/// installed earlier by someone else is left in place (every configuration built in this
/// module names its provider explicitly anyway).
pub fn install_process_default_provider() {
    let _already_installed = CryptoProvider::install_default(CryptoProvider {
        cipher_suites: profile_cipher_suites(),
        ..ring_provider::default_provider()
    });
}

fn root_store(ca: &[CertificateDer<'static>]) -> Result<Arc<RootCertStore>, TlsSetupError> {
    let mut roots = RootCertStore::empty();
    for cert in ca {
        roots
            .add(cert.clone())
            .map_err(|e| TlsSetupError::Roots(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(TlsSetupError::Roots("no CA certificate".into()));
    }
    Ok(Arc::new(roots))
}

/// A check added to webpki's verification of a peer's certificate: it sees the end-entity
/// certificate once webpki has verified its chain and validity (and, for a server, the
/// name the client asked for), and says whether this peer may stand at the other end.
/// Another transport over the same PKI (the Diameter push, for one) states its own rule
/// with it and keeps everything else of the profile.
pub type CertificateCheck = Arc<dyn Fn(&CertificateDer<'_>) -> bool + Send + Sync>;

/// Mandatory client certificates chaining to `ca` (webpki, the profile's algorithms),
/// then `check`: a certificate that fails it fails the handshake with
/// `ApplicationVerificationFailure`.
///
/// # Errors
/// [`TlsSetupError`] if the CA is unusable.
pub fn checked_client_verifier(
    ca: &[CertificateDer<'static>],
    check: CertificateCheck,
) -> Result<Arc<dyn ClientCertVerifier>, TlsSetupError> {
    let inner = WebPkiClientVerifier::builder_with_provider(root_store(ca)?, profile_provider())
        .build()
        .map_err(|e| TlsSetupError::Verifier(e.to_string()))?;
    Ok(Arc::new(CheckedClientVerifier { inner, check }))
}

/// Server certificates chaining to `ca` and valid for the name connected to (webpki, the
/// profile's algorithms), then `check`.
///
/// # Errors
/// [`TlsSetupError`] if the CA is unusable.
pub fn checked_server_verifier(
    ca: &[CertificateDer<'static>],
    check: CertificateCheck,
) -> Result<Arc<dyn ServerCertVerifier>, TlsSetupError> {
    let inner = WebPkiServerVerifier::builder_with_provider(root_store(ca)?, profile_provider())
        .build()
        .map_err(|e| TlsSetupError::Verifier(e.to_string()))?;
    Ok(Arc::new(CheckedServerVerifier { inner, check }))
}

fn application_check(passed: bool) -> Result<(), Error> {
    if passed {
        Ok(())
    } else {
        Err(Error::InvalidCertificate(
            CertificateError::ApplicationVerificationFailure,
        ))
    }
}

struct CheckedClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    check: CertificateCheck,
}

impl core::fmt::Debug for CheckedClientVerifier {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CheckedClientVerifier")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl ClientCertVerifier for CheckedClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        // Seed 6.x.2.2.1: mutual authentication "shall be enabled".
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        application_check((self.check)(end_entity))?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A server TLS configuration: the profile, `credentials` as the server certificate, and
/// mandatory client certificates chaining to `ca` whose e2m role is in `accepted`.
/// ALPN offers HTTP/1.1 only (the transport serves HTTP/1.1; see `server`).
///
/// # Errors
/// [`TlsSetupError`] if the CA or the credentials are unusable.
pub fn server_config(
    credentials: &Credentials,
    ca: &[CertificateDer<'static>],
    accepted: &[Role],
) -> Result<Arc<ServerConfig>, TlsSetupError> {
    let accepted = accepted.to_vec();
    let verifier = checked_client_verifier(
        ca,
        Arc::new(move |cert: &CertificateDer<'_>| {
            PeerIdentity::from_certificate(cert).is_ok_and(|id| accepted.contains(&id.role()))
        }),
    )?;
    let mut config = ServerConfig::builder_with_provider(profile_provider())
        .with_protocol_versions(PROFILE_VERSIONS)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(credentials.chain.clone(), credentials.key())?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // TS 33.210 §6.2.2: no 0-RTT data (also rustls' default; stated for the reader).
    config.max_early_data_size = 0;
    Ok(Arc::new(config))
}

/// Whom a client expects at the other end, beyond the host name in the URL.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(
    clippy::large_enum_variant,
    reason = "built once per client configuration"
)]
#[non_exhaustive]
pub enum ExpectedServer {
    /// Any certificate with the EMKS role.
    AnyOfRole(Role),
    /// Exactly this identity (e.g. the EMSE whose callback a notification goes to).
    Exactly(PeerIdentity),
}

impl ExpectedServer {
    fn accepts(&self, identity: &PeerIdentity) -> bool {
        match self {
            ExpectedServer::AnyOfRole(role) => identity.role() == *role,
            ExpectedServer::Exactly(expected) => identity == expected,
        }
    }
}

struct CheckedServerVerifier {
    inner: Arc<WebPkiServerVerifier>,
    check: CertificateCheck,
}

impl core::fmt::Debug for CheckedServerVerifier {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CheckedServerVerifier")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl ServerCertVerifier for CheckedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        application_check((self.check)(end_entity))?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A client TLS configuration: the profile, `credentials` as the client certificate, server
/// certificates chaining to `ca`, valid for the host name, and naming `expected`.
/// ALPN offers HTTP/1.1 only.
///
/// # Errors
/// [`TlsSetupError`] if the CA or the credentials are unusable.
pub fn client_config(
    credentials: &Credentials,
    ca: &[CertificateDer<'static>],
    expected: ExpectedServer,
) -> Result<ClientConfig, TlsSetupError> {
    let verifier = checked_server_verifier(
        ca,
        Arc::new(move |cert: &CertificateDer<'_>| {
            PeerIdentity::from_certificate(cert).is_ok_and(|id| expected.accepts(&id))
        }),
    )?;
    let mut config = ClientConfig::builder_with_provider(profile_provider())
        .with_protocol_versions(PROFILE_VERSIONS)?
        .dangerous() // Not dangerous: the custom verifier *adds* a check to webpki's.
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(credentials.chain.clone(), credentials.key())?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The hosts a certificate names (subjectAltName dNSName and iPAddress entries): where the
/// EMKS accepts callbacks from its holder (issue 9 item 5; see [`e2m_emks::CallbackHost`]).
/// Entries that are neither a host name nor a 4- or 16-octet address are left out.
#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub fn certified_hosts(der: &[u8]) -> Vec<e2m_emks::CallbackHost> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return Vec::new();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => e2m_emks::CallbackHost::dns(dns),
            GeneralName::IPAddress(octets) => {
                let ip: std::net::IpAddr = match octets.len() {
                    4 => <[u8; 4]>::try_from(*octets).ok()?.into(),
                    16 => <[u8; 16]>::try_from(*octets).ok()?.into(),
                    _ => return None,
                };
                Some(e2m_emks::CallbackHost::Ip(ip))
            }
            _ => None,
        })
        .collect()
}

/// The hosts the verified certificate of an established server-side connection names.
#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub fn peer_hosts(conn: &rustls::ServerConnection) -> Vec<e2m_emks::CallbackHost> {
    conn.peer_certificates()
        .and_then(|chain| chain.first())
        .map(|leaf| certified_hosts(leaf))
        .unwrap_or_default()
}

/// The verified identity of the peer of an established server-side connection, if any.
pub fn peer_identity(conn: &rustls::ServerConnection) -> Option<PeerIdentity> {
    let leaf = conn.peer_certificates()?.first()?;
    PeerIdentity::from_certificate(leaf).ok()
}
