//! The Diameter header (RFC 6733 §3) and stream framing.

use core::fmt;
use core::ops::BitOr;

use crate::codes::{ApplicationId, CommandCode};
use crate::error::{DecodeError, FrameError};

/// Length of the Diameter header in octets.
pub const HEADER_LEN: usize = 20;
/// The Diameter version this crate speaks (RFC 6733 §3: "MUST be set to 1").
pub const VERSION: u8 = 1;
/// The largest value of the 24-bit Message Length and AVP Length fields.
pub const MAX_LENGTH: usize = 0x00ff_ffff;

/// The Command Flags field (RFC 6733 §3): R, P, E, T and four reserved bits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CommandFlags(u8);

impl CommandFlags {
    /// No flag set (an answer, not proxiable).
    pub const NONE: Self = Self(0);
    /// R: the message is a request.
    pub const REQUEST: Self = Self(0x80);
    /// P: the message may be proxied, relayed or redirected.
    pub const PROXIABLE: Self = Self(0x40);
    /// E: the answer carries a protocol error (§7.2); never set in a request.
    pub const ERROR: Self = Self(0x20);
    /// T: a request possibly retransmitted after a link failover (§3); never set in an answer.
    pub const RETRANSMITTED: Self = Self(0x10);
    /// The reserved bits: sent as zero, ignored by the receiver (§3).
    pub const RESERVED: Self = Self(0x0f);

    /// Flags from the octet on the wire.
    pub const fn from_bits(bits: u8) -> Self {
        Self(bits)
    }

    /// The octet on the wire.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// These flags with `other`'s bits set too.
    pub const fn with(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// These flags with `other`'s bits cleared.
    pub const fn without(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }

    /// R is set.
    pub const fn is_request(self) -> bool {
        self.contains(Self::REQUEST)
    }

    /// P is set.
    pub const fn is_proxiable(self) -> bool {
        self.contains(Self::PROXIABLE)
    }

    /// E is set.
    pub const fn is_error(self) -> bool {
        self.contains(Self::ERROR)
    }

    /// T is set.
    pub const fn is_retransmitted(self) -> bool {
        self.contains(Self::RETRANSMITTED)
    }
}

impl BitOr for CommandFlags {
    type Output = Self;

    fn bitor(self, rhs: Self) -> Self {
        self.with(rhs)
    }
}

impl fmt::Debug for CommandFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (Self::REQUEST, 'R'),
            (Self::PROXIABLE, 'P'),
            (Self::ERROR, 'E'),
            (Self::RETRANSMITTED, 'T'),
        ];
        write!(f, "CommandFlags(")?;
        for (flag, name) in names {
            if self.contains(flag) {
                write!(f, "{name}")?;
            }
        }
        if self.0 & Self::RESERVED.0 != 0 {
            write!(f, "+reserved {:#x}", self.0 & Self::RESERVED.0)?;
        }
        write!(f, ")")
    }
}

/// The 20-octet Diameter header (RFC 6733 §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Header {
    /// Version (1).
    pub version: u8,
    /// Message Length: the whole message, header and padded AVPs (24 bits).
    pub length: u32,
    /// Command Flags.
    pub flags: CommandFlags,
    /// Command Code (24 bits).
    pub command: CommandCode,
    /// Application-ID.
    pub application: ApplicationId,
    /// Hop-by-Hop Identifier: matches an answer to its request on one connection.
    pub hop_by_hop: u32,
    /// End-to-End Identifier: with Origin-Host, detects duplicate requests.
    pub end_to_end: u32,
}

impl Header {
    /// Reads the header fields from the first 20 octets; checks nothing else.
    ///
    /// # Errors
    ///
    /// [`DecodeError::Truncated`] if fewer than 20 octets are given.
    pub fn read(octets: &[u8]) -> Result<Self, DecodeError> {
        let h: &[u8; HEADER_LEN] = octets
            .get(..HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or(DecodeError::Truncated)?;
        Ok(Self {
            version: h[0],
            length: u32::from_be_bytes([0, h[1], h[2], h[3]]),
            flags: CommandFlags(h[4]),
            command: CommandCode(u32::from_be_bytes([0, h[5], h[6], h[7]])),
            application: ApplicationId(u32::from_be_bytes([h[8], h[9], h[10], h[11]])),
            hop_by_hop: u32::from_be_bytes([h[12], h[13], h[14], h[15]]),
            end_to_end: u32::from_be_bytes([h[16], h[17], h[18], h[19]]),
        })
    }

    /// The header as 20 octets. The length and command code keep their low 24 bits.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        let length = self.length.to_be_bytes();
        let command = self.command.0.to_be_bytes();
        h[0] = self.version;
        h[1..4].copy_from_slice(&length[1..]);
        h[4] = self.flags.0;
        h[5..8].copy_from_slice(&command[1..]);
        h[8..12].copy_from_slice(&self.application.0.to_be_bytes());
        h[12..16].copy_from_slice(&self.hop_by_hop.to_be_bytes());
        h[16..20].copy_from_slice(&self.end_to_end.to_be_bytes());
        h
    }
}

/// The length of the message that starts a stream's octets, for cutting a TCP stream into
/// messages: `Ok(None)` until the 4 octets that hold the length have arrived.
///
/// The version is not checked here, so that a message of another version can still be read
/// whole and answered with DIAMETER_UNSUPPORTED_VERSION.
///
/// # Errors
///
/// The stream cannot be framed and its connection must be closed: a Message Length below the
/// header ([`FrameError::LengthTooShort`]) or above `max_len` ([`FrameError::TooLong`]).
pub fn frame_len(octets: &[u8], max_len: usize) -> Result<Option<usize>, FrameError> {
    let Some(prefix) = octets.get(..4) else {
        return Ok(None);
    };
    let length = u32::from_be_bytes([0, prefix[1], prefix[2], prefix[3]]);
    let len = length as usize;
    if len < HEADER_LEN {
        return Err(FrameError::LengthTooShort(length));
    }
    if len > max_len {
        return Err(FrameError::TooLong {
            length,
            max: max_len,
        });
    }
    Ok(Some(len))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn header_fields_round_trip() {
        // A DWR as RFC 6733 §3 lays it out: version 1, length 20, R set, command 280.
        let octets = hex::decode("010000148000011800000000000000010000000a").unwrap();
        let h = Header::read(&octets).unwrap();
        assert_eq!(h.version, 1);
        assert_eq!(h.length, 20);
        assert!(h.flags.is_request());
        assert_eq!(h.command, CommandCode::DEVICE_WATCHDOG);
        assert_eq!(h.hop_by_hop, 1);
        assert_eq!(h.end_to_end, 10);
        assert_eq!(h.to_bytes().as_slice(), octets.as_slice());
    }

    #[test]
    fn framing() {
        assert_eq!(frame_len(&[1, 0, 0], 100), Ok(None));
        assert_eq!(frame_len(&[1, 0, 0, 20], 100), Ok(Some(20)));
        assert_eq!(
            frame_len(&[1, 0, 0, 19], 100),
            Err(FrameError::LengthTooShort(19))
        );
        assert_eq!(
            frame_len(&[1, 0, 0, 0], 100),
            Err(FrameError::LengthTooShort(0))
        );
        assert_eq!(
            frame_len(&[1, 0xff, 0xff, 0xff], 100),
            Err(FrameError::TooLong {
                length: 0xff_ffff,
                max: 100
            })
        );
    }
}
