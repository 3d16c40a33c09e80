//! Option numbers and the option list with its wire form (RFC 7252 §3.1, §5.4, §12.2).

use alloc::vec::Vec;

use crate::CoapError;

/// An option number (RFC 7252 §5.4, §12.2). Open: any `u16` is a number; the named constants
/// are registered ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OptionNumber(pub u16);

impl OptionNumber {
    /// If-Match (RFC 7252 §5.10.8.1).
    pub const IF_MATCH: OptionNumber = OptionNumber(1);
    /// Uri-Host (RFC 7252 §5.10.1).
    pub const URI_HOST: OptionNumber = OptionNumber(3);
    /// ETag (RFC 7252 §5.10.6).
    pub const ETAG: OptionNumber = OptionNumber(4);
    /// If-None-Match (RFC 7252 §5.10.8.2).
    pub const IF_NONE_MATCH: OptionNumber = OptionNumber(5);
    /// Observe (RFC 7641 §2).
    pub const OBSERVE: OptionNumber = OptionNumber(6);
    /// Uri-Port (RFC 7252 §5.10.1).
    pub const URI_PORT: OptionNumber = OptionNumber(7);
    /// Location-Path (RFC 7252 §5.10.7).
    pub const LOCATION_PATH: OptionNumber = OptionNumber(8);
    /// OSCORE (RFC 8613 §2).
    pub const OSCORE: OptionNumber = OptionNumber(9);
    /// Uri-Path (RFC 7252 §5.10.1).
    pub const URI_PATH: OptionNumber = OptionNumber(11);
    /// Content-Format (RFC 7252 §5.10.3).
    pub const CONTENT_FORMAT: OptionNumber = OptionNumber(12);
    /// Max-Age (RFC 7252 §5.10.5).
    pub const MAX_AGE: OptionNumber = OptionNumber(14);
    /// Uri-Query (RFC 7252 §5.10.1).
    pub const URI_QUERY: OptionNumber = OptionNumber(15);
    /// Accept (RFC 7252 §5.10.4).
    pub const ACCEPT: OptionNumber = OptionNumber(17);
    /// Location-Query (RFC 7252 §5.10.7).
    pub const LOCATION_QUERY: OptionNumber = OptionNumber(20);
    /// Block2 (RFC 7959 §2.1).
    pub const BLOCK2: OptionNumber = OptionNumber(23);
    /// Block1 (RFC 7959 §2.1).
    pub const BLOCK1: OptionNumber = OptionNumber(27);
    /// Size2 (RFC 7959 §4).
    pub const SIZE2: OptionNumber = OptionNumber(28);
    /// Proxy-Uri (RFC 7252 §5.10.2).
    pub const PROXY_URI: OptionNumber = OptionNumber(35);
    /// Proxy-Scheme (RFC 7252 §5.10.2).
    pub const PROXY_SCHEME: OptionNumber = OptionNumber(39);
    /// Size1 (RFC 7252 §5.10.9).
    pub const SIZE1: OptionNumber = OptionNumber(60);
    /// Echo (RFC 9175 §2.2).
    pub const ECHO: OptionNumber = OptionNumber(252);
    /// No-Response (RFC 7967 §2).
    pub const NO_RESPONSE: OptionNumber = OptionNumber(258);
    /// Request-Tag (RFC 9175 §3.2).
    pub const REQUEST_TAG: OptionNumber = OptionNumber(292);

    /// Critical: a recipient that does not understand it must reject the message (odd
    /// numbers, RFC 7252 §5.4.6).
    pub const fn is_critical(self) -> bool {
        self.0 & 1 == 1
    }

    /// Unsafe to forward by a proxy that does not understand it (bit 1, RFC 7252 §5.4.6).
    pub const fn is_unsafe(self) -> bool {
        self.0 & 2 == 2
    }

    /// Not part of the cache key (bits 2–4 all set, RFC 7252 §5.4.6); only for safe options.
    pub const fn is_no_cache_key(self) -> bool {
        self.0 & 0x1e == 0x1c
    }
}

/// The largest option value the length field can express: nibble 14 + 2 octets (RFC 7252
/// §3.1).
pub(crate) const MAX_VALUE_LEN: usize = 269 + 0xffff;

/// The options of one message, kept in ascending number order; repeated options keep the
/// order in which they were added (RFC 7252 §5.4.5).
///
/// All values live in one buffer, so a decoded message costs two allocations for its
/// options however many it has.
#[derive(Clone, Default)]
pub struct Options {
    entries: Vec<Entry>,
    data: Vec<u8>,
}

