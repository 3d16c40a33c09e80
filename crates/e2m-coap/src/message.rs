//! One CoAP message and its wire form (RFC 7252 §3).

use alloc::string::String;
use alloc::vec::Vec;

use crate::{CoapError, Code, MessageType, OptionNumber, Options};

/// A token of 0 to 8 octets (RFC 7252 §5.3.1): matches a response to its request.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Token {
    bytes: [u8; 8],
    len: u8,
}

impl Token {
    /// The most octets in a token.
    pub const MAX_LEN: usize = 8;
    /// The empty token.
    pub const EMPTY: Token = Token {
        bytes: [0; 8],
        len: 0,
    };

    /// A token holding `bytes`.
    ///
    /// # Errors
    /// [`CoapError::TokenTooLong`] for more than 8 octets.
    pub fn new(bytes: &[u8]) -> Result<Token, CoapError> {
        if bytes.len() > Self::MAX_LEN {
            return Err(CoapError::TokenTooLong);
        }
        // One word built in a register and stored whole: a token assembled octet by octet
        // in memory stalls the next wide copy of the message header that holds it.
        let value = bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        let aligned = value.checked_shl(8 * (8 - bytes.len() as u32)).unwrap_or(0);
        Ok(Token {
            bytes: aligned.to_be_bytes(),
            len: bytes.len() as u8,
        })
    }

    /// The token octets.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl core::fmt::Debug for Token {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Token(")?;
        for b in self.as_bytes() {
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

/// One CoAP message (RFC 7252 §3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Message {
    /// The message type.
    pub mtype: MessageType,
    /// The method or response code.
    pub code: Code,
    /// The message ID (matches an ACK or RST to its message; RFC 7252 §4.4).
    pub message_id: u16,
    /// The token (matches a response to its request).
    pub token: Token,
    /// The options, in ascending number order.
    pub options: Options,
    /// The payload; empty means none.
    pub payload: Vec<u8>,
}

impl Message {
    /// A message with no options and no payload.
    pub fn new(mtype: MessageType, code: Code, message_id: u16, token: Token) -> Message {
        Message {
            mtype,
            code,
            message_id,
            token,
            options: Options::new(),
            payload: Vec::new(),
        }
    }

    /// The piggybacked response to this request (RFC 7252 §5.2.1): an Acknowledgement with
    /// the same message ID and token. (A response to a Non-confirmable request would be
    /// Non-confirmable with a new message ID; that is the transport's choice.)
    pub fn piggybacked_response(&self, code: Code, payload: Vec<u8>) -> Message {
        Message {
            mtype: MessageType::Acknowledgement,
            code,
            message_id: self.message_id,
            token: self.token,
            options: Options::new(),
            payload,
        }
    }

    /// Replaces the Uri-Path options with the segments of `path` split on `/` (empty
    /// segments, such as a leading `/`, are skipped).
    ///
    /// # Errors
    /// [`CoapError::OptionTooLong`] for a segment over 65804 octets.
    pub fn set_uri_path(&mut self, path: &str) -> Result<(), CoapError> {
        self.options.remove(OptionNumber::URI_PATH);
        for segment in path.split('/').filter(|s| !s.is_empty()) {
            self.options
                .push(OptionNumber::URI_PATH, segment.as_bytes())?;
        }
        Ok(())
    }

    /// The Uri-Path options joined with `/` (lossy for segments that are not UTF-8).
    pub fn uri_path(&self) -> String {
        let mut path = String::new();
        for (i, segment) in self.options.get_all(OptionNumber::URI_PATH).enumerate() {
            if i > 0 {
                path.push('/');
            }
            path.push_str(&String::from_utf8_lossy(segment));
        }
        path
    }

    /// The wire form.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + 8 + self.payload.len() + 16);
        self.encode_into(&mut out);
        out
    }

    /// Appends the wire form to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let token = self.token.as_bytes();
        out.push((1 << 6) | (self.mtype.to_bits() << 4) | token.len() as u8);
        out.push(self.code.0);
        out.extend_from_slice(&self.message_id.to_be_bytes());
        out.extend_from_slice(token);
        self.options.encode_with_payload(&self.payload, out);
    }

    /// Decodes one message.
    ///
    /// # Errors
    /// A [`CoapError`] naming the first problem; never panics.
    pub fn decode(octets: &[u8]) -> Result<Message, CoapError> {
        let (header, rest) = octets.split_at_checked(4).ok_or(CoapError::Truncated)?;
        if header[0] >> 6 != 1 {
            return Err(CoapError::Version);
        }
        let token_len = usize::from(header[0] & 0x0f);
        if token_len > Token::MAX_LEN {
            return Err(CoapError::TokenLength);
        }
        let code = Code(header[1]);
        let (token, rest) = rest
            .split_at_checked(token_len)
            .ok_or(CoapError::Truncated)?;
        if code.is_empty() && (token_len != 0 || !rest.is_empty()) {
            return Err(CoapError::EmptyNotEmpty);
        }
        let (options, payload) = Options::decode_with_payload(rest)?;
        Ok(Message {
            mtype: MessageType::from_bits(header[0] >> 4),
            code,
            message_id: u16::from_be_bytes([header[2], header[3]]),
            token: Token::new(token)?,
            options,
            payload: payload.to_vec(),
        })
    }
}
