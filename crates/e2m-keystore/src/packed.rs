//! A compact, exact encoding of an IMSI in one `u64`, used as the key of the large maps.
//!
//! An [`Imsi`] is 6 to 15 decimal digits (TS 23.003 §2.2) and leading zeros matter (MCC
//! "001" is a test network), so the digit count is kept beside the value:
//! `len << 56 | value`, with `value < 10^15 < 2^50`. Eight octets instead of the 17 of an
//! `Imsi`, and hashing one `u64` is a single multiply in foldhash.

use e2m_keyid::Imsi;

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub(crate) struct PackedImsi(u64);

impl PackedImsi {
    pub(crate) fn new(imsi: &Imsi) -> PackedImsi {
        // `Imsi` guarantees 6..=15 ASCII digits, so neither the value nor the length can
        // overflow its field.
        let digits = imsi.as_bytes();
        let value = digits
            .iter()
            .fold(0u64, |acc, d| acc * 10 + u64::from(d.wrapping_sub(b'0')));
        PackedImsi(((digits.len() as u64) << 56) | value)
    }

    /// The packed value: never 0 (the digit count, at least 6, is in the top octet), so
    /// 0 can mark a vacant slot.
    pub(crate) fn as_u64(self) -> u64 {
        self.0
    }

    /// A value [`as_u64`](Self::as_u64) returned.
    pub(crate) fn from_u64(packed: u64) -> PackedImsi {
        PackedImsi(packed)
    }

    pub(crate) fn unpack(self) -> Option<Imsi> {
        let len = (self.0 >> 56) as usize;
        let mut value = self.0 & ((1 << 56) - 1);
        let mut buf = [b'0'; 15];
        let digits = buf.get_mut(..len)?;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (value % 10) as u8;
            value /= 10;
        }
        Imsi::from_utf8(digits).ok()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly on a broken fixture")]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_leading_zeros() {
        for text in ["001010123456789", "000000", "999999999999999", "123456"] {
            let imsi = Imsi::new(text).unwrap();
            assert_eq!(PackedImsi::new(&imsi).unpack().as_ref(), Some(&imsi));
        }
        let a = Imsi::new("0012345").unwrap();
        let b = Imsi::new("012345").unwrap();
        assert_ne!(PackedImsi::new(&a), PackedImsi::new(&b));
        assert_ne!(PackedImsi::new(&Imsi::new("000000").unwrap()).as_u64(), 0);
    }
}
