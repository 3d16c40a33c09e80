//! Check records: a value sealed under each KEK version a store uses, so that a wrong or
//! missing KEK is found at start-up with a clear message, never later as keys that fail to
//! open (or, worse, as a store that starts and cannot serve).

use core::fmt;

use subtle::ConstantTimeEq;

use crate::keyring::{open_value, seal_value};
use crate::record::{Aad, FORMAT, LABEL_CHECK, Sealed};
use crate::{CheckError, KekVersion, Keyring, OpenError, SealError, SealNonce};

/// The plaintext of every check record (32 octets, not secret). Authenticity comes from the
/// AEAD tag; comparing the plaintext as well guards against a bug that skipped the tag.
const CHECK_PLAINTEXT: &[u8; 32] = b"e2m-seal check record, format 2\0";

/// A value sealed under one KEK version, stored by a backend when it first uses that
/// version (in the same transaction as the first record sealed under it, or at creation),
/// and verified at every start-up by [`Keyring::startup_check`].
///
/// Same 65-octet layout as a [`SealedKey`](crate::SealedKey), but with its own domain label
/// in the associated data (`"e2m-seal check"`), so that neither can be opened as the other.
/// Not secret.
#[derive(Clone, PartialEq, Eq)]
pub struct CheckRecord(Sealed);

impl CheckRecord {
    /// Octets in a check record.
    pub const LEN: usize = crate::record::SEALED_LEN;

    /// A check record read back from storage (length and header checked).
    ///
    /// # Errors
    /// As [`SealedKey::from_bytes`](crate::SealedKey::from_bytes).
    pub fn from_bytes(bytes: &[u8]) -> Result<CheckRecord, OpenError> {
        Sealed::parse(bytes).map(CheckRecord)
    }

    /// The octets to store.
    pub fn as_bytes(&self) -> &[u8; Self::LEN] {
        self.0.as_bytes()
    }

    /// The KEK version it checks.
    pub fn kek_version(&self) -> KekVersion {
        self.0.kek_version()
    }
}

impl fmt::Debug for CheckRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckRecord")
            .field("kek_version", &self.kek_version())
            .finish_non_exhaustive()
    }
}

/// What [`Keyring::startup_check`] found when every stored check record verified.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StartupCheck {
    /// The versions whose check records verified, oldest first.
    pub verified: Vec<KekVersion>,
    /// The keyring's newest version, if no stored check record covers it yet: the backend
    /// stores [`Keyring::make_check_record`] for it before sealing anything under it.
    pub newest_unrecorded: Option<KekVersion>,
}

/// `len(label) ‖ "e2m-seal check" ‖ format ‖ KEK version`.
fn check_aad(format: u8, version: KekVersion) -> Aad {
    Aad::start(LABEL_CHECK, format, version)
}

impl Keyring {
    /// A new check record for the KEK of `version`.
    ///
    /// # Errors
    /// [`SealError::UnknownKekVersion`] if the keyring has no KEK of that version.
    pub fn make_check_record(
        &self,
        version: KekVersion,
        nonce: SealNonce,
    ) -> Result<CheckRecord, SealError> {
        let kek = self
            .get(version)
            .ok_or(SealError::UnknownKekVersion(version))?;
        seal_value(
            kek,
            check_aad(FORMAT, version).as_bytes(),
            CHECK_PLAINTEXT,
            nonce,
        )
        .map(CheckRecord)
    }

    /// Verifies one stored check record against the keyring; returns its version.
    ///
    /// # Errors
    /// [`CheckError::MissingKek`] if no KEK of its version is held,
    /// [`CheckError::WrongKek`] if the KEK of its version does not open it.
    pub fn verify_check_record(&self, record: &CheckRecord) -> Result<KekVersion, CheckError> {
        let version = record.kek_version();
        let kek = self.get(version).ok_or(CheckError::MissingKek(version))?;
        let plain = open_value(
            kek,
            check_aad(record.0.format(), version).as_bytes(),
            &record.0,
        )
        .map_err(|_| CheckError::WrongKek(version))?;
        if bool::from(plain.ct_eq(CHECK_PLAINTEXT)) {
            Ok(version)
        } else {
            Err(CheckError::WrongKek(version))
        }
    }

    /// The start-up check: verifies every stored check record (oldest version first, so
    /// that the first error names the oldest problem), and says whether the newest KEK
    /// still needs one. A backend refuses to start on an error, printing it: it names the
    /// KEK version and whether its file is missing or holds the wrong key.
    ///
    /// # Errors
    /// The first [`CheckError`] found.
    pub fn startup_check<'a>(
        &self,
        stored: impl IntoIterator<Item = &'a CheckRecord>,
    ) -> Result<StartupCheck, CheckError> {
        let mut stored: Vec<&CheckRecord> = stored.into_iter().collect();
        stored.sort_by_key(|r| r.kek_version());
        let mut verified = Vec::with_capacity(stored.len());
        for record in stored {
            let version = self.verify_check_record(record)?;
            if verified.last() != Some(&version) {
                verified.push(version);
            }
        }
        let newest = self.newest_version();
        let newest_unrecorded = (!verified.contains(&newest)).then_some(newest);
        Ok(StartupCheck {
            verified,
            newest_unrecorded,
        })
    }
}
