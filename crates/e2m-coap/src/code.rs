//! The message type and the code field (RFC 7252 §3, §12.1).

/// The message type, T in the header (RFC 7252 §3, §4.2–4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// Confirmable (0): the peer acknowledges it.
    Confirmable,
    /// Non-confirmable (1).
    NonConfirmable,
    /// Acknowledgement (2).
    Acknowledgement,
    /// Reset (3).
    Reset,
}

impl MessageType {
    /// The two-bit wire value.
    pub const fn to_bits(self) -> u8 {
        match self {
            MessageType::Confirmable => 0,
            MessageType::NonConfirmable => 1,
            MessageType::Acknowledgement => 2,
            MessageType::Reset => 3,
        }
    }

    /// The type for a two-bit wire value (only the low two bits are read).
    pub const fn from_bits(bits: u8) -> MessageType {
        match bits & 3 {
            0 => MessageType::Confirmable,
            1 => MessageType::NonConfirmable,
            2 => MessageType::Acknowledgement,
            _ => MessageType::Reset,
        }
    }
}

/// A request method or response code, `class.detail` in one octet (RFC 7252 §3, §12.1).
///
/// Open: any octet is a code; the named constants are the registered ones e2m uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Code(pub u8);

impl Code {
    /// 0.00 Empty message (RFC 7252 §4.1).
    pub const EMPTY: Code = Code::new(0, 0);
    /// 0.01 GET.
    pub const GET: Code = Code::new(0, 1);
    /// 0.02 POST.
    pub const POST: Code = Code::new(0, 2);
    /// 0.03 PUT.
    pub const PUT: Code = Code::new(0, 3);
    /// 0.04 DELETE.
    pub const DELETE: Code = Code::new(0, 4);
    /// 0.05 FETCH (RFC 8132).
    pub const FETCH: Code = Code::new(0, 5);
    /// 2.01 Created.
    pub const CREATED: Code = Code::new(2, 1);
    /// 2.02 Deleted.
    pub const DELETED: Code = Code::new(2, 2);
    /// 2.03 Valid.
    pub const VALID: Code = Code::new(2, 3);
    /// 2.04 Changed.
    pub const CHANGED: Code = Code::new(2, 4);
    /// 2.05 Content.
    pub const CONTENT: Code = Code::new(2, 5);
    /// 4.00 Bad Request.
    pub const BAD_REQUEST: Code = Code::new(4, 0);
    /// 4.01 Unauthorized.
    pub const UNAUTHORIZED: Code = Code::new(4, 1);
    /// 4.02 Bad Option.
    pub const BAD_OPTION: Code = Code::new(4, 2);
    /// 4.03 Forbidden.
    pub const FORBIDDEN: Code = Code::new(4, 3);
    /// 4.04 Not Found.
    pub const NOT_FOUND: Code = Code::new(4, 4);
    /// 4.05 Method Not Allowed.
    pub const METHOD_NOT_ALLOWED: Code = Code::new(4, 5);
    /// 4.13 Request Entity Too Large.
    pub const REQUEST_ENTITY_TOO_LARGE: Code = Code::new(4, 13);
    /// 5.00 Internal Server Error.
    pub const INTERNAL_SERVER_ERROR: Code = Code::new(5, 0);
    /// 5.03 Service Unavailable.
    pub const SERVICE_UNAVAILABLE: Code = Code::new(5, 3);

    /// The code `class.detail` (class 0–7, detail 0–31; higher bits are masked off).
    pub const fn new(class: u8, detail: u8) -> Code {
        Code(((class & 0x07) << 5) | (detail & 0x1f))
    }

    /// The class, 0 to 7.
    pub const fn class(self) -> u8 {
        self.0 >> 5
    }

    /// The detail, 0 to 31.
    pub const fn detail(self) -> u8 {
        self.0 & 0x1f
    }

    /// 0.00, the Empty message.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// A request method: class 0 and not Empty.
    pub const fn is_request(self) -> bool {
        self.class() == 0 && self.0 != 0
    }

    /// A response code: class 2, 4 or 5.
    pub const fn is_response(self) -> bool {
        matches!(self.class(), 2 | 4 | 5)
    }
}

impl core::fmt::Display for Code {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}.{:02}", self.class(), self.detail())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn code_parts_and_display() {
        assert_eq!(Code::CONTENT.0, 0x45);
        assert_eq!(Code::UNAUTHORIZED.0, 0x81);
        assert_eq!(Code::REQUEST_ENTITY_TOO_LARGE.to_string(), "4.13");
        assert!(Code::GET.is_request() && !Code::EMPTY.is_request());
        assert!(Code::NOT_FOUND.is_response() && !Code::new(3, 1).is_response());
        for bits in 0..4 {
            assert_eq!(MessageType::from_bits(bits).to_bits(), bits);
        }
    }
}
