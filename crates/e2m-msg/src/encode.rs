//! Encoding: hand-written, so that the output is exactly the documented form (declaration,
//! default namespace on the root, one child per line, two-space indent) and so that key
//! material goes straight from the key into a buffer reserved once, with no intermediate copy.

use e2m_keyid::KeyId;

use crate::message::{
    IntermediateKeyPush, KeyResponse, Notification, Registration, RegistrationResult, Subscription,
    SubscriptionResult,
};
use crate::problem::Problem;
use crate::rest::{MEDIA_TYPE_PROBLEM_XML, MEDIA_TYPE_XML};
use crate::values::NotificationId;
use core::fmt::Write as _;

use e2m_types::{SessionId, SubscriptionId, Timestamp, UeRef};

use crate::values::KeyIdSource;
use crate::{NAMESPACE, PROBLEM_NAMESPACE, XmlMessage, sealed};

const DECLARATION: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
/// Declaration, root start and end tags with the namespace, newlines: a generous bound of
/// everything but the children.
const FRAME: usize = DECLARATION.len() + 2 * 32 + NAMESPACE.len() + 16;
/// A child line's markup: indent, start and end tags of a name up to 24 characters, newline.
const CHILD: usize = 2 + 2 * 24 + 5 + 1;
/// Escaping turns one octet into at most five (`&amp;`).
const ESCAPE: usize = 5;

fn open(out: &mut String, root: &str, namespace: &str) {
    out.push_str(DECLARATION);
    out.push('<');
    out.push_str(root);
    out.push_str(" xmlns=\"");
    out.push_str(namespace);
    out.push_str("\">\n");
}

fn close(out: &mut String, root: &str) {
    out.push_str("</");
    out.push_str(root);
    out.push_str(">\n");
}

fn start_child(out: &mut String, name: &str) {
    out.push_str("  <");
    out.push_str(name);
    out.push('>');
}

fn end_child(out: &mut String, name: &str) {
    out.push_str("</");
    out.push_str(name);
    out.push_str(">\n");
}

/// Escapes the three characters that matter in element content (`&`, `<`, and `>` so that
/// `]]>` can never appear).
fn push_escaped(out: &mut String, text: &str) {
    let mut rest = text;
    while let Some(i) = rest.find(['&', '<', '>']) {
        out.push_str(&rest[..i]);
        out.push_str(match rest.as_bytes()[i] {
            b'&' => "&amp;",
            b'<' => "&lt;",
            _ => "&gt;",
        });
        rest = &rest[i + 1..];
    }
    out.push_str(rest);
}

fn text(out: &mut String, name: &str, value: &str) {
    start_child(out, name);
    push_escaped(out, value);
    end_child(out, name);
}

/// A value that is known to need no escaping (ids, tokens, digits, hex).
fn plain(out: &mut String, name: &str, value: &str) {
    start_child(out, name);
    out.push_str(value);
    end_child(out, name);
}

fn timestamp(out: &mut String, name: &str, t: Timestamp) {
    start_child(out, name);
    out.push_str(t.to_text().as_str());
    end_child(out, name);
}

/// The session id's one wire form (`e2m_types::SessionId`); the temporary text is wiped.
fn session_id(out: &mut String, name: &str, id: &SessionId) {
    plain(out, name, &id.to_text());
}

fn subscription_id(out: &mut String, name: &str, id: SubscriptionId) {
    start_child(out, name);
    // Writing into a String cannot fail.
    let _ = write!(out, "{id}");
    end_child(out, name);
}

fn key_id(out: &mut String, name: &str, id: KeyId) {
    start_child(out, name);
    push_hex(out, &id.to_be_bytes());
    end_child(out, name);
}

/// Lowercase hex, octet by octet into the reserved buffer (no temporary string).
fn push_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
}

fn ue(out: &mut String, ue: &UeRef) {
    match ue {
        UeRef::AppIdentity(id) => text(out, "appIdentity", id.as_str()),
        UeRef::Imsi(imsi) => plain(out, "imsi", imsi.as_str()),
    }
}

fn ue_len(ue: &UeRef) -> usize {
    CHILD
        + ESCAPE
            * match ue {
                UeRef::AppIdentity(id) => id.as_str().len(),
                UeRef::Imsi(imsi) => imsi.as_str().len(),
            }
}

