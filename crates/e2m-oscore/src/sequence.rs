//! Sender sequence numbers (RFC 8613 §3.2.2, §7.2) and how a device that reboots never reuses
//! one (Appendix B.1.1).

use crate::{OscoreError, PartialIv};

/// The Sender Sequence Number of one Sender Context.
///
/// Every protected request (and every response that carries its own Partial IV) takes the
/// next number; a number is never handed out twice by one value of this type. Numbers stop
/// at 2^40 − 1 (RFC 8613 §7.2.1): after that [`OscoreError::SequenceExhausted`].
///
/// **Reboots (Appendix B.1.1).** A device that loses its RAM must not start again at a number
/// it used, or it reuses an AEAD nonce. [`SenderSequence::persistent`] implements the
/// appendix's procedure as a write-ahead reservation: numbers are used only below a limit
/// that the caller has confirmed durable. When the next number reaches the limit,
/// [`Self::reservation_needed`] names the new limit (next + `step`), the caller writes it
/// to non-volatile memory and calls [`Self::reservation_persisted`]; until then protection
/// fails with [`OscoreError::ReservationNeeded`]. After a reboot,
/// [`Self::resume`] starts at the stored limit, which is above every number used before.
/// (This is B.1.1's SSN2 = SSN1 + K + F with F = 0: the write is confirmed before any number
/// it covers is used, so no margin for lost writes is needed.) One write per `step`
/// messages; at most `step` numbers are skipped per reboot.
#[derive(Debug)]
pub struct SenderSequence {
    next: u64,
    /// Numbers below this may be used; `u64::MAX` when persistence is off.
    reserved: u64,
    step: u64,
}

impl SenderSequence {
    /// A sequence starting at 0 that is never persisted: for a context that is derived
    /// afresh from inputs that are never reused after state loss (a new `e2m_key`, a new
    /// Master Salt). Never use it for a context that can be re-derived after a reboot.
    pub const fn volatile() -> SenderSequence {
        SenderSequence {
            next: 0,
            reserved: u64::MAX,
            step: 0,
        }
    }

    /// A volatile sequence whose next number is `next` (test vectors start at 20; a caller
    /// that tracks numbers elsewhere, such as one counter shared by many contexts, resumes
    /// here).
    pub const fn volatile_from(next: u64) -> SenderSequence {
        SenderSequence {
            next,
            reserved: u64::MAX,
            step: 0,
        }
    }

    /// A fresh persistent sequence starting at 0 with nothing reserved yet: the first
    /// protection asks for a reservation of `step` numbers (at least 1).
    pub const fn persistent(step: u64) -> SenderSequence {
        SenderSequence::resume(0, step)
    }

    /// The persistent sequence after a reboot: starts at the last limit that was persisted.
    pub const fn resume(persisted_limit: u64, step: u64) -> SenderSequence {
        SenderSequence {
            next: persisted_limit,
            reserved: persisted_limit,
            step: if step == 0 { 1 } else { step },
        }
    }

    /// The number the next message will use.
    pub const fn next_number(&self) -> u64 {
        self.next
    }

    /// The limit to persist before the next number may be used, if one is needed now.
    pub fn reservation_needed(&self) -> Option<u64> {
        (self.next >= self.reserved)
            .then(|| self.next.saturating_add(self.step).min(PartialIv::LIMIT))
    }

    /// The caller reports that `limit` is durable: numbers below it may be used.
    pub fn reservation_persisted(&mut self, limit: u64) {
        if limit > self.reserved {
            self.reserved = limit;
        }
    }

    /// Takes the next number.
    ///
    /// # Errors
    /// [`OscoreError::SequenceExhausted`] at 2^40; [`OscoreError::ReservationNeeded`] when
    /// a persistent sequence has used its reservation.
    pub fn take(&mut self) -> Result<PartialIv, OscoreError> {
        let piv = PartialIv::from_sequence(self.next).ok_or(OscoreError::SequenceExhausted)?;
        if self.next >= self.reserved {
            return Err(OscoreError::ReservationNeeded);
        }
        self.next += 1;
        Ok(piv)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn persistent_sequence_never_repeats_across_reboots() {
        let mut seq = SenderSequence::persistent(4);
        let mut stored = 0;
        let mut used = alloc::vec::Vec::new();
        for round in 0..3 {
            for _ in 0..6 {
                match seq.take() {
                    Ok(piv) => used.push(piv.sequence()),
                    Err(OscoreError::ReservationNeeded) => {
                        stored = seq.reservation_needed().unwrap_or(0);
                        seq.reservation_persisted(stored);
                        used.push(seq.take().map(|p| p.sequence()).unwrap_or(u64::MAX));
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            // Reboot: RAM lost, the stored limit survives.
            seq = SenderSequence::resume(stored, 4);
            assert!(used.iter().all(|n| *n < seq.next_number()), "round {round}");
        }
        let mut sorted = used.clone();
        sorted.dedup();
        assert_eq!(sorted, used, "strictly increasing, no repeats");
    }

    #[test]
    fn limit_is_2_pow_40() {
        let mut seq = SenderSequence::volatile();
        seq.next = PartialIv::LIMIT - 1;
        assert!(seq.take().is_ok());
        assert_eq!(seq.take(), Err(OscoreError::SequenceExhausted));
        assert_eq!(seq.take(), Err(OscoreError::SequenceExhausted));
    }
}
