//! AVPs (RFC 6733 §4): the header, a borrowed view of one AVP, a lazy iterator over a
//! sequence of AVPs (a message body or a Grouped AVP's data) and the writer.
//!
//! Reading allocates nothing: an [`Avp`] is a few integers and two slices of the message.

use core::fmt;
use core::net::IpAddr;

use crate::codes::AvpCode;
use crate::error::{AvpError, AvpErrorKind, EncodeError, ValueError};
use crate::header::MAX_LENGTH;
use crate::value::{Address, DiameterUri, Time, validate_identity};

/// The AVP Flags field (RFC 6733 §4.1): V, M, P and five reserved bits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct AvpFlags(u8);

impl AvpFlags {
    /// No flag set.
    pub const NONE: Self = Self(0);
    /// V: the Vendor-ID field is present.
    pub const VENDOR: Self = Self(0x80);
    /// M: the receiver must understand the AVP or reject the message.
    pub const MANDATORY: Self = Self(0x40);
    /// P: reserved for end-to-end security; should be 0.
    pub const PROTECTED: Self = Self(0x20);
    /// The reserved bits: sent as zero, ignored by the receiver (§4.1).
    pub const RESERVED: Self = Self(0x1f);

    /// Flags from the octet on the wire.
    pub const fn from_bits(bits: u8) -> Self {
        Self(bits)
    }

    /// The octet on the wire.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// These flags with `other`'s bits set too.
    pub const fn with(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// These flags with `other`'s bits cleared.
    pub const fn without(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }

    /// M is set.
    pub const fn is_mandatory(self) -> bool {
        self.contains(Self::MANDATORY)
    }

    /// V is set.
    pub const fn is_vendor(self) -> bool {
        self.contains(Self::VENDOR)
    }
}

impl fmt::Debug for AvpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AvpFlags(")?;
        for (flag, name) in [
            (Self::VENDOR, 'V'),
            (Self::MANDATORY, 'M'),
            (Self::PROTECTED, 'P'),
        ] {
            if self.contains(flag) {
                write!(f, "{name}")?;
            }
        }
        if self.0 & Self::RESERVED.0 != 0 {
            write!(f, "+reserved {:#x}", self.0 & Self::RESERVED.0)?;
        }
        write!(f, ")")
    }
}

/// An AVP's name on the wire: its code and vendor id (0 for the IETF space, RFC 6733 §4.1.1).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct AvpKey {
    /// AVP code.
    pub code: AvpCode,
    /// Vendor id; 0 when the V bit is clear.
    pub vendor_id: u32,
}

impl AvpKey {
    /// An IETF AVP (vendor id 0).
    pub const fn ietf(code: AvpCode) -> Self {
        Self { code, vendor_id: 0 }
    }

    /// A vendor-specific AVP.
    pub const fn vendor(code: AvpCode, vendor_id: u32) -> Self {
        Self { code, vendor_id }
    }
}

impl From<AvpCode> for AvpKey {
    fn from(code: AvpCode) -> Self {
        Self::ietf(code)
    }
}

/// What the writer puts in an AVP header: code, flags and vendor id. The V bit follows
/// `vendor_id` (set when it is `Some`), whatever `flags` says.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct AvpHeader {
    /// AVP code.
    pub code: AvpCode,
    /// M and P (V is derived from `vendor_id`; reserved bits are written as given).
    pub flags: AvpFlags,
    /// Vendor id, written (with the V bit) when `Some`.
    pub vendor_id: Option<u32>,
}

impl AvpHeader {
    /// An IETF AVP with no flag set.
    pub const fn new(code: AvpCode) -> Self {
        Self {
            code,
            flags: AvpFlags::NONE,
            vendor_id: None,
        }
    }

    /// An IETF AVP with the M bit set.
    pub const fn mandatory(code: AvpCode) -> Self {
        Self {
            code,
            flags: AvpFlags::MANDATORY,
            vendor_id: None,
        }
    }

