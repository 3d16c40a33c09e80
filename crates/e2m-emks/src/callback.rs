//! Where an EMSE may have the EMKS connect: the host *and port* of a callback URI, checked
//! when the callback is given (registration, subscription) and again before each delivery,
//! never by connecting to it.
//!
//! The EMKS connects out to every callback it accepts, from its own network position; an
//! EMSE that could name any host and port would have it probe hosts and services it cannot
//! reach itself (issue 9 item 5; issue 16 item 4: ssh, a metrics port, the EMKS itself). A
//! callback is accepted when either
//!
//! - its host is one that the EMSE's certificate names (a subjectAltName dNSName or
//!   iPAddress, which the transport reads from the verified certificate and hands over in
//!   [`crate::Peer`]) **and** its port is one the operator lets certificate-named hosts use:
//!   443, the default port of `https`, unless configured
//!   ([`crate::EmksConfig::allow_certificate_callback_ports`]) — a certificate names
//!   hosts, not services; or
//! - the operator's allow-list names its host and port together ([`AllowedCallback`],
//!   [`crate::EmksConfig::allow_callback`]).
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
        let (host, _) = split_authority(authority)?;
        host.filter(|h| !h.is_wildcard())
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

/// The default port of `https` (RFC 9110 §4.2.2): the port of a callback URI without one.
pub const HTTPS_DEFAULT_PORT: u16 = 443;

/// `host[:port]` or `[v6][:port]` → the host (`None` inside if it is not a host) and the
/// port text; `None` for a malformed bracket.
fn split_authority(authority: &str) -> Option<(Option<CallbackHost>, Option<&str>)> {
    if let Some(literal) = authority.strip_prefix('[') {
        let end = literal.find(']')?;
        let host = literal[..end]
            .parse::<Ipv6Addr>()
            .ok()
            .map(|ip| CallbackHost::Ip(ip.into()));
        let port = match &literal[end + 1..] {
            "" => None,
            rest => Some(rest.strip_prefix(':')?),
        };
        return Some((host, port));
    }
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    let host = host
        .parse()
        .ok()
        .map(CallbackHost::Ip)
        .or_else(|| CallbackHost::dns(host));
    Some((host, port))
}

/// A TCP port as a URI or the allow-list writes it: decimal digits only, 1 to 65535, no
/// leading zero (one spelling per port, as `e2m_msg::CallbackUri` requires).
fn parse_port(text: &str) -> Option<u16> {
    if text.is_empty() || text.starts_with('0') || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u16>().ok().filter(|p| *p != 0)
}

/// The host and port a callback URI connects to: its explicit port, or 443.
///
/// `None` if the host is neither a DNS name nor an IP address (e.g. percent-encoded, or an
/// IPv6 literal with a zone).
pub fn callback_target(callback: &CallbackUri) -> Option<(CallbackHost, u16)> {
    let rest = callback.as_str().strip_prefix("https://")?;
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    let (host, port) = split_authority(authority)?;
    let host = host.filter(|h| !h.is_wildcard())?;
    let port = match port {
        None | Some("") => HTTPS_DEFAULT_PORT,
        Some(text) => parse_port(text)?,
    };
    Some((host, port))
}

/// One entry of the operator's callback allow-list: a host (a DNS name, a `*.` pattern for
/// one label under a name, or an IP address) **and** the one port callbacks to it may use,
/// written `host:port` (`gw.example.net:8443`, `*.gw.example.net:443`, `[2001:db8::1]:443`,
/// `10.0.0.1:9443`). The port is required: an allow-list entry names a service, so that an
/// allowed notification gateway does not open every other port of its host to callbacks.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AllowedCallback {
    /// The host or host pattern.
    pub host: CallbackHost,
    /// The port (1–65535).
    pub port: u16,
}

impl AllowedCallback {
    /// Whether this entry covers a callback to `host` on `port`.
    pub fn covers(&self, host: &CallbackHost, port: u16) -> bool {
        self.port == port && self.host.covers(host)
    }
}

/// Why a text is not an [`AllowedCallback`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BadAllowedCallback {
    /// No `:port`, or a port that is not 1–65535 in digits without a leading zero.
    Port,
    /// The host is neither a DNS name (or `*.` pattern) nor an IP address.
    Host,
}

