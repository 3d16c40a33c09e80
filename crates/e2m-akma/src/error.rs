//! Why a body was refused, and the TS 29.500 problem details that answer it.

use crate::problem::{InvalidParam, ProblemDetails, cause};

/// Why a JSON body was refused. No variant carries text from the body: the peer gets a cause
/// and the name of the offending attribute (a JSON pointer fixed by this crate), never an
/// echo of what it sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The body is longer than [`crate::MAX_BODY`] octets.
    #[error("body is {len} octets; at most {max} accepted")]
    TooLarge {
        /// Octets received.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not a JSON object of this type: a syntax error, another JSON type at the top level,
    /// an unknown or duplicated attribute, nesting deeper than the parser's limit, or
    /// trailing data. TS 29.500 cause `INVALID_MSG_FORMAT`.
    #[error("malformed body at line {line}, column {column}")]
    Malformed {
        /// Line of the error (1-based; 0 when unknown).
        line: usize,
        /// Column of the error (1-based; 0 when unknown).
        column: usize,
    },
    /// A mandatory attribute is absent (or `null`). Cause `MANDATORY_IE_MISSING`.
    #[error("mandatory attribute {ie} is missing")]
    Missing {
        /// The attribute, as a JSON pointer (`/aKId`).
        ie: &'static str,
    },
    /// An attribute has the wrong JSON type or a value outside its definition. Cause
    /// `MANDATORY_IE_INCORRECT` or `OPTIONAL_IE_INCORRECT`.
    #[error("attribute {ie} is incorrect: {reason}")]
    Incorrect {
        /// The attribute, as a JSON pointer.
        ie: &'static str,
        /// Whether the attribute is mandatory (or conditional) in this body.
        mandatory: bool,
        /// What is wrong, in words fixed by this crate.
        reason: &'static str,
    },
}

impl DecodeError {
    /// The HTTP status of the answer: 413 for [`DecodeError::TooLarge`], 400 otherwise
    /// (TS 29.500 §5.2.7.2).
    pub fn status(&self) -> u16 {
        match self {
            DecodeError::TooLarge { .. } => 413,
            _ => 400,
        }
    }

    /// The TS 29.500 application error (Table 5.2.7.2-1), if any.
    pub fn cause(&self) -> Option<&'static str> {
        match self {
            DecodeError::TooLarge { .. } => None,
            DecodeError::Malformed { .. } => Some(cause::INVALID_MSG_FORMAT),
            DecodeError::Missing { .. } => Some(cause::MANDATORY_IE_MISSING),
            DecodeError::Incorrect {
                mandatory: true, ..
            } => Some(cause::MANDATORY_IE_INCORRECT),
            DecodeError::Incorrect {
                mandatory: false, ..
            } => Some(cause::OPTIONAL_IE_INCORRECT),
        }
    }

    /// The problem details to answer with (`application/problem+json`): status, cause, and
    /// the offending attribute in `invalidParams` where there is one.
    pub fn problem(&self) -> ProblemDetails {
        let mut problem = ProblemDetails::new(self.status(), self.cause());
        match *self {
            DecodeError::TooLarge { .. } => problem.title = Some("Payload Too Large".into()),
            DecodeError::Malformed { .. } => problem.title = Some("Malformed body".into()),
            DecodeError::Missing { ie } => {
                problem.invalid_params.push(InvalidParam {
                    param: ie.into(),
                    reason: Some("missing".into()),
                });
            }
            DecodeError::Incorrect { ie, reason, .. } => {
                problem.invalid_params.push(InvalidParam {
                    param: ie.into(),
                    reason: Some(reason.into()),
                });
            }
        }
        problem
    }
}

impl From<serde_json::Error> for DecodeError {
    fn from(err: serde_json::Error) -> Self {
        // serde_json's message can quote the input (an unknown attribute's name): only its
        // position is kept.
        DecodeError::Malformed {
            line: err.line(),
            column: err.column(),
        }
    }
}
