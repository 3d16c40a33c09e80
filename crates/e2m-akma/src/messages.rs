//! The request and response bodies of Naanf_AKMA (TS 29.535 §5.1.6, OpenAPI
//! `TS29535_Naanf_AKMA.yaml`) and of the NEF AKMA API (TS 29.522 §5.14, `TS29522_AKMA.yaml`).

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use zeroize::Zeroizing;

use e2m_kdf::{Kaf, Kakma};
use e2m_keyid::akma::{AKid, AfId, Gpsi, Supi};
use e2m_types::Timestamp;

use crate::wire::{self, HexKey, JsonBody, boolean, hex_key, optional, required, typed};
use crate::{DecodeError, NotifUri, SupportedFeatures};

const SUPI_REASON: &str = "not a SUPI (imsi-<6 to 15 digits>, nai-/gci-/gli-<NAI>)";
const GPSI_REASON: &str = "not a GPSI (msisdn-<5 to 15 digits>, extid-<NAI>)";
const AKID_REASON: &str = "not an A-KID (an NAI username@realm of at most 253 octets)";
const AFID_REASON: &str = "not an AF_ID (<fqdn>;ua=<10 hex digits>)";
const FEAT_REASON: &str = "not supported features (hex digits)";
const URI_REASON: &str = "not an absolute http(s) URI";
const TIME_REASON: &str = "not a date-time (YYYY-MM-DDThh:mm:ss[.fff]Z)";

/// The UE a K_AKMA belongs to (TS 29.535 `AkmaKeyInfo`: exactly one of SUPI and GPSI):
/// the identifier crate's type, so that the stores and the AAnF core name it without this
/// crate.
pub use e2m_keyid::akma::UeId;

/// `AkmaKeyInfo`: the AUSF registers K_AKMA and the A-KID of a UE with the AAnF
/// (`POST …/register-anchorkey`, TS 29.535 §5.1.4.2); also the body of its 200 answer.
#[derive(Debug)]
pub struct AkmaKeyInfo {
    /// The UE (`supi` or `gpsi`; the schema requires exactly one).
    pub ue: UeId,
    /// The A-KID (`aKId`).
    pub a_kid: AKid,
    /// K_AKMA (`kAkma`, 64 hex digits).
    pub k_akma: Kakma,
    /// Supported features (`suppFeat`).
    pub supp_feat: Option<SupportedFeatures>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AkmaKeyInfoIn<'a> {
    #[serde(rename = "suppFeat", borrow, default)]
    supp_feat: Option<&'a RawValue>,
    #[serde(borrow, default)]
    supi: Option<&'a RawValue>,
    #[serde(borrow, default)]
    gpsi: Option<&'a RawValue>,
    #[serde(rename = "aKId", borrow, default)]
    a_kid: Option<&'a RawValue>,
    #[serde(rename = "kAkma", borrow, default)]
    k_akma: Option<&'a RawValue>,
}

#[derive(Serialize)]
struct AkmaKeyInfoOut<'a> {
    #[serde(rename = "suppFeat", skip_serializing_if = "Option::is_none")]
    supp_feat: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    supi: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gpsi: Option<&'a str>,
    #[serde(rename = "aKId")]
    a_kid: &'a str,
    #[serde(rename = "kAkma")]
    k_akma: HexKey<'a>,
}

impl JsonBody for AkmaKeyInfo {
    fn from_json(body: &[u8]) -> Result<Self, DecodeError> {
        let raw: AkmaKeyInfoIn<'_> = wire::parse(body)?;
        let ue = match (raw.supi, raw.gpsi) {
            (Some(supi), None) => UeId::Supi(typed(supi, "/supi", true, SUPI_REASON, Supi::parse)?),
            (None, Some(gpsi)) => UeId::Gpsi(typed(gpsi, "/gpsi", true, GPSI_REASON, Gpsi::parse)?),
            (None, None) => return Err(DecodeError::Missing { ie: "/supi" }),
            (Some(_), Some(_)) => {
                return Err(DecodeError::Incorrect {
                    ie: "/gpsi",
                    mandatory: true,
                    reason: "supi and gpsi are exclusive",
                });
            }
        };
        Ok(AkmaKeyInfo {
            ue,
            a_kid: typed(
                required(raw.a_kid, "/aKId")?,
                "/aKId",
                true,
                AKID_REASON,
                AKid::parse,
            )?,
            k_akma: hex_key(required(raw.k_akma, "/kAkma")?, "/kAkma", Kakma::from_hex)?,
            supp_feat: optional(
                raw.supp_feat,
                "/suppFeat",
                FEAT_REASON,
                SupportedFeatures::parse,
            )?,
        })
    }