    /// This header with a vendor id (and so the V bit).
    pub const fn with_vendor(self, vendor_id: u32) -> Self {
        Self {
            vendor_id: Some(vendor_id),
            ..self
        }
    }

    /// This header with these flags (V still follows the vendor id).
    pub const fn with_flags(self, flags: AvpFlags) -> Self {
        Self { flags, ..self }
    }

    /// The header length: 8, or 12 with a vendor id.
    pub const fn len(&self) -> usize {
        if self.vendor_id.is_some() { 12 } else { 8 }
    }

    /// Never empty (an AVP header has at least 8 octets); for clippy's `len` convention.
    pub const fn is_empty(&self) -> bool {
        false
    }

    /// The key this header names.
    pub const fn key(&self) -> AvpKey {
        AvpKey {
            code: self.code,
            vendor_id: match self.vendor_id {
                Some(v) => v,
                None => 0,
            },
        }
    }
}

/// One AVP, borrowed from the octets it was read from.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Avp<'a> {
    code: AvpCode,
    flags: AvpFlags,
    vendor_id: Option<u32>,
    data: &'a [u8],
    raw: &'a [u8],
    offset: usize,
}

impl fmt::Debug for Avp<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Avp")
            .field("code", &self.code)
            .field("flags", &self.flags)
            .field("vendor_id", &self.vendor_id)
            .field("data_len", &self.data.len())
            .field("offset", &self.offset)
            .finish()
    }
}

impl<'a> Avp<'a> {
    /// The AVP code.
    pub const fn code(&self) -> AvpCode {
        self.code
    }

    /// The AVP flags as received (reserved bits included).
    pub const fn flags(&self) -> AvpFlags {
        self.flags
    }

    /// The vendor id, when the V bit is set.
    pub const fn vendor_id(&self) -> Option<u32> {
        self.vendor_id
    }

    /// Code and vendor id (0 when the V bit is clear): the dictionary's key.
    pub const fn key(&self) -> AvpKey {
        AvpKey {
            code: self.code,
            vendor_id: match self.vendor_id {
                Some(v) => v,
                None => 0,
            },
        }
    }

    /// The header as the writer would write it again.
    pub const fn header(&self) -> AvpHeader {
        AvpHeader {
            code: self.code,
            flags: self.flags.without(AvpFlags::VENDOR),
            vendor_id: self.vendor_id,
        }
    }

    /// The M bit.
    pub const fn is_mandatory(&self) -> bool {
        self.flags.is_mandatory()
    }

