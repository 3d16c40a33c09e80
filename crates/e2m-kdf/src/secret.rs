//! One newtype per key kind, so that one key can never be passed for another.
//!
//! Every type here: zeroized on drop; constant-time equality (`subtle`); a `Debug` that
//! prints the type name and no key bytes; no `Clone`, `Copy` or `Serialize` (an explicit
//! [`copy_secret`](E2mKey::copy_secret) instead); constructors from an array, a slice or hex
//! that fail with [`KeyError`] on a wrong length or bad hex.

use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use crate::KeyError;

macro_rules! secret_key {
    ($(#[$doc:meta])* $name:ident, $len:literal) => {
        $(#[$doc])*
        pub struct $name([u8; $len]);

        impl $name {
            /// Length of this key in octets.
            pub const LEN: usize = $len;

            /// Takes ownership of the key octets.
            pub const fn from_array(bytes: [u8; $len]) -> Self {
                $name(bytes)
            }

            /// Copies the key from a slice. The caller still owns (and should zeroize) `bytes`.
            ///
            /// # Errors
            /// [`KeyError::WrongLength`] unless `bytes` has exactly [`Self::LEN`] octets.
            pub fn from_slice(bytes: &[u8]) -> Result<Self, KeyError> {
                let array: [u8; $len] = bytes.try_into().map_err(|_| KeyError::WrongLength {
                    expected: $len,
                    actual: bytes.len(),
                })?;
                Ok($name(array))
            }

            /// Parses the key from hex (either case, no separators), in constant time.
            ///
            /// # Errors
            /// [`KeyError::InvalidHex`] for a non-hex character or odd length,
            /// [`KeyError::WrongLength`] for a valid hex string of the wrong size.
            pub fn from_hex(hex: &str) -> Result<Self, KeyError> {
                if !hex.len().is_multiple_of(2) {
                    return Err(KeyError::InvalidHex);
                }
                if hex.len() != 2 * $len {
                    // Validate first, so that bad hex is reported as such whatever its length.
                    if hex.bytes().any(|b| !b.is_ascii_hexdigit()) {
                        return Err(KeyError::InvalidHex);
                    }
                    return Err(KeyError::WrongLength { expected: $len, actual: hex.len() / 2 });
                }
                let mut bytes = [0u8; $len];
                match base16ct::mixed::decode(hex, &mut bytes) {
                    Ok(_) => Ok($name(bytes)),
                    Err(_) => {
                        bytes.as_mut_slice().zeroize();
                        Err(KeyError::InvalidHex)
                    }
                }
            }

            /// The key octets. The name says what it does: every call site that handles raw
            /// key material is easy to find.
            pub fn expose_secret(&self) -> &[u8; $len] {
                &self.0
            }

            /// An explicit copy (the type is deliberately not `Clone`).
            pub fn copy_secret(&self) -> Self {
                $name(self.0)
            }
        }

        impl Drop for $name {
            fn drop(&mut self) {
                self.0.as_mut_slice().zeroize();
            }
        }

        impl zeroize::ZeroizeOnDrop for $name {}

        impl ConstantTimeEq for $name {
            fn ct_eq(&self, other: &Self) -> subtle::Choice {
                self.0.ct_eq(&other.0)
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.ct_eq(other).into()
            }
        }

        impl Eq for $name {}

        impl core::fmt::Debug for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str(concat!(stringify!($name), "(<redacted>)"))
            }
        }
    };
}