    fn to_json(&self) -> Zeroizing<Vec<u8>> {
        let (supi, gpsi) = match &self.ue {
            UeId::Supi(supi) => (Some(supi.to_string()), None),
            UeId::Gpsi(gpsi) => (None, Some(gpsi.as_str())),
        };
        wire::write(&AkmaKeyInfoOut {
            supp_feat: self.supp_feat.as_ref().map(SupportedFeatures::as_str),
            supi,
            gpsi,
            a_kid: self.a_kid.as_str(),
            k_akma: HexKey(self.k_akma.expose_secret()),
        })
    }
}

/// `CtxRemove`: the AUSF asks the AAnF to remove the AKMA context of a UE
/// (`POST …/remove-context`, TS 29.535 §5.1.4.4). The schema leaves `supi` optional; its
/// description ("the supi attribute shall be included") makes it mandatory here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CtxRemove {
    /// The UE whose context goes.
    pub supi: Supi,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CtxRemoveIn<'a> {
    #[serde(borrow, default)]
    supi: Option<&'a RawValue>,
}

#[derive(Serialize)]
struct CtxRemoveOut {
    supi: String,
}

impl JsonBody for CtxRemove {
    fn from_json(body: &[u8]) -> Result<Self, DecodeError> {
        let raw: CtxRemoveIn<'_> = wire::parse(body)?;
        Ok(CtxRemove {
            supi: typed(
                required(raw.supi, "/supi")?,
                "/supi",
                true,
                SUPI_REASON,
                Supi::parse,
            )?,
        })
    }

    fn to_json(&self) -> Zeroizing<Vec<u8>> {
        wire::write(&CtxRemoveOut {
            supi: self.supi.to_string(),
        })
    }
}

/// `AkmaAfKeyRequest` (TS 29.522 schema, used by both APIs): an AF asks for K_AF by A-KID
/// (`POST /naanf-akma/v1/retrieve-applicationkey`, TS 29.535 §5.1.4.3; `POST
/// /3gpp-akma/v1/retrieve` through the NEF, TS 29.522 §5.14.3.2).
///
/// `af_id` is what the AF *says*; the AAnF derives K_AF for the AF_ID of the authenticated
/// AF and refuses a body that names another (see DESIGN-AANF.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AkmaAfKeyRequest {
    /// The AF_ID (`afId`, e2m's text form `<fqdn>;ua=<hex>`).
    pub af_id: AfId,
    /// The A-KID the UE presented (`aKId`).
    pub a_kid: AKid,
    /// Where to send the service-disablement notification (`notifUri`).
    pub notif_uri: Option<NotifUri>,
    /// Anonymous user access (`anonInd`, default false): the AF gets K_AF and its expiry,
    /// no SUPI or GPSI (TS 33.535 §7.1.5, `Naanf_AKMA_ApplicationKey_AnonUser_Get`).
    pub anon_ind: bool,
    /// Supported features (`suppFeat`).
    pub supp_feat: Option<SupportedFeatures>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AkmaAfKeyRequestIn<'a> {
    #[serde(rename = "suppFeat", borrow, default)]
    supp_feat: Option<&'a RawValue>,
    #[serde(rename = "notifUri", borrow, default)]
    notif_uri: Option<&'a RawValue>,
    #[serde(rename = "afId", borrow, default)]
    af_id: Option<&'a RawValue>,
    #[serde(rename = "aKId", borrow, default)]
    a_kid: Option<&'a RawValue>,
    #[serde(rename = "anonInd", borrow, default)]
    anon_ind: Option<&'a RawValue>,
}

#[derive(Serialize)]
struct AkmaAfKeyRequestOut<'a> {
    #[serde(rename = "suppFeat", skip_serializing_if = "Option::is_none")]
    supp_feat: Option<&'a str>,
    #[serde(rename = "notifUri", skip_serializing_if = "Option::is_none")]
    notif_uri: Option<&'a str>,
    #[serde(rename = "afId")]
    af_id: String,
    #[serde(rename = "aKId")]
    a_kid: &'a str,
    #[serde(rename = "anonInd", skip_serializing_if = "core::ops::Not::not")]
    anon_ind: bool,
}

