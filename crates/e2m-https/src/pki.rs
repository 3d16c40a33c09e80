//! A small run-time PKI for the examples: a CA, the EMKS certificate, one client certificate
//! per EMSE and one for the HSS, written to a directory as PEM and loaded back.
//!
//! Seed clause 6.x.2.2.1 asks for mutual authentication in TLS "for authenticating and
//! allowing only an authorized third party EMSE to access the EMKS", with the TLS profile of
//! TS 33.310 Annex E (which points to TS 33.210 §6.2). The EMKS therefore takes the peer's
//! identity and role **only** from the verified client certificate, never from a request.
//!
//! # Where the identity is in a certificate
//!
//! Every end-entity certificate carries exactly one subjectAltName URI of the form
//!
//! ```text
//! urn:e2m:<role>:<percent-encoded name>     role ∈ { emse, hss, emks }
//! ```
//!
//! e.g. `urn:e2m:emse:emse-a.example.com`. A URI SAN (not a dNSName, not the subject CN) is
//! used because an EMSE_Id is not a host name (it may be any NFKC text,
//! [`EmseId`]), and because the role must be as unforgeable as the name: the CA states both.
//! The name is percent-encoded (RFC 3986 §2.1) in one canonical form: the unreserved
//! characters `A-Z a-z 0-9 - . _ ~` stand for themselves and every other octet of the UTF-8
//! form is `%XX` with upper-case hex. Decoding accepts only that form (a re-encode must give
//! back the same text), so one name has one spelling and no "normalisation game" (case of the
//! hex digits, needless escapes) can make two certificate texts name the same EMSE.
//! A certificate with no `urn:e2m:` URI, or with more than one, names no one and is refused.
//!
//! # Roles and names
//!
//! Certificates also carry the usual key-usage extensions: the CA is the only issuer
//! (`pathLenConstraint` 0), and each certificate has the extended key usages of its one
//! job, so that no certificate can stand in for another role's, even before anyone reads
//! its `urn:e2m:` URI:
//!
//! | certificate | EKU | other names (dNSName, iPAddress) |
//! |---|---|---|
//! | EMKS (`emks.pem`) | `serverAuth`, `clientAuth` (it posts notifications) | **its own host name, which no other certificate carries** ([`DEFAULT_EMKS_HOST`] in the generated PKI) |
//! | HSS (`hss.pem`) | `clientAuth` | its Diameter identity ([`DEFAULT_HSS_HOST`] in the generated PKI), which Diameter peers bind to its Origin-Host |
//! | EMSE, client (`emse-<id>.pem`) | `clientAuth` only | the hosts where the EMKS may call it back |
//! | EMSE, callback endpoint (`callback-<id>.pem`) | `serverAuth` only | its callback host |
//!
//! An EMSE's client certificate, the one it registers with, cannot serve a TLS server: any
//! stock client refuses it for want of `serverAuth`. An EMSE's callback certificate can,
//! but only under the EMSE's own names: a client that checks the EMKS's host name (as any
//! stock HTTP stack does) refuses it as the EMKS. e2m's own clients check more: the role in
//! the `urn:e2m:` URI (see [`crate::tls`]), so they accept the EMKS under any name its
//! certificate holds; the generated EMKS certificate also names `localhost` and `127.0.0.1`
//! for the demos, which the EMSE callback certificates name too, so a client that checks
//! only a host name must address the EMKS by its own host name (the crate README, "Talking
//! to the EMKS from another HTTP stack"). A CA of one's own must keep the same rules: the
//! EMKS's host name is issued to no one else, and nothing but the EMKS gets `serverAuth`
//! under it.
//!
//! # Files
//!
//! [`GeneratedPki::write_to`] writes `ca.pem`, `emks.pem` + `emks.key`, `hss.pem` +
//! `hss.key`, and per EMSE `emse-<encoded EMSE_Id>.pem` + `.key` (its client certificate)
//! and `callback-<encoded EMSE_Id>.pem` + `.key` (its notification endpoint's), and per
//! Diameter relay agent asked for `<identity>.pem` + `.key`; keys mode
//! 0600 on Unix. The CA's private key is never written: it is dropped after issuing, so the
//! directory cannot mint more identities. Nothing here is ever committed: the examples
//! generate a fresh directory.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use e2m_keyid::EmseId;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use zeroize::Zeroizing;

