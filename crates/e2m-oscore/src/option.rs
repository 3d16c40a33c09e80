//! The OSCORE option value (RFC 8613 §6.1): flags, Partial IV, kid context and kid.
//!
//! ```text
//!  0 1 2 3 4 5 6 7 <------------- n bytes -------------->
//! +-+-+-+-+-+-+-+-+--------------------------------------
//! |0 0 0|h|k|  n  |       Partial IV (if any) ...
//! +-+-+-+-+-+-+-+-+--------------------------------------
//!  <- 1 byte -> <----- s bytes ------>
//! +------------+----------------------+------------------+
//! | s (if any) | kid context (if any) | kid (if any) ... |
//! +------------+----------------------+------------------+
//! ```

use alloc::vec::Vec;

use crate::OptionError;

/// A Partial IV: the sender sequence number in 1 to 5 octets, big-endian, minimal length
/// (RFC 8613 §6.1; 0 is one zero octet).
///
/// Held as the sequence number's 8 big-endian octets, the Partial IV being their minimal
/// tail: both forms are needed per message (octets for the option and the AAD, the number
/// for the nonce and the replay window), and one word is built in a register and stored
/// whole (a value assembled octet by octet in memory stalls the next wide read of it).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PartialIv {
    be: [u8; 8],
}

impl PartialIv {
    /// The most octets in a Partial IV (RFC 8613 §6.1: n ≤ 5).
    pub const MAX_LEN: usize = 5;
    /// One past the largest sequence number a Partial IV holds (2^40, RFC 8613 §7.2.1).
    pub const LIMIT: u64 = 1 << 40;

    /// The Partial IV of a sequence number, or `None` at or past 2^40.
    pub const fn from_sequence(sequence: u64) -> Option<PartialIv> {
        if sequence >= Self::LIMIT {
            return None;
        }
        Some(PartialIv {
            be: sequence.to_be_bytes(),
        })
    }

    /// Parses the minimal big-endian form.
    ///
    /// # Errors
    /// [`OptionError::Truncated`] for an empty value, [`OptionError::Reserved`] for more
    /// than 5 octets, [`OptionError::PartialIvNotMinimal`] for a leading zero octet.
    pub fn from_bytes(bytes: &[u8]) -> Result<PartialIv, OptionError> {
        match bytes {
            [] => Err(OptionError::Truncated),
            [0, _, ..] => Err(OptionError::PartialIvNotMinimal),
            _ if bytes.len() > Self::MAX_LEN => Err(OptionError::Reserved),
            // Minimal, so the octets are exactly the tail `as_bytes` gives back.
            _ => Ok(PartialIv {
                be: bytes
                    .iter()
                    .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
                    .to_be_bytes(),
            }),
        }
    }

    /// The sequence number.
    pub fn sequence(&self) -> u64 {
        u64::from_be_bytes(self.be)
    }

    /// The octets as sent.
    pub fn as_bytes(&self) -> &[u8] {
        // Minimal length: the significant octets of the number, at least one (§6.1).
        let bits = u64::BITS - (self.sequence() | 1).leading_zeros();
        let len = bits.div_ceil(8) as usize;
        &self.be[8 - len.min(8)..]
    }
}

impl core::fmt::Debug for PartialIv {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "PartialIv({})", self.sequence())
    }
}

/// A decoded OSCORE option value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct OscoreOption {
    /// The Partial IV (mandatory in requests, optional in responses).
    pub partial_iv: Option<PartialIv>,
    /// The kid context, at most 255 octets (the `h` flag and `s` length).
    pub kid_context: Option<Vec<u8>>,
    /// The kid: the sender's Sender ID (mandatory in requests; may be empty).
    pub kid: Option<Vec<u8>>,
}

const FLAG_K: u8 = 0x08;
const FLAG_H: u8 = 0x10;
const RESERVED: u8 = 0xe0;

/// An OSCORE option value parsed without copying (the verification hot path).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct OptionView<'a> {
    pub(crate) partial_iv: Option<PartialIv>,
    pub(crate) kid_context: Option<&'a [u8]>,
    pub(crate) kid: Option<&'a [u8]>,
}

impl<'a> OptionView<'a> {
    pub(crate) fn parse(value: &'a [u8]) -> Result<OptionView<'a>, OptionError> {
        let Some((&flags, mut rest)) = value.split_first() else {
            return Ok(OptionView::default());
        };
        if flags & RESERVED != 0 {
            return Err(OptionError::Reserved);
        }
        if flags == 0 {
            return Err(OptionError::NonCanonical);
        }
        let n = usize::from(flags & 0x07);
        if n > PartialIv::MAX_LEN {
            return Err(OptionError::Reserved);
        }
        let mut view = OptionView::default();
        if n > 0 {
            let (piv, tail) = rest.split_at_checked(n).ok_or(OptionError::Truncated)?;
            view.partial_iv = Some(PartialIv::from_bytes(piv)?);
            rest = tail;
        }
        if flags & FLAG_H != 0 {
            let (&s, tail) = rest.split_first().ok_or(OptionError::Truncated)?;
            let (ctx, tail) = tail
                .split_at_checked(usize::from(s))
                .ok_or(OptionError::Truncated)?;
            view.kid_context = Some(ctx);
            rest = tail;
        }
        if flags & FLAG_K != 0 {
            view.kid = Some(rest);
        } else if !rest.is_empty() {
            return Err(OptionError::Trailing);
        }
        Ok(view)
    }

    /// Encodes the option value: empty when no field is present (§6.1). A kid context over
    /// 255 octets cannot be expressed; callers only pass checked ones (context derivation
    /// refuses longer ones), and a longer one would be truncated rather than panic.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        self.encode_with(|octets| out.extend_from_slice(octets));
    }

