//! The AVP data formats (RFC 6733 §4.2 basic, §4.3.1 derived) and a typed view of a value.

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::avp::{Avp, AvpIter};
use crate::codes::address_family;
use crate::error::ValueError;

/// An AVP data format (RFC 6733 §4.2, §4.3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DataType {
    /// Arbitrary octets.
    OctetString,
    /// 32-bit signed.
    Integer32,
    /// 64-bit signed.
    Integer64,
    /// 32-bit unsigned.
    Unsigned32,
    /// 64-bit unsigned.
    Unsigned64,
    /// IEEE 754 single precision.
    Float32,
    /// IEEE 754 double precision.
    Float64,
    /// A sequence of AVPs.
    Grouped,
    /// AddressType (2 octets) and address.
    Address,
    /// NTP seconds (4 octets), with the 2036 era rule.
    Time,
    /// UTF-8 text.
    Utf8String,
    /// An ASCII FQDN or realm.
    DiameterIdentity,
    /// `aaa://` or `aaas://` URI.
    DiameterUri,
    /// Integer32 with named values.
    Enumerated,
    /// An ipfw-style filter rule in ASCII (kept as octets; not parsed).
    IpFilterRule,
}

impl DataType {
    /// The exact data length of the fixed-size formats.
    pub const fn fixed_len(self) -> Option<usize> {
        match self {
            Self::Integer32 | Self::Unsigned32 | Self::Float32 | Self::Enumerated | Self::Time => {
                Some(4)
            }
            Self::Integer64 | Self::Unsigned64 | Self::Float64 => Some(8),
            _ => None,
        }
    }

    /// The smallest valid data length: what a zero-filled example AVP in a Failed-AVP carries
    /// (RFC 6733 §7.1.5, DIAMETER_MISSING_AVP and DIAMETER_INVALID_AVP_LENGTH).
    pub const fn min_len(self) -> usize {
        match self.fixed_len() {
            Some(n) => n,
            None => match self {
                Self::Address => 2,
                _ => 0,
            },
        }
    }
}

