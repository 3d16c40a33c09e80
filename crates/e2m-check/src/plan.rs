//! The UEs the checker uses and what the operator of the server under test provisions for
//! them: the provisioning contract.
//!
//! The EMKS translates an application identity to an IMSI per EMSE (seed 6.x.2.1, user
//! identity case 2), from a map only the operator can fill. The checker therefore uses a
//! fixed, documented set of identities, derived from two settings (an IMSI base and a
//! domain), and prints the lines to provision (`emse_id,app_identity,imsi`, the format of
//! the `emks` example's `--provision-file`):
//!
//! | identity | IMSI | provisioned for |
//! |---|---|---|
//! | `check-01@<domain>` … `check-40@<domain>` | base + 1 … base + 40 | every EMSE the checker acts as |
//! | `only-b@<domain>` | base + 90 | the second EMSE only |
//! | `split@<domain>` | base + 91 for the first EMSE, base + 92 for the second | both, to different IMSIs |
//!
//! The HSS pushes keys by IMSI, which needs no provisioning. Each check uses identities of
//! its own, so checks do not disturb each other; keys the checker pushed in an earlier run
//! are older than every key it pushes now, so they leave the UEs' retention first.

use e2m_msg::{AppIdentity, EmseId, Imsi};

/// How many shared identities (`check-01` …) there are.
pub const SHARED_UES: u8 = 40;

/// The default IMSI base: MCC 001, MNC 01 (the test network of TS 23.003), MSIN from
/// 9900000000.
pub const DEFAULT_IMSI_BASE: &str = "001019900000000";

/// The default domain of the checker's application identities (`.example`, RFC 2606).
pub const DEFAULT_DOMAIN: &str = "e2m-check.example";

/// The checker's UEs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UePlan {
    domain: String,
    shared: Vec<Ue>,
    only_second: Ue,
    split: (Ue, Ue),
}

/// A UE of the plan: how an EMSE names it and its IMSI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Ue {
    pub(crate) app: AppIdentity,
    pub(crate) imsi: Imsi,
}

impl UePlan {
    /// The plan with IMSIs from `imsi_base` (6 to 15 digits; the IMSIs used are base + 1 …
    /// base + 92, with as many digits as the base) and identities under `domain`.
    ///
    /// # Errors
    /// A message if the base is not digits or leaves no room, or the domain makes invalid
    /// identities.
    pub fn new(imsi_base: &str, domain: &str) -> Result<UePlan, String> {
        if !(6..=15).contains(&imsi_base.len()) || !imsi_base.bytes().all(|b| b.is_ascii_digit()) {
            return Err("the IMSI base must be 6 to 15 digits".into());
        }
        let base: u64 = imsi_base.parse().map_err(|_| "bad IMSI base")?;
        let digits = imsi_base.len();
        let max = 10u64.pow(digits as u32) - 1;
        if base + 92 > max {
            return Err("the IMSI base leaves no room for 92 IMSIs after it".into());
        }
        let imsi = |offset: u64| {
            Imsi::new(&format!("{:0digits$}", base + offset)).map_err(|e| format!("IMSI: {e}"))
        };
        let app = |local: &str| {
            AppIdentity::new(&format!("{local}@{domain}"))
                .map_err(|e| format!("application identity {local}@{domain}: {e}"))
        };
        let mut shared = Vec::with_capacity(usize::from(SHARED_UES));
        for n in 1..=SHARED_UES {
            shared.push(Ue {
                app: app(&format!("check-{n:02}"))?,
                imsi: imsi(u64::from(n))?,
            });
        }
        // The longest identity the plan makes must be valid too.
        app("never-00000000")?;
        let split_app = app("split")?;
        Ok(UePlan {
            domain: domain.to_owned(),
            shared,
            only_second: Ue {
                app: app("only-b")?,
                imsi: imsi(90)?,
            },
            split: (
                Ue {
                    app: split_app.clone(),
                    imsi: imsi(91)?,
                },
                Ue {
                    app: split_app,
                    imsi: imsi(92)?,
                },
            ),
        })
    }

