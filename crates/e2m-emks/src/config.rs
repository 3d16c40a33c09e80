//! The EMKS's configuration: the derivation profile and per-EMSE policy.

use std::collections::HashSet;

use e2m_kdf::E2mProfile;
use e2m_keyid::EmseId;
use foldhash::fast::RandomState;

/// How the EMKS derives keys and what each EMSE may do beyond the default.
#[derive(Clone, Debug)]
pub struct EmksConfig {
    /// The FCs and labels of the derivations (seed 6.x.2.1, "Key derivation rules"; 3GPP
    /// has allocated none, so UE and EMKS must agree on a profile).
    pub profile: E2mProfile<'static>,
    imsi_allowed: HashSet<Box<str>, RandomState>,
}

impl EmksConfig {
    /// The provisional profile; no EMSE may name UEs by IMSI.
    pub fn new(profile: E2mProfile<'static>) -> Self {
        EmksConfig {
            profile,
            imsi_allowed: HashSet::default(),
        }
    }

    /// Lets `emse` name UEs by IMSI (the seed's case 1: "there may be privacy implications
    /// if MNO does not want to share the IMSI with the third party", so it is off unless the
    /// operator turns it on for an EMSE it trusts with IMSIs, e.g. one in its own network).
    #[must_use]
    pub fn allow_imsi(mut self, emse: &EmseId) -> Self {
        self.imsi_allowed.insert(emse.as_str().into());
        self
    }

    /// Whether `emse` may name UEs by IMSI.
    pub fn imsi_allowed(&self, emse: &EmseId) -> bool {
        self.imsi_allowed.contains(emse.as_str())
    }
}

impl Default for EmksConfig {
    fn default() -> Self {
        Self::new(E2mProfile::PROVISIONAL)
    }
}
