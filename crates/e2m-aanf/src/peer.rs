//! Who is asking: the names of the verified certificate, and the OAuth2 scopes of the access
//! token if the binding validated one.

use core::fmt;
use core::str::FromStr;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

use e2m_akma::{NotifUri, scope};
use e2m_keyid::akma::Fqdn;

/// A name of a certificate (subjectAltName dNSName or iPAddress), a configured peer name,
/// or the host of a `notifUri`: a DNS name (lower case, no trailing dot; a leading `*.`
/// label is a wildcard for exactly one label, as in a certificate, RFC 6125 §6.4.3) or an
/// IP address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Host {
    /// A DNS name.
    Dns(Box<str>),
    /// An IP address.
    Ip(IpAddr),
}

/// Why a text is not a [`Host`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BadHost;

impl fmt::Display for BadHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a host name or IP address")
    }
}

impl std::error::Error for BadHost {}

impl Host {
    /// A DNS name: labels of letters, digits and `-`, 1 to 63 octets each, at most 253 in
    /// all, compared without regard to case; a leading `*` label is a wildcard.
    ///
    /// # Errors
    /// [`BadHost`].
    pub fn dns(name: &str) -> Result<Host, BadHost> {
        let name = name.strip_suffix('.').unwrap_or(name);
        if name.is_empty() || name.len() > 253 {
            return Err(BadHost);
        }
        for (i, label) in name.split('.').enumerate() {
            let wildcard = i == 0 && label == "*";
            let ok = wildcard
                || (!label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-'));
            if !ok {
                return Err(BadHost);
            }
        }
        Ok(Host::Dns(name.to_ascii_lowercase().into()))
    }

    /// The host of `uri` (`http://` or `https://`), or `None` if it is neither a DNS name
    /// nor an IP address (percent-encoded, user information, an IPv6 zone, a wildcard).
    pub fn of_uri(uri: &NotifUri) -> Option<Host> {
        let text = uri.as_str();
        let rest = text
            .strip_prefix("https://")
            .or_else(|| text.strip_prefix("http://"))?;
        let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
        if authority.contains('@') {
            return None;
        }
        if let Some(literal) = authority.strip_prefix('[') {
            let inside = &literal[..literal.find(']')?];
            return inside
                .parse::<Ipv6Addr>()
                .ok()
                .map(|ip| Host::Ip(ip.into()));
        }
        let host = &authority[..authority.find(':').unwrap_or(authority.len())];
        host.parse()
            .ok()
            .map(Host::Ip)
            .or_else(|| Host::dns(host).ok())
            .filter(|h| !h.is_wildcard())
    }

    fn is_wildcard(&self) -> bool {
        matches!(self, Host::Dns(name) if name.starts_with("*."))
    }

    /// Whether this name (of a certificate or the operator's allow-list) covers `host`: the
    /// same address or name, or a wildcard whose `*` stands for the first label of `host`.
    pub fn covers(&self, host: &Host) -> bool {
        match (self, host) {
            (Host::Ip(a), Host::Ip(b)) => a == b,
            (Host::Dns(pattern), Host::Dns(name)) => match pattern.strip_prefix("*.") {
                Some(parent) => name
                    .split_once('.')
                    .is_some_and(|(first, rest)| first != "*" && rest == parent),
                None => pattern == name,
            },
            _ => false,
        }
    }

    /// Whether this is exactly the DNS name `fqdn` (no wildcard: an identity is never
    /// taken from a wildcard name).
    pub fn is_fqdn(&self, fqdn: &Fqdn) -> bool {
        matches!(self, Host::Dns(name) if **name == *fqdn.as_str())
    }
}

impl From<&Fqdn> for Host {
    fn from(fqdn: &Fqdn) -> Host {
        // An Fqdn is lower-case LDH labels already.
        Host::Dns(fqdn.as_str().into())
    }
}

impl FromStr for Host {
    type Err = BadHost;

    /// An IP address (IPv6 with or without brackets) or a DNS name.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let unbracketed = text
            .strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .unwrap_or(text);
        if let Ok(ip) = unbracketed.parse::<IpAddr>() {
            return Ok(Host::Ip(ip));
        }
        Host::dns(text)
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Dns(name) => f.write_str(name),
            Host::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// The peer of a request, as the transport verified it: the names its certificate carries
/// (subjectAltName dNSName and iPAddress entries). Never built from anything the request
/// says.
///
/// The AAnF's configuration says what each name may do (an AUSF, an AF, a NEF); the core
/// decides, per operation, from these names only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    names: Arc<[Host]>,
}

impl Peer {
    /// A peer whose verified certificate names `names`.
    pub fn new(names: impl IntoIterator<Item = Host>) -> Peer {
        Peer {
            names: names.into_iter().collect(),
        }
    }

    /// A peer whose certificate names the one DNS name `fqdn`.
    pub fn named(fqdn: &Fqdn) -> Peer {
        Peer::new([Host::from(fqdn)])
    }

    /// The certificate's names.
    pub fn names(&self) -> &[Host] {
        &self.names
    }

    /// Whether the certificate names `fqdn` exactly (not through a wildcard).
    pub fn has_fqdn(&self, fqdn: &Fqdn) -> bool {
        self.names.iter().any(|n| n.is_fqdn(fqdn))
    }

