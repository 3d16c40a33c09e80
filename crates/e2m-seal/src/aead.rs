//! The one AEAD this crate uses: AEAD_AES_256_GCM_SIV (RFC 8452 §4–§5), from RustCrypto's
//! `aes-gcm-siv`, with a detached 16-octet tag and a 12-octet nonce.
//!
//! Kept behind this small type so that the record code never touches the cipher crate's
//! generic-array types, and so that the RFC 8452 Appendix C.2/C.3 vectors run through
//! exactly the code path that seals records (see the tests below).

use aes_gcm_siv::aead::AeadInOut;
use aes_gcm_siv::{Aes256GcmSiv, KeyInit, Nonce, Tag};

/// Octets in a nonce (RFC 8452 §4: 96 bits).
pub(crate) const NONCE_LEN: usize = 12;
/// Octets in a tag (RFC 8452 §4: 128 bits).
pub(crate) const TAG_LEN: usize = 16;

/// One AES-256-GCM-SIV key, ready to use. Its AES key schedule is zeroized on drop (the `aes`
/// crate's `zeroize` feature, switched on in this crate's manifest). Not `Clone`.
pub(crate) struct Cipher(Aes256GcmSiv);

/// The tag did not verify: wrong key, or edited ciphertext, tag, nonce or associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NotAuthentic;

impl Cipher {
    /// The cipher under the 32-octet key-generating key `key` (RFC 8452 §4).
    pub(crate) fn new(key: &[u8; 32]) -> Cipher {
        Cipher(Aes256GcmSiv::new(key.into()))
    }

    /// Encrypts `buffer` in place and returns the tag.
    ///
    /// The cipher crate refuses only plaintext or associated data over 2^36 octets
    /// (RFC 8452 §6); callers here pass at most a few hundred, but the refusal is still
    /// returned rather than unwrapped.
    pub(crate) fn seal_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buffer: &mut [u8],
    ) -> Result<[u8; TAG_LEN], NotAuthentic> {
        let tag = self
            .0
            .encrypt_inout_detached(&Nonce::from(*nonce), aad, buffer.into())
            .map_err(|_| NotAuthentic)?;
        Ok(tag.into())
    }

    /// Verifies `tag` and decrypts `buffer` in place. On failure the buffer holds the
    /// ciphertext again (the cipher crate re-encrypts it), never unauthenticated plaintext.
    pub(crate) fn open_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buffer: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), NotAuthentic> {
        self.0
            .decrypt_inout_detached(&Nonce::from(*nonce), aad, buffer.into(), &Tag::from(*tag))
            .map_err(|_| NotAuthentic)
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        reason = "test vectors"
    )]

    use super::*;

    /// One case of `tests/data/rfc8452.txt`.
    struct Vector {
        name: String,
        fields: Vec<(String, String)>,
    }

    impl Vector {
        fn hex(&self, key: &str) -> Vec<u8> {
            let value = self
                .fields
                .iter()
                .find(|(k, _)| k == key)
                .unwrap_or_else(|| panic!("case {} has no {key}", self.name));
            hex::decode(&value.1).unwrap_or_else(|e| panic!("case {}: {key}: {e}", self.name))
        }
    }

    /// `[case]` headers, `key = hex` lines (a value may continue on the next lines, as in
    /// the RFC's layout), `#` comments.
    fn vectors() -> Vec<Vector> {
        let mut out: Vec<Vector> = Vec::new();
        let mut last_key = String::new();
        for line in include_str!("../tests/data/rfc8452.txt").lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                out.push(Vector {
                    name: name.to_owned(),
                    fields: Vec::new(),
                });
                continue;
            }
            let case = out.last_mut().expect("a field before the first [case]");
            match line.split_once('=') {
                Some((key, value)) => {
                    last_key = key.trim().to_owned();
                    case.fields
                        .push((last_key.clone(), value.trim().to_owned()));
                }
                None => {
                    let field = case
                        .fields
                        .iter_mut()
                        .find(|(k, _)| *k == last_key)
                        .expect("continuation line");
                    field.1.push_str(line);
                }
            }
        }
        out
    }

    #[test]
    fn rfc8452_appendix_c2_and_c3_vectors() {
        let cases = vectors();
        assert!(cases.len() >= 12, "vector file lost cases: {}", cases.len());
        for case in &cases {
            let key: [u8; 32] = case.hex("key").try_into().unwrap();
            let nonce: [u8; NONCE_LEN] = case.hex("nonce").try_into().unwrap();
            let aad = case.hex("aad");
            let plaintext = case.hex("plaintext");
            let result = case.hex("result");
            // RFC 8452 "Result" is ciphertext || tag.
            let (expected_ct, expected_tag) = result.split_at(plaintext.len());
            let cipher = Cipher::new(&key);

            let mut buffer = plaintext.clone();
            let tag = cipher.seal_in_place(&nonce, &aad, &mut buffer).unwrap();
            assert_eq!(buffer, expected_ct, "{}: ciphertext", case.name);
            assert_eq!(&tag[..], expected_tag, "{}: tag", case.name);

            cipher
                .open_in_place(&nonce, &aad, &mut buffer, &tag)
                .unwrap();
            assert_eq!(buffer, plaintext, "{}: open", case.name);

            // The same vector with its last tag bit flipped must not open, and must leave
            // the ciphertext (not plaintext) in the buffer.
            let mut bad_tag = tag;
            bad_tag[TAG_LEN - 1] ^= 1;
            let mut buffer = expected_ct.to_vec();
            assert_eq!(
                cipher.open_in_place(&nonce, &aad, &mut buffer, &bad_tag),
                Err(NotAuthentic),
                "{}",
                case.name
            );
            assert_eq!(
                buffer, expected_ct,
                "{}: buffer after a failed open",
                case.name
            );
        }
    }
}
