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
//! Writing: into a [`SecretBuffer`], which grows by copy-then-wipe (a `Vec` that
//! reallocates leaves its old contents in freed memory) and never past [`MAX_BODY`],
//! returned as `Zeroizing<Vec<u8>>`; a key is written as hex from a stack buffer that is
//! wiped afterwards. The buffer starts at [`SecretBuffer::TYPICAL`] octets, which holds
//! every AKMA body but the rare long ones: reserving the whole bound each time cost an
//! 8 KiB allocation and an 8 KiB wipe per message (issue 18's profile).

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

/// Writes `value` into a [`SecretBuffer`] bounded by [`MAX_BODY`].
pub(crate) fn write<T: Serialize>(value: &T) -> Zeroizing<Vec<u8>> {
    let mut out = SecretBuffer::new(SecretBuffer::TYPICAL, MAX_BODY);
    // Serialising these structs of strings cannot fail but for a body over MAX_BODY; an
    // error would leave a partial body, so it is replaced by an empty one, which every
    // reader refuses.
    if serde_json::to_writer(&mut out, value).is_err() {
        return Zeroizing::new(Vec::new());
    }
    out.into_inner()
}

/// A byte buffer for a body that may hold a key: it grows by copying into a new allocation
/// and wiping the old one, never past its bound, and is wiped when dropped.
///
/// ```
/// use e2m_akma::{MAX_BODY, SecretBuffer};
///
/// let mut body = SecretBuffer::new(4, MAX_BODY);
/// body.extend(b"{\"kaf\":")?;          // grown: the 4-octet buffer was wiped first
/// body.extend(b"\"00\"}")?;
/// assert_eq!(body.as_slice(), b"{\"kaf\":\"00\"}");
/// assert!(SecretBuffer::new(0, 4).extend(b"12345").is_err()); // past its bound
/// # Ok::<(), e2m_akma::DecodeError>(())
/// ```
pub struct SecretBuffer {
    bytes: Zeroizing<Vec<u8>>,
    max: usize,
}

impl SecretBuffer {
    /// A capacity that holds every usual AKMA body (the largest, an `AkmaAfKeyData` with a
    /// 253-octet NAI SUPI and a GPSI, is about 700 octets).
    pub const TYPICAL: usize = 1024;

    /// An empty buffer with room for `initial` octets (at most `max`) that refuses to hold
    /// more than `max`.
    #[must_use]
    pub fn new(initial: usize, max: usize) -> SecretBuffer {
        SecretBuffer {
            bytes: Zeroizing::new(Vec::with_capacity(initial.min(max))),
            max,
        }
    }

    /// Appends `data`, growing by copy-then-wipe if needed.
    ///
    /// # Errors
    /// [`DecodeError::TooLarge`] if the buffer would hold more than its bound; the buffer
    /// is left as it was.
    pub fn extend(&mut self, data: &[u8]) -> Result<(), DecodeError> {
        let len = self.bytes.len().saturating_add(data.len());
        if len > self.max {
            return Err(DecodeError::TooLarge { len, max: self.max });
        }
        if len > self.bytes.capacity() {
            let capacity = len
                .max(self.bytes.capacity().saturating_mul(2))
                .min(self.max);
            let mut grown = Zeroizing::new(Vec::with_capacity(capacity));
            grown.extend_from_slice(&self.bytes);
            // The old allocation is wiped (all of its capacity) as it is dropped here.
            self.bytes = grown;
        }
        self.bytes.extend_from_slice(data);
        Ok(())
    }

    /// The octets held.
    #[must_use]
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes
    }

    /// The octets held, to be read and wiped in place (as [`JsonBody::from_json_wiping`]).
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.bytes
    }

    /// How many octets are held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether no octet is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The octets as a buffer wiped when dropped.
    #[must_use]
    pub fn into_inner(self) -> Zeroizing<Vec<u8>> {
        self.bytes
    }
}

/// The octets are not shown: they may be a key.
impl core::fmt::Debug for SecretBuffer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SecretBuffer")
            .field("len", &self.bytes.len())
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

/// For serialisers (`serde_json::to_writer`): a write past the bound fails whole.
impl std::io::Write for SecretBuffer {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.extend(data)
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::OutOfMemory))?;
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
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
