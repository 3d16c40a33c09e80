//! E2M-Key-Push-Answer: written by the EMKS from the core's outcome, read by the HSS into
//! what to do next (SPEC.md, "Result codes" and "Mapping from the HTTPS push").

use core::time::Duration;

use e2m_diameter::{
    AvpBuf, AvpCode, AvpHeader, EncodeError, MessageBuilder, MessageView, ProtocolError,
    ResultCode, Time,
};
use e2m_msg::{ProblemCause, Timestamp};

use crate::profile::{E2M_ERROR_USER_UNKNOWN, NO_STATE_MAINTAINED, PushProfile};
use crate::request::PushRequest;

/// What the EMKS answers to a push.
///
/// `Debug` shows a refusal's Failed-AVP by length only: it copies an AVP of the request,
/// which may be (a malformed) E2M-Int-Key.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PushAnswer {
    /// 2001 DIAMETER_SUCCESS with E2M-Key-Expiry-Time: stored durably (or already held,
    /// stale, already expired: acknowledged, as on HTTPS).
    Success {
        /// The last instant the EMKS serves the key ([`key_expiry`]).
        expiry: Time,
    },
    /// Experimental-Result { Vendor-Id, 5001 E2M_ERROR_USER_UNKNOWN }.
    UserUnknown,
    /// 5003 DIAMETER_AUTHORIZATION_REJECTED: the peer may not push.
    NotAuthorized,
    /// 3004 DIAMETER_TOO_BUSY (E bit): backpressure; the HSS retries later.
    TooBusy,
    /// 5012 DIAMETER_UNABLE_TO_COMPLY: an internal failure.
    UnableToComply,
    /// A refused request: the Result-Code (E bit for 3xxx) and Failed-AVP of the error.
    Refused(ProtocolError),
}

impl core::fmt::Debug for PushAnswer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PushAnswer::Success { expiry } => {
                f.debug_struct("Success").field("expiry", expiry).finish()
            }
            PushAnswer::Refused(e) => f
                .debug_struct("Refused")
                .field("result_code", &e.result_code)
                .field("reason", &e.reason)
                .field("failed_avps_len", &e.failed_avps.len())
                .finish(),
            other => f.write_str(match other {
                PushAnswer::UserUnknown => "UserUnknown",
                PushAnswer::NotAuthorized => "NotAuthorized",
                PushAnswer::TooBusy => "TooBusy",
                _ => "UnableToComply",
            }),
        }
    }
}

impl PushAnswer {
    /// The answer for the core's decision on a push (SPEC.md's mapping of every HTTPS
    /// outcome): `Ok` is 2001 with `expiry`; a refusal by its cause.
    ///
    /// `request` gives the Failed-AVP of a malformed push (the User-Name: the store refused
    /// the subscriber's data; the Diameter decoder produces no other malformed push).
    pub fn for_outcome(
        result: Result<(), ProblemCause>,
        expiry: Time,
        request: &PushRequest<'_>,
    ) -> PushAnswer {
        match result {
            Ok(()) => PushAnswer::Success { expiry },
            Err(ProblemCause::Malformed) => {
                let mut b = AvpBuf::new();
                b.extend_encoded(request.user_name_avp());
                // Pad as a copied AVP is (the User-Name may have any length).
                let padded = b.as_bytes().len().next_multiple_of(4);
                let mut failed_avps = b.as_bytes().to_vec();
                failed_avps.resize(padded, 0);
                PushAnswer::Refused(ProtocolError {
                    result_code: ResultCode::INVALID_AVP_VALUE,
                    failed_avps,
                    reason: "the store refused the push's data",
                })
            }
            Err(cause) => PushAnswer::for_cause(cause),
        }
    }

    /// The answer for a refusal cause, Malformed without a Failed-AVP.
    pub fn for_cause(cause: ProblemCause) -> PushAnswer {
        match cause {
            ProblemCause::EmseNotAuthorized => PushAnswer::NotAuthorized,
            ProblemCause::UeUnknown => PushAnswer::UserUnknown,
            ProblemCause::Unavailable | ProblemCause::RateLimited => PushAnswer::TooBusy,
            ProblemCause::Malformed => PushAnswer::Refused(ProtocolError::new(
                ResultCode::INVALID_AVP_VALUE,
                "malformed push",
            )),
            _ => PushAnswer::UnableToComply,
        }
    }

    /// The cause an HTTPS push would have been refused with (metrics count Diameter and
    /// HTTPS refusals alike); `None` for success.
    pub fn cause(&self) -> Option<ProblemCause> {
        match self {
            PushAnswer::Success { .. } => None,
            PushAnswer::UserUnknown => Some(ProblemCause::UeUnknown),
            PushAnswer::NotAuthorized => Some(ProblemCause::EmseNotAuthorized),
            PushAnswer::TooBusy => Some(ProblemCause::Unavailable),
            PushAnswer::UnableToComply => Some(ProblemCause::Internal),
            PushAnswer::Refused(_) => Some(ProblemCause::Malformed),
        }
    }

