//! The EMKS's configuration: the derivation profile and per-EMSE policy.

use std::collections::HashSet;
use std::ops::RangeInclusive;

use e2m_kdf::{E2mProfile, KdfError};
use e2m_keyid::EmseId;
use foldhash::fast::RandomState;

use crate::{AllowedCallback, CallbackHost, HTTPS_DEFAULT_PORT};

/// How the EMKS derives keys and what each EMSE may do beyond the default.
///
/// Valid once built: the profile is checked in [`EmksConfig::new`], so no decision
/// re-validates it (a key fetch derives with it directly).
#[derive(Clone, Debug)]
pub struct EmksConfig {
    profile: E2mProfile<'static>,
    imsi_allowed: HashSet<Box<str>, RandomState>,
    callbacks_allowed: Vec<AllowedCallback>,
    certificate_ports: Vec<RangeInclusive<u16>>,
}

/// The ports callbacks to certificate-named hosts may use by default: 443 alone.
fn default_certificate_ports() -> Vec<RangeInclusive<u16>> {
    vec![HTTPS_DEFAULT_PORT..=HTTPS_DEFAULT_PORT]
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
            callbacks_allowed: Vec::new(),
            certificate_ports: default_certificate_ports(),
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

    /// Lets every EMSE name `allowed.host` on `allowed.port` in a callback, whether or not
    /// its certificate names that host (the operator's allow-list, e.g. a notification
    /// gateway; a `*.` name allows one label under it). The entry names one port: other
    /// ports of the host stay closed to callbacks. Without an entry, an EMSE's callbacks
    /// must name a host its own certificate names, on a port of
    /// [`Self::allow_certificate_callback_ports`] (issue 9 item 5, issue 16 item 4).
    #[must_use]
    pub fn allow_callback(mut self, allowed: AllowedCallback) -> Self {
        self.callbacks_allowed.push(allowed);
        self
    }

    /// Lets callbacks to hosts that the EMSE's own certificate names use the ports in
    /// `ports` as well (by default only 443, the default port of `https`): e.g. `8443..=8443`
    /// for EMSEs whose notification endpoints listen there. `1..=65535` allows every port,
    /// which only a closed test network should do (an EMSE could then aim notifications at
    /// any service of its own hosts, such as ssh or a metrics port).
    #[must_use]
    pub fn allow_certificate_callback_ports(mut self, ports: RangeInclusive<u16>) -> Self {
        self.certificate_ports.push(ports);
        self
    }

    /// Whether a callback to `host` on `port` is acceptable from an EMSE whose certificate
    /// names `named`: a named host on a certificate port, or an allow-list entry.
    pub fn callback_allowed(&self, named: &[CallbackHost], host: &CallbackHost, port: u16) -> bool {
        (self.certificate_port_allowed(port) && named.iter().any(|n| n.covers(host)))
            || self.allow_list_covers(host, port)
    }

    /// Whether the allow-list has an entry for `host` on `port`.
    pub fn allow_list_covers(&self, host: &CallbackHost, port: u16) -> bool {
        self.callbacks_allowed
            .iter()
            .any(|allowed| allowed.covers(host, port))
    }

    /// Whether callbacks to certificate-named hosts may use `port`.
    pub fn certificate_port_allowed(&self, port: u16) -> bool {
        self.certificate_ports.iter().any(|r| r.contains(&port))
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
            callbacks_allowed: Vec::new(),
            certificate_ports: default_certificate_ports(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn the_default_profile_is_valid() {
        assert_eq!(EmksConfig::default().profile().validate(), Ok(()));
        assert!(EmksConfig::new(E2mProfile::PROVISIONAL).is_ok());
    }

    #[test]
    fn certificate_hosts_get_port_443_unless_configured() {
        let named = ["emse-a.example.com".parse::<CallbackHost>().unwrap()];
        let host = &named[0];
        let config = EmksConfig::default();
        assert!(config.callback_allowed(&named, host, 443));
        for port in [22, 80, 8443, 9464, 65535] {
            assert!(!config.callback_allowed(&named, host, port), "{port}");
        }
        let config = config.allow_certificate_callback_ports(8443..=8444);
        assert!(config.callback_allowed(&named, host, 8443));
        assert!(config.callback_allowed(&named, host, 8444));
        assert!(!config.callback_allowed(&named, host, 8445));
        let other = "emse-b.example.com".parse::<CallbackHost>().unwrap();
        assert!(
            !config.callback_allowed(&named, &other, 443),
            "a host not named"
        );
        let config = config.allow_callback("emse-b.example.com:9443".parse().unwrap());
        assert!(config.callback_allowed(&named, &other, 9443));
        assert!(
            !config.callback_allowed(&named, &other, 443),
            "the entry names 9443 only"
        );
        assert!(
            config.callback_allowed(&[], &other, 9443),
            "whatever the certificate names"
        );
    }

    #[test]
    fn an_invalid_profile_is_refused_once_at_construction() {
        let mut profile = E2mProfile::PROVISIONAL;
        profile.key_fc = profile.int_key_fc;
        assert!(EmksConfig::new(profile).is_err());
    }
}
