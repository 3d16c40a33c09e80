//! Sealing and opening intermediate-key records: binding to every field, swapped records,
//! KEK rotation and unknown versions, check records, and what `Debug` shows.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failure should stop the test"
)]

use e2m_seal::{
    CheckError, CheckRecord, E2mIntKey, Imsi, IntKeyRecord, Kek, KekVersion, KeyId, Keyring,
    KeyringError, OpenError, SealError, SealNonce, SealedKey, Timestamp,
};

fn v(n: u32) -> KekVersion {
    KekVersion::new(n).unwrap()
}

fn kek(version: u32, fill: u8) -> Kek {
    Kek::from_array(v(version), [fill; 32])
}

fn nonce(n: u8) -> SealNonce {
    SealNonce::from_array([n; 12])
}

fn at(secs: u64) -> Timestamp {
    Timestamp::from_unix_secs(secs)
}

struct Place {
    imsi: Imsi,
    key_id: KeyId,
    created: Timestamp,
    expires: Timestamp,
}

impl Place {
    fn new(imsi: &str, key_id: u32, created: u64, expires: u64) -> Place {
        Place {
            imsi: Imsi::new(imsi).unwrap(),
            key_id: KeyId::from_u32(key_id),
            created: at(created),
            expires: at(expires),
        }
    }

    fn record(&self) -> IntKeyRecord<'_> {
        IntKeyRecord::new(&self.imsi, self.key_id, self.created, self.expires)
    }
}

fn key(fill: u8) -> E2mIntKey {
    E2mIntKey::from_array([fill; 32])
}

#[test]
fn a_sealed_key_opens_for_its_record_only() {
    let ring = Keyring::new([kek(1, 0x11)]).unwrap();
    let place = Place::new("001010123456789", 0xae47_bf35, 1_000, 87_400);
    let sealed = ring.seal(&place.record(), &key(0xA5), nonce(1)).unwrap();
    assert_eq!(sealed.as_bytes().len(), SealedKey::LEN);
    assert_eq!(sealed.kek_version(), v(1));
    let reread = SealedKey::from_bytes(sealed.as_bytes()).unwrap();
    assert_eq!(ring.open(&place.record(), &reread).unwrap(), key(0xA5));
    // The sealed bytes hold no run of the key's octets.
    assert!(!sealed.as_bytes().windows(4).any(|w| w == [0xA5; 4]));
}

