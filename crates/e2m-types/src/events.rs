//! What a subscription selects and a notification reports.

use core::fmt;
use core::str::FromStr;

use crate::ParseError;

/// One kind of event (seed 6.x.2.2.2: subscription and notification in both directions; the
/// seed's editor's note leaves the events "ffs", so these are the ones the key life cycle
/// needs, and the enum may grow).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
#[non_exhaustive]
pub enum EventType {
    /// EMKS → EMSE: a new `e2m_int_key` arrived for the UE (re-authentication, seed
    /// 6.x.2.1 "Key refresh" 2); the next key fetch with the UE's new key id will succeed.
    KeyAvailable,
    /// EMKS → EMSE: a key the EMSE may hold is no longer retained by the EMKS (evicted,
    /// replaced or expired); sessions on it continue, new handshakes with its key id fail.
    KeyRetired,
    /// EMSE → EMKS: the UE completed an application-layer handshake with this key id, so
    /// the EMKS may let older keys of that UE go (the seed's race cases a and b resolved).
    KeyInUse,
}

impl EventType {
    /// Every event type, in the order of the XSD enumeration (the order they are encoded in).
    pub const ALL: [EventType; 3] = [
        EventType::KeyAvailable,
        EventType::KeyRetired,
        EventType::KeyInUse,
    ];

    /// The XML and text token: `key-available`, `key-retired` or `key-in-use`.
    pub const fn as_str(self) -> &'static str {
        match self {
            EventType::KeyAvailable => "key-available",
            EventType::KeyRetired => "key-retired",
            EventType::KeyInUse => "key-in-use",
        }
    }

    const fn bit(self) -> u8 {
        match self {
            EventType::KeyAvailable => 1,
            EventType::KeyRetired => 2,
            EventType::KeyInUse => 4,
        }
    }

    /// Parses the token from octets.
    ///
    /// # Errors
    /// [`ParseError::UnknownEventType`].
    pub fn parse_bytes(text: &[u8]) -> Result<Self, ParseError> {
        EventType::ALL
            .into_iter()
            .find(|e| e.as_str().as_bytes() == text)
            .ok_or(ParseError::UnknownEventType)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventType {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_bytes(s.as_bytes())
    }
}

/// A non-empty set of event types: what a subscription selects (at least one, as the XSD
/// requires, so an empty subscription cannot even be built).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventSet(u8);

impl EventSet {
    const KNOWN: u8 = 1 | 2 | 4;

    /// The set holding `event` only.
    pub const fn single(event: EventType) -> Self {
        EventSet(event.bit())
    }

    /// Every event type this version defines.
    pub const fn all() -> Self {
        EventSet(Self::KNOWN)
    }

    /// The set of the given events, or `None` if there are none.
    pub fn from_events<I: IntoIterator<Item = EventType>>(events: I) -> Option<Self> {
        let bits = events.into_iter().fold(0u8, |acc, e| acc | e.bit());
        (bits != 0).then_some(EventSet(bits))
    }

    /// This set with `event` added.
    #[must_use]
    pub const fn with(self, event: EventType) -> Self {
        EventSet(self.0 | event.bit())
    }

    /// `self ∪ other`.
    #[must_use]
    pub const fn union(self, other: EventSet) -> Self {
        EventSet(self.0 | other.0)
    }

    /// Whether `event` is selected.
    pub const fn contains(self, event: EventType) -> bool {
        self.0 & event.bit() != 0
    }

    /// Whether `self` and `other` share an event.
    pub const fn intersects(self, other: EventSet) -> bool {
        self.0 & other.0 != 0
    }

    /// The selected events, in the order of [`EventType::ALL`].
    pub fn iter(self) -> impl Iterator<Item = EventType> {
        EventType::ALL
            .into_iter()
            .filter(move |e| self.contains(*e))
    }

    /// The set as bits (key-available 1, key-retired 2, key-in-use 4), for a store that
    /// persists it.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// The set from [`bits`](Self::bits). Bits this version does not define (written by a
    /// newer one) are dropped; `None` if no defined bit remains.
    pub const fn from_bits(bits: u8) -> Option<Self> {
        let known = bits & Self::KNOWN;
        if known == 0 {
            None
        } else {
            Some(EventSet(known))
        }
    }
}

impl fmt::Debug for EventSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_sets() {
        let set = EventSet::single(EventType::KeyInUse).with(EventType::KeyAvailable);
        assert_eq!(
            set.iter().collect::<Vec<_>>(),
            [EventType::KeyAvailable, EventType::KeyInUse]
        );
        assert!(!set.contains(EventType::KeyRetired));
        assert!(set.intersects(EventSet::single(EventType::KeyInUse)));
        assert!(!set.intersects(EventSet::single(EventType::KeyRetired)));
        assert_eq!(EventSet::from_events([]), None);
        assert_eq!(EventSet::all().iter().count(), 3);
        assert_eq!(EventSet::from_bits(set.bits()), Some(set));
        assert_eq!(EventSet::from_bits(0x80), None);
        assert_eq!(
            EventSet::from_bits(0x81),
            Some(EventSet::single(EventType::KeyAvailable))
        );
        for e in EventType::ALL {
            assert_eq!(e.as_str().parse::<EventType>(), Ok(e));
        }
        assert_eq!(
            "key-gone".parse::<EventType>(),
            Err(ParseError::UnknownEventType)
        );
    }
}
