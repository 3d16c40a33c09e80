//! Audit records and the other side effects a decision asks the transport to carry out.

use e2m_keyid::{EmseId, Imsi, KeyId};
use e2m_keystore::{SessionRef, SubscriptionId, Timestamp};
use e2m_msg::{CallbackUri, Notification, Problem, ProblemCause, UeRef};

use crate::Peer;

/// What was decided about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Action {
    /// EMSE registration (seed 6.x.2.2.2.1).
    Register,
    /// Key fetch (seed 6.x.2.2.2.2, 6.x.2.3 steps 5–6).
    FetchKey,
    /// EMSE deregistration (seed 6.x.2.2.2.3).
    Deregister,
    /// Subscription to EMKS events.
    Subscribe,
    /// Removal of a subscription.
    Unsubscribe,
    /// A notification from an EMSE (e.g. the key id a UE is now using).
    Notify,
    /// An HSS push of an intermediate key (seed 6.x.2.1 step 1).
    PushIntermediateKey,
    /// A session reached its end of life.
    SessionExpired,
    /// Intermediate keys reached their maximum age and were removed.
    KeysExpired,
}

impl Action {
    /// The word used in the text form.
    pub const fn as_str(self) -> &'static str {
        match self {
            Action::Register => "register",
            Action::FetchKey => "fetch-key",
            Action::Deregister => "deregister",
            Action::Subscribe => "subscribe",
            Action::Unsubscribe => "unsubscribe",
            Action::Notify => "notify",
            Action::PushIntermediateKey => "push-intermediate-key",
            Action::SessionExpired => "session-expired",
            Action::KeysExpired => "keys-expired",
        }
    }
}

/// How a decision came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// Done as asked.
    Granted,
    /// Refused, with the cause the peer was told.
    Refused(ProblemCause),
}

/// One audit record: who asked what, about which UE and key id, and what was decided.
///
/// Never holds key material or a session id: the session is named by its non-secret
/// [`SessionRef`]. It may hold an IMSI: audit records are the operator's own, and an IMSI
/// is what its other systems use to name the UE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    /// When (the `now` of the decision).
    pub time: Timestamp,
    /// What.
    pub action: Action,
    /// Who asked (`None` for time-driven events such as expiry).
    pub peer: Option<Peer>,
    /// The session concerned.
    pub session: Option<SessionRef>,
    /// The UE as the request named it.
    pub ue: Option<UeRef>,
    /// The IMSI it resolved to, if it did.
    pub imsi: Option<Imsi>,
    /// The key id concerned.
    pub key_id: Option<KeyId>,
    /// The subscription concerned.
    pub subscription: Option<SubscriptionId>,
    /// The outcome.
    pub verdict: Verdict,
    /// Why, in a few words (a constant: never request data).
    pub reason: &'static str,
    /// How many items a bulk event concerned (keys expired); 1 otherwise.
    pub count: usize,
}

impl AuditRecord {
    pub(crate) fn new(time: Timestamp, action: Action, peer: Option<&Peer>) -> Self {
        AuditRecord {
            time,
            action,
            peer: peer.cloned(),
            session: None,
            ue: None,
            imsi: None,
            key_id: None,
            subscription: None,
            verdict: Verdict::Granted,
            reason: "",
            count: 1,
        }
    }
}

impl core::fmt::Display for AuditRecord {
    /// One line of `key=value` pairs, for a log.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "time={} action={}",
            self.time.as_unix_secs(),
            self.action.as_str()
        )?;
        if let Some(p) = &self.peer {
            write!(f, " peer={p}")?;
        }
        if let Some(s) = self.session {
            write!(f, " session={s}")?;
        }
        match &self.ue {
            Some(UeRef::AppIdentity(a)) => write!(f, " ue=app:{a}")?,
            Some(UeRef::Imsi(i)) => write!(f, " ue=imsi:{i}")?,
            None => {}
        }
        if let Some(i) = &self.imsi {
            write!(f, " imsi={i}")?;
        }
        if let Some(k) = self.key_id {
            write!(f, " key_id={k}")?;
        }
        if let Some(s) = self.subscription {
            write!(f, " subscription={s}")?;
        }
        match self.verdict {
            Verdict::Granted => f.write_str(" verdict=granted")?,
            Verdict::Refused(c) => write!(f, " verdict=refused cause={c}")?,
        }
        if self.count != 1 {
            write!(f, " count={}", self.count)?;
        }
        if !self.reason.is_empty() {
            write!(f, " reason=\"{}\"", self.reason)?;
        }
        Ok(())
    }
}

