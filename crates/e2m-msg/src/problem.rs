//! RFC 9457 problem details in XML (`application/problem+xml`, RFC 9457 Appendix B), with a
//! machine-readable `cause` extension member.

use core::fmt;
use core::str::FromStr;

use crate::values::{ProblemDetail, ValueError};

/// Why a request failed: the machine-readable cause of a [`Problem`], each with its HTTP
/// status, its problem type URI and its title.
///
/// The outcomes follow the decisions in the design (anchored in TS 29.109 Zn and TS 29.535
/// AKMA, which distinguish the same situations). Unknown UE and UE-not-provisioned-for-this-EMSE
/// share [`ProblemCause::UeUnknown`] so that an EMSE cannot probe which UEs exist.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
#[non_exhaustive]
pub enum ProblemCause {
    /// 404: the session in the path does not exist (never did, expired, or was deleted).
    /// The EMSE should register again.
    UnknownSession,
    /// 403: the authenticated EMSE may not do this (wrong EMSE for the session, EMSE_Id not
    /// matching its certificate, or not allowed to use IMSIs).
    EmseNotAuthorized,
    /// 404: the UE is unknown, or not provisioned for this EMSE (one answer for both).
    UeUnknown,
    /// 404: no key with this key id is held for the UE (never pushed, or evicted or expired).
    /// The UE must re-authenticate (a new AKA run pushes a new key) before it can connect.
    KeyNotAvailable,
    /// 404: the subscription in the path does not exist.
    UnknownSubscription,
    /// 404: no such resource.
    NotFound,
    /// 405: the resource exists but not with this method (send `Allow`).
    MethodNotAllowed,
    /// 400: the request is malformed (bad XML, bad path or query, invalid value).
    Malformed,
    /// 413: the body is larger than [`MAX_DOCUMENT_LEN`](crate::MAX_DOCUMENT_LEN).
    PayloadTooLarge,
    /// 415: the body is not `application/xml`.
    UnsupportedMediaType,
    /// 429: too many requests; retry after the `Retry-After` delay.
    RateLimited,
    /// 503: the server cannot answer now; retry after the `Retry-After` delay.
    Unavailable,
    /// 500: the server failed; nothing the client can change.
    Internal,
}

impl ProblemCause {
    /// Every cause, in the order of the XSD enumeration.
    pub const ALL: [ProblemCause; 13] = [
        ProblemCause::UnknownSession,
        ProblemCause::EmseNotAuthorized,
        ProblemCause::UeUnknown,
        ProblemCause::KeyNotAvailable,
        ProblemCause::UnknownSubscription,
        ProblemCause::NotFound,
        ProblemCause::MethodNotAllowed,
        ProblemCause::Malformed,
        ProblemCause::PayloadTooLarge,
        ProblemCause::UnsupportedMediaType,
        ProblemCause::RateLimited,
        ProblemCause::Unavailable,
        ProblemCause::Internal,
    ];

