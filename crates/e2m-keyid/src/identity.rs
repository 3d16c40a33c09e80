//! Validated identifiers: the UE's application identity, its IMSI, and the EMSE_Id.
//!
//! Identifiers are compared octet for octet and never normalised on the way in: an
//! identifier that differs from another by case, width or an invisible character is a
//! different identifier, and the characters that make two identifiers *look* alike without
//! being equal (controls, white space, bidi and zero-width format characters) are refused.
//! All storage is inline (no allocator): these types work on a UE's ME as well as in a server.

use e2m_kdf::text_param;

/// Why text is not a valid identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// Identifiers are never empty.
    #[error("identifier is empty")]
    Empty,
    /// Longer than this kind of identifier allows.
    #[error("identifier is {actual} octets; at most {max} allowed")]
    TooLong {
        /// The maximum for this kind.
        max: usize,
        /// Octets supplied.
        actual: usize,
    },
    /// Not UTF-8.
    #[error("identifier is not UTF-8")]
    NotUtf8,
    /// Contains a control character (Unicode category Cc).
    #[error("identifier contains a control character")]
    ControlCharacter,
    /// Contains white space (anywhere: identifiers are single tokens).
    #[error("identifier contains white space")]
    Whitespace,
    /// Contains an invisible format character (zero-width, bidi override, BOM, soft hyphen).
    #[error("identifier contains an invisible format character")]
    FormatCharacter,
    /// An IMSI is 6 to 15 decimal digits.
    #[error("IMSI must be 6 to 15 decimal digits")]
    NotImsi,
    /// An EMSE_Id is a KDF input and must be in NFKC (TS 33.220 B.2.1.2).
    #[error("EMSE_Id is not in NFKC")]
    NotNormalized,
}

/// Invisible characters that make look-alike identifiers (Unicode category Cf, the ones that
/// matter in identifiers: UTS #39 and RFC 8264 disallow them too).
fn is_format_char(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}')
}

fn check_token(text: &str, max: usize) -> Result<(), IdentityError> {
    if text.is_empty() {
        return Err(IdentityError::Empty);
    }
    if text.len() > max {
        return Err(IdentityError::TooLong {
            max,
            actual: text.len(),
        });
    }
    for c in text.chars() {
        if c.is_control() {
            return Err(IdentityError::ControlCharacter);
        }
        if c.is_whitespace() {
            return Err(IdentityError::Whitespace);
        }
        if is_format_char(c) {
            return Err(IdentityError::FormatCharacter);
        }
    }
    Ok(())
}

macro_rules! bounded_text {
    ($(#[$doc:meta])* $name:ident, $max:expr, $check:path) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name {
            len: u16,
            bytes: [u8; $max],
        }

        impl $name {
            /// The most octets this identifier may have.
            pub const MAX_LEN: usize = $max;

            /// Validates `text` and stores a copy.
            ///
            /// # Errors
            /// [`IdentityError`] naming the first rule the text breaks.
            pub fn new(text: &str) -> Result<Self, IdentityError> {
                $check(text)?;
                let mut bytes = [0u8; $max];
                bytes[..text.len()].copy_from_slice(text.as_bytes());
                Ok($name {
                    // Bounded by MAX_LEN, which fits in u16.
                    len: text.len() as u16,
                    bytes,
                })
            }

            /// Validates octets (which must be UTF-8) and stores a copy.
            ///
            /// # Errors
            /// [`IdentityError::NotUtf8`] or as [`Self::new`].
            pub fn from_utf8(bytes: &[u8]) -> Result<Self, IdentityError> {
                if bytes.len() > $max {
                    return Err(IdentityError::TooLong { max: $max, actual: bytes.len() });
                }
                let text = core::str::from_utf8(bytes).map_err(|_| IdentityError::NotUtf8)?;
                Self::new(text)
            }

            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                // Only ever built from a &str, so the stored prefix is UTF-8.
                core::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
            }

            /// The identifier's octets.
            pub fn as_bytes(&self) -> &[u8] {
                &self.bytes[..usize::from(self.len)]
            }
        }

        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl core::fmt::Debug for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                write!(f, concat!(stringify!($name), "({:?})"), self.as_str())
            }
        }

        impl core::str::FromStr for $name {
            type Err = IdentityError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }
    };
}

fn check_app_identity(text: &str) -> Result<(), IdentityError> {
    check_token(text, AppIdentity::MAX_LEN)
}

fn check_emse_id(text: &str) -> Result<(), IdentityError> {
    check_token(text, EmseId::MAX_LEN)?;
    text_param(text)
        .map(|_| ())
        .map_err(|_| IdentityError::NotNormalized)
}

fn check_imsi(text: &str) -> Result<(), IdentityError> {
    if text.is_empty() {
        return Err(IdentityError::Empty);
    }
    if text.len() > Imsi::MAX_LEN {
        return Err(IdentityError::TooLong {
            max: Imsi::MAX_LEN,
            actual: text.len(),
        });
    }
    if text.len() < 6 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(IdentityError::NotImsi);
    }
    Ok(())
}