/// A notification for the transport to POST to a subscriber's callback URI, built by
/// [`Emks::outbound`](crate::Emks::outbound) from an entry of the store's outbox (the
/// subscriber answers 204; the transport settles the entry: delivered, or retried later).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboundNotification {
    /// Where to send it.
    pub callback: CallbackUri,
    /// What to send (its `id` is the outbox entry's stable id).
    pub notification: Notification,
    /// The subscriber's session.
    pub session: SessionRef,
    /// The subscriber's EMSE_Id, from its subscription record: deliver only to a server
    /// whose certificate names it (a callback URI is the subscriber's word; the identity is
    /// the registration's).
    pub emse: EmseId,
}

/// What the transport must do besides answering: write the audit records (to a durable
/// audit log, in order), and wake its deliverer if the store may have recorded
/// notifications.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Effects {
    /// The decision changed intermediate keys (a push stored or replaced one, a sweep
    /// removed some), so the store's outbox may hold new notifications: the transport
    /// wakes its deliverer rather than waiting for its next poll. The notifications
    /// themselves were recorded by the store, in the same transaction as the change.
    pub notifications_recorded: bool,
    /// Audit records to write.
    pub audit: AuditRecords,
}

/// The audit records of one decision, in order: a slice (it dereferences to
/// `[AuditRecord]`). A request's decision makes exactly one record, held inline, so the
/// fetch path allocates nothing for its audit; only the expiry sweep makes several.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditRecords(Records);

#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[allow(
    clippy::large_enum_variant,
    reason = "the one record is inline on purpose: boxing it would allocate on every decision"
)]
enum Records {
    #[default]
    None,
    One(AuditRecord),
    Many(Vec<AuditRecord>),
}

impl AuditRecords {
    /// No records.
    pub const fn new() -> Self {
        AuditRecords(Records::None)
    }

    /// Exactly `record` (the one record of a request's decision).
    pub fn one(record: AuditRecord) -> Self {
        AuditRecords(Records::One(record))
    }

    /// Appends `record`.
    pub fn push(&mut self, record: AuditRecord) {
        self.0 = match core::mem::take(&mut self.0) {
            Records::None => Records::One(record),
            Records::One(first) => Records::Many(vec![first, record]),
            Records::Many(mut all) => {
                all.push(record);
                Records::Many(all)
            }
        };
    }

    /// Keeps only the records for which `keep` is true, in order.
    pub fn retain(&mut self, mut keep: impl FnMut(&AuditRecord) -> bool) {
        match &mut self.0 {
            Records::None => {}
            Records::One(record) => {
                if !keep(record) {
                    self.0 = Records::None;
                }
            }
            Records::Many(all) => all.retain(keep),
        }
    }
}

impl core::ops::Deref for AuditRecords {
    type Target = [AuditRecord];

    fn deref(&self) -> &[AuditRecord] {
        match &self.0 {
            Records::None => &[],
            Records::One(record) => core::slice::from_ref(record),
            Records::Many(all) => all,
        }
    }
}

impl<'a> IntoIterator for &'a AuditRecords {
    type Item = &'a AuditRecord;
    type IntoIter = core::slice::Iter<'a, AuditRecord>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl IntoIterator for AuditRecords {
    type Item = AuditRecord;
    type IntoIter = std::vec::IntoIter<AuditRecord>;

    fn into_iter(self) -> Self::IntoIter {
        match self.0 {
            Records::None => Vec::new().into_iter(),
            Records::One(record) => vec![record].into_iter(),
            Records::Many(all) => all.into_iter(),
        }
    }
}

/// The result of one entry point: the answer for the peer and the side effects.
#[derive(Debug)]
#[must_use = "the transport must answer and carry out the effects"]
pub struct Outcome<T> {
    /// The answer: the response message, or the problem to send (with its status).
    pub result: Result<T, Problem>,
    /// Notifications and audit records.
    pub effects: Effects,
}
