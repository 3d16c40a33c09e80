//! Certificate generation for tests, examples and demos (feature `pki-gen`): a CA, the
//! EMKS, the HSS and two certificates per EMSE (its client certificate and its callback
//! endpoint's server certificate), issued with rcgen and written as a [`PkiDir`]. An
//! operator's deployment uses its own PKI and only [`PkiDir`] /
//! [`Credentials`](super::Credentials) from the parent module; the parent module's docs
//! say which rules about roles and names it must keep.

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

use super::{
    CA_FILE, DEFAULT_EMKS_HOST, DEFAULT_HSS_HOST, DEFAULT_VALIDITY, NodeName, PeerIdentity, PkiDir,
    PkiError, callback_file_stem, file_stem,
};

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
    /// The EMKS's host name (a dNSName in its certificate that no other certificate of
    /// this PKI carries): what a client on a stock HTTP stack checks (see [`super`]).
    /// Never `localhost`: the EMSE callback certificates carry that.
    pub emks_host: String,
    /// The HSS's node name.
    pub hss: NodeName,
    /// The HSS's host name, a dNSName of its certificate: its Diameter identity
    /// (Origin-Host), which a Diameter peer over TLS binds to the certificate (RFC 6733
    /// §13; crate `e2m-diameter-push`). The certificate stays `clientAuth` only.
    pub hss_host: String,
    /// Other Diameter nodes (relay agents) to issue a certificate for, by Diameter identity:
    /// `serverAuth` and `clientAuth`, the identity as dNSName, no `urn:e2m:` identity (a
    /// relay has no e2m role), written as `<identity>.pem` and `.key` (the layout
    /// freeDiameter test configurations read). Each must be a lower-case DNS name with at
    /// least two labels.
    pub diameter_nodes: Vec<String>,
    /// One client certificate and one callback certificate per EMSE_Id.
    pub emses: Vec<EmseId>,
    /// How long every certificate (and the CA) is valid from now.
    pub validity: Duration,
}

