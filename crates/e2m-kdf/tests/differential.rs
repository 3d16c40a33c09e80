//! Differential tests: the crate's HMAC and KDF against an independent reference written
//! directly on the `hmac` crate, with S assembled by explicit concatenation exactly as
//! TS 33.220 B.2 writes it.
#![allow(clippy::unwrap_used, reason = "tests")]

use e2m_kdf::{Fc, KdfKey, kdf};
use hmac::{Hmac, KeyInit, Mac};
use proptest::prelude::*;

fn reference_kdf(key: &[u8], fc: &[u8], params: &[Vec<u8>]) -> [u8; 32] {
    let mut s = fc.to_vec();
    for p in params {
        s.extend_from_slice(p);
        s.extend_from_slice(&u16::try_from(p.len()).unwrap().to_be_bytes());
    }
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(&s);
    mac.finalize().into_bytes().into()
}

fn fc_strategy() -> impl Strategy<Value = Fc> {
    prop_oneof![
        (0u8..0xFF).prop_map(|v| Fc::new(v).unwrap()),
        any::<u8>().prop_map(Fc::extended),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    /// Keys of 0..=200 octets (crossing the 64-octet block, hashed above it), up to 6
    /// parameters of 0..=150 octets (S crossing one, two and three blocks).
    #[test]
    fn kdf_equals_reference(
        key in proptest::collection::vec(any::<u8>(), 0..=200),
        fc in fc_strategy(),
        params in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..=150), 0..=6),
    ) {
        let refs: Vec<&[u8]> = params.iter().map(Vec::as_slice).collect();
        let want = reference_kdf(&key, fc.as_bytes(), &params);
        let one_shot = kdf(&key, fc, &refs).unwrap();
        prop_assert_eq!(one_shot.expose_secret(), &want);
        let keyed = KdfKey::new(&key);
        prop_assert_eq!(*keyed.derive(fc, &refs).unwrap().expose_secret(), want);
        // The keyed state is reusable: a second derivation gives the same result.
        prop_assert_eq!(*keyed.derive(fc, &refs).unwrap().expose_secret(), want);
    }

    /// The raw MAC over arbitrary splits of one message equals HMAC over the whole.
    #[test]
    fn mac_equals_hmac_crate(
        key in proptest::collection::vec(any::<u8>(), 0..=130),
        data in proptest::collection::vec(any::<u8>(), 0..=300),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..4),
    ) {
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(data.len() + 1)).collect();
        points.sort_unstable();
        let mut pieces = Vec::new();
        let mut start = 0;
        for p in points {
            pieces.push(&data[start..p]);
            start = p;
        }
        pieces.push(&data[start..]);
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
        mac.update(&data);
        let want: [u8; 32] = mac.finalize().into_bytes().into();
        prop_assert_eq!(*KdfKey::new(&key).mac(&pieces).expose_secret(), want);
    }
}
