//! Byte layouts of the stored values. Fixed-width integers are big-endian; every decoder
//! checks lengths and re-validates identities with their e2m-keyid types, so a damaged or
//! edited value is a typed error ([`RedbStoreError::Corrupt`]), never a panic or a wrong
//! answer.

use e2m_keystore::{
    AppIdentity, EmseId, EventSet, Imsi, KeyId, SessionInfo, SessionRef, SubscriptionRecord,
    Timestamp, UeFilter, UeRef,
};
use e2m_seal::SealedKey;

use crate::RedbStoreError;
use crate::error::DbResult;

/// One retained intermediate key as stored: clear fields and the sealed key.
///
/// The clear fields are exactly what e2m-seal binds into the associated data (with the
/// IMSI, which is the row's key), so the sealed bytes open only in this place.
pub(crate) struct Slot {
    pub(crate) key_id: KeyId,
    pub(crate) created: Timestamp,
    /// The expiry sealed into the record (`created + max_age` of the policy at push time).
    pub(crate) expires: Timestamp,
    pub(crate) sealed: [u8; SealedKey::LEN],
}

/// `key id (4) ‖ created (8) ‖ expires (8) ‖ sealed key (65)`, times in Unix
/// milliseconds (schema version 2; version 1 held seconds and is refused at open).
pub(crate) const SLOT_LEN: usize = 4 + 8 + 8 + SealedKey::LEN;

/// A UE's slots, oldest first, concatenated.
pub(crate) fn encode_slots(slots: &[Slot]) -> Vec<u8> {
    let mut out = Vec::with_capacity(slots.len() * SLOT_LEN);
    for s in slots {
        out.extend_from_slice(&s.key_id.as_u32().to_be_bytes());
        out.extend_from_slice(&s.created.as_unix_millis().to_be_bytes());
        out.extend_from_slice(&s.expires.as_unix_millis().to_be_bytes());
        out.extend_from_slice(&s.sealed);
    }
    out
}

/// The slots of a stored UE record.
pub(crate) fn decode_slots(bytes: &[u8]) -> DbResult<Vec<Slot>> {
    if !bytes.len().is_multiple_of(SLOT_LEN) {
        return Err(RedbStoreError::Corrupt("key record"));
    }
    bytes
        .chunks_exact(SLOT_LEN)
        .map(|chunk| {
            let mut r = Reader::new(chunk, "key record");
            let key_id = KeyId::from_u32(r.u32()?);
            let created = r.timestamp()?;
            let expires = r.timestamp()?;
            let sealed = r.array::<{ SealedKey::LEN }>()?;
            Ok(Slot {
                key_id,
                created,
                expires,
                sealed,
            })
        })
        .collect()
}

/// `session ref (8) ‖ created (8) ‖ expires (8) ‖ EMSE_Id (the rest, UTF-8)`, times in
/// Unix milliseconds.
pub(crate) fn encode_session(info: &SessionInfo) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + info.emse.as_str().len());
    out.extend_from_slice(&info.session.as_u64().to_be_bytes());
    out.extend_from_slice(&info.created.as_unix_millis().to_be_bytes());
    out.extend_from_slice(&info.expires.as_unix_millis().to_be_bytes());
    out.extend_from_slice(info.emse.as_bytes());
    out
}

/// A stored session.
pub(crate) fn decode_session(bytes: &[u8]) -> DbResult<SessionInfo> {
    const WHAT: &str = "session";
    let mut r = Reader::new(bytes, WHAT);
    let session = SessionRef::from_u64(r.u64()?);
    let created = r.timestamp()?;
    let expires = r.timestamp()?;
    let emse = EmseId::from_utf8(r.rest()).map_err(|_| RedbStoreError::Corrupt(WHAT))?;
    Ok(SessionInfo {
        session,
        emse,
        created,
        expires,
    })
}

const UE_NONE: u8 = 0;
const UE_BY_APP_IDENTITY: u8 = 1;
const UE_BY_IMSI: u8 = 2;

/// `session ref (8) ‖ events (1) ‖ UE filter ‖ EMSE_Id length (2) ‖ EMSE_Id ‖ callback
/// (the rest)`, where the UE filter is `0` (none), or `1` / `2` (named by application
/// identity / by IMSI) `‖ IMSI length (1) ‖ IMSI ‖ name length (2) ‖ name`.
pub(crate) fn encode_subscription(sub: &SubscriptionRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + sub.callback.len());
    out.extend_from_slice(&sub.session.as_u64().to_be_bytes());
    out.push(sub.events.bits());
    match &sub.ue {
        None => out.push(UE_NONE),
        Some(filter) => {
            let (tag, name) = match &filter.name {
                UeRef::AppIdentity(app) => (UE_BY_APP_IDENTITY, app.as_bytes()),
                UeRef::Imsi(imsi) => (UE_BY_IMSI, imsi.as_bytes()),
            };
            out.push(tag);
            push_short(&mut out, filter.imsi.as_bytes(), 1);
            push_short(&mut out, name, 2);
        }
    }
    push_short(&mut out, sub.emse.as_bytes(), 2);
    out.extend_from_slice(sub.callback.as_bytes());
    out
}