impl JsonBody for AkmaAfKeyRequest {
    fn from_json(body: &[u8]) -> Result<Self, DecodeError> {
        let raw: AkmaAfKeyRequestIn<'_> = wire::parse(body)?;
        Ok(AkmaAfKeyRequest {
            af_id: typed(
                required(raw.af_id, "/afId")?,
                "/afId",
                true,
                AFID_REASON,
                AfId::parse,
            )?,
            a_kid: typed(
                required(raw.a_kid, "/aKId")?,
                "/aKId",
                true,
                AKID_REASON,
                AKid::parse,
            )?,
            notif_uri: optional(raw.notif_uri, "/notifUri", URI_REASON, NotifUri::parse)?,
            anon_ind: raw
                .anon_ind
                .map(|v| boolean(v, "/anonInd"))
                .transpose()?
                .unwrap_or(false),
            supp_feat: optional(
                raw.supp_feat,
                "/suppFeat",
                FEAT_REASON,
                SupportedFeatures::parse,
            )?,
        })
    }

    fn to_json(&self) -> Zeroizing<Vec<u8>> {
        wire::write(&AkmaAfKeyRequestOut {
            supp_feat: self.supp_feat.as_ref().map(SupportedFeatures::as_str),
            notif_uri: self.notif_uri.as_ref().map(NotifUri::as_str),
            af_id: self.af_id.to_string(),
            a_kid: self.a_kid.as_str(),
            anon_ind: self.anon_ind,
        })
    }
}

/// `AkmaAfKeyData` as the AAnF answers it (TS 29.535 §5.1.4.3, 200): K_AF, its expiry, and
/// the SUPI or GPSI where the AF may have it (never for an anonymous request).
#[derive(Debug)]
pub struct AkmaAfKeyData {
    /// K_AF (`kaf`, 64 hex digits).
    pub kaf: Kaf,
    /// When K_AF expires (`expiry`): never after the K_AKMA it comes from.
    pub expiry: Timestamp,
    /// The SUPI (`supi`), for an AF inside the operator's domain allowed it (scope
    /// `naanf-akma:applicationkeyget:supi-access`).
    pub supi: Option<Supi>,
    /// The GPSI (`gpsi`).
    pub gpsi: Option<Gpsi>,
    /// Supported features (`suppFeat`).
    pub supp_feat: Option<SupportedFeatures>,
}

/// `AkmaAfKeyData` as the NEF answers it (TS 29.522 §5.14.3.2, 200): the type has no SUPI,
/// so the NEF cannot send one (an AF outside the operator's domain gets the GPSI, if
/// anything: TS 33.535, AKMA via the NEF). Reading an answer that carries `supi` fails as an unknown
/// attribute.
#[derive(Debug)]
pub struct NefAkmaAfKeyData {
    /// K_AF (`kaf`).
    pub kaf: Kaf,
    /// When K_AF expires (`expiry`).
    pub expiry: Timestamp,
    /// The GPSI (`gpsi`), where the AF is allowed it (scope `nnef-akma:gpsi-access`).
    pub gpsi: Option<Gpsi>,
    /// Supported features (`suppFeat`).
    pub supp_feat: Option<SupportedFeatures>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AkmaAfKeyDataIn<'a> {
    #[serde(rename = "suppFeat", borrow, default)]
    supp_feat: Option<&'a RawValue>,
    #[serde(borrow, default)]
    gpsi: Option<&'a RawValue>,
    #[serde(borrow, default)]
    expiry: Option<&'a RawValue>,
    #[serde(borrow, default)]
    kaf: Option<&'a RawValue>,
    #[serde(borrow, default)]
    supi: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NefAkmaAfKeyDataIn<'a> {
    #[serde(rename = "suppFeat", borrow, default)]
    supp_feat: Option<&'a RawValue>,
    #[serde(borrow, default)]
    gpsi: Option<&'a RawValue>,
    #[serde(borrow, default)]
    expiry: Option<&'a RawValue>,
    #[serde(borrow, default)]
    kaf: Option<&'a RawValue>,
}

#[derive(Serialize)]
struct AkmaAfKeyDataOut<'a> {
    #[serde(rename = "suppFeat", skip_serializing_if = "Option::is_none")]
    supp_feat: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gpsi: Option<&'a str>,
    expiry: &'a str,
    kaf: HexKey<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    supi: Option<String>,
}

fn expiry(raw: Option<&RawValue>) -> Result<Timestamp, DecodeError> {
    typed(
        required(raw, "/expiry")?,
        "/expiry",
        true,
        TIME_REASON,
        |t: &str| t.parse::<Timestamp>(),
    )
}

