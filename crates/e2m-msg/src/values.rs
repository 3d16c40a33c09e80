//! The small validated values the messages are made of, besides the identifiers and keys of
//! `e2m-keyid` and `e2m-kdf` and the shared vocabulary of `e2m-types` (timestamps, session
//! and subscription ids, event types, the two ways to name a UE): callback URIs, problem
//! detail text and where a pushed key's id comes from.
//!
//! Every type here has exactly one text spelling per value: what [`core::fmt::Display`]
//! writes, [`core::str::FromStr`] reads back, and nothing else.

use core::fmt;

use core::str::FromStr;

use e2m_kdf::KeyError;
use e2m_keyid::{IdentityError, KeyId, KeyIdError};
use e2m_types::ParseError;

/// Why a text value is not valid for its field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValueError {
    /// An application identity, IMSI or EMSE_Id broke a rule of `e2m-keyid`.
    #[error("bad identifier: {0}")]
    Identity(#[from] IdentityError),
    /// A key id is not eight lowercase hex digits.
    #[error("bad key id: {0}")]
    KeyId(#[from] KeyIdError),
    /// Key material is not the right number of lowercase hex digits.
    #[error("bad key: {0}")]
    Key(#[from] KeyError),
    /// Key material is written in uppercase hex (one spelling only: lowercase).
    #[error("key must be lowercase hexadecimal")]
    KeyNotLowercase,
    /// The value is empty.
    #[error("value is empty")]
    Empty,
    /// The value is longer than its field allows.
    #[error("value is {actual} octets; at most {max} allowed")]
    TooLong {
        /// The maximum for this field.
        max: usize,
        /// Octets supplied.
        actual: usize,
    },
    /// A character outside the field's alphabet.
    #[error("value contains a character its field does not allow")]
    BadCharacter,
    /// A callback URI that is not an absolute `https://` URI with a host.
    #[error("callback must be an absolute https URI with a host and no user info or fragment")]
    NotHttpsUri,
    /// A `%` not followed by two hex digits.
    #[error("bad percent-encoding")]
    BadPercentEncoding,
    /// A timestamp not in the form `YYYY-MM-DDThh:mm:ssZ` or `YYYY-MM-DDThh:mm:ss.fZ` (one
    /// to three fraction digits, the last not `0`), or not a real UTC time.
    #[error("timestamp must be YYYY-MM-DDThh:mm:ss[.fff]Z (UTC, canonical millisecond fraction)")]
    BadTimestamp,
    /// A timestamp before 1970-01-01T00:00:00Z or after 9999-12-31T23:59:59.999Z.
    #[error("timestamp out of range")]
    TimestampOutOfRange,
    /// An event type this version does not define.
    #[error("unknown event type")]
    UnknownEventType,
    /// A problem cause this version does not define.
    #[error("unknown problem cause")]
    UnknownCause,
    /// A session id that is not the 22-character wire form of `e2m_types::SessionId`.
    #[error("bad session id")]
    BadSessionId,
    /// A subscription id that is not a decimal number without leading zeros.
    #[error("bad subscription id")]
    BadSubscriptionId,
    /// A notification id that is not a decimal number without leading zeros below 2^64.
    #[error("bad notification id")]
    BadNotificationId,
}

impl From<ParseError> for ValueError {
    fn from(e: ParseError) -> Self {
        match e {
            ParseError::BadTimestamp => ValueError::BadTimestamp,
            ParseError::TimestampOutOfRange => ValueError::TimestampOutOfRange,
            ParseError::BadSessionId => ValueError::BadSessionId,
            ParseError::BadSubscriptionId => ValueError::BadSubscriptionId,
            ParseError::UnknownEventType => ValueError::UnknownEventType,
            // A later vocabulary error this version does not name: the closest general one.
            _ => ValueError::BadCharacter,
        }
    }
}

/// A callback URI: where the other side sends notifications.
///
/// An absolute `https://` URI (seed 6.x.2.2.1: HTTP is always combined with TLS), with a
/// host, without user info (no credentials in URIs, RFC 3986 §7.5) and without a fragment;
/// brackets only in the host (an IP literal);
/// ASCII characters of RFC 3986 only, `%` always followed by two hex digits; at most 1024
/// octets. The scheme is written in lowercase (one spelling).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallbackUri(String);

impl CallbackUri {
    /// The most octets a callback URI may have.
    pub const MAX_LEN: usize = 1024;
    const SCHEME: &'static str = "https://";

    /// Validates `text`.
    ///
    /// # Errors
    /// [`ValueError::Empty`], [`ValueError::TooLong`], [`ValueError::NotHttpsUri`],
    /// [`ValueError::BadCharacter`] or [`ValueError::BadPercentEncoding`].
    pub fn new(text: &str) -> Result<Self, ValueError> {
        if text.is_empty() {
            return Err(ValueError::Empty);
        }
        if text.len() > Self::MAX_LEN {
            return Err(ValueError::TooLong {
                max: Self::MAX_LEN,
                actual: text.len(),
            });
        }
        let rest = text
            .strip_prefix(Self::SCHEME)
            .ok_or(ValueError::NotHttpsUri)?;
        let bytes = rest.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'%' => {
                    let ok = bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                        && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
                    if !ok {
                        return Err(ValueError::BadPercentEncoding);
                    }
                    i += 3;
                    continue;
                }
                b'#' => return Err(ValueError::NotHttpsUri),
                b if is_uri_byte(b) => {}
                _ => return Err(ValueError::BadCharacter),
            }
            i += 1;
        }
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        check_authority(authority)?;
        // RFC 3986 §3.2.2: brackets delimit an IP literal in the host, nowhere else.
        if rest[authority_end..].contains(['[', ']']) {
            return Err(ValueError::BadCharacter);
        }
        Ok(CallbackUri(text.to_owned()))
    }

    /// The URI as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `host [":" port]` (RFC 3986 §3.2): the host an IP literal in brackets or a non-empty
/// reg-name/IPv4 address (no user info: no `@`), the port digits.
fn check_authority(authority: &str) -> Result<(), ValueError> {
    let (host_ok, after_host) = if let Some(literal) = authority.strip_prefix('[') {
        let close = literal.find(']').ok_or(ValueError::NotHttpsUri)?;
        let inside = &literal[..close];
        let ok = !inside.is_empty()
            && inside
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
        (ok, &literal[close + 1..])
    } else {
        let end = authority.find(':').unwrap_or(authority.len());
        let host = &authority[..end];
        let ok = !host.is_empty() && !host.contains(['@', '[', ']']);
        (ok, &authority[end..])
    };
    // A port, if present, is a TCP port a connection can be made to: 1 to 65535 in
    // decimal, one spelling (no leading zero, not empty).
    let port_ok = match after_host.strip_prefix(':') {
        Some(port) => {
            port.len() <= 5
                && !port.starts_with('0')
                && port.bytes().all(|b| b.is_ascii_digit())
                && port.parse::<u16>().is_ok_and(|p| p >= 1)
        }
        None => after_host.is_empty(),
    };
    if host_ok && port_ok {
        Ok(())
    } else {
        Err(ValueError::NotHttpsUri)
    }
}

/// RFC 3986 §2.2 and §2.3: reserved and unreserved characters (`%` handled by the caller).
fn is_uri_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b':'
                | b'/'
                | b'?'
                | b'['
                | b']'
                | b'@'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
        )
}

