//! TLS for the SBI: the 3GPP profile of `e2m-https` (TS 33.210 §6.2: TLS 1.2 and 1.3, AEAD
//! suites, the *ring* provider named explicitly), with ALPN `h2` (TS 29.500 §5.2.2), and the
//! names a peer's verified certificate carries (TS 33.310 §6.1.3c: the NF's FQDN as a
//! subjectAltName dNSName, its NF instance ID as a `urn:uuid:` URI).
//!
//! Unlike the e2m PKI, an SBI certificate carries no `urn:e2m:` role: who may do what is the
//! AAnF's configuration, keyed by the certificate's names (`e2m_aanf::AanfConfig`). So the
//! server's client-certificate check is webpki's as it is (chain to the configured CA,
//! validity, `clientAuth`), and a client checks the server's certificate by chain and host
//! name as any HTTPS client does.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use e2m_aanf::Host;
use e2m_https::pki::Credentials;
use e2m_https::tls::{PROFILE_VERSIONS, TlsSetupError, profile_provider};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// The ALPN protocol identifier of HTTP/2 over TLS (RFC 9113 §3.2).
pub const ALPN_H2: &[u8] = b"h2";
/// The ALPN identifier of HTTP/1.1: the server offers it only to answer such a client with
/// a 505 problem document instead of a handshake failure it cannot read.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// Why credentials or trust anchors could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PemError {
    /// The file could not be read or holds no usable PEM object of the kind asked for.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// What was wrong (never the file's contents).
        reason: String,
    },
}

fn pem_error(path: &Path, reason: impl std::fmt::Display) -> PemError {
    PemError::File {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Reads a certificate chain (PEM, end-entity first) and its private key (PEM, PKCS#8,
/// SEC1 or PKCS#1).
///
/// # Errors
/// [`PemError`] if a file is unreadable or holds no certificate or key.
pub fn load_credentials(cert: &Path, key: &Path) -> Result<Credentials, PemError> {
    let chain = load_certificates(cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_error(key, e))?;
    Ok(Credentials::new(chain, key))
}

/// Reads every certificate of a PEM file (trust anchors, or a chain).
///
/// # Errors
/// [`PemError`] if the file is unreadable or holds no certificate.
pub fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(pem_error(path, "no certificate"));
    }
    Ok(certs)
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

/// The server configuration of an SBI producer (the AAnF; an AF's notification endpoint):
/// the profile, `credentials`, and **mandatory** client certificates chaining to `ca` with
/// the `clientAuth` extended key usage (webpki). ALPN offers `h2`, then `http/1.1`, which
/// is answered with 505 only (see the crate docs); a client offering neither is refused
/// in the handshake (`no_application_protocol`).
///
/// # Errors
/// [`TlsSetupError`] if the CA or the credentials are unusable.
pub fn server_config(
    credentials: &Credentials,
    ca: &[CertificateDer<'static>],
) -> Result<Arc<ServerConfig>, TlsSetupError> {
    let provider = profile_provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(root_store(ca)?, provider.clone())
        .build()
        .map_err(|e| TlsSetupError::Verifier(e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(PROFILE_VERSIONS)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(credentials.chain.clone(), credentials.key())?;
    config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP11.to_vec()];
    // TS 33.210 §6.2.2: no 0-RTT data (rustls' default too).
    config.max_early_data_size = 0;
    Ok(Arc::new(config))
}

/// The client configuration of an SBI consumer (the AUSF, an AF, a NEF; the AAnF posting
/// notifications): the profile, `credentials` as the client certificate, server
/// certificates chaining to `ca` and valid for the host name of the URI; ALPN `h2` only.
///
/// # Errors
/// [`TlsSetupError`] if the CA or the credentials are unusable.
pub fn client_config(
    credentials: &Credentials,
    ca: &[CertificateDer<'static>],
) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let provider = profile_provider();
    let verifier = WebPkiServerVerifier::builder_with_provider(root_store(ca)?, provider.clone())
        .build()
        .map_err(|e| TlsSetupError::Verifier(e.to_string()))?;
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(PROFILE_VERSIONS)?
        .with_webpki_verifier(verifier)
        .with_client_auth_cert(credentials.chain.clone(), credentials.key())?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// What a verified certificate says about its holder.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertNames {
    /// Its subjectAltName dNSName and iPAddress entries, in order (the FQDN of an NF or
    /// AF; a wildcard stays a wildcard and never makes an identity).
    pub hosts: Vec<Host>,
    /// Its NF instance ID (TS 33.310 §6.1.3c: a subjectAltName URI `urn:uuid:<uuid>`), in
    /// lower case, if it has exactly one.
    pub nf_instance: Option<Box<str>>,
}

/// The names of the certificate `der` (nothing for a certificate that does not parse).
pub fn cert_names(der: &[u8]) -> CertNames {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return CertNames::default();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return CertNames::default();
    };
    let mut names = CertNames::default();
    let mut instances = Vec::new();
    for name in &san.value.general_names {
        match name {
            GeneralName::DNSName(dns) => {
                if let Ok(host) = Host::dns(dns) {
                    names.hosts.push(host);
                }
            }
            GeneralName::IPAddress(octets) => {
                let ip: Option<IpAddr> = match octets.len() {
                    4 => <[u8; 4]>::try_from(*octets).ok().map(IpAddr::from),
                    16 => <[u8; 16]>::try_from(*octets).ok().map(IpAddr::from),
                    _ => None,
                };
                if let Some(ip) = ip {
                    names.hosts.push(Host::Ip(ip));
                }
            }
            GeneralName::URI(uri) => {
                if let Some(uuid) = nf_instance_of(uri) {
                    instances.push(uuid);
                }
            }
            _ => {}
        }
    }
    if let [one] = &instances[..] {
        names.nf_instance = Some(one.as_str().into());
    }
    names
}

/// The UUID of a `urn:uuid:` URI (RFC 9562 §4: 8-4-4-4-12 hex digits), lower case.
fn nf_instance_of(uri: &str) -> Option<String> {
    let rest = uri
        .get(..9)
        .filter(|p| p.eq_ignore_ascii_case("urn:uuid:"))
        .map(|_| &uri[9..])?;
    let groups: Vec<&str> = rest.split('-').collect();
    let lengths = [8, 4, 4, 4, 12];
    let ok = groups.len() == 5
        && groups
            .iter()
            .zip(lengths)
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()));
    ok.then(|| rest.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nf_instance_ids_are_uuid_urns() {
        assert_eq!(
            nf_instance_of("urn:uuid:4947A69A-f61b-4bc1-b9da-47c9c5d14b64").as_deref(),
            Some("4947a69a-f61b-4bc1-b9da-47c9c5d14b64")
        );
        assert_eq!(nf_instance_of("urn:uuid:4947a69a-f61b-4bc1-b9da"), None);
        assert_eq!(nf_instance_of("urn:e2m:emse:x"), None);
        assert_eq!(nf_instance_of("urn:uu"), None);
    }
}
