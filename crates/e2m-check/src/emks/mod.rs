//! The EMKS checks: the checker acts as the HSS (it pushes its own intermediate keys, so it
//! knows every `e2m_key` an EMSE must get) and as two EMSEs with the certificates it is
//! given, over the REST binding with mutual TLS, and runs its own notification endpoint.

mod checks;
mod cx;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2m_https::pki::{Credentials, PkiDir};
use e2m_kdf::E2mProfile;
use e2m_msg::EmseId;
use rustls::pki_types::CertificateDer;

use crate::plan::UePlan;
use crate::report::Report;
use crate::select::Selection;
use crate::verdict::{CheckDef, CheckInfo, CheckResult, Stop, Verdict};
use crate::xsd::XmlLint;

pub(crate) use cx::{EmksCx, describe, random, random_u32};

/// An EMSE the checker acts as: its EMSE_Id and the credentials of its certificate.
#[derive(Debug)]
#[non_exhaustive]
pub struct EmseCredentials {
    /// Its EMSE_Id (what it registers with and what keys are derived for).
    pub id: EmseId,
    /// Its certificate and key.
    pub credentials: Credentials,
}

impl EmseCredentials {
    /// An EMSE with this id and these credentials.
    pub fn new(id: EmseId, credentials: Credentials) -> Self {
        EmseCredentials { id, credentials }
    }
}

/// Everything the EMKS checks need to know about the EMKS under test. Build it with
/// [`EmksTarget::new`] or [`EmksTarget::from_pki_dir`] and adjust the public fields.
#[derive(Debug)]
#[non_exhaustive]
pub struct EmksTarget {
    /// `https://host[:port]` of the EMKS.
    pub url: String,
    /// The CA certificates the EMKS's certificate chains to (and that the EMKS trusts for
    /// the checker's client certificates).
    pub ca: Vec<CertificateDer<'static>>,
    /// The HSS's credentials (an HSS client certificate the EMKS accepts pushes from).
    pub hss: Credentials,
    /// The first EMSE the checker acts as.
    pub emse_a: EmseCredentials,
    /// The second EMSE (key separation, sessions bound to certificates).
    pub emse_b: EmseCredentials,
    /// The UEs the checker uses (the provisioning contract, see [`UePlan`]).
    pub plan: UePlan,
    /// Whether the operator lets the first EMSE name UEs by IMSI (seed case 1).
    pub imsi_allowed_a: bool,
    /// Whether the operator lets the second EMSE name UEs by IMSI.
    pub imsi_allowed_b: bool,
    /// How many intermediate keys the EMKS keeps per UE (its retention policy; e2m's
    /// default is 4).
    pub keys_per_ue: usize,
    /// How many sessions one EMSE may hold before a registration replaces its oldest
    /// (e2m's default is 64; the checker registers one more).
    pub sessions_per_emse: usize,
    /// How long after its creation the EMKS serves an intermediate key (e2m's default is
    /// 24 hours).
    pub key_max_age: Duration,
    /// The derivation profile (FCs and labels; e2m's provisional one by default).
    pub profile: E2mProfile<'static>,
    /// Where the checker's notification endpoint listens (port 0: any free port).
    pub callback_listen: SocketAddr,
    /// The host the callback URI names (default: the listening IP address). It must be a
    /// host the first EMSE's certificate names, or one the EMKS allows.
    pub callback_host: Option<String>,
    /// The certificate and key the notification endpoint serves (`serverAuth`, naming the
    /// callback host; e2m's layout: `callback-<EMSE_Id>.pem`). `None`: the first EMSE's
    /// client credentials, for a PKI whose EMSE certificates carry `serverAuth` too.
    pub callback_credentials: Option<Credentials>,
    /// Time allowed for one HTTP exchange.
    pub request_timeout: Duration,
    /// Time allowed for a notification to arrive.
    pub notification_wait: Duration,
    /// How long to wait, after a key's expiry, for its `key-retired` notification (the
    /// EMKS's sweep period and some); `None` skips that check (e2m's sweep runs every 30 s).
    pub expiry_notification_wait: Option<Duration>,
    /// How long the checker watches for a notification that must not come.
    pub quiet_period: Duration,
    /// How far before now the checker dates the keys it pushes (room for a clock skew
    /// between the checker and the EMKS: a creation time in the EMKS's future is taken as
    /// its now, which would tie the order of keys).
    pub clock_margin: Duration,
    /// Whether answers are also validated with `xmllint`.
    pub xmllint: XmlLint,
    /// Time allowed for one whole check.
    pub check_timeout: Duration,
}