/// Appends `len(bytes)` in `width` octets and `bytes`. The identity types bound every
/// length far below the width (IMSI ≤ 15, identities ≤ a few hundred octets).
fn push_short(out: &mut Vec<u8>, bytes: &[u8], width: usize) {
    let len = (bytes.len() as u64).to_be_bytes();
    out.extend_from_slice(&len[8 - width..]);
    out.extend_from_slice(bytes);
}

/// A stored subscription.
pub(crate) fn decode_subscription(bytes: &[u8]) -> DbResult<SubscriptionRecord> {
    const WHAT: &str = "subscription";
    let bad = |_| RedbStoreError::Corrupt(WHAT);
    let mut r = Reader::new(bytes, WHAT);
    let session = SessionRef::from_u64(r.u64()?);
    let events = EventSet::from_bits(r.u8()?).ok_or(RedbStoreError::Corrupt(WHAT))?;
    let ue = match r.u8()? {
        UE_NONE => None,
        tag @ (UE_BY_APP_IDENTITY | UE_BY_IMSI) => {
            let n = usize::from(r.u8()?);
            let imsi = Imsi::from_utf8(r.take(n)?).map_err(bad)?;
            let n = usize::from(r.u16()?);
            let name = r.take(n)?;
            let name = if tag == UE_BY_IMSI {
                UeRef::Imsi(Imsi::from_utf8(name).map_err(bad)?)
            } else {
                UeRef::AppIdentity(AppIdentity::from_utf8(name).map_err(bad)?)
            };
            Some(UeFilter { imsi, name })
        }
        _ => return Err(RedbStoreError::Corrupt(WHAT)),
    };
    let n = usize::from(r.u16()?);
    let emse = EmseId::from_utf8(r.take(n)?).map_err(bad)?;
    let callback =
        String::from_utf8(r.rest().to_vec()).map_err(|_| RedbStoreError::Corrupt(WHAT))?;
    Ok(SubscriptionRecord {
        session,
        emse,
        events,
        ue,
        callback,
    })
}

/// Reads fields off a stored value; every short read is [`RedbStoreError::Corrupt`].
struct Reader<'a> {
    bytes: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], what: &'static str) -> Self {
        Reader { bytes, what }
    }

    fn take(&mut self, n: usize) -> DbResult<&'a [u8]> {
        if n > self.bytes.len() {
            return Err(RedbStoreError::Corrupt(self.what));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> DbResult<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> DbResult<u8> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> DbResult<u16> {
        self.array().map(u16::from_be_bytes)
    }

    fn u32(&mut self) -> DbResult<u32> {
        self.array().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> DbResult<u64> {
        self.array().map(u64::from_be_bytes)
    }

    /// A time in Unix milliseconds; one past [`Timestamp::MAX`] was never written.
    fn timestamp(&mut self) -> DbResult<Timestamp> {
        let what = self.what;
        Timestamp::checked_from_unix_millis(self.u64()?).ok_or(RedbStoreError::Corrupt(what))
    }

    fn rest(&mut self) -> &'a [u8] {
        core::mem::take(&mut self.bytes)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly on a broken fixture")]
mod tests {
    use super::*;
    use e2m_keystore::EventType;

    #[test]
    fn subscription_round_trips_and_truncations_are_typed_errors() {
        let sub = SubscriptionRecord {
            session: SessionRef::from_u64(7),
            emse: EmseId::new("emse-a.example.com").unwrap(),
            events: EventSet::single(EventType::KeyAvailable),
            ue: Some(UeFilter {
                imsi: Imsi::new("001010000000007").unwrap(),
                name: UeRef::AppIdentity(AppIdentity::new("ue-7@iot.example").unwrap()),
            }),
            callback: "https://emse-a.example.com/notify".to_owned(),
        };
        let bytes = encode_subscription(&sub);
        assert_eq!(decode_subscription(&bytes).unwrap(), sub);
        for n in 0..bytes.len() - sub.callback.len() {
            assert!(decode_subscription(&bytes[..n]).is_err(), "prefix {n}");
        }
    }

    #[test]
    fn slot_times_keep_their_milliseconds() {
        let slot = Slot {
            key_id: KeyId::from_u32(7),
            created: Timestamp::from_unix_millis(1_800_000_000_001),
            expires: Timestamp::from_unix_millis(1_800_086_400_001),
            sealed: [0; SealedKey::LEN],
        };
        let bytes = encode_slots(core::slice::from_ref(&slot));
        // Big-endian milliseconds after the key id: 1800000000001 = 0x01a3185c5001.
        assert_eq!(&bytes[4..12], &[0, 0, 0x01, 0xa3, 0x18, 0x5c, 0x50, 0x01]);
        let back = decode_slots(&bytes).unwrap();
        assert_eq!(
            (back[0].created, back[0].expires),
            (slot.created, slot.expires)
        );
        // A time past 9999-12-31T23:59:59.999Z was never written: corrupt, not "never".
        let mut bad = bytes.clone();
        bad[4..12].copy_from_slice(&u64::MAX.to_be_bytes());
        assert!(decode_slots(&bad).is_err());
    }

    #[test]
    fn slots_of_a_wrong_length_are_refused() {
        assert!(decode_slots(&[0; SLOT_LEN - 1]).is_err());
        assert_eq!(decode_slots(&[0; 2 * SLOT_LEN]).unwrap().len(), 2);
    }
}