impl fmt::Display for BadAllowedCallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BadAllowedCallback::Port => "want HOST:PORT with a port from 1 to 65535",
            BadAllowedCallback::Host => "not a host name, *. pattern or IP address",
        })
    }
}

impl std::error::Error for BadAllowedCallback {}

impl FromStr for AllowedCallback {
    type Err = BadAllowedCallback;

    /// `host:port`, with an IPv6 address in brackets (`[::1]:8443`).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (host, port) = if text.starts_with('[') {
            let end = text.find(']').ok_or(BadAllowedCallback::Host)?;
            let port = text[end + 1..]
                .strip_prefix(':')
                .ok_or(BadAllowedCallback::Port)?;
            (&text[..=end], port)
        } else {
            text.rsplit_once(':').ok_or(BadAllowedCallback::Port)?
        };
        let port = parse_port(port).ok_or(BadAllowedCallback::Port)?;
        // An unbracketed IPv6 address would have split at its last colon.
        if !text.starts_with('[') && host.contains(':') {
            return Err(BadAllowedCallback::Host);
        }
        let host = host.parse().map_err(|_| BadAllowedCallback::Host)?;
        Ok(AllowedCallback { host, port })
    }
}

impl fmt::Display for AllowedCallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            CallbackHost::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            host => write!(f, "{host}:{}", self.port),
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
    fn ports_are_read_from_callbacks_443_by_default() {
        let target = |uri: &str| callback_target(&CallbackUri::new(uri).unwrap());
        let host = |t: &str| t.parse::<CallbackHost>().unwrap();
        assert_eq!(
            target("https://emse-a.example.com/cb"),
            Some((host("emse-a.example.com"), 443))
        );
        assert_eq!(
            target("https://emse-a.example.com:8443/cb"),
            Some((host("emse-a.example.com"), 8443))
        );
        assert_eq!(target("https://[::1]:22/cb"), Some((host("::1"), 22)));
        assert_eq!(target("https://[::1]/cb"), Some((host("::1"), 443)));
        assert_eq!(
            target("https://127.0.0.1:9464"),
            Some((host("127.0.0.1"), 9464))
        );
        assert_eq!(target("https://a%2Eb:443/cb"), None);
    }

    #[test]
    fn allow_list_entries_name_host_and_port() {
        let entry = |t: &str| t.parse::<AllowedCallback>();
        let host = |t: &str| t.parse::<CallbackHost>().unwrap();
        let gw = entry("gw.example.net:8443").unwrap();
        assert_eq!(gw.to_string(), "gw.example.net:8443");
        assert!(gw.covers(&host("GW.example.net"), 8443));
        assert!(!gw.covers(&host("gw.example.net"), 443), "another port");
        assert!(!gw.covers(&host("gw.example.net"), 22));
        let v6 = entry("[2001:db8::1]:443").unwrap();
        assert_eq!(v6.to_string(), "[2001:db8::1]:443");
        assert!(v6.covers(&host("2001:db8::1"), 443));
        let wild = entry("*.gw.example.net:443").unwrap();
        assert!(wild.covers(&host("eu.gw.example.net"), 443));
        assert!(!wild.covers(&host("eu.gw.example.net"), 444));
        assert_eq!(entry("10.0.0.1:9443").unwrap().port, 9443);
        for (bad, why) in [
            ("gw.example.net", BadAllowedCallback::Port),
            ("gw.example.net:", BadAllowedCallback::Port),
            ("gw.example.net:0", BadAllowedCallback::Port),
            ("gw.example.net:65536", BadAllowedCallback::Port),
            ("gw.example.net:0443", BadAllowedCallback::Port),
            ("gw.example.net:+443", BadAllowedCallback::Port),
            ("2001:db8::1", BadAllowedCallback::Host),
            ("[2001:db8::1]", BadAllowedCallback::Port),
            ("a_b:443", BadAllowedCallback::Host),
            (":443", BadAllowedCallback::Host),
        ] {
            assert_eq!(entry(bad), Err(why), "{bad}");
        }
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
