//! Why octets are not a CoAP message.

/// Why octets are not a CoAP message, or why a value cannot be put in one.
///
/// No variant carries input bytes, so the error can be logged safely.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CoapError {
    /// Shorter than the 4-octet header, or a token, extended field or option value runs past
    /// the end.
    #[error("CoAP message truncated")]
    Truncated,
    /// The version field is not 1 (RFC 7252 §3).
    #[error("CoAP version is not 1")]
    Version,
    /// Token length 9 to 15 is reserved (RFC 7252 §3).
    #[error("CoAP token length is reserved")]
    TokenLength,
    /// A token longer than 8 octets was given to [`crate::Token::new`].
    #[error("CoAP token longer than 8 octets")]
    TokenTooLong,
    /// Option delta or length nibble 15 outside the payload marker (RFC 7252 §3.1).
    #[error("CoAP option uses the reserved nibble 15")]
    ReservedNibble,
    /// The option numbers add up past 65535.
    #[error("CoAP option number past 65535")]
    OptionNumber,
    /// An option value longer than the 65804 octets the length field can express.
    #[error("CoAP option value too long")]
    OptionTooLong,
    /// A payload marker followed by no payload (RFC 7252 §3: a message format error).
    #[error("CoAP payload marker without payload")]
    EmptyPayload,
    /// An Empty message (code 0.00) with a token, options or payload (RFC 7252 §4.1).
    #[error("CoAP Empty message is not empty")]
    EmptyNotEmpty,
}
