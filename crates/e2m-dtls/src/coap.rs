//! A tiny CoAP (RFC 7252) message codec for the application exchange over DTLS between UE
//! and EMSE: CoAP over DTLS with TLS_PSK_WITH_AES_128_CCM_8 is the pairing the seed
//! names (6.x.2.3 step 1; RFC 7252 §9.1.3.1, and RFC 7925 §4.2 for the IoT profile).
//!
//! Only what the examples need: the fixed header, a token, options (with the extended
//! delta/length encodings of RFC 7252 §3.1) and a payload. Every malformed input is a
//! typed [`CoapError`].

/// Option number of Uri-Path (RFC 7252 §5.10).
pub const OPTION_URI_PATH: u16 = 11;

/// The message type (RFC 7252 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoapType {
    /// Confirmable.
    Confirmable,
    /// Non-confirmable.
    NonConfirmable,
    /// Acknowledgement.
    Acknowledgement,
    /// Reset.
    Reset,
}

/// Request methods and response codes as `class.detail` (RFC 7252 §12.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoapCode(pub u8);

impl CoapCode {
    /// 0.01 GET.
    pub const GET: CoapCode = CoapCode(0x01);
    /// 0.02 POST.
    pub const POST: CoapCode = CoapCode(0x02);
    /// 2.05 Content.
    pub const CONTENT: CoapCode = CoapCode(0x45);
    /// 4.04 Not Found.
    pub const NOT_FOUND: CoapCode = CoapCode(0x84);
    /// 4.05 Method Not Allowed.
    pub const METHOD_NOT_ALLOWED: CoapCode = CoapCode(0x85);

    /// Is this a request method (class 0, not the empty message)?
    pub fn is_request(self) -> bool {
        self.0 >> 5 == 0 && self.0 != 0
    }
}

impl core::fmt::Display for CoapCode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}.{:02}", self.0 >> 5, self.0 & 0x1f)
    }
}

/// One CoAP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoapMessage {
    /// Type.
    pub mtype: CoapType,
    /// Method or response code.
    pub code: CoapCode,
    /// Message ID (matches an ACK to its CON).
    pub message_id: u16,
    /// Token, 0 to 8 octets (matches a response to its request).
    pub token: Vec<u8>,
    /// Options in ascending number order: `(number, value)`.
    pub options: Vec<(u16, Vec<u8>)>,
    /// Payload (may be empty).
    pub payload: Vec<u8>,
}

/// Why octets are not a CoAP message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CoapError {
    /// Shorter than the 4-octet header, or an option or token runs past the end.
    #[error("CoAP message truncated")]
    Truncated,
    /// Version is not 1.
    #[error("CoAP version is not 1")]
    Version,
    /// Token length 9..15 is reserved.
    #[error("CoAP token length is reserved")]
    TokenLength,
    /// Option delta or length nibble 15 outside the payload marker.
    #[error("CoAP option uses a reserved nibble")]
    ReservedNibble,
    /// A payload marker followed by no payload (RFC 7252 §3: a format error).
    #[error("CoAP payload marker without payload")]
    EmptyPayload,
    /// The token given to the encoder is longer than 8 octets.
    #[error("CoAP token longer than 8 octets")]
    TokenTooLong,
    /// Option numbers exceed 65535.
    #[error("CoAP option number out of range")]
    OptionNumber,
}

fn nibble(value: usize) -> (u8, Vec<u8>) {
    match value {
        0..=12 => (value as u8, Vec::new()),
        13..=268 => (13, vec![(value - 13) as u8]),
        _ => (14, ((value - 269) as u16).to_be_bytes().to_vec()),
    }
}

impl CoapMessage {
    /// A confirmable GET for `path` (split on `/` into Uri-Path options).
    pub fn get(path: &str, message_id: u16, token: &[u8]) -> CoapMessage {
        CoapMessage {
            mtype: CoapType::Confirmable,
            code: CoapCode::GET,
            message_id,
            token: token.to_vec(),
            options: path
                .split('/')
                .filter(|s| !s.is_empty())
                .map(|s| (OPTION_URI_PATH, s.as_bytes().to_vec()))
                .collect(),
            payload: Vec::new(),
        }
    }

    /// The piggybacked response to this request (RFC 7252 §5.2.1): an ACK with the same
    /// message ID and token.
    pub fn response(&self, code: CoapCode, payload: &[u8]) -> CoapMessage {
        CoapMessage {
            mtype: CoapType::Acknowledgement,
            code,
            message_id: self.message_id,
            token: self.token.clone(),
            options: Vec::new(),
            payload: payload.to_vec(),
        }
    }

    /// The Uri-Path options joined with `/`, lossily decoded.
    pub fn path(&self) -> String {
        let parts: Vec<String> = self
            .options
            .iter()
            .filter(|(n, _)| *n == OPTION_URI_PATH)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect();
        parts.join("/")
    }

