//! The server's replay window (RFC 8613 §3.2.2, §7.4) and its recovery after state loss with
//! the Echo option (Appendix B.1.2, RFC 9175).

use subtle::ConstantTimeEq;

/// A sliding anti-replay window over received Partial IVs (RFC 8613 §7.4, after RFC 4303
/// §3.4.3 / RFC 6347 §4.1.2.6), of the default size 32 (§3.2.2).
///
/// A request is fresh if its sequence number is above the highest seen, or within the 32
/// below it and not seen yet. A server that lost the window (a reboot) starts
/// [`ReplayWindow::uninitialized`]: it accepts no request until the client has answered an
/// Echo challenge (Appendix B.1.2), because it cannot tell a replay from a new request.
#[derive(Debug)]
pub struct ReplayWindow {
    state: WindowState,
}

#[derive(Debug)]
enum WindowState {
    /// Highest sequence number seen and the bitmap of the 32 below and including it
    /// (bit 0 = highest).
    Valid { highest: u64, seen: u32 },
    /// Nothing received yet in a context that has never been used before.
    Empty,
    /// State lost: the window is established by an Echo exchange.
    Uninitialized { challenge: Option<EchoValue> },
}

/// An Echo value sent in a challenge (RFC 9175 §2.2: at most 40 octets).
#[derive(Clone, Copy)]
pub(crate) struct EchoValue {
    bytes: [u8; 40],
    len: u8,
}

impl EchoValue {
    pub(crate) fn new(value: &[u8]) -> Option<EchoValue> {
        let mut echo = EchoValue {
            bytes: [0; 40],
            len: value.len() as u8,
        };
        echo.bytes.get_mut(..value.len())?.copy_from_slice(value);
        Some(echo)
    }

    fn matches(&self, value: &[u8]) -> bool {
        let mine = &self.bytes[..usize::from(self.len)];
        mine.len() == value.len() && bool::from(mine.ct_eq(value))
    }
}

impl core::fmt::Debug for EchoValue {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("EchoValue")
    }
}

/// What the window says about a request's sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Not seen before: process it (and [`ReplayWindow::mark`] it once it verified).
    Fresh,
    /// Seen before, or too old to tell: refuse it.
    Replay,
    /// The window is uninitialized: challenge with Echo before processing anything.
    EchoRequired,
}

impl ReplayWindow {
    /// The window size (RFC 8613 §3.2.2 default).
    pub const SIZE: u64 = 32;

    /// The window of a context that has never received a request.
    pub const fn new() -> ReplayWindow {
        ReplayWindow {
            state: WindowState::Empty,
        }
    }

    /// The window of a context whose receive state was lost (Appendix B.1.2).
    pub const fn uninitialized() -> ReplayWindow {
        ReplayWindow {
            state: WindowState::Uninitialized { challenge: None },
        }
    }

    /// Checks a sequence number without changing the window.
    pub fn check(&self, sequence: u64) -> Freshness {
        match self.state {
            WindowState::Empty => Freshness::Fresh,
            WindowState::Uninitialized { .. } => Freshness::EchoRequired,
            WindowState::Valid { highest, seen } => {
                if sequence > highest {
                    Freshness::Fresh
                } else if highest - sequence >= Self::SIZE
                    || seen & (1u32 << (highest - sequence)) != 0
                {
                    Freshness::Replay
                } else {
                    Freshness::Fresh
                }
            }
        }
    }

    /// Records a verified sequence number. Call only after the AEAD verified, so that a
    /// forged message cannot move the window.
    pub fn mark(&mut self, sequence: u64) {
        match &mut self.state {
            WindowState::Valid { highest, seen } => {
                if sequence > *highest {
                    let shift = sequence - *highest;
                    *seen = if shift >= Self::SIZE {
                        0
                    } else {
                        *seen << shift
                    };
                    *seen |= 1;
                    *highest = sequence;
                } else if *highest - sequence < Self::SIZE {
                    *seen |= 1u32 << (*highest - sequence);
                }
            }
            _ => {
                self.state = WindowState::Valid {
                    highest: sequence,
                    seen: 1,
                }
            }
        }
    }

    /// Initializes a lost window from the request that answered the Echo challenge
    /// (Appendix B.1.2): it and every number below it count as seen, because the server
    /// cannot know which of them it processed before it lost its state.
    pub(crate) fn initialize_at(&mut self, sequence: u64) {
        self.state = WindowState::Valid {
            highest: sequence,
            seen: u32::MAX,
        };
    }

    pub(crate) fn set_challenge(&mut self, echo: EchoValue) {
        if let WindowState::Uninitialized { challenge } = &mut self.state {
            *challenge = Some(echo);
        }
    }

    /// Does `echo` answer the outstanding challenge?
    pub(crate) fn echo_answers(&self, echo: &[u8]) -> bool {
        matches!(&self.state, WindowState::Uninitialized { challenge: Some(c) } if c.matches(echo))
    }
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn window_accepts_reordered_and_refuses_replays() {
        let mut w = ReplayWindow::new();
        for n in [5u64, 7, 6, 40] {
            assert_eq!(w.check(n), Freshness::Fresh, "{n}");
            w.mark(n);
            assert_eq!(w.check(n), Freshness::Replay, "{n} again");
        }
        // 40 - 31 = 9 is the oldest in the window; 8 is too old.
        assert_eq!(w.check(9), Freshness::Fresh);
        assert_eq!(w.check(8), Freshness::Replay);
        assert_eq!(w.check(7), Freshness::Replay);
        w.mark(100);
        assert_eq!(w.check(40), Freshness::Replay);
        assert_eq!(w.check(99), Freshness::Fresh);
    }

    #[test]
    fn lost_window_needs_echo() {
        let mut w = ReplayWindow::uninitialized();
        assert_eq!(w.check(0), Freshness::EchoRequired);
        assert!(!w.echo_answers(b"x"));
        w.set_challenge(EchoValue::new(b"challenge").unwrap_or(EchoValue {
            bytes: [0; 40],
            len: 0,
        }));
        assert!(w.echo_answers(b"challenge"));
        assert!(!w.echo_answers(b"challengf"));
        assert!(!w.echo_answers(b"challeng"));
        w.mark(12);
        assert_eq!(w.check(12), Freshness::Replay);
        assert_eq!(w.check(13), Freshness::Fresh);
    }
}
