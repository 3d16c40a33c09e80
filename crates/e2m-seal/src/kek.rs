//! Key-encryption keys (KEKs) and their file format.
//!
//! A KEK file is one line of ASCII:
//!
//! ```text
//! e2m-kek v1 <version> <64 hex digits>
//! ```
//!
//! followed by an optional newline (`\n` or `\r\n`). `<version>` is the KEK version, a
//! decimal number from 1 to 4294967295 without leading zeros; the hex digits (either case)
//! are the 32-octet AES-256 key. Why text with the version inside rather than 32 raw octets
//! with the version in the file name: the file says what it is (a wrong file given by
//! mistake is refused, not used as a key), a renamed or copied file cannot silently change
//! its version, a truncated or mistyped key is caught (exactly 64 digits), `v1` leaves room
//! for another format, and an operator can make one with standard tools:
//! `printf 'e2m-kek v1 1 %s\n' "$(openssl rand -hex 32)" > kek-1 && chmod 600 kek-1`.

use core::fmt;

use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use crate::KekFileError;
use crate::aead::Cipher;

/// The version of a KEK: the operator's number for it, stored in clear beside every value
/// sealed under it (and bound into its associated data), so that the right KEK is found
/// after a rotation. From 1 to 4294967295; a newer KEK has a higher version.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KekVersion(u32);

impl KekVersion {
    /// The version `value`, or `None` for 0 (not a version: it is what an unset column
    /// holds, so it must never match a real one).
    pub const fn new(value: u32) -> Option<KekVersion> {
        if value == 0 {
            None
        } else {
            Some(KekVersion(value))
        }
    }

    /// Its number.
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for KekVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for KekVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KekVersion({})", self.0)
    }
}

/// One operator key-encryption key with its version.
///
/// Holds only the AES-256-GCM-SIV key schedule (zeroized on drop), never the key octets
/// after construction. No `Clone` (the one copy lives in the [`Keyring`](crate::Keyring)),
/// and its `Debug` shows the version only.
pub struct Kek {
    version: KekVersion,
    cipher: Cipher,
}

/// The file format's first field and format name.
const MAGIC: &[u8] = b"e2m-kek ";
const FORMAT: &[u8] = b"v1";

impl Kek {
    /// The KEK of `version` with key `key`. The array is zeroized here; a caller that
    /// still holds a copy zeroizes its own.
    pub fn from_array(version: KekVersion, mut key: [u8; 32]) -> Kek {
        let kek = Kek {
            version,
            cipher: Cipher::new(&key),
        };
        key.zeroize();
        kek
    }

    /// Parses a KEK file's contents (see the [module format](crate#kek-files)). The caller
    /// owns `file` and zeroizes it (the `fs` helpers do).
    ///
    /// # Errors
    /// [`KekFileError`] naming the rule the contents break; the error holds none of them.
    pub fn parse(file: &[u8]) -> Result<Kek, KekFileError> {
        // Steps: one optional line end; the magic; then exactly three space-separated
        // fields (format, version, key) with nothing else.
        let line = file.strip_suffix(b"\n").unwrap_or(file);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let rest = line.strip_prefix(MAGIC).ok_or(KekFileError::NotKekFile)?;
        let mut fields = rest.split(|&b| b == b' ');
        let format = fields.next().unwrap_or_default();
        if format != FORMAT {
            return Err(KekFileError::UnsupportedFormat);
        }
        let (Some(version), Some(key_hex), None) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(KekFileError::Layout);
        };
        if line.iter().any(|&b| b == b'\n' || b == b'\r') {
            return Err(KekFileError::Layout);
        }
        let version = parse_version(version).ok_or(KekFileError::BadVersion)?;
        if key_hex.len() != 64 {
            return Err(KekFileError::BadKey);
        }
        let mut key = Zeroizing::new([0u8; 32]);
        // base16ct decodes in constant time, so the key's digits leak nothing through timing.
        base16ct::mixed::decode(key_hex, key.as_mut_slice()).map_err(|_| KekFileError::BadKey)?;
        if bool::from(key.ct_eq(&[0u8; 32])) {
            return Err(KekFileError::ZeroKey);
        }
        Ok(Kek {
            version,
            cipher: Cipher::new(&key),
        })
    }

    /// Its version.
    pub fn version(&self) -> KekVersion {
        self.version
    }

    pub(crate) fn cipher(&self) -> &Cipher {
        &self.cipher
    }
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kek")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// Decimal 1..=u32::MAX, digits only, no leading zero, no sign.
fn parse_version(text: &[u8]) -> Option<KekVersion> {
    if text.is_empty() || text.len() > 10 || text[0] == b'0' {
        return None;
    }
    let mut value: u64 = 0;
    for &c in text {
        if !c.is_ascii_digit() {
            return None;
        }
        value = value * 10 + u64::from(c - b'0');
    }
    KekVersion::new(u32::try_from(value).ok()?)
}

/// The KEK file text for `version` and `key`: `e2m-kek v1 <version> <64 lowercase hex>\n`.
/// For tools and tests that make KEK files; [`Kek::parse`] reads it back.
pub fn format_kek_file(version: KekVersion, key: &[u8; 32]) -> Zeroizing<String> {
    let mut hex = Zeroizing::new([0u8; 64]);
    // 64 output octets for 32 input octets: encode cannot fail; an empty string would
    // be refused by `Kek::parse` if it ever did.
    let digits = base16ct::lower::encode_str(key, hex.as_mut_slice()).unwrap_or_default();
    let mut text = Zeroizing::new(String::with_capacity(MAGIC.len() + 80));
    text.push_str("e2m-kek v1 ");
    text.push_str(&version.to_string());
    text.push(' ');
    text.push_str(digits);
    text.push('\n');
    text
}

