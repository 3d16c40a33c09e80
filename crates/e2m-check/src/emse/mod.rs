//! The EMSE checks: the checker acts as the HSS towards the EMKS the EMSE uses (so it knows
//! every key the EMSE will fetch) and as UEs towards the EMSE, over DTLS 1.2 PSK and, where
//! the EMSE offers it, OSCORE.

mod checks;
mod dtls_wire;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use e2m_dtls::DtlsLimits;
use e2m_dtls::client::{DtlsClient, UeDtlsConfig};
use e2m_https::pki::{Credentials, PkiDir};
use e2m_kdf::{E2mKey, E2mProfile};
use e2m_msg::rest;
use e2m_msg::{
    AppIdentity, EmseId, IntermediateKeyPush, KeyId, KeyIdSource, PskIdentity, Timestamp,
    XmlMessage,
};
use rustls::ClientConfig;
use rustls::pki_types::CertificateDer;
use zeroize::Zeroizing;

use crate::emks::{Cleanup, run_table};
use crate::plan::{Ue, UePlan};
use crate::report::Report;
use crate::select::Selection;
use crate::verdict::{CheckInfo, Stop, fail};
use crate::wire::{self, BaseUrl, Request};

/// Everything the EMSE checks need: where the EMSE listens, its EMSE_Id, and the EMKS it
/// fetches keys from (with the HSS credentials to push keys there).
#[derive(Debug)]
#[non_exhaustive]
pub struct EmseTarget {
    /// The EMSE's DTLS address.
    pub dtls: SocketAddr,
    /// The EMSE's OSCORE address, if it offers OSCORE (the OSCORE checks are skipped
    /// otherwise).
    pub oscore: Option<SocketAddr>,
    /// The EMSE's EMSE_Id (what its keys are derived for).
    pub emse_id: EmseId,
    /// `https://host[:port]` of the EMKS the EMSE fetches from.
    pub emks_url: String,
    /// The CA of that EMKS's certificates.
    pub ca: Vec<CertificateDer<'static>>,
    /// HSS credentials the EMKS accepts pushes from.
    pub hss: Credentials,
    /// The UEs (the EMKS must have the shared identities provisioned for `emse_id`).
    pub plan: UePlan,
    /// How many keys the EMKS keeps per UE.
    pub keys_per_ue: usize,
    /// The derivation profile.
    pub profile: E2mProfile<'static>,
    /// The Uri-Path of the CoAP request sent after a handshake (any answer will do).
    pub coap_path: String,
    /// Time allowed for a handshake that must succeed.
    pub handshake_timeout: Duration,
    /// Time allowed for the alert of a handshake that must fail.
    pub alert_wait: Duration,
    /// Time allowed for one HTTP exchange with the EMKS.
    pub request_timeout: Duration,
    /// How far before now the checker dates the keys it pushes.
    pub clock_margin: Duration,
    /// Time allowed for one whole check.
    pub check_timeout: Duration,
}

impl EmseTarget {
    /// A target with e2m's defaults.
    pub fn new(
        dtls: SocketAddr,
        emse_id: EmseId,
        emks_url: &str,
        ca: Vec<CertificateDer<'static>>,
        hss: Credentials,
        plan: UePlan,
    ) -> EmseTarget {
        EmseTarget {
            dtls,
            oscore: None,
            emse_id,
            emks_url: emks_url.to_owned(),
            ca,
            hss,
            plan,
            keys_per_ue: 4,
            profile: E2mProfile::PROVISIONAL,
            coap_path: "e2m-check".into(),
            handshake_timeout: Duration::from_secs(10),
            alert_wait: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            clock_margin: Duration::from_secs(2),
            check_timeout: Duration::from_secs(60),
        }
    }

    /// A target whose EMKS credentials come from a PKI directory in e2m's layout.
    ///
    /// # Errors
    /// A message naming what could not be loaded.
    pub fn from_pki_dir(
        dtls: SocketAddr,
        emse_id: EmseId,
        emks_url: &str,
        pki: &PkiDir,
        plan: UePlan,
    ) -> Result<EmseTarget, String> {
        let ca = pki.ca_certificates().map_err(|e| e.to_string())?;
        let hss = pki.hss().map_err(|e| e.to_string())?;
        Ok(EmseTarget::new(dtls, emse_id, emks_url, ca, hss, plan))
    }
}

/// The EMSE checks, in the order they run.
pub fn emse_checks() -> Vec<CheckInfo> {
    checks::CHECKS.iter().map(|c| c.info).collect()
}

