//! Key identifiers (seed 6.x.2.1, "Considerations on the key identifier").

use e2m_kdf::{E2mIntKey, E2mProfile, KdfError, KdfKey, text_param};

/// A 32-bit identifier of one `e2m_int_key` of one UE.
///
/// It travels in clear (in `psk_identity` and in the EMSE's key request), so it names a key
/// without revealing anything about it. Its text form is exactly eight lowercase hex
/// digits, most significant first; [`str::parse`] accepts that form only, so every key id
/// has one spelling.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(u32);

/// How key identifiers are made (the seed's two alternatives).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum KeyIdScheme {
    /// The 32 least significant bits of RAND (the seed's preferred alternative 1): the HSS
    /// pushes them with the key, the UE has RAND from the AKA challenge.
    RandLsb32,
    /// A short, one-way, domain-separated hash of `e2m_int_key` (alternative 2).
    ShortHash,
}

impl KeyId {
    /// Octets in a key id.
    pub const LEN: usize = 4;
    /// Characters in its text form.
    pub const TEXT_LEN: usize = 8;

    /// The key id with this numeric value.
    pub const fn from_u32(value: u32) -> KeyId {
        KeyId(value)
    }

    /// Its numeric value.
    pub const fn as_u32(self) -> u32 {
        self.0
    }

    /// Its four octets, big-endian.
    pub const fn to_be_bytes(self) -> [u8; 4] {
        self.0.to_be_bytes()
    }

    /// The 32 least significant bits of the 128-bit RAND: its last four octets read
    /// big-endian (RAND is transmitted most significant octet first, TS 24.008 10.5.3.1).
    ///
    /// ```
    /// use e2m_keyid::KeyId;
    /// // TS 35.208 test set 1 RAND = 23553cbe 9637a89d 218ae64d ae47bf35
    /// let rand = [0x23, 0x55, 0x3c, 0xbe, 0x96, 0x37, 0xa8, 0x9d,
    ///             0x21, 0x8a, 0xe6, 0x4d, 0xae, 0x47, 0xbf, 0x35];
    /// assert_eq!(KeyId::from_rand_lsb32(&rand).to_string(), "ae47bf35");
    /// ```
    pub const fn from_rand_lsb32(rand: &[u8; 16]) -> KeyId {
        KeyId(u32::from_be_bytes([rand[12], rand[13], rand[14], rand[15]]))
    }

    /// The short-hash key id: the first 32 bits of
    /// `KDF(e2m_int_key, key_id_fc, key_id_label)` under `profile`.
    ///
    /// One-way (HMAC-SHA-256 keyed by the secret), and domain-separated by its own FC, so the
    /// clear-text id is no prefix of any key derived elsewhere. With N keys retained per UE
    /// the chance that two of them share an id is about N(N−1)/2 / 2³² (N = 4: 1.4 × 10⁻⁹);
    /// an EMKS that meets a collision keeps the newer key (the older becomes unreachable),
    /// exactly as for a repeated RAND-LSB32.
    ///
    /// # Errors
    /// [`KdfError`] if the profile's label is not a valid text parameter.
    pub fn short_hash(int_key: &E2mIntKey, profile: &E2mProfile<'_>) -> Result<KeyId, KdfError> {
        let label = text_param(profile.key_id_label)?;
        let out = KdfKey::new(int_key.expose_secret()).derive(profile.key_id_fc, &[label])?;
        let b = out.expose_secret();
        Ok(KeyId(u32::from_be_bytes([b[0], b[1], b[2], b[3]])))
    }

    /// Parses the eight-lowercase-hex-digit form from octets.
    ///
    /// # Errors
    /// [`KeyIdError::WrongLength`] or [`KeyIdError::NotLowercaseHex`].
    pub fn parse_bytes(text: &[u8]) -> Result<KeyId, KeyIdError> {
        if text.len() != Self::TEXT_LEN {
            return Err(KeyIdError::WrongLength(text.len()));
        }
        let mut value = 0u32;
        for &c in text {
            let digit = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                _ => return Err(KeyIdError::NotLowercaseHex),
            };
            value = (value << 4) | u32::from(digit);
        }
        Ok(KeyId(value))
    }
}

/// Why text is not a key id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyIdError {
    /// A key id is exactly eight characters.
    #[error("key id must be 8 hex digits, got {0} characters")]
    WrongLength(usize),
    /// Only `0-9a-f` are allowed (one spelling per key id).
    #[error("key id must be lowercase hexadecimal")]
    NotLowercaseHex,
}

impl core::str::FromStr for KeyId {
    type Err = KeyIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KeyId::parse_bytes(s.as_bytes())
    }
}

impl core::fmt::Display for KeyId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

/// The same eight hex digits as [`Display`](core::fmt::Display), so that a key id in a log
/// or an assertion reads the way it travels (`KeyId(ae47bf35)`, not a decimal number).
impl core::fmt::Debug for KeyId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "KeyId({:08x})", self.0)
    }
}

impl From<u32> for KeyId {
    fn from(value: u32) -> Self {
        KeyId(value)
    }
}

impl From<KeyId> for u32 {
    fn from(id: KeyId) -> Self {
        id.0
    }
}