impl fmt::Display for CallbackUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for CallbackUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CallbackUri({:?})", self.0)
    }
}

impl FromStr for CallbackUri {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

/// Human-readable text for a problem's `detail` member (RFC 9457 §3.1.4): 1 to 1024 octets,
/// no control characters. It is shown to operators and logged, so it must never carry key
/// material or anything the EMSE may not learn (e.g. whether an unknown UE exists).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ProblemDetail(String);

impl ProblemDetail {
    /// The most octets a detail may have.
    pub const MAX_LEN: usize = 1024;

    /// Validates `text`.
    ///
    /// # Errors
    /// [`ValueError::Empty`], [`ValueError::TooLong`] or [`ValueError::BadCharacter`] (a
    /// control character).
    pub fn new(text: &str) -> Result<Self, ValueError> {
        if text.is_empty() {
            return Err(ValueError::Empty);
        }
        if text.len() > Self::MAX_LEN {
            return Err(ValueError::TooLong {
                max: Self::MAX_LEN,
                actual: text.len(),
            });
        }
        if text.chars().any(char::is_control) {
            return Err(ValueError::BadCharacter);
        }
        Ok(ProblemDetail(text.to_owned()))
    }

    /// The detail as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProblemDetail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ProblemDetail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProblemDetail({:?})", self.0)
    }
}

