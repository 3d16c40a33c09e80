//! KeyId text parsing on arbitrary octets; identifiers (AppIdentity, EmseId, Imsi) too.
#![no_main]

use e2m_keyid::{AppIdentity, EmseId, Imsi, KeyId};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(id) = KeyId::parse_bytes(data) {
        assert_eq!(id.to_string().as_bytes(), data);
    }
    if let Ok(v) = AppIdentity::from_utf8(data) {
        assert_eq!(v.as_bytes(), data);
    }
    if let Ok(v) = EmseId::from_utf8(data) {
        assert_eq!(v.as_bytes(), data);
    }
    if let Ok(v) = Imsi::from_utf8(data) {
        assert_eq!(v.as_bytes(), data);
    }
});