/// Runs the selected EMSE checks against `target`.
///
/// # Errors
/// A message if the run cannot start (a bad EMKS URL or certificate).
pub async fn run_emse(target: EmseTarget, selection: &Selection) -> Result<Report, String> {
    let started = Instant::now();
    let emks = BaseUrl::parse(&target.emks_url)
        .map_err(|e| format!("EMKS URL {}: {e}", target.emks_url))?;
    let hss = wire::client_config(&target.ca, Some(&target.hss))?;
    let mut label = format!("dtls://{}", target.dtls);
    if let Some(o) = target.oscore {
        label.push_str(&format!(", oscore://{o}"));
    }
    let timeout = target.check_timeout;
    let cx = Arc::new(EmseCx {
        t: target,
        emks,
        hss,
        clock: Mutex::new(0),
    });
    let mut report = Report::new("emse", label);
    report.results = run_table(&cx, checks::CHECKS, selection, timeout).await;
    report.duration = started.elapsed();
    Ok(report)
}

/// A key the checker pushed for a UE of the EMSE.
pub(crate) struct Pushed {
    pub(crate) key_id: u32,
    pub(crate) int_key: Zeroizing<[u8; 32]>,
}

/// The EMSE checks' context.
pub(crate) struct EmseCx {
    pub(crate) t: EmseTarget,
    emks: BaseUrl,
    hss: Arc<ClientConfig>,
    clock: Mutex<u64>,
}

impl Cleanup for EmseCx {
    async fn cleanup(&self) {
        // Every UE connection is closed by the check that opened it; the EMSE keeps
        // nothing of the checker's beyond its key cache, which expires by itself.
    }
}

impl EmseCx {
    fn next_created(&self) -> Timestamp {
        let now = Timestamp::now_from_system_clock()
            .saturating_sub(self.t.clock_margin)
            .as_unix_millis();
        let mut last = self.clock.lock().unwrap_or_else(PoisonError::into_inner);
        *last = (*last + 1).max(now);
        Timestamp::from_unix_millis(*last)
    }

    /// The HSS pushes a fresh key for `ue` to the EMSE's EMKS: 204.
    pub(crate) async fn push(&self, ue: &Ue) -> Result<Pushed, Stop> {
        let pushed = Pushed {
            key_id: crate::emks::random_u32()?,
            int_key: Zeroizing::new(crate::emks::random::<32>()?),
        };
        let body = IntermediateKeyPush {
            imsi: ue.imsi.clone(),
            key_id: KeyIdSource::RandLsb32(KeyId::from_u32(pushed.key_id)),
            int_key: e2m_msg::E2mIntKey::from_array(*pushed.int_key),
            created: self.next_created(),
        }
        .encode();
        let request = Request::new("POST", rest::INTERMEDIATE_KEYS_PATH).xml(body.as_bytes());
        match wire::send(&self.emks, &self.hss, request, self.t.request_timeout).await {
            Ok((ex, _)) if ex.status == 204 => Ok(pushed),
            Ok((ex, _)) => fail!(
                "the EMKS refused the checker's key push: {}",
                crate::emks::describe(&ex)
            ),
            Err(e) => fail!("key push to the EMKS at {}: {e}", self.emks),
        }
    }

    /// The UE's `e2m_key` for `pushed`, derived here for the EMSE's EMSE_Id.
    pub(crate) fn ue_key(&self, pushed: &Pushed) -> Result<E2mKey, Stop> {
        match crate::kdf::e2m_key(&pushed.int_key, self.t.emse_id.as_str(), &self.t.profile) {
            Some(k) => Ok(E2mKey::from_array(*k)),
            None => fail!("the checker cannot derive for this EMSE_Id"),
        }
    }

    /// A DTLS handshake with any `psk_identity` octets and `psk`, within `deadline`.
    pub(crate) async fn connect_raw(
        &self,
        identity: &[u8],
        psk: &E2mKey,
        deadline: Duration,
    ) -> Result<Result<DtlsClient, e2m_dtls::DtlsError>, Stop> {
        let limits = DtlsLimits {
            handshake_timeout: deadline,
            ..DtlsLimits::default()
        };
        let config = match UeDtlsConfig::with_raw_identity(identity.to_vec(), psk, limits) {
            Ok(c) => c,
            Err(e) => fail!("UE configuration: {e}"),
        };
        Ok(DtlsClient::connect(self.t.dtls, &config).await)
    }

    /// A DTLS handshake as the UE `app` on key id `key_id` with `psk`, within `deadline`.
    pub(crate) async fn connect(
        &self,
        app: &AppIdentity,
        key_id: u32,
        psk: &E2mKey,
        deadline: Duration,
    ) -> Result<Result<DtlsClient, e2m_dtls::DtlsError>, Stop> {
        let identity = PskIdentity::new(app.clone(), KeyId::from_u32(key_id));
        let limits = DtlsLimits {
            handshake_timeout: deadline,
            ..DtlsLimits::default()
        };
        let config = match UeDtlsConfig::new(&identity, psk, limits) {
            Ok(c) => c,
            Err(e) => fail!("UE configuration: {e}"),
        };
        Ok(DtlsClient::connect(self.t.dtls, &config).await)
    }
}
