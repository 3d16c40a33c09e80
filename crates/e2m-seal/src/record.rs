//! Sealed intermediate-key records: the layout on disk and the associated data that binds
//! each record to its place.

use core::fmt;

use e2m_keyid::{Imsi, KeyId};
use e2m_types::Timestamp;

use crate::aead::{NONCE_LEN, TAG_LEN};
use crate::{KekVersion, OpenError};

/// The format version this build writes and reads: the first octet of every sealed value,
/// and bound into its associated data.
///
/// - 1: the creation time and expiry bound as Unix seconds. No longer read: opening such a
///   value is [`OpenError::UnsupportedFormat`]`(1)`, never an attempt under the wrong layout
///   (which would look like tampering).
/// - 2: both bound as Unix milliseconds ([`Timestamp`]'s full resolution since issue 9
///   item 15), so a creation time edited by a single millisecond is refused.
pub const FORMAT: u8 = 2;

/// Octets of the clear header: format version (1) and KEK version (4, big-endian).
const HEADER_LEN: usize = 1 + 4;
/// Octets of a sealed 32-octet value: header, nonce, ciphertext, tag.
pub(crate) const SEALED_LEN: usize = HEADER_LEN + NONCE_LEN + 32 + TAG_LEN;

/// The domain label that starts the associated data of each kind of sealed value, so that
/// a value sealed as one kind can never be opened as another (a check record is not an
/// intermediate key, and a later kind, e.g. sealed session state, gets its own label).
pub(crate) const LABEL_INT_KEY: &[u8] = b"e2m-seal int-key";
pub(crate) const LABEL_CHECK: &[u8] = b"e2m-seal check";
pub(crate) const LABEL_K_AKMA: &[u8] = b"e2m-seal k-akma";

/// Where an intermediate key belongs: the clear fields a backend stores beside its sealed
/// bytes (and indexes by), all of which are bound into the sealed value's associated data.
///
/// Opening with any field different from the one used when sealing fails, so a record
/// whose sealed bytes were copied to another row, or whose expiry or creation time was
/// edited in the database, never yields a key. What each field protects:
/// - `imsi` and `key_id`: the row's identity; a key moved to another UE or id is refused;
/// - `created`: the store orders a UE's keys by it (eviction, "latest") and compares it to
///   tell a repeated push from a replacement; an edited `created` could make an old key
///   "newest" or keep it from eviction;
/// - `expires`: an edited expiry could serve a key past its maximum age.
///
/// The format version and KEK version come from the sealed bytes' header and are bound
/// too (a header edit, or a KEK file reused under two versions, is caught).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IntKeyRecord<'a> {
    /// The UE's IMSI.
    pub imsi: &'a Imsi,
    /// The key's id.
    pub key_id: KeyId,
    /// When the HSS created the key (as pushed).
    pub created: Timestamp,
    /// When the key stops being served.
    pub expires: Timestamp,
}

impl<'a> IntKeyRecord<'a> {
    /// The record of the key `key_id` of `imsi`, created at `created`, served until
    /// `expires`.
    pub fn new(
        imsi: &'a Imsi,
        key_id: KeyId,
        created: Timestamp,
        expires: Timestamp,
    ) -> IntKeyRecord<'a> {
        IntKeyRecord {
            imsi,
            key_id,
            created,
            expires,
        }
    }

    /// The associated data (RFC 5116 §2.1 "A", here in RFC 8452 AES-GCM-SIV) for this
    /// record sealed in format `format` under KEK `kek`. Every variable-length field carries
    /// its length, and the layout is fixed, so two different records never give the same
    /// octets:
    ///
    /// ```text
    /// len(label) ‖ "e2m-seal int-key" ‖ format (1) ‖ KEK version (4, BE)
    ///   ‖ len(IMSI) (1) ‖ IMSI (6–15 ASCII digits) ‖ key id (4, BE)
    ///   ‖ created (8, BE, Unix milliseconds) ‖ expires (8, BE, Unix milliseconds)
    /// ```
    pub(crate) fn associated_data(&self, format: u8, kek: KekVersion) -> Aad {
        let mut aad = Aad::start(LABEL_INT_KEY, format, kek);
        let imsi = self.imsi.as_bytes();
        // An Imsi holds at most 15 octets (TS 23.003 §2.2), so its length fits one octet.
        aad.push(&[u8::try_from(imsi.len()).unwrap_or(u8::MAX)]);
        aad.push(imsi);
        aad.push(&self.key_id.to_be_bytes());
        aad.push(&self.created.as_unix_millis().to_be_bytes());
        aad.push(&self.expires.as_unix_millis().to_be_bytes());
        aad
    }
}

