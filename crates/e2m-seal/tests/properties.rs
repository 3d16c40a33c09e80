//! Properties over arbitrary records: seal→open round-trips; any single flipped bit in the
//! sealed bytes, and any changed bound field, makes the open fail (never a key).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failure should stop the test"
)]

use e2m_seal::{
    E2mIntKey, Imsi, IntKeyRecord, Kek, KekVersion, KeyId, Keyring, OpenError, SealNonce,
    SealedKey, Timestamp,
};
use proptest::prelude::*;

/// Versions 1 and 3: a flipped bit can turn 3 into 1 (held: the open must still fail) or
/// into a version not held, or into 0 (not a version).
fn keyring() -> Keyring {
    Keyring::new([
        Kek::from_array(KekVersion::new(1).unwrap(), [0x11; 32]),
        Kek::from_array(KekVersion::new(3).unwrap(), [0x33; 32]),
    ])
    .unwrap()
}

fn imsi() -> impl Strategy<Value = Imsi> {
    "[0-9]{6,15}".prop_map(|s| Imsi::new(&s).unwrap())
}

fn timestamp() -> impl Strategy<Value = Timestamp> {
    (0..=Timestamp::MAX.as_unix_millis()).prop_map(Timestamp::from_unix_millis)
}

#[derive(Debug)]
struct Input {
    imsi: Imsi,
    key_id: u32,
    created: Timestamp,
    expires: Timestamp,
    key: [u8; 32],
    nonce: [u8; 12],
}

fn input() -> impl Strategy<Value = Input> {
    (
        imsi(),
        any::<u32>(),
        timestamp(),
        timestamp(),
        any::<[u8; 32]>(),
        any::<[u8; 12]>(),
    )
        .prop_map(|(imsi, key_id, created, expires, key, nonce)| Input {
            imsi,
            key_id,
            created,
            expires,
            key,
            nonce,
        })
}

impl Input {
    fn record(&self) -> IntKeyRecord<'_> {
        IntKeyRecord::new(
            &self.imsi,
            KeyId::from_u32(self.key_id),
            self.created,
            self.expires,
        )
    }

    fn seal(&self, ring: &Keyring) -> SealedKey {
        ring.seal(
            &self.record(),
            &E2mIntKey::from_array(self.key),
            SealNonce::from_array(self.nonce),
        )
        .unwrap()
    }
}

/// A bound field changed to a different value.
#[derive(Debug, Clone)]
enum Edit {
    Imsi(Imsi),
    KeyId(u32),
    Created(Timestamp),
    Expires(Timestamp),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        imsi().prop_map(Edit::Imsi),
        any::<u32>().prop_map(Edit::KeyId),
        timestamp().prop_map(Edit::Created),
        timestamp().prop_map(Edit::Expires),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn seal_then_open_round_trips(input in input()) {
        let ring = keyring();
        let sealed = input.seal(&ring);
        prop_assert_eq!(sealed.kek_version(), ring.newest_version());
        let reread = SealedKey::from_bytes(sealed.as_bytes()).unwrap();
        let opened = ring.open(&input.record(), &reread).unwrap();
        prop_assert!(opened == E2mIntKey::from_array(input.key));
    }

    #[test]
    fn any_flipped_bit_fails_to_open(input in input(), bit in 0..SealedKey::LEN * 8) {
        let ring = keyring();
        let mut bytes = *input.seal(&ring).as_bytes();
        bytes[bit / 8] ^= 1 << (bit % 8);
        let result = SealedKey::from_bytes(&bytes).and_then(|s| ring.open(&input.record(), &s));
        match bit / 8 {
            0 => prop_assert_eq!(result.err(), Some(OpenError::UnsupportedFormat(bytes[0]))),
            1..=4 => {
                let version = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
                let expected = match KekVersion::new(version) {
                    None => OpenError::BadHeader,
                    Some(v) if ring.contains(v) => OpenError::NotAuthentic(v),
                    Some(v) => OpenError::UnknownKekVersion(v),
                };
                prop_assert_eq!(result.err(), Some(expected));
            }
            _ => prop_assert_eq!(
                result.err(),
                Some(OpenError::NotAuthentic(ring.newest_version()))
            ),
        }
    }

    #[test]
    fn any_changed_bound_field_fails_to_open(input in input(), edit in edit()) {
        let ring = keyring();
        let sealed = input.seal(&ring);
        let base = input.record();
        let (record, changed) = match &edit {
            Edit::Imsi(imsi) => (IntKeyRecord { imsi, ..base }, *imsi != input.imsi),
            Edit::KeyId(id) => (
                IntKeyRecord { key_id: KeyId::from_u32(*id), ..base },
                *id != input.key_id,
            ),
            Edit::Created(t) => (IntKeyRecord { created: *t, ..base }, *t != input.created),
            Edit::Expires(t) => (IntKeyRecord { expires: *t, ..base }, *t != input.expires),
        };
        prop_assume!(changed);
        prop_assert_eq!(
            ring.open(&record, &sealed).err(),
            Some(OpenError::NotAuthentic(ring.newest_version()))
        );
    }

    #[test]
    fn swapped_records_fail_to_open(a in input(), b in input()) {
        prop_assume!(a.record() != b.record());
        let ring = keyring();
        let (sa, sb) = (a.seal(&ring), b.seal(&ring));
        prop_assert_eq!(
            ring.open(&a.record(), &sb).err(),
            Some(OpenError::NotAuthentic(ring.newest_version()))
        );
        prop_assert_eq!(
            ring.open(&b.record(), &sa).err(),
            Some(OpenError::NotAuthentic(ring.newest_version()))
        );
    }
}