    /// The data field, without padding.
    pub const fn data(&self) -> &'a [u8] {
        self.data
    }

    /// The whole AVP as received (header and data, without padding): what a relay forwards
    /// and what a Failed-AVP copies.
    pub const fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// Offset of the AVP from the start of the message (for a message's AVPs) or of the
    /// octets iterated.
    pub const fn offset(&self) -> usize {
        self.offset
    }

    /// The data of a Grouped AVP as AVPs, read lazily like a message body.
    pub fn grouped(&self) -> AvpIter<'a> {
        AvpIter::with_offset(self.data, self.offset + (self.raw.len() - self.data.len()))
    }

    fn fixed<const N: usize>(&self) -> Result<[u8; N], ValueError> {
        self.data.try_into().map_err(|_| ValueError::Length {
            actual: self.data.len(),
        })
    }

    /// Unsigned32 (§4.2).
    ///
    /// # Errors
    ///
    /// [`ValueError::Length`] unless the data has 4 octets.
    pub fn u32(&self) -> Result<u32, ValueError> {
        self.fixed().map(u32::from_be_bytes)
    }

    /// Unsigned64 (§4.2).
    ///
    /// # Errors
    ///
    /// [`ValueError::Length`] unless the data has 8 octets.
    pub fn u64(&self) -> Result<u64, ValueError> {
        self.fixed().map(u64::from_be_bytes)
    }

    /// Integer32, and Enumerated (§4.2, §4.3.1).
    ///
    /// # Errors
    ///
    /// [`ValueError::Length`] unless the data has 4 octets.
    pub fn i32(&self) -> Result<i32, ValueError> {
        self.fixed().map(i32::from_be_bytes)
    }

    /// Integer64 (§4.2).
    ///
    /// # Errors
    ///
    /// [`ValueError::Length`] unless the data has 8 octets.
    pub fn i64(&self) -> Result<i64, ValueError> {
        self.fixed().map(i64::from_be_bytes)
    }

    /// Float32 (§4.2, IEEE 754 single precision).
    ///
    /// # Errors
    ///
    /// [`ValueError::Length`] unless the data has 4 octets.
    pub fn f32(&self) -> Result<f32, ValueError> {
        self.fixed().map(f32::from_be_bytes)
    }

    /// Float64 (§4.2, IEEE 754 double precision).
    ///
    /// # Errors
    ///
    /// [`ValueError::Length`] unless the data has 8 octets.
    pub fn f64(&self) -> Result<f64, ValueError> {
        self.fixed().map(f64::from_be_bytes)
    }

    /// UTF8String (§4.3.1), validated.
    ///
    /// # Errors
    ///
    /// [`ValueError::Utf8`] if the data is not valid UTF-8.
    pub fn utf8(&self) -> Result<&'a str, ValueError> {
        core::str::from_utf8(self.data).map_err(|_| ValueError::Utf8)
    }

    /// DiameterIdentity (§4.3.1): an ASCII FQDN or realm.
    ///
    /// # Errors
    ///
    /// [`ValueError::Identity`] if the data is not one (see [`validate_identity`]).
    pub fn identity(&self) -> Result<&'a str, ValueError> {
        validate_identity(self.data)
    }

    /// Address (§4.3.1).
    ///
    /// # Errors
    ///
    /// [`ValueError::Address`] if the data is shorter than the address type or an IPv4/IPv6
    /// address has the wrong length.
    pub fn address(&self) -> Result<Address<'a>, ValueError> {
        Address::parse(self.data)
    }

    /// Time (§4.3.1).
    ///
    /// # Errors
    ///
    /// [`ValueError::Length`] unless the data has 4 octets.
    pub fn time(&self) -> Result<Time, ValueError> {
        self.fixed().map(|b| Time::from_ntp(u32::from_be_bytes(b)))
    }

    /// DiameterURI (§4.3.1).
    ///
    /// # Errors
    ///
    /// [`ValueError::Uri`] if the data does not follow the grammar.
    pub fn uri(&self) -> Result<DiameterUri<'a>, ValueError> {
        DiameterUri::parse(core::str::from_utf8(self.data).map_err(|_| ValueError::Uri)?)
    }
}

/// A lazy iterator over a sequence of AVPs (a message body or a Grouped AVP's data).
///
/// It yields `Err` once, for the first AVP whose header cannot be read, and then stops: the
/// rest of the octets cannot be framed. The last AVP may omit its padding.
#[derive(Clone, Debug)]
pub struct AvpIter<'a> {
    octets: &'a [u8],
    pos: usize,
    base: usize,
    failed: bool,
}

impl<'a> AvpIter<'a> {
    /// Iterates `octets`, reporting offsets from their start.
    pub const fn new(octets: &'a [u8]) -> Self {
        Self::with_offset(octets, 0)
    }

    /// Iterates `octets`, reporting offsets as `base` plus the position in `octets`.
    pub const fn with_offset(octets: &'a [u8], base: usize) -> Self {
        Self {
            octets,
            pos: 0,
            base,
            failed: false,
        }
    }