    /// Encodes the message.
    ///
    /// # Errors
    /// [`CoapError::TokenTooLong`].
    pub fn encode(&self) -> Result<Vec<u8>, CoapError> {
        if self.token.len() > 8 {
            return Err(CoapError::TokenTooLong);
        }
        let t = match self.mtype {
            CoapType::Confirmable => 0,
            CoapType::NonConfirmable => 1,
            CoapType::Acknowledgement => 2,
            CoapType::Reset => 3,
        };
        let mut out = vec![(1 << 6) | (t << 4) | self.token.len() as u8, self.code.0];
        out.extend_from_slice(&self.message_id.to_be_bytes());
        out.extend_from_slice(&self.token);
        let mut options = self.options.clone();
        options.sort_by_key(|(n, _)| *n);
        let mut last = 0u16;
        for (number, value) in &options {
            let (d, dx) = nibble(usize::from(number - last));
            let (l, lx) = nibble(value.len());
            out.push((d << 4) | l);
            out.extend(dx);
            out.extend(lx);
            out.extend_from_slice(value);
            last = *number;
        }
        if !self.payload.is_empty() {
            out.push(0xff);
            out.extend_from_slice(&self.payload);
        }
        Ok(out)
    }

    /// Decodes a message.
    ///
    /// # Errors
    /// A [`CoapError`] naming the first problem; never panics.
    pub fn decode(bytes: &[u8]) -> Result<CoapMessage, CoapError> {
        let header = bytes.get(..4).ok_or(CoapError::Truncated)?;
        if header[0] >> 6 != 1 {
            return Err(CoapError::Version);
        }
        let mtype = match (header[0] >> 4) & 3 {
            0 => CoapType::Confirmable,
            1 => CoapType::NonConfirmable,
            2 => CoapType::Acknowledgement,
            _ => CoapType::Reset,
        };
        let tkl = usize::from(header[0] & 0x0f);
        if tkl > 8 {
            return Err(CoapError::TokenLength);
        }
        let code = CoapCode(header[1]);
        let message_id = u16::from_be_bytes([header[2], header[3]]);
        let token = bytes.get(4..4 + tkl).ok_or(CoapError::Truncated)?.to_vec();
        let mut rest = &bytes[4 + tkl..];
        let mut options = Vec::new();
        let mut number: u32 = 0;
        let mut payload = Vec::new();
        while let Some((&first, tail)) = rest.split_first() {
            if first == 0xff {
                if tail.is_empty() {
                    return Err(CoapError::EmptyPayload);
                }
                payload = tail.to_vec();
                break;
            }
            rest = tail;
            let delta = read_extended(first >> 4, &mut rest)?;
            let len = read_extended(first & 0x0f, &mut rest)?;
            number += delta as u32;
            let number16 = u16::try_from(number).map_err(|_| CoapError::OptionNumber)?;
            let value = rest.get(..len).ok_or(CoapError::Truncated)?;
            options.push((number16, value.to_vec()));
            rest = &rest[len..];
        }
        Ok(CoapMessage {
            mtype,
            code,
            message_id,
            token,
            options,
            payload,
        })
    }
}

fn read_extended(n: u8, rest: &mut &[u8]) -> Result<usize, CoapError> {
    match n {
        0..=12 => Ok(usize::from(n)),
        13 => {
            let (&b, tail) = rest.split_first().ok_or(CoapError::Truncated)?;
            *rest = tail;
            Ok(usize::from(b) + 13)
        }
        14 => {
            let b = rest.get(..2).ok_or(CoapError::Truncated)?;
            let v = usize::from(u16::from_be_bytes([b[0], b[1]])) + 269;
            *rest = &rest[2..];
            Ok(v)
        }
        _ => Err(CoapError::ReservedNibble),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_response() {
        let req = CoapMessage::get("/sensors/temperature", 0x1234, &[1, 2, 3, 4]);
        let bytes = req.encode().unwrap_or_default();
        assert_eq!(&bytes[..4], &[0x44, 0x01, 0x12, 0x34]);
        let back = CoapMessage::decode(&bytes);
        assert_eq!(back.as_ref(), Ok(&req));
        assert_eq!(req.path(), "sensors/temperature");
        let resp = req.response(CoapCode::CONTENT, b"21.5 C");
        let back = CoapMessage::decode(&resp.encode().unwrap_or_default());
        assert_eq!(back.as_ref().map(|m| m.code), Ok(CoapCode::CONTENT));
        assert_eq!(CoapCode::CONTENT.to_string(), "2.05");
    }

    #[test]
    fn long_options_use_extended_lengths() {
        let mut req = CoapMessage::get("", 1, &[]);
        req.options.push((OPTION_URI_PATH, vec![b'x'; 20]));
        req.options.push((300, vec![b'y'; 300]));
        let bytes = req.encode().unwrap_or_default();
        assert_eq!(CoapMessage::decode(&bytes), Ok(req));
    }

    #[test]
    fn malformed_input_is_typed() {
        assert_eq!(CoapMessage::decode(&[0x40, 1]), Err(CoapError::Truncated));
        assert_eq!(
            CoapMessage::decode(&[0x80, 1, 0, 0]),
            Err(CoapError::Version)
        );
        assert_eq!(
            CoapMessage::decode(&[0x49, 1, 0, 0]),
            Err(CoapError::TokenLength)
        );
        assert_eq!(
            CoapMessage::decode(&[0x40, 1, 0, 0, 0xff]),
            Err(CoapError::EmptyPayload)
        );
        assert_eq!(
            CoapMessage::decode(&[0x40, 1, 0, 0, 0xf0]),
            Err(CoapError::ReservedNibble)
        );
        assert_eq!(
            CoapMessage::decode(&[0x40, 1, 0, 0, 0xb5, b'a']),
            Err(CoapError::Truncated)
        );
        for len in 0..64 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 + 0x40) as u8).collect();
            let _ = CoapMessage::decode(&junk);
        }
    }
}