impl EmksTarget {
    /// A target with e2m's defaults for every policy setting.
    pub fn new(
        url: &str,
        ca: Vec<CertificateDer<'static>>,
        hss: Credentials,
        emse_a: EmseCredentials,
        emse_b: EmseCredentials,
        plan: UePlan,
    ) -> EmksTarget {
        EmksTarget {
            url: url.to_owned(),
            ca,
            hss,
            emse_a,
            emse_b,
            plan,
            imsi_allowed_a: false,
            imsi_allowed_b: false,
            keys_per_ue: 4,
            sessions_per_emse: 64,
            key_max_age: Duration::from_secs(24 * 60 * 60),
            profile: E2mProfile::PROVISIONAL,
            callback_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            callback_host: None,
            callback_credentials: None,
            request_timeout: Duration::from_secs(10),
            notification_wait: Duration::from_secs(10),
            expiry_notification_wait: None,
            quiet_period: Duration::from_millis(1500),
            clock_margin: Duration::from_secs(2),
            xmllint: XmlLint::Auto,
            check_timeout: Duration::from_secs(60),
        }
    }

    /// A target from a PKI directory in e2m's layout (`ca.pem`, `hss.pem` + `hss.key`,
    /// `emse-<EMSE_Id>.pem` + `.key`, and for the first EMSE's notification endpoint
    /// `callback-<EMSE_Id>.pem` + `.key` when present; what `emks gen-pki` and `check init`
    /// write).
    ///
    /// # Errors
    /// A message naming the file that could not be loaded.
    pub fn from_pki_dir(
        url: &str,
        pki: &PkiDir,
        emse_a: &EmseId,
        emse_b: &EmseId,
        plan: UePlan,
    ) -> Result<EmksTarget, String> {
        let ca = pki.ca_certificates().map_err(|e| e.to_string())?;
        let hss = pki.hss().map_err(|e| e.to_string())?;
        let a = pki.emse(emse_a).map_err(|e| e.to_string())?;
        let b = pki.emse(emse_b).map_err(|e| e.to_string())?;
        let callback = if pki.callback_paths_for(emse_a).0.exists() {
            Some(pki.emse_callback(emse_a).map_err(|e| e.to_string())?)
        } else {
            None
        };
        let mut target = EmksTarget::new(
            url,
            ca,
            hss,
            EmseCredentials::new(emse_a.clone(), a),
            EmseCredentials::new(emse_b.clone(), b),
            plan,
        );
        target.callback_credentials = callback;
        Ok(target)
    }
}

/// The EMKS checks, in the order they run.
pub fn emks_checks() -> Vec<CheckInfo> {
    checks::CHECKS.iter().map(|c| c.info).collect()
}

/// Runs the selected EMKS checks against `target` and reports each verdict.
///
/// # Errors
/// A message if the run cannot start at all (the URL does not parse, a certificate is
/// unusable, `xmllint` is required and missing); the EMKS being unreachable is not an
/// error here but a failure of every check that needs it.
pub async fn run_emks(target: EmksTarget, selection: &Selection) -> Result<Report, String> {
    let started = Instant::now();
    let (cx, notes) = EmksCx::new(target).await?;
    let cx = Arc::new(cx);
    let mut report = Report::new("emks", cx.base().to_string());
    report.notes = notes;
    report.results = run_table(&cx, checks::CHECKS, selection, cx.check_timeout()).await;
    cx.shutdown().await;
    report.duration = started.elapsed();
    Ok(report)
}

/// Runs the admitted checks of `table` one after the other, each on a task of its own (a
/// panic is a failure of that check, not of the run), then its cleanup.
pub(crate) async fn run_table<C: Cleanup + Send + Sync + 'static>(
    cx: &Arc<C>,
    table: &'static [CheckDef<C>],
    selection: &Selection,
    timeout: Duration,
) -> Vec<CheckResult> {
    let mut results = Vec::new();
    for def in table.iter().filter(|d| selection.admits(d.info.name)) {
        let started = Instant::now();
        let task_cx = Arc::clone(cx);
        let run = def.run;
        let mut task = tokio::spawn(async move { run(&task_cx).await });
        let outcome = tokio::time::timeout(timeout, &mut task).await;
        if outcome.is_err() {
            task.abort();
        }
        let verdict = match outcome {
            Ok(Ok(Ok(evidence))) => Verdict::Pass(evidence),
            Ok(Ok(Err(Stop::Fail(evidence)))) => Verdict::Fail(evidence),
            Ok(Ok(Err(Stop::Skip(reason)))) => Verdict::Skipped(reason),
            Ok(Err(join)) => Verdict::Fail(format!("the check itself failed: {join}")),
            Err(_) => Verdict::Fail(format!("no verdict within {} s", timeout.as_secs())),
        };
        cx.cleanup().await;
        results.push(CheckResult {
            info: def.info,
            verdict,
            duration: started.elapsed(),
        });
    }
    results
}

/// What a context undoes after each check.
pub(crate) trait Cleanup {
    /// Deregisters the sessions and removes the subscriptions the last check left.
    fn cleanup(&self) -> impl std::future::Future<Output = ()> + Send;
}