#[derive(Clone, Copy)]
struct Entry {
    number: OptionNumber,
    start: usize,
    len: usize,
}

impl PartialEq for Options {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Options {}

impl core::hash::Hash for Options {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        state.write_usize(self.len());
        for (number, value) in self.iter() {
            number.hash(state);
            value.hash(state);
        }
    }
}

impl core::fmt::Debug for Options {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list()
            .entries(self.iter().map(|(n, v)| (n.0, v)))
            .finish()
    }
}

impl Options {
    /// No options.
    pub const fn new() -> Options {
        Options {
            entries: Vec::new(),
            data: Vec::new(),
        }
    }

    /// No options, with room for `options` options holding `value_octets` octets of values
    /// in all (a decoder that knows the sizes allocates once).
    pub fn with_capacity(options: usize, value_octets: usize) -> Options {
        Options {
            entries: Vec::with_capacity(options),
            data: Vec::with_capacity(value_octets),
        }
    }

    /// Adds an option after every option with a number not above `number`.
    ///
    /// # Errors
    /// [`CoapError::OptionTooLong`] for a value over 65804 octets.
    pub fn push(&mut self, number: OptionNumber, value: &[u8]) -> Result<(), CoapError> {
        if value.len() > MAX_VALUE_LEN {
            return Err(CoapError::OptionTooLong);
        }
        let at = self.entries.partition_point(|e| e.number <= number);
        let entry = Entry {
            number,
            start: self.data.len(),
            len: value.len(),
        };
        self.data.extend_from_slice(value);
        self.entries.insert(at, entry);
        Ok(())
    }

    /// Replaces every option `number` with one holding `value`.
    ///
    /// # Errors
    /// [`CoapError::OptionTooLong`] for a value over 65804 octets.
    pub fn set(&mut self, number: OptionNumber, value: &[u8]) -> Result<(), CoapError> {
        if value.len() > MAX_VALUE_LEN {
            return Err(CoapError::OptionTooLong);
        }
        self.remove(number);
        self.push(number, value)
    }

    fn value(&self, entry: &Entry) -> &[u8] {
        &self.data[entry.start..entry.start + entry.len]
    }

    /// The value of the first option `number`.
    pub fn get(&self, number: OptionNumber) -> Option<&[u8]> {
        self.get_all(number).next()
    }

    /// The values of every option `number`, in order.
    pub fn get_all(&self, number: OptionNumber) -> impl Iterator<Item = &[u8]> {
        self.entries
            .iter()
            .filter(move |e| e.number == number)
            .map(|e| self.value(e))
    }

    /// Is there at least one option `number`?
    pub fn contains(&self, number: OptionNumber) -> bool {
        self.entries.iter().any(|e| e.number == number)
    }

    /// Removes every option `number`; returns how many there were.
    pub fn remove(&mut self, number: OptionNumber) -> usize {
        let before = self.entries.len();
        self.retain(|n| n != number);
        before - self.entries.len()
    }

    /// Keeps only the options whose number `keep` accepts.
    pub fn retain(&mut self, mut keep: impl FnMut(OptionNumber) -> bool) {
        if self.entries.iter().all(|e| keep(e.number)) {
            return;
        }
        let mut kept = Options::new();
        for (number, value) in self.iter().filter(|(n, _)| keep(*n)) {
            kept.entries.push(Entry {
                number,
                start: kept.data.len(),
                len: value.len(),
            });
            kept.data.extend_from_slice(value);
        }
        *self = kept;
    }

    /// Every option in wire order.
    pub fn iter(&self) -> impl Iterator<Item = (OptionNumber, &[u8])> + Clone {
        self.entries.iter().map(|e| (e.number, self.value(e)))
    }

    /// The number of options.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No options at all?
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends the options and then, if `payload` is not empty, the payload marker and the
    /// payload (RFC 7252 §3, §3.1). This is also the tail of an OSCORE plaintext (RFC 8613
    /// §5.3).
    pub fn encode_with_payload(&self, payload: &[u8], out: &mut Vec<u8>) {
        self.encode_subset_with_payload(|_| true, payload, out);
    }

