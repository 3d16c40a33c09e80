//! Character-string parameters (TS 33.220 B.2.1.2: UTF-8, normalised to NFKC).
//!
//! How the guarantee holds without an allocator: normalising may change a string's length,
//! so a no-alloc API cannot normalise into a caller's `&str`. It *checks* instead. ASCII is
//! accepted always (NFKC maps every ASCII code point to itself, so ASCII text is already in
//! NFKC). Other text is accepted only with the `nfkc` feature, and only if it is already in
//! NFKC; with that feature [`normalize_text`] produces the normalised form to pass instead.
//! A string is therefore never fed to the KDF in a form that a conforming peer, which
//! normalises first, would encode differently.

use crate::KdfError;

/// Checks that `text` may be used as a KDF parameter unchanged, and returns its octets.
///
/// ```
/// assert_eq!(e2m_kdf::text_param("WLAN").unwrap(), b"WLAN");
/// // U+FB01 LATIN SMALL LIGATURE FI becomes "fi" under NFKC: refused as it stands.
/// assert!(e2m_kdf::text_param("\u{FB01}le").is_err());
/// ```
///
/// # Errors
/// [`KdfError::TextNotNormalized`] if the text is not in NFKC (without the `nfkc`
/// feature: if it is not ASCII).
pub fn text_param(text: &str) -> Result<&[u8], KdfError> {
    if text.is_ascii() || is_nfkc(text) {
        Ok(text.as_bytes())
    } else {
        Err(KdfError::TextNotNormalized)
    }
}

#[cfg(feature = "nfkc")]
fn is_nfkc(text: &str) -> bool {
    unicode_normalization::is_nfkc(text)
}

#[cfg(not(feature = "nfkc"))]
fn is_nfkc(_text: &str) -> bool {
    false
}

/// The NFKC form of `text` (TS 33.220 B.2.1.2), to pass to a derivation.
#[cfg(feature = "nfkc")]
#[cfg_attr(docsrs, doc(cfg(feature = "nfkc")))]
pub fn normalize_text(text: &str) -> alloc::string::String {
    use unicode_normalization::UnicodeNormalization;
    text.nfkc().collect()
}

#[cfg(all(test, feature = "nfkc"))]
mod tests {
    use super::*;

    #[test]
    fn nfkc_text_is_accepted_and_other_text_normalised() {
        assert!(text_param("caf\u{e9}").is_ok()); // precomposed é is NFKC
        assert!(text_param("cafe\u{301}").is_err()); // e + combining acute is not
        assert_eq!(normalize_text("cafe\u{301}"), "caf\u{e9}");
        assert_eq!(normalize_text("\u{FB01}"), "fi");
    }
}