    /// Whether some name of the certificate covers `host`.
    pub fn covers(&self, host: &Host) -> bool {
        self.names.iter().any(|n| n.covers(host))
    }
}

impl fmt::Display for Peer {
    /// The first name (what an audit line shows), `-` for none.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.names.first() {
            Some(name) => write!(f, "{name}"),
            None => f.write_str("-"),
        }
    }
}

/// An OAuth2 scope of the AKMA APIs (the OpenAPI files' `securitySchemes`), as
/// [`e2m_akma::scope`] spells them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scope {
    /// `naanf-akma`: the API itself.
    NaanfAkma,
    /// `naanf-akma:anchorkey`: register and remove K_AKMA (the AUSF).
    AnchorKey,
    /// `naanf-akma:applicationkeyget`: request K_AF (the AF, the NEF).
    ApplicationKeyGet,
    /// `naanf-akma:applicationkeyget:supi-access`: receive the SUPI with K_AF.
    SupiAccess,
    /// `nnef-akma:gpsi-access`: receive the GPSI from the NEF API.
    NefGpsiAccess,
}

impl Scope {
    const ALL: [Scope; 5] = [
        Scope::NaanfAkma,
        Scope::AnchorKey,
        Scope::ApplicationKeyGet,
        Scope::SupiAccess,
        Scope::NefGpsiAccess,
    ];

    /// The scope's text.
    pub const fn as_str(self) -> &'static str {
        match self {
            Scope::NaanfAkma => scope::NAANF_AKMA,
            Scope::AnchorKey => scope::ANCHORKEY,
            Scope::ApplicationKeyGet => scope::APPLICATIONKEYGET,
            Scope::SupiAccess => scope::SUPI_ACCESS,
            Scope::NefGpsiAccess => scope::NEF_GPSI_ACCESS,
        }
    }

    const fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// The AKMA scopes an access token carries (RFC 6749 §3.3: space-separated in its `scope`
/// claim); scopes of other APIs are ignored.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Scopes(u8);

impl Scopes {
    /// No scope.
    pub const NONE: Scopes = Scopes(0);

    /// The scopes named in `claim` (space-separated, exact spellings; others ignored).
    pub fn parse(claim: &str) -> Scopes {
        claim
            .split(' ')
            .filter_map(|word| Scope::ALL.into_iter().find(|s| s.as_str() == word))
            .fold(Scopes::NONE, Scopes::with)
    }

    /// These scopes and `scope`.
    #[must_use]
    pub const fn with(self, scope: Scope) -> Scopes {
        Scopes(self.0 | scope.bit())
    }

    /// Whether `scope` is among them.
    pub const fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(
                Scope::ALL
                    .into_iter()
                    .filter(|s| self.contains(*s))
                    .map(Scope::as_str),
            )
            .finish()
    }
}

/// Who asks, and with what authorisation: the verified peer and, where the binding
/// validated an OAuth2 access token (TS 33.501 §13.4.1: a JWT signed by the configured
/// NRF key), the scopes it carries. Without a token the peer is authorised by mutual TLS
/// alone, which the AAnF accepts only when it is not configured to require tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    peer: Peer,
    token: Option<Scopes>,
}

impl Caller {
    /// A caller authenticated by mutual TLS, without an access token.
    pub fn mutual_tls(peer: Peer) -> Caller {
        Caller { peer, token: None }
    }

    /// A caller with a validated access token carrying `scopes`.
    pub fn with_token(peer: Peer, scopes: Scopes) -> Caller {
        Caller {
            peer,
            token: Some(scopes),
        }
    }

    /// The peer.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// The token's scopes, if a token was presented.
    pub fn token(&self) -> Option<Scopes> {
        self.token
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn of(uri: &str) -> Option<Host> {
        Host::of_uri(&NotifUri::parse(uri).unwrap())
    }

    #[test]
    fn hosts_are_read_from_uris() {
        assert_eq!(
            of("https://AF.example.com:8443/n"),
            Some(Host::Dns("af.example.com".into()))
        );
        assert_eq!(of("http://10.0.0.7:8080/n"), "10.0.0.7".parse().ok());
        assert_eq!(of("https://[::1]:9/n?x=1"), "::1".parse().ok());
        assert_eq!(of("https://a%2Eb/n"), None);
        assert_eq!(of("https://*.example.com/n"), None);
        assert_eq!(of("https://user@af.example.com/n"), None);
    }

    #[test]
    fn names_cover_hosts_and_identities_need_the_exact_name() {
        let host = |t: &str| t.parse::<Host>().unwrap();
        assert!(host("*.example.com").covers(&host("af.example.com")));
        assert!(!host("*.example.com").covers(&host("a.b.example.com")));
        let af = Fqdn::parse("af.example.com").unwrap();
        assert!(host("af.example.com").is_fqdn(&af));
        assert!(!host("*.example.com").is_fqdn(&af));
        assert!(!Peer::new([host("*.example.com")]).has_fqdn(&af));
    }

    #[test]
    fn scopes_are_read_from_a_claim() {
        let s = Scopes::parse("naanf-akma naanf-akma:applicationkeyget other:scope");
        assert!(s.contains(Scope::NaanfAkma) && s.contains(Scope::ApplicationKeyGet));
        assert!(!s.contains(Scope::SupiAccess));
        assert!(!Scopes::parse("naanf-akma:applicationkeyget:supi").contains(Scope::SupiAccess));
        assert_eq!(
            format!("{s:?}"),
            r#"{"naanf-akma", "naanf-akma:applicationkeyget"}"#
        );
    }
}
