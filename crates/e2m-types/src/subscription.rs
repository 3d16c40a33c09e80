//! Subscription identifiers.

use core::fmt;
use core::str::FromStr;

use crate::ParseError;

/// The id of a subscription (seed 6.x.2.2.2, "Subscription to Notification"), chosen by the
/// side that accepted it.
///
/// Not a secret: a subscription is bound to the subscriber's TLS identity, and only that
/// subscriber may read or remove it, whoever knows the number. Its text form (in
/// `/e2m/v1/subscriptions/{id}` and in XML) is the decimal number without leading zeros:
/// one spelling per id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionId(u64);

impl SubscriptionId {
    /// The most characters of the text form (`u64::MAX` has 20 digits).
    pub const MAX_TEXT_LEN: usize = 20;

    /// The id with this number.
    pub const fn from_u64(n: u64) -> SubscriptionId {
        SubscriptionId(n)
    }

    /// Its number.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// Parses the text form from octets.
    ///
    /// # Errors
    /// [`ParseError::BadSubscriptionId`] for anything but decimal digits without a leading
    /// zero (`0` itself is the one spelling of zero) whose value fits in 64 bits.
    pub fn parse_bytes(text: &[u8]) -> Result<SubscriptionId, ParseError> {
        if text.is_empty() || text.len() > Self::MAX_TEXT_LEN || (text[0] == b'0' && text.len() > 1)
        {
            return Err(ParseError::BadSubscriptionId);
        }
        let mut n: u64 = 0;
        for &c in text {
            if !c.is_ascii_digit() {
                return Err(ParseError::BadSubscriptionId);
            }
            n = n
                .checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(c - b'0')))
                .ok_or(ParseError::BadSubscriptionId)?;
        }
        Ok(SubscriptionId(n))
    }
}

impl fmt::Display for SubscriptionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for SubscriptionId {
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
    fn one_spelling_per_id() {
        for n in [0, 1, 42, u64::MAX] {
            let id = SubscriptionId::from_u64(n);
            assert_eq!(id.to_string().parse::<SubscriptionId>(), Ok(id));
        }
        for bad in [
            "",
            "00",
            "042",
            "4a",
            "-1",
            "+1",
            " 1",
            "18446744073709551616",
            "1e3",
        ] {
            assert_eq!(
                bad.parse::<SubscriptionId>(),
                Err(ParseError::BadSubscriptionId),
                "{bad}"
            );
        }
    }
}