#[cfg(feature = "pki-gen")]
#[cfg_attr(docsrs, doc(cfg(feature = "pki-gen")))]
mod generate;
#[cfg(feature = "pki-gen")]
#[cfg_attr(docsrs, doc(cfg(feature = "pki-gen")))]
pub use generate::{GeneratedPki, PkiSpec};

/// The URN prefix of every e2m identity in a certificate.
pub const URN_PREFIX: &str = "urn:e2m:";

/// The EMKS's host name in the generated PKI: the one dNSName no other certificate of it
/// carries. Under `.test` (RFC 6761 §6.2), so no public resolver answers for it: a client
/// maps it to the EMKS's address itself (`curl --resolve`, reqwest's
/// `ClientBuilder::resolve`), and the TLS name check then holds the server to being the
/// EMKS.
pub const DEFAULT_EMKS_HOST: &str = "emks.e2m.test";

/// The HSS's host name in the generated PKI: a dNSName of its (`clientAuth`-only)
/// certificate, its Diameter identity (Origin-Host) for a Diameter peer over TLS, which
/// binds the certificate's names to the CER's Origin-Host (RFC 6733 §13).
pub const DEFAULT_HSS_HOST: &str = "hss.e2m.test";

/// The validity of generated certificates unless the caller asks otherwise.
pub const DEFAULT_VALIDITY: Duration = Duration::from_secs(30 * 24 * 3600);

/// Why a PKI operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// rcgen refused to build or sign a certificate.
    #[cfg(feature = "pki-gen")]
    #[cfg_attr(docsrs, doc(cfg(feature = "pki-gen")))]
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A PEM file holds no usable certificate or key.
    #[error("{path}: not a PEM {what}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was expected in it.
        what: &'static str,
    },
    /// A name cannot be put in a certificate.
    #[error("invalid node name: {0}")]
    InvalidName(&'static str),
}

/// The role a certificate gives its holder (the `<role>` of its `urn:e2m:` URI).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Role {
    /// An E2M Security Endpoint: may register, fetch keys, subscribe.
    Emse,
    /// The HSS: may push intermediate keys.
    Hss,
    /// The EMKS itself: serves the interface and sends notifications.
    Emks,
}

