//! The small validated values the messages are made of, besides the identifiers and keys of
//! `e2m-keyid` and `e2m-kdf`: session and subscription ids, callback URIs, timestamps, event
//! types, problem detail text, and the two ways to name a UE.
//!
//! Every type here has exactly one text spelling per value: what [`core::fmt::Display`]
//! writes, [`core::str::FromStr`] reads back, and nothing else.

use core::fmt;

use core::str::FromStr;

use e2m_kdf::KeyError;
use e2m_keyid::{AppIdentity, IdentityError, Imsi, KeyId, KeyIdError};
use zeroize::Zeroize;

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
    /// A timestamp not in the form `YYYY-MM-DDThh:mm:ssZ`, or not a real UTC time.
    #[error("timestamp must be YYYY-MM-DDThh:mm:ssZ (UTC, no fraction)")]
    BadTimestamp,
    /// A timestamp before 1970-01-01T00:00:00Z or after 9999-12-31T23:59:59Z.
    #[error("timestamp out of range")]
    TimestampOutOfRange,
    /// An event type this version does not define.
    #[error("unknown event type")]
    UnknownEventType,
    /// A problem cause this version does not define.
    #[error("unknown problem cause")]
    UnknownCause,
}

/// Characters allowed in session and subscription ids: the URL-safe base64 alphabet, so that
/// an id is one path segment as it stands (no percent-encoding, never `.` or `..`).
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

