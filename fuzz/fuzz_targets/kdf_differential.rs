//! The KDF against an independent reference on the `hmac` crate with S concatenated
//! explicitly (TS 33.220 B.2). Input layout: [key_len][key][fc][n][len_i (2)][p_i]...
#![no_main]

use e2m_kdf::{Fc, KdfKey, kdf};
use hmac::{Hmac, KeyInit, Mac};
use libfuzzer_sys::fuzz_target;

fn take<'a>(data: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    let (head, rest) = data.split_at_checked(n)?;
    *data = rest;
    Some(head)
}

fuzz_target!(|input: &[u8]| {
    let mut data = input;
    let Some(&[key_len]) = take(&mut data, 1) else {
        return;
    };
    let Some(key) = take(&mut data, usize::from(key_len)) else {
        return;
    };
    let Some(&[fc_byte, second]) = take(&mut data, 2) else {
        return;
    };
    let fc = match Fc::new(fc_byte) {
        Ok(fc) => fc,
        Err(_) => Fc::extended(second),
    };
    let Some(&[count]) = take(&mut data, 1) else {
        return;
    };
    let mut params = Vec::new();
    for _ in 0..count % 8 {
        let Some(&[hi, lo]) = take(&mut data, 2) else {
            break;
        };
        let len = usize::from(u16::from_be_bytes([hi, lo])) % 300;
        let Some(p) = take(&mut data, len) else { break };
        params.push(p);
    }

    let mut s = fc.as_bytes().to_vec();
    for p in &params {
        s.extend_from_slice(p);
        s.extend_from_slice(&(p.len() as u16).to_be_bytes());
    }
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(&s);
    let want: [u8; 32] = mac.finalize().into_bytes().into();

    let got = kdf(key, fc, &params).unwrap();
    assert_eq!(got.expose_secret(), &want);
    assert_eq!(
        KdfKey::new(key)
            .derive(fc, &params)
            .unwrap()
            .expose_secret(),
        &want
    );
});