secret_key!(
    /// The 256-bit output of the raw KDF, before it is given a key kind.
    KdfOutput, 32
);
secret_key!(
    /// CK, the 128-bit UMTS AKA cipher key (TS 33.102 §6.3).
    Ck, 16
);
secret_key!(
    /// IK, the 128-bit UMTS AKA integrity key (TS 33.102 §6.3).
    Ik, 16
);
secret_key!(
    /// CK', the cipher key for the serving node that must not learn CK (TS 33.402 A.2).
    CkPrime, 16
);
secret_key!(
    /// IK', the integrity key for the serving node that must not learn IK (TS 33.402 A.2).
    IkPrime, 16
);
secret_key!(
    /// K_ASME, the EPS key hierarchy root (TS 33.401 A.2).
    Kasme, 32
);
secret_key!(
    /// Ks = CK || IK, the GBA master key (TS 33.220 §4.5.2).
    Ks, 32
);
secret_key!(
    /// Ks_NAF, the GBA key for one NAF (TS 33.220 B.3).
    KsNaf, 32
);
secret_key!(
    /// K_AUSF, the 5G AKA anchor key in the AUSF (TS 33.501 A.2).
    Kausf, 32
);
secret_key!(
    /// RES* or XRES*, the 5G AKA response (TS 33.501 A.4): the 128 least significant bits
    /// of the KDF output. Secret until the UE sends it (XRES* never leaves the home network;
    /// the serving network sees only HXRES*).
    ResStar, 16
);
secret_key!(
    /// K_AKMA, the AKMA anchor key (TS 33.535 A.2).
    Kakma, 32
);
secret_key!(
    /// K_AF, the AKMA key for one application function (TS 33.535 A.4).
    Kaf, 32
);
secret_key!(
    /// `e2m_int_key`, the intermediate key the HSS pushes to the EMKS (Solution #10 step 1).
    E2mIntKey, 32
);
secret_key!(
    /// `e2m_key`, the pre-shared key between the UE and one EMSE (Solution #10 step 2).
    E2mKey, 32
);

impl Ks {
    /// Ks = CK || IK (TS 33.220 §4.5.2).
    pub fn from_ck_ik(ck: &Ck, ik: &Ik) -> Ks {
        let mut bytes = [0u8; 32];
        bytes[..16].copy_from_slice(ck.expose_secret());
        bytes[16..].copy_from_slice(ik.expose_secret());
        Ks(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_prints_no_key_bytes() {
        let key = E2mKey::from_array([0xAB; 32]);
        let text = format!("{key:?}");
        assert_eq!(text, "E2mKey(<redacted>)");
        assert!(!text.to_lowercase().contains("ab"));
    }

    #[test]
    fn hex_and_slice_constructors_check_input() {
        assert!(Ck::from_hex("b40ba9a3c58b2a05bbf0d987b21bf8cb").is_ok());
        assert!(Ck::from_hex("B40BA9A3C58B2A05BBF0D987B21BF8CB").is_ok());
        assert_eq!(
            Ck::from_hex("b40b").err(),
            Some(KeyError::WrongLength {
                expected: 16,
                actual: 2
            })
        );
        assert_eq!(Ck::from_hex("b40").err(), Some(KeyError::InvalidHex));
        assert_eq!(
            Ck::from_hex("zz0ba9a3c58b2a05bbf0d987b21bf8cb").err(),
            Some(KeyError::InvalidHex)
        );
        assert_eq!(Ck::from_hex("zz").err(), Some(KeyError::InvalidHex));
        assert_eq!(
            Ck::from_hex("").err(),
            Some(KeyError::WrongLength {
                expected: 16,
                actual: 0
            })
        );
        assert_eq!(
            Ik::from_slice(&[0; 15]).err(),
            Some(KeyError::WrongLength {
                expected: 16,
                actual: 15
            })
        );
        assert_eq!(
            Ck::from_hex("b40ba9a3c58b2a05bbf0d987b21bf8cb").ok(),
            Some(Ck::from_array([
                0xb4, 0x0b, 0xa9, 0xa3, 0xc5, 0x8b, 0x2a, 0x05, 0xbb, 0xf0, 0xd9, 0x87, 0xb2, 0x1b,
                0xf8, 0xcb
            ]))
        );
    }

    #[test]
    fn equality_is_by_value() {
        let a = Kasme::from_array([1; 32]);
        let b = a.copy_secret();
        assert_eq!(a, b);
        assert_ne!(a, Kasme::from_array([2; 32]));
    }
}
