//! The secrets of a security context: zeroized on drop, redacted in `Debug`, not `Clone`,
//! compared in constant time.

use alloc::vec::Vec;

use aes::Aes128;
use ccm::Ccm;
use ccm::aead::{AeadInOut, KeyInit};
use ccm::consts::{U8, U13};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::OscoreError;

/// AES-CCM-16-64-128 (COSE algorithm 10, RFC 8152 §10.2): 128-bit key, 64-bit tag, 13-octet
/// nonce. OSCORE's mandatory-to-implement AEAD (RFC 8613 §3.2.1).
pub(crate) type AesCcm16_64_128 = Ccm<Aes128, U8, U13>;

/// The Master Secret (RFC 8613 §3.1): any length but empty.
pub struct MasterSecret(Vec<u8>);

impl MasterSecret {
    /// Copies the secret. The caller still owns (and should zeroize) `bytes`.
    ///
    /// # Errors
    /// [`OscoreError::EmptyMasterSecret`] for an empty slice.
    pub fn new(bytes: &[u8]) -> Result<MasterSecret, OscoreError> {
        if bytes.is_empty() {
            return Err(OscoreError::EmptyMasterSecret);
        }
        Ok(MasterSecret(bytes.to_vec()))
    }

    /// The secret octets.
    pub fn expose_secret(&self) -> &[u8] {
        &self.0
    }

    /// An explicit copy (the type is deliberately not `Clone`).
    pub fn copy_secret(&self) -> MasterSecret {
        MasterSecret(self.0.clone())
    }
}

impl Drop for MasterSecret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl ZeroizeOnDrop for MasterSecret {}

impl ConstantTimeEq for MasterSecret {
    fn ct_eq(&self, other: &Self) -> subtle::Choice {
        self.0.ct_eq(&other.0)
    }
}

impl PartialEq for MasterSecret {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other).into()
    }
}

impl Eq for MasterSecret {}

impl core::fmt::Debug for MasterSecret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("MasterSecret(<redacted>)")
    }
}

/// A Sender or Recipient Key (RFC 8613 §3.2.1) with its expanded AES key schedule, which
/// the `aes` crate zeroizes on drop.
pub struct AeadKey {
    key: [u8; 16],
    cipher: AesCcm16_64_128,
}

impl AeadKey {
    /// Key length in octets.
    pub const LEN: usize = 16;
    /// Tag length in octets.
    pub const TAG_LEN: usize = 8;

    pub(crate) fn new(key: [u8; 16]) -> AeadKey {
        let cipher = AesCcm16_64_128::new(&key.into());
        AeadKey { key, cipher }
    }

    /// The key octets (for test vectors and key export; every call site that handles raw
    /// key material is easy to find).
    pub fn expose_secret(&self) -> &[u8; 16] {
        &self.key
    }

    /// Encrypts `buffer` in place and returns the 8-octet tag (RFC 8613 §5.3; the caller
    /// appends it, so that the ciphertext can be written straight into a datagram).
    ///
    /// # Errors
    /// [`OscoreError::MessageTooLong`] for a plaintext CCM with a 13-octet nonce cannot
    /// protect (2^16 octets or more, RFC 3610 §2: L = 2); `buffer` is then unchanged.
    pub(crate) fn seal_in_place(
        &self,
        nonce: &[u8; 13],
        aad: &[u8],
        buffer: &mut [u8],
    ) -> Result<[u8; Self::TAG_LEN], OscoreError> {
        if buffer.len() > usize::from(u16::MAX) {
            return Err(OscoreError::MessageTooLong);
        }
        self.cipher
            .encrypt_inout_detached(nonce.into(), aad, buffer.into())
            .map(Into::into)
            .map_err(|_| OscoreError::MessageTooLong)
    }

    /// Encrypts `buffer` in place and appends the 8-octet tag.
    ///
    /// # Errors
    /// As [`Self::seal_in_place`]; `buffer` is then unchanged.
    pub(crate) fn seal(
        &self,
        nonce: &[u8; 13],
        aad: &[u8],
        buffer: &mut Vec<u8>,
    ) -> Result<(), OscoreError> {
        let tag = self.seal_in_place(nonce, aad, buffer)?;
        buffer.extend_from_slice(&tag);
        Ok(())
    }

