//! psk_identity parsing on arbitrary octets: a typed error or a value, never a panic; and
//! parse → format → parse is the identity, with format(parse(s)) == s (one spelling).
#![no_main]

use e2m_keyid::PskIdentity;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match PskIdentity::parse(data) {
        Ok(value) => {
            let mut buf = [0u8; PskIdentity::MAX_LEN];
            let text = value.encode(&mut buf);
            assert_eq!(text.as_bytes(), data, "non-canonical input accepted");
            assert_eq!(PskIdentity::parse(text.as_bytes()).ok(), Some(value));
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
