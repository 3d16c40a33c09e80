//! Time as a value: every operation that depends on time takes `now` as an argument, so the
//! stores and the EMKS core are deterministic and testable without a clock (the sans-IO rule).

use core::fmt;
use core::str::FromStr;
use core::time::Duration;

use crate::ParseError;

/// A UTC instant, to the second: seconds since 1970-01-01T00:00:00Z (leap seconds not
/// counted, as in POSIX time), from the epoch to 9999-12-31T23:59:59Z.
///
/// Seconds are enough: key and session lifetimes are minutes to days. The range is that of
/// the one text form the wire uses, `YYYY-MM-DDThh:mm:ssZ` (the `xs:dateTime` subset of
/// RFC 3339 §5.6 with `Z`, no fraction, no offset), so every `Timestamp` can be written and
/// read back. [`Timestamp::MAX`] stands for "never". Construction and arithmetic saturate
/// at `MAX` instead of overflowing, so a hostile or buggy lifetime can make a deadline
/// "never" but can never wrap it into the past; [`checked_from_unix_secs`] refuses instead.
///
/// [`checked_from_unix_secs`]: Self::checked_from_unix_secs
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The Unix epoch, 1970-01-01T00:00:00Z.
    pub const EPOCH: Timestamp = Timestamp(0);
    /// 9999-12-31T23:59:59Z, the last instant with a four-digit year: used as "never".
    pub const MAX: Timestamp = Timestamp(253_402_300_799);
    /// Characters in the text form.
    pub const TEXT_LEN: usize = 20;

    /// The instant `secs` seconds after the epoch, or [`Timestamp::MAX`] if that is later.
    pub const fn from_unix_secs(secs: u64) -> Timestamp {
        if secs > Self::MAX.0 {
            Self::MAX
        } else {
            Timestamp(secs)
        }
    }

    /// The instant `secs` seconds after the epoch, or `None` past [`Timestamp::MAX`].
    pub const fn checked_from_unix_secs(secs: u64) -> Option<Timestamp> {
        if secs > Self::MAX.0 {
            None
        } else {
            Some(Timestamp(secs))
        }
    }

    /// Seconds since the epoch.
    pub const fn as_unix_secs(self) -> u64 {
        self.0
    }

    /// `self + d`, rounded down to whole seconds, saturating at [`Timestamp::MAX`].
    #[must_use]
    pub const fn saturating_add(self, d: Duration) -> Timestamp {
        Self::from_unix_secs(self.0.saturating_add(d.as_secs()))
    }

    /// `self - d`, rounded down to whole seconds, saturating at the epoch.
    #[must_use]
    pub const fn saturating_sub(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_sub(d.as_secs()))
    }

    /// `self + secs`, or `None` past [`Timestamp::MAX`] (e.g. an expiry `now + ttl` that a
    /// message must carry exactly).
    pub const fn checked_add_secs(self, secs: u64) -> Option<Timestamp> {
        match self.0.checked_add(secs) {
            Some(s) => Self::checked_from_unix_secs(s),
            None => None,
        }
    }

    /// The current time from the system clock. A convenience for transports and examples;
    /// nothing in e2m's sans-IO cores calls it.
    pub fn now_from_system_clock() -> Timestamp {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Self::from_unix_secs(since.as_secs())
    }

    /// Parses `YYYY-MM-DDThh:mm:ssZ` from octets.
    ///
    /// # Errors
    /// [`ParseError::BadTimestamp`] for any other form or a date that does not exist
    /// (February 30th, hour 24, second 60), [`ParseError::TimestampOutOfRange`] before 1970.
    pub fn parse_bytes(text: &[u8]) -> Result<Self, ParseError> {
        let t: &[u8; 20] = text.try_into().map_err(|_| ParseError::BadTimestamp)?;
        if t[4] != b'-'
            || t[7] != b'-'
            || t[10] != b'T'
            || t[13] != b':'
            || t[16] != b':'
            || t[19] != b'Z'
        {
            return Err(ParseError::BadTimestamp);
        }
        let num = |range: core::ops::Range<usize>| -> Result<u64, ParseError> {
            let mut v = 0u64;
            for &c in &t[range] {
                if !c.is_ascii_digit() {
                    return Err(ParseError::BadTimestamp);
                }
                v = v * 10 + u64::from(c - b'0');
            }
            Ok(v)
        };
        let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&month)
            || day == 0
            || day > days_in_month(year, month)
            || hour > 23
            || minute > 59
            || second > 59
        {
            return Err(ParseError::BadTimestamp);
        }
        if year < 1970 {
            return Err(ParseError::TimestampOutOfRange);
        }
        let days = days_from_civil(year, month, day);
        Ok(Timestamp(
            days * 86_400 + hour * 3600 + minute * 60 + second,
        ))
    }

    /// The text form, `YYYY-MM-DDThh:mm:ssZ` (ASCII).
    pub fn to_text(self) -> [u8; Self::TEXT_LEN] {
        let days = self.0 / 86_400;
        let secs = self.0 % 86_400;
        let (year, month, day) = civil_from_days(days);
        let mut out = *b"0000-00-00T00:00:00Z";
        let mut put = |at: usize, width: usize, mut v: u64| {
            for i in (0..width).rev() {
                // v % 10 < 10: the cast cannot truncate.
                out[at + i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(0, 4, year);
        put(5, 2, month);
        put(8, 2, day);
        put(11, 2, secs / 3600);
        put(14, 2, secs / 60 % 60);
        put(17, 2, secs % 60);
        out
    }
}

fn is_leap(year: u64) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (year ≥ 1970). Counting from March
/// puts the leap day last, so each 400-year era has the same shape (146 097 days).
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12; // March = 0
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    // 719 468 days from 0000-03-01 to 1970-01-01.
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.to_text();
        f.write_str(core::str::from_utf8(&text).map_err(|_| fmt::Error)?)
    }
}

