//! The crate's errors: small, `Copy`, and never holding key material or file contents.

use crate::KekVersion;

/// Why a KEK file's bytes are not a KEK. The message names the rule broken and never
/// repeats any of the file's contents (the file holds a secret).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KekFileError {
    /// The file does not start with `e2m-kek ` (it is some other file).
    #[error("not an e2m KEK file (it must start with \"e2m-kek v1 \")")]
    NotKekFile,
    /// The file names a format other than `v1`.
    #[error("unsupported KEK file format (this build reads \"v1\")")]
    UnsupportedFormat,
    /// The version field is not a decimal number from 1 to 4294967295 without leading zeros.
    #[error("KEK version must be a decimal number from 1 to 4294967295, without leading zeros")]
    BadVersion,
    /// The key field is not 64 hexadecimal digits.
    #[error("KEK must be 64 hexadecimal digits (32 octets)")]
    BadKey,
    /// The key is 32 zero octets: a placeholder, not a key.
    #[error("KEK is all zeros: generate a random key")]
    ZeroKey,
    /// Something other than one line ending in an optional newline: extra fields, spaces,
    /// a second line.
    #[error("KEK file must be exactly one line: \"e2m-kek v1 <version> <64 hex digits>\"")]
    Layout,
}

/// Why a set of KEKs is not a keyring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyringError {
    /// No KEK was given.
    #[error("no KEK given: at least one KEK file is needed")]
    Empty,
    /// Two KEKs carry the same version.
    #[error("two KEKs carry version {0}")]
    DuplicateVersion(KekVersion),
}

/// Why a value could not be sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The operating system's random generator failed.
    #[error("the operating system's random generator failed")]
    RandomUnavailable,
    /// The keyring has no KEK of this version (for a check record of a named version).
    #[error("no KEK of version {0} in the keyring")]
    UnknownKekVersion(KekVersion),
    /// The AEAD refused the input. AES-256-GCM-SIV refuses only inputs over 2^36 octets
    /// (RFC 8452 §6), which this crate never builds; the variant exists so that the refusal
    /// is an error, not a panic.
    #[error("the AEAD refused the input")]
    CipherRefused,
}

/// Why sealed bytes did not open. Every failure is an error: no key is ever returned from
/// bytes that did not authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Not the length of a sealed value of this format.
    #[error("sealed value has {actual} octets, expected {expected}")]
    WrongLength {
        /// The length this format has.
        expected: usize,
        /// The length given.
        actual: usize,
    },
    /// The header names KEK version 0, which no KEK can have.
    #[error("sealed value's header names KEK version 0")]
    BadHeader,
    /// The first octet names a format this build does not read: e.g. format 1 (times in
    /// seconds), written before the store kept milliseconds.
    #[error("sealed value has format version {0}, this build reads {FORMAT}", FORMAT = crate::FORMAT)]
    UnsupportedFormat(u8),
    /// The value was sealed under a KEK version that the keyring does not hold: the
    /// operator has not given that KEK file (or has retired it while records sealed under
    /// it were still live).
    #[error("sealed under KEK version {0}, which no KEK file provides")]
    UnknownKekVersion(KekVersion),
    /// The tag did not verify under the KEK of this version: the sealed bytes or a bound
    /// field (format, kind, IMSI, key id, KEK version, creation, expiry) were changed, the
    /// bytes belong to another record, or the KEK file of this version holds a different key.
    #[error(
        "sealed value did not authenticate under KEK version {0} (edited, moved to another record, or wrong KEK)"
    )]
    NotAuthentic(KekVersion),
}

/// Why the start-up check failed: the KEKs given do not open data already stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// The store holds data sealed under a KEK version that no KEK file provides.
    #[error(
        "the store holds keys sealed under KEK version {0}, but no KEK file of that version was given"
    )]
    MissingKek(KekVersion),
    /// The KEK file of this version holds a different key from the one the store's data was
    /// sealed under.
    #[error(
        "the KEK file of version {0} does not match the store: its key differs from the one the stored keys were sealed under"
    )]
    WrongKek(KekVersion),
    /// A stored check record is damaged (wrong length or unknown format).
    #[error("a stored check record is damaged: {0}")]
    Damaged(OpenError),
}
