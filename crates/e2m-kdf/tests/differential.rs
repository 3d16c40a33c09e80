//! Differential tests: the crate's HMAC and KDF against an independent reference written
//! directly on the `hmac` crate, with S assembled by explicit concatenation exactly as
//! TS 33.220 B.2 writes it.
#![allow(clippy::unwrap_used, reason = "tests")]

use e2m_kdf::{Fc, KdfError, KdfInput, KdfKey, kdf};
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

    /// S laid out in advance ([`KdfInput`]) up to its largest size, with the single and the
    /// interleaved derivations (one key many inputs, one input many keys), against the
    /// reference; an S one octet too long is a typed error.
    #[test]
    fn kdf_input_equals_reference(
        keys in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..=100), 3),
        fc in fc_strategy(),
        params in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..=120), 0..=4),
        other in proptest::collection::vec(any::<u8>(), 0..=300),
    ) {
        let refs: Vec<&[u8]> = params.iter().map(Vec::as_slice).collect();
        let s_len = fc.as_bytes().len() + params.iter().map(|p| p.len() + 2).sum::<usize>();
        let input = match KdfInput::new(fc, &refs) {
            Ok(input) => input,
            Err(e) => {
                prop_assert!(s_len > KdfInput::MAX_LEN);
                prop_assert_eq!(e, KdfError::InputTooLong { len: s_len, max: KdfInput::MAX_LEN });
                return Ok(());
            }
        };
        prop_assert_eq!(input.s_len(), s_len);
        let other_params = [other.clone()];
        let other_input = match KdfInput::new(fc, &[&other]) {
            Ok(input) => input,
            Err(_) => return Ok(()),
        };
        let kdf_keys: Vec<KdfKey> = keys.iter().map(|k| KdfKey::new(k)).collect();
        for (key, kdf_key) in keys.iter().zip(&kdf_keys) {
            let want = reference_kdf(key, fc.as_bytes(), &params);
            let want_other = reference_kdf(key, fc.as_bytes(), &other_params);
            prop_assert_eq!(*kdf_key.derive_input(&input).expose_secret(), want);
            let [a, b, c] = kdf_key.derive_inputs([&input, &other_input, &input]);
            prop_assert_eq!(a.expose_secret(), &want);
            prop_assert_eq!(b.expose_secret(), &want_other);
            prop_assert_eq!(c.expose_secret(), &want);
        }
        let outs = input.derive_for_keys([&kdf_keys[0], &kdf_keys[1], &kdf_keys[2]]);
        for (out, key) in outs.iter().zip(&keys) {
            prop_assert_eq!(out.expose_secret(), &reference_kdf(key, fc.as_bytes(), &params));
        }
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

/// Every length of S that a [`KdfInput`] holds (each block-count boundary: 55/56, 119/120,
/// …, `MAX_LEN`), for a one- and a two-octet FC, and the first length it refuses.
#[test]
fn kdf_input_every_length() {
    let key = [0x0b; 32];
    let keyed = KdfKey::new(&key);
    for fc in [Fc::E2M_KEY_PROVISIONAL, Fc::extended(0x01)] {
        let fixed = fc.as_bytes().len() + 2;
        for len in 0..=KdfInput::MAX_LEN - fixed {
            let param: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let want = reference_kdf(&key, fc.as_bytes(), std::slice::from_ref(&param));
            let input = KdfInput::new(fc, &[&param]).unwrap();
            assert_eq!(input.s_len(), fixed + len);
            assert_eq!(
                *keyed.derive_input(&input).expose_secret(),
                want,
                "P0 of {len}"
            );
            assert_eq!(*kdf(&key, fc, &[&param]).unwrap().expose_secret(), want);
        }
        let too_long = vec![0; KdfInput::MAX_LEN - fixed + 1];
        assert_eq!(
            KdfInput::new(fc, &[&too_long]).err(),
            Some(KdfError::InputTooLong {
                len: KdfInput::MAX_LEN + 1,
                max: KdfInput::MAX_LEN
            })
        );
        // The long S is still derived by the streaming path.
        assert_eq!(
            *keyed.derive(fc, &[&too_long]).unwrap().expose_secret(),
            reference_kdf(&key, fc.as_bytes(), &[too_long])
        );
    }
}
