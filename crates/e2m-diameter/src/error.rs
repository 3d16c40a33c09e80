//! Why octets are not a Diameter message, an AVP or a value; why a message cannot be written.
//!
//! No error carries input octets, so every one can be logged safely.

use crate::avp::AvpFlags;
use crate::codes::AvpCode;

/// Why octets are not a Diameter message (RFC 6733 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Fewer octets than the 20-octet header.
    #[error("Diameter message shorter than its 20-octet header")]
    Truncated,
    /// The version field is not 1 (answered with DIAMETER_UNSUPPORTED_VERSION).
    #[error("Diameter version {0} is not 1")]
    UnsupportedVersion(u8),
    /// The Message Length field is below 20.
    #[error("Diameter message length {0} is below the header length")]
    LengthTooShort(u32),
    /// The Message Length field is not a multiple of 4 (§3: it always is).
    #[error("Diameter message length {0} is not a multiple of 4")]
    LengthNotAligned(u32),
    /// The Message Length field does not match the octets given.
    #[error("Diameter message length {header} does not match the {octets} octets given")]
    LengthMismatch {
        /// The Message Length field.
        header: u32,
        /// The octets given.
        octets: usize,
    },
}

/// Why a stream cannot be cut into messages: the connection must be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The Message Length field is below the 20-octet header: the stream cannot be framed.
    #[error("Diameter message length {0} is below the header length")]
    LengthTooShort(u32),
    /// The Message Length field is above the configured limit.
    #[error("Diameter message length {length} is above the limit of {max}")]
    TooLong {
        /// The Message Length field.
        length: u32,
        /// The limit.
        max: usize,
    },
}

/// What is wrong with an AVP's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AvpErrorKind {
    /// Fewer octets left than an AVP header (8, or 12 with the V bit).
    Truncated,
    /// The AVP Length field is below the header length (8, or 12 with the V bit).
    LengthTooShort,
    /// The AVP Length field runs past the end of the message or of the enclosing Grouped AVP.
    Overrun,
}

/// An AVP whose header cannot be read; what was read of it is kept so that a Failed-AVP can
/// name it (RFC 6733 §7.1.5, DIAMETER_INVALID_AVP_LENGTH).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed AVP (code {code:?}) at offset {offset}: {kind:?}")]
pub struct AvpError {
    /// What is wrong.
    pub kind: AvpErrorKind,
    /// Offset of the AVP from the start of the message (or of the octets iterated).
    pub offset: usize,
    /// The AVP code (0 where fewer than 4 octets were left).
    pub code: AvpCode,
    /// The AVP flags (empty where fewer than 5 octets were left).
    pub flags: AvpFlags,
    /// The vendor id, where the V bit is set and the field could be read.
    pub vendor_id: Option<u32>,
    /// The AVP Length field (0 where it could not be read).
    pub length: u32,
}

/// Why an AVP's data is not a value of its type (RFC 6733 §4.2, §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValueError {
    /// The data length does not fit the type (answered with DIAMETER_INVALID_AVP_LENGTH).
    #[error("AVP data of {actual} octets does not fit its type")]
    Length {
        /// Octets present.
        actual: usize,
    },
    /// Not valid UTF-8 (RFC 3629).
    #[error("AVP data is not valid UTF-8")]
    Utf8,
    /// Not a DiameterIdentity (an ASCII FQDN or realm).
    #[error("AVP data is not a DiameterIdentity")]
    Identity,
    /// Not a DiameterURI (RFC 6733 §4.3.1).
    #[error("AVP data is not a DiameterURI")]
    Uri,
    /// An Address whose length does not fit its address family.
    #[error("AVP data is not an Address")]
    Address,
    /// A Time outside the range the NTP era rule can express.
    #[error("time outside 1968-01-20..2104-02-26")]
    TimeRange,
    /// An Enumerated value the dictionary does not list.
    #[error("Enumerated value {0} is not defined")]
    Enumerated(i32),
}

/// Why a message cannot be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// An AVP longer than the 24-bit AVP Length field can express.
    #[error("AVP longer than 16 MiB")]
    AvpTooLong,
    /// A message longer than the 24-bit Message Length field can express.
    #[error("Diameter message longer than 16 MiB")]
    MessageTooLong,
    /// A value that cannot be written in its format (e.g. a time outside the NTP eras).
    #[error("value cannot be encoded: {0}")]
    Value(ValueError),
}