    /// The first AVP with this key, ignoring a malformed tail (validate the message first
    /// where that matters).
    pub fn find(self, key: impl Into<AvpKey>) -> Option<Avp<'a>> {
        let key = key.into();
        self.map_while(Result::ok).find(|a| a.key() == key)
    }

    fn fail(&mut self, kind: AvpErrorKind, rest: &[u8], offset: usize) -> AvpError {
        self.failed = true;
        let word = |i: usize| {
            rest.get(i..i + 4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        };
        let flags = AvpFlags(rest.get(4).copied().unwrap_or(0));
        AvpError {
            kind,
            offset,
            code: AvpCode(word(0).unwrap_or(0)),
            flags,
            vendor_id: if flags.is_vendor() { word(8) } else { None },
            length: word(4).map_or(0, |w| w & 0x00ff_ffff),
        }
    }
}

impl<'a> Iterator for AvpIter<'a> {
    type Item = Result<Avp<'a>, AvpError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.octets.len() {
            return None;
        }
        let rest = &self.octets[self.pos..];
        let offset = self.base + self.pos;
        if rest.len() < 8 {
            return Some(Err(self.fail(AvpErrorKind::Truncated, rest, offset)));
        }
        let code = AvpCode(u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]));
        let flags = AvpFlags(rest[4]);
        let len = u32::from_be_bytes([0, rest[5], rest[6], rest[7]]) as usize;
        let header_len = if flags.is_vendor() { 12 } else { 8 };
        if rest.len() < header_len {
            return Some(Err(self.fail(AvpErrorKind::Truncated, rest, offset)));
        }
        if len < header_len {
            return Some(Err(self.fail(AvpErrorKind::LengthTooShort, rest, offset)));
        }
        if len > rest.len() {
            return Some(Err(self.fail(AvpErrorKind::Overrun, rest, offset)));
        }
        let vendor_id = flags
            .is_vendor()
            .then(|| u32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]]));
        let raw = &rest[..len];
        // The padding of the last AVP may be missing (a lenient reading of §4).
        self.pos += padded(len).min(rest.len());
        Some(Ok(Avp {
            code,
            flags,
            vendor_id,
            data: &raw[header_len..],
            raw,
            offset,
        }))
    }
}

/// `len` rounded up to a multiple of 4.
pub(crate) const fn padded(len: usize) -> usize {
    (len + 3) & !3
}

/// A buffer that AVPs are written into, with their lengths computed and padding zeroed; the
/// body of a [`crate::MessageBuilder`] and of every Grouped AVP written through it.
///
/// Writing never fails on the spot: the first error is kept and returned by
/// [`crate::MessageBuilder::finish`] (or [`AvpBuf::finish`]).
#[derive(Clone, Debug, Default)]
pub struct AvpBuf {
    buf: Vec<u8>,
    error: Option<EncodeError>,
}

impl AvpBuf {
    /// An empty buffer.
    pub const fn new() -> Self {
        Self {
            buf: Vec::new(),
            error: None,
        }
    }

    /// A buffer that appends to `buf` (reusing its allocation).
    pub const fn from_vec(buf: Vec<u8>) -> Self {
        Self { buf, error: None }
    }