impl FromStr for ProblemDetail {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

/// Where the key id of a pushed `e2m_int_key` comes from (seed 6.x.2.1, "Considerations on
/// the key identifier").
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum KeyIdSource {
    /// The 32 least significant bits of RAND, pushed by the HSS with the key (alternative 1,
    /// the preferred one).
    RandLsb32(KeyId),
    /// No id from the HSS: the EMKS computes the short hash of the key itself
    /// (alternative 2, [`KeyId::short_hash`]).
    ShortHash,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn callback_uris() {
        for ok in [
            "https://emse.example",
            "https://emse.example:8443/e2m/v1/notifications?x=1&y=%2F",
            "https://[2001:db8::1]:443/n",
            "https://192.0.2.1/n",
            "https://emse.example:1/n",
            "https://emse.example:65535",
        ] {
            assert!(CallbackUri::new(ok).is_ok(), "{ok}");
        }
        for (bad, e) in [
            ("http://emse.example/n", ValueError::NotHttpsUri),
            ("HTTPS://emse.example/n", ValueError::NotHttpsUri),
            ("https://", ValueError::NotHttpsUri),
            ("https:///n", ValueError::NotHttpsUri),
            ("https://user:pw@emse.example/n", ValueError::NotHttpsUri),
            ("https://emse.example/n#frag", ValueError::NotHttpsUri),
            ("https://emse.example:84x3/n", ValueError::NotHttpsUri),
            // Issue 9 item 5: ports outside 1–65535 (or spelled two ways) are refused.
            (
                "https://emse.example:99999999999999999999/n",
                ValueError::NotHttpsUri,
            ),
            ("https://emse.example:65536/n", ValueError::NotHttpsUri),
            ("https://emse.example:0/n", ValueError::NotHttpsUri),
            ("https://emse.example:0443/n", ValueError::NotHttpsUri),
            ("https://emse.example:/n", ValueError::NotHttpsUri),
            ("https://[::1]:70000/n", ValueError::NotHttpsUri),
            ("https://emse]example/n", ValueError::NotHttpsUri),
            ("https://emse.example/n]", ValueError::BadCharacter),
            ("https://emse.example/a b", ValueError::BadCharacter),
            ("https://emse.example/é", ValueError::BadCharacter),
            ("https://emse.example/%2", ValueError::BadPercentEncoding),
            ("", ValueError::Empty),
        ] {
            assert_eq!(CallbackUri::new(bad), Err(e), "{bad}");
        }
    }

    #[test]
    fn problem_detail_text() {
        assert!(ProblemDetail::new("Key id 0c41d7e2 not held; re-authenticate.").is_ok());
        assert_eq!(ProblemDetail::new("a\nb"), Err(ValueError::BadCharacter));
        assert_eq!(ProblemDetail::new(""), Err(ValueError::Empty));
    }
}

/// The stable id of one notification from the EMKS: every delivery attempt of the same
/// notification carries the same id, so that an EMSE receiving it twice (delivery is at
/// least once: a retry after a lost `204`, or a second instance after a lease ran out) can
/// drop the duplicate. Ids are unique per EMKS store (all instances sharing a database
/// draw from one sequence) and are never reused.
///
/// The text form is the number in decimal without leading zeros (one spelling).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NotificationId(u64);

impl NotificationId {
    /// The most characters of the text form (`u64::MAX` has 20 digits).
    pub const MAX_TEXT_LEN: usize = 20;

    /// The id with this number.
    pub const fn from_u64(n: u64) -> NotificationId {
        NotificationId(n)
    }

    /// Its number.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// Parses the text form from octets.
    ///
    /// # Errors
    /// [`ValueError::BadNotificationId`] for anything but decimal digits without a leading
    /// zero (`0` itself is the one spelling of zero) whose value fits in 64 bits.
    pub fn parse_bytes(text: &[u8]) -> Result<NotificationId, ValueError> {
        if text.is_empty() || text.len() > Self::MAX_TEXT_LEN || (text[0] == b'0' && text.len() > 1)
        {
            return Err(ValueError::BadNotificationId);
        }
        let mut n: u64 = 0;
        for &c in text {
            if !c.is_ascii_digit() {
                return Err(ValueError::BadNotificationId);
            }
            n = n
                .checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(c - b'0')))
                .ok_or(ValueError::BadNotificationId)?;
        }
        Ok(NotificationId(n))
    }
}

impl fmt::Display for NotificationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for NotificationId {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_bytes(s.as_bytes())
    }
}
