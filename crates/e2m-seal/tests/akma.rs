//! K_AKMA records: sealed for their place (UE, A-KID, lifetime, kind) and nowhere else.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failure should stop the test"
)]

use e2m_seal::{
    AKid, AkmaKeyRecord, E2mIntKey, Imsi, IntKeyRecord, Kakma, Kek, KekVersion, KeyId, Keyring,
    OpenError, SealNonce, SealedKey, Timestamp, UeId,
};

fn v(n: u32) -> KekVersion {
    KekVersion::new(n).unwrap()
}

fn ring(versions: &[(u32, u8)]) -> Keyring {
    Keyring::new(
        versions
            .iter()
            .map(|&(n, fill)| Kek::from_array(v(n), [fill; 32])),
    )
    .unwrap()
}

fn nonce(n: u8) -> SealNonce {
    SealNonce::from_array([n; 12])
}

fn ue(text: &str) -> UeId {
    UeId::parse(text).unwrap()
}

fn a_kid(n: u8) -> AKid {
    AKid::parse(&format!(
        "rid0.atid{n:02x}@5gc.mnc001.mcc001.3gppnetwork.org"
    ))
    .unwrap()
}

fn at(ms: u64) -> Timestamp {
    Timestamp::from_unix_millis(ms)
}

#[test]
fn a_sealed_k_akma_opens_for_its_record_only() {
    let ring = ring(&[(1, 0x11)]);
    let supi = ue("imsi-001010123456789");
    let kid = a_kid(1);
    let record = AkmaKeyRecord::new(&supi, &kid, at(1_000), at(87_400_000));
    let key = Kakma::from_array([0xA5; 32]);
    let sealed = ring.seal_k_akma(&record, &key, nonce(1)).unwrap();
    assert_eq!(sealed.as_bytes().len(), SealedKey::LEN);
    assert!(
        !sealed
            .as_bytes()
            .windows(32)
            .any(|w| w == key.expose_secret())
    );
    let stored = SealedKey::from_bytes(sealed.as_bytes()).unwrap();
    assert!(ring.open_k_akma(&record, &stored).unwrap() == key);

    // Every bound field, changed alone, refuses to open.
    let other_ue = ue("imsi-001010123456788");
    let same_digits_as_gpsi = ue("msisdn-001010123456789");
    let other_kid = a_kid(2);
    let edits = [
        AkmaKeyRecord {
            ue: &other_ue,
            ..record
        },
        AkmaKeyRecord {
            ue: &same_digits_as_gpsi,
            ..record
        },
        AkmaKeyRecord {
            a_kid: &other_kid,
            ..record
        },
        AkmaKeyRecord {
            registered: at(1_001),
            ..record
        },
        AkmaKeyRecord {
            expires: at(87_400_001),
            ..record
        },
    ];
    for edited in &edits {
        assert_eq!(
            ring.open_k_akma(edited, &stored).err(),
            Some(OpenError::NotAuthentic(v(1))),
            "{edited:?}"
        );
    }
}

#[test]
fn swapping_two_contexts_sealed_bytes_fails_both_ways() {
    let ring = ring(&[(1, 0x11)]);
    let (ue_a, ue_b) = (ue("imsi-001010000000001"), ue("msisdn-33612345678"));
    let (kid_a, kid_b) = (a_kid(0xa), a_kid(0xb));
    let rec_a = AkmaKeyRecord::new(&ue_a, &kid_a, at(5), at(10_000));
    let rec_b = AkmaKeyRecord::new(&ue_b, &kid_b, at(5), at(10_000));
    let sealed_a = ring
        .seal_k_akma(&rec_a, &Kakma::from_array([1; 32]), nonce(1))
        .unwrap();
    let sealed_b = ring
        .seal_k_akma(&rec_b, &Kakma::from_array([2; 32]), nonce(2))
        .unwrap();
    assert!(ring.open_k_akma(&rec_a, &sealed_b).is_err());
    assert!(ring.open_k_akma(&rec_b, &sealed_a).is_err());
    assert!(ring.open_k_akma(&rec_a, &sealed_a).unwrap() == Kakma::from_array([1; 32]));
}

#[test]
fn intermediate_keys_and_k_akma_are_not_interchangeable() {
    // Same KEK, same nonce, same key octets: only the kind label differs, and it is enough.
    let ring = ring(&[(1, 0x11)]);
    let imsi = Imsi::new("001010123456789").unwrap();
    let int_record = IntKeyRecord::new(&imsi, KeyId::from_u32(1), at(1_000), at(2_000));
    let int_sealed = ring
        .seal(&int_record, &E2mIntKey::from_array([7; 32]), nonce(9))
        .unwrap();
    let supi = ue("imsi-001010123456789");
    let kid = a_kid(1);
    let akma_record = AkmaKeyRecord::new(&supi, &kid, at(1_000), at(2_000));
    let akma_sealed = ring
        .seal_k_akma(&akma_record, &Kakma::from_array([7; 32]), nonce(9))
        .unwrap();
    assert_ne!(int_sealed.as_bytes(), akma_sealed.as_bytes());
    assert!(ring.open_k_akma(&akma_record, &int_sealed).is_err());
    assert!(ring.open(&int_record, &akma_sealed).is_err());
}

#[test]
fn rotation_seals_under_the_newest_and_still_opens_the_old() {
    let supi = ue("nai-user@example.org");
    let kid = a_kid(3);
    let record = AkmaKeyRecord::new(&supi, &kid, at(0), at(60_000));
    let old = ring(&[(1, 0x11)])
        .seal_k_akma(&record, &Kakma::from_array([3; 32]), nonce(3))
        .unwrap();
    let rotated = ring(&[(1, 0x11), (2, 0x22)]);
    let new = rotated
        .seal_k_akma(&record, &Kakma::from_array([3; 32]), nonce(3))
        .unwrap();
    assert_eq!(old.kek_version(), v(1));
    assert_eq!(new.kek_version(), v(2));
    assert!(rotated.open_k_akma(&record, &old).unwrap() == Kakma::from_array([3; 32]));
    assert_eq!(
        ring(&[(2, 0x22)]).open_k_akma(&record, &old).err(),
        Some(OpenError::UnknownKekVersion(v(1)))
    );
}