impl sealed::Sealed for Registration {}
impl XmlMessage for Registration {
    const ROOT: &'static str = "registration";
    const MEDIA_TYPE: &'static str = MEDIA_TYPE_XML;

    fn max_encoded_len(&self) -> usize {
        FRAME
            + 2 * CHILD
            + ESCAPE * self.emse_id.as_str().len()
            + ESCAPE * self.callback.as_ref().map_or(0, |c| c.as_str().len())
    }

    fn encode_into(&self, out: &mut String) {
        out.reserve(self.max_encoded_len());
        open(out, Self::ROOT, NAMESPACE);
        text(out, "emseId", self.emse_id.as_str());
        if let Some(callback) = &self.callback {
            text(out, "callback", callback.as_str());
        }
        close(out, Self::ROOT);
    }

    fn decode(document: &[u8]) -> Result<Self, crate::DecodeError> {
        crate::decode::registration(document)
    }
}

impl sealed::Sealed for RegistrationResult {}
impl XmlMessage for RegistrationResult {
    const ROOT: &'static str = "registrationResult";
    const MEDIA_TYPE: &'static str = MEDIA_TYPE_XML;

    fn max_encoded_len(&self) -> usize {
        FRAME + 2 * CHILD + SessionId::TEXT_LEN + Timestamp::MAX_TEXT_LEN
    }

    fn encode_into(&self, out: &mut String) {
        out.reserve(self.max_encoded_len());
        open(out, Self::ROOT, NAMESPACE);
        session_id(out, "sessionId", &self.session_id);
        timestamp(out, "expires", self.expires);
        close(out, Self::ROOT);
    }

    fn decode(document: &[u8]) -> Result<Self, crate::DecodeError> {
        crate::decode::registration_result(document)
    }
}

impl sealed::Sealed for KeyResponse {}
impl XmlMessage for KeyResponse {
    const ROOT: &'static str = "keyResponse";
    const MEDIA_TYPE: &'static str = MEDIA_TYPE_XML;

    fn max_encoded_len(&self) -> usize {
        FRAME + ue_len(&self.ue) + 3 * CHILD + KeyId::TEXT_LEN + 64 + Timestamp::MAX_TEXT_LEN
    }

    fn encode_into(&self, out: &mut String) {
        out.reserve(self.max_encoded_len());
        open(out, Self::ROOT, NAMESPACE);
        ue(out, &self.ue);
        key_id(out, "keyId", self.key_id);
        start_child(out, "e2mKey");
        push_hex(out, self.key.expose_secret());
        end_child(out, "e2mKey");
        timestamp(out, "expires", self.expires);
        close(out, Self::ROOT);
    }

    fn decode(document: &[u8]) -> Result<Self, crate::DecodeError> {
        crate::decode::key_response(document)
    }
}

impl sealed::Sealed for Subscription {}
impl XmlMessage for Subscription {
    const ROOT: &'static str = "subscription";
    const MEDIA_TYPE: &'static str = MEDIA_TYPE_XML;

    fn max_encoded_len(&self) -> usize {
        FRAME
            + 4 * (CHILD + 16)
            + self.ue.as_ref().map_or(0, ue_len)
            + CHILD
            + ESCAPE * self.callback.as_str().len()
    }

    fn encode_into(&self, out: &mut String) {
        out.reserve(self.max_encoded_len());
        open(out, Self::ROOT, NAMESPACE);
        for event in self.events.iter() {
            plain(out, "event", event.as_str());
        }
        if let Some(u) = &self.ue {
            ue(out, u);
        }
        text(out, "callback", self.callback.as_str());
        close(out, Self::ROOT);
    }

    fn decode(document: &[u8]) -> Result<Self, crate::DecodeError> {
        crate::decode::subscription(document)
    }
}

impl sealed::Sealed for SubscriptionResult {}
impl XmlMessage for SubscriptionResult {
    const ROOT: &'static str = "subscriptionResult";
    const MEDIA_TYPE: &'static str = MEDIA_TYPE_XML;

    fn max_encoded_len(&self) -> usize {
        FRAME + 2 * CHILD + SubscriptionId::MAX_TEXT_LEN + Timestamp::MAX_TEXT_LEN
    }

