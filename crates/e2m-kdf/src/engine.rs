//! HMAC-SHA-256 (RFC 2104, FIPS 198-1) specialised for the TS 33.220 KDF.
//!
//! Why not the `hmac` crate: a KDF input S is short (about 40 octets for every 3GPP
//! derivation), so HMAC costs four SHA-256 compressions and the generic `Mac` plumbing
//! (block buffers, trait objects of the `digest` stack, re-keying) is a large share of the
//! time. Here the compression function comes from `sha2` (`compress256`, which picks SHA-NI
//! or AVX2 at run time); this module only feeds it blocks. It is proven equal to the `hmac`
//! crate by the RFC 4231 vectors and by a differential property test (tests/differential.rs).

use sha2::block_api::compress256;
use zeroize::Zeroize;

use crate::{Fc, KdfError, KdfOutput};

/// SHA-256 initial hash value H(0) (FIPS 180-4 §5.3.3).
const IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

const BLOCK: usize = 64;

// Zeroization note: buffers are wiped as slices (`buf.as_mut_slice().zeroize()`), which
// zeroize 1.9 implements as one bulk fill behind an optimisation barrier; wiping an array
// directly goes element by element with a volatile write each, which cost more than a
// SHA-256 compression per derivation in `cargo bench --bench kdf`.

/// SHA-256 over a stream of pieces, from a given chaining state.
struct Sha256Stream {
    state: [u32; 8],
    block: [u8; BLOCK],
    fill: usize,
    total: u64,
}

impl Sha256Stream {
    /// Resumes hashing from `state`, which already absorbed `total` octets (a whole number
    /// of blocks).
    fn resume(state: [u32; 8], total: u64) -> Self {
        Sha256Stream {
            state,
            block: [0; BLOCK],
            fill: 0,
            total,
        }
    }

    fn update(&mut self, mut data: &[u8]) {
        self.total = self.total.wrapping_add(data.len() as u64);
        if self.fill > 0 {
            let take = (BLOCK - self.fill).min(data.len());
            let (head, rest) = data.split_at(take);
            self.block[self.fill..self.fill + take].copy_from_slice(head);
            self.fill += take;
            data = rest;
            if self.fill < BLOCK {
                return;
            }
            compress256(&mut self.state, core::slice::from_ref(&self.block));
            self.fill = 0;
        }
        let (blocks, rest) = data.as_chunks::<BLOCK>();
        if !blocks.is_empty() {
            compress256(&mut self.state, blocks);
        }
        self.block[..rest.len()].copy_from_slice(rest);
        self.fill = rest.len();
    }

    /// FIPS 180-4 §5.1.1 padding, then the digest.
    fn finish(&mut self) -> [u8; 32] {
        let bit_len = self.total.wrapping_mul(8);
        self.block[self.fill] = 0x80;
        self.block[self.fill + 1..].fill(0);
        if self.fill + 1 > BLOCK - 8 {
            compress256(&mut self.state, core::slice::from_ref(&self.block));
            self.block.fill(0);
        }
        self.block[BLOCK - 8..].copy_from_slice(&bit_len.to_be_bytes());
        compress256(&mut self.state, core::slice::from_ref(&self.block));
        state_bytes(&self.state)
    }
}

impl Drop for Sha256Stream {
    fn drop(&mut self) {
        // The chaining state derives from the key. The buffer holds only message octets
        // (the KDF's parameters, public in every 3GPP derivation) except when hashing an
        // over-long key, where `KdfKey::new` wipes it explicitly.
        self.state.as_mut_slice().zeroize();
    }
}

