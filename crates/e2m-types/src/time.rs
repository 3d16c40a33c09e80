//! Time as a value: every operation that depends on time takes `now` as an argument, so the
//! stores and the EMKS core are deterministic and testable without a clock (the sans-IO rule).

use core::fmt;
use core::ops::Deref;
use core::str::FromStr;
use core::time::Duration;

use crate::ParseError;

/// Milliseconds in a second.
const MS_PER_SEC: u64 = 1_000;

/// A UTC instant, to the millisecond: milliseconds since 1970-01-01T00:00:00Z (leap seconds
/// not counted, as in POSIX time), from the epoch to 9999-12-31T23:59:59.999Z.
///
/// Milliseconds, not seconds, because the EMKS orders a UE's intermediate keys by their
/// creation time (newest wins, issue 9 item 15): several AKA runs of one UE can fall in one
/// second, and one-second stamps left their order to arrival. A millisecond is as fine as
/// the clocks of several HSS front-ends agree (NTP on a LAN keeps them to about that), so
/// finer digits would order by clock noise; ties left at one millisecond are broken by key
/// id in every store, never by arrival.
///
/// The text form is the `xs:dateTime` subset of RFC 3339 §5.6 with `Z`, no offset, and a
/// fraction of one to three digits written in its canonical XSD form (XSD 1.1 Part 2
/// §3.3.7.2: no trailing zero, no fraction at all for a whole second), so each instant has
/// exactly one spelling and an instant on a whole second keeps the 20-character form
/// `YYYY-MM-DDThh:mm:ssZ` it had before. Every `Timestamp` can be written and read back.
/// [`Timestamp::MAX`] stands for "never". Construction and arithmetic saturate at `MAX`
/// instead of overflowing, so a hostile or buggy lifetime can make a deadline "never" but
/// can never wrap it into the past; the `checked_` constructors refuse instead.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The Unix epoch, 1970-01-01T00:00:00Z.
    pub const EPOCH: Timestamp = Timestamp(0);
    /// 9999-12-31T23:59:59.999Z, the last instant with a four-digit year: used as "never".
    pub const MAX: Timestamp = Timestamp(253_402_300_799_999);
    /// Characters in the longest text form (`YYYY-MM-DDThh:mm:ss.fffZ`).
    pub const MAX_TEXT_LEN: usize = 24;
    /// Characters in the text form of an instant on a whole second (`YYYY-MM-DDThh:mm:ssZ`).
    pub const MIN_TEXT_LEN: usize = 20;

    /// The instant `ms` milliseconds after the epoch, or [`Timestamp::MAX`] if that is later.
    pub const fn from_unix_millis(ms: u64) -> Timestamp {
        if ms > Self::MAX.0 {
            Self::MAX
        } else {
            Timestamp(ms)
        }
    }

    /// The instant `ms` milliseconds after the epoch, or `None` past [`Timestamp::MAX`].
    pub const fn checked_from_unix_millis(ms: u64) -> Option<Timestamp> {
        if ms > Self::MAX.0 {
            None
        } else {
            Some(Timestamp(ms))
        }
    }

    /// Milliseconds since the epoch: the full resolution, what a store keeps.
    pub const fn as_unix_millis(self) -> u64 {
        self.0
    }

    /// The instant `secs` whole seconds after the epoch, or [`Timestamp::MAX`] if that is
    /// later.
    pub const fn from_unix_secs(secs: u64) -> Timestamp {
        Self::from_unix_millis(secs.saturating_mul(MS_PER_SEC))
    }

    /// The instant `secs` whole seconds after the epoch, or `None` past [`Timestamp::MAX`].
    pub const fn checked_from_unix_secs(secs: u64) -> Option<Timestamp> {
        match secs.checked_mul(MS_PER_SEC) {
            Some(ms) => Self::checked_from_unix_millis(ms),
            None => None,
        }
    }

    /// Whole seconds since the epoch, the fraction dropped (rounded down). Only for a figure
    /// that is in seconds by definition (a log field, an HTTP header); never to store or
    /// compare instants, which would lose the order within a second.
    pub const fn as_unix_secs(self) -> u64 {
        self.0 / MS_PER_SEC
    }

    /// The milliseconds past the whole second, `0..=999`.
    pub const fn subsec_millis(self) -> u16 {
        // < 1000: the cast cannot truncate.
        (self.0 % MS_PER_SEC) as u16
    }

    /// `self + d`, rounded down to whole milliseconds, saturating at [`Timestamp::MAX`].
    #[must_use]
    pub const fn saturating_add(self, d: Duration) -> Timestamp {
        Self::from_unix_millis(self.0.saturating_add(duration_millis(d)))
    }

    /// `self - d`, rounded down to whole milliseconds, saturating at the epoch.
    #[must_use]
    pub const fn saturating_sub(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_sub(duration_millis(d)))
    }

    /// `self + secs`, or `None` past [`Timestamp::MAX`] (e.g. an expiry `now + ttl` that a
    /// message must carry exactly).
    pub const fn checked_add_secs(self, secs: u64) -> Option<Timestamp> {
        match secs.checked_mul(MS_PER_SEC) {
            Some(ms) => match self.0.checked_add(ms) {
                Some(t) => Self::checked_from_unix_millis(t),
                None => None,
            },
            None => None,
        }
    }

    /// The time from `earlier` to `self`, or zero if `earlier` is not earlier.
    pub const fn saturating_duration_since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }

    /// The current time from the system clock, to the millisecond (rounded down). A
    /// convenience for transports and examples; nothing in e2m's sans-IO cores calls it.
    pub fn now_from_system_clock() -> Timestamp {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Self::from_unix_millis(duration_millis(since))
    }

    /// Parses `YYYY-MM-DDThh:mm:ssZ` or `YYYY-MM-DDThh:mm:ss.fZ` from octets, where the
    /// fraction `.f` is one to three digits not ending in `0` (the canonical form, so every
    /// instant has one spelling: `.5`, never `.50` or `.500`; no `.0`).
    ///
    /// # Errors
    /// [`ParseError::BadTimestamp`] for any other form (an offset, a lower-case `t` or `z`,
    /// a fraction of more than three digits, with a trailing zero, or empty) or a date that
    /// does not exist (February 30th, hour 24, second 60),
    /// [`ParseError::TimestampOutOfRange`] before 1970.
    pub fn parse_bytes(text: &[u8]) -> Result<Self, ParseError> {
        if text.len() < Self::MIN_TEXT_LEN || text.len() > Self::MAX_TEXT_LEN {
            return Err(ParseError::BadTimestamp);
        }
        let (t, tail) = text.split_at(19);
        if t[4] != b'-' || t[7] != b'-' || t[10] != b'T' || t[13] != b':' || t[16] != b':' {
            return Err(ParseError::BadTimestamp);
        }
        let digits = |part: &[u8]| -> Result<u64, ParseError> {
            let mut v = 0u64;
            for &c in part {
                if !c.is_ascii_digit() {
                    return Err(ParseError::BadTimestamp);
                }
                v = v * 10 + u64::from(c - b'0');
            }
            Ok(v)
        };
        let millis = match tail {
            [b'Z'] => 0,
            [b'.', fraction @ .., b'Z']
                if !fraction.is_empty() && fraction.last() != Some(&b'0') =>
            {
                // One to three digits (the length bound above): .5 is 500 ms, .05 is 50 ms.
                digits(fraction)? * 10u64.pow(3 - fraction.len() as u32)
            }
            _ => return Err(ParseError::BadTimestamp),
        };
        let (year, month, day) = (digits(&t[0..4])?, digits(&t[5..7])?, digits(&t[8..10])?);
        let (hour, minute, second) = (
            digits(&t[11..13])?,
            digits(&t[14..16])?,
            digits(&t[17..19])?,
        );
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
        let secs = days * 86_400 + hour * 3600 + minute * 60 + second;
        Ok(Timestamp(secs * MS_PER_SEC + millis))
    }

    /// The text form (ASCII): `YYYY-MM-DDThh:mm:ssZ` on a whole second, otherwise
    /// `YYYY-MM-DDThh:mm:ss.fZ` with one to three fraction digits and no trailing zero.
    pub fn to_text(self) -> TimestampText {
        let secs_of_epoch = self.as_unix_secs();
        let days = secs_of_epoch / 86_400;
        let secs = secs_of_epoch % 86_400;
        let (year, month, day) = civil_from_days(days);
        let mut out = TimestampText {
            bytes: *b"0000-00-00T00:00:00.000Z",
            len: Self::MIN_TEXT_LEN as u8,
        };
        let mut put = |at: usize, width: usize, mut v: u64| {
            for i in (0..width).rev() {
                // v % 10 < 10: the cast cannot truncate.
                out.bytes[at + i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(0, 4, year);
        put(5, 2, month);
        put(8, 2, day);
        put(11, 2, secs / 3600);
        put(14, 2, secs / 60 % 60);
        put(17, 2, secs % 60);
        let mut millis = u64::from(self.subsec_millis());
        if millis == 0 {
            out.bytes[19] = b'Z';
        } else {
            put(20, 3, millis);
            let mut digits = 3;
            while millis.is_multiple_of(10) {
                millis /= 10;
                digits -= 1;
            }
            out.bytes[20 + digits] = b'Z';
            // At most 24: the cast cannot truncate.
            out.len = (21 + digits) as u8;
        }
        out
    }
}

/// `d` in whole milliseconds, saturating at `u64::MAX`. In 64-bit arithmetic rather than
/// through `Duration::as_millis` (a `u128`): a store computes an expiry on every lookup.
const fn duration_millis(d: Duration) -> u64 {
    d.as_secs()
        .saturating_mul(MS_PER_SEC)
        .saturating_add(d.subsec_millis() as u64)
}

/// The text form of a [`Timestamp`], on the stack: 20 to 24 ASCII characters.
#[derive(Clone, Copy)]
pub struct TimestampText {
    bytes: [u8; Timestamp::MAX_TEXT_LEN],
    len: u8,
}

impl TimestampText {
    /// The text.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits and separators are ever written.
        core::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    /// The text as octets.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl Deref for TimestampText {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for TimestampText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
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
        f.write_str(self.to_text().as_str())
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
        assert_eq!(Timestamp::MAX.to_string(), "9999-12-31T23:59:59.999Z");
        assert_eq!(
            Timestamp::checked_from_unix_millis(253_402_300_800_000),
            None
        );
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
            "2000-01-01T00:00:00z",
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
    fn fractions_at_known_instants() {
        // The same reference points plus a fraction, written out by hand in the canonical
        // xs:dateTime form (XSD 1.1 Part 2 §3.3.7.2: no trailing zeros in the fraction).
        for (millis, text) in [
            (1, "1970-01-01T00:00:00.001Z"),
            (10, "1970-01-01T00:00:00.01Z"),
            (100, "1970-01-01T00:00:00.1Z"),
            (951_782_400_500, "2000-02-29T00:00:00.5Z"),
            (951_782_400_050, "2000-02-29T00:00:00.05Z"),
            (951_782_400_123, "2000-02-29T00:00:00.123Z"),
            (4_107_542_399_990, "2100-02-28T23:59:59.99Z"),
            (253_402_300_799_999, "9999-12-31T23:59:59.999Z"),
        ] {
            let t = Timestamp::checked_from_unix_millis(millis).unwrap();
            assert_eq!(t.to_string(), text);
            assert_eq!(text.parse::<Timestamp>(), Ok(t), "{text}");
            assert_eq!(t.as_unix_millis(), millis);
            assert_eq!(t.as_unix_secs(), millis / 1000);
            assert_eq!(u64::from(t.subsec_millis()), millis % 1000);
        }
    }

    #[test]
    fn the_decoder_refuses_every_other_spelling_of_a_fraction() {
        for bad in [
            // Not canonical: a trailing zero, or a fraction of zero (one spelling each).
            "2000-01-01T00:00:00.0Z",
            "2000-01-01T00:00:00.000Z",
            "2000-01-01T00:00:00.50Z",
            "2000-01-01T00:00:00.500Z",
            "2000-01-01T00:00:00.120Z",
            // More digits than the millisecond resolution.
            "2000-01-01T00:00:00.1234Z",
            "2000-01-01T00:00:00.0001Z",
            // Empty, not digits, another separator, no `Z`, an offset.
            "2000-01-01T00:00:00.Z",
            "2000-01-01T00:00:00.aZ",
            "2000-01-01T00:00:00.+1Z",
            "2000-01-01T00:00:00. 1Z",
            "2000-01-01T00:00:00,5Z",
            "2000-01-01T00:00:00.5",
            "2000-01-01T00:00:00.5z",
            "2000-01-01T00:00:00.5+00:00",
            "2000-01-01T00:00:60.5Z",
        ] {
            assert_eq!(
                bad.parse::<Timestamp>(),
                Err(ParseError::BadTimestamp),
                "{bad}"
            );
        }
        assert_eq!(
            "1969-12-31T23:59:59.999Z".parse::<Timestamp>(),
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
        // Durations keep their milliseconds and drop what is finer.
        assert_eq!(
            t.saturating_add(Duration::from_micros(1_501_999)),
            Timestamp::from_unix_millis(11_501)
        );
        assert_eq!(
            t.saturating_sub(Duration::from_millis(1)),
            Timestamp::from_unix_millis(9_999)
        );
        assert_eq!(
            Timestamp::from_unix_millis(11_501).saturating_duration_since(t),
            Duration::from_millis(1_501)
        );
        assert_eq!(t.saturating_duration_since(Timestamp::MAX), Duration::ZERO);
        assert_eq!(Timestamp::from_unix_millis(u64::MAX), Timestamp::MAX);
        assert_eq!(
            format!("{:?}", Timestamp::EPOCH),
            "Timestamp(1970-01-01T00:00:00Z)"
        );
    }

    proptest::proptest! {
        #[test]
        fn text_round_trips(ms in 0u64..=253_402_300_799_999) {
            let t = Timestamp::from_unix_millis(ms);
            let text = t.to_string();
            proptest::prop_assert_eq!(text.parse::<Timestamp>(), Ok(t));
            // A whole second keeps the 20-character form it had before fractions existed.
            proptest::prop_assert_eq!(text.len() == Timestamp::MIN_TEXT_LEN, ms % 1000 == 0);
            proptest::prop_assert!(text.len() <= Timestamp::MAX_TEXT_LEN);
        }

        #[test]
        fn one_spelling_per_instant(ms in 0u64..=253_402_300_799_999) {
            // Padding the fraction with a zero, or adding a zero fraction, is another
            // spelling of the same instant: refused.
            let text = Timestamp::from_unix_millis(ms).to_string();
            let stem = &text[..text.len() - 1];
            let padded = if ms % 1000 == 0 { format!("{stem}.0Z") } else { format!("{stem}0Z") };
            proptest::prop_assert_eq!(padded.parse::<Timestamp>(), Err(ParseError::BadTimestamp));
        }
    }
}
