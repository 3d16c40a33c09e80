//! The EMKS's configuration: the derivation profile and per-EMSE policy.

use std::collections::HashSet;

use e2m_kdf::{E2mProfile, KdfError};
use e2m_keyid::EmseId;
use foldhash::fast::RandomState;

use crate::CallbackHost;

/// How the EMKS derives keys and what each EMSE may do beyond the default.
///
/// Valid once built: the profile is checked in [`EmksConfig::new`], so no decision
/// re-validates it (a key fetch derives with it directly).
#[derive(Clone, Debug)]
pub struct EmksConfig {
    profile: E2mProfile<'static>,
    imsi_allowed: HashSet<Box<str>, RandomState>,
    callback_hosts: Vec<CallbackHost>,
}

impl EmksConfig {
    /// A configuration deriving with `profile` (the FCs and labels of the derivations, seed
    /// 6.x.2.1 "Key derivation rules": 3GPP has allocated none, so UE and EMKS must agree on
    /// a profile); no EMSE may name UEs by IMSI.
    ///
    /// # Errors
    /// [`KdfError`] if `profile` fails [`E2mProfile::validate`].
    pub fn new(profile: E2mProfile<'static>) -> Result<Self, KdfError> {
        profile.validate()?;
        Ok(EmksConfig {
            profile,
            imsi_allowed: HashSet::default(),
            callback_hosts: Vec::new(),
        })
    }

    /// The derivation profile (valid: checked when the configuration was built).
    pub fn profile(&self) -> &E2mProfile<'static> {
        &self.profile
    }

    /// Lets `emse` name UEs by IMSI (the seed's case 1: "there may be privacy implications
    /// if MNO does not want to share the IMSI with the third party", so it is off unless the
    /// operator turns it on for an EMSE it trusts with IMSIs, e.g. one in its own network).
    #[must_use]
    pub fn allow_imsi(mut self, emse: &EmseId) -> Self {
        self.imsi_allowed.insert(emse.as_str().into());
        self
    }

    /// Lets every EMSE name `host` in a callback, whether or not its certificate names it
    /// (the operator's allow-list, e.g. a notification gateway; a `*.` name allows one
    /// label under it). Without an entry, an EMSE's callbacks must name a host its own
    /// certificate names (issue 9 item 5).
    #[must_use]
    pub fn allow_callback_host(mut self, host: CallbackHost) -> Self {
        self.callback_hosts.push(host);
        self
    }

    /// Whether the allow-list covers `host`.
    pub fn callback_host_allowed(&self, host: &CallbackHost) -> bool {
        self.callback_hosts
            .iter()
            .any(|allowed| allowed.covers(host))
    }

    /// Whether `emse` may name UEs by IMSI.
    pub fn imsi_allowed(&self, emse: &EmseId) -> bool {
        self.imsi_allowed.contains(emse.as_str())
    }
}

impl Default for EmksConfig {
    /// The provisional profile ([`E2mProfile::PROVISIONAL`], valid: a test checks it).
    fn default() -> Self {
        EmksConfig {
            profile: E2mProfile::PROVISIONAL,
            imsi_allowed: HashSet::default(),
            callback_hosts: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_profile_is_valid() {
        assert_eq!(EmksConfig::default().profile().validate(), Ok(()));
        assert!(EmksConfig::new(E2mProfile::PROVISIONAL).is_ok());
    }

    #[test]
    fn an_invalid_profile_is_refused_once_at_construction() {
        let mut profile = E2mProfile::PROVISIONAL;
        profile.key_fc = profile.int_key_fc;
        assert!(EmksConfig::new(profile).is_err());
    }
}
