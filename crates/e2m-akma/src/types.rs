//! The small validated strings of the bodies.

use core::fmt;

/// Why a string is not a valid attribute value (the position of the attribute is in the
/// [`crate::DecodeError`] that wraps it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValueError {
    /// `suppFeat` is hex digits only (TS 29.571 `SupportedFeatures`), at most 64 here.
    #[error("supported features must be at most 64 hex digits")]
    SupportedFeatures,
    /// `notifUri` must be an absolute `http` or `https` URI of printable ASCII, at most
    /// 2048 octets.
    #[error("notification URI must be an absolute http(s) URI")]
    Uri,
}

/// `SupportedFeatures` (TS 29.571 §5.2.2): a bitmask in hex, the last digit for features
/// 1 to 4 (TS 29.500 §6.6). At most 64 digits (256 features) are accepted.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct SupportedFeatures(String);

impl SupportedFeatures {
    /// Parses hex digits (either case, as the schema allows; kept as given).
    ///
    /// # Errors
    /// [`ValueError::SupportedFeatures`].
    pub fn parse(text: &str) -> Result<SupportedFeatures, ValueError> {
        if text.len() > 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ValueError::SupportedFeatures);
        }
        Ok(SupportedFeatures(text.to_owned()))
    }

    /// The digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A callback URI (`notifUri`, TS 29.122 `Uri`): absolute, `http://` or `https://`, printable
/// ASCII (RFC 3986 leaves no other character unescaped), at most 2048 octets.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct NotifUri(String);

impl NotifUri {
    /// The longest URI accepted.
    pub const MAX_LEN: usize = 2048;

    /// Parses a URI.
    ///
    /// # Errors
    /// [`ValueError::Uri`].
    pub fn parse(text: &str) -> Result<NotifUri, ValueError> {
        let rest = text
            .strip_prefix("https://")
            .or_else(|| text.strip_prefix("http://"))
            .ok_or(ValueError::Uri)?;
        if text.len() > Self::MAX_LEN
            || rest.is_empty()
            || rest.starts_with('/')
            || !text.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(ValueError::Uri);
        }
        Ok(NotifUri(text.to_owned()))
    }

    /// The URI.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for NotifUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NotifUri({:?})", self.0)
    }
}
