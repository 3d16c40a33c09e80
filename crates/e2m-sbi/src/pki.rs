//! Certificates of the AKMA roles on the SBI, and where they sit in a directory.
//!
//! An SBI certificate (TS 33.310 §6.1.3c) names its holder by FQDN (subjectAltName
//! dNSName) and carries its NF instance ID (a `urn:uuid:` URI); the AAnF's configuration
//! says which names are AUSFs, NEFs and AFs. One role per certificate:
//!
//! | file stem | holder | extended key usage | subjectAltName |
//! |---|---|---|---|
//! | `aanf` | the AAnF's server | `serverAuth` | its host, `localhost`, `127.0.0.1`, an NF instance ID |
//! | `aanf-client` | the AAnF posting notifications | `clientAuth` | its host, an NF instance ID |
//! | `ausf-<name>` | an AUSF | `clientAuth` | `<name>`, an NF instance ID |
//! | `nef-<name>` | a NEF | `clientAuth` | `<name>`, an NF instance ID |
//! | `af-<fqdn>` | an AF asking for K_AF | `clientAuth` | `<fqdn>` (its AF_ID's FQDN), an NF instance ID |
//! | `af-<fqdn>-notify` | that AF's notification endpoint | `serverAuth` | `<fqdn>` |
//!
//! Each has `<stem>.pem` and `<stem>.key` (mode 0600), and `ca.pem` the CA. With the
//! `pki-gen` feature, [`AkmaPki::generate`] writes such a directory (the CA key is not
//! kept); without it, [`AkmaPkiDir`] reads one an operator's PKI wrote.

use std::path::{Path, PathBuf};

use e2m_aanf::Host;
use e2m_https::pki::Credentials;
use rustls::pki_types::CertificateDer;

use crate::tls::{PemError, load_certificates, load_credentials};

/// A directory of AKMA certificates (see the module docs).
#[derive(Clone, Debug)]
pub struct AkmaPkiDir {
    dir: PathBuf,
}

/// The stem of a role's files.
fn stem(kind: &str, name: &str) -> Result<String, PemError> {
    // A DNS name (letters, digits, '-', '.') is safe as a file name.
    let host = Host::dns(name).map_err(|_| PemError::File {
        path: name.to_owned(),
        reason: "not a DNS name".into(),
    })?;
    Ok(format!("{kind}-{host}"))
}

impl AkmaPkiDir {
    /// The directory at `dir`.
    pub fn open(dir: &Path) -> AkmaPkiDir {
        AkmaPkiDir {
            dir: dir.to_owned(),
        }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// `ca.pem`.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The trust anchors.
    ///
    /// # Errors
    /// [`PemError`].
    pub fn ca(&self) -> Result<Vec<CertificateDer<'static>>, PemError> {
        load_certificates(&self.ca_path())
    }

    /// The certificate and key files of `stem`.
    pub fn paths(&self, stem: &str) -> (PathBuf, PathBuf) {
        (
            self.dir.join(format!("{stem}.pem")),
            self.dir.join(format!("{stem}.key")),
        )
    }

    fn load(&self, stem: &str) -> Result<Credentials, PemError> {
        let (cert, key) = self.paths(stem);
        load_credentials(&cert, &key)
    }

    /// The AAnF's server credentials.
    ///
    /// # Errors
    /// [`PemError`].
    pub fn aanf(&self) -> Result<Credentials, PemError> {
        self.load("aanf")
    }

    /// The AAnF's client credentials (notifications).
    ///
    /// # Errors
    /// [`PemError`].
    pub fn aanf_client(&self) -> Result<Credentials, PemError> {
        self.load("aanf-client")
    }

    /// An AUSF's credentials.
    ///
    /// # Errors
    /// [`PemError`].
    pub fn ausf(&self, name: &str) -> Result<Credentials, PemError> {
        self.load(&stem("ausf", name)?)
    }