impl Role {
    fn label(self) -> &'static str {
        match self {
            Role::Emse => "emse",
            Role::Hss => "hss",
            Role::Emks => "emks",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// The name of a network node that is not an EMSE (the HSS, the EMKS): 1 to 64 characters
/// from the URI unreserved set, so that it reads the same in a certificate, a file name and
/// a log line.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct NodeName(String);

impl NodeName {
    /// Validates a node name.
    ///
    /// # Errors
    /// [`PkiError::InvalidName`] if it is empty, longer than 64 or has a character outside
    /// `A-Z a-z 0-9 - . _ ~`.
    pub fn new(name: &str) -> Result<NodeName, PkiError> {
        if name.is_empty() || name.len() > 64 {
            return Err(PkiError::InvalidName(
                "node name must be 1 to 64 characters",
            ));
        }
        if !name.bytes().all(is_unreserved) {
            return Err(PkiError::InvalidName(
                "node name must use only A-Z a-z 0-9 - . _ ~",
            ));
        }
        Ok(NodeName(name.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The authenticated identity of a TLS peer, read from its verified certificate.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "EmseId is stored inline by design (no allocation); identities are built once per connection"
)]
#[non_exhaustive]
pub enum PeerIdentity {
    /// An EMSE and its EMSE_Id (the value bound to its sessions and used in derivations).
    Emse(EmseId),
    /// The HSS.
    Hss(NodeName),
    /// An EMKS.
    Emks(NodeName),
}

impl PeerIdentity {
    /// The role this identity holds.
    pub fn role(&self) -> Role {
        match self {
            PeerIdentity::Emse(_) => Role::Emse,
            PeerIdentity::Hss(_) => Role::Hss,
            PeerIdentity::Emks(_) => Role::Emks,
        }
    }

    /// The name part, as text (an EMSE_Id, or a node name). Not secret: fine to log.
    pub fn name(&self) -> &str {
        match self {
            PeerIdentity::Emse(id) => id.as_str(),
            PeerIdentity::Hss(n) | PeerIdentity::Emks(n) => n.as_str(),
        }
    }

    /// The `urn:e2m:<role>:<name>` URI that names this identity in a certificate.
    pub fn to_uri(&self) -> String {
        let mut uri = format!("{URN_PREFIX}{}:", self.role().label());
        percent_encode_into(self.name(), &mut uri);
        uri
    }

    /// Parses a `urn:e2m:` URI (canonical percent-encoding only).
    ///
    /// Returns `Ok(None)` for a URI that is not under `urn:e2m:` (other URIs in a
    /// certificate are not ours to judge).
    ///
    /// # Errors
    /// [`IdentityUriError`] for a `urn:e2m:` URI with an unknown role, a non-canonical
    /// encoding or a name that is not valid for its role.
    pub fn from_uri(uri: &str) -> Result<Option<PeerIdentity>, IdentityUriError> {
        let Some(rest) = uri.strip_prefix(URN_PREFIX) else {
            return Ok(None);
        };
        let (role, encoded) = rest.split_once(':').ok_or(IdentityUriError::Malformed)?;
        let name = percent_decode_canonical(encoded).ok_or(IdentityUriError::NotCanonical)?;
        let identity = match role {
            "emse" => {
                PeerIdentity::Emse(EmseId::new(&name).map_err(|_| IdentityUriError::InvalidName)?)
            }
            "hss" => {
                PeerIdentity::Hss(NodeName::new(&name).map_err(|_| IdentityUriError::InvalidName)?)
            }
            "emks" => {
                PeerIdentity::Emks(NodeName::new(&name).map_err(|_| IdentityUriError::InvalidName)?)
            }
            _ => return Err(IdentityUriError::UnknownRole),
        };
        Ok(Some(identity))
    }

    /// Reads the one e2m identity of a DER certificate (which the caller has verified).
    ///
    /// # Errors
    /// [`IdentityUriError`] if the certificate does not parse, has no `urn:e2m:` URI, more
    /// than one, or an invalid one.
    ///
    /// The certificate is read with webpki, the parser rustls verified it with (so the
    /// identity comes from the same reading of the certificate as its chain, and a client
    /// build needs no second X.509 parser).
    pub fn from_certificate(der: &[u8]) -> Result<PeerIdentity, IdentityUriError> {
        let der = CertificateDer::from(der);
        let cert =
            webpki::EndEntityCert::try_from(&der).map_err(|_| IdentityUriError::BadCertificate)?;
        let mut found = None;
        for uri in cert.valid_uri_names() {
            if let Some(identity) = PeerIdentity::from_uri(uri)? {
                if found.is_some() {
                    return Err(IdentityUriError::Ambiguous);
                }
                found = Some(identity);
            }
        }
        found.ok_or(IdentityUriError::Missing)
    }
}

impl fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.role(), self.name())
    }
}

/// Why a certificate does not name an e2m peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityUriError {
    /// Not a parsable X.509 certificate.
    #[error("certificate does not parse")]
    BadCertificate,
    /// No `urn:e2m:` subjectAltName URI.
    #[error("certificate carries no urn:e2m: identity")]
    Missing,
    /// More than one `urn:e2m:` URI: the certificate names no single peer.
    #[error("certificate carries more than one urn:e2m: identity")]
    Ambiguous,
    /// `urn:e2m:` without `<role>:<name>`.
    #[error("malformed urn:e2m: identity")]
    Malformed,
    /// A role other than emse, hss, emks.
    #[error("unknown role in urn:e2m: identity")]
    UnknownRole,
    /// Percent-encoding that is not the one canonical form.
    #[error("identity is not canonically percent-encoded")]
    NotCanonical,
    /// The decoded name is not a valid name for its role.
    #[error("identity name is invalid for its role")]
    InvalidName,
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn percent_encode_into(text: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in text.as_bytes() {
        if is_unreserved(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
}

/// Decodes `%XX` escapes and accepts the result only if encoding it again gives `text`
/// back (so lower-case hex and escapes of unreserved characters are refused).
fn percent_decode_canonical(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = (*bytes.get(i + 1)? as char).to_digit(16)?;
            let lo = (*bytes.get(i + 2)? as char).to_digit(16)?;
            // Both digits are < 16, so the value fits in one octet.
            out.push(u8::try_from(hi * 16 + lo).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let decoded = String::from_utf8(out).ok()?;
    let mut again = String::with_capacity(text.len());
    percent_encode_into(&decoded, &mut again);
    (again == text).then_some(decoded)
}

/// A certificate chain and its private key, ready for a rustls configuration.
pub struct Credentials {
    /// The end-entity certificate first, then (none here) intermediates.
    pub chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Credentials {
    /// Builds credentials from a chain and a key.
    pub fn new(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Self {
        Credentials { chain, key }
    }

    /// A copy of the private key for a rustls configuration (rustls takes ownership).
    pub fn key(&self) -> PrivateKeyDer<'static> {
        self.key.clone_key()
    }

    /// The identity in the end-entity certificate.
    ///
    /// # Errors
    /// As [`PeerIdentity::from_certificate`].
    pub fn identity(&self) -> Result<PeerIdentity, IdentityUriError> {
        let leaf = self.chain.first().ok_or(IdentityUriError::Missing)?;
        PeerIdentity::from_certificate(leaf)
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key is never printed.
        f.debug_struct("Credentials")
            .field("identity", &self.identity().ok())
            .finish_non_exhaustive()
    }
}

const CA_FILE: &str = "ca.pem";

/// The file stem for an identity: `emks`, `hss` for the fixed node names' roles, and
/// `emse-<encoded EMSE_Id>` (the encoding of the URI, which is also safe in a file name).
fn file_stem(identity: &PeerIdentity) -> String {
    match identity {
        PeerIdentity::Emks(_) => "emks".to_owned(),
        PeerIdentity::Hss(_) => "hss".to_owned(),
        PeerIdentity::Emse(id) => {
            let mut stem = String::from("emse-");
            percent_encode_into(id.as_str(), &mut stem);
            stem
        }
    }
}

/// The file stem of an EMSE's callback endpoint certificate: `callback-<encoded EMSE_Id>`
/// (no other stem starts with `callback-`).
fn callback_file_stem(id: &EmseId) -> String {
    let mut stem = String::from("callback-");
    percent_encode_into(id.as_str(), &mut stem);
    stem
}

/// A directory written by [`GeneratedPki::write_to`] (or by hand, with the same names).
#[derive(Clone, Debug)]
pub struct PkiDir {
    dir: PathBuf,
}

impl PkiDir {
    /// Opens a PKI directory; checks that the CA certificate is there.
    ///
    /// # Errors
    /// [`PkiError::Io`] or [`PkiError::Pem`] if `ca.pem` is missing or not a certificate.
    pub fn open(dir: &Path) -> Result<PkiDir, PkiError> {
        let pki = PkiDir {
            dir: dir.to_owned(),
        };
        pki.ca_certificates()?;
        Ok(pki)
    }

    /// Deletes the directory and every file in it (keys included).
    ///
    /// # Errors
    /// [`PkiError::Io`] if it cannot be removed.
    pub fn remove(self) -> Result<(), PkiError> {
        fs::remove_dir_all(&self.dir).map_err(|source| PkiError::Io {
            path: self.dir.clone(),
            source,
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The trust anchors (the CA certificate).
    ///
    /// # Errors
    /// [`PkiError`] if `ca.pem` cannot be read or holds no certificate.
    pub fn ca_certificates(&self) -> Result<Vec<CertificateDer<'static>>, PkiError> {
        load_certs(&self.dir.join(CA_FILE))
    }

    /// The path of `ca.pem` (for tools such as `curl --cacert`).
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join(CA_FILE)
    }

    /// The certificate and key paths for an identity (for tools such as `curl --cert`).
    pub fn paths_for(&self, identity: &PeerIdentity) -> (PathBuf, PathBuf) {
        let stem = file_stem(identity);
        (
            self.dir.join(format!("{stem}.pem")),
            self.dir.join(format!("{stem}.key")),
        )
    }

    /// Loads the credentials of an identity.
    ///
    /// # Errors
    /// [`PkiError`] if either file is missing or unreadable.
    pub fn credentials(&self, identity: &PeerIdentity) -> Result<Credentials, PkiError> {
        let (cert, key) = self.paths_for(identity);
        Ok(Credentials::new(load_certs(&cert)?, load_key(&key)?))
    }

    /// The EMKS's credentials (`emks.pem`, `emks.key`).
    ///
    /// # Errors
    /// As [`Self::credentials`].
    pub fn emks(&self) -> Result<Credentials, PkiError> {
        self.load_stem("emks")
    }

    /// The HSS's credentials (`hss.pem`, `hss.key`).
    ///
    /// # Errors
    /// As [`Self::credentials`].
    pub fn hss(&self) -> Result<Credentials, PkiError> {
        self.load_stem("hss")
    }

    /// An EMSE's client credentials (`emse-<id>.pem`: `clientAuth` only), to register with
    /// the EMKS and fetch keys.
    ///
    /// # Errors
    /// As [`Self::credentials`].
    pub fn emse(&self, id: &EmseId) -> Result<Credentials, PkiError> {
        self.credentials(&PeerIdentity::Emse(id.clone()))
    }

    /// An EMSE's callback credentials (`callback-<id>.pem`: `serverAuth` only), for its
    /// notification endpoint
    /// ([`start_notification_endpoint`](crate::notify::start_notification_endpoint)).
    ///
    /// # Errors
    /// As [`Self::credentials`].
    pub fn emse_callback(&self, id: &EmseId) -> Result<Credentials, PkiError> {
        self.load_stem(&callback_file_stem(id))
    }

    /// The certificate and key paths of an EMSE's callback credentials.
    pub fn callback_paths_for(&self, id: &EmseId) -> (PathBuf, PathBuf) {
        let stem = callback_file_stem(id);
        (
            self.dir.join(format!("{stem}.pem")),
            self.dir.join(format!("{stem}.key")),
        )
    }

    fn load_stem(&self, stem: &str) -> Result<Credentials, PkiError> {
        Ok(Credentials::new(
            load_certs(&self.dir.join(format!("{stem}.pem")))?,
            load_key(&self.dir.join(format!("{stem}.key")))?,
        ))
    }
}

fn read(path: &Path) -> Result<Zeroizing<Vec<u8>>, PkiError> {
    fs::read(path)
        .map(Zeroizing::new)
        .map_err(|source| PkiError::Io {
            path: path.to_owned(),
            source,
        })
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let pem = read(path)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|_| PkiError::Pem {
            path: path.to_owned(),
            what: "certificate",
        })?;
    if certs.is_empty() {
        return Err(PkiError::Pem {
            path: path.to_owned(),
            what: "certificate",
        });
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, PkiError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|_| PkiError::Pem {
        path: path.to_owned(),
        what: "private key",
    })
}

#[cfg(all(test, feature = "pki-gen"))]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn emse(s: &str) -> EmseId {
        EmseId::new(s).unwrap()
    }

    #[test]
    fn identity_uri_round_trips_and_is_canonical() {
        for name in [
            "emse-a.example.com",
            "EMSE_B~1",
            "capteur-é",
            "a/b?c#d%e",
            "x:y@z",
        ] {
            let id = PeerIdentity::Emse(emse(name));
            let uri = id.to_uri();
            assert!(uri.is_ascii(), "{uri}");
            assert_eq!(PeerIdentity::from_uri(&uri).unwrap(), Some(id));
        }
        assert_eq!(
            PeerIdentity::Emse(emse("capteur-é")).to_uri(),
            "urn:e2m:emse:capteur-%C3%A9"
        );
        // Lower-case hex, needless escapes and bad escapes are refused.
        for bad in [
            "urn:e2m:emse:capteur-%c3%a9",
            "urn:e2m:emse:%61bc",
            "urn:e2m:emse:ab%",
            "urn:e2m:emse:ab%4",
            "urn:e2m:emse:%FF",
        ] {
            assert_eq!(
                PeerIdentity::from_uri(bad),
                Err(IdentityUriError::NotCanonical),
                "{bad}"
            );
        }
        assert_eq!(
            PeerIdentity::from_uri("urn:e2m:root:x"),
            Err(IdentityUriError::UnknownRole)
        );
        assert_eq!(
            PeerIdentity::from_uri("urn:e2m:emse"),
            Err(IdentityUriError::Malformed)
        );
        assert_eq!(
            PeerIdentity::from_uri("urn:e2m:emse:"),
            Err(IdentityUriError::InvalidName)
        );
        // Decodes to white space: not a valid EMSE_Id.
        assert_eq!(
            PeerIdentity::from_uri("urn:e2m:emse:a%20b"),
            Err(IdentityUriError::InvalidName)
        );
        assert_eq!(PeerIdentity::from_uri("https://example.com/"), Ok(None));
        assert!(NodeName::new("hss/1").is_err());
        assert!(NodeName::new("").is_err());
    }

    #[test]
    fn generate_write_load_round_trip() {
        let dir = std::env::temp_dir().join(format!(
            "e2m-pki-test-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let spec = PkiSpec::new(vec![emse("emse-a"), emse("Émse-b")]).unwrap();
        let pki = GeneratedPki::generate(&spec).unwrap();
        let loaded = pki.write_to(&dir).unwrap();
        assert_eq!(loaded.ca_certificates().unwrap().len(), 1);
        assert_eq!(
            loaded.emks().unwrap().identity().unwrap(),
            PeerIdentity::Emks(NodeName::new("emks").unwrap())
        );
        assert_eq!(
            loaded.hss().unwrap().identity().unwrap(),
            PeerIdentity::Hss(NodeName::new("hss").unwrap())
        );
        for id in ["emse-a", "Émse-b"] {
            let creds = loaded.emse(&emse(id)).unwrap();
            assert_eq!(creds.identity().unwrap(), PeerIdentity::Emse(emse(id)));
            assert!(!format!("{creds:?}").contains("PRIVATE"));
            let callback = loaded.emse_callback(&emse(id)).unwrap();
            assert_eq!(callback.identity().unwrap(), PeerIdentity::Emse(emse(id)));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.join("hss.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "private key readable by others");
        }
        assert!(!dir.join("ca.key").exists());
        assert!(loaded.emse(&emse("nobody")).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    /// (serverAuth, clientAuth, dNSNames, iPAddresses) of a certificate, read with
    /// x509-parser (not with the generator's own types).
    fn uses_and_names(der: &[u8]) -> (bool, bool, Vec<String>, usize) {
        use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
        let (_, cert) = X509Certificate::from_der(der).unwrap();
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        let mut dns = Vec::new();
        let mut ips = 0;
        for name in &cert
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
        {
            match name {
                GeneralName::DNSName(d) => dns.push((*d).to_owned()),
                GeneralName::IPAddress(_) => ips += 1,
                _ => {}
            }
        }
        (eku.server_auth, eku.client_auth, dns, ips)
    }

    #[test]
    fn every_certificate_has_one_role_and_only_the_emks_its_host_name() {
        let dir = std::env::temp_dir().join(format!(
            "e2m-pki-roles-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let ids = [emse("emse-a"), emse("emse-b")];
        let pki = GeneratedPki::generate(&PkiSpec::new(ids.to_vec()).unwrap())
            .unwrap()
            .write_to(&dir)
            .unwrap();
        let leaf = |c: Credentials| c.chain[0].to_vec();
        let (server, client, dns, _) = uses_and_names(&leaf(pki.emks().unwrap()));
        assert!(server && client, "the EMKS serves and posts notifications");
        assert!(dns.iter().any(|d| d == DEFAULT_EMKS_HOST), "{dns:?}");
        let (server, client, dns, ips) = uses_and_names(&leaf(pki.hss().unwrap()));
        assert!(!server && client && ips == 0);
        assert_eq!(dns, [DEFAULT_HSS_HOST], "the HSS's Diameter identity only");
        for id in &ids {
            let (server, client, dns, _) = uses_and_names(&leaf(pki.emse(id).unwrap()));
            assert!(
                !server && client,
                "an EMSE's client certificate cannot serve"
            );
            assert!(!dns.iter().any(|d| d == DEFAULT_EMKS_HOST));
            let callback = pki.emse_callback(id).unwrap();
            assert_eq!(callback.identity().unwrap(), PeerIdentity::Emse(id.clone()));
            let (server, client, dns, _) = uses_and_names(&leaf(callback));
            assert!(
                server && !client,
                "an EMSE's callback certificate cannot be a client"
            );
            assert!(!dns.iter().any(|d| d == DEFAULT_EMKS_HOST));
            assert!(pki.callback_paths_for(id).1.exists());
        }
        fs::remove_dir_all(&dir).unwrap();

        // The EMKS host must be a DNS name no EMSE certificate carries.
        for bad in [
            "localhost",
            "127.0.0.1",
            "EMKS.e2m.test",
            "emks..test",
            "-emks.test",
            "",
        ] {
            let mut spec = PkiSpec::new(vec![]).unwrap();
            spec.emks_host = bad.to_owned();
            assert!(
                matches!(GeneratedPki::generate(&spec), Err(PkiError::InvalidName(_))),
                "{bad:?} accepted"
            );
        }
    }
}