    /// The Result-Code, or the Experimental-Result-Code for [`PushAnswer::UserUnknown`].
    pub fn code(&self) -> u32 {
        match self {
            PushAnswer::Success { .. } => ResultCode::SUCCESS.0,
            PushAnswer::UserUnknown => E2M_ERROR_USER_UNKNOWN,
            PushAnswer::NotAuthorized => ResultCode::AUTHORIZATION_REJECTED.0,
            PushAnswer::TooBusy => ResultCode::TOO_BUSY.0,
            PushAnswer::UnableToComply => ResultCode::UNABLE_TO_COMPLY.0,
            PushAnswer::Refused(e) => e.result_code.0,
        }
    }
}

/// E2M-Key-Expiry-Time (SPEC.md, "Semantics" 4): `min(created, now) + max_age`, in whole
/// seconds rounded down, clamped to what a Diameter Time can carry.
pub fn key_expiry(created: Timestamp, now: Timestamp, max_age: Duration) -> Time {
    let start = created.min(now).saturating_add(max_age);
    let seconds = i64::try_from(start.as_unix_secs()).unwrap_or(i64::MAX);
    let seconds = seconds.clamp(Time::MIN_UNIX, Time::MAX_UNIX);
    // Within the range just clamped to, so never an error.
    Time::from_unix(seconds).unwrap_or(Time::from_ntp(0))
}

impl PushProfile {
    /// Writes E2M-Key-Push-Answer to `request` (SPEC.md's ABNF order): Session-Id (and
    /// Proxy-Info) copied, Auth-Session-State NO_STATE_MAINTAINED, Origin-Host,
    /// Origin-Realm, then Result-Code or Experimental-Result, E2M-Key-Expiry-Time on
    /// success, Failed-AVP when refused with one; the E bit for 3xxx.
    ///
    /// # Errors
    ///
    /// [`EncodeError`] if an identity is not a DiameterIdentity.
    pub fn encode_answer(
        &self,
        request: &MessageView<'_>,
        origin_host: &str,
        origin_realm: &str,
        answer: &PushAnswer,
    ) -> Result<Vec<u8>, EncodeError> {
        let mut b = MessageBuilder::answer_to(request);
        b.i32(m(AvpCode::AUTH_SESSION_STATE), NO_STATE_MAINTAINED);
        b.identity(m(AvpCode::ORIGIN_HOST), origin_host);
        b.identity(m(AvpCode::ORIGIN_REALM), origin_realm);
        match answer {
            PushAnswer::UserUnknown => {
                b.grouped(m(AvpCode::EXPERIMENTAL_RESULT), |g| {
                    g.u32(m(AvpCode::VENDOR_ID), self.vendor_id());
                    g.u32(m(AvpCode::EXPERIMENTAL_RESULT_CODE), E2M_ERROR_USER_UNKNOWN);
                });
            }
            other => {
                b.u32(m(AvpCode::RESULT_CODE), other.code());
            }
        }
        match answer {
            PushAnswer::Success { expiry } => {
                b.time(self.v(self.avps().key_expiry_time), *expiry);
            }
            PushAnswer::Refused(error) if !error.failed_avps.is_empty() => {
                b.grouped(m(AvpCode::FAILED_AVP), |g| {
                    g.extend_encoded(&error.failed_avps);
                });
            }
            _ => {}
        }
        if ResultCode(answer.code()).is_protocol_error()
            && !matches!(answer, PushAnswer::UserUnknown)
        {
            let flags = e2m_diameter::CommandFlags::from_bits(b.as_bytes()[4])
                .with(e2m_diameter::CommandFlags::ERROR);
            b.set_flags(flags);
        }
        b.finish()
    }

