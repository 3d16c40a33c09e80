//! TLS for the push application: the HTTPS interface's profile (TS 33.210 §6.2, *ring*,
//! mutual certificates chaining to the e2m CA) with Diameter's identity rule: the peer's
//! certificate must name its Diameter identity as a dNSName (RFC 6733 §13; the driver
//! binds those names to the CER/CEA Origin-Host). A certificate that also carries an
//! `urn:e2m:` identity must hold the role of the other end (an EMSE's certificate, whose
//! dNSNames are its callback hosts, can never push; only the EMKS's can answer the HSS).

use std::sync::Arc;

use e2m_https::pki::{Credentials, IdentityUriError, PeerIdentity, Role};
use e2m_https::tls::{
    PROFILE_VERSIONS, TlsSetupError, checked_client_verifier, checked_server_verifier,
    profile_provider,
};
use rustls::pki_types::CertificateDer;

/// A node's TLS material: its certificate chain and key, and the CA its peers chain to.
pub struct DiameterTls {
    /// This node's certificate (whose dNSName is its Origin-Host) and key.
    pub credentials: Credentials,
    /// The trust anchors of the peers' certificates.
    pub ca: Vec<CertificateDer<'static>>,
}

impl core::fmt::Debug for DiameterTls {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DiameterTls")
            .field("ca", &self.ca.len())
            .finish_non_exhaustive()
    }
}

/// Whether a verified certificate may stand for `role`: it carries no `urn:e2m:` identity
/// (a Diameter node's certificate: a relay agent, an operator's HSS), or one of that role.
fn role_allows(end_entity: &CertificateDer<'_>, role: Role) -> bool {
    match PeerIdentity::from_certificate(end_entity) {
        Ok(id) => id.role() == role,
        Err(IdentityUriError::Missing) => true,
        Err(_) => false,
    }
}

/// The EMKS's server configuration: the e2m TLS profile, `tls.credentials` as its
/// certificate, and mandatory client certificates chaining to `tls.ca` (an `urn:e2m:`
/// identity in one must be the HSS's). No ALPN: Diameter defines none.
///
/// # Errors
///
/// [`TlsSetupError`] if the CA or the credentials are unusable.
pub fn emks_server_config(tls: &DiameterTls) -> Result<Arc<rustls::ServerConfig>, TlsSetupError> {
    let verifier = checked_client_verifier(
        &tls.ca,
        Arc::new(|cert: &CertificateDer<'_>| role_allows(cert, Role::Hss)),
    )?;
    let mut config = rustls::ServerConfig::builder_with_provider(profile_provider())
        .with_protocol_versions(PROFILE_VERSIONS)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(tls.credentials.chain.clone(), tls.credentials.key())?;
    config.max_early_data_size = 0;
    Ok(Arc::new(config))
}

/// The HSS's client configuration: the e2m TLS profile, `tls.credentials` as its client
/// certificate, server certificates chaining to `tls.ca` and valid for the peer's Diameter
/// identity (an `urn:e2m:` identity in one must be the EMKS's).
///
/// # Errors
///
/// [`TlsSetupError`] if the CA or the credentials are unusable.
pub fn hss_client_config(tls: &DiameterTls) -> Result<Arc<rustls::ClientConfig>, TlsSetupError> {
    let verifier = checked_server_verifier(
        &tls.ca,
        Arc::new(|cert: &CertificateDer<'_>| role_allows(cert, Role::Emks)),
    )?;
    let config = rustls::ClientConfig::builder_with_provider(profile_provider())
        .with_protocol_versions(PROFILE_VERSIONS)?
        .dangerous() // Not dangerous: the verifier adds a check to webpki's.
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(tls.credentials.chain.clone(), tls.credentials.key())?;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use e2m_https::pki::{GeneratedPki, PkiSpec};

    /// Which certificates of a generated PKI may stand for the HSS (as a TLS client of the
    /// EMKS) and for the EMKS (as a TLS server of the HSS): an e2m certificate of another
    /// role never, whatever dNSNames it carries (an EMSE's name its callback hosts); a
    /// Diameter node's certificate without an e2m role (a relay's) by its names alone.
    #[test]
    fn a_certificate_of_another_e2m_role_stands_for_no_diameter_peer() {
        let mut spec = PkiSpec::new(vec![e2m_msg::EmseId::new("emse-a").unwrap()]).unwrap();
        spec.diameter_nodes = vec!["relay.relay.test".into()];
        let pki = GeneratedPki::generate(&spec)
            .unwrap()
            .write_to_temp_dir("diameter-roles")
            .unwrap();
        let leaf = |c: Credentials| c.chain[0].clone();
        let emse = leaf(pki.emse(&e2m_msg::EmseId::new("emse-a").unwrap()).unwrap());
        let hss = leaf(pki.hss().unwrap());
        let emks = leaf(pki.emks().unwrap());
        let relay = {
            use rustls::pki_types::pem::PemObject;
            CertificateDer::from_pem_file(pki.path().join("relay.relay.test.pem")).unwrap()
        };
        assert!(role_allows(&hss, Role::Hss));
        assert!(role_allows(&relay, Role::Hss));
        assert!(
            !role_allows(&emse, Role::Hss),
            "an EMSE's certificate cannot push"
        );
        assert!(!role_allows(&emks, Role::Hss));
        assert!(role_allows(&emks, Role::Emks));
        assert!(role_allows(&relay, Role::Emks));
        assert!(
            !role_allows(&emse, Role::Emks),
            "an EMSE's certificate cannot be the EMKS"
        );
        assert!(!role_allows(&hss, Role::Emks));
        pki.remove().unwrap();
    }
}
