//! The `psk_identity` that carries the UE's application identity and key id to the EMSE
//! (seed 6.x.2.3 step 4; RFC 4279 §2 and §5.1).
//!
//! Format, version 1 (ABNF, RFC 5234):
//!
//! ```text
//! psk-identity = "e2m1." key-id "." app-identity      ; at most 128 octets in all
//! key-id       = 8(DIGIT / %x61-66)                   ; lowercase hex, big-endian
//! app-identity = 1*114(UTF-8 char, see AppIdentity)
//! ```
//!
//! Why this shape: the fixed-length prefix makes it unambiguous (the identity may contain
//! dots and '@', the key id never moves); the version is the first thing a parser reads, so
//! a later format can coexist; and when the application identity is an NAI (`user@realm`,
//! RFC 7542) the whole string is still an NAI with the same realm, so AAA-style routing on
//! the realm keeps working. Parsing is strict: exactly one spelling per value, so
//! `format(parse(s)) == s` whenever `parse(s)` succeeds.

use crate::{AppIdentity, IdentityError, KeyId, KeyIdError};

/// The UE's application identity and the key id of the `e2m_key` it used.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct PskIdentity {
    /// Who the UE says it is (resolved to an IMSI by the EMKS, seed case 2).
    pub identity: AppIdentity,
    /// Which `e2m_int_key` its PSK was derived from.
    pub key_id: KeyId,
}

/// Why octets are not a version-1 e2m `psk_identity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PskIdentityError {
    /// Over the 128 octets that RFC 4279 §5.1 lets an implementation limit it to.
    #[error("psk_identity is {0} octets; at most 128 allowed")]
    TooLong(usize),
    /// Does not start with `e2m`.
    #[error("psk_identity is not an e2m identity")]
    NotE2m,
    /// Starts with `e2m` but names a version this parser does not know.
    #[error("unsupported e2m psk_identity version")]
    UnsupportedVersion,
    /// The key id field is malformed.
    #[error("bad key id: {0}")]
    KeyId(KeyIdError),
    /// No `.` after the key id.
    #[error("missing '.' after the key id")]
    MissingSeparator,
    /// The application identity is malformed.
    #[error("bad application identity: {0}")]
    Identity(IdentityError),
}

impl PskIdentity {
    /// The most octets in a `psk_identity` (RFC 4279 §5.1).
    pub const MAX_LEN: usize = 128;
    const PREFIX: &'static [u8] = b"e2m1.";
    const HEADER_LEN: usize = Self::PREFIX.len() + KeyId::TEXT_LEN + 1;

    /// Pairs an identity with a key id. Always fits: [`AppIdentity`] is short enough.
    pub fn new(identity: AppIdentity, key_id: KeyId) -> Self {
        PskIdentity { identity, key_id }
    }

    /// Parses a received `psk_identity`.
    ///
    /// ```
    /// use e2m_keyid::PskIdentity;
    /// let id = PskIdentity::parse(b"e2m1.ae47bf35.sensor-17@iot.example.com")?;
    /// assert_eq!(id.identity.as_str(), "sensor-17@iot.example.com");
    /// assert_eq!(id.key_id.as_u32(), 0xae47bf35);
    /// assert!(PskIdentity::parse(b"e2m1.AE47BF35.x").is_err()); // one spelling only
    /// # Ok::<(), e2m_keyid::PskIdentityError>(())
    /// ```
    ///
    /// # Errors
    /// A [`PskIdentityError`] naming what is wrong; never panics.
    pub fn parse(octets: &[u8]) -> Result<Self, PskIdentityError> {
        if octets.len() > Self::MAX_LEN {
            return Err(PskIdentityError::TooLong(octets.len()));
        }
        let Some(rest) = octets.strip_prefix(&Self::PREFIX[..3]) else {
            return Err(PskIdentityError::NotE2m);
        };
        let Some(rest) = rest.strip_prefix(&Self::PREFIX[3..]) else {
            return Err(PskIdentityError::UnsupportedVersion);
        };
        let (key_id, rest) = rest
            .split_at_checked(KeyId::TEXT_LEN)
            .unwrap_or((rest, &[]));
        let key_id = KeyId::parse_bytes(key_id).map_err(PskIdentityError::KeyId)?;
        let Some(identity) = rest.strip_prefix(b".") else {
            return Err(PskIdentityError::MissingSeparator);
        };
        let identity = AppIdentity::from_utf8(identity).map_err(PskIdentityError::Identity)?;
        Ok(PskIdentity { identity, key_id })
    }

    /// Writes the `psk_identity` into `buf` and returns it as text.
    ///
    /// ```
    /// use e2m_keyid::{AppIdentity, KeyId, PskIdentity};
    /// let id = PskIdentity::new(AppIdentity::new("sensor-17@iot.example.com")?, KeyId::from_u32(0xae47bf35));
    /// let mut buf = [0u8; PskIdentity::MAX_LEN];
    /// assert_eq!(id.encode(&mut buf), "e2m1.ae47bf35.sensor-17@iot.example.com");
    /// # Ok::<(), e2m_keyid::IdentityError>(())
    /// ```
    pub fn encode<'b>(&self, buf: &'b mut [u8; Self::MAX_LEN]) -> &'b str {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let (prefix, rest) = buf.split_at_mut(Self::PREFIX.len());
        prefix.copy_from_slice(Self::PREFIX);
        let id = self.key_id.as_u32();
        for (i, slot) in rest[..KeyId::TEXT_LEN].iter_mut().enumerate() {
            *slot = HEX[((id >> (28 - 4 * i)) & 0xF) as usize];
        }
        rest[KeyId::TEXT_LEN] = b'.';
        let identity = self.identity.as_bytes();
        let end = Self::HEADER_LEN + identity.len();
        buf[Self::HEADER_LEN..end].copy_from_slice(identity);
        // Prefix and key id are ASCII and the identity is UTF-8.
        core::str::from_utf8(&buf[..end]).unwrap_or_default()
    }
}

impl core::fmt::Display for PskIdentity {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut buf = [0u8; Self::MAX_LEN];
        f.write_str(self.encode(&mut buf))
    }
}

impl core::str::FromStr for PskIdentity {
    type Err = PskIdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PskIdentity::parse(s.as_bytes())
    }
}
