//! `ProblemDetails` (TS 29.571 §5.2.4.1, RFC 9457) with the application errors of TS 29.500
//! Table 5.2.7.2-1, sent as `application/problem+json`.

use serde::{Deserialize, Serialize};

/// The TS 29.500 Table 5.2.7.2-1 application errors this crate produces or that an AKMA
/// client acts on (the `cause` attribute).
pub mod cause {
    /// 400: the request has an invalid format (syntax, unknown or duplicated attribute).
    pub const INVALID_MSG_FORMAT: &str = "INVALID_MSG_FORMAT";
    /// 400: a mandatory or conditional attribute is incorrect.
    pub const MANDATORY_IE_INCORRECT: &str = "MANDATORY_IE_INCORRECT";
    /// 400: a mandatory or conditional attribute is missing.
    pub const MANDATORY_IE_MISSING: &str = "MANDATORY_IE_MISSING";
    /// 400: an optional attribute is incorrect.
    pub const OPTIONAL_IE_INCORRECT: &str = "OPTIONAL_IE_INCORRECT";
    /// 400: the request is rejected for an unspecified reason.
    pub const UNSPECIFIED_MSG_FAILURE: &str = "UNSPECIFIED_MSG_FAILURE";
    /// 403: the NF service consumer is not allowed the operation (TS 29.500 uses it for an
    /// authorization failure; the AAnF answers it to an AF asking for another AF's key).
    pub const ACCESS_TOKEN_DENIED: &str = "ACCESS_TOKEN_DENIED";
    /// 404: the resource URI has no known structure.
    pub const RESOURCE_URI_STRUCTURE_NOT_FOUND: &str = "RESOURCE_URI_STRUCTURE_NOT_FOUND";
    /// 429: the NF is overloaded.
    pub const NF_CONGESTION_RISK: &str = "NF_CONGESTION_RISK";
    /// 500: the NF failed for an unspecified reason.
    pub const SYSTEM_FAILURE: &str = "SYSTEM_FAILURE";
    /// 500: the request is rejected for lack of resources (the AAnF: a UE's notification
    /// targets at their limit).
    pub const INSUFFICIENT_RESOURCES: &str = "INSUFFICIENT_RESOURCES";
    /// 503: the NF is congested.
    pub const NF_CONGESTION: &str = "NF_CONGESTION";
}

/// One entry of `invalidParams` (TS 29.571 `InvalidParam`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvalidParam {
    /// The attribute, as a JSON pointer (or `header X`, `query X`).
    pub param: String,
    /// Why it is invalid.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
}

/// Problem details (TS 29.571 `ProblemDetails`): the body of every 4xx/5xx answer of the
/// AAnF and the NEF.
///
/// Decoding is tolerant where the other bodies of this crate are strict: attributes this
/// type does not model (`accessTokenError`, `nrfId`, …) are skipped, so that a client can
/// always read the status and cause an NF sent; the modelled ones must have their types.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProblemDetails {
    /// A URI naming the problem type (RFC 9457 §3.1.1).
    #[serde(rename = "type", skip_serializing_if = "Option::is_none", default)]
    pub type_uri: Option<String>,
    /// A short summary.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub title: Option<String>,
    /// The HTTP status code.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub status: Option<u16>,
    /// An explanation of this occurrence.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub detail: Option<String>,
    /// A URI naming this occurrence.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub instance: Option<String>,
    /// The application error (see [`cause`]).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cause: Option<String>,
    /// The attributes at fault (at least one when present, TS 29.571).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub invalid_params: Vec<InvalidParam>,
    /// The features the NF supports.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub supported_features: Option<String>,
}

impl ProblemDetails {
    /// The media type of the body (TS 29.500 §5.2.7.1).
    pub const MEDIA_TYPE: &'static str = "application/problem+json";

    /// A problem with `status` and, if given, `cause`; nothing else.
    pub fn new(status: u16, cause: Option<&str>) -> ProblemDetails {
        ProblemDetails {
            type_uri: None,
            title: None,
            status: Some(status),
            detail: None,
            instance: None,
            cause: cause.map(Into::into),
            invalid_params: Vec::new(),
            supported_features: None,
        }
    }

    /// The JSON body.
    pub fn to_json(&self) -> Vec<u8> {
        // A struct of strings and integers always serialises.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads problem details (size-limited like every body of this crate).
    ///
    /// # Errors
    /// [`crate::DecodeError`] for a body over [`crate::MAX_BODY`] or not a `ProblemDetails`.
    pub fn from_json(body: &[u8]) -> Result<ProblemDetails, crate::DecodeError> {
        crate::wire::check_size(body)?;
        Ok(serde_json::from_slice(body)?)
    }
}
