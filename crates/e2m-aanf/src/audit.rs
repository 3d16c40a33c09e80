//! The answer of a decision, its one audit record, and what else the binding must do.

use core::fmt;

use e2m_akma::{DecodeError, InvalidParam, Operation, ProblemDetails, cause};
use e2m_keyid::akma::{AKid, AfId, UeId};
use e2m_types::Timestamp;

use crate::Peer;

/// A refusal as the peer sees it: the HTTP status, the TS 29.500 cause, and the attribute
/// at fault. Never any text from the request or the state: the audit record says why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The HTTP status.
    pub status: u16,
    /// The TS 29.500 application error (`cause`), if any.
    pub cause: Option<&'static str>,
    /// The attribute at fault (a JSON pointer) and why, for `invalidParams`.
    pub invalid_param: Option<(&'static str, &'static str)>,
}

impl Problem {
    pub(crate) const fn new(status: u16, cause: Option<&'static str>) -> Problem {
        Problem {
            status,
            cause,
            invalid_param: None,
        }
    }

    /// 401: no access token where tokens are required (the binding adds
    /// `WWW-Authenticate: Bearer`, RFC 6750 §3).
    pub const UNAUTHENTICATED: Problem = Problem::new(401, None);
    /// 403: the token lacks the operation's scope (TS 29.500 `ACCESS_TOKEN_DENIED`).
    pub const SCOPE_MISSING: Problem = Problem::new(403, Some(cause::ACCESS_TOKEN_DENIED));
    /// 403: the peer may not do this (not a configured AUSF, AF or NEF; an `afId` of
    /// another AF; a `notifUri` host it does not own). No cause: TS 29.500 has none for
    /// it, and the audit record says which.
    pub const FORBIDDEN: Problem = Problem::new(403, None);
    /// 500: the store failed (`SYSTEM_FAILURE`); the fault is in the audit record.
    pub const SYSTEM_FAILURE: Problem = Problem::new(500, Some(cause::SYSTEM_FAILURE));
    /// 500: a limit of the store (`INSUFFICIENT_RESOURCES`).
    pub const INSUFFICIENT_RESOURCES: Problem =
        Problem::new(500, Some(cause::INSUFFICIENT_RESOURCES));

    /// The problem details to send (`application/problem+json`).
    pub fn details(&self) -> ProblemDetails {
        let mut details = ProblemDetails::new(self.status, self.cause);
        if let Some((param, reason)) = self.invalid_param {
            details.invalid_params.push(InvalidParam {
                param: param.into(),
                reason: Some(reason.into()),
            });
        }
        details
    }
}

impl From<&DecodeError> for Problem {
    /// The problem a body that did not decode is answered with (as
    /// [`DecodeError::problem`]).
    fn from(e: &DecodeError) -> Problem {
        let mut problem = Problem::new(e.status(), e.cause());
        problem.invalid_param = match *e {
            DecodeError::Missing { ie } => Some((ie, "missing")),
            DecodeError::Incorrect { ie, reason, .. } => Some((ie, reason)),
            _ => None,
        };
        problem
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.status)?;
        if let Some(c) = self.cause {
            write!(f, " {c}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problem {}

/// What was decided about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// A request of one of the two APIs.
    Request(Operation),
    /// The periodic removal of expired contexts ([`crate::Aanf::expire`]).
    Expire,
}

impl Action {
    /// The word of the text form.
    pub const fn as_str(self) -> &'static str {
        match self {
            Action::Request(Operation::RegisterAnchorKey) => "register-anchorkey",
            Action::Request(Operation::RetrieveApplicationKey) => "retrieve-applicationkey",
            Action::Request(Operation::RemoveContext) => "remove-context",
            Action::Request(Operation::NefRetrieve) => "nef-retrieve",
            Action::Request(_) => "request",
            Action::Expire => "expire",
        }
    }
}

/// In which role the peer was served (from the configuration, never from the request).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Role {
    /// A configured AUSF.
    Ausf,
    /// A configured AF, by its certificate.
    Af,
    /// A configured NEF, on behalf of the AF its request names.
    Nef,
}

impl Role {
    /// The word of the text form.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Ausf => "ausf",
            Role::Af => "af",
            Role::Nef => "nef",
        }
    }
}