    /// The token carried in the `cause` element.
    pub const fn as_str(self) -> &'static str {
        match self {
            ProblemCause::UnknownSession => "unknown-session",
            ProblemCause::EmseNotAuthorized => "emse-not-authorized",
            ProblemCause::UeUnknown => "ue-unknown",
            ProblemCause::KeyNotAvailable => "key-not-available",
            ProblemCause::UnknownSubscription => "unknown-subscription",
            ProblemCause::NotFound => "not-found",
            ProblemCause::MethodNotAllowed => "method-not-allowed",
            ProblemCause::Malformed => "malformed",
            ProblemCause::PayloadTooLarge => "payload-too-large",
            ProblemCause::UnsupportedMediaType => "unsupported-media-type",
            ProblemCause::RateLimited => "rate-limited",
            ProblemCause::Unavailable => "unavailable",
            ProblemCause::Internal => "internal",
        }
    }

    /// The HTTP status code that carries this cause (RFC 9110 §15).
    pub const fn status(self) -> u16 {
        match self {
            ProblemCause::UnknownSession
            | ProblemCause::UeUnknown
            | ProblemCause::KeyNotAvailable
            | ProblemCause::UnknownSubscription
            | ProblemCause::NotFound => 404,
            ProblemCause::EmseNotAuthorized => 403,
            ProblemCause::MethodNotAllowed => 405,
            ProblemCause::Malformed => 400,
            ProblemCause::PayloadTooLarge => 413,
            ProblemCause::UnsupportedMediaType => 415,
            ProblemCause::RateLimited => 429,
            ProblemCause::Unavailable => 503,
            ProblemCause::Internal => 500,
        }
    }

    /// The problem type URI (RFC 9457 §3.1.1): [`PROBLEM_TYPE_PREFIX`] followed by
    /// [`Self::as_str`].
    pub const fn type_uri(self) -> &'static str {
        match self {
            ProblemCause::UnknownSession => "urn:e2m:problem:unknown-session",
            ProblemCause::EmseNotAuthorized => "urn:e2m:problem:emse-not-authorized",
            ProblemCause::UeUnknown => "urn:e2m:problem:ue-unknown",
            ProblemCause::KeyNotAvailable => "urn:e2m:problem:key-not-available",
            ProblemCause::UnknownSubscription => "urn:e2m:problem:unknown-subscription",
            ProblemCause::NotFound => "urn:e2m:problem:not-found",
            ProblemCause::MethodNotAllowed => "urn:e2m:problem:method-not-allowed",
            ProblemCause::Malformed => "urn:e2m:problem:malformed",
            ProblemCause::PayloadTooLarge => "urn:e2m:problem:payload-too-large",
            ProblemCause::UnsupportedMediaType => "urn:e2m:problem:unsupported-media-type",
            ProblemCause::RateLimited => "urn:e2m:problem:rate-limited",
            ProblemCause::Unavailable => "urn:e2m:problem:unavailable",
            ProblemCause::Internal => "urn:e2m:problem:internal",
        }
    }

    /// The fixed, human-readable summary (RFC 9457 §3.1.2: the same for every occurrence).
    pub const fn title(self) -> &'static str {
        match self {
            ProblemCause::UnknownSession => "Unknown session",
            ProblemCause::EmseNotAuthorized => "EMSE not authorized",
            ProblemCause::UeUnknown => "UE unknown or not provisioned for this EMSE",
            ProblemCause::KeyNotAvailable => "Key not available: the UE must re-authenticate",
            ProblemCause::UnknownSubscription => "Unknown subscription",
            ProblemCause::NotFound => "Not found",
            ProblemCause::MethodNotAllowed => "Method not allowed",
            ProblemCause::Malformed => "Malformed request",
            ProblemCause::PayloadTooLarge => "Payload too large",
            ProblemCause::UnsupportedMediaType => "Unsupported media type",
            ProblemCause::RateLimited => "Rate limited",
            ProblemCause::Unavailable => "Service unavailable",
            ProblemCause::Internal => "Internal error",
        }
    }

    /// Whether the client may retry the same request later (429, 503).
    pub const fn is_retryable(self) -> bool {
        matches!(self, ProblemCause::RateLimited | ProblemCause::Unavailable)
    }

    /// Parses the `cause` token from octets.
    ///
    /// # Errors
    /// [`ValueError::UnknownCause`].
    pub fn parse_bytes(text: &[u8]) -> Result<Self, ValueError> {
        ProblemCause::ALL
            .into_iter()
            .find(|c| c.as_str().as_bytes() == text)
            .ok_or(ValueError::UnknownCause)
    }
}

/// The common prefix of every e2m problem type URI.
pub const PROBLEM_TYPE_PREFIX: &str = "urn:e2m:problem:";

impl fmt::Display for ProblemCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProblemCause {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_bytes(s.as_bytes())
    }
}

/// An RFC 9457 problem details document, the body of every error response
/// (`Content-Type: application/problem+xml`).
///
/// `type`, `title` and `status` follow from the cause and are always emitted; the decoder
/// requires `cause`, checks `type` and `status` against it when present, and ignores the
/// text of `title` and `instance` and any extension member it does not know (RFC 9457 §3.2:
/// "clients … MUST ignore any such extensions that they don't recognize").
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Problem {
    /// What went wrong, machine-readable.
    pub cause: ProblemCause,
    /// Human-readable text about this occurrence; never key material or anything the peer
    /// may not learn.
    pub detail: Option<ProblemDetail>,
}

impl Problem {
    /// A problem with no detail text.
    pub const fn new(cause: ProblemCause) -> Self {
        Problem {
            cause,
            detail: None,
        }
    }

    /// This problem with `detail` as its detail text.
    #[must_use]
    pub fn with_detail(mut self, detail: ProblemDetail) -> Self {
        self.detail = Some(detail);
        self
    }

    /// What went wrong. An inherent method, so that `problem.cause()` names this and not
    /// the deprecated `std::error::Error::cause` that `Problem` also has as an `Error`.
    pub const fn cause(&self) -> ProblemCause {
        self.cause
    }

    /// The HTTP status to send it with.
    pub const fn status(&self) -> u16 {
        self.cause.status()
    }
}

/// `<status> <cause>: <title>`, then `: <detail>` when there is one, so that
/// `outcome.result?` in an application reports something a person can act on.
impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.cause.status(),
            self.cause.as_str(),
            self.cause.title()
        )?;
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problem {}

impl From<ProblemCause> for Problem {
    fn from(cause: ProblemCause) -> Self {
        Problem::new(cause)
    }
}
