//! The few CBOR items OSCORE needs (RFC 8949 §3): the HKDF `info` (RFC 8613 §3.2.1) and the
//! COSE `Enc_structure` with its `external_aad` (RFC 8613 §5.4, RFC 9052 §5.3).
//!
//! Hand-encoded rather than through `coset`/`ciborium`: OSCORE only ever *writes* these
//! structures (they are AEAD inputs, never parsed from the wire), they are five item kinds
//! with definite lengths, and the RFC 8613 Appendix C vectors check every octet of them.

use alloc::vec::Vec;

const UINT: u8 = 0;
const BSTR: u8 = 2 << 5;
const TSTR: u8 = 3 << 5;
const ARRAY: u8 = 4 << 5;
const NULL: u8 = 0xf6;

/// A CBOR head: major type and argument in the shortest form (RFC 8949 §3, §4.2.1).
fn head(out: &mut Vec<u8>, major: u8, value: u64) {
    match value {
        0..=23 => out.push(major | value as u8),
        24..=0xff => out.extend_from_slice(&[major | 24, value as u8]),
        0x100..=0xffff => {
            out.push(major | 25);
            out.extend_from_slice(&(value as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(major | 26);
            out.extend_from_slice(&(value as u32).to_be_bytes());
        }
        _ => {
            out.push(major | 27);
            out.extend_from_slice(&value.to_be_bytes());
        }
    }
}

pub(crate) fn uint(out: &mut Vec<u8>, value: u64) {
    head(out, UINT, value);
}

pub(crate) fn bstr(out: &mut Vec<u8>, bytes: &[u8]) {
    head(out, BSTR, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

pub(crate) fn tstr(out: &mut Vec<u8>, text: &str) {
    head(out, TSTR, text.len() as u64);
    out.extend_from_slice(text.as_bytes());
}

pub(crate) fn array(out: &mut Vec<u8>, len: u64) {
    head(out, ARRAY, len);
}

pub(crate) fn null(out: &mut Vec<u8>) {
    out.push(NULL);
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn shortest_heads() {
        // RFC 8949 Appendix A examples.
        let cases: &[(u64, &[u8])] = &[
            (0, &[0x00]),
            (23, &[0x17]),
            (24, &[0x18, 0x18]),
            (1000, &[0x19, 0x03, 0xe8]),
            (1_000_000, &[0x1a, 0x00, 0x0f, 0x42, 0x40]),
            (
                1_000_000_000_000,
                &[0x1b, 0, 0, 0, 0xe8, 0xd4, 0xa5, 0x10, 0x00],
            ),
        ];
        for (value, want) in cases {
            let mut out = Vec::new();
            uint(&mut out, *value);
            assert_eq!(&out, want);
        }
        let mut out = Vec::new();
        tstr(&mut out, "IETF");
        bstr(&mut out, &[1, 2, 3, 4]);
        array(&mut out, 3);
        null(&mut out);
        assert_eq!(
            out,
            [0x64, b'I', b'E', b'T', b'F', 0x44, 1, 2, 3, 4, 0x83, 0xf6]
        );
    }
}
