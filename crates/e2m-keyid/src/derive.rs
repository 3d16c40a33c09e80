//! `e2m_key = KDF(e2m_int_key, FC, EMSE_Id [, string])` (seed 6.x.2.1, "Key derivation
//! rules", step 2), typed: the EMSE_Id is an [`EmseId`], so only a validated identifier (a
//! single token, in NFKC, at most 255 octets) can reach the KDF, never an arbitrary string.
//!
//! It lives here rather than in `e2m-kdf` because `EmseId` does: `e2m-kdf` stays the
//! generic TS 33.220 KDF over octets (its `kdf` and `KdfKey`), and the typed derivation
//! sits with the typed identity.

use e2m_kdf::{E2mIntKey, E2mKey, E2mProfile, KdfError, KdfKey, kdf, text_param};

use crate::EmseId;

/// `e2m_key` for `emse_id` from `int_key`, with the FC and optional string of `profile`.
/// Run by the EMKS for the EMSE of an authenticated session, and by the UE's ME for the EMSE
/// it connects to.
///
/// ```
/// use e2m_keyid::{EmseId, e2m_key};
/// use e2m_kdf::{E2mIntKey, E2mProfile, Fc, kdf};
///
/// let int_key = E2mIntKey::from_array([7; 32]);
/// let emse = EmseId::new("iot-platform.example.com").unwrap();
/// let key = e2m_key(&int_key, &emse, &E2mProfile::PROVISIONAL).unwrap();
/// // The same as the generic KDF over FC 0xE1 (provisional) and P0 = the EMSE_Id:
/// let generic = kdf(&[7; 32], Fc::E2M_KEY_PROVISIONAL, &[emse.as_str().as_bytes()]).unwrap();
/// assert_eq!(key.expose_secret(), generic.expose_secret());
/// ```
///
/// # Errors
/// [`KdfError`] if the profile's optional string is not a valid text parameter.
pub fn e2m_key(
    int_key: &E2mIntKey,
    emse_id: &EmseId,
    profile: &E2mProfile<'_>,
) -> Result<E2mKey, KdfError> {
    let emse = emse_id.as_str().as_bytes();
    let out = match profile.key_label {
        None => kdf(int_key.expose_secret(), profile.key_fc, &[emse])?,
        Some(label) => kdf(
            int_key.expose_secret(),
            profile.key_fc,
            &[emse, text_param(label)?],
        )?,
    };
    Ok(E2mKey::from_array(*out.expose_secret()))
}

/// Derives `e2m_key` for many EMSEs from one `e2m_int_key`, paying the HMAC key schedule
/// once (see [`KdfKey`]): the EMKS's pattern.
///
/// ```
/// use e2m_keyid::{E2mKeyDeriver, EmseId, e2m_key};
/// use e2m_kdf::{E2mIntKey, E2mProfile};
///
/// let int_key = E2mIntKey::from_array([7; 32]);
/// let (a, b) = (EmseId::new("emse-a.example.com").unwrap(), EmseId::new("emse-b.example.com").unwrap());
/// let deriver = E2mKeyDeriver::new(&int_key, E2mProfile::PROVISIONAL).unwrap();
/// let for_a = deriver.derive(&a).unwrap();
/// assert!(for_a == e2m_key(&int_key, &a, &E2mProfile::PROVISIONAL).unwrap());
/// assert!(for_a != deriver.derive(&b).unwrap());
/// ```
pub struct E2mKeyDeriver<'p> {
    key: KdfKey,
    profile: E2mProfile<'p>,
}

impl<'p> E2mKeyDeriver<'p> {
    /// Precomputes the HMAC state of `int_key`.
    ///
    /// # Errors
    /// [`KdfError`] if `profile` fails [`E2mProfile::validate`].
    pub fn new(int_key: &E2mIntKey, profile: E2mProfile<'p>) -> Result<Self, KdfError> {
        profile.validate()?;
        Ok(E2mKeyDeriver {
            key: KdfKey::new(int_key.expose_secret()),
            profile,
        })
    }

    /// `e2m_key` for `emse_id`.
    ///
    /// # Errors
    /// [`KdfError`] if the profile's optional string is not a valid text parameter.
    pub fn derive(&self, emse_id: &EmseId) -> Result<E2mKey, KdfError> {
        let emse = emse_id.as_str().as_bytes();
        let out = match self.profile.key_label {
            None => self.key.derive(self.profile.key_fc, &[emse])?,
            Some(label) => self
                .key
                .derive(self.profile.key_fc, &[emse, text_param(label)?])?,
        };
        Ok(E2mKey::from_array(*out.expose_secret()))
    }
}

/// The profile only (the key state is secret and never printed).
impl core::fmt::Debug for E2mKeyDeriver<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("E2mKeyDeriver")
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}
