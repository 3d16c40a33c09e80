//! Property tests of the psk_identity codec and the key id forms.
#![allow(clippy::unwrap_used, reason = "tests")]

use e2m_keyid::{AppIdentity, KeyId, PskIdentity, PskIdentityError};
use proptest::prelude::*;

/// Valid application identities: NAIs, plain tokens and non-ASCII text, 1..=114 octets.
fn app_identity() -> impl Strategy<Value = AppIdentity> {
    let token = "[A-Za-z0-9._~+-]{1,40}(@[a-z0-9-]{1,20}(\\.[a-z0-9-]{1,10}){0,3})?";
    let unicode = "[\\p{L}\\p{N}._@-]{1,30}";
    prop_oneof![token, unicode]
        .prop_filter_map("fits and is valid", |s: String| AppIdentity::new(&s).ok())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5_000))]

    #[test]
    fn parse_of_format_is_identity(identity in app_identity(), id in any::<u32>()) {
        let value = PskIdentity::new(identity, KeyId::from_u32(id));
        let mut buf = [0u8; PskIdentity::MAX_LEN];
        let text = value.encode(&mut buf).to_owned();
        prop_assert!(text.len() <= PskIdentity::MAX_LEN);
        prop_assert_eq!(&text, &value.to_string());
        prop_assert_eq!(PskIdentity::parse(text.as_bytes()).unwrap(), value);
    }

    /// Arbitrary octets never panic; whatever parses re-encodes to the same octets
    /// (one spelling per value).
    #[test]
    fn arbitrary_input_is_a_typed_error_or_canonical(bytes in proptest::collection::vec(any::<u8>(), 0..160)) {
        if let Ok(value) = PskIdentity::parse(&bytes) {
            prop_assert_eq!(value.to_string().into_bytes(), bytes);
        }
    }

    /// Near-valid inputs (a valid prefix followed by arbitrary text) exercise the deep paths.
    #[test]
    fn near_valid_input_is_a_typed_error_or_canonical(tail in "\\PC{0,130}", head in prop::sample::select(vec!["e2m1.", "e2m1.0000000", "e2m1.0a1b2c3d", "e2m1.0a1b2c3d.", "e2m2.", "e2m", ""])) {
        let input = format!("{head}{tail}");
        if let Ok(value) = PskIdentity::parse(input.as_bytes()) {
            prop_assert_eq!(value.to_string(), input);
        }
    }

    #[test]
    fn key_id_text_round_trips(id in any::<u32>()) {
        let key_id = KeyId::from_u32(id);
        let text = key_id.to_string();
        prop_assert_eq!(text.len(), 8);
        prop_assert_eq!(text.parse::<KeyId>().unwrap(), key_id);
    }
}

#[test]
fn malformed_psk_identities_get_typed_errors() {
    use PskIdentityError as E;
    let cases: &[(&[u8], E)] = &[
        (b"", E::NotE2m),
        (b"psk-client", E::NotE2m),
        (b"e2m2.0a1b2c3d.x", E::UnsupportedVersion),
        (b"e2m1", E::UnsupportedVersion),
        (
            b"e2m1.0a1b2c3",
            E::KeyId(e2m_keyid::KeyIdError::WrongLength(7)),
        ),
        (
            b"e2m1.0A1B2C3D.x",
            E::KeyId(e2m_keyid::KeyIdError::NotLowercaseHex),
        ),
        (
            b"e2m1.0a1b2c3g.x",
            E::KeyId(e2m_keyid::KeyIdError::NotLowercaseHex),
        ),
        (b"e2m1.0a1b2c3d", E::MissingSeparator),
        (b"e2m1.0a1b2c3d:x", E::MissingSeparator),
        (
            b"e2m1.0a1b2c3d.",
            E::Identity(e2m_keyid::IdentityError::Empty),
        ),
        (
            b"e2m1.0a1b2c3d. x",
            E::Identity(e2m_keyid::IdentityError::Whitespace),
        ),
        (
            b"e2m1.0a1b2c3d.x\0",
            E::Identity(e2m_keyid::IdentityError::ControlCharacter),
        ),
        (
            b"e2m1.0a1b2c3d.\xff",
            E::Identity(e2m_keyid::IdentityError::NotUtf8),
        ),
    ];
    for (input, want) in cases {
        assert_eq!(
            PskIdentity::parse(input).err(),
            Some(*want),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
    let long = [b"e2m1.0a1b2c3d.".as_slice(), &[b'x'; 115]].concat();
    assert_eq!(PskIdentity::parse(&long).err(), Some(E::TooLong(129)));
    let longest = [b"e2m1.0a1b2c3d.".as_slice(), &[b'x'; 114]].concat();
    assert!(PskIdentity::parse(&longest).is_ok());
}

#[test]
fn nai_identity_stays_an_nai_with_the_same_realm() {
    let value = PskIdentity::new(
        AppIdentity::new("sensor-17@iot.example.com").unwrap(),
        KeyId::from_u32(1),
    );
    let text = value.to_string();
    assert_eq!(text, "e2m1.00000001.sensor-17@iot.example.com");
    assert_eq!(text.rsplit_once('@').unwrap().1, "iot.example.com");
}
