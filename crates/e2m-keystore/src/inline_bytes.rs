//! Short byte strings kept in place: the key of the identity map's large inner maps.
//!
//! Why: with a boxed key, resolving an application identity reads the map's slot and then
//! follows its pointer to compare the octets, two dependent cache misses when the map is
//! far larger than the caches (1,000,000 identities: the `emks` benchmark). Application
//! identities are mostly short (`sensor-17@iot.example.com` is 25 octets), so up to
//! [`InlineBytes::INLINE`] octets live in the slot itself and the comparison reads the
//! line the probe already brought in; longer ones are boxed as before. It also saves the
//! allocation's header and rounding (about 24 octets per identity).

use core::borrow::Borrow;
use core::hash::{Hash, Hasher};

/// Octets, inline up to [`INLINE`](Self::INLINE) of them, boxed beyond. Hashes, compares
/// and borrows exactly as the `[u8]` it holds, so a map keyed by it is searched with a
/// plain `&[u8]`.
#[derive(Clone)]
pub(crate) enum InlineBytes {
    /// `len` octets at the start of `octets`; the rest are zero.
    Inline { len: u8, octets: [u8; Self::INLINE] },
    /// More than `INLINE` octets.
    Boxed(Box<[u8]>),
}

impl InlineBytes {
    /// Octets kept in place: 30 makes the whole value 32 octets (the boxed form needs 16
    /// and eight-octet alignment), so a slot with the packed IMSI beside it is 40, less
    /// than a boxed key's 24 plus its allocation (48 for a 25-octet identity).
    pub(crate) const INLINE: usize = 30;

    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            // `len <= INLINE` by construction; `get` keeps this total anyway.
            InlineBytes::Inline { len, octets } => {
                octets.get(..usize::from(*len)).unwrap_or(octets)
            }
            InlineBytes::Boxed(b) => b,
        }
    }
}

impl From<&[u8]> for InlineBytes {
    fn from(bytes: &[u8]) -> Self {
        let mut octets = [0; Self::INLINE];
        match octets.get_mut(..bytes.len()) {
            Some(prefix) => {
                prefix.copy_from_slice(bytes);
                InlineBytes::Inline {
                    // Fits: bytes.len() <= INLINE < 256.
                    len: bytes.len() as u8,
                    octets,
                }
            }
            None => InlineBytes::Boxed(bytes.into()),
        }
    }
}

impl Borrow<[u8]> for InlineBytes {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

/// As `[u8]` hashes, which `Borrow` requires: a map searched with `&[u8]` must find it.
impl Hash for InlineBytes {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl PartialEq for InlineBytes {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for InlineBytes {}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly on a broken fixture")]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn thirty_two_octets_and_both_forms_round_trip() {
        assert_eq!(core::mem::size_of::<InlineBytes>(), 32);
        for len in [0, 1, 25, InlineBytes::INLINE, InlineBytes::INLINE + 1, 300] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + 1) as u8).collect();
            let held = InlineBytes::from(bytes.as_slice());
            assert_eq!(held.as_bytes(), bytes.as_slice());
            assert_eq!(
                matches!(held, InlineBytes::Inline { .. }),
                len <= InlineBytes::INLINE
            );
        }
    }

    #[test]
    fn a_map_is_searched_with_plain_octets_on_either_side_of_the_limit() {
        let mut map: HashMap<InlineBytes, u32> = HashMap::new();
        let names: Vec<Vec<u8>> = (20..40).map(|n| vec![b'a' + (n % 26) as u8; n]).collect();
        for (i, n) in names.iter().enumerate() {
            map.insert(n.as_slice().into(), i as u32);
        }
        for (i, n) in names.iter().enumerate() {
            assert_eq!(map.get(n.as_slice()), Some(&(i as u32)));
        }
        // A prefix with the same zero padding is another key, not a match.
        assert_eq!(map.get(&names[0][..19]), None);
        assert_eq!(map.get(&[][..]), None);
    }
}