impl PkiSpec {
    /// The usual names (`emks`, `hss`, the EMKS host [`DEFAULT_EMKS_HOST`]) for the given
    /// EMSEs, valid for [`DEFAULT_VALIDITY`].
    ///
    /// # Errors
    /// Never in practice (the fixed names are valid); typed for symmetry.
    pub fn new(emses: Vec<EmseId>) -> Result<PkiSpec, PkiError> {
        Ok(PkiSpec {
            emks: NodeName::new("emks")?,
            emks_host: DEFAULT_EMKS_HOST.to_owned(),
            hss: NodeName::new("hss")?,
            hss_host: DEFAULT_HSS_HOST.to_owned(),
            diameter_nodes: Vec::new(),
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
    emse_callbacks: Vec<Issued>,
    diameter_nodes: Vec<(String, Issued)>,
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

/// The names of the demo's loopback host, which every role listens on.
const LOOPBACK_HOST: &str = "localhost";

fn add_loopback_names(params: &mut CertificateParams) -> Result<(), PkiError> {
    params.subject_alt_names.push(SanType::DnsName(
        LOOPBACK_HOST
            .try_into()
            .map_err(|_| PkiError::InvalidName("localhost"))?,
    ));
    params
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    Ok(())
}

/// A Diameter node's identity as a certificate file stem: a host name with two labels or
/// more, so that it can be no other file's stem (`ca`, `emks`, `hss`, `emse-…`,
/// `callback-…`).
fn diameter_node_name(host: &str) -> Result<SanType, PkiError> {
    if !host.contains('.') || host.starts_with("emse-") || host.starts_with("callback-") {
        return Err(PkiError::InvalidName(
            "a Diameter node needs a host name of two labels or more",
        ));
    }
    emks_host_name(host)
}

/// The EMKS's own host name: a DNS name (RFC 1123 labels, lower case so that one
/// spelling names it) that no other certificate of this PKI carries.
fn emks_host_name(host: &str) -> Result<SanType, PkiError> {
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if host.len() > 253 || !host.split('.').all(label_ok) {
        return Err(PkiError::InvalidName(
            "EMKS host must be a lower-case DNS name",
        ));
    }
    if host == LOOPBACK_HOST || host.parse::<IpAddr>().is_ok() {
        return Err(PkiError::InvalidName(
            "EMKS host must be a name no EMSE certificate carries",
        ));
    }
    Ok(SanType::DnsName(host.try_into().map_err(|_| {
        PkiError::InvalidName("EMKS host is not IA5")
    })?))
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
    /// Generates a CA (ECDSA P-256) and issues every certificate of `spec`, each with one
    /// role (see [`super`], "Roles and names"):
    ///
    /// - EMKS: `serverAuth` + `clientAuth` (it posts notifications), SANs
    ///   `urn:e2m:emks:<name>`, the dNSName `spec.emks_host` (no other certificate has it),
    ///   and `localhost`, `127.0.0.1` (for the demo's e2m clients, which check the role);
    /// - HSS: `clientAuth`, SANs `urn:e2m:hss:<name>` and the dNSName `spec.hss_host` (its
    ///   Diameter identity);
    /// - each EMSE, its client certificate: `clientAuth` only, SANs
    ///   `urn:e2m:emse:<EMSE_Id>` and the hosts where the EMKS may call it back
    ///   (`localhost`, `127.0.0.1`);
    /// - each EMSE, its callback certificate (its notification endpoint's): `serverAuth`
    ///   only, SANs `urn:e2m:emse:<EMSE_Id>`, `localhost`, `127.0.0.1`;
    /// - each of `spec.diameter_nodes` (relay agents): `serverAuth` + `clientAuth`, its
    ///   identity as dNSName, no `urn:e2m:` identity.
    ///
    /// # Errors
    /// [`PkiError::Generate`] if rcgen fails, [`PkiError::InvalidName`] if
    /// `spec.emks_host` is not a DNS name or is one an EMSE certificate carries.
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
        emks_params
            .subject_alt_names
            .push(emks_host_name(&spec.emks_host)?);
        add_loopback_names(&mut emks_params)?;
        emks_params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let emks = issue(&issuer, emks_id, &emks_params)?;

        let hss_id = PeerIdentity::Hss(spec.hss.clone());
        let mut hss_params = base_params(&hss_id, spec.validity)?;
        if spec.hss_host == spec.emks_host {
            return Err(PkiError::InvalidName("the HSS host must not be the EMKS's"));
        }
        hss_params
            .subject_alt_names
            .push(emks_host_name(&spec.hss_host)?);
        hss_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let hss = issue(&issuer, hss_id, &hss_params)?;

        let mut diameter_nodes = Vec::with_capacity(spec.diameter_nodes.len());
        for host in &spec.diameter_nodes {
            let san = diameter_node_name(host)?;
            if *host == spec.emks_host || *host == spec.hss_host {
                return Err(PkiError::InvalidName(
                    "a Diameter node's host must be its own",
                ));
            }
            let mut params = CertificateParams::default();
            let mut dn = DistinguishedName::new();
            dn.push(DnType::OrganizationName, "e2m demo");
            dn.push(DnType::CommonName, host.as_str());
            params.distinguished_name = dn;
            params.not_before = emks_params.not_before;
            params.not_after = emks_params.not_after;
            params.subject_alt_names.push(san);
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.use_authority_key_identifier_extension = true;
            params.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            let key = KeyPair::generate()?;
            let cert = params.signed_by(&key, &issuer)?;
            diameter_nodes.push((
                host.clone(),
                Issued {
                    identity: PeerIdentity::Emks(spec.emks.clone()),
                    cert_pem: cert.pem(),
                    key_pem: Zeroizing::new(key.serialize_pem()),
                },
            ));
        }

        let mut emses = Vec::with_capacity(spec.emses.len());
        let mut emse_callbacks = Vec::with_capacity(spec.emses.len());
        for emse in &spec.emses {
            let id = PeerIdentity::Emse(emse.clone());
            let mut params = base_params(&id, spec.validity)?;
            // The client certificate names its callback hosts too: the EMKS accepts a
            // callback only on a host the registering EMSE's certificate names.
            add_loopback_names(&mut params)?;
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            emses.push(issue(&issuer, id.clone(), &params)?);
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            emse_callbacks.push(issue(&issuer, id, &params)?);
        }
        // `issuer` (the CA key) is dropped here: nothing more can be issued.
        Ok(GeneratedPki {
            ca_pem: ca_cert.pem(),
            emks,
            hss,
            emses,
            emse_callbacks,
            diameter_nodes,
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
        let clients = std::iter::once(&self.emks)
            .chain(std::iter::once(&self.hss))
            .chain(&self.emses)
            .map(|issued| (file_stem(&issued.identity), issued));
        let callbacks = self
            .emse_callbacks
            .iter()
            .filter_map(|issued| match &issued.identity {
                PeerIdentity::Emse(id) => Some((callback_file_stem(id), issued)),
                _ => None,
            });
        let nodes = self
            .diameter_nodes
            .iter()
            .map(|(host, issued)| (host.clone(), issued));
        for (stem, issued) in clients.chain(callbacks).chain(nodes) {
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