macro_rules! token {
    ($(#[$doc:meta])* public $name:ident) => {
        token!(@define $(#[$doc])* $name, [Copy]);

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({:?})"), self.as_str())
            }
        }
    };
    ($(#[$doc:meta])* secret $name:ident) => {
        token!(@define $(#[$doc])* $name, []);

        /// Prints no characters of the id: it must not reach logs (see the type's docs).
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "(<redacted>)"))
            }
        }

        impl Drop for $name {
            fn drop(&mut self) {
                self.bytes.as_mut_slice().zeroize();
            }
        }
    };
    (@define $(#[$doc:meta])* $name:ident, [$($extra:ident)?]) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord $(, $extra)?)]
        pub struct $name {
            len: u8,
            bytes: [u8; 64],
        }

        impl $name {
            /// The most octets an id may have.
            pub const MAX_LEN: usize = 64;

            /// Validates `text`: 1 to 64 characters of `A-Z a-z 0-9 - _`.
            ///
            /// # Errors
            /// [`ValueError::Empty`], [`ValueError::TooLong`] or [`ValueError::BadCharacter`].
            pub fn new(text: &str) -> Result<Self, ValueError> {
                Self::from_bytes(text.as_bytes())
            }

            /// Validates octets, as [`Self::new`].
            ///
            /// # Errors
            /// As [`Self::new`].
            pub fn from_bytes(text: &[u8]) -> Result<Self, ValueError> {
                if text.is_empty() {
                    return Err(ValueError::Empty);
                }
                if text.len() > Self::MAX_LEN {
                    return Err(ValueError::TooLong { max: Self::MAX_LEN, actual: text.len() });
                }
                if !text.iter().all(|&b| is_token_byte(b)) {
                    return Err(ValueError::BadCharacter);
                }
                let mut bytes = [0u8; 64];
                bytes[..text.len()].copy_from_slice(text);
                // Bounded by MAX_LEN = 64 above.
                Ok($name { len: text.len() as u8, bytes })
            }

            /// Makes an id from 16 random octets (the caller's CSPRNG), written as 22 characters
            /// of URL-safe base64 without padding (RFC 4648 §5): 128 bits, unguessable.
            pub fn from_random(random: [u8; 16]) -> Self {
                const ALPHABET: &[u8; 64] =
                    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
                let value = u128::from_be_bytes(random);
                let mut bytes = [0u8; 64];
                // 22 six-bit groups cover 132 bits; the top group holds the 2 leftover bits.
                for (i, slot) in bytes.iter_mut().take(22).enumerate() {
                    let shift = 6 * (21 - i);
                    let index = ((value >> shift) & 0x3f) as usize;
                    *slot = ALPHABET[index];
                }
                $name { len: 22, bytes }
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                // Only ever built from ASCII bytes checked above.
                core::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = ValueError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }
    };
}

token!(
    /// The id of an EMSE's session at the EMKS (seed 6.x.2.2.2.1: "returns session id"), chosen
    /// by the EMKS. It names the session resource (`/e2m/v1/sessions/{id}`), so it is one URL
    /// path segment: 1 to 64 characters of `A-Z a-z 0-9 - _`.
    ///
    /// The EMSE is authenticated by mutual TLS on every request and the EMKS binds each
    /// session to the certificate that registered it, so a leaked id alone opens nothing.
    /// It is still handled as a secret (defence in depth, and so that logs and audit trails
    /// never carry it): `Debug` prints no characters of it, it is not `Copy`, and its octets
    /// are zeroized on drop. An EMKS makes it unguessable ([`SessionId::from_random`]).
    secret SessionId
);

token!(
    /// The id of a subscription, chosen by the side that accepted it; same alphabet and
    /// length as [`SessionId`]. Not a secret: subscriptions are bound to the subscriber's
    /// TLS identity.
    public SubscriptionId
);

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
    let port_ok = match after_host.strip_prefix(':') {
        Some(port) => port.bytes().all(|b| b.is_ascii_digit()),
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

/// A point in time, to the second, in UTC: seconds since 1970-01-01T00:00:00Z (leap seconds
/// not counted, as in POSIX time).
///
/// Its text form is the `xs:dateTime` subset `YYYY-MM-DDThh:mm:ssZ` (RFC 3339 §5.6 with `Z`,
/// no fraction, no offset): one spelling per instant. The range is that of four-digit years
/// from the epoch on, up to 9999-12-31T23:59:59Z. Time is always an argument in e2m (no
/// clock is read here).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Timestamp(u64);

impl Timestamp {
    /// 9999-12-31T23:59:59Z, the last instant with a four-digit year.
    pub const MAX_SECONDS: u64 = 253_402_300_799;
    /// Characters in the text form.
    pub const TEXT_LEN: usize = 20;

    /// The instant `seconds` after the epoch.
    ///
    /// # Errors
    /// [`ValueError::TimestampOutOfRange`] past [`Self::MAX_SECONDS`].
    pub const fn from_unix_seconds(seconds: u64) -> Result<Self, ValueError> {
        if seconds > Self::MAX_SECONDS {
            return Err(ValueError::TimestampOutOfRange);
        }
        Ok(Timestamp(seconds))
    }

    /// The instant `seconds` after the epoch, clamped to [`Self::MAX_SECONDS`] (for a
    /// "never" expiry from a store whose time runs to `u64::MAX`).
    pub const fn from_unix_seconds_saturating(seconds: u64) -> Self {
        if seconds > Self::MAX_SECONDS {
            Timestamp(Self::MAX_SECONDS)
        } else {
            Timestamp(seconds)
        }
    }

    /// Seconds since the epoch.
    pub const fn as_unix_seconds(self) -> u64 {
        self.0
    }

    /// `self + seconds`, or `None` past [`Self::MAX_SECONDS`] (e.g. an expiry `now + ttl`).
    pub const fn checked_add_seconds(self, seconds: u64) -> Option<Self> {
        match self.0.checked_add(seconds) {
            Some(s) if s <= Self::MAX_SECONDS => Some(Timestamp(s)),
            _ => None,
        }
    }

    /// Parses `YYYY-MM-DDThh:mm:ssZ` from octets.
    ///
    /// # Errors
    /// [`ValueError::BadTimestamp`] for any other form or a date that does not exist
    /// (February 30th, hour 24, second 60), [`ValueError::TimestampOutOfRange`] before 1970.
    pub fn parse_bytes(text: &[u8]) -> Result<Self, ValueError> {
        let t: &[u8; 20] = text.try_into().map_err(|_| ValueError::BadTimestamp)?;
        if t[4] != b'-'
            || t[7] != b'-'
            || t[10] != b'T'
            || t[13] != b':'
            || t[16] != b':'
            || t[19] != b'Z'
        {
            return Err(ValueError::BadTimestamp);
        }
        let num = |range: core::ops::Range<usize>| -> Result<u64, ValueError> {
            let mut v = 0u64;
            for &c in &t[range] {
                if !c.is_ascii_digit() {
                    return Err(ValueError::BadTimestamp);
                }
                v = v * 10 + u64::from(c - b'0');
            }
            Ok(v)
        };
        let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&month)
            || day == 0
            || day > days_in_month(year, month)
            || hour > 23
            || minute > 59
            || second > 59
        {
            return Err(ValueError::BadTimestamp);
        }
        if year < 1970 {
            return Err(ValueError::TimestampOutOfRange);
        }
        let days = days_from_civil(year, month, day);
        Ok(Timestamp(
            days * 86_400 + hour * 3600 + minute * 60 + second,
        ))
    }

    /// Writes the text form into a 20-octet buffer.
    fn to_text(self) -> [u8; 20] {
        let days = self.0 / 86_400;
        let secs = self.0 % 86_400;
        let (year, month, day) = civil_from_days(days);
        let mut out = *b"0000-00-00T00:00:00Z";
        let mut put = |at: usize, width: usize, mut v: u64| {
            for i in (0..width).rev() {
                out[at + i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(0, 4, year);
        put(5, 2, month);
        put(8, 2, day);
        put(11, 2, secs / 3600);
        put(14, 2, secs / 60 % 60);
        put(17, 2, secs % 60);
        out
    }
}

fn is_leap(year: u64) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (year ≥ 1970). Counting from March
/// puts the leap day last, so each 400-year era has the same shape (146 097 days).
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12; // March = 0
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    // 719 468 days from 0000-03-01 to 1970-01-01.
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.to_text();
        f.write_str(core::str::from_utf8(&text).map_err(|_| fmt::Error)?)
    }
}

impl FromStr for Timestamp {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_bytes(s.as_bytes())
    }
}

pub(crate) fn write_timestamp(out: &mut String, t: Timestamp) {
    let text = t.to_text();
    for &b in &text {
        out.push(char::from(b));
    }
}

/// What a notification reports (the events a subscription selects).
///
/// The seed leaves the events open (6.x.2.2.2: subscription and notification in both
/// directions, the EMSE-subscribes direction "ffs"); these are the ones the key life cycle
/// needs.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
#[non_exhaustive]
pub enum EventType {
    /// EMKS → EMSE: a new `e2m_int_key` arrived for the UE (re-authentication, seed
    /// 6.x.2.1 "Key refresh" 2); the next key fetch with the UE's new key id will succeed.
    KeyAvailable,
    /// EMKS → EMSE: a key the EMSE may hold is no longer retained by the EMKS (evicted or
    /// expired); sessions on it continue, new handshakes with its key id will fail.
    KeyRetired,
    /// EMSE → EMKS: the UE completed an application-layer handshake with this key id, so the
    /// EMKS may let older keys of that UE go (seed race cases a and b are resolved).
    KeyInUse,
}

impl EventType {
    /// Every event type, in the order of the XSD enumeration.
    pub const ALL: [EventType; 3] = [
        EventType::KeyAvailable,
        EventType::KeyRetired,
        EventType::KeyInUse,
    ];

    /// The XML and text token: `key-available`, `key-retired` or `key-in-use`.
    pub const fn as_str(self) -> &'static str {
        match self {
            EventType::KeyAvailable => "key-available",
            EventType::KeyRetired => "key-retired",
            EventType::KeyInUse => "key-in-use",
        }
    }

    const fn bit(self) -> u8 {
        match self {
            EventType::KeyAvailable => 1,
            EventType::KeyRetired => 2,
            EventType::KeyInUse => 4,
        }
    }

    /// Parses the token from octets.
    ///
    /// # Errors
    /// [`ValueError::UnknownEventType`].
    pub fn parse_bytes(text: &[u8]) -> Result<Self, ValueError> {
        EventType::ALL
            .into_iter()
            .find(|e| e.as_str().as_bytes() == text)
            .ok_or(ValueError::UnknownEventType)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventType {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_bytes(s.as_bytes())
    }
}

/// A non-empty set of event types (a subscription selects at least one).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventSet(u8);

impl EventSet {
    /// The set holding `event` only.
    pub const fn single(event: EventType) -> Self {
        EventSet(event.bit())
    }

    /// Every event type.
    pub const fn all() -> Self {
        EventSet(1 | 2 | 4)
    }

    /// The set of the given events, or `None` if there are none.
    pub fn from_events<I: IntoIterator<Item = EventType>>(events: I) -> Option<Self> {
        let bits = events.into_iter().fold(0u8, |acc, e| acc | e.bit());
        (bits != 0).then_some(EventSet(bits))
    }

    /// This set with `event` added.
    #[must_use]
    pub const fn with(self, event: EventType) -> Self {
        EventSet(self.0 | event.bit())
    }

    /// Whether `event` is selected.
    pub const fn contains(self, event: EventType) -> bool {
        self.0 & event.bit() != 0
    }

    /// The selected events, in the order of [`EventType::ALL`] (the order they are encoded in).
    pub fn iter(self) -> impl Iterator<Item = EventType> {
        EventType::ALL
            .into_iter()
            .filter(move |e| self.contains(*e))
    }
}

impl fmt::Debug for EventSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// How the EMSE names the UE (seed 6.x.2.1, "Considerations on the user identity").
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum UeRef {
    /// The UE's application layer identity, which the EMKS maps to an IMSI for this EMSE:
    /// the seed's preferred case 2.
    AppIdentity(AppIdentity),
    /// The IMSI, for an EMSE the operator lets know IMSIs (the seed's case 1, with its
    /// privacy implications: only where the operator allows it for that EMSE).
    Imsi(Imsi),
}

/// Where the key id of a pushed `e2m_int_key` comes from (seed 6.x.2.1, "Considerations on
/// the key identifier").
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
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
    fn timestamps_at_known_instants() {
        // Independent reference points: the epoch, a leap day (POSIX time 951782400 is
        // 2000-02-29T00:00:00Z), the last second of year 9999.
        for (seconds, text) in [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (4_107_542_399, "2100-02-28T23:59:59Z"),
            (4_107_542_400, "2100-03-01T00:00:00Z"),
            (Timestamp::MAX_SECONDS, "9999-12-31T23:59:59Z"),
        ] {
            let t = Timestamp::from_unix_seconds(seconds).unwrap();
            assert_eq!(t.to_string(), text);
            assert_eq!(text.parse::<Timestamp>(), Ok(t));
        }
        assert_eq!(
            Timestamp::from_unix_seconds(Timestamp::MAX_SECONDS + 1),
            Err(ValueError::TimestampOutOfRange)
        );
        assert_eq!(
            Timestamp::from_unix_seconds_saturating(u64::MAX).as_unix_seconds(),
            Timestamp::MAX_SECONDS
        );
        assert_eq!(
            "2100-02-29T00:00:00Z".parse::<Timestamp>(),
            Err(ValueError::BadTimestamp)
        );
        assert_eq!(
            "2000-02-30T00:00:00Z".parse::<Timestamp>(),
            Err(ValueError::BadTimestamp)
        );
        assert_eq!(
            "2000-13-01T00:00:00Z".parse::<Timestamp>(),
            Err(ValueError::BadTimestamp)
        );
        assert_eq!(
            "2000-1-01T00:00:00Z".parse::<Timestamp>(),
            Err(ValueError::BadTimestamp)
        );
        assert_eq!(
            "2000-01-01t00:00:00Z".parse::<Timestamp>(),
            Err(ValueError::BadTimestamp)
        );
        assert_eq!(
            "+000-01-01T00:00:00Z".parse::<Timestamp>(),
            Err(ValueError::BadTimestamp)
        );
        let t = Timestamp::from_unix_seconds(10).unwrap();
        assert_eq!(
            t.checked_add_seconds(5).map(Timestamp::as_unix_seconds),
            Some(15)
        );
        assert_eq!(t.checked_add_seconds(u64::MAX), None);
    }

    #[test]
    fn ids_from_random_are_22_base64url_characters() {
        assert_eq!(
            SessionId::from_random([0; 16]).as_str(),
            "AAAAAAAAAAAAAAAAAAAAAA"
        );
        assert_eq!(
            SessionId::from_random([0xff; 16]).as_str(),
            "D_____________________"
        );
        let id = SubscriptionId::from_random(*b"0123456789abcdef");
        assert_eq!(id.as_str().len(), 22);
        assert_eq!(SubscriptionId::new(id.as_str()), Ok(id));
        assert_eq!(SessionId::new(""), Err(ValueError::Empty));
        assert_eq!(SessionId::new("a/b"), Err(ValueError::BadCharacter));
        assert_eq!(
            SessionId::new(&"a".repeat(65)),
            Err(ValueError::TooLong {
                max: 64,
                actual: 65
            })
        );
    }

    #[test]
    fn callback_uris() {
        for ok in [
            "https://emse.example",
            "https://emse.example:8443/e2m/v1/notifications?x=1&y=%2F",
            "https://[2001:db8::1]:443/n",
            "https://192.0.2.1/n",
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
    fn event_sets() {
        let set = EventSet::single(EventType::KeyInUse).with(EventType::KeyAvailable);
        assert_eq!(
            set.iter().collect::<Vec<_>>(),
            [EventType::KeyAvailable, EventType::KeyInUse]
        );
        assert!(!set.contains(EventType::KeyRetired));
        assert_eq!(EventSet::from_events([]), None);
        assert_eq!(EventSet::all().iter().count(), 3);
        for e in EventType::ALL {
            assert_eq!(e.as_str().parse::<EventType>(), Ok(e));
        }
    }

    #[test]
    fn problem_detail_text() {
        assert!(ProblemDetail::new("Key id 0c41d7e2 not held; re-authenticate.").is_ok());
        assert_eq!(ProblemDetail::new("a\nb"), Err(ValueError::BadCharacter));
        assert_eq!(ProblemDetail::new(""), Err(ValueError::Empty));
    }
}