    /// Reads E2M-Key-Push-Answer (the HSS side).
    ///
    /// # Errors
    ///
    /// [`AnswerError`] when it is not this application's answer, or carries neither (or
    /// both) of Result-Code and Experimental-Result, or a malformed one.
    pub fn decode_answer(&self, view: &MessageView<'_>) -> Result<PushAnswerInfo, AnswerError> {
        if view.is_request()
            || view.command() != self.command()
            || view.application() != self.application_id()
        {
            return Err(AnswerError::NotAnAnswer);
        }
        let mut result_code = None;
        let mut experimental = None;
        let mut expiry = None;
        let expiry_key = self.key(self.avps().key_expiry_time);
        for avp in view.avps() {
            let avp = avp.map_err(|_| AnswerError::Malformed)?;
            let key = avp.key();
            if key == AvpCode::RESULT_CODE.into() {
                if result_code.is_some() {
                    return Err(AnswerError::Malformed);
                }
                result_code = Some(ResultCode(avp.u32().map_err(|_| AnswerError::Malformed)?));
            } else if key == AvpCode::EXPERIMENTAL_RESULT.into() {
                if experimental.is_some() {
                    return Err(AnswerError::Malformed);
                }
                let mut vendor = None;
                let mut code = None;
                for child in avp.grouped() {
                    let child = child.map_err(|_| AnswerError::Malformed)?;
                    let value = child.u32().map_err(|_| AnswerError::Malformed)?;
                    if child.key() == AvpCode::VENDOR_ID.into() {
                        vendor = Some(value);
                    } else if child.key() == AvpCode::EXPERIMENTAL_RESULT_CODE.into() {
                        code = Some(value);
                    }
                }
                match (vendor, code) {
                    (Some(vendor_id), Some(code)) => {
                        experimental = Some(ExperimentalResult { vendor_id, code });
                    }
                    _ => return Err(AnswerError::Malformed),
                }
            } else if key == expiry_key {
                expiry = Some(Time::from_ntp(
                    avp.u32().map_err(|_| AnswerError::Malformed)?,
                ));
            }
        }
        if result_code.is_some() == experimental.is_some() {
            return Err(AnswerError::Malformed);
        }
        Ok(PushAnswerInfo {
            result_code,
            experimental,
            expiry,
            error_bit: view.flags().is_error(),
            vendor_id: self.vendor_id(),
        })
    }
}

fn m(code: AvpCode) -> AvpHeader {
    AvpHeader::mandatory(code)
}

/// Why an answer could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnswerError {
    /// Not an E2M-Key-Push-Answer.
    #[error("not an E2M-Key-Push-Answer")]
    NotAnAnswer,
    /// A malformed answer: AVPs that do not frame, a value of the wrong length, or not
    /// exactly one of Result-Code and Experimental-Result.
    #[error("malformed E2M-Key-Push-Answer")]
    Malformed,
}

/// An Experimental-Result (RFC 6733 §7.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExperimentalResult {
    /// Its Vendor-Id.
    pub vendor_id: u32,
    /// Its Experimental-Result-Code.
    pub code: u32,
}

/// An E2M-Key-Push-Answer as the HSS read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PushAnswerInfo {
    /// Result-Code, if the answer carries one.
    pub result_code: Option<ResultCode>,
    /// Experimental-Result, if the answer carries one.
    pub experimental: Option<ExperimentalResult>,
    /// E2M-Key-Expiry-Time, if present.
    pub expiry: Option<Time>,
    /// The E bit.
    pub error_bit: bool,
    vendor_id: u32,
}

/// What the HSS does after an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PushStatus {
    /// 2001: the EMKS holds the key durably (or acknowledged it as already held, stale or
    /// expired). `expiry` is the last second it will be served, when the answer says.
    Acknowledged {
        /// E2M-Key-Expiry-Time.
        expiry: Option<Time>,
    },
    /// 3002 DIAMETER_UNABLE_TO_DELIVER or 3004 DIAMETER_TOO_BUSY: send it again later, with
    /// the T flag, the same End-to-End id and the same Session-Id (SPEC.md, "Semantics" 3).
    Retry(ResultCode),
    /// A final refusal: do not retry this push.
    Refused(Refusal),
}

/// A final refusal of a push.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// E2M_ERROR_USER_UNKNOWN: the EMKS takes no key for this subscriber.
    UserUnknown,
    /// Another Result-Code.
    Result(ResultCode),
    /// Another Experimental-Result.
    Experimental(ExperimentalResult),
}

impl PushAnswerInfo {
    /// What the answer means for the HSS.
    pub fn status(&self) -> PushStatus {
        match (self.result_code, self.experimental) {
            (Some(rc), _) if rc.is_success() => PushStatus::Acknowledged {
                expiry: self.expiry,
            },
            (Some(rc), _) if rc == ResultCode::UNABLE_TO_DELIVER || rc == ResultCode::TOO_BUSY => {
                PushStatus::Retry(rc)
            }
            (Some(rc), _) => PushStatus::Refused(Refusal::Result(rc)),
            (None, Some(er))
                if er.vendor_id == self.vendor_id && er.code == E2M_ERROR_USER_UNKNOWN =>
            {
                PushStatus::Refused(Refusal::UserUnknown)
            }
            (None, Some(er)) => PushStatus::Refused(Refusal::Experimental(er)),
            (None, None) => PushStatus::Refused(Refusal::Result(ResultCode::UNABLE_TO_COMPLY)),
        }
    }
}