/// The text form, so that a log line or an assertion shows the instant, not a number.
impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({self})")
    }
}

impl FromStr for Timestamp {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_bytes(s.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn timestamps_at_known_instants() {
        // Independent reference points: the epoch, a leap day (POSIX time 951782400 is
        // 2000-02-29T00:00:00Z), 2100 (not a leap year), the last second of year 9999.
        for (seconds, text) in [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (4_107_542_399, "2100-02-28T23:59:59Z"),
            (4_107_542_400, "2100-03-01T00:00:00Z"),
            (253_402_300_799, "9999-12-31T23:59:59Z"),
        ] {
            let t = Timestamp::checked_from_unix_secs(seconds).unwrap();
            assert_eq!(t.to_string(), text);
            assert_eq!(text.parse::<Timestamp>(), Ok(t));
        }
        assert_eq!(Timestamp::checked_from_unix_secs(253_402_300_800), None);
        assert_eq!(Timestamp::from_unix_secs(u64::MAX), Timestamp::MAX);
        for bad in [
            "2100-02-29T00:00:00Z",
            "2000-02-30T00:00:00Z",
            "2000-13-01T00:00:00Z",
            "2000-1-01T00:00:00Z",
            "2000-01-01t00:00:00Z",
            "+000-01-01T00:00:00Z",
            "2000-01-01T24:00:00Z",
            "2000-01-01T00:00:60Z",
            "2000-01-01T00:00:00+00:00",
        ] {
            assert_eq!(
                bad.parse::<Timestamp>(),
                Err(ParseError::BadTimestamp),
                "{bad}"
            );
        }
        assert_eq!(
            "1969-12-31T23:59:59Z".parse::<Timestamp>(),
            Err(ParseError::TimestampOutOfRange)
        );
    }

    #[test]
    fn arithmetic_saturates_at_never() {
        let t = Timestamp::from_unix_secs(10);
        assert_eq!(t.checked_add_secs(5), Some(Timestamp::from_unix_secs(15)));
        assert_eq!(t.checked_add_secs(u64::MAX), None);
        assert_eq!(Timestamp::MAX.checked_add_secs(1), None);
        assert_eq!(
            t.saturating_add(Duration::from_secs(u64::MAX)),
            Timestamp::MAX
        );
        assert_eq!(t.saturating_sub(Duration::from_secs(11)), Timestamp::EPOCH);
        assert_eq!(
            format!("{:?}", Timestamp::EPOCH),
            "Timestamp(1970-01-01T00:00:00Z)"
        );
    }

    proptest::proptest! {
        #[test]
        fn text_round_trips(secs in 0u64..=253_402_300_799) {
            let t = Timestamp::from_unix_secs(secs);
            proptest::prop_assert_eq!(t.to_string().parse::<Timestamp>(), Ok(t));
        }
    }
}