/// A value read according to its data format, borrowed from the message.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Value<'a> {
    /// OctetString (and IPFilterRule).
    OctetString(&'a [u8]),
    /// Integer32.
    Integer32(i32),
    /// Integer64.
    Integer64(i64),
    /// Unsigned32.
    Unsigned32(u32),
    /// Unsigned64.
    Unsigned64(u64),
    /// Float32.
    Float32(f32),
    /// Float64.
    Float64(f64),
    /// Grouped: the children, read lazily.
    Grouped(AvpIter<'a>),
    /// Address.
    Address(Address<'a>),
    /// Time.
    Time(Time),
    /// UTF8String.
    Utf8String(&'a str),
    /// DiameterIdentity.
    DiameterIdentity(&'a str),
    /// DiameterURI.
    DiameterUri(DiameterUri<'a>),
    /// Enumerated.
    Enumerated(i32),
}

impl PartialEq for AvpIter<'_> {
    /// Two iterators are equal when they would yield the same AVPs.
    fn eq(&self, other: &Self) -> bool {
        self.clone().eq(other.clone())
    }
}

impl<'a> Value<'a> {
    /// Reads `avp`'s data as `data_type`.
    ///
    /// # Errors
    ///
    /// [`ValueError`] when the data does not fit the format.
    pub fn read(avp: &Avp<'a>, data_type: DataType) -> Result<Self, ValueError> {
        Ok(match data_type {
            DataType::OctetString | DataType::IpFilterRule => Self::OctetString(avp.data()),
            DataType::Integer32 => Self::Integer32(avp.i32()?),
            DataType::Integer64 => Self::Integer64(avp.i64()?),
            DataType::Unsigned32 => Self::Unsigned32(avp.u32()?),
            DataType::Unsigned64 => Self::Unsigned64(avp.u64()?),
            DataType::Float32 => Self::Float32(avp.f32()?),
            DataType::Float64 => Self::Float64(avp.f64()?),
            DataType::Grouped => Self::Grouped(avp.grouped()),
            DataType::Address => Self::Address(avp.address()?),
            DataType::Time => Self::Time(avp.time()?),
            DataType::Utf8String => Self::Utf8String(avp.utf8()?),
            DataType::DiameterIdentity => Self::DiameterIdentity(avp.identity()?),
            DataType::DiameterUri => Self::DiameterUri(avp.uri()?),
            DataType::Enumerated => Self::Enumerated(avp.i32()?),
        })
    }
}

/// Checks a DiameterIdentity (RFC 6733 §4.3.1: "FQDN/Realm", in ASCII form): 1 to 255
/// octets of dot-separated labels of letters, digits, `-` and `_`, each 1 to 63 octets; one
/// trailing dot is allowed.
///
/// `_` is accepted because deployed stacks use it in host names; anything outside ASCII is
/// refused (Appendix D: internationalised names travel in their ASCII form).
///
/// # Errors
///
/// [`ValueError::Identity`] otherwise.
pub fn validate_identity(octets: &[u8]) -> Result<&str, ValueError> {
    let bad = Err(ValueError::Identity);
    if octets.is_empty() || octets.len() > 255 {
        return bad;
    }
    let body = octets.strip_suffix(b".").unwrap_or(octets);
    for label in body.split(|&b| b == b'.') {
        if label.is_empty() || label.len() > 63 {
            return bad;
        }
        if !label
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return bad;
        }
    }
    core::str::from_utf8(octets).map_err(|_| ValueError::Identity)
}

/// Compares two DiameterIdentities as RFC 6733 §5.6.4 does: octet by octet, ASCII letters
/// compared case-insensitively.
pub fn identity_cmp(a: &str, b: &str) -> core::cmp::Ordering {
    a.bytes()
        .map(|c| c.to_ascii_lowercase())
        .cmp(b.bytes().map(|c| c.to_ascii_lowercase()))
}

/// An Address value (RFC 6733 §4.3.1): an IANA address family and the address octets.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Address<'a> {
    /// AddressType: an IANA address family number ([`address_family`]).
    pub family: u16,
    /// The address octets.
    pub octets: &'a [u8],
}

impl<'a> Address<'a> {
    /// Reads an Address: 2 octets of family, then the address; IPv4 must have 4 octets and
    /// IPv6 16.
    ///
    /// # Errors
    ///
    /// [`ValueError::Address`] otherwise.
    pub fn parse(data: &'a [u8]) -> Result<Self, ValueError> {
        let (family, octets) = data.split_first_chunk::<2>().ok_or(ValueError::Address)?;
        let family = u16::from_be_bytes(*family);
        match (family, octets.len()) {
            (address_family::IPV4, 4) | (address_family::IPV6, 16) => {}
            (address_family::IPV4 | address_family::IPV6, _) => return Err(ValueError::Address),
            _ => {}
        }
        Ok(Self { family, octets })
    }

    /// The IP address, for families 1 and 2.
    pub fn ip(&self) -> Option<IpAddr> {
        match self.family {
            address_family::IPV4 => <[u8; 4]>::try_from(self.octets)
                .ok()
                .map(|o| IpAddr::V4(Ipv4Addr::from(o))),
            address_family::IPV6 => <[u8; 16]>::try_from(self.octets)
                .ok()
                .map(|o| IpAddr::V6(Ipv6Addr::from(o))),
            _ => None,
        }
    }
}

/// A Time value (RFC 6733 §4.3.1): the first four octets of an NTP timestamp, seconds since
/// 1900-01-01 00:00 UTC, extended past 2036 by RFC 5905's era rule (RFC 4330 §3): a value
/// with the most significant bit set counts from 1900 (1968-01-20 03:14:08 to 2036-02-07
/// 06:28:15 UTC), one with it clear from 2036-02-07 06:28:16 UTC (up to 2104-02-26 09:42:23).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct Time(u32);

/// Seconds from 1900-01-01 to 1970-01-01.
const NTP_UNIX_OFFSET: i64 = 2_208_988_800;
/// 2^32 seconds: one NTP era.
const ERA: i64 = 1 << 32;

impl Time {
    /// The earliest representable time, in Unix seconds (1968-01-20 03:14:08 UTC).
    pub const MIN_UNIX: i64 = (1 << 31) - NTP_UNIX_OFFSET;
    /// The latest representable time, in Unix seconds (2104-02-26 09:42:23 UTC).
    pub const MAX_UNIX: i64 = ERA + (1 << 31) - 1 - NTP_UNIX_OFFSET;

    /// The value as on the wire.
    pub const fn from_ntp(seconds: u32) -> Self {
        Self(seconds)
    }

    /// The value on the wire.
    pub const fn ntp(self) -> u32 {
        self.0
    }

    /// The time in seconds since 1970-01-01 00:00 UTC, with the era rule applied.
    pub const fn unix(self) -> i64 {
        if self.0 & 0x8000_0000 != 0 {
            self.0 as i64 - NTP_UNIX_OFFSET
        } else {
            self.0 as i64 + ERA - NTP_UNIX_OFFSET
        }
    }

    /// The Time for Unix seconds.
    ///
    /// # Errors
    ///
    /// [`ValueError::TimeRange`] outside [`Time::MIN_UNIX`]..=[`Time::MAX_UNIX`].
    pub const fn from_unix(seconds: i64) -> Result<Self, ValueError> {
        if seconds < Self::MIN_UNIX || seconds > Self::MAX_UNIX {
            return Err(ValueError::TimeRange);
        }
        // Reduce modulo 2^32: both eras map onto the 32-bit field.
        Ok(Self(((seconds + NTP_UNIX_OFFSET) % ERA) as u32))
    }
}

/// The transport named in a DiameterURI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// `tcp` (the default).
    Tcp,
    /// `sctp`.
    Sctp,
    /// `udp` (never with the Diameter protocol).
    Udp,
}

/// The AAA protocol named in a DiameterURI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AaaProtocol {
    /// `diameter` (the default).
    Diameter,
    /// `radius`.
    Radius,
    /// `tacacs+`.
    TacacsPlus,
}