    /// A NEF's credentials.
    ///
    /// # Errors
    /// [`PemError`].
    pub fn nef(&self, name: &str) -> Result<Credentials, PemError> {
        self.load(&stem("nef", name)?)
    }

    /// An AF's client credentials.
    ///
    /// # Errors
    /// [`PemError`].
    pub fn af(&self, fqdn: &str) -> Result<Credentials, PemError> {
        self.load(&stem("af", fqdn)?)
    }

    /// An AF's notification endpoint's credentials.
    ///
    /// # Errors
    /// [`PemError`].
    pub fn af_notify(&self, fqdn: &str) -> Result<Credentials, PemError> {
        self.load(&format!("{}-notify", stem("af", fqdn)?))
    }
}

#[cfg(feature = "pki-gen")]
pub use generate::{AkmaPki, AkmaPkiSpec, PkiGenError};

#[cfg(feature = "pki-gen")]
mod generate {
    use std::fs;
    use std::io::Write;
    use std::net::{IpAddr, Ipv4Addr};
    use std::path::Path;
    use std::time::{Duration, SystemTime};

    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType,
        ExtendedKeyUsagePurpose as Eku, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
    };

    use super::{AkmaPkiDir, stem};

    /// Why a PKI could not be generated or written.
    #[derive(Debug, thiserror::Error)]
    #[non_exhaustive]
    pub enum PkiGenError {
        /// A name is not a DNS name.
        #[error("not a DNS name: {0}")]
        Name(String),
        /// rcgen failed.
        #[error("certificate generation: {0}")]
        Generate(#[from] rcgen::Error),
        /// No randomness for an NF instance ID.
        #[error("no randomness: {0}")]
        Random(String),
        /// A file could not be written.
        #[error("{path}: {source}")]
        Io {
            /// The file.
            path: String,
            /// Why.
            source: std::io::Error,
        },
    }

    /// What to issue.
    #[derive(Clone, Debug)]
    pub struct AkmaPkiSpec {
        /// The AAnF's host name (in its server and client certificates).
        pub aanf_host: String,
        /// The AUSFs' names.
        pub ausfs: Vec<String>,
        /// The NEFs' names.
        pub nefs: Vec<String>,
        /// The AFs' FQDNs.
        pub afs: Vec<String>,
        /// Also name `localhost` and `127.0.0.1` in the server certificates (the AAnF's,
        /// the AFs' notification endpoints'), for demos on one machine.
        pub loopback: bool,
        /// How long every certificate is valid from now.
        pub validity: Duration,
    }

    impl AkmaPkiSpec {
        /// The AAnF `aanf.e2m.test` and the given AUSFs, NEFs and AFs, with loopback
        /// names, valid for 30 days.
        pub fn new(ausfs: &[&str], nefs: &[&str], afs: &[&str]) -> AkmaPkiSpec {
            let owned = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect();
            AkmaPkiSpec {
                aanf_host: "aanf.e2m.test".into(),
                ausfs: owned(ausfs),
                nefs: owned(nefs),
                afs: owned(afs),
                loopback: true,
                validity: Duration::from_secs(30 * 24 * 3600),
            }
        }
    }

    /// Certificate generation for tests, examples and demos.
    #[derive(Debug)]
    pub struct AkmaPki;

    fn dns(name: &str) -> Result<SanType, PkiGenError> {
        e2m_aanf::Host::dns(name).map_err(|_| PkiGenError::Name(name.to_owned()))?;
        Ok(SanType::DnsName(
            name.to_ascii_lowercase()
                .try_into()
                .map_err(|_| PkiGenError::Name(name.to_owned()))?,
        ))
    }

    /// A random (version 4) UUID as a `urn:uuid:` SAN.
    fn nf_instance() -> Result<SanType, PkiGenError> {
        let mut b = [0u8; 16];
        getrandom::fill(&mut b).map_err(|e| PkiGenError::Random(e.to_string()))?;
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
        let uri = format!(
            "urn:uuid:{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        );
        Ok(SanType::URI(
            uri.try_into()
                .map_err(|_| PkiGenError::Name("uuid".into()))?,
        ))
    }

    fn params(cn: &str, sans: Vec<SanType>, eku: Eku, validity: Duration) -> CertificateParams {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "e2m AKMA demo");
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        let now = SystemTime::now();
        params.not_before = now
            .checked_sub(Duration::from_secs(3600))
            .unwrap_or(now)
            .into();
        params.not_after = now.checked_add(validity).unwrap_or(now).into();
        params.subject_alt_names = sans;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![eku];
        params.use_authority_key_identifier_extension = true;
        params
    }

    fn write(path: &Path, contents: &[u8], secret: bool) -> Result<(), PkiGenError> {
        let io = |source| PkiGenError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut options = fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if secret {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        #[cfg(not(unix))]
        let _ = secret;
        let mut file = options.open(path).map_err(io)?;
        file.write_all(contents).map_err(io)?;
        file.sync_all().map_err(io)
    }

    impl AkmaPki {
        /// Generates a CA (ECDSA P-256) and every certificate of `spec` (see the module
        /// docs), writes them to `dir` (created if missing), and forgets the CA key.
        ///
        /// # Errors
        /// [`PkiGenError`].
        pub fn generate(spec: &AkmaPkiSpec, dir: &Path) -> Result<AkmaPkiDir, PkiGenError> {
            fs::create_dir_all(dir).map_err(|source| PkiGenError::Io {
                path: dir.display().to_string(),
                source,
            })?;
            let ca_key = KeyPair::generate()?;
            let mut ca = params("e2m AKMA demo CA", Vec::new(), Eku::Any, spec.validity);
            ca.extended_key_usages = Vec::new();
            ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            ca.use_authority_key_identifier_extension = false;
            let ca_cert = ca.self_signed(&ca_key)?;
            write(&dir.join("ca.pem"), ca_cert.pem().as_bytes(), false)?;
            let issuer = Issuer::new(ca, ca_key);
            let loopback = || -> Result<Vec<SanType>, PkiGenError> {
                Ok(if spec.loopback {
                    vec![
                        dns("localhost")?,
                        SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                    ]
                } else {
                    Vec::new()
                })
            };
            let issue = |file: String, cn: &str, sans: Vec<SanType>, eku: Eku| {
                let key = KeyPair::generate()?;
                let cert = params(cn, sans, eku, spec.validity).signed_by(&key, &issuer)?;
                write(
                    &dir.join(format!("{file}.pem")),
                    cert.pem().as_bytes(),
                    false,
                )?;
                let key_pem = zeroize::Zeroizing::new(key.serialize_pem());
                write(&dir.join(format!("{file}.key")), key_pem.as_bytes(), true)
            };
            let aanf = &spec.aanf_host;
            let mut sans = vec![dns(aanf)?, nf_instance()?];
            sans.extend(loopback()?);
            issue("aanf".into(), aanf, sans, Eku::ServerAuth)?;
            issue(
                "aanf-client".into(),
                aanf,
                vec![dns(aanf)?, nf_instance()?],
                Eku::ClientAuth,
            )?;
            for (kind, names) in [
                ("ausf", &spec.ausfs),
                ("nef", &spec.nefs),
                ("af", &spec.afs),
            ] {
                for name in names {
                    let file = stem(kind, name).map_err(|_| PkiGenError::Name(name.clone()))?;
                    issue(
                        file.clone(),
                        name,
                        vec![dns(name)?, nf_instance()?],
                        Eku::ClientAuth,
                    )?;
                    if kind == "af" {
                        let mut sans = vec![dns(name)?];
                        sans.extend(loopback()?);
                        issue(format!("{file}-notify"), name, sans, Eku::ServerAuth)?;
                    }
                }
            }
            Ok(AkmaPkiDir::open(dir))
        }
    }
}
