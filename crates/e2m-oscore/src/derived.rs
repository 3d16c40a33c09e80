//! The EMSE's record of the contexts it has ever derived, which lets a context derived for
//! the first time answer its first request at once (one round trip), while a context derived
//! again (after a restart or an eviction lost its replay window) still gets the Echo
//! challenge of RFC 8613 Appendix B.1.2.
//!
//! # Why a first derivation needs no Echo
//!
//! The Echo round trip exists because a server that lost its replay window cannot tell a
//! replayed request from a new one, and answering a replay again would reuse the request's
//! AEAD nonce for a different response (RFC 8613 §7.4, Appendix B.1.2). In the e2m profile a
//! context is named by (application identity, key id), and `e2m_key` — hence the Master
//! Secret — is new for every AKA run and bound to this EMSE's EMSE_Id. So if this EMSE has
//! **never** derived the context of (identity, key id), it has never answered anything under
//! it: no earlier answer exists whose nonce a replay could make it reuse, and the window may
//! start at the first request's Partial IV ([`SecurityContext`]'s fresh window).
//!
//! "Never" must survive crashes: the record is written **durably before** the EMSE answers
//! under a new context ([`DerivedContextRecord::record`] returns only then). A context
//! recorded before gets [`SecurityContext::forget_replay_window`]. Entries may be dropped
//! once they are older than every key the EMKS could still hand out for them (the EMKS's
//! retention `max_age`): such a key can no longer be fetched, so its context cannot be
//! derived again.
//!
//! **Several EMSE instances sharing one EMSE_Id** (one EMKS registration behind a load
//! balancer) derive the same contexts from the same keys: each must consult one shared
//! record (so that a context first derived by instance A counts as derived for instance B),
//! or keep the Echo challenge for every derivation (pass no record). An instance-local
//! record would let a request answered by A be replayed to B and answered again under the
//! same nonce.
//!
//! [`MemoryDerivedRecord`] is the in-memory implementation: it is correct only for an EMSE
//! whose process never restarts with the same keys (tests, or a deployment that keeps no key
//! across restarts); a restarted process must not treat every context as new. A durable one
//! (a file, fsynced) lives in the transport crate, `e2m-dtls`. [`conformance::check`] is the
//! behaviour every implementation must show.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use e2m_keyid::{AppIdentity, KeyId};

use crate::SecurityContext;

/// What a record says about a context being derived now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Derivation {
    /// Never derived before (and now recorded durably): its first request may be answered at
    /// once, the replay window starts at that request.
    First,
    /// Derived before: the replay window is lost, the first request gets the Echo challenge.
    Again,
}

impl Derivation {
    /// Prepares a freshly derived `context` accordingly: a context derived again (or one
    /// whose record could not be written, `None`) forgets its replay window (RFC 8613
    /// Appendix B.1.2); a first one keeps its fresh window.
    pub fn apply(derivation: Option<Derivation>, context: &mut SecurityContext) {
        if derivation != Some(Derivation::First) {
            context.forget_replay_window();
        }
    }
}

/// The EMSE's record of the (application identity, key id) contexts it has ever derived.
///
/// An implementation must be durable to be useful: [`Self::record`] returns
/// [`Derivation::First`] only once the entry would survive a crash of the process (and of
/// the machine, for a file: written and synced). On any doubt (an I/O error), it returns an
/// error and the caller treats the context as derived before.
pub trait DerivedContextRecord {
    /// Why the record could not be read or written.
    type Error: core::error::Error;

    /// Records that the context of (`identity`, `key_id`) is derived now (`now_unix_s`,
    /// seconds since the Unix epoch, supplied by the caller) and says whether it had been
    /// recorded before.
    ///
    /// # Errors
    /// [`Self::Error`] when the entry could not be made durable; the caller then must not
    /// treat the context as new.
    fn record(
        &mut self,
        identity: &AppIdentity,
        key_id: KeyId,
        now_unix_s: u64,
    ) -> Result<Derivation, Self::Error>;

    /// Entries held now.
    fn len(&self) -> usize;

