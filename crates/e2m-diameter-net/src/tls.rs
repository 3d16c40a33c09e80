//! TLS (RFC 6733 §13): the stream types and the names a verified certificate gives its
//! holder.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};

/// A byte stream the driver reads and writes: plain TCP or TLS over TCP.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

pub(crate) type BoxStream = Box<dyn Stream>;

/// How to connect to a peer over TLS: the client configuration (with this node's
/// certificate for mutual authentication) and the name the server's certificate must be
/// valid for (usually the peer's DiameterIdentity).
#[derive(Clone, Debug)]
pub struct ClientTls {
    /// The rustls client configuration.
    pub config: Arc<rustls::ClientConfig>,
    /// The server name to verify (and to send as SNI).
    pub server_name: ServerName<'static>,
}

/// The dNSName entries of a DER certificate's subjectAltName (the certificate has been
/// verified by rustls before this is called). An unparsable certificate names no one.
pub fn certificate_dns_names(der: &CertificateDer<'_>) -> Vec<String> {
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
            GeneralName::DNSName(dns) => Some((*dns).to_owned()),
            _ => None,
        })
        .collect()
}

/// The names of the end-entity certificate of a TLS peer; empty without one.
pub(crate) fn peer_names(certificates: Option<&[CertificateDer<'static>]>) -> Vec<String> {
    certificates
        .and_then(|chain| chain.first())
        .map(certificate_dns_names)
        .unwrap_or_default()
}
