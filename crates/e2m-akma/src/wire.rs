//! The strict reading and the careful writing of the JSON bodies.
//!
//! Reading: every body is first checked against [`MAX_BODY`], then parsed into a private
//! struct whose attributes are borrowed raw JSON (`&RawValue`) with `deny_unknown_fields`:
//! serde refuses unknown and duplicated attributes and anything but an object, serde_json
//! refuses bad syntax, trailing data and nesting past its limit. Each attribute is then
//! checked here with a typed error naming it ([`DecodeError`]). Key attributes are hex read
//! straight from the caller's buffer: no copy of a key is made on the way in (the caller
//! wipes its buffer, or lets [`JsonBody::from_json_wiping`] do it).
//!
//! Writing: into one buffer reserved at [`MAX_BODY`] octets, so that it never grows (a grown
//! `Vec` leaves its old contents in freed memory), returned as `Zeroizing<Vec<u8>>`; a key is
//! written as hex from a stack buffer that is wiped afterwards.

use serde::Serialize;
use serde_json::value::RawValue;
use zeroize::{Zeroize, Zeroizing};

use crate::DecodeError;

/// The largest body read or written, in octets. The largest AKMA body is about 700 octets
/// (an `AkmaAfKeyData` with a 253-octet NAI SUPI and GPSI).
pub const MAX_BODY: usize = 8 * 1024;

/// A JSON body of the AKMA APIs.
pub trait JsonBody: Sized {
    /// Reads the body strictly (see the crate documentation).
    ///
    /// # Errors
    /// [`DecodeError`], which maps to the problem details to answer with.
    fn from_json(body: &[u8]) -> Result<Self, DecodeError>;

    /// Writes the body. The buffer is wiped when dropped (it may hold a key).
    fn to_json(&self) -> Zeroizing<Vec<u8>>;

    /// [`JsonBody::from_json`], then wipes `body` whatever the outcome: for bodies that
    /// carry a key (`kAkma`, `kaf`).
    ///
    /// # Errors
    /// As [`JsonBody::from_json`].
    fn from_json_wiping(body: &mut [u8]) -> Result<Self, DecodeError> {
        let result = Self::from_json(body);
        body.zeroize();
        result
    }
}

pub(crate) fn check_size(body: &[u8]) -> Result<(), DecodeError> {
    if body.len() > MAX_BODY {
        return Err(DecodeError::TooLarge {
            len: body.len(),
            max: MAX_BODY,
        });
    }
    Ok(())
}

/// Parses `body` into the borrowed wire struct `T`.
pub(crate) fn parse<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> Result<T, DecodeError> {
    check_size(body)?;
    // serde's derived structs also accept a JSON array (fields by position): only an object
    // is a body here.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(DecodeError::Malformed { line: 1, column: 1 });
    }
    Ok(serde_json::from_slice(body)?)
}

/// Writes `value` into a buffer that never reallocates below [`MAX_BODY`].
pub(crate) fn write<T: Serialize>(value: &T) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(MAX_BODY));
    // Serialising these structs of strings cannot fail; an error would leave a partial body,
    // so it is replaced by an empty one, which every reader refuses.
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.zeroize();
        out.clear();
    }
    out
}

/// An attribute that must be present.
pub(crate) fn required<'a>(
    raw: Option<&'a RawValue>,
    ie: &'static str,
) -> Result<&'a RawValue, DecodeError> {
    raw.ok_or(DecodeError::Missing { ie })
}

/// A JSON string attribute, unescaped.
pub(crate) fn string(
    raw: &RawValue,
    ie: &'static str,
    mandatory: bool,
) -> Result<String, DecodeError> {
    serde_json::from_str::<String>(raw.get()).map_err(|_| DecodeError::Incorrect {
        ie,
        mandatory,
        reason: "not a string",
    })
}

/// A string attribute parsed by `parse`.
pub(crate) fn typed<T, E>(
    raw: &RawValue,
    ie: &'static str,
    mandatory: bool,
    reason: &'static str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, DecodeError> {
    let text = string(raw, ie, mandatory)?;
    parse(&text).map_err(|_| DecodeError::Incorrect {
        ie,
        mandatory,
        reason,
    })
}

/// An optional string attribute parsed by `parse`.
pub(crate) fn optional<T, E>(
    raw: Option<&RawValue>,
    ie: &'static str,
    reason: &'static str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<Option<T>, DecodeError> {
    raw.map(|raw| typed(raw, ie, false, reason, parse))
        .transpose()
}

/// A boolean attribute.
pub(crate) fn boolean(raw: &RawValue, ie: &'static str) -> Result<bool, DecodeError> {
    match raw.get() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(DecodeError::Incorrect {
            ie,
            mandatory: false,
            reason: "not a boolean",
        }),
    }
}

/// A 256-bit key as 64 hex digits, read in place from the raw JSON text: exactly `"` + 64
/// hex digits + `"` (a key never needs an escape, so none is accepted).
pub(crate) fn hex_key<K>(
    raw: &RawValue,
    ie: &'static str,
    from_hex: impl FnOnce(&str) -> Result<K, e2m_kdf::KeyError>,
) -> Result<K, DecodeError> {
    let incorrect = DecodeError::Incorrect {
        ie,
        mandatory: true,
        reason: "not 64 hex digits",
    };
    let text = raw.get();
    let hex = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .ok_or(incorrect)?;
    if hex.len() != 64 {
        return Err(incorrect);
    }
    from_hex(hex).map_err(|_| incorrect)
}

/// Writes a 32-octet key as 64 lower-case hex digits from a stack buffer wiped afterwards.
pub(crate) struct HexKey<'a>(pub(crate) &'a [u8; 32]);

impl Serialize for HexKey<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut buf = Zeroizing::new([0u8; 64]);
        // 32 octets always fill 64 digits.
        let text = base16(self.0, &mut buf);
        serializer.serialize_str(text)
    }
}

fn base16<'b>(bytes: &[u8; 32], buf: &'b mut [u8; 64]) -> &'b str {
    // Constant time (no table indexed by key nibbles), like the keys' own hex parser.
    base16ct::lower::encode_str(bytes, buf).unwrap_or_default()
}
