//! Why text is not one of the vocabulary values.

/// Why text is not a valid value of its type. No variant carries any of the input (a
/// session id is a secret, and an error must be safe to log).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// A timestamp not in the form `YYYY-MM-DDThh:mm:ssZ` or `YYYY-MM-DDThh:mm:ss.fZ` (one
    /// to three fraction digits, the last not `0`), or not a real UTC time.
    #[error("timestamp must be YYYY-MM-DDThh:mm:ss[.fff]Z (UTC, canonical millisecond fraction)")]
    BadTimestamp,
    /// A timestamp before 1970-01-01T00:00:00Z or after 9999-12-31T23:59:59.999Z.
    #[error("timestamp out of range")]
    TimestampOutOfRange,
    /// A session id is exactly 22 characters of URL-safe base64 (RFC 4648 §5) in its one
    /// canonical spelling.
    #[error("session id must be 22 URL-safe base64 characters")]
    BadSessionId,
    /// A subscription id is a decimal number without leading zeros, below 2^64.
    #[error("subscription id must be a decimal number without leading zeros")]
    BadSubscriptionId,
    /// An event type this version does not define.
    #[error("unknown event type")]
    UnknownEventType,
}
