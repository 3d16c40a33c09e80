//! Who is asking: the authenticated TLS peer, as the transport verified it.

use std::sync::Arc;

use e2m_keyid::EmseId;

use crate::CallbackHost;

/// The peer of a request: its verified certificate identity and the role the certificate
/// gives it (seed 6.x.2.2.1: "Mutual authentication shall be enabled in TLS").
///
/// The transport builds it from the verified client certificate only, never from anything
/// the request says. The core then decides what the role may do: only the HSS pushes keys,
/// only EMSEs register, fetch, subscribe and notify.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Peer {
    /// An EMSE, with the EMSE_Id its certificate carries and the hosts it names (shared:
    /// audit records copy the peer, and an `EmseId` is 258 octets inline).
    Emse(Arc<EmsePeer>),
    /// The HSS, with its node name.
    Hss(Arc<str>),
    /// Any other authenticated peer (another EMKS, a monitoring client): may do nothing here.
    Other(Arc<str>),
}

/// An EMSE as its verified certificate describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmsePeer {
    id: EmseId,
    hosts: Arc<[CallbackHost]>,
}

impl EmsePeer {
    /// The EMSE_Id.
    pub fn id(&self) -> &EmseId {
        &self.id
    }

    /// The hosts the certificate names (subjectAltName dNSName and iPAddress entries):
    /// where this EMSE may have the EMKS send notifications (see [`CallbackHost`]).
    pub fn hosts(&self) -> &[CallbackHost] {
        &self.hosts
    }
}

/// An EMSE peer is first of all its EMSE_Id.
impl core::ops::Deref for EmsePeer {
    type Target = EmseId;
    fn deref(&self) -> &EmseId {
        &self.id
    }
}

impl Peer {
    /// An EMSE peer whose certificate names no host.
    pub fn emse(id: EmseId) -> Peer {
        Peer::emse_naming(id, Arc::from([]))
    }

    /// An EMSE peer whose certificate names `hosts` (subjectAltName dNSName and iPAddress
    /// entries): callbacks to them are accepted from it.
    pub fn emse_naming(id: EmseId, hosts: Arc<[CallbackHost]>) -> Peer {
        Peer::Emse(Arc::new(EmsePeer { id, hosts }))
    }

    /// The HSS, named `name`.
    pub fn hss(name: &str) -> Peer {
        Peer::Hss(name.into())
    }

    /// The role, as a word for audit records: `emse`, `hss` or `other`.
    pub fn role(&self) -> &'static str {
        match self {
            Peer::Emse(_) => "emse",
            Peer::Hss(_) => "hss",
            Peer::Other(_) => "other",
        }
    }

    /// The name from the certificate.
    pub fn name(&self) -> &str {
        match self {
            Peer::Emse(id) => id.as_str(),
            Peer::Hss(n) | Peer::Other(n) => n,
        }
    }
}

impl core::fmt::Display for Peer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}:{}", self.role(), self.name())
    }
}