/// A DiameterURI (RFC 6733 §4.3.1):
/// `("aaa://" / "aaas://") FQDN [":" port] [";transport=" (tcp/sctp/udp)]
/// [";protocol=" (diameter/radius/tacacs+)]`, parameters in that order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DiameterUri<'a> {
    /// `aaas://`: transport security (TLS/TCP or DTLS/SCTP).
    pub secure: bool,
    /// The FQDN.
    pub fqdn: &'a str,
    /// The port, when given.
    pub port: Option<u16>,
    /// The transport, when given.
    pub transport: Option<Transport>,
    /// The protocol, when given.
    pub protocol: Option<AaaProtocol>,
}

impl<'a> DiameterUri<'a> {
    /// Parses a DiameterURI. Scheme and parameter names and values are compared
    /// case-insensitively (RFC 3986 §3.1, §6.2.2.1); the FQDN must be a DiameterIdentity.
    ///
    /// # Errors
    ///
    /// [`ValueError::Uri`] if `text` does not follow the grammar, the port is not a 16-bit
    /// number, or UDP is named with the Diameter protocol (§4.3.1: "UDP MUST NOT be used").
    pub fn parse(text: &'a str) -> Result<Self, ValueError> {
        let err = ValueError::Uri;
        let (secure, rest) = if starts_with_ci(text, "aaa://") {
            (false, &text[6..])
        } else if starts_with_ci(text, "aaas://") {
            (true, &text[7..])
        } else {
            return Err(err);
        };
        let mut params = rest.split(';');
        let authority = params.next().ok_or(err)?;
        let (fqdn, port) = match authority.split_once(':') {
            Some((host, port)) => {
                if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(err);
                }
                (host, Some(port.parse::<u16>().map_err(|_| err)?))
            }
            None => (authority, None),
        };
        validate_identity(fqdn.as_bytes()).map_err(|_| err)?;
        let mut uri = Self {
            secure,
            fqdn,
            port,
            transport: None,
            protocol: None,
        };
        for param in params {
            let (name, value) = param.split_once('=').ok_or(err)?;
            if name.eq_ignore_ascii_case("transport")
                && uri.transport.is_none()
                && uri.protocol.is_none()
            {
                uri.transport = Some(
                    match_ci(
                        value,
                        &[
                            ("tcp", Transport::Tcp),
                            ("sctp", Transport::Sctp),
                            ("udp", Transport::Udp),
                        ],
                    )
                    .ok_or(err)?,
                );
            } else if name.eq_ignore_ascii_case("protocol") && uri.protocol.is_none() {
                uri.protocol = Some(
                    match_ci(
                        value,
                        &[
                            ("diameter", AaaProtocol::Diameter),
                            ("radius", AaaProtocol::Radius),
                            ("tacacs+", AaaProtocol::TacacsPlus),
                        ],
                    )
                    .ok_or(err)?,
                );
            } else {
                return Err(err);
            }
        }
        if uri.transport() == Transport::Udp && uri.protocol() == AaaProtocol::Diameter {
            return Err(err);
        }
        Ok(uri)
    }

    /// The port, or the default: 3868 for `aaa://`, 5658 for `aaas://`.
    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(if self.secure { 5658 } else { 3868 })
    }

    /// The transport, or the default (TCP).
    pub fn transport(&self) -> Transport {
        self.transport.unwrap_or(Transport::Tcp)
    }

    /// The protocol, or the default (Diameter).
    pub fn protocol(&self) -> AaaProtocol {
        self.protocol.unwrap_or(AaaProtocol::Diameter)
    }

    pub(crate) fn write_to(&self, out: &mut Vec<u8>) {
        use std::io::Write as _;
        // Writing into a Vec cannot fail.
        let _ = write!(out, "{self}");
    }
}