/// Associated data built on the stack, in a buffer of `N` octets (64 holds an intermediate
/// key's 58; an AKMA record's needs [`crate::akma`]'s larger bound).
pub(crate) struct Aad<const N: usize = 64> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> Aad<N> {
    /// `len(label) ‖ label ‖ format ‖ KEK version`: the prefix every kind shares.
    pub(crate) fn start(label: &[u8], format: u8, kek: KekVersion) -> Aad<N> {
        let mut aad = Aad {
            bytes: [0; N],
            len: 0,
        };
        aad.push(&[u8::try_from(label.len()).unwrap_or(u8::MAX)]);
        aad.push(label);
        aad.push(&[format]);
        aad.push(&kek.get().to_be_bytes());
        aad
    }

    pub(crate) fn push(&mut self, part: &[u8]) {
        // Every caller's total is a compile-time bound under N (see `associated_data`);
        // `get_mut` keeps an impossible overflow from panicking.
        if let Some(dst) = self.bytes.get_mut(self.len..self.len + part.len()) {
            dst.copy_from_slice(part);
            self.len += part.len();
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// The nonce for one seal: 12 octets (RFC 8452 §4), stored in clear in the sealed value.
///
/// Taken by value and neither `Clone` nor `Copy`, so one `SealNonce` seals one value.
/// [`SealNonce::random`] (feature `getrandom`, on by default) is what a backend uses;
/// [`SealNonce::from_array`] lets a caller bring its own CSPRNG, or a test or simulation be
/// exact. AES-GCM-SIV is nonce-misuse resistant (RFC 8452 §1, §9): a repeated nonce under
/// one KEK reveals only whether the very same key was sealed into the very same record
/// twice (the associated data differs for every other record), never the key.
pub struct SealNonce([u8; NONCE_LEN]);

impl SealNonce {
    /// Octets in a nonce.
    pub const LEN: usize = NONCE_LEN;

    /// A nonce from the caller (its own CSPRNG, or a fixed value in a test).
    pub const fn from_array(bytes: [u8; NONCE_LEN]) -> SealNonce {
        SealNonce(bytes)
    }

    /// A nonce from the operating system's random generator.
    ///
    /// # Errors
    /// [`SealError::RandomUnavailable`](crate::SealError::RandomUnavailable) if the
    /// generator fails.
    #[cfg(feature = "getrandom")]
    #[cfg_attr(docsrs, doc(cfg(feature = "getrandom")))]
    pub fn random() -> Result<SealNonce, crate::SealError> {
        let mut bytes = [0u8; NONCE_LEN];
        getrandom::fill(&mut bytes).map_err(|_| crate::SealError::RandomUnavailable)?;
        Ok(SealNonce(bytes))
    }

    pub(crate) fn into_array(self) -> [u8; NONCE_LEN] {
        self.0
    }
}

impl fmt::Debug for SealNonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealNonce(..)")
    }
}

/// The fixed layout shared by sealed keys and check records (65 octets):
///
/// ```text
/// format (1) ‖ KEK version (4, BE) ‖ nonce (12) ‖ ciphertext (32) ‖ tag (16)
/// ```
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Sealed {
    bytes: [u8; SEALED_LEN],
    kek: KekVersion,
}

// The accessors below slice fixed ranges of a fixed-size array: the conversions cannot
// fail, and the fallbacks exist only so that no `unwrap` is needed.
impl Sealed {
    pub(crate) fn assemble(
        kek: KekVersion,
        nonce: &[u8; NONCE_LEN],
        ciphertext: &[u8; 32],
        tag: &[u8; TAG_LEN],
    ) -> Sealed {
        let mut bytes = [0u8; SEALED_LEN];
        bytes[0] = FORMAT;
        bytes[1..5].copy_from_slice(&kek.get().to_be_bytes());
        bytes[5..17].copy_from_slice(nonce);
        bytes[17..49].copy_from_slice(ciphertext);
        bytes[49..65].copy_from_slice(tag);
        Sealed { bytes, kek }
    }

