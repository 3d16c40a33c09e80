//! The function code FC that starts every KDF input string S (TS 33.220 B.2.2).

use crate::KdfError;

/// A TS 33.220 function code: one octet, or two octets `0xFF || FC2`.
///
/// TS 33.220 B.2.2 allocates one-octet FC values per derivation and reserves `0xFF` as the
/// escape to a second octet, so a one-octet FC is any value but `0xFF`. The type is open:
/// any code can be built, and the named constants below cite the clause that allocates them.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fc {
    bytes: [u8; 2],
    len: u8,
}

impl Fc {
    /// Ks_(ext)_NAF from Ks (GBA), TS 33.220 B.3.
    pub const KS_NAF: Fc = Fc::single(0x01);
    /// K_ASME from CK, IK, SN id and SQN ⊕ AK, TS 33.401 A.2.
    pub const KASME: Fc = Fc::single(0x10);
    /// CK', IK' from CK, IK, access network identity and SQN ⊕ AK, TS 33.402 A.2.
    pub const CK_IK_PRIME: Fc = Fc::single(0x20);
    /// K_AUSF from CK, IK, the serving network name and SQN ⊕ AK (5G AKA), TS 33.501 A.2.
    /// (EAP-AKA' takes K_AUSF from the EMSK instead, A.1; no FC.)
    pub const KAUSF: Fc = Fc::single(0x6A);
    /// RES* / XRES* from CK, IK, the serving network name, RAND and RES, TS 33.501 A.4.
    pub const RES_STAR: Fc = Fc::single(0x6B);
    /// K_SEAF from K_AUSF, TS 33.501 A.6.
    pub const KSEAF: Fc = Fc::single(0x6C);
    /// K_AMF from K_SEAF, TS 33.501 A.7.
    pub const KAMF: Fc = Fc::single(0x6D);
    /// K_AKMA from K_AUSF, TS 33.535 A.2.
    pub const KAKMA: Fc = Fc::single(0x80);
    /// A-TID from K_AUSF, TS 33.535 A.3.
    pub const A_TID: Fc = Fc::single(0x81);
    /// K_AF from K_AKMA, TS 33.535 A.4.
    pub const KAF: Fc = Fc::single(0x82);

    /// Provisional FC for `e2m_int_key` (not allocated by 3GPP; see [`crate::E2mProfile`]).
    pub const E2M_INT_KEY_PROVISIONAL: Fc = Fc::single(0xE0);
    /// Provisional FC for `e2m_key` (not allocated by 3GPP; see [`crate::E2mProfile`]).
    pub const E2M_KEY_PROVISIONAL: Fc = Fc::single(0xE1);
    /// Provisional FC for the short-hash key identifier (not allocated by 3GPP).
    pub const E2M_KEY_ID_PROVISIONAL: Fc = Fc::single(0xE2);

    /// The escape octet that introduces a two-octet FC (TS 33.220 B.2.2).
    pub const ESCAPE: u8 = 0xFF;

    const fn single(fc: u8) -> Fc {
        Fc {
            bytes: [fc, 0],
            len: 1,
        }
    }

    /// A one-octet FC.
    ///
    /// # Errors
    /// [`KdfError::ReservedFc`] for `0xFF`, which only ever starts a two-octet FC.
    pub const fn new(fc: u8) -> Result<Fc, KdfError> {
        if fc == Self::ESCAPE {
            Err(KdfError::ReservedFc)
        } else {
            Ok(Fc::single(fc))
        }
    }

    /// The two-octet FC `0xFF || fc2`.
    pub const fn extended(fc2: u8) -> Fc {
        Fc {
            bytes: [Self::ESCAPE, fc2],
            len: 2,
        }
    }

    /// The octets that start S: one, or two for the extended form.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Both octets of the FC's storage (the second is zero for a one-octet FC) and the
    /// number of them that belong to S: lets the engine write the FC with one fixed-size
    /// copy instead of a variable-length one.
    pub(crate) const fn padded(&self) -> ([u8; 2], usize) {
        (self.bytes, self.len as usize)
    }
}

impl core::fmt::Debug for Fc {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.as_bytes() {
            [one] => write!(f, "Fc(0x{one:02X})"),
            [esc, two] => write!(f, "Fc(0x{esc:02X}{two:02X})"),
            _ => f.write_str("Fc(?)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_is_not_a_one_octet_fc() {
        assert_eq!(Fc::new(0xFF), Err(KdfError::ReservedFc));
        assert_eq!(
            Fc::new(0x20).map(|f| f.as_bytes().to_owned()),
            Ok(vec![0x20])
        );
        assert_eq!(Fc::extended(0x01).as_bytes(), &[0xFF, 0x01]);
        assert_ne!(Fc::extended(0x20), Fc::CK_IK_PRIME);
    }

    #[test]
    fn provisional_fcs_avoid_allocated_ranges() {
        // DESIGN.md §4: allocated (or reserved) FC values as of TS 33.220 Annex B's table.
        let allocated = |v: u8| matches!(v, 0x01 | 0x10..=0x3F | 0x50..=0x52 | 0x63..=0x64 | 0x69..=0x84 | 0x8C..=0x8E | 0xFF);
        for fc in [
            Fc::E2M_INT_KEY_PROVISIONAL,
            Fc::E2M_KEY_PROVISIONAL,
            Fc::E2M_KEY_ID_PROVISIONAL,
        ] {
            assert!(!allocated(fc.as_bytes()[0]), "{fc:?}");
        }
    }
}
