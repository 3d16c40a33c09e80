#![doc = include_str!("../README.md")]

mod decode;
mod encode;
mod error;
mod lex;
mod message;
mod problem;
pub mod rest;
mod values;

pub use error::DecodeError;
pub use message::{
    Deregistration, IntermediateKeyPush, KeyRequest, KeyResponse, Notification, Registration,
    RegistrationResult, Subscription, SubscriptionResult,
};
pub use problem::{PROBLEM_TYPE_PREFIX, Problem, ProblemCause};
pub use rest::{Method, Operation, QueryError, Route, RouteError};
pub use values::{CallbackUri, KeyIdSource, NotificationId, ProblemDetail, ValueError};

// What the messages' fields are made of, so that a user of this crate alone can name every
// type its signatures expose (the hkdf `pub use hmac` / rustls `pki_types` pattern).
pub use e2m_kdf::{E2mIntKey, E2mKey};
pub use e2m_keyid::{AppIdentity, EmseId, Imsi, KeyId, PskIdentity};
pub use e2m_types::{EventSet, EventType, SessionId, SubscriptionId, Timestamp, UeRef};
pub use {e2m_kdf, e2m_keyid, e2m_types};

/// Re-exported so that callers can name the buffer type [`XmlMessage::encode`] returns.
pub use zeroize::Zeroizing;

/// The XML namespace of every e2m message (not of problem details), versioned: an
/// incompatible change gets a new namespace, so a peer never reads a newer message as an
/// older one. Provisional (not allocated by 3GPP; a normative phase would assign one).
pub const NAMESPACE: &str = "urn:e2m:xml:ns:emse-emks:1";

/// The namespace of `application/problem+xml` (RFC 9457 Appendix B); the `cause` extension
/// member is an element of this namespace too, as Appendix B's schema has it.
pub const PROBLEM_NAMESPACE: &str = "urn:ietf:rfc:7807";

/// The largest document the decoder reads (64 KiB). The largest valid e2m message is a few
/// kilobytes; anything bigger is refused before parsing. A server should refuse a larger
/// body with 413 before reading it whole.
pub const MAX_DOCUMENT_LEN: usize = 64 * 1024;

/// The most attributes one element may carry, namespace declarations included. e2m
/// messages need one (the namespace declaration on the root) and problem extension members
/// a few; the decoder refuses the next one with [`DecodeError::TooManyAttributes`] before
/// reading further, which keeps the work per start tag bounded.
pub const MAX_ATTRIBUTES: usize = 16;

/// The XSD of every e2m message ([`NAMESPACE`]), as shipped in `schema/e2m-msg-v1.xsd`.
pub const XSD: &str = include_str!("../schema/e2m-msg-v1.xsd");

/// The XSD of e2m problem details ([`PROBLEM_NAMESPACE`]), as shipped in
/// `schema/e2m-problem-v1.xsd`.
pub const PROBLEM_XSD: &str = include_str!("../schema/e2m-problem-v1.xsd");

mod sealed {
    pub trait Sealed {}
}

/// An XML message of the binding: encoding to and strict decoding from one document.
///
/// Implemented by [`Registration`], [`RegistrationResult`], [`KeyResponse`],
/// [`Subscription`], [`SubscriptionResult`], [`Notification`], [`IntermediateKeyPush`] and
/// [`Problem`]. ([`KeyRequest`] and [`Deregistration`] have no body: they live in the
/// request target, see [`rest`].)
pub trait XmlMessage: Sized + sealed::Sealed {
    /// The local name of the root element.
    const ROOT: &'static str;
    /// The `Content-Type` to send it with.
    const MEDIA_TYPE: &'static str;

    /// An upper bound of the encoded length, so that a buffer can be reserved once (a
    /// `String` that grows leaves copies of key material in freed memory).
    fn max_encoded_len(&self) -> usize;

    /// Appends the document to `out`, after reserving [`Self::max_encoded_len`]. To keep key
    /// material out of freed memory, pass an empty buffer or one with that capacity spare.
    fn encode_into(&self, out: &mut String);

    /// The document, UTF-8, in a buffer that is zeroized when dropped.
    fn encode(&self) -> Zeroizing<String> {
        let mut out = Zeroizing::new(String::with_capacity(self.max_encoded_len()));
        self.encode_into(&mut out);
        out
    }

    /// Strictly decodes one document (see the crate docs for the rules).
    ///
    /// # Errors
    /// A [`DecodeError`] naming the first rule the document breaks; never panics.
    fn decode(document: &[u8]) -> Result<Self, DecodeError>;
}
