//! Certificate generation for tests, examples and demos (feature `pki-gen`): a CA, the
//! EMKS, the HSS and one certificate per EMSE, issued with rcgen and written as a
//! [`PkiDir`]. An operator's deployment uses its own PKI and only [`PkiDir`] /
//! [`Credentials`](super::Credentials) from the parent module.

use std::fmt;
use std::fs;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::{Duration, SystemTime};

use e2m_keyid::EmseId;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use zeroize::Zeroizing;

use super::{CA_FILE, DEFAULT_VALIDITY, NodeName, PeerIdentity, PkiDir, PkiError, file_stem};

/// One issued certificate with its key, in PEM.
struct Issued {
    identity: PeerIdentity,
    cert_pem: String,
    key_pem: Zeroizing<String>,
}

/// What to issue.
#[derive(Clone, Debug)]
pub struct PkiSpec {
    /// The EMKS's node name (its `urn:e2m:emks:` identity).
    pub emks: NodeName,
    /// The HSS's node name.
    pub hss: NodeName,
    /// One client certificate per EMSE_Id.
    pub emses: Vec<EmseId>,
    /// How long every certificate (and the CA) is valid from now.
    pub validity: Duration,
}

impl PkiSpec {
    /// The usual names (`emks`, `hss`) for the given EMSEs, valid for [`DEFAULT_VALIDITY`].
    ///
    /// # Errors
    /// Never in practice (the fixed names are valid); typed for symmetry.
    pub fn new(emses: Vec<EmseId>) -> Result<PkiSpec, PkiError> {
        Ok(PkiSpec {
            emks: NodeName::new("emks")?,
            hss: NodeName::new("hss")?,
            emses,
            validity: DEFAULT_VALIDITY,
        })
    }
}

/// A freshly generated PKI held in memory (the CA key is already gone).
pub struct GeneratedPki {
    ca_pem: String,
    emks: Issued,
    hss: Issued,
    emses: Vec<Issued>,
}

impl fmt::Debug for GeneratedPki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedPki")
            .field("emks", &self.emks.identity)
            .field("hss", &self.hss.identity)
            .field(
                "emses",
                &self.emses.iter().map(|i| &i.identity).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

fn base_params(identity: &PeerIdentity, validity: Duration) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "e2m demo");
    dn.push(DnType::CommonName, identity.to_string());
    params.distinguished_name = dn;
    let now = SystemTime::now();
    // An hour of slack for clocks that are a little behind.
    params.not_before = now
        .checked_sub(Duration::from_secs(3600))
        .unwrap_or(now)
        .into();
    params.not_after = now.checked_add(validity).unwrap_or(now).into();
    params.subject_alt_names.push(SanType::URI(
        identity
            .to_uri()
            .try_into()
            .map_err(|_| PkiError::InvalidName("identity URI is not IA5"))?,
    ));
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

fn add_loopback_names(params: &mut CertificateParams) -> Result<(), PkiError> {
    params.subject_alt_names.push(SanType::DnsName(
        "localhost"
            .try_into()
            .map_err(|_| PkiError::InvalidName("localhost"))?,
    ));
    params
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    Ok(())
}

fn issue(
    issuer: &Issuer<'_, KeyPair>,
    identity: PeerIdentity,
    params: &CertificateParams,
) -> Result<Issued, PkiError> {
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, issuer)?;
    Ok(Issued {
        identity,
        cert_pem: cert.pem(),
        key_pem: Zeroizing::new(key.serialize_pem()),
    })
}

impl GeneratedPki {
    /// Generates a CA (ECDSA P-256) and issues every certificate of `spec`.
    ///
    /// - EMKS: `serverAuth` + `clientAuth`, SANs `localhost`, `127.0.0.1` and
    ///   `urn:e2m:emks:<name>`;
    /// - HSS: `clientAuth`, SAN `urn:e2m:hss:<name>`;
    /// - each EMSE: `clientAuth` + `serverAuth` (its notification endpoint), SANs
    ///   `urn:e2m:emse:<EMSE_Id>`, `localhost`, `127.0.0.1`.
    ///
    /// # Errors
    /// [`PkiError::Generate`] if rcgen fails.
    pub fn generate(spec: &PkiSpec) -> Result<GeneratedPki, PkiError> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "e2m demo");
        dn.push(DnType::CommonName, "e2m demo CA");
        ca_params.distinguished_name = dn;
        let now = SystemTime::now();
        ca_params.not_before = now
            .checked_sub(Duration::from_secs(3600))
            .unwrap_or(now)
            .into();
        ca_params.not_after = now.checked_add(spec.validity).unwrap_or(now).into();
        // Issues end-entity certificates only.
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let emks_id = PeerIdentity::Emks(spec.emks.clone());
        let mut emks_params = base_params(&emks_id, spec.validity)?;
        add_loopback_names(&mut emks_params)?;
        emks_params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let emks = issue(&issuer, emks_id, &emks_params)?;

        let hss_id = PeerIdentity::Hss(spec.hss.clone());
        let mut hss_params = base_params(&hss_id, spec.validity)?;
        hss_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let hss = issue(&issuer, hss_id, &hss_params)?;

        let mut emses = Vec::with_capacity(spec.emses.len());
        for emse in &spec.emses {
            let id = PeerIdentity::Emse(emse.clone());
            let mut params = base_params(&id, spec.validity)?;
            add_loopback_names(&mut params)?;
            params.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ClientAuth,
                ExtendedKeyUsagePurpose::ServerAuth,
            ];
            emses.push(issue(&issuer, id, &params)?);
        }
        // `issuer` (the CA key) is dropped here: nothing more can be issued.
        Ok(GeneratedPki {
            ca_pem: ca_cert.pem(),
            emks,
            hss,
            emses,
        })
    }

    /// Writes the PEM files to `dir` (created if missing) and returns the loaded directory.
    ///
    /// # Errors
    /// [`PkiError::Io`] if a file cannot be written, or as [`PkiDir::open`].
    pub fn write_to(&self, dir: &Path) -> Result<PkiDir, PkiError> {
        fs::create_dir_all(dir).map_err(|source| PkiError::Io {
            path: dir.to_owned(),
            source,
        })?;
        write_file(&dir.join(CA_FILE), self.ca_pem.as_bytes(), false)?;
        for issued in std::iter::once(&self.emks)
            .chain(std::iter::once(&self.hss))
            .chain(&self.emses)
        {
            let stem = file_stem(&issued.identity);
            write_file(
                &dir.join(format!("{stem}.pem")),
                issued.cert_pem.as_bytes(),
                false,
            )?;
            write_file(
                &dir.join(format!("{stem}.key")),
                issued.key_pem.as_bytes(),
                true,
            )?;
        }
        PkiDir::open(dir)
    }

    /// Writes the files to a new directory under the system's temporary directory
    /// (`e2m-<tag>-<pid>-<nanos>`), for a demo or a test; remove it with
    /// [`PkiDir::remove`] when done.
    ///
    /// # Errors
    /// As [`Self::write_to`].
    pub fn write_to_temp_dir(&self, tag: &str) -> Result<PkiDir, PkiError> {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let dir = std::env::temp_dir().join(format!("e2m-{tag}-{}-{nanos}", std::process::id()));
        self.write_to(&dir)
    }

    /// The CA certificate (PEM).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }
}

fn write_file(path: &Path, contents: &[u8], secret: bool) -> Result<(), PkiError> {
    let io = |source| PkiError::Io {
        path: path.to_owned(),
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