    fn encode_into(&self, out: &mut String) {
        out.reserve(self.max_encoded_len());
        open(out, Self::ROOT, NAMESPACE);
        subscription_id(out, "subscriptionId", self.subscription_id);
        timestamp(out, "expires", self.expires);
        close(out, Self::ROOT);
    }

    fn decode(document: &[u8]) -> Result<Self, crate::DecodeError> {
        crate::decode::subscription_result(document)
    }
}

impl sealed::Sealed for Notification {}
impl XmlMessage for Notification {
    const ROOT: &'static str = "notification";
    const MEDIA_TYPE: &'static str = MEDIA_TYPE_XML;

    fn max_encoded_len(&self) -> usize {
        FRAME
            + 4 * CHILD
            + SubscriptionId::MAX_TEXT_LEN
            + 16
            + ue_len(&self.ue)
            + KeyId::TEXT_LEN
            + Timestamp::MAX_TEXT_LEN
            + CHILD
            + NotificationId::MAX_TEXT_LEN
    }

    fn encode_into(&self, out: &mut String) {
        out.reserve(self.max_encoded_len());
        open(out, Self::ROOT, NAMESPACE);
        subscription_id(out, "subscriptionId", self.subscription_id);
        plain(out, "event", self.event.as_str());
        ue(out, &self.ue);
        key_id(out, "keyId", self.key_id);
        timestamp(out, "time", self.time);
        if let Some(id) = self.id {
            start_child(out, "notificationId");
            // Writing into a String cannot fail.
            let _ = write!(out, "{id}");
            end_child(out, "notificationId");
        }
        close(out, Self::ROOT);
    }

    fn decode(document: &[u8]) -> Result<Self, crate::DecodeError> {
        crate::decode::notification(document)
    }
}

impl sealed::Sealed for IntermediateKeyPush {}
impl XmlMessage for IntermediateKeyPush {
    const ROOT: &'static str = "intermediateKeyPush";
    const MEDIA_TYPE: &'static str = MEDIA_TYPE_XML;

    fn max_encoded_len(&self) -> usize {
        FRAME + 4 * CHILD + 15 + KeyId::TEXT_LEN + 64 + Timestamp::MAX_TEXT_LEN
    }

    fn encode_into(&self, out: &mut String) {
        out.reserve(self.max_encoded_len());
        open(out, Self::ROOT, NAMESPACE);
        plain(out, "imsi", self.imsi.as_str());
        match self.key_id {
            KeyIdSource::RandLsb32(id) => key_id(out, "randLsb32", id),
            KeyIdSource::ShortHash => out.push_str("  <shortHash/>\n"),
        }
        start_child(out, "e2mIntKey");
        push_hex(out, self.int_key.expose_secret());
        end_child(out, "e2mIntKey");
        timestamp(out, "created", self.created);
        close(out, Self::ROOT);
    }

    fn decode(document: &[u8]) -> Result<Self, crate::DecodeError> {
        crate::decode::intermediate_key_push(document)
    }
}

impl sealed::Sealed for Problem {}
impl XmlMessage for Problem {
    const ROOT: &'static str = "problem";
    const MEDIA_TYPE: &'static str = MEDIA_TYPE_PROBLEM_XML;

    fn max_encoded_len(&self) -> usize {
        FRAME
            + 5 * CHILD
            + self.cause.type_uri().len()
            + self.cause.title().len()
            + 3
            + ESCAPE * self.detail.as_ref().map_or(0, |d| d.as_str().len())
            + self.cause.as_str().len()
    }

    fn encode_into(&self, out: &mut String) {
        out.reserve(self.max_encoded_len());
        open(out, Self::ROOT, PROBLEM_NAMESPACE);
        plain(out, "type", self.cause.type_uri());
        text(out, "title", self.cause.title());
        let status = self.cause.status();
        start_child(out, "status");
        for digit in [status / 100, status / 10 % 10, status % 10] {
            // Statuses are three digits (RFC 9110 §15).
            out.push(char::from(b'0' + (digit as u8)));
        }
        end_child(out, "status");
        if let Some(detail) = &self.detail {
            text(out, "detail", detail.as_str());
        }
        plain(out, "cause", self.cause.as_str());
        close(out, Self::ROOT);
    }

    fn decode(document: &[u8]) -> Result<Self, crate::DecodeError> {
        crate::decode::problem(document)
    }
}
