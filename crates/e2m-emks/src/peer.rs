//! Who is asking: the authenticated TLS peer, as the transport verified it.

use std::sync::Arc;

use e2m_keyid::EmseId;

/// The peer of a request: its verified certificate identity and the role the certificate
/// gives it (seed 6.x.2.2.1: "Mutual authentication shall be enabled in TLS").
///
/// The transport builds it from the verified client certificate only, never from anything
/// the request says. The core then decides what the role may do: only the HSS pushes keys,
/// only EMSEs register, fetch, subscribe and notify.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Peer {
    /// An EMSE, with the EMSE_Id its certificate carries (shared: audit records copy the
    /// peer, and an `EmseId` is 258 octets inline).
    Emse(Arc<EmseId>),
    /// The HSS, with its node name.
    Hss(Arc<str>),
    /// Any other authenticated peer (another EMKS, a monitoring client): may do nothing here.
    Other(Arc<str>),
}

impl Peer {
    /// An EMSE peer.
    pub fn emse(id: EmseId) -> Peer {
        Peer::Emse(Arc::new(id))
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