    /// Verifies and decrypts `ciphertext || tag` in place; returns the plaintext's length
    /// (the front of `buffer`). On failure the plaintext is not released: `ccm` checks the
    /// tag in constant time and wipes what it decrypted.
    pub(crate) fn open_in_place(
        &self,
        nonce: &[u8; 13],
        aad: &[u8],
        buffer: &mut [u8],
    ) -> Result<usize, OscoreError> {
        let Some(body_len) = buffer.len().checked_sub(Self::TAG_LEN) else {
            return Err(OscoreError::DecryptionFailed);
        };
        let (body, tag) = buffer.split_at_mut(body_len);
        let tag = ccm::Tag::<U8>::try_from(&*tag).map_err(|_| OscoreError::DecryptionFailed)?;
        self.cipher
            .decrypt_inout_detached(nonce.into(), aad, body.into(), &tag)
            .map_err(|_| OscoreError::DecryptionFailed)?;
        Ok(body_len)
    }

    /// Verifies and decrypts `ciphertext || tag` in place, leaving the plaintext.
    #[cfg(test)]
    pub(crate) fn open(
        &self,
        nonce: &[u8; 13],
        aad: &[u8],
        buffer: &mut Vec<u8>,
    ) -> Result<(), OscoreError> {
        let len = self.open_in_place(nonce, aad, buffer)?;
        buffer.truncate(len);
        Ok(())
    }
}

impl Drop for AeadKey {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

impl ZeroizeOnDrop for AeadKey {}

impl core::fmt::Debug for AeadKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("AeadKey(<redacted>)")
    }
}

/// The Common IV (RFC 8613 §3.2.1): 13 octets for AES-CCM-16-64-128.
///
/// Also kept as a number, so that a nonce is one XOR (RFC 8613 §5.2; twice per message).
pub struct CommonIv {
    octets: [u8; 13],
    value: u128,
}

impl CommonIv {
    pub(crate) fn new(iv: [u8; 13]) -> CommonIv {
        let mut wide = [0u8; 16];
        wide[3..].copy_from_slice(&iv);
        let value = u128::from_be_bytes(wide);
        wide.zeroize();
        CommonIv { octets: iv, value }
    }

    /// The IV octets.
    pub fn expose_secret(&self) -> &[u8; 13] {
        &self.octets
    }

    /// The IV as a big-endian number (below 2^104).
    pub(crate) fn value(&self) -> u128 {
        self.value
    }
}

impl Drop for CommonIv {
    fn drop(&mut self) {
        self.octets.zeroize();
        self.value.zeroize();
    }
}

impl ZeroizeOnDrop for CommonIv {}

impl core::fmt::Debug for CommonIv {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("CommonIv(<redacted>)")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn debug_prints_no_secret() {
        let s = MasterSecret::new(&[0xab; 16]).unwrap_or_else(|_| MasterSecret(Vec::new()));
        assert_eq!(alloc::format!("{s:?}"), "MasterSecret(<redacted>)");
        assert_eq!(
            alloc::format!("{:?}", AeadKey::new([0xab; 16])),
            "AeadKey(<redacted>)"
        );
        assert_eq!(
            alloc::format!("{:?}", CommonIv::new([0xab; 13])),
            "CommonIv(<redacted>)"
        );
        assert_eq!(
            MasterSecret::new(&[]).err(),
            Some(OscoreError::EmptyMasterSecret)
        );
    }

    #[test]
    fn seal_open_and_tamper() {
        let key = AeadKey::new([7; 16]);
        let mut buf = b"hello".to_vec();
        key.seal(&[1; 13], b"aad", &mut buf).unwrap();
        assert_eq!(buf.len(), 5 + 8);
        let sealed = buf.clone();
        assert_eq!(key.open(&[1; 13], b"aad", &mut buf), Ok(()));
        assert_eq!(buf, b"hello");
        let mut bad = sealed.clone();
        bad[0] ^= 1;
        assert_eq!(
            key.open(&[1; 13], b"aad", &mut bad),
            Err(OscoreError::DecryptionFailed)
        );
        let mut bad = sealed;
        assert_eq!(
            key.open(&[1; 13], b"aae", &mut bad),
            Err(OscoreError::DecryptionFailed)
        );
        assert_eq!(
            key.open(&[1; 13], b"", &mut alloc::vec![0; 7]),
            Err(OscoreError::DecryptionFailed)
        );
    }
}