    /// The length of the encoded value.
    pub(crate) fn encoded_len(&self) -> usize {
        let mut len = 0;
        self.encode_with(|octets| len += octets.len());
        len
    }

    /// The encoded value on the stack (the message API's outer option).
    pub(crate) fn to_value(self) -> OptionValue {
        let mut value = OptionValue {
            bytes: [0; OptionValue::MAX_LEN],
            len: 0,
        };
        self.encode_with(|octets| {
            // Protection passes its own Sender ID (≤ 7 octets) and a checked ID Context
            // (≤ 255), so at most `MAX_LEN` octets arrive and this always fits.
            if let Some(to) = value.bytes.get_mut(value.len..value.len + octets.len()) {
                to.copy_from_slice(octets);
                value.len += octets.len();
            }
        });
        value
    }

    fn encode_with(&self, mut put: impl FnMut(&[u8])) {
        let piv = self
            .partial_iv
            .as_ref()
            .map_or(&[][..], PartialIv::as_bytes);
        let mut flags = piv.len() as u8;
        if self.kid.is_some() {
            flags |= FLAG_K;
        }
        if self.kid_context.is_some() {
            flags |= FLAG_H;
        }
        if flags == 0 {
            return;
        }
        put(&[flags]);
        put(piv);
        if let Some(ctx) = self.kid_context {
            let ctx = &ctx[..ctx.len().min(255)];
            put(&[ctx.len() as u8]);
            put(ctx);
        }
        if let Some(kid) = self.kid {
            put(kid);
        }
    }
}

/// An encoded OSCORE option value on the stack.
pub(crate) struct OptionValue {
    bytes: [u8; OptionValue::MAX_LEN],
    len: usize,
}

impl OptionValue {
    /// Flags, Partial IV (5), s, kid context (255), kid (7).
    const MAX_LEN: usize = 1 + PartialIv::MAX_LEN + 1 + 255 + crate::context::MAX_ID_LEN;

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl OscoreOption {
    /// Encodes the option value: empty when no field is present (§6.1). A kid context over
    /// 255 octets is truncated (it cannot be expressed).
    pub fn encode(&self, out: &mut Vec<u8>) {
        OptionView {
            partial_iv: self.partial_iv,
            kid_context: self.kid_context.as_deref(),
            kid: self.kid.as_deref(),
        }
        .encode(out);
    }

    /// Decodes an option value.
    ///
    /// # Errors
    /// An [`OptionError`] naming the problem; never panics.
    pub fn decode(value: &[u8]) -> Result<OscoreOption, OptionError> {
        let view = OptionView::parse(value)?;
        Ok(OscoreOption {
            partial_iv: view.partial_iv,
            kid_context: view.kid_context.map(<[u8]>::to_vec),
            kid: view.kid.map(<[u8]>::to_vec),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn partial_iv_is_minimal() {
        assert_eq!(
            PartialIv::from_sequence(0).map(|p| p.as_bytes().to_vec()),
            Some(alloc::vec![0])
        );
        assert_eq!(
            PartialIv::from_sequence(20).map(|p| p.as_bytes().to_vec()),
            Some(alloc::vec![0x14])
        );
        assert_eq!(
            PartialIv::from_sequence(0x1_0000).map(|p| p.as_bytes().to_vec()),
            Some(alloc::vec![1, 0, 0])
        );
        assert!(PartialIv::from_sequence(PartialIv::LIMIT - 1).is_some());
        assert!(PartialIv::from_sequence(PartialIv::LIMIT).is_none());
        assert_eq!(
            PartialIv::from_bytes(&[0, 1]),
            Err(OptionError::PartialIvNotMinimal)
        );
        assert_eq!(PartialIv::from_bytes(&[0]).map(|p| p.sequence()), Ok(0));
        // Every length boundary: the minimal octets (leading zero octets stripped, at least
        // one kept), and back.
        for sequence in [
            0,
            1,
            0xff,
            0x100,
            0xffff,
            0x1_0000,
            0xff_ffff,
            0x100_0000,
            0xffff_ffff,
            0x1_0000_0000,
            PartialIv::LIMIT - 1,
        ] {
            let be = sequence.to_be_bytes();
            let first = be.iter().position(|b| *b != 0).unwrap_or(7);
            let want = &be[first..];
            let piv = PartialIv::from_sequence(sequence).unwrap();
            assert_eq!(piv.as_bytes(), want, "{sequence:#x}");
            assert_eq!(PartialIv::from_bytes(want), Ok(piv), "{sequence:#x}");
            assert_eq!(piv.sequence(), sequence);
        }
    }

    #[test]
    fn malformed_values_are_typed() {
        assert_eq!(OscoreOption::decode(&[0x20]), Err(OptionError::Reserved));
        assert_eq!(
            OscoreOption::decode(&[0x06, 1, 2, 3, 4, 5, 6]),
            Err(OptionError::Reserved)
        );
        assert_eq!(
            OscoreOption::decode(&[0x00]),
            Err(OptionError::NonCanonical)
        );
        assert_eq!(
            OscoreOption::decode(&[0x02, 1]),
            Err(OptionError::Truncated)
        );
        assert_eq!(
            OscoreOption::decode(&[0x11, 1]),
            Err(OptionError::Truncated)
        );
        assert_eq!(
            OscoreOption::decode(&[0x11, 1, 3, 0]),
            Err(OptionError::Truncated)
        );
        assert_eq!(
            OscoreOption::decode(&[0x01, 1, 9]),
            Err(OptionError::Trailing)
        );
        assert_eq!(OscoreOption::decode(&[]), Ok(OscoreOption::default()));
    }
}