#[test]
fn editing_any_bound_field_fails_with_not_authentic() {
    let ring = Keyring::new([kek(1, 0x11)]).unwrap();
    let place = Place::new("001010123456789", 7, 1_000, 2_000);
    let sealed = ring.seal(&place.record(), &key(3), nonce(2)).unwrap();
    let other_imsi = Imsi::new("001010123456788").unwrap();
    let shorter_imsi = Imsi::new("00101012345678").unwrap();
    let base = place.record();
    let edited: [(&str, IntKeyRecord<'_>); 10] = [
        (
            "imsi",
            IntKeyRecord {
                imsi: &other_imsi,
                ..base
            },
        ),
        (
            "imsi length",
            IntKeyRecord {
                imsi: &shorter_imsi,
                ..base
            },
        ),
        (
            "key id",
            IntKeyRecord {
                key_id: KeyId::from_u32(8),
                ..base
            },
        ),
        (
            "created",
            IntKeyRecord {
                created: at(999),
                ..base
            },
        ),
        (
            "created later",
            IntKeyRecord {
                created: at(1_001),
                ..base
            },
        ),
        // The creation time orders a UE's keys to the millisecond (issue 9 item 15), so a
        // shift of one millisecond either way must not open.
        (
            "created 1 ms earlier",
            IntKeyRecord {
                created: Timestamp::from_unix_millis(999_999),
                ..base
            },
        ),
        (
            "created 1 ms later",
            IntKeyRecord {
                created: Timestamp::from_unix_millis(1_000_001),
                ..base
            },
        ),
        (
            "expires",
            IntKeyRecord {
                expires: at(2_001),
                ..base
            },
        ),
        (
            "expires 1 ms later",
            IntKeyRecord {
                expires: Timestamp::from_unix_millis(2_000_001),
                ..base
            },
        ),
        (
            "expires never",
            IntKeyRecord {
                expires: Timestamp::MAX,
                ..base
            },
        ),
    ];
    for (what, record) in edited {
        assert_eq!(
            ring.open(&record, &sealed).err(),
            Some(OpenError::NotAuthentic(v(1))),
            "{what}"
        );
    }
    assert_eq!(ring.open(&base, &sealed).unwrap(), key(3));
}

#[test]
fn editing_the_header_fails_with_a_typed_error() {
    // Two KEKs with the SAME key octets under versions 1 and 2: only the binding of the
    // KEK version into the associated data stops a header edit from 2 to 1.
    let ring = Keyring::new([kek(1, 0x11), kek(2, 0x11)]).unwrap();
    let place = Place::new("001010123456789", 7, 1_000, 2_000);
    let sealed = ring.seal(&place.record(), &key(3), nonce(2)).unwrap();
    assert_eq!(sealed.kek_version(), v(2));

    let mut bytes = *sealed.as_bytes();
    bytes[1..5].copy_from_slice(&1u32.to_be_bytes());
    let relabelled = SealedKey::from_bytes(&bytes).unwrap();
    assert_eq!(
        ring.open(&place.record(), &relabelled).err(),
        Some(OpenError::NotAuthentic(v(1)))
    );

    bytes[1..5].copy_from_slice(&9u32.to_be_bytes());
    let unknown = SealedKey::from_bytes(&bytes).unwrap();
    assert_eq!(
        ring.open(&place.record(), &unknown).err(),
        Some(OpenError::UnknownKekVersion(v(9)))
    );

    bytes[1..5].copy_from_slice(&0u32.to_be_bytes());
    assert_eq!(
        SealedKey::from_bytes(&bytes).err(),
        Some(OpenError::BadHeader)
    );

    let mut bytes = *sealed.as_bytes();
    // Format 1 bound times in whole seconds: refused by its version, never opened under
    // the millisecond layout (where it would look like tampering); a future 3 likewise.
    for old_or_new in [1, 3] {
        bytes[0] = old_or_new;
        assert_eq!(
            SealedKey::from_bytes(&bytes).err(),
            Some(OpenError::UnsupportedFormat(old_or_new))
        );
    }
    assert_eq!(
        SealedKey::from_bytes(&bytes[..64]).err(),
        Some(OpenError::WrongLength {
            expected: 65,
            actual: 64
        })
    );
    assert_eq!(
        SealedKey::from_bytes(&[]).err(),
        Some(OpenError::WrongLength {
            expected: 65,
            actual: 0
        })
    );
}

#[test]
fn swapping_two_records_sealed_bytes_fails_both_ways() {
    let ring = Keyring::new([kek(1, 0x11)]).unwrap();
    // Same UE, two key ids; and two UEs with the same key id and times.
    let a = Place::new("001010123456789", 1, 1_000, 2_000);
    let b = Place::new("001010123456789", 2, 1_000, 2_000);
    let c = Place::new("001010000000001", 1, 1_000, 2_000);
    let sa = ring.seal(&a.record(), &key(0xAA), nonce(1)).unwrap();
    let sb = ring.seal(&b.record(), &key(0xBB), nonce(1)).unwrap();
    let sc = ring.seal(&c.record(), &key(0xCC), nonce(1)).unwrap();
    for (place, sealed) in [(&a, &sb), (&b, &sa), (&a, &sc), (&c, &sa)] {
        assert_eq!(
            ring.open(&place.record(), sealed).err(),
            Some(OpenError::NotAuthentic(v(1)))
        );
    }
    assert_eq!(ring.open(&a.record(), &sa).unwrap(), key(0xAA));
    assert_eq!(ring.open(&b.record(), &sb).unwrap(), key(0xBB));
    assert_eq!(ring.open(&c.record(), &sc).unwrap(), key(0xCC));
}

#[test]
fn the_same_nonce_gives_the_same_bytes_only_for_the_same_record_and_key() {
    // GCM-SIV is deterministic for a given nonce: this is what makes a repeated nonce
    // harmless beyond revealing an identical (record, key) pair.
    let ring = Keyring::new([kek(1, 0x11)]).unwrap();
    let a = Place::new("001010123456789", 1, 1_000, 2_000);
    let b = Place::new("001010123456789", 2, 1_000, 2_000);
    let s1 = ring.seal(&a.record(), &key(1), nonce(5)).unwrap();
    let s2 = ring.seal(&a.record(), &key(1), nonce(5)).unwrap();
    assert_eq!(s1, s2);
    assert_ne!(s1, ring.seal(&a.record(), &key(1), nonce(6)).unwrap());
    assert_ne!(
        s1.as_bytes()[17..],
        ring.seal(&b.record(), &key(1), nonce(5))
            .unwrap()
            .as_bytes()[17..]
    );
    assert_ne!(s1, ring.seal(&a.record(), &key(2), nonce(5)).unwrap());
}

#[cfg(feature = "getrandom")]
#[test]
fn random_nonces_differ() {
    let ring = Keyring::new([kek(1, 0x11)]).unwrap();
    let a = Place::new("001010123456789", 1, 1_000, 2_000);
    let s1 = ring
        .seal(&a.record(), &key(1), SealNonce::random().unwrap())
        .unwrap();
    let s2 = ring
        .seal(&a.record(), &key(1), SealNonce::random().unwrap())
        .unwrap();
    assert_ne!(s1.as_bytes()[5..17], s2.as_bytes()[5..17]);
    assert_eq!(ring.open(&a.record(), &s1).unwrap(), key(1));
    assert_eq!(ring.open(&a.record(), &s2).unwrap(), key(1));
}

#[test]
fn rotation_new_pushes_use_the_newest_and_old_records_still_open() {
    let place = Place::new("001010123456789", 1, 1_000, 2_000);
    let before = Keyring::new([kek(1, 0x11)]).unwrap();
    let old = before.seal(&place.record(), &key(1), nonce(1)).unwrap();

    // Rotation: the operator adds version 2 (files in any order).
    let after = Keyring::new([kek(2, 0x22), kek(1, 0x11)]).unwrap();
    assert_eq!(after.newest_version(), v(2));
    assert_eq!(after.versions().collect::<Vec<_>>(), [v(1), v(2)]);
    let new = after.seal(&place.record(), &key(2), nonce(1)).unwrap();
    assert_eq!(new.kek_version(), v(2));
    assert_eq!(after.open(&place.record(), &old).unwrap(), key(1));
    assert_eq!(after.open(&place.record(), &new).unwrap(), key(2));

    // Version 1 retired: its records no longer open, with a typed error naming it.
    let retired = Keyring::new([kek(2, 0x22)]).unwrap();
    assert!(!retired.contains(v(1)));
    assert_eq!(
        retired.open(&place.record(), &old).err(),
        Some(OpenError::UnknownKekVersion(v(1)))
    );
    assert_eq!(retired.open(&place.record(), &new).unwrap(), key(2));
}

#[test]
fn a_wrong_kek_of_the_right_version_does_not_open() {
    let place = Place::new("001010123456789", 1, 1_000, 2_000);
    let right = Keyring::new([kek(4, 0x11)]).unwrap();
    let wrong = Keyring::new([kek(4, 0x12)]).unwrap();
    let sealed = right.seal(&place.record(), &key(1), nonce(1)).unwrap();
    assert_eq!(
        wrong.open(&place.record(), &sealed).err(),
        Some(OpenError::NotAuthentic(v(4)))
    );
}

#[test]
fn keyring_refuses_no_kek_and_duplicate_versions() {
    assert_eq!(
        Keyring::new(Vec::<Kek>::new()).err(),
        Some(KeyringError::Empty)
    );
    assert_eq!(
        Keyring::new([kek(3, 1), kek(1, 2), kek(3, 3)]).err(),
        Some(KeyringError::DuplicateVersion(v(3)))
    );
}

#[test]
fn check_record_right_kek_passes() {
    let ring = Keyring::new([kek(1, 0x11), kek(2, 0x22)]).unwrap();
    let c1 = ring.make_check_record(v(1), nonce(1)).unwrap();
    let c2 = ring.make_check_record(v(2), nonce(2)).unwrap();
    assert_eq!(ring.verify_check_record(&c1), Ok(v(1)));
    let reread = CheckRecord::from_bytes(c2.as_bytes()).unwrap();
    assert_eq!(ring.verify_check_record(&reread), Ok(v(2)));
    let check = ring.startup_check([&c2, &c1]).unwrap();
    assert_eq!(check.verified, [v(1), v(2)]);
    assert_eq!(check.newest_unrecorded, None);
}

#[test]
fn check_record_wrong_kek_fails_naming_its_version() {
    let store = Keyring::new([kek(1, 0x11), kek(2, 0x22)]).unwrap();
    let c1 = store.make_check_record(v(1), nonce(1)).unwrap();
    let c2 = store.make_check_record(v(2), nonce(2)).unwrap();
    // The operator gave the wrong file for version 2.
    let started = Keyring::new([kek(1, 0x11), kek(2, 0x99)]).unwrap();
    assert_eq!(started.verify_check_record(&c1), Ok(v(1)));
    assert_eq!(
        started.verify_check_record(&c2),
        Err(CheckError::WrongKek(v(2)))
    );
    let err = started.startup_check([&c1, &c2]).unwrap_err();
    assert_eq!(err, CheckError::WrongKek(v(2)));
    assert!(err.to_string().contains("version 2"), "{err}");
}

#[test]
fn check_record_missing_kek_fails_naming_its_version() {
    let store = Keyring::new([kek(1, 0x11), kek(2, 0x22)]).unwrap();
    let c1 = store.make_check_record(v(1), nonce(1)).unwrap();
    let c2 = store.make_check_record(v(2), nonce(2)).unwrap();
    // Started with version 2 only while version-1 data is still stored.
    let started = Keyring::new([kek(2, 0x22)]).unwrap();
    let err = started.startup_check([&c2, &c1]).unwrap_err();
    assert_eq!(err, CheckError::MissingKek(v(1)));
    assert!(err.to_string().contains("version 1"), "{err}");
    assert_eq!(
        started.make_check_record(v(1), nonce(3)).err(),
        Some(SealError::UnknownKekVersion(v(1)))
    );
}

#[test]
fn startup_check_asks_for_a_record_of_a_new_newest_kek() {
    let first = Keyring::new([kek(1, 0x11)]).unwrap();
    // A new store: nothing stored, the newest version needs a record.
    let check = first.startup_check([]).unwrap();
    assert_eq!(check.verified, []);
    assert_eq!(check.newest_unrecorded, Some(v(1)));
    let c1 = first.make_check_record(v(1), nonce(1)).unwrap();
    // Rotation: version 2 added; version 1's record verifies, version 2 needs one.
    let rotated = Keyring::new([kek(1, 0x11), kek(2, 0x22)]).unwrap();
    let check = rotated.startup_check([&c1]).unwrap();
    assert_eq!(check.verified, [v(1)]);
    assert_eq!(check.newest_unrecorded, Some(v(2)));
}

#[test]
fn check_records_and_sealed_keys_are_not_interchangeable() {
    let ring = Keyring::new([kek(1, 0x11)]).unwrap();
    let place = Place::new("001010123456789", 1, 1_000, 2_000);
    let check = ring.make_check_record(v(1), nonce(1)).unwrap();
    let as_key = SealedKey::from_bytes(check.as_bytes()).unwrap();
    assert_eq!(
        ring.open(&place.record(), &as_key).err(),
        Some(OpenError::NotAuthentic(v(1)))
    );
    let sealed = ring.seal(&place.record(), &key(1), nonce(1)).unwrap();
    let as_check = CheckRecord::from_bytes(sealed.as_bytes()).unwrap();
    assert_eq!(
        ring.verify_check_record(&as_check),
        Err(CheckError::WrongKek(v(1)))
    );
    // A damaged check record: a flipped tag bit is a wrong KEK to the check, a cut one
    // does not parse.
    let mut bytes = *check.as_bytes();
    bytes[64] ^= 0x80;
    assert_eq!(
        ring.verify_check_record(&CheckRecord::from_bytes(&bytes).unwrap()),
        Err(CheckError::WrongKek(v(1)))
    );
    assert!(CheckRecord::from_bytes(&bytes[..10]).is_err());
}

#[test]
fn debug_output_holds_no_key_material() {
    let ring = Keyring::new([kek(1, 0x5c), kek(7, 0x5c)]).unwrap();
    let place = Place::new("001010123456789", 1, 1_000, 2_000);
    let sealed = ring.seal(&place.record(), &key(0xA7), nonce(0x3d)).unwrap();
    let check = ring.make_check_record(v(7), nonce(0x3d)).unwrap();
    let texts = [
        format!("{ring:?}"),
        format!("{sealed:?}"),
        format!("{check:?}"),
        format!("{:?}", nonce(0x3d)),
        format!("{:?}", ring.open(&place.record(), &sealed)),
    ];
    assert_eq!(
        texts[0],
        "Keyring { versions: [KekVersion(1), KekVersion(7)] }"
    );
    assert_eq!(
        texts[1],
        "SealedKey { format: 2, kek_version: KekVersion(7), .. }"
    );
    for text in &texts {
        for secret in ["5c5c", "a7a7", "3d3d", "92", "167"] {
            assert!(
                !text.to_lowercase().contains(secret),
                "{text} holds {secret}"
            );
        }
    }
}

#[test]
fn a_keyring_can_be_shared_between_threads() {
    fn shared<T: Send + Sync>() {}
    shared::<Keyring>();
    shared::<SealedKey>();
    shared::<CheckRecord>();
    let ring = std::sync::Arc::new(Keyring::new([kek(1, 0x11)]).unwrap());
    let place = Place::new("001010123456789", 1, 1_000, 2_000);
    let sealed = ring.seal(&place.record(), &key(9), nonce(9)).unwrap();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let ring = std::sync::Arc::clone(&ring);
            let sealed = sealed.clone();
            std::thread::spawn(move || {
                let place = Place::new("001010123456789", 1, 1_000, 2_000);
                ring.open(&place.record(), &sealed).unwrap() == key(9)
            })
        })
        .collect();
    for h in handles {
        assert!(h.join().unwrap());
    }
}
