//! EMSE session ids (seed 6.x.2.2.2.1 "Initial registration by EMSE": the EMKS "establishes
//! a session context for this EMSE and returns session id").

use core::fmt;

use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use crate::ParseError;

/// The URL-safe base64 alphabet (RFC 4648 §5).
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// A session id: 128 random bits chosen by the EMKS, the bearer token an EMSE presents with
/// every request of its session (in the path `/e2m/v1/sessions/{id}`).
///
/// The EMSE is authenticated by mutual TLS on every request and the EMKS binds each session
/// to the certificate that registered it, so a leaked id alone opens nothing; it is still a
/// secret (defence in depth, and so that logs and audit trails never carry it): zeroized on
/// drop, compared in constant time, never printed by `Debug`, not `Clone` (use
/// [`copy_secret`](Self::copy_secret)).
///
/// # Wire form
///
/// Exactly 22 characters of the URL-safe base64 alphabet without padding (RFC 4648 §5): the
/// 128-bit value big-endian, six bits per character, the first character carrying only the
/// top two bits (so it is one of `A`–`D`). One spelling per id: [`to_text`](Self::to_text)
/// writes it and [`parse`](Self::parse) accepts nothing else. It is one URL path segment
/// as it stands (no percent-encoding, never `.` or `..`).
pub struct SessionId([u8; 16]);

impl SessionId {
    /// Octets in a session id.
    pub const LEN: usize = 16;
    /// Characters in its wire form.
    pub const TEXT_LEN: usize = 22;

    /// Takes ownership of 16 octets, which must come from a cryptographically secure random
    /// generator when the id is new (the caller's CSPRNG, so tests and simulations can be
    /// exact; a store also rebuilds ids it reads back this way).
    pub const fn from_array(bytes: [u8; 16]) -> SessionId {
        SessionId(bytes)
    }

    /// The id's octets.
    pub fn expose_secret(&self) -> &[u8; 16] {
        &self.0
    }

    /// An explicit copy.
    pub fn copy_secret(&self) -> SessionId {
        SessionId(self.0)
    }

    /// The wire form, in a string that is zeroized when dropped.
    pub fn to_text(&self) -> Zeroizing<String> {
        let value = Zeroizing::new(u128::from_be_bytes(self.0));
        let mut text = Zeroizing::new(String::with_capacity(Self::TEXT_LEN));
        // 22 six-bit groups cover 132 bits; the top group holds the 2 leftover bits.
        for i in 0..Self::TEXT_LEN {
            let shift = 6 * (Self::TEXT_LEN - 1 - i);
            let index = ((*value >> shift) & 0x3f) as usize;
            text.push(char::from(ALPHABET[index]));
        }
        text
    }

    /// Parses the wire form.
    ///
    /// # Errors
    /// [`ParseError::BadSessionId`] for anything but the one spelling of a 128-bit id.
    pub fn parse(text: &str) -> Result<SessionId, ParseError> {
        Self::parse_bytes(text.as_bytes())
    }

    /// Parses the wire form from octets, as [`parse`](Self::parse).
    ///
    /// # Errors
    /// [`ParseError::BadSessionId`].
    pub fn parse_bytes(text: &[u8]) -> Result<SessionId, ParseError> {
        if text.len() != Self::TEXT_LEN {
            return Err(ParseError::BadSessionId);
        }
        let mut value = Zeroizing::new(0u128);
        for (i, &c) in text.iter().enumerate() {
            let v = match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'-' => 62,
                b'_' => 63,
                _ => return Err(ParseError::BadSessionId),
            };
            // The first character carries the top two bits only: one spelling per id.
            if i == 0 && v > 3 {
                return Err(ParseError::BadSessionId);
            }
            *value = (*value << 6) | u128::from(v);
        }
        Ok(SessionId(value.to_be_bytes()))
    }
}

impl Drop for SessionId {
    fn drop(&mut self) {
        self.0.as_mut_slice().zeroize();
    }
}

impl zeroize::ZeroizeOnDrop for SessionId {}

impl ConstantTimeEq for SessionId {
    fn ct_eq(&self, other: &Self) -> subtle::Choice {
        self.0.ct_eq(&other.0)
    }
}

impl PartialEq for SessionId {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other).into()
    }
}

impl Eq for SessionId {}

/// Prints no octet of the id: it must not reach logs.
impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionId(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn wire_form_at_known_values() {
        // Independent: base64url of 16 zero octets is "AAAAAAAAAAAAAAAAAAAAAA==" and of 16
        // 0xff octets "_____________________w=="; our form is the same 128 bits read as one
        // big-endian number (so it starts with the top two bits), without padding.
        assert_eq!(
            SessionId::from_array([0; 16]).to_text().as_str(),
            "AAAAAAAAAAAAAAAAAAAAAA"
        );
        assert_eq!(
            SessionId::from_array([0xff; 16]).to_text().as_str(),
            "D_____________________"
        );
        let mut one = [0u8; 16];
        one[15] = 1;
        assert_eq!(
            SessionId::from_array(one).to_text().as_str(),
            "AAAAAAAAAAAAAAAAAAAAAB"
        );
    }

    #[test]
    fn only_the_canonical_spelling_parses() {
        for bad in [
            "",
            "AAAA",
            "AAAAAAAAAAAAAAAAAAAAAAA",
            "EAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAA=",
            "AAAAAAAAAAAAAAAAAAAAA+",
            "AAAAAAAAAAAAAAAAAAAAA/",
        ] {
            assert_eq!(
                SessionId::parse(bad),
                Err(ParseError::BadSessionId),
                "{bad}"
            );
        }
        assert_eq!(
            format!("{:?}", SessionId::from_array([7; 16])),
            "SessionId(<redacted>)"
        );
    }

    proptest::proptest! {
        #[test]
        fn wire_form_round_trips(bytes in proptest::array::uniform16(0u8..)) {
            let id = SessionId::from_array(bytes);
            let text = id.to_text();
            proptest::prop_assert_eq!(text.len(), SessionId::TEXT_LEN);
            proptest::prop_assert!(SessionId::parse(&text).unwrap() == id);
        }
    }
}