    /// No entry at all?
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The in-memory [`DerivedContextRecord`]: see the module docs for when it is correct (a
/// process that never restarts with the same keys). Entries older than `max_age_s` are
/// dropped when a new entry is recorded.
#[derive(Debug)]
pub struct MemoryDerivedRecord {
    entries: BTreeMap<(Vec<u8>, KeyId), u64>,
    max_age_s: u64,
}

impl MemoryDerivedRecord {
    /// An empty record keeping entries for `max_age_s` seconds (at least the EMKS's key
    /// retention `max_age`).
    pub fn new(max_age_s: u64) -> MemoryDerivedRecord {
        MemoryDerivedRecord {
            entries: BTreeMap::new(),
            max_age_s,
        }
    }
}

impl DerivedContextRecord for MemoryDerivedRecord {
    type Error = core::convert::Infallible;

    fn record(
        &mut self,
        identity: &AppIdentity,
        key_id: KeyId,
        now_unix_s: u64,
    ) -> Result<Derivation, Self::Error> {
        let max_age = self.max_age_s;
        self.entries
            .retain(|_, at| now_unix_s.saturating_sub(*at) <= max_age);
        let key = (identity.as_bytes().to_vec(), key_id);
        Ok(match self.entries.insert(key, now_unix_s) {
            Some(_) => Derivation::Again,
            None => Derivation::First,
        })
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// The behaviour every [`DerivedContextRecord`] must show, as a function a backend calls
/// from its own tests (the workspace's conformance pattern).
pub mod conformance {
    use super::{Derivation, DerivedContextRecord};
    use e2m_keyid::{AppIdentity, KeyId};

    /// Checks a record implementation. `open` gives a record over the backend's state
    /// (empty on its first call); `reopen` closes a record and opens it again over the same
    /// state, as a restarted EMSE would (for an in-memory record: return it as it is).
    /// `max_age_s` is the age bound the record was opened with.
    ///
    /// # Panics
    /// On the first behaviour that differs (this is a test function).
    #[allow(
        clippy::panic,
        reason = "a conformance suite reports failures by panicking"
    )]
    pub fn check<R: DerivedContextRecord>(
        mut open: impl FnMut() -> R,
        mut reopen: impl FnMut(R) -> R,
        max_age_s: u64,
    ) where
        R::Error: core::fmt::Debug,
    {
        let a = AppIdentity::new("sensor-1@iot.example.com")
            .unwrap_or_else(|e| panic!("identity: {e}"));
        let b = AppIdentity::new("sensor-2@iot.example.com")
            .unwrap_or_else(|e| panic!("identity: {e}"));
        let k1 = KeyId::from_u32(1);
        let k2 = KeyId::from_u32(0xffff_ffff);
        let t = 1_800_000_000;
        let mut record = open();
        assert!(record.is_empty(), "a new record holds nothing");
        let note = |r: &mut R, id: &AppIdentity, k: KeyId, at: u64| {
            r.record(id, k, at)
                .unwrap_or_else(|e| panic!("record: {e:?}"))
        };
        assert_eq!(note(&mut record, &a, k1, t), Derivation::First);
        assert_eq!(note(&mut record, &a, k1, t + 1), Derivation::Again);
        // Another key id of the same UE, and the same key id of another UE, are new.
        assert_eq!(note(&mut record, &a, k2, t + 2), Derivation::First);
        assert_eq!(note(&mut record, &b, k1, t + 3), Derivation::First);
        assert_eq!(record.len(), 3);
        // A restart keeps every entry.
        let mut record = reopen(record);
        assert_eq!(record.len(), 3, "entries survive a reopen");
        assert_eq!(note(&mut record, &a, k1, t + 4), Derivation::Again);
        assert_eq!(note(&mut record, &b, k1, t + 5), Derivation::Again);
        assert_eq!(note(&mut record, &b, k2, t + 6), Derivation::First);
        let mut record = reopen(record);
        assert_eq!(note(&mut record, &b, k2, t + 7), Derivation::Again);
        // Within the age bound (counted from its first derivation) an entry stays.
        assert_eq!(note(&mut record, &a, k1, t + max_age_s), Derivation::Again);
        // Long past it, the entries of keys the EMKS can no longer hand out may go.
        let late = t + 10 + 3 * max_age_s;
        assert_eq!(note(&mut record, &b, k1, late), Derivation::First);
        let record = reopen(record);
        assert!(record.len() <= 4, "expired entries are dropped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_record_conforms() {
        conformance::check(|| MemoryDerivedRecord::new(3600), |r| r, 3600);
    }
}
