//! Time as a value: every operation that depends on time takes `now` as an argument, so the
//! stores and the EMKS core are deterministic and testable without a clock (the sans-IO rule).

use core::time::Duration;

/// A point in time: whole seconds since the Unix epoch (1970-01-01T00:00:00Z, UTC).
///
/// Seconds are enough: key lifetimes and session lifetimes are minutes to days. The
/// arithmetic saturates instead of overflowing, so a hostile or buggy lifetime can make a
/// deadline "never" but can never wrap it into the past.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The Unix epoch itself.
    pub const EPOCH: Timestamp = Timestamp(0);
    /// The latest representable time: used as "never".
    pub const MAX: Timestamp = Timestamp(u64::MAX);

    /// The time `secs` seconds after the Unix epoch.
    pub const fn from_unix_secs(secs: u64) -> Timestamp {
        Timestamp(secs)
    }

    /// Seconds since the Unix epoch.
    pub const fn as_unix_secs(self) -> u64 {
        self.0
    }

    /// `self + d`, rounded down to whole seconds, saturating at [`Timestamp::MAX`].
    pub const fn saturating_add(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(d.as_secs()))
    }

    /// `self - d`, saturating at the epoch.
    pub const fn saturating_sub(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_sub(d.as_secs()))
    }

    /// The current time from the system clock. A convenience for transports and examples;
    /// nothing in this crate calls it.
    pub fn now_from_system_clock() -> Timestamp {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(since.as_secs())
    }
}

impl core::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "@{}", self.0)
    }
}
