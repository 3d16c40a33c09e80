//! Conversions between the wire values of `e2m-msg` and the store values of `e2m-keystore`.

use e2m_keystore as ks;
use e2m_msg as msg;

/// The wire form of a session id: `e2m_msg::SessionId::from_random` of its 16 octets (22
/// characters of the URL-safe base64 alphabet, the 128-bit value big-endian, six bits per
/// character).
pub(crate) fn session_to_wire(id: &ks::SessionId) -> msg::SessionId {
    msg::SessionId::from_random(*id.expose_secret())
}

/// The inverse of [`session_to_wire`]. `None` for any other text: such an id was never
/// issued, so it names no session (answered like an unknown one).
pub(crate) fn session_from_wire(id: &msg::SessionId) -> Option<ks::SessionId> {
    let text = id.as_str().as_bytes();
    if text.len() != 22 {
        return None;
    }
    let mut value: u128 = 0;
    for (i, &c) in text.iter().enumerate() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        // The first character carries the top two bits only: one spelling per id.
        if i == 0 && v > 3 {
            return None;
        }
        value = (value << 6) | u128::from(v);
    }
    Some(ks::SessionId::from_array(value.to_be_bytes()))
}

pub(crate) fn subscription_to_wire(id: ks::SubscriptionId) -> Option<msg::SubscriptionId> {
    msg::SubscriptionId::new(&id.as_u64().to_string()).ok()
}

/// Decimal digits without a leading zero only: one spelling per id.
pub(crate) fn subscription_from_wire(id: &msg::SubscriptionId) -> Option<ks::SubscriptionId> {
    let text = id.as_str();
    if text.starts_with('0') || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().map(ks::SubscriptionId::from_u64)
}

pub(crate) fn time_from_wire(t: msg::Timestamp) -> ks::Timestamp {
    ks::Timestamp::from_unix_secs(t.as_unix_seconds())
}

/// Saturates at the last instant the wire can carry (9999-12-31T23:59:59Z).
pub(crate) fn time_to_wire(t: ks::Timestamp) -> msg::Timestamp {
    msg::Timestamp::from_unix_seconds_saturating(t.as_unix_secs())
}

pub(crate) fn events_from_wire(events: msg::EventSet) -> ks::EventSet {
    events.iter().fold(ks::EventSet::EMPTY, |acc, e| {
        acc.union(match e {
            msg::EventType::KeyAvailable => ks::EventSet::KEY_AVAILABLE,
            msg::EventType::KeyRetired => ks::EventSet::KEY_RETIRED,
            msg::EventType::KeyInUse => ks::EventSet::KEY_IN_USE,
            // A later event type this core does not know: it selects nothing.
            _ => ks::EventSet::EMPTY,
        })
    })
}

pub(crate) fn ue_from_store(name: &ks::UeName) -> msg::UeRef {
    match name {
        ks::UeName::App(a) => msg::UeRef::AppIdentity(a.clone()),
        ks::UeName::Imsi(i) => msg::UeRef::Imsi(i.clone()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly on a broken fixture")]
mod tests {
    use super::*;

    #[test]
    fn session_ids_round_trip_through_the_wire_form() {
        for bytes in [[0u8; 16], [0xff; 16], *b"0123456789abcdef"] {
            let id = ks::SessionId::from_array(bytes);
            let wire = session_to_wire(&id);
            assert_eq!(wire.as_str().len(), 22);
            assert!(session_from_wire(&wire).unwrap() == id);
        }
        // Top character beyond two bits, wrong length, bad character: not an issued id.
        for bad in ["EAAAAAAAAAAAAAAAAAAAAA", "AAAA", "AAAAAAAAAAAAAAAAAAAAAAA"] {
            assert!(session_from_wire(&msg::SessionId::new(bad).unwrap()).is_none());
        }
    }

    #[test]
    fn subscription_ids_have_one_spelling() {
        let id = ks::SubscriptionId::from_u64(42);
        let wire = subscription_to_wire(id).unwrap();
        assert_eq!(wire.as_str(), "42");
        assert_eq!(subscription_from_wire(&wire), Some(id));
        for bad in ["042", "0", "4a", "-1", "99999999999999999999999"] {
            assert_eq!(
                subscription_from_wire(&msg::SubscriptionId::new(bad).unwrap()),
                None
            );
        }
    }
}
