//! The operator's KEKs, and sealing and opening under them.

use core::fmt;

use e2m_kdf::E2mIntKey;
use zeroize::Zeroizing;

use crate::aead::NotAuthentic;
use crate::record::{FORMAT, Sealed};
use crate::{
    IntKeyRecord, Kek, KekVersion, KeyringError, OpenError, SealError, SealNonce, SealedKey,
};

/// The KEKs a store may use: the newest seals every new record; every one opens the
/// records sealed under it.
///
/// KEK rotation: add a KEK file with a higher version and restart; new pushes are sealed
/// under it at once, and records sealed under older versions still open. Keep an older
/// KEK file until every record sealed under it has expired (at most the retention's
/// maximum age after the rotation; [`SealedKey::kek_version`] lets a backend count what a
/// version still protects), then remove it. A record sealed under a version the keyring
/// does not hold fails to open with [`OpenError::UnknownKekVersion`], and the start-up
/// check ([`Keyring::startup_check`]) refuses to start while such data is stored.
pub struct Keyring {
    /// Sorted by version, oldest first; never empty; versions unique.
    keks: Vec<Kek>,
}

impl Keyring {
    /// The keyring of `keks` (any order).
    ///
    /// # Errors
    /// [`KeyringError::Empty`] for no KEK, [`KeyringError::DuplicateVersion`] for two KEKs
    /// with one version.
    pub fn new(keks: impl IntoIterator<Item = Kek>) -> Result<Keyring, KeyringError> {
        let mut keks: Vec<Kek> = keks.into_iter().collect();
        keks.sort_by_key(Kek::version);
        if let Some(pair) = keks.windows(2).find(|w| w[0].version() == w[1].version()) {
            return Err(KeyringError::DuplicateVersion(pair[0].version()));
        }
        if keks.is_empty() {
            return Err(KeyringError::Empty);
        }
        Ok(Keyring { keks })
    }

    /// The newest KEK: the one [`seal`](Self::seal) uses.
    pub(crate) fn newest(&self) -> &Kek {
        // Never empty (checked in `new`); `last` on a non-empty Vec is `Some`.
        let last = self.keks.len() - 1;
        &self.keks[last]
    }

    /// The version new records are sealed under (the highest).
    pub fn newest_version(&self) -> KekVersion {
        self.newest().version()
    }

    /// The versions held, oldest first.
    pub fn versions(&self) -> impl Iterator<Item = KekVersion> + '_ {
        self.keks.iter().map(Kek::version)
    }

    /// Whether a KEK of `version` is held.
    pub fn contains(&self, version: KekVersion) -> bool {
        self.get(version).is_some()
    }

    pub(crate) fn get(&self, version: KekVersion) -> Option<&Kek> {
        self.keks
            .binary_search_by_key(&version, Kek::version)
            .ok()
            .map(|i| &self.keks[i])
    }

    /// Seals `key` for `record` under the newest KEK, with `nonce`.
    ///
    /// # Errors
    /// [`SealError::CipherRefused`] only if the AEAD refuses (it cannot for this input).
    pub fn seal(
        &self,
        record: &IntKeyRecord<'_>,
        key: &E2mIntKey,
        nonce: SealNonce,
    ) -> Result<SealedKey, SealError> {
        let kek = self.newest();
        let aad = record.associated_data(FORMAT, kek.version());
        seal_value(kek, aad.as_bytes(), key.expose_secret(), nonce).map(SealedKey)
    }

    /// Opens `sealed` as the key of `record`.
    ///
    /// # Errors
    /// [`OpenError::UnknownKekVersion`] if the keyring lacks the KEK it was sealed under;
    /// [`OpenError::NotAuthentic`] if it does not authenticate for this record under that
    /// KEK (edited bytes, a bound field that differs, a record moved from another place,
    /// or a KEK file with the wrong key for its version).
    pub fn open(
        &self,
        record: &IntKeyRecord<'_>,
        sealed: &SealedKey,
    ) -> Result<E2mIntKey, OpenError> {
        let version = sealed.0.kek_version();
        let kek = self
            .get(version)
            .ok_or(OpenError::UnknownKekVersion(version))?;
        let aad = record.associated_data(sealed.0.format(), version);
        let plain = open_value(kek, aad.as_bytes(), &sealed.0)
            .map_err(|NotAuthentic| OpenError::NotAuthentic(version))?;
        Ok(E2mIntKey::from_array(*plain))
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("versions", &self.versions().collect::<Vec<_>>())
            .finish()
    }
}

/// Seals 32 octets under `kek` with `aad` and `nonce`; the plaintext copy is zeroized.
pub(crate) fn seal_value(
    kek: &Kek,
    aad: &[u8],
    plaintext: &[u8; 32],
    nonce: SealNonce,
) -> Result<Sealed, SealError> {
    let nonce = nonce.into_array();
    let mut buffer = Zeroizing::new(*plaintext);
    let tag = kek
        .cipher()
        .seal_in_place(&nonce, aad, buffer.as_mut_slice())
        .map_err(|NotAuthentic| SealError::CipherRefused)?;
    Ok(Sealed::assemble(kek.version(), &nonce, &buffer, &tag))
}

/// Opens a sealed value under `kek` with `aad`; the plaintext is returned in a zeroizing
/// buffer, and nothing but an error is returned if the tag does not verify.
pub(crate) fn open_value(
    kek: &Kek,
    aad: &[u8],
    sealed: &Sealed,
) -> Result<Zeroizing<[u8; 32]>, NotAuthentic> {
    let mut buffer = Zeroizing::new(sealed.ciphertext());
    kek.cipher()
        .open_in_place(&sealed.nonce(), aad, buffer.as_mut_slice(), &sealed.tag())?;
    Ok(buffer)
}