    /// As [`Self::encode_with_payload`], for only the options whose number `keep` accepts
    /// (OSCORE writes its inner options this way, RFC 8613 §4.1, without copying them out).
    pub fn encode_subset_with_payload(
        &self,
        keep: impl Fn(OptionNumber) -> bool,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) {
        let mut last = 0u16;
        for (number, value) in self.iter().filter(|(n, _)| keep(*n)) {
            // Sorted, so the delta never underflows.
            let (delta, delta_ext) = nibble(usize::from(number.0 - last));
            let (len, len_ext) = nibble(value.len());
            out.push((delta << 4) | len);
            out.extend_from_slice(&delta_ext.0[..delta_ext.1]);
            out.extend_from_slice(&len_ext.0[..len_ext.1]);
            out.extend_from_slice(value);
            last = number.0;
        }
        if !payload.is_empty() {
            out.push(0xff);
            out.extend_from_slice(payload);
        }
    }

    /// Reads the options in `buffer[from..]` up to the end or to a payload marker **in
    /// place**: the returned options keep `buffer` as their value storage (no copy, no
    /// second allocation), with only the options whose number `keep` accepts. Returns them
    /// with the payload, split off `buffer` (no allocation when there is none).
    ///
    /// For a decoder that has just decrypted a plaintext into a buffer of its own (OSCORE,
    /// RFC 8613 §5.3). The octets of `buffer` outside the kept values stay in it unused.
    ///
    /// # Errors
    /// As [`Self::decode_with_payload`] for the same octets; never panics (a `from` past
    /// the end reads no options).
    pub fn decode_in_place(
        buffer: Vec<u8>,
        from: usize,
        keep: impl Fn(OptionNumber) -> bool,
    ) -> Result<(Options, Vec<u8>), CoapError> {
        // A typical message has a few options: one allocation, no growth on the way.
        let mut entries = Vec::with_capacity(4);
        let start = from.min(buffer.len());
        let mut rest = &buffer[start..];
        let mut number: u32 = 0;
        let mut payload_start = buffer.len();
        while let Some((&first, tail)) = rest.split_first() {
            if first == 0xff {
                if tail.is_empty() {
                    return Err(CoapError::EmptyPayload);
                }
                payload_start = buffer.len() - tail.len();
                break;
            }
            rest = tail;
            let delta = read_extended(first >> 4, &mut rest)?;
            let len = read_extended(first & 0x0f, &mut rest)?;
            number += delta;
            let number = u16::try_from(number).map_err(|_| CoapError::OptionNumber)?;
            let (value, tail) = rest
                .split_at_checked(len as usize)
                .ok_or(CoapError::Truncated)?;
            if keep(OptionNumber(number)) {
                // Decoded in order, so appending keeps the list sorted.
                entries.push(Entry {
                    number: OptionNumber(number),
                    start: buffer.len() - rest.len(),
                    len: value.len(),
                });
            }
            rest = tail;
        }
        let mut data = buffer;
        let payload = if payload_start < data.len() {
            data.split_off(payload_start)
        } else {
            Vec::new()
        };
        Ok((Options { entries, data }, payload))
    }

    /// Reads options up to the end or to a payload marker, and returns them with the payload
    /// (empty when there is none).
    ///
    /// # Errors
    /// [`CoapError::Truncated`], [`CoapError::ReservedNibble`], [`CoapError::OptionNumber`]
    /// or [`CoapError::EmptyPayload`]; never panics.
    pub fn decode_with_payload(mut rest: &[u8]) -> Result<(Options, &[u8]), CoapError> {
        let mut options = Options::new();
        options.data.reserve(rest.len());
        let mut number: u32 = 0;
        while let Some((&first, tail)) = rest.split_first() {
            if first == 0xff {
                if tail.is_empty() {
                    return Err(CoapError::EmptyPayload);
                }
                return Ok((options, tail));
            }
            rest = tail;
            let delta = read_extended(first >> 4, &mut rest)?;
            let len = read_extended(first & 0x0f, &mut rest)?;
            number += delta;
            let number = u16::try_from(number).map_err(|_| CoapError::OptionNumber)?;
            let (value, tail) = rest
                .split_at_checked(len as usize)
                .ok_or(CoapError::Truncated)?;
            // Decoded in order, so appending keeps the list sorted.
            options.entries.push(Entry {
                number: OptionNumber(number),
                start: options.data.len(),
                len: value.len(),
            });
            options.data.extend_from_slice(value);
            rest = tail;
        }
        Ok((options, &[]))
    }
}