/// How a decision came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// Done as asked.
    Granted,
    /// A retrieval for an A-KID with no live context (never registered, expired, removed or
    /// replaced: one answer for all, 204).
    NoContext,
    /// Refused, with the problem the peer was told.
    Refused(Problem),
}

/// One audit record: who asked what, about which UE, A-KID and AF, what was disclosed, and
/// what was decided. Never holds K_AKMA or K_AF (`tests/leak.rs` searches every record). It
/// may hold the SUPI or GPSI: audit records are the operator's own, and that is how its
/// other systems name the UE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    /// When (the `now` of the decision).
    pub time: Timestamp,
    /// What.
    pub action: Action,
    /// Who asked (`None` for [`Action::Expire`]).
    pub peer: Option<Peer>,
    /// In which role, once the configuration said.
    pub role: Option<Role>,
    /// The UE concerned, once known (the request's, or the context's).
    pub ue: Option<UeId>,
    /// The A-KID concerned.
    pub a_kid: Option<AKid>,
    /// The AF_ID a K_AF was (or would have been) derived for.
    pub af_id: Option<AfId>,
    /// Whether the answer carried the SUPI.
    pub supi_disclosed: bool,
    /// Whether the answer carried the GPSI.
    pub gpsi_disclosed: bool,
    /// When the K_AF given expires.
    pub kaf_expiry: Option<Timestamp>,
    /// Service-disablement notifications recorded (a removal).
    pub notifications: usize,
    /// Contexts removed (an expiry sweep).
    pub count: usize,
    /// The outcome.
    pub verdict: Verdict,
    /// Why, in a few words (a constant: never request data).
    pub reason: &'static str,
}

impl AuditRecord {
    pub(crate) fn new(time: Timestamp, action: Action, peer: Option<&Peer>) -> AuditRecord {
        AuditRecord {
            time,
            action,
            peer: peer.cloned(),
            role: None,
            ue: None,
            a_kid: None,
            af_id: None,
            supi_disclosed: false,
            gpsi_disclosed: false,
            kaf_expiry: None,
            notifications: 0,
            count: 0,
            verdict: Verdict::Granted,
            reason: "",
        }
    }
}

impl fmt::Display for AuditRecord {
    /// One line of `key=value` pairs, for a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "time={} action={}", self.time, self.action.as_str())?;
        if let Some(p) = &self.peer {
            write!(f, " peer={p}")?;
        }
        if let Some(r) = self.role {
            write!(f, " role={}", r.as_str())?;
        }
        if let Some(ue) = &self.ue {
            write!(f, " ue={ue}")?;
        }
        if let Some(a) = &self.a_kid {
            write!(f, " a_kid={a}")?;
        }
        if let Some(af) = &self.af_id {
            write!(f, " af_id={af}")?;
        }
        if self.supi_disclosed {
            f.write_str(" disclosed=supi")?;
        }
        if self.gpsi_disclosed {
            f.write_str(" disclosed=gpsi")?;
        }
        if let Some(t) = self.kaf_expiry {
            write!(f, " kaf_expiry={t}")?;
        }
        if self.notifications > 0 {
            write!(f, " notifications={}", self.notifications)?;
        }
        if self.action == Action::Expire {
            write!(f, " count={}", self.count)?;
        }
        match self.verdict {
            Verdict::Granted => f.write_str(" verdict=granted")?,
            Verdict::NoContext => f.write_str(" verdict=no-context")?,
            Verdict::Refused(p) => write!(f, " verdict=refused status={p}")?,
        }
        if !self.reason.is_empty() {
            write!(f, " reason=\"{}\"", self.reason)?;
        }
        Ok(())
    }
}

/// What the binding must do besides answering: write the audit record, and wake its
/// deliverer if the store recorded notifications.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Effects {
    /// The decision's one audit record.
    pub audit: AuditRecord,
    /// A removal recorded service-disablement notifications in the store's outbox (in its
    /// own transaction): wake the deliverer rather than wait for its next poll.
    pub notifications_recorded: bool,
}

/// The result of one entry point: the answer for the peer and the effects.
#[derive(Debug)]
#[must_use = "the binding must answer and write the audit record"]
pub struct Outcome<T> {
    /// The answer: the body to send (see each entry point for its status), or the problem.
    pub result: Result<T, Problem>,
    /// The audit record, and whether notifications were recorded.
    pub effects: Effects,
}
