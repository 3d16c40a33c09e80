//! Key ids against the independent Python reference (e2m-kdf's vectors/generate.py writes
//! tests/data/key_id.txt, the same case as its own derived.txt; inputs from TS 35.208 test
//! set 1). The file lives in this crate so that the tests run from the published package.
#![allow(clippy::unwrap_used, reason = "tests")]

use e2m_kdf::{E2mIntKey, E2mKey, E2mProfile};
use e2m_keyid::{E2mKeyDeriver, EmseId, KeyId, e2m_key};

const KEY_ID: &str = include_str!("data/key_id.txt");

fn field(case: &str, key: &str) -> String {
    let section = KEY_ID.split(&format!("[{case}]")).nth(1).unwrap();
    section
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key} = ")))
        .unwrap()
        .to_owned()
}

#[test]
fn rand_lsb32_and_short_hash_match_reference() {
    let rand: [u8; 16] = hex::decode(field("key id", "rand"))
        .unwrap()
        .try_into()
        .unwrap();
    assert_eq!(
        KeyId::from_rand_lsb32(&rand).to_string(),
        field("key id", "rand_lsb32")
    );
    let int_key = E2mIntKey::from_hex(&field("key id", "e2m_int_key")).unwrap();
    let hashed = KeyId::short_hash(&int_key, &E2mProfile::PROVISIONAL).unwrap();
    assert_eq!(hashed.to_string(), field("key id", "short_hash"));
}

#[test]
fn debug_shows_the_same_hex_as_display() {
    let id = KeyId::from_u32(0x0a0b_0c0d);
    assert_eq!(id.to_string(), "0a0b0c0d");
    assert_eq!(format!("{id:?}"), "KeyId(0a0b0c0d)");
    assert_eq!(format!("{:?}", Some(id)), "Some(KeyId(0a0b0c0d))");
}

#[test]
fn e2m_key_matches_reference() {
    let mut names = vec![
        "e2m_key iot-platform.example.com",
        "e2m_key emse-b.example.org",
        "e2m_key with string",
        "e2m_key with empty string",
    ];
    // A non-ASCII EMSE_Id (already NFKC) needs the NFKC tables to be accepted.
    if cfg!(feature = "nfkc") {
        names.push("e2m_key non-ascii emse");
    }
    for name in names {
        let int_key = E2mIntKey::from_hex(&field(name, "e2m_int_key")).unwrap();
        let emse = EmseId::new(&field(name, "emse_id")).unwrap();
        let want = E2mKey::from_hex(&field(name, "e2m_key")).unwrap();
        let label = name.contains("string").then(|| field(name, "key_label"));
        let profile = E2mProfile {
            key_label: label.as_deref(),
            ..E2mProfile::PROVISIONAL
        };
        assert!(
            e2m_key(&int_key, &emse, &profile).unwrap() == want,
            "{name}"
        );
        let deriver = E2mKeyDeriver::new(&int_key, profile).unwrap();
        assert!(deriver.derive(&emse).unwrap() == want, "{name} (keyed)");
    }
    // A profile whose FCs collide is refused before any derivation.
    let clash = E2mProfile {
        key_fc: E2mProfile::PROVISIONAL.int_key_fc,
        ..E2mProfile::PROVISIONAL
    };
    assert!(E2mKeyDeriver::new(&E2mIntKey::from_array([1; 32]), clash).is_err());
}