/// The nibble and extended octets for a delta or length (RFC 7252 §3.1).
pub(crate) fn nibble(value: usize) -> (u8, ([u8; 2], usize)) {
    match value {
        0..=12 => (value as u8, ([0, 0], 0)),
        13..=268 => (13, ([(value - 13) as u8, 0], 1)),
        _ => (14, (((value - 269) as u16).to_be_bytes(), 2)),
    }
}

pub(crate) fn read_extended(nibble: u8, rest: &mut &[u8]) -> Result<u32, CoapError> {
    match nibble {
        0..=12 => Ok(u32::from(nibble)),
        13 => {
            let (&b, tail) = rest.split_first().ok_or(CoapError::Truncated)?;
            *rest = tail;
            Ok(u32::from(b) + 13)
        }
        14 => {
            let (b, tail) = rest.split_at_checked(2).ok_or(CoapError::Truncated)?;
            *rest = tail;
            Ok(u32::from(u16::from_be_bytes([b[0], b[1]])) + 269)
        }
        _ => Err(CoapError::ReservedNibble),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn option_bits() {
        assert!(OptionNumber::URI_PATH.is_critical() && OptionNumber::URI_PATH.is_unsafe());
        assert!(!OptionNumber::CONTENT_FORMAT.is_critical());
        assert!(OptionNumber::SIZE1.is_no_cache_key());
        assert!(!OptionNumber::ETAG.is_no_cache_key());
    }

    #[test]
    fn repeated_options_keep_their_order() {
        let mut o = Options::new();
        o.push(OptionNumber::URI_QUERY, b"b").unwrap_or_default();
        o.push(OptionNumber::URI_PATH, b"x").unwrap_or_default();
        o.push(OptionNumber::URI_PATH, b"y").unwrap_or_default();
        let order: Vec<_> = o.iter().map(|(n, v)| (n.0, v.to_vec())).collect();
        assert_eq!(
            order,
            [
                (11, b"x".to_vec()),
                (11, b"y".to_vec()),
                (15, b"b".to_vec())
            ]
        );
        assert_eq!(o.remove(OptionNumber::URI_PATH), 2);
        assert_eq!(
            o.push(OptionNumber::ETAG, &alloc::vec![0; MAX_VALUE_LEN + 1]),
            Err(CoapError::OptionTooLong)
        );
    }

    #[test]
    fn decode_in_place_agrees_with_decode() {
        let mut o = Options::new();
        o.push(OptionNumber::URI_PATH, b"a").unwrap_or_default();
        o.push(OptionNumber(300), &[9; 300]).unwrap_or_default();
        o.push(OptionNumber::URI_HOST, b"h").unwrap_or_default();
        let mut encoded = alloc::vec![0xaa, 0xbb];
        o.encode_with_payload(b"payload", &mut encoded);
        let (all, payload) =
            Options::decode_in_place(encoded.clone(), 2, |_| true).unwrap_or_default();
        assert_eq!(all, o);
        assert_eq!(payload, b"payload");
        let (some, _) =
            Options::decode_in_place(encoded.clone(), 2, |n| n != OptionNumber::URI_HOST)
                .unwrap_or_default();
        assert_eq!(some.len(), 2);
        assert_eq!(some.get(OptionNumber::URI_HOST), None);
        let (none, payload) =
            Options::decode_in_place(alloc::vec![1, 2], 9, |_| true).unwrap_or_default();
        assert!(none.is_empty() && payload.is_empty());
        for cut in 2..encoded.len() {
            assert_eq!(
                Options::decode_in_place(encoded[..cut].to_vec(), 2, |_| true).err(),
                Options::decode_with_payload(&encoded[2..cut]).err(),
                "{cut}"
            );
        }
    }

    #[test]
    fn extended_boundaries_round_trip() {
        for len in [0usize, 12, 13, 268, 269, 270, 1000, MAX_VALUE_LEN] {
            for number in [0u16, 12, 13, 268, 269, 65535] {
                let mut o = Options::new();
                o.push(OptionNumber(number), &alloc::vec![7; len])
                    .unwrap_or_default();
                let mut out = Vec::new();
                o.encode_with_payload(b"p", &mut out);
                let (back, payload) = Options::decode_with_payload(&out).unwrap_or_default();
                assert_eq!((back, payload), (o, &b"p"[..]), "len {len} number {number}");
            }
        }
    }
}