fn state_bytes(state: &[u32; 8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// A KDF key with its HMAC-SHA-256 inner and outer states precomputed.
///
/// Building it costs two SHA-256 compressions (three for a key over 64 octets); each
/// [`derive`](Self::derive) then costs two compressions for an S of up to 55 octets instead
/// of four. This is the API for an EMKS that derives `e2m_key` for many EMSEs from one
/// `e2m_int_key`. The states are secret (they key the HMAC) and are zeroized on drop.
///
/// ```
/// use e2m_kdf::{Fc, KdfKey, kdf};
/// let key = KdfKey::new(b"a key of any length");
/// let a = key.derive(Fc::KASME, &[b"\x02\x48\x30", b"\x57\xe6\x73\x24\x5c\x0d"])?;
/// let b = kdf(b"a key of any length", Fc::KASME, &[b"\x02\x48\x30", b"\x57\xe6\x73\x24\x5c\x0d"])?;
/// assert!(a == b);
/// # Ok::<(), e2m_kdf::KdfError>(())
/// ```
pub struct KdfKey {
    inner: [u32; 8],
    outer: [u32; 8],
}

impl KdfKey {
    /// Precomputes the HMAC states of `key` (RFC 2104: a key over one block is hashed first).
    pub fn new(key: &[u8]) -> Self {
        // block = K0 ^ ipad, where K0 is the key (or its digest) zero-padded to one block.
        let mut block = [0x36u8; BLOCK];
        if key.len() > BLOCK {
            let mut hasher = Sha256Stream::resume(IV, 0);
            hasher.update(key);
            // The stream's buffer held key octets: wipe it too, not only its state.
            let mut digest = hasher.finish();
            hasher.block.as_mut_slice().zeroize();
            for (b, k) in block.iter_mut().zip(&digest) {
                *b ^= k;
            }
            digest.as_mut_slice().zeroize();
        } else {
            for (b, k) in block.iter_mut().zip(key) {
                *b ^= k;
            }
        }
        let mut inner = IV;
        compress256(&mut inner, core::slice::from_ref(&block));
        // K0 ^ opad = (K0 ^ ipad) ^ (ipad ^ opad).
        for b in block.iter_mut() {
            *b ^= 0x36 ^ 0x5c;
        }
        let mut outer = IV;
        compress256(&mut outer, core::slice::from_ref(&block));
        block.as_mut_slice().zeroize();
        KdfKey { inner, outer }
    }

    /// HMAC-SHA-256 of the pieces `message`, concatenated, under this key.
    ///
    /// The raw MAC, for testing against RFC 4231 and for users that build S themselves.
    pub fn mac(&self, message: &[&[u8]]) -> KdfOutput {
        let mut inner = Sha256Stream::resume(self.inner, BLOCK as u64);
        for piece in message {
            inner.update(piece);
        }
        let digest = inner.finish();
        self.finish(digest)
    }

    /// The TS 33.220 B.2 KDF: `HMAC-SHA-256(Key, FC || P0 || L0 || … || Pn || Ln)`.
    ///
    /// Every parameter is followed by its length as two octets, big-endian (B.2.1.1); an
    /// empty parameter contributes `L = 0x0000` and keeps its place in the list. The pieces
    /// are fed into the hash in turn; S is never assembled in a buffer.
    ///
    /// # Errors
    /// [`KdfError::ParameterTooLong`] if a parameter exceeds 65535 octets; nothing is
    /// hashed then.
    pub fn derive(&self, fc: Fc, params: &[&[u8]]) -> Result<KdfOutput, KdfError> {
        for (index, p) in params.iter().enumerate() {
            if u16::try_from(p.len()).is_err() {
                return Err(KdfError::ParameterTooLong {
                    index,
                    len: p.len(),
                });
            }
        }
        Ok(self.derive_checked(fc, params))
    }

    /// [`derive`](Self::derive) for parameters whose lengths the caller has checked (or
    /// that are fixed by their types) to be at most 65535 octets.
    pub(crate) fn derive_checked(&self, fc: Fc, params: &[&[u8]]) -> KdfOutput {
        let s_len = fc.as_bytes().len() + params.iter().map(|p| p.len() + 2).sum::<usize>();
        if s_len <= BLOCK - 9 {
            return self.derive_one_block(fc, params, s_len);
        }
        let mut inner = Sha256Stream::resume(self.inner, BLOCK as u64);
        inner.update(fc.as_bytes());
        for p in params {
            inner.update(p);
            // Lengths are at most 65535 (checked by the caller), so the cast is exact.
            inner.update(&(p.len() as u16).to_be_bytes());
        }
        let digest = inner.finish();
        self.finish(digest)
    }

    /// The common case: S and its padding fit one block (S ≤ 55 octets, every 3GPP
    /// derivation of this crate), so the inner hash is one compression of a block laid out
    /// directly, with no streaming buffer.
    fn derive_one_block(&self, fc: Fc, params: &[&[u8]], s_len: usize) -> KdfOutput {
        let mut block = [0u8; BLOCK];
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            block[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        put(fc.as_bytes());
        for p in params {
            put(p);
            put(&(p.len() as u16).to_be_bytes());
        }
        // FIPS 180-4 §5.1.1: 0x80, zeros, then the bit length of key block + S.
        block[s_len] = 0x80;
        block[BLOCK - 8..].copy_from_slice(&(((BLOCK + s_len) * 8) as u64).to_be_bytes());
        let mut state = self.inner;
        compress256(&mut state, core::slice::from_ref(&block));
        let out = self.finish(state_bytes(&state));
        state.as_mut_slice().zeroize();
        out
    }

    /// The outer hash over the inner digest: one block, built directly.
    fn finish(&self, mut digest: [u8; 32]) -> KdfOutput {
        let mut block = [0u8; BLOCK];
        block[..32].copy_from_slice(&digest);
        block[32] = 0x80;
        // Outer message = one key block (64 octets) + the 32-octet inner digest.
        block[BLOCK - 8..].copy_from_slice(&(((BLOCK + 32) * 8) as u64).to_be_bytes());
        let mut state = self.outer;
        compress256(&mut state, core::slice::from_ref(&block));
        let out = KdfOutput::from_array(state_bytes(&state));
        digest.as_mut_slice().zeroize();
        block[..32].zeroize();
        state.as_mut_slice().zeroize();
        out
    }
}

impl Drop for KdfKey {
    fn drop(&mut self) {
        self.inner.as_mut_slice().zeroize();
        self.outer.as_mut_slice().zeroize();
    }
}

impl zeroize::ZeroizeOnDrop for KdfKey {}

/// The TS 33.220 B.2 KDF in one call: [`KdfKey::new`] then [`KdfKey::derive`].
///
/// ```
/// use e2m_kdf::{Fc, kdf};
/// // TS 33.401 A.2 with the TS 35.208 test set 1 CK||IK (see tests/data/kasme.txt).
/// let ck_ik = hex::decode("b40ba9a3c58b2a05bbf0d987b21bf8cbf769bcd751044604127672711c6d3441").unwrap();
/// let out = kdf(&ck_ik, Fc::KASME, &[&[0x02, 0x48, 0x30], &[0x57, 0xe6, 0x73, 0x24, 0x5c, 0x0d]])?;
/// assert_eq!(&out.expose_secret()[..4], &[0x23, 0x8e, 0x45, 0x7e]);
/// # Ok::<(), e2m_kdf::KdfError>(())
/// ```
///
/// # Errors
/// [`KdfError::ParameterTooLong`] if a parameter exceeds 65535 octets.
pub fn kdf(key: &[u8], fc: Fc, params: &[&[u8]]) -> Result<KdfOutput, KdfError> {
    KdfKey::new(key).derive(fc, params)
}
