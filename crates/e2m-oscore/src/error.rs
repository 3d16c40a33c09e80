//! Why a message could not be protected or verified.

use e2m_coap::CoapError;

/// Why a message could not be protected or verified, or a context derived.
///
/// `Copy`, and no variant carries message bytes or key material, so it is safe to log. The
/// peer learns only what RFC 8613 §8.2/§8.4 lets it learn (see [`Self::response_code`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OscoreError {
    /// The datagram is not a CoAP message (RFC 7252 §3); a server ignores it or answers
    /// with a Reset (RFC 7252 §4.2, §4.3).
    #[error("not a CoAP message: {0}")]
    Coap(CoapError),
    /// The message has no OSCORE option (RFC 8613 §2).
    #[error("not an OSCORE message")]
    NotOscore,
    /// More than one OSCORE option.
    #[error("repeated OSCORE option")]
    RepeatedOption,
    /// The OSCORE option value is malformed (RFC 8613 §6.1).
    #[error("malformed OSCORE option: {0}")]
    Option(OptionError),
    /// A request without a Partial IV or without a kid (RFC 8613 §6.1: both are mandatory
    /// in requests).
    #[error("OSCORE request lacks its Partial IV or kid")]
    MissingRequestFields,
    /// The kid, or kid context, names no context held here (RFC 8613 §8.2 step 2).
    #[error("OSCORE security context not found")]
    ContextNotFound,
    /// The Partial IV was seen before or is left of the replay window (RFC 8613 §7.4).
    #[error("OSCORE replay detected")]
    Replay,
    /// AEAD decryption failed: wrong key, wrong nonce or altered message (§8.2 step 6).
    #[error("OSCORE decryption failed")]
    DecryptionFailed,
    /// The decrypted plaintext is not a code, options and payload (RFC 8613 §5.3).
    #[error("OSCORE plaintext malformed: {0}")]
    Plaintext(CoapError),
    /// The sender sequence number reached its limit 2^40 − 1 (RFC 8613 §7.2.1): the context
    /// must not protect any more messages; derive a new one.
    #[error("OSCORE sender sequence number exhausted")]
    SequenceExhausted,
    /// Persistent sequence numbers: the next number is past the reservation that was
    /// confirmed durable (RFC 8613 Appendix B.1.1). Persist
    /// [`crate::SenderSequence::reservation_needed`] and confirm it first.
    #[error("OSCORE sender sequence number reservation must be persisted first")]
    ReservationNeeded,
    /// A Sender or Recipient ID longer than the algorithm allows (7 octets for
    /// AES-CCM-16-64-128, RFC 8613 §3.3), or Sender ID equal to Recipient ID.
    #[error("OSCORE sender/recipient ID invalid")]
    InvalidId,
    /// An empty Master Secret.
    #[error("OSCORE master secret is empty")]
    EmptyMasterSecret,
    /// A Proxy-Uri option: it must be decomposed before protection (RFC 8613 §4.1.3.3),
    /// which this crate leaves to the caller.
    #[error("Proxy-Uri must be decomposed before OSCORE protection")]
    ProxyUri,
    /// A request given where a response is needed, or the reverse.
    #[error("wrong kind of CoAP message for this operation")]
    WrongKind,
    /// Appendix B.1.2: the request was not accompanied by the Echo value this server sent.
    #[error("OSCORE Echo value does not match the challenge")]
    EchoMismatch,
    /// The plaintext is too long for AES-CCM-16-64-128 (2^16 octets or more; RFC 3610 §2
    /// with a 13-octet nonce), which no CoAP message over UDP reaches.
    #[error("OSCORE plaintext too long for AES-CCM-16-64-128")]
    MessageTooLong,
}

impl OscoreError {
    /// The CoAP code of the unprotected error response RFC 8613 §8.2 prescribes for a request
    /// that fails verification with this error: 4.02 Bad Option for a malformed OSCORE option,
    /// 4.01 Unauthorized for an unknown context or a replay, 4.00 Bad Request for a failed
    /// decryption or plaintext. `None` for errors that only a sender can have.
    pub fn response_code(self) -> Option<e2m_coap::Code> {
        use e2m_coap::Code;
        match self {
            OscoreError::Option(_) | OscoreError::RepeatedOption => Some(Code::BAD_OPTION),
            OscoreError::MissingRequestFields => Some(Code::BAD_REQUEST),
            OscoreError::ContextNotFound | OscoreError::Replay => Some(Code::UNAUTHORIZED),
            OscoreError::DecryptionFailed | OscoreError::Plaintext(_) => Some(Code::BAD_REQUEST),
            _ => None,
        }
    }

    /// The diagnostic payload RFC 8613 §8.2 suggests for that response, where it names one.
    pub fn diagnostic(self) -> &'static str {
        match self {
            OscoreError::ContextNotFound => "Security context not found",
            OscoreError::Replay => "Replay detected",
            OscoreError::DecryptionFailed | OscoreError::Plaintext(_) => "Decryption failed",
            _ => "",
        }
    }
}

/// Why an OSCORE option value is malformed (RFC 8613 §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OptionError {
    /// A reserved flag bit is set (bits 0–2 of the flag octet), or n is 6 or 7.
    #[error("reserved flag or Partial IV length")]
    Reserved,
    /// A field runs past the end of the value.
    #[error("truncated")]
    Truncated,
    /// Octets are left that no flag accounts for.
    #[error("trailing octets")]
    Trailing,
    /// A flag octet with every flag clear: the option must then be empty (§6.1).
    #[error("non-canonical empty flags")]
    NonCanonical,
    /// A Partial IV with a leading zero octet (§6.1: the minimal length is used).
    #[error("Partial IV not minimal")]
    PartialIvNotMinimal,
}