    /// The octets written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The octets, or the first error met while writing.
    ///
    /// # Errors
    ///
    /// The first [`EncodeError`] met by any write.
    pub fn finish(self) -> Result<Vec<u8>, EncodeError> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.buf),
        }
    }

    pub(crate) fn set_error(&mut self, error: EncodeError) {
        self.error.get_or_insert(error);
    }

    pub(crate) fn buf_mut(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    fn begin(&mut self, header: AvpHeader) -> usize {
        let start = self.buf.len();
        let flags = match header.vendor_id {
            Some(_) => header.flags.with(AvpFlags::VENDOR),
            None => header.flags.without(AvpFlags::VENDOR),
        };
        self.buf.extend_from_slice(&header.code.0.to_be_bytes());
        self.buf.extend_from_slice(&[flags.0, 0, 0, 0]);
        if let Some(v) = header.vendor_id {
            self.buf.extend_from_slice(&v.to_be_bytes());
        }
        start
    }

    fn end(&mut self, start: usize) {
        let len = self.buf.len() - start;
        if len > MAX_LENGTH {
            self.set_error(EncodeError::AvpTooLong);
        }
        let l = (len as u32).to_be_bytes();
        self.buf[start + 5..start + 8].copy_from_slice(&l[1..]);
        self.buf.resize(start + padded(len), 0);
    }

    /// An AVP with this data (any type: the caller encoded it).
    pub fn octets(&mut self, header: AvpHeader, data: &[u8]) -> &mut Self {
        let start = self.begin(header);
        self.buf.extend_from_slice(data);
        self.end(start);
        self
    }

    /// An AVP copied octet for octet from one received (`avp.raw()`), padded: how a relay
    /// passes on AVPs it does not know.
    pub fn copy(&mut self, avp: &Avp<'_>) -> &mut Self {
        self.buf.extend_from_slice(avp.raw);
        self.buf
            .resize(self.buf.len() - avp.raw.len() + padded(avp.raw.len()), 0);
        self
    }

    /// Appends AVPs already encoded (complete and padded), e.g. a Failed-AVP's content.
    pub fn extend_encoded(&mut self, avps: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(avps);
        self
    }

    /// UTF8String.
    pub fn utf8(&mut self, header: AvpHeader, value: &str) -> &mut Self {
        self.octets(header, value.as_bytes())
    }

    /// DiameterIdentity. An invalid identity is kept as an error for `finish`.
    pub fn identity(&mut self, header: AvpHeader, value: &str) -> &mut Self {
        if let Err(e) = validate_identity(value.as_bytes()) {
            self.set_error(EncodeError::Value(e));
        }
        self.octets(header, value.as_bytes())
    }

    /// Unsigned32.
    pub fn u32(&mut self, header: AvpHeader, value: u32) -> &mut Self {
        self.octets(header, &value.to_be_bytes())
    }

    /// Unsigned64.
    pub fn u64(&mut self, header: AvpHeader, value: u64) -> &mut Self {
        self.octets(header, &value.to_be_bytes())
    }

    /// Integer32 or Enumerated.
    pub fn i32(&mut self, header: AvpHeader, value: i32) -> &mut Self {
        self.octets(header, &value.to_be_bytes())
    }

    /// Integer64.
    pub fn i64(&mut self, header: AvpHeader, value: i64) -> &mut Self {
        self.octets(header, &value.to_be_bytes())
    }

    /// Float32.
    pub fn f32(&mut self, header: AvpHeader, value: f32) -> &mut Self {
        self.octets(header, &value.to_be_bytes())
    }

    /// Float64.
    pub fn f64(&mut self, header: AvpHeader, value: f64) -> &mut Self {
        self.octets(header, &value.to_be_bytes())
    }

    /// Time.
    pub fn time(&mut self, header: AvpHeader, value: Time) -> &mut Self {
        self.octets(header, &value.ntp().to_be_bytes())
    }

    /// Address of an IP address (family 1 or 2).
    pub fn ip_address(&mut self, header: AvpHeader, value: IpAddr) -> &mut Self {
        let start = self.begin(header);
        match value {
            IpAddr::V4(a) => {
                self.buf
                    .extend_from_slice(&crate::codes::address_family::IPV4.to_be_bytes());
                self.buf.extend_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                self.buf
                    .extend_from_slice(&crate::codes::address_family::IPV6.to_be_bytes());
                self.buf.extend_from_slice(&a.octets());
            }
        }
        self.end(start);
        self
    }

    /// Address of any family.
    pub fn address(&mut self, header: AvpHeader, value: Address<'_>) -> &mut Self {
        let start = self.begin(header);
        self.buf.extend_from_slice(&value.family.to_be_bytes());
        self.buf.extend_from_slice(value.octets);
        self.end(start);
        self
    }

    /// DiameterURI, in its canonical text form.
    pub fn uri(&mut self, header: AvpHeader, value: &DiameterUri<'_>) -> &mut Self {
        let start = self.begin(header);
        value.write_to(&mut self.buf);
        self.end(start);
        self
    }

    /// A Grouped AVP whose children `children` writes; its length is filled in afterwards.
    pub fn grouped(&mut self, header: AvpHeader, children: impl FnOnce(&mut Self)) -> &mut Self {
        let start = self.begin(header);
        children(self);
        self.end(start);
        self
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn rfc6733_section_4_4_1_example_lengths() {
        // RFC 6733 §4.4.1: Origin-Host "example.com" has length 19 and 1 octet of padding;
        // Session-Id "grump.example.com:33041;23432;893;0AF3B81" has length 49.
        let mut b = AvpBuf::new();
        b.grouped(AvpHeader::new(AvpCode(999_999)), |g| {
            g.identity(AvpHeader::mandatory(AvpCode::ORIGIN_HOST), "example.com");
            g.utf8(
                AvpHeader::mandatory(AvpCode::SESSION_ID),
                "grump.example.com:33041;23432;893;0AF3B81",
            );
        });
        let octets = b.finish().unwrap();
        let outer = AvpIter::new(&octets).next().unwrap().unwrap();
        let mut inner = outer.grouped();
        let host = inner.next().unwrap().unwrap();
        assert_eq!(host.raw().len(), 19);
        assert_eq!(host.offset(), 8);
        let session = inner.next().unwrap().unwrap();
        assert_eq!(session.raw().len(), 49);
        assert_eq!(
            session.offset(),
            28,
            "example figure: Session-Id header at offset 28"
        );
        assert!(inner.next().is_none());
        assert_eq!(octets.len() % 4, 0);
        // Padding is zero.
        assert_eq!(octets[27], 0);
    }

    #[test]
    fn malformed_headers_are_errors_then_stop() {
        // Length 7: below the header.
        let mut it = AvpIter::new(&[0, 0, 1, 8, 0x40, 0, 0, 7]);
        let e = it.next().unwrap().unwrap_err();
        assert_eq!(e.kind, AvpErrorKind::LengthTooShort);
        assert_eq!(e.code, AvpCode::ORIGIN_HOST);
        assert_eq!(e.length, 7);
        assert!(it.next().is_none());
        // Length past the end.
        let e = AvpIter::new(&[0, 0, 1, 8, 0x40, 0, 0, 40, 1, 2, 3, 4])
            .next()
            .unwrap()
            .unwrap_err();
        assert_eq!(e.kind, AvpErrorKind::Overrun);
        // V bit set but only 8 octets.
        let e = AvpIter::new(&[0, 0, 1, 8, 0xc0, 0, 0, 12])
            .next()
            .unwrap()
            .unwrap_err();
        assert_eq!(e.kind, AvpErrorKind::Truncated);
        // V bit set, length 8 < 12.
        let e = AvpIter::new(&[0, 0, 1, 8, 0xc0, 0, 0, 8, 0, 0, 0x28, 0xaf])
            .next()
            .unwrap()
            .unwrap_err();
        assert_eq!(e.kind, AvpErrorKind::LengthTooShort);
        assert_eq!(e.vendor_id, Some(10415));
        // Three octets of garbage.
        let e = AvpIter::new(&[1, 2, 3]).next().unwrap().unwrap_err();
        assert_eq!(e.kind, AvpErrorKind::Truncated);
    }

    #[test]
    fn vendor_avp_and_unpadded_last() {
        let mut b = AvpBuf::new();
        b.octets(
            AvpHeader::mandatory(AvpCode(405)).with_vendor(10415),
            b"key",
        );
        let octets = b.finish().unwrap();
        assert_eq!(
            &octets[..12],
            &[0, 0, 1, 0x95, 0xc0, 0, 0, 15, 0, 0, 0x28, 0xaf]
        );
        assert_eq!(octets.len(), 16);
        // Without its padding the last AVP still reads.
        let avp = AvpIter::new(&octets[..15]).next().unwrap().unwrap();
        assert_eq!(avp.vendor_id(), Some(10415));
        assert_eq!(avp.data(), b"key");
    }
}
