//! The crate's two small error types.

/// Why a derivation was refused. No variant carries key material.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KdfError {
    /// Parameter `index` (P0 is 0) is longer than the 65535 octets that its two-octet
    /// length field Li can express (TS 33.220 B.2.1.1).
    #[error("KDF parameter P{index} is {len} octets; at most 65535 fit its length field")]
    ParameterTooLong {
        /// Position of the parameter in the input list (P0 = 0).
        index: usize,
        /// Its length in octets.
        len: usize,
    },
    /// The whole input string S is longer than a [`KdfInput`](crate::KdfInput) holds.
    #[error("KDF input string S is {len} octets; a KdfInput holds at most {max}")]
    InputTooLong {
        /// Length of S in octets.
        len: usize,
        /// The most a `KdfInput` holds ([`KdfInput::MAX_LEN`](crate::KdfInput::MAX_LEN)).
        max: usize,
    },
    /// A text parameter is not in Unicode Normalization Form KC, which TS 33.220 B.2.1.2
    /// requires of character strings (without the `nfkc` feature only ASCII, which NFKC
    /// always leaves unchanged, is accepted).
    #[error("text parameter is not in NFKC (TS 33.220 B.2.1.2)")]
    TextNotNormalized,
    /// A text parameter that the derivation requires to be non-empty is empty.
    #[error("text parameter is empty")]
    EmptyText,
    /// The one-octet FC value 0xFF is the escape to the two-octet form, not a function code.
    #[error("FC 0xFF is the two-octet escape, not a one-octet function code")]
    ReservedFc,
    /// A RES or XRES is not 4 to 16 octets long (TS 33.102 §6.3.2; TS 33.501 A.4 gives
    /// L2 between 0x00 0x04 and 0x00 0x10).
    #[error("RES is {len} octets; TS 33.501 A.4 takes 4 to 16")]
    ResLength {
        /// Octets supplied.
        len: usize,
    },
    /// An [`E2mProfile`](crate::E2mProfile) uses one FC for two different derivations.
    #[error("profile assigns one FC to two derivations")]
    ProfileFcCollision,
}

/// Why bytes or hex could not become a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The input has the wrong length for this key kind.
    #[error("key must be {expected} octets, got {actual}")]
    WrongLength {
        /// Octets this key kind holds.
        expected: usize,
        /// Octets supplied.
        actual: usize,
    },
    /// The hex text has an odd length or a character outside `0-9a-fA-F`.
    #[error("key hex is not valid hexadecimal")]
    InvalidHex,
}