bounded_text!(
    /// The UE's application layer identity, as the UE sends it to the EMSE and the EMSE to
    /// the EMKS (seed 6.x.2.1, "Considerations on the user identity"; the preferred case 2,
    /// where the EMKS maps it to an IMSI).
    ///
    /// At most 114 octets, so that it always fits a 128-octet `psk_identity` with its
    /// prefix and key id (RFC 4279 §5.1); any UTF-8 without controls, white space or
    /// invisible format characters. An NAI (`user@realm`, RFC 7542) is a natural choice.
    AppIdentity, 114, check_app_identity
);

bounded_text!(
    /// The EMSE's identifier: an input to the `e2m_key` derivation and the name the EMSE's
    /// TLS client certificate carries. At most 255 octets, a single token, and in NFKC
    /// (it is a KDF text parameter).
    EmseId, 255, check_emse_id
);

impl EmseId {
    /// The EMSE_Id of `text` after NFKC normalisation (TS 33.220 B.2.1.2: "character
    /// strings … shall be normalised to NFKC" before they enter the KDF), for text a person
    /// typed or a configuration holds, e.g. `ｉｏｔ.example.com` (fullwidth) becomes
    /// `iot.example.com`.
    ///
    /// Which entry point uses which path: everything that arrives on the wire (XML
    /// messages, the identity in a TLS certificate, a `psk_identity`) goes through the strict
    /// [`EmseId::new`], which refuses text that is not already NFKC, so that two spellings
    /// can never name the same EMSE and an EMSE_Id compares octet for octet with the
    /// certificate's; operator and user input (the examples' `--emse-id`) may use this
    /// normalising constructor, which the spec's own rule permits.
    ///
    /// ```
    /// use e2m_keyid::EmseId;
    /// let typed = "\u{ff49}\u{ff4f}\u{ff54}.example.com"; // ｉｏｔ.example.com
    /// assert!(EmseId::new(typed).is_err());
    /// assert_eq!(EmseId::new_normalized(typed).unwrap().as_str(), "iot.example.com");
    /// ```
    ///
    /// # Errors
    /// As [`EmseId::new`], for the normalised text.
    #[cfg(feature = "nfkc")]
    #[cfg_attr(docsrs, doc(cfg(feature = "nfkc")))]
    pub fn new_normalized(text: &str) -> Result<EmseId, IdentityError> {
        EmseId::new(&e2m_kdf::normalize_text(text))
    }
}

bounded_text!(
    /// An IMSI: 6 to 15 decimal digits (TS 23.003 §2.2: MCC, MNC, MSIN; at most 15).
    Imsi, 15, check_imsi
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_refuse_look_alikes() {
        assert!(AppIdentity::new("sensor-17@iot.example.com").is_ok());
        assert!(AppIdentity::new("capteur-é@exemple.fr").is_ok());
        assert_eq!(AppIdentity::new(""), Err(IdentityError::Empty));
        assert_eq!(AppIdentity::new(" a"), Err(IdentityError::Whitespace));
        assert_eq!(AppIdentity::new("a\u{a0}b"), Err(IdentityError::Whitespace));
        assert_eq!(
            AppIdentity::new("a\tb"),
            Err(IdentityError::ControlCharacter)
        );
        assert_eq!(
            AppIdentity::new("a\u{85}"),
            Err(IdentityError::ControlCharacter)
        );
        assert_eq!(
            AppIdentity::new("a\u{200b}b"),
            Err(IdentityError::FormatCharacter)
        );
        assert_eq!(
            AppIdentity::new("a\u{202e}b"),
            Err(IdentityError::FormatCharacter)
        );
        assert_eq!(
            AppIdentity::new(&"x".repeat(115)),
            Err(IdentityError::TooLong {
                max: 114,
                actual: 115
            })
        );
        assert!(AppIdentity::new(&"x".repeat(114)).is_ok());
        assert_eq!(
            AppIdentity::from_utf8(&[0x61, 0xff]),
            Err(IdentityError::NotUtf8)
        );
    }

    #[test]
    fn imsi_is_digits() {
        assert!(Imsi::new("001010123456789").is_ok());
        assert_eq!(Imsi::new("00101"), Err(IdentityError::NotImsi));
        assert_eq!(
            Imsi::new("0010101234567890").err(),
            Some(IdentityError::TooLong {
                max: 15,
                actual: 16
            })
        );
        assert_eq!(Imsi::new("00101012345678a"), Err(IdentityError::NotImsi));
        assert_eq!(
            Imsi::new("００１０１０１２３"),
            Err(IdentityError::TooLong {
                max: 15,
                actual: 27
            })
        );
    }

    #[test]
    fn emse_id_must_be_nfkc_and_exact() {
        assert!(EmseId::new("emse-a.example.com").is_ok());
        assert_eq!(
            EmseId::new("\u{FB01}le.example"),
            Err(IdentityError::NotNormalized)
        );
        assert_ne!(EmseId::new("EMSE-A").ok(), EmseId::new("emse-a").ok());
    }
}
