//! The operations of the two APIs: paths, methods, answers and OAuth2 scopes, as the
//! OpenAPI files define them (`openapi/`).

/// The API root path of Naanf_AKMA, version 1 (TS 29.535 §5.1.1; the OpenAPI file's
/// `info.version` is 1.2.0).
pub const NAANF_AKMA_ROOT: &str = "/naanf-akma/v1";
/// The API root path of the NEF's AKMA API (TS 29.522 §5.14.1; `info.version` 1.1.0).
pub const NEF_AKMA_ROOT: &str = "/3gpp-akma/v1";

/// OAuth2 scopes of Naanf_AKMA (TS29535_Naanf_AKMA.yaml `securitySchemes`).
pub mod scope {
    /// Access to the API.
    pub const NAANF_AKMA: &str = "naanf-akma";
    /// Register and remove AKMA key material (the AUSF).
    pub const ANCHORKEY: &str = "naanf-akma:anchorkey";
    /// Request K_AF (the AF, the NEF).
    pub const APPLICATIONKEYGET: &str = "naanf-akma:applicationkeyget";
    /// Receive the SUPI with K_AF.
    pub const SUPI_ACCESS: &str = "naanf-akma:applicationkeyget:supi-access";
    /// Receive the GPSI from the NEF (TS29522_AKMA.yaml).
    pub const NEF_GPSI_ACCESS: &str = "nnef-akma:gpsi-access";
}

/// One operation of the two APIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// `POST /naanf-akma/v1/register-anchorkey` (AUSF; `AkmaKeyInfo` in and out, 200).
    RegisterAnchorKey,
    /// `POST /naanf-akma/v1/retrieve-applicationkey` (AF, NEF; `AkmaAfKeyRequest` in,
    /// `AkmaAfKeyData` out with 200, or 204 when the context does not exist).
    RetrieveApplicationKey,
    /// `POST /naanf-akma/v1/remove-context` (AUSF; `CtxRemove` in, 204).
    RemoveContext,
    /// `POST /3gpp-akma/v1/retrieve` (AF through the NEF; `AkmaAfKeyRequest` in,
    /// `NefAkmaAfKeyData` out with 200, or 204).
    NefRetrieve,
}

impl Operation {
    /// Every operation.
    pub const ALL: [Operation; 4] = [
        Operation::RegisterAnchorKey,
        Operation::RetrieveApplicationKey,
        Operation::RemoveContext,
        Operation::NefRetrieve,
    ];

    /// The full path (API root and operation).
    pub const fn path(self) -> &'static str {
        match self {
            Operation::RegisterAnchorKey => "/naanf-akma/v1/register-anchorkey",
            Operation::RetrieveApplicationKey => "/naanf-akma/v1/retrieve-applicationkey",
            Operation::RemoveContext => "/naanf-akma/v1/remove-context",
            Operation::NefRetrieve => "/3gpp-akma/v1/retrieve",
        }
    }

    /// The operation at `path`, if any (the method is always POST).
    pub fn from_path(path: &str) -> Option<Operation> {
        Operation::ALL.into_iter().find(|op| op.path() == path)
    }

    /// The status of a successful answer (a retrieval may also answer 204: no context).
    pub const fn success_status(self) -> u16 {
        match self {
            Operation::RegisterAnchorKey
            | Operation::RetrieveApplicationKey
            | Operation::NefRetrieve => 200,
            Operation::RemoveContext => 204,
        }
    }

    /// The OAuth2 scope a token must carry for this operation, beyond the API's own
    /// (`naanf-akma`); `None` for the NEF API, whose file names no operation scope.
    pub const fn scope(self) -> Option<&'static str> {
        match self {
            Operation::RegisterAnchorKey | Operation::RemoveContext => Some(scope::ANCHORKEY),
            Operation::RetrieveApplicationKey => Some(scope::APPLICATIONKEYGET),
            Operation::NefRetrieve => None,
        }
    }
}
