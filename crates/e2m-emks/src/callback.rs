//! Where an EMSE may have the EMKS connect: the host of a callback URI, checked when the
//! callback is given (registration, subscription), never by connecting to it.
//!
//! The EMKS connects out to every callback it accepts, from its own network position; an
//! EMSE that could name any host and port would have it probe hosts it cannot reach itself
//! (issue 9 item 5). So a callback's host must be one that the EMSE's certificate names (a
//! subjectAltName dNSName or iPAddress, which the transport reads from the verified
//! certificate and hands over in [`crate::Peer`]), or one the operator allows
//! ([`crate::EmksConfig::allow_callback_host`]). The port is any TCP port (1–65535, checked
//! when the URI is decoded): the certificate names hosts, not services.

use core::fmt;
use core::str::FromStr;
use std::net::{IpAddr, Ipv6Addr};

use e2m_msg::CallbackUri;

/// A host a callback may name: a DNS name (lower case, without a trailing dot; a leading
/// `*.` label is a wildcard for exactly one label, as in a certificate, RFC 6125 §6.4.3) or
/// an IP address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CallbackHost {
    /// A DNS name.
    Dns(Box<str>),
    /// An IP address.
    Ip(IpAddr),
}

/// Why a text is not a [`CallbackHost`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BadCallbackHost;

impl fmt::Display for BadCallbackHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a host name or IP address")
    }
}

impl std::error::Error for BadCallbackHost {}

impl CallbackHost {
    /// A DNS name: labels of letters, digits and `-`, 1 to 63 octets each, at most 253 in
    /// all, compared without regard to case; a leading `*` label is a wildcard. `None` if
    /// `name` is not one.
    pub fn dns(name: &str) -> Option<CallbackHost> {
        let name = name.strip_suffix('.').unwrap_or(name);
        if name.is_empty() || name.len() > 253 {
            return None;
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
                return None;
            }
        }
        Some(CallbackHost::Dns(name.to_ascii_lowercase().into()))
    }

    /// The host of `callback`, or `None` if it is neither a DNS name nor an IP address
    /// (e.g. percent-encoded, or an IPv6 literal with a zone).
    pub fn of_callback(callback: &CallbackUri) -> Option<CallbackHost> {
        let rest = callback.as_str().strip_prefix("https://")?;
        let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
        if let Some(literal) = authority.strip_prefix('[') {
            let inside = &literal[..literal.find(']')?];
            return inside
                .parse::<Ipv6Addr>()
                .ok()
                .map(|ip| CallbackHost::Ip(ip.into()));
        }
        let host = &authority[..authority.find(':').unwrap_or(authority.len())];
        host.parse()
            .ok()
            .map(CallbackHost::Ip)
            .or_else(|| CallbackHost::dns(host))
            .filter(|h| !h.is_wildcard())
    }

    fn is_wildcard(&self) -> bool {
        matches!(self, CallbackHost::Dns(name) if name.starts_with("*."))
    }

    /// Whether this name (from a certificate or the allow-list) covers `host`: the same
    /// address or name, or a wildcard whose `*` stands for the first label of `host`.
    pub fn covers(&self, host: &CallbackHost) -> bool {
        match (self, host) {
            (CallbackHost::Ip(a), CallbackHost::Ip(b)) => a == b,
            (CallbackHost::Dns(pattern), CallbackHost::Dns(name)) => {
                match pattern.strip_prefix("*.") {
                    Some(parent) => name
                        .split_once('.')
                        .is_some_and(|(first, rest)| first != "*" && rest == parent),
                    None => pattern == name,
                }
            }
            _ => false,
        }
    }
}

impl FromStr for CallbackHost {
    type Err = BadCallbackHost;

    /// An IP address (IPv6 with or without brackets) or a DNS name.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let unbracketed = text
            .strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .unwrap_or(text);
        if let Ok(ip) = unbracketed.parse::<IpAddr>() {
            return Ok(CallbackHost::Ip(ip));
        }
        CallbackHost::dns(text).ok_or(BadCallbackHost)
    }
}

impl fmt::Display for CallbackHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallbackHost::Dns(name) => f.write_str(name),
            CallbackHost::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn of(uri: &str) -> Option<CallbackHost> {
        CallbackHost::of_callback(&CallbackUri::new(uri).unwrap())
    }

    #[test]
    fn hosts_are_read_from_callbacks() {
        assert_eq!(
            of("https://EMSE-A.example.com:8443/cb"),
            Some(CallbackHost::Dns("emse-a.example.com".into()))
        );
        assert_eq!(of("https://127.0.0.1/cb"), "127.0.0.1".parse().ok());
        assert_eq!(of("https://[::1]:9/cb?x=1"), "::1".parse().ok());
        assert_eq!(of("https://a%2Eb/cb"), None);
        assert_eq!(of("https://*.example.com/cb"), None);
    }

    #[test]
    fn names_cover_hosts() {
        let host = |t: &str| t.parse::<CallbackHost>().unwrap();
        assert!(host("emse-a.example.com").covers(&host("EMSE-A.example.com.")));
        assert!(!host("emse-a.example.com").covers(&host("emse-b.example.com")));
        assert!(host("*.example.com").covers(&host("a.example.com")));
        assert!(!host("*.example.com").covers(&host("a.b.example.com")));
        assert!(!host("*.example.com").covers(&host("example.com")));
        assert!(host("127.0.0.1").covers(&host("127.0.0.1")));
        assert!(!host("127.0.0.1").covers(&host("127.0.0.2")));
        assert!(host("[::1]").covers(&host("::1")));
        assert!(!host("localhost").covers(&host("127.0.0.1")));
        for bad in ["", "a..b", "-a.b", "a_b.c", "a.*.c", "a b"] {
            assert!(bad.parse::<CallbackHost>().is_err(), "{bad}");
        }
    }
}
