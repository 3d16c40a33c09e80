//! The e2m profile: the function codes and labels of Solution #10's two derivations.

use crate::{Fc, KdfError, text_param};

/// The FCs and labels of the e2m derivations.
///
/// 3GPP has not allocated FC values for `e2m_int_key` and `e2m_key` (the seed's editor's
/// note in 6.x.2.1, "Key derivation rules"), and the labels are examples. So they are data:
/// [`E2mProfile::PROVISIONAL`] is this project's documented default, and a deployment that
/// agrees on other values with its UEs supplies its own profile. UE and EMKS must use the
/// same profile, or their keys differ.
///
/// The provisional FCs 0xE0–0xE2 collide with no FC allocated in TS 33.220 Annex B's table
/// (0x01, 0x10–0x3F, 0x50–0x52, 0x63–0x64, 0x69–0x84, 0x8C–0x8E; 0xFF is the escape).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct E2mProfile<'a> {
    /// FC of `e2m_int_key = KDF(CK || IK, FC, int_key_label)`.
    pub int_key_fc: Fc,
    /// P0 of `e2m_int_key`: the purpose string. The seed writes `"e2m_ CIoT"` with a stray
    /// space in one place; the provisional profile uses `"e2m_CIoT"`.
    pub int_key_label: &'a str,
    /// FC of `e2m_key = KDF(e2m_int_key, FC, EMSE_Id [, key_label])`.
    pub key_fc: Fc,
    /// The optional P1 of `e2m_key` (the seed's editor's note leaves it ffs). `None` omits
    /// the parameter entirely; `Some("")` would encode an empty P1 with L1 = 0x0000.
    pub key_label: Option<&'a str>,
    /// FC of the short-hash key identifier (used by `e2m-keyid`).
    pub key_id_fc: Fc,
    /// P0 of the short-hash key identifier.
    pub key_id_label: &'a str,
}

impl E2mProfile<'static> {
    /// This project's provisional profile: FC 0xE0 / 0xE1 / 0xE2, `"e2m_CIoT"`, no
    /// `e2m_key` string (a dedicated FC already separates the derivation), `"e2m_key_id"`.
    pub const PROVISIONAL: E2mProfile<'static> = E2mProfile {
        int_key_fc: Fc::E2M_INT_KEY_PROVISIONAL,
        int_key_label: "e2m_CIoT",
        key_fc: Fc::E2M_KEY_PROVISIONAL,
        key_label: None,
        key_id_fc: Fc::E2M_KEY_ID_PROVISIONAL,
        key_id_label: "e2m_key_id",
    };
}

impl Default for E2mProfile<'static> {
    fn default() -> Self {
        Self::PROVISIONAL
    }
}

impl E2mProfile<'_> {
    /// Checks that the three FCs differ and that the labels are valid text parameters.
    ///
    /// # Errors
    /// [`KdfError::ProfileFcCollision`], [`KdfError::TextNotNormalized`] or
    /// [`KdfError::EmptyText`] (for an empty `int_key_label` or `key_id_label`).
    pub fn validate(&self) -> Result<(), KdfError> {
        if self.int_key_fc == self.key_fc
            || self.int_key_fc == self.key_id_fc
            || self.key_fc == self.key_id_fc
        {
            return Err(KdfError::ProfileFcCollision);
        }
        for label in [self.int_key_label, self.key_id_label] {
            if label.is_empty() {
                return Err(KdfError::EmptyText);
            }
            text_param(label)?;
        }
        if let Some(label) = self.key_label {
            text_param(label)?;
        }
        Ok(())
    }
}
