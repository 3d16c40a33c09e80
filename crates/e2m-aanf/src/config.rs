//! The AAnF's configuration: K_AF's lifetime, who the AUSFs and NEFs are, which AFs may
//! use AKMA and what each may learn, where notifications may go, and whether tokens are
//! required.

use core::time::Duration;
use std::collections::HashMap;

use e2m_keyid::akma::Fqdn;

use crate::Host;

/// What one AF may do and learn (TS 33.535 §6.2: the AAnF checks that the AF is authorised;
/// whether it gets the SUPI or the GPSI is the operator's policy).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AfPolicy {
    inside: bool,
    supi: bool,
    gpsi: bool,
}

impl AfPolicy {
    /// An AF inside the operator's domain: it asks the AAnF directly
    /// (`Naanf_AKMA_ApplicationKey_Get`); it learns neither SUPI nor GPSI unless allowed.
    pub const INSIDE: AfPolicy = AfPolicy {
        inside: true,
        supi: false,
        gpsi: false,
    };

    /// An AF outside the operator's domain: only through the NEF (TS 29.522 AKMA API, or a
    /// configured NEF asking for it); never the SUPI.
    pub const VIA_NEF: AfPolicy = AfPolicy {
        inside: false,
        supi: false,
        gpsi: false,
    };

    /// This policy, and the SUPI in its answers (for an AF inside the domain only; where
    /// tokens are required, also only with the scope
    /// `naanf-akma:applicationkeyget:supi-access`). Never for an anonymous request.
    #[must_use]
    pub const fn with_supi(mut self) -> AfPolicy {
        self.supi = self.inside;
        self
    }

    /// This policy, and the GPSI in its answers (of a context registered by GPSI; through
    /// the NEF API, where tokens are required, also only with `nnef-akma:gpsi-access`).
    /// Never for an anonymous request.
    #[must_use]
    pub const fn with_gpsi(mut self) -> AfPolicy {
        self.gpsi = true;
        self
    }

    /// Whether the AF is inside the operator's domain.
    pub const fn inside_domain(&self) -> bool {
        self.inside
    }

    /// Whether the SUPI may be in its answers.
    pub const fn supi(&self) -> bool {
        self.supi
    }

    /// Whether the GPSI may be in its answers.
    pub const fn gpsi(&self) -> bool {
        self.gpsi
    }
}

/// Why an [`AanfConfig`] was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// K_AF's lifetime must be at least one second.
    ZeroKafLifetime,
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            ConfigError::ZeroKafLifetime => "K_AF lifetime must be at least one second",
        })
    }
}

impl std::error::Error for ConfigError {}

/// How the AAnF decides who may do what. Valid once built ([`AanfConfig::new`]).
///
/// Nothing is allowed by default: every AUSF, NEF and AF is named by the operator.
#[derive(Clone, Debug)]
pub struct AanfConfig {
    kaf_lifetime: Duration,
    tokens_required: bool,
    ausf: Vec<Host>,
    nef: Vec<Host>,
    afs: HashMap<Fqdn, AfPolicy>,
    notify_hosts: Vec<Host>,
}

impl AanfConfig {
    /// One hour: K_AF's lifetime if the operator names none (TS 33.535 leaves it to the
    /// operator; K_AF never outlives its K_AKMA in any case).
    pub const DEFAULT_KAF_LIFETIME: Duration = Duration::from_secs(3600);

    /// A configuration giving each K_AF at most `kaf_lifetime` (and never more than its
    /// K_AKMA has left); no peer allowed anything yet; no tokens required.
    ///
    /// # Errors
    /// [`ConfigError::ZeroKafLifetime`] under one second.
    pub fn new(kaf_lifetime: Duration) -> Result<AanfConfig, ConfigError> {
        if kaf_lifetime.as_secs() == 0 {
            return Err(ConfigError::ZeroKafLifetime);
        }
        Ok(AanfConfig {
            kaf_lifetime,
            tokens_required: false,
            ausf: Vec::new(),
            nef: Vec::new(),
            afs: HashMap::new(),
            notify_hosts: Vec::new(),
        })
    }

    /// Lets a peer whose certificate names `name` register and remove AKMA contexts.
    #[must_use]
    pub fn allow_ausf(mut self, name: Host) -> Self {
        self.ausf.push(name);
        self
    }

    /// Lets a peer whose certificate names `name` ask for K_AF on behalf of the AFs it
    /// serves (the NEF of TS 33.535's AKMA via the NEF): it names the AF in the body's
    /// `afId`, and the AAnF trusts it to have authenticated that AF.
    #[must_use]
    pub fn allow_nef(mut self, name: Host) -> Self {
        self.nef.push(name);
        self
    }

    /// Lets the AF `fqdn` use AKMA under `policy` (replacing an earlier policy for it).
    #[must_use]
    pub fn allow_af(mut self, fqdn: Fqdn, policy: AfPolicy) -> Self {
        self.afs.insert(fqdn, policy);
        self
    }

    /// Lets any caller name `host` in a `notifUri` (a notification gateway, say), whether or
    /// not its certificate names it. Without it, a `notifUri` must name a host the caller's
    /// certificate names.
    #[must_use]
    pub fn allow_notify_host(mut self, host: Host) -> Self {
        self.notify_hosts.push(host);
        self
    }

    /// Requires an OAuth2 access token with the operation's scopes from every caller
    /// (TS 33.501 §13.4.1); without it, mutual TLS alone authorises.
    #[must_use]
    pub fn require_tokens(mut self) -> Self {
        self.tokens_required = true;
        self
    }

    /// K_AF's lifetime.
    pub fn kaf_lifetime(&self) -> Duration {
        self.kaf_lifetime
    }

    /// Whether tokens are required.
    pub fn tokens_required(&self) -> bool {
        self.tokens_required
    }

    /// The policy of AF `fqdn`, if it may use AKMA.
    pub fn af(&self, fqdn: &Fqdn) -> Option<AfPolicy> {
        self.afs.get(fqdn).copied()
    }

    /// Whether a certificate naming `names` is a configured AUSF's.
    pub fn is_ausf(&self, names: &[Host]) -> bool {
        names.iter().any(|n| self.ausf.contains(n))
    }

    /// Whether a certificate naming `names` is a configured NEF's.
    pub fn is_nef(&self, names: &[Host]) -> bool {
        names.iter().any(|n| self.nef.contains(n))
    }

    /// Whether the operator's allow-list covers `host`.
    pub fn notify_host_allowed(&self, host: &Host) -> bool {
        self.notify_hosts.iter().any(|h| h.covers(host))
    }
}

impl Default for AanfConfig {
    /// [`AanfConfig::DEFAULT_KAF_LIFETIME`], nothing allowed, no tokens required.
    fn default() -> Self {
        AanfConfig {
            kaf_lifetime: Self::DEFAULT_KAF_LIFETIME,
            tokens_required: false,
            ausf: Vec::new(),
            nef: Vec::new(),
            afs: HashMap::new(),
            notify_hosts: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supi_is_only_for_afs_inside_the_domain() {
        assert!(AfPolicy::INSIDE.with_supi().supi());
        assert!(!AfPolicy::VIA_NEF.with_supi().supi());
        assert!(AfPolicy::VIA_NEF.with_gpsi().gpsi());
        assert!(AanfConfig::new(Duration::from_millis(999)).is_err());
    }
}