impl fmt::Display for DiameterUri<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}",
            if self.secure { "aaas" } else { "aaa" },
            self.fqdn
        )?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        if let Some(t) = self.transport {
            let t = match t {
                Transport::Tcp => "tcp",
                Transport::Sctp => "sctp",
                Transport::Udp => "udp",
            };
            write!(f, ";transport={t}")?;
        }
        if let Some(p) = self.protocol {
            let p = match p {
                AaaProtocol::Diameter => "diameter",
                AaaProtocol::Radius => "radius",
                AaaProtocol::TacacsPlus => "tacacs+",
            };
            write!(f, ";protocol={p}")?;
        }
        Ok(())
    }
}

fn match_ci<T: Copy>(value: &str, table: &[(&str, T)]) -> Option<T> {
    table
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(value))
        .map(|(_, t)| *t)
}

fn starts_with_ci(text: &str, prefix: &str) -> bool {
    text.get(..prefix.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn rfc6733_uri_examples_parse() {
        // The six examples of RFC 6733 §4.3.1, each printed back as given.
        for text in [
            "aaa://host.example.com;transport=tcp",
            "aaa://host.example.com:6666;transport=tcp",
            "aaa://host.example.com;protocol=diameter",
            "aaa://host.example.com:6666;protocol=diameter",
            "aaa://host.example.com:6666;transport=tcp;protocol=diameter",
            "aaa://host.example.com:1813;transport=udp;protocol=radius",
        ] {
            let uri = DiameterUri::parse(text).unwrap();
            assert_eq!(uri.to_string(), text);
        }
        let uri = DiameterUri::parse("aaa://host.example.com:6666;transport=tcp;protocol=diameter")
            .unwrap();
        assert_eq!(uri.fqdn, "host.example.com");
        assert_eq!(uri.port, Some(6666));
        let uri = DiameterUri::parse("aaas://h.example").unwrap();
        assert_eq!(uri.port_or_default(), 5658);
        assert_eq!(uri.transport(), Transport::Tcp);
        assert_eq!(
            DiameterUri::parse("aaa://h.example")
                .unwrap()
                .port_or_default(),
            3868
        );
    }

    #[test]
    fn bad_uris() {
        for text in [
            "",
            "aaa://",
            "http://host",
            "aaa://host:",
            "aaa://host:99999",
            "aaa://host:-1",
            "aaa://host;transport=quic",
            "aaa://host;protocol=diameter;transport=tcp",
            "aaa://host;transport=tcp;transport=tcp",
            "aaa://host;transport=udp",
            "aaa://host;transport=udp;protocol=diameter",
            "aaa://ho st",
            "aaa://host;foo=bar",
            "aaa://host;transport",
        ] {
            assert_eq!(DiameterUri::parse(text), Err(ValueError::Uri), "{text}");
        }
    }

    #[test]
    fn time_eras() {
        // RFC 5905 / RFC 4330 §3: NTP 0x80000000 is 1968-01-20 03:14:08 UTC (Unix -61505152);
        // 0xFFFFFFFF is 2036-02-07 06:28:15; 0 after the wrap is 2036-02-07 06:28:16
        // (Unix 2085978496); 0x7FFFFFFF is 2104-02-26 09:42:23 (Unix 4233462143).
        assert_eq!(Time::from_ntp(0x8000_0000).unix(), -61_505_152);
        assert_eq!(Time::from_ntp(0xffff_ffff).unix(), 2_085_978_495);
        assert_eq!(Time::from_ntp(0).unix(), 2_085_978_496);
        assert_eq!(Time::from_ntp(0x7fff_ffff).unix(), 4_233_462_143);
        // 1970-01-01 is NTP 2208988800 (RFC 868 and RFC 5905's offset).
        assert_eq!(Time::from_unix(0).unwrap().ntp(), 2_208_988_800);
        assert_eq!(
            Time::from_unix(Time::MIN_UNIX - 1),
            Err(ValueError::TimeRange)
        );
        assert_eq!(
            Time::from_unix(Time::MAX_UNIX + 1),
            Err(ValueError::TimeRange)
        );
        for unix in [
            Time::MIN_UNIX,
            -1,
            0,
            1_700_000_000,
            2_085_978_495,
            2_085_978_496,
            Time::MAX_UNIX,
        ] {
            assert_eq!(Time::from_unix(unix).unwrap().unix(), unix);
        }
    }

    #[test]
    fn identities() {
        assert!(validate_identity(b"emks.example.org").is_ok());
        assert!(validate_identity(b"host_1.example.").is_ok());
        for bad in [&b""[..], b".", b"a..b", b"a b", b"\xc3\xa9.example", b"a/b"] {
            assert_eq!(validate_identity(bad), Err(ValueError::Identity));
        }
        assert_eq!(
            identity_cmp("A.example", "a.EXAMPLE"),
            core::cmp::Ordering::Equal
        );
        assert_eq!(
            identity_cmp("b.example", "A.example"),
            core::cmp::Ordering::Greater
        );
    }

    #[test]
    fn addresses() {
        let a = Address::parse(&[0, 1, 127, 0, 0, 1]).unwrap();
        assert_eq!(a.ip(), Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert_eq!(Address::parse(&[0, 1, 127, 0, 0]), Err(ValueError::Address));
        assert_eq!(Address::parse(&[0, 2, 0]), Err(ValueError::Address));
        assert_eq!(Address::parse(&[0]), Err(ValueError::Address));
        let e164 = Address::parse(b"\x00\x081234").unwrap();
        assert_eq!(e164.family, address_family::E164);
        assert_eq!(e164.ip(), None);
    }
}
