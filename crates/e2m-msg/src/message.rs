//! The messages between EMSE and EMKS (seed 6.x.2.2.2) and the HSS→EMKS key push.

use core::fmt;

use e2m_kdf::{E2mIntKey, E2mKey};
use e2m_keyid::{EmseId, Imsi, KeyId};

use e2m_types::{EventSet, EventType, SessionId, SubscriptionId, Timestamp, UeRef};

use crate::values::{CallbackUri, KeyIdSource, NotificationId};

/// EMSE → EMKS: initial registration (seed 6.x.2.2.2.1), the body of
/// `POST /e2m/v1/sessions`. Answered by 201 Created with a [`RegistrationResult`].
///
/// The EMKS must check `emse_id` against the identity in the EMSE's TLS client certificate
/// (seed 6.x.2.2.1: mutual authentication) and derive keys for the identity bound to the
/// session, never for one taken from a later request.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Registration {
    /// The EMSE's identifier, the EMSE_Id of the `e2m_key` derivation.
    pub emse_id: EmseId,
    /// Where the EMSE takes notifications, if it takes any.
    pub callback: Option<CallbackUri>,
}

/// EMKS → EMSE: the session the EMKS established (seed 6.x.2.2.2.1: "returns session id in
/// HTTP 201 CREATED"), the body of the 201 whose `Location` is the session resource.
#[derive(PartialEq, Eq, Debug)]
pub struct RegistrationResult {
    /// The session's id: the last segment of its resource path.
    pub session_id: SessionId,
    /// When the EMKS forgets the session unless the EMSE registers again.
    pub expires: Timestamp,
}

/// EMSE → EMKS: fetch the UE's `e2m_key` (seed 6.x.2.2.2.2; 6.x.2.3 step 5). It has no body:
/// it is `GET /e2m/v1/sessions/{session}/keys?appIdentity=…&keyId=…` (or `imsi=…`), built by
/// [`KeyRequest::to_target`](crate::rest) and parsed by [`Route::parse`](crate::Route::parse).
#[derive(PartialEq, Eq, Debug)]
pub struct KeyRequest {
    /// The EMSE's session (the EMSE_Id of the derivation is the session's, never the request's).
    pub session_id: SessionId,
    /// The UE, as the UE named itself in `psk_identity` (or by IMSI, seed case 1).
    pub ue: UeRef,
    /// The key id the UE sent with its identity.
    pub key_id: KeyId,
}

/// EMKS → EMSE: the UE's `e2m_key` for this EMSE (seed 6.x.2.3 step 6), the body of the 200
/// answer to a [`KeyRequest`]; sent with `Cache-Control: no-store`.
///
/// Holds key material: not `Clone`, zeroized on drop (the key is an [`E2mKey`]), and its
/// `Debug` prints no key bytes. The encoded form is returned as `Zeroizing`.
#[derive(PartialEq, Eq)]
pub struct KeyResponse {
    /// The UE, as named in the request.
    pub ue: UeRef,
    /// The key id of the `e2m_int_key` the key was derived from (as requested).
    pub key_id: KeyId,
    /// `e2m_key = KDF(e2m_int_key, EMSE_Id [, string])`, the DTLS pre-shared key.
    pub key: E2mKey,
    /// When the EMKS stops holding the intermediate key: the EMSE must not keep the key longer.
    pub expires: Timestamp,
}

impl fmt::Debug for KeyResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyResponse")
            .field("ue", &self.ue)
            .field("key_id", &self.key_id)
            .field("key", &"<redacted>")
            .field("expires", &self.expires)
            .finish()
    }
}

/// EMSE → EMKS: end the session (seed 6.x.2.2.2.3). It has no body: it is
/// `DELETE /e2m/v1/sessions/{session}`, answered by 204 No Content.
#[derive(PartialEq, Eq, Debug)]
pub struct Deregistration {
    /// The session to end.
    pub session_id: SessionId,
}

/// Either side → the other: subscribe to events (seed 6.x.2.2.2, "Subscription to
/// Notification"; usable in both directions, since EMKS and EMSE are each client and server).
/// The body of `POST /e2m/v1/subscriptions`, answered by 201 Created with a
/// [`SubscriptionResult`]. The subscriber is the TLS-authenticated peer.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Subscription {
    /// The events wanted (at least one).
    pub events: EventSet,
    /// Only events about this UE, if given.
    pub ue: Option<UeRef>,
    /// Where to POST each [`Notification`].
    pub callback: CallbackUri,
}

/// The answer to a [`Subscription`]: its id (the last segment of the `Location`) and expiry.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SubscriptionResult {
    /// Names the subscription in notifications and in `DELETE /e2m/v1/subscriptions/{id}`.
    pub subscription_id: SubscriptionId,
    /// When the subscription lapses unless renewed by subscribing again.
    pub expires: Timestamp,
}

/// One event, POSTed to the subscriber's callback URI; answered by 204 No Content.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Notification {
    /// The subscription this notification is for.
    pub subscription_id: SubscriptionId,
    /// What happened.
    pub event: EventType,
    /// To which UE, named as the receiving side knows it.
    pub ue: UeRef,
    /// Which key.
    pub key_id: KeyId,
    /// When it happened.
    pub time: Timestamp,
    /// The notification's stable id (`notificationId`): the same on every delivery attempt
    /// of one notification, so that the receiver can drop duplicates. An EMKS sets it on
    /// every notification it sends; an EMSE's `key-in-use` report carries none.
    pub id: Option<NotificationId>,
}

/// HSS → EMKS: a new `e2m_int_key` after an AKA run (seed 6.x.2.1 step 1 and prerequisite a).
///
/// The seed expects Diameter here in stage 3; this XML form (`POST
/// /e2m/v1/intermediate-keys`, answered by 204) is e2m's documented stand-in, so that an
/// EMKS can be built and tested end to end. Holds key material: not `Clone`, zeroized on
/// drop, `Debug` prints no key bytes.
#[derive(PartialEq, Eq)]
pub struct IntermediateKeyPush {
    /// The subscriber.
    pub imsi: Imsi,
    /// RAND-LSB32 from the HSS, or "compute the short hash".
    pub key_id: KeyIdSource,
    /// `e2m_int_key = KDF(CK || IK, "e2m_CIoT")`.
    pub int_key: E2mIntKey,
    /// When the HSS derived it (the start of its retention time).
    pub created: Timestamp,
}

impl fmt::Debug for IntermediateKeyPush {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntermediateKeyPush")
            .field("imsi", &self.imsi)
            .field("key_id", &self.key_id)
            .field("int_key", &"<redacted>")
            .field("created", &self.created)
            .finish()
    }
}