    /// The plan of [`DEFAULT_IMSI_BASE`] and [`DEFAULT_DOMAIN`].
    ///
    /// # Errors
    /// Never in practice (the defaults are valid; a test checks it); typed for symmetry.
    pub fn standard() -> Result<UePlan, String> {
        UePlan::new(DEFAULT_IMSI_BASE, DEFAULT_DOMAIN)
    }

    /// Shared UE `n` (1 ..= [`SHARED_UES`]; others wrap around).
    pub(crate) fn shared(&self, n: u8) -> &Ue {
        let i = usize::from(n.saturating_sub(1)) % self.shared.len().max(1);
        &self.shared[i]
    }

    /// The UE provisioned for the second EMSE only.
    pub(crate) fn only_second(&self) -> &Ue {
        &self.only_second
    }

    /// The identity mapped to different IMSIs for the two EMSEs: (first's UE, second's UE).
    pub(crate) fn split(&self) -> &(Ue, Ue) {
        &self.split
    }

    /// An identity under the plan's domain that is never provisioned.
    pub(crate) fn unprovisioned(&self, tag: u32) -> Result<AppIdentity, String> {
        AppIdentity::new(&format!("never-{tag:08x}@{}", self.domain)).map_err(|e| e.to_string())
    }

    /// The identity map entries the operator provisions: for every EMSE in `emses` the
    /// shared UEs; with two or more, `only-b` for the second and `split` for the first two.
    pub fn provisioning(&self, emses: &[EmseId]) -> Vec<(EmseId, AppIdentity, Imsi)> {
        let mut out = Vec::new();
        for emse in emses {
            for ue in &self.shared {
                out.push((emse.clone(), ue.app.clone(), ue.imsi.clone()));
            }
        }
        if let [first, second, ..] = emses {
            let only = &self.only_second;
            out.push((second.clone(), only.app.clone(), only.imsi.clone()));
            let (a, b) = &self.split;
            out.push((first.clone(), a.app.clone(), a.imsi.clone()));
            out.push((second.clone(), b.app.clone(), b.imsi.clone()));
        }
        out
    }

    /// [`Self::provisioning`] as CSV lines `emse_id,app_identity,imsi` with a header (the
    /// `emks` example's `--provision-file` format).
    pub fn provisioning_csv(&self, emses: &[EmseId]) -> String {
        let mut out = String::from("emse_id,app_identity,imsi\n");
        for (emse, app, imsi) in self.provisioning(emses) {
            out.push_str(&format!("{emse},{app},{imsi}\n"));
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::panic, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn the_default_plan() {
        let Ok(plan) = UePlan::standard() else {
            panic!("the standard plan is valid")
        };
        assert_eq!(plan.shared(1).imsi.as_str(), "001019900000001");
        assert_eq!(plan.shared(1).app.as_str(), "check-01@e2m-check.example");
        assert_eq!(plan.split().1.imsi.as_str(), "001019900000092");
    }

    #[test]
    fn provisioning_lines() {
        let Ok(plan) = UePlan::standard() else {
            panic!("the standard plan is valid")
        };
        let a = EmseId::new("emse-a").ok();
        let b = EmseId::new("emse-b").ok();
        let emses: Vec<EmseId> = [a, b].into_iter().flatten().collect();
        let csv = plan.provisioning_csv(&emses);
        assert_eq!(csv.lines().count(), 1 + 2 * 40 + 3);
        assert!(csv.contains("emse-b,only-b@e2m-check.example,001019900000090\n"));
        assert!(csv.contains("emse-a,split@e2m-check.example,001019900000091\n"));
        assert!(!csv.contains("emse-a,only-b"));
    }

    #[test]
    fn bad_bases() {
        assert!(UePlan::new("12345", "x.example").is_err());
        assert!(UePlan::new("99999999999999999", "x.example").is_err());
        assert!(UePlan::new("999999999999999", "x.example").is_err());
        assert!(UePlan::new("00101a", "x.example").is_err());
        assert!(UePlan::new("001010", "bad domain").is_err());
    }
}