impl JsonBody for AkmaAfKeyData {
    fn from_json(body: &[u8]) -> Result<Self, DecodeError> {
        let raw: AkmaAfKeyDataIn<'_> = wire::parse(body)?;
        Ok(AkmaAfKeyData {
            kaf: hex_key(required(raw.kaf, "/kaf")?, "/kaf", Kaf::from_hex)?,
            expiry: expiry(raw.expiry)?,
            supi: optional(raw.supi, "/supi", SUPI_REASON, Supi::parse)?,
            gpsi: optional(raw.gpsi, "/gpsi", GPSI_REASON, Gpsi::parse)?,
            supp_feat: optional(
                raw.supp_feat,
                "/suppFeat",
                FEAT_REASON,
                SupportedFeatures::parse,
            )?,
        })
    }

    fn to_json(&self) -> Zeroizing<Vec<u8>> {
        let expiry = self.expiry.to_text();
        wire::write(&AkmaAfKeyDataOut {
            supp_feat: self.supp_feat.as_ref().map(SupportedFeatures::as_str),
            gpsi: self.gpsi.as_ref().map(Gpsi::as_str),
            expiry: expiry.as_str(),
            kaf: HexKey(self.kaf.expose_secret()),
            supi: self.supi.as_ref().map(Supi::to_string),
        })
    }
}

impl JsonBody for NefAkmaAfKeyData {
    fn from_json(body: &[u8]) -> Result<Self, DecodeError> {
        let raw: NefAkmaAfKeyDataIn<'_> = wire::parse(body)?;
        Ok(NefAkmaAfKeyData {
            kaf: hex_key(required(raw.kaf, "/kaf")?, "/kaf", Kaf::from_hex)?,
            expiry: expiry(raw.expiry)?,
            gpsi: optional(raw.gpsi, "/gpsi", GPSI_REASON, Gpsi::parse)?,
            supp_feat: optional(
                raw.supp_feat,
                "/suppFeat",
                FEAT_REASON,
                SupportedFeatures::parse,
            )?,
        })
    }

    fn to_json(&self) -> Zeroizing<Vec<u8>> {
        let expiry = self.expiry.to_text();
        wire::write(&AkmaAfKeyDataOut {
            supp_feat: self.supp_feat.as_ref().map(SupportedFeatures::as_str),
            gpsi: self.gpsi.as_ref().map(Gpsi::as_str),
            expiry: expiry.as_str(),
            kaf: HexKey(self.kaf.expose_secret()),
            supi: None,
        })
    }
}

impl From<AkmaAfKeyData> for NefAkmaAfKeyData {
    /// What the NEF passes on of the AAnF's answer: everything but the SUPI.
    fn from(data: AkmaAfKeyData) -> Self {
        NefAkmaAfKeyData {
            kaf: data.kaf,
            expiry: data.expiry,
            gpsi: data.gpsi,
            supp_feat: data.supp_feat,
        }
    }
}

/// `ServiceDisableNotif`: the AAnF (or the NEF) tells an AF that AKMA is disabled for the UE
/// behind an A-KID (the `ServiceDisablementNotification` callback to the request's
/// `notifUri`; TS 29.535 §5.1.5.2, `Naanf_AKMA_ServiceDisableNotification` of TS 33.535
/// §7.1). The AF answers 204.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceDisableNotif {
    /// The A-KID whose context is gone (`aKId`).
    pub a_kid: AKid,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceDisableNotifIn<'a> {
    #[serde(rename = "aKId", borrow, default)]
    a_kid: Option<&'a RawValue>,
}

#[derive(Serialize)]
struct ServiceDisableNotifOut<'a> {
    #[serde(rename = "aKId")]
    a_kid: &'a str,
}

impl JsonBody for ServiceDisableNotif {
    fn from_json(body: &[u8]) -> Result<Self, DecodeError> {
        let raw: ServiceDisableNotifIn<'_> = wire::parse(body)?;
        Ok(ServiceDisableNotif {
            a_kid: typed(
                required(raw.a_kid, "/aKId")?,
                "/aKId",
                true,
                AKID_REASON,
                AKid::parse,
            )?,
        })
    }

    fn to_json(&self) -> Zeroizing<Vec<u8>> {
        wire::write(&ServiceDisableNotifOut {
            a_kid: self.a_kid.as_str(),
        })
    }
}