    /// Checks length, format and KEK version (not authenticity: that needs the KEK).
    pub(crate) fn parse(bytes: &[u8]) -> Result<Sealed, OpenError> {
        let bytes: [u8; SEALED_LEN] = bytes.try_into().map_err(|_| OpenError::WrongLength {
            expected: SEALED_LEN,
            actual: bytes.len(),
        })?;
        if bytes[0] != FORMAT {
            return Err(OpenError::UnsupportedFormat(bytes[0]));
        }
        let kek = KekVersion::new(u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]))
            .ok_or(OpenError::BadHeader)?;
        Ok(Sealed { bytes, kek })
    }

    pub(crate) fn as_bytes(&self) -> &[u8; SEALED_LEN] {
        &self.bytes
    }

    pub(crate) fn format(&self) -> u8 {
        self.bytes[0]
    }

    pub(crate) fn kek_version(&self) -> KekVersion {
        self.kek
    }

    pub(crate) fn nonce(&self) -> [u8; NONCE_LEN] {
        self.bytes[5..17].try_into().unwrap_or([0; NONCE_LEN])
    }

    pub(crate) fn ciphertext(&self) -> [u8; 32] {
        self.bytes[17..49].try_into().unwrap_or([0; 32])
    }

    pub(crate) fn tag(&self) -> [u8; TAG_LEN] {
        self.bytes[49..65].try_into().unwrap_or([0; TAG_LEN])
    }
}

/// An intermediate key sealed under a KEK: 65 octets a backend stores as they are (a
/// `BLOB`/`bytea` column, a redb value), beside the clear fields of its [`IntKeyRecord`].
///
/// Not secret (without the KEK it reveals nothing about the key), so it is `Clone` and
/// comparable; its `Debug` shows the header only.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedKey(pub(crate) Sealed);

impl SealedKey {
    /// Octets in a sealed key.
    pub const LEN: usize = SEALED_LEN;

    /// Sealed bytes read back from storage. Checks the length and the header; whether they
    /// authenticate is known only when they are opened.
    ///
    /// # Errors
    /// [`OpenError::WrongLength`], [`OpenError::UnsupportedFormat`] or
    /// [`OpenError::BadHeader`].
    pub fn from_bytes(bytes: &[u8]) -> Result<SealedKey, OpenError> {
        Sealed::parse(bytes).map(SealedKey)
    }

    /// The octets to store.
    pub fn as_bytes(&self) -> &[u8; SEALED_LEN] {
        self.0.as_bytes()
    }

    /// The version of the KEK it was sealed under (from the clear header), e.g. for a
    /// column that lets an operator count what a KEK still protects before retiring it.
    pub fn kek_version(&self) -> KekVersion {
        self.0.kek_version()
    }
}

impl fmt::Debug for SealedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedKey")
            .field("format", &self.0.format())
            .field("kek_version", &self.kek_version())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    /// The associated data is the documented layout, octet for octet (written out by hand
    /// here, not produced by the code under test), so another implementation can open
    /// these records.
    #[test]
    fn associated_data_is_the_documented_layout() {
        let imsi = Imsi::new("001010123456789").unwrap();
        let record = IntKeyRecord::new(
            &imsi,
            KeyId::from_u32(0xae47_bf35),
            Timestamp::from_unix_millis(0x01_0203_0405),
            Timestamp::MAX, // 253402300799999 ms = 0xe677d21fdbff
        );
        let aad = record.associated_data(FORMAT, KekVersion::new(0x0a0b_0c0d).unwrap());
        let mut expected = Vec::new();
        expected.push(16u8);
        expected.extend_from_slice(b"e2m-seal int-key");
        expected.push(2);
        expected.extend_from_slice(&[0x0a, 0x0b, 0x0c, 0x0d]);
        expected.push(15);
        expected.extend_from_slice(b"001010123456789");
        expected.extend_from_slice(&[0xae, 0x47, 0xbf, 0x35]);
        expected.extend_from_slice(&[0, 0, 0, 0x01, 0x02, 0x03, 0x04, 0x05]);
        expected.extend_from_slice(&[0, 0, 0xe6, 0x77, 0xd2, 0x1f, 0xdb, 0xff]);
        assert_eq!(aad.as_bytes(), &expected[..]);
        assert_eq!(aad.as_bytes().len(), 58);

        let check: Aad = Aad::start(LABEL_CHECK, FORMAT, KekVersion::new(2).unwrap());
        let mut expected = vec![14u8];
        expected.extend_from_slice(b"e2m-seal check");
        expected.extend_from_slice(&[2, 0, 0, 0, 2]);
        assert_eq!(check.as_bytes(), &expected[..]);
    }
}