/// A new KEK file's text for `version`, its key from the operating system's random
/// generator (what the demo does, like its certificates).
///
/// # Errors
/// [`SealError::RandomUnavailable`](crate::SealError::RandomUnavailable) if the generator
/// fails.
#[cfg(feature = "getrandom")]
#[cfg_attr(docsrs, doc(cfg(feature = "getrandom")))]
pub fn generate_kek_file(version: KekVersion) -> Result<Zeroizing<String>, crate::SealError> {
    let mut key = Zeroizing::new([0u8; 32]);
    getrandom::fill(key.as_mut_slice()).map_err(|_| crate::SealError::RandomUnavailable)?;
    Ok(format_kek_file(version, &key))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn v(n: u32) -> KekVersion {
        KekVersion::new(n).unwrap()
    }

    #[test]
    fn parses_the_one_line_format() {
        for text in [
            format!("e2m-kek v1 7 {HEX}"),
            format!("e2m-kek v1 7 {HEX}\n"),
            format!("e2m-kek v1 7 {HEX}\r\n"),
            format!("e2m-kek v1 7 {}\n", HEX.to_uppercase()),
        ] {
            assert_eq!(
                Kek::parse(text.as_bytes()).unwrap().version(),
                v(7),
                "{text}"
            );
        }
        assert_eq!(
            Kek::parse(format!("e2m-kek v1 4294967295 {HEX}").as_bytes())
                .unwrap()
                .version()
                .get(),
            u32::MAX
        );
    }

    #[test]
    fn refuses_every_other_shape_with_a_typed_error() {
        use KekFileError::*;
        let zero = "0".repeat(64);
        let cases: Vec<(String, KekFileError)> = vec![
            (String::new(), NotKekFile),
            (HEX.to_owned(), NotKekFile),
            (format!("E2M-KEK v1 1 {HEX}"), NotKekFile),
            (format!("e2m-kek v2 1 {HEX}"), UnsupportedFormat),
            (format!("e2m-kek  v1 1 {HEX}"), UnsupportedFormat),
            ("e2m-kek v1 1".to_owned(), Layout),
            (format!("e2m-kek v1 1 {HEX} extra"), Layout),
            (format!("e2m-kek v1 1 {HEX} "), Layout),
            (format!("e2m-kek v1 1 {HEX}\n\n"), Layout),
            (format!("e2m-kek v1 1 {HEX}\nsecond line"), Layout),
            (format!("e2m-kek v1 0 {HEX}"), BadVersion),
            (format!("e2m-kek v1 01 {HEX}"), BadVersion),
            (format!("e2m-kek v1 +1 {HEX}"), BadVersion),
            (format!("e2m-kek v1 4294967296 {HEX}"), BadVersion),
            (format!("e2m-kek v1 99999999999 {HEX}"), BadVersion),
            (format!("e2m-kek v1  {HEX}"), BadVersion),
            (format!("e2m-kek v1 1 {}", &HEX[..62]), BadKey),
            (format!("e2m-kek v1 1 {HEX}00"), BadKey),
            (format!("e2m-kek v1 1 {}zz", &HEX[..62]), BadKey),
            (format!("e2m-kek v1 1 {zero}"), ZeroKey),
        ];
        for (text, expected) in cases {
            assert_eq!(
                Kek::parse(text.as_bytes()).err(),
                Some(expected),
                "{text:?}"
            );
        }
    }

    #[test]
    fn errors_and_debug_show_no_key_material() {
        let kek = Kek::parse(format!("e2m-kek v1 3 {HEX}").as_bytes()).unwrap();
        let debug = format!("{kek:?}");
        assert_eq!(debug, "Kek { version: KekVersion(3), .. }");
        // A file with a bad key: the message must not repeat any of its digits.
        let secret = "deadbeefcafef00d".repeat(4);
        let bad = format!("e2m-kek v1 3 {secret}x");
        let err = Kek::parse(bad.as_bytes()).err().unwrap();
        for text in [err.to_string(), format!("{err:?}")] {
            assert!(!text.contains("deadbeef"), "{text}");
        }
    }

    #[test]
    fn format_and_parse_round_trip() {
        let key: [u8; 32] = hex::decode(HEX).unwrap().try_into().unwrap();
        let text = format_kek_file(v(42), &key);
        assert_eq!(text.as_str(), format!("e2m-kek v1 42 {HEX}\n"));
        assert_eq!(Kek::parse(text.as_bytes()).unwrap().version(), v(42));
    }

    #[cfg(feature = "getrandom")]
    #[test]
    fn generated_files_parse_and_differ() {
        let a = generate_kek_file(v(1)).unwrap();
        let b = generate_kek_file(v(1)).unwrap();
        assert!(Kek::parse(a.as_bytes()).is_ok());
        assert_ne!(a.as_str(), b.as_str());
    }

    #[test]
    fn version_zero_is_not_a_version() {
        assert_eq!(KekVersion::new(0), None);
        assert_eq!(v(5).to_string(), "5");
    }
}
