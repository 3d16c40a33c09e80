//! HMAC-SHA-256 (RFC 2104, FIPS 198-1) specialised for the TS 33.220 KDF.
//!
//! Why not the `hmac` crate: a KDF input S is short (about 40 octets for every 3GPP
//! derivation), so HMAC costs four SHA-256 compressions and the generic `Mac` plumbing
//! (block buffers, trait objects of the `digest` stack, re-keying) is a large share of the
//! time. Here the compression function comes from `sha2` (`compress256`: SHA-NI, else the
//! portable code, picked by a CPUID result cached in a static and tested at each call);
//! this module only feeds it blocks. It is proven equal to the `hmac` crate by the RFC 4231
//! vectors and by differential property tests (tests/differential.rs).
//!
//! Where the time goes besides the compressions (issue #12; `cargo bench --bench kdf` and
//! `examples/kdf_count.rs` under callgrind):
//! * A block assembled from narrow stores (S: one store per piece) and read at once by the
//!   compression's 16-octet loads cannot be store-forwarded: the loads wait until the
//!   stores have retired and reached the cache, which serialises a derivation behind the
//!   previous one's last compression. Every block here therefore ends in full-width stores
//!   (whole-block copies and XORs, 16-octet digest lanes, a constant padding template),
//!   except S itself: [`kdf`] lays S out before its key block, so the stores have retired
//!   by the time they are read, and [`KdfInput`] lays it out once, ahead of the derivation.
//!   [`KdfKey::derive`] still pays that wait, as S is known only when it is called.
//! * A derivation is two dependent hashes (the outer one hashes the inner digest), and the
//!   digest goes through memory between them (`compress256` returns words, takes octets).
//!   Independent derivations overlap in the CPU, so the batches ([`KdfKey::derive_inputs`],
//!   [`KdfInput::derive_for_keys`]) run each compression step for all of them in turn.
//!   `sha2` has no multi-buffer entry point (its SHA-NI code is private, behind
//!   `compress256`), and interleaving the SHA-NI instructions of two blocks here would take
//!   `unsafe` (`#[target_feature]` dispatch, raw-pointer loads), which this crate forbids.
//! * The CPU-feature test in `compress256` is three instructions per call (load, compare,
//!   predicted branch) beside about 190 of a SHA-NI block: two one-block calls measure the
//!   same as one two-block call (the `floor/` rows).
//! * Wipes are bulk stores (a few per derivation); only buffers that held key-derived
//!   octets are wiped, S (public parameters) is not.

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

/// The HMAC pads (RFC 2104 §2).
const IPAD: u8 = 0x36;
const OPAD: u8 = 0x5c;

/// K0 ⊕ ipad (RFC 2104 §2), K0 being `key` (at most one block) zero-padded to one block.
///
/// Written as a copy into a zeroed block and one XOR over the whole block, so that the
/// block ends in full-width stores that the compression's 16-octet loads can forward from
/// (a block assembled from narrower stores costs a store-forwarding stall, see
/// [`lay_out_s`]).
fn key_block(key: &[u8]) -> [u8; BLOCK] {
    let mut block = [0u8; BLOCK];
    block[..key.len()].copy_from_slice(key);
    for b in &mut block {
        *b ^= IPAD;
    }
    block
}

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

    /// FIPS 180-4 §5.1.1 padding, then the final chaining state (the digest as words).
    fn finish_state(&mut self) -> [u32; 8] {
        let bit_len = self.total.wrapping_mul(8);
        self.block[self.fill] = 0x80;
        self.block[self.fill + 1..].fill(0);
        if self.fill + 1 > BLOCK - 8 {
            compress256(&mut self.state, core::slice::from_ref(&self.block));
            self.block.fill(0);
        }
        self.block[BLOCK - 8..].copy_from_slice(&bit_len.to_be_bytes());
        compress256(&mut self.state, core::slice::from_ref(&self.block));
        self.state
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

#[inline(always)]
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
/// `e2m_int_key`, or that keeps one beside each stored `e2m_int_key`. With S laid out in
/// advance in a [`KdfInput`], [`derive_input`](Self::derive_input) is the fastest single
/// derivation, and [`derive_inputs`](Self::derive_inputs) runs several interleaved. The
/// states are secret (they key the HMAC) and are zeroized on drop.
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
        if key.len() <= BLOCK {
            return Self::from_block_key(key);
        }
        let mut hasher = Sha256Stream::resume(IV, 0);
        hasher.update(key);
        let mut words = hasher.finish_state();
        // The stream's buffer held key octets: wipe it too, not only its state.
        hasher.block.as_mut_slice().zeroize();
        let mut digest = state_bytes(&words);
        words.as_mut_slice().zeroize();
        let this = Self::from_block_key(&digest);
        digest.as_mut_slice().zeroize();
        this
    }

    /// The states of a key of at most one block (K0 = the key, zero-padded).
    fn from_block_key(key: &[u8]) -> Self {
        let mut block = key_block(key);
        let mut inner = IV;
        compress256(&mut inner, core::slice::from_ref(&block));
        for b in &mut block {
            *b ^= IPAD ^ OPAD;
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
        let mut digest = inner.finish_state();
        self.outer_hash(&mut digest)
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
        let s_len = s_len(fc, params)?;
        Ok(self.derive_sized(fc, params, s_len))
    }

    /// The KDF for an S laid out in advance ([`KdfInput`]): two SHA-256 compressions.
    ///
    /// Equal to [`derive`](Self::derive) with the FC and parameters the input was built
    /// from; nothing can fail, as the input was checked when it was built.
    pub fn derive_input(&self, input: &KdfInput) -> KdfOutput {
        let [out] = hmac_interleaved([self], [input]);
        out
    }

    /// Several inputs under this key (one key, many S: e.g. one `e2m_int_key`, many
    /// EMSE_Ids), with the compressions of the `N` derivations interleaved.
    ///
    /// `out[i]` is `self.derive_input(inputs[i])`.
    ///
    /// ```
    /// use e2m_kdf::{Fc, KdfInput, KdfKey};
    /// let fc = Fc::E2M_KEY_PROVISIONAL;
    /// let a = KdfInput::new(fc, &[b"emse-a.example.com"])?;
    /// let b = KdfInput::new(fc, &[b"emse-b.example.com"])?;
    /// let key = KdfKey::new(&[7; 32]);
    /// let [for_a, for_b] = key.derive_inputs([&a, &b]);
    /// assert!(for_a == key.derive(fc, &[b"emse-a.example.com"])?);
    /// assert!(for_b == key.derive(fc, &[b"emse-b.example.com"])?);
    /// # Ok::<(), e2m_kdf::KdfError>(())
    /// ```
    pub fn derive_inputs<const N: usize>(&self, inputs: [&KdfInput; N]) -> [KdfOutput; N] {
        hmac_interleaved([self; N], inputs)
    }

    /// The derivation, once S is known to be `s_len` octets with every Li in range.
    fn derive_sized(&self, fc: Fc, params: &[&[u8]], s_len: usize) -> KdfOutput {
        let mut inner = self.inner;
        if s_len <= MAX_ONE_BLOCK_S {
            // The common case (every 3GPP derivation of this crate): S and its padding fit
            // one block, laid out directly, so the inner hash is a single compression.
            let mut block = [0u8; BLOCK];
            lay_out_s(&mut block, fc, params, s_len);
            compress256(&mut inner, core::slice::from_ref(&block));
        } else {
            let mut stream = Sha256Stream::resume(inner, BLOCK as u64);
            stream.update(fc.as_bytes());
            for p in params {
                stream.update(p);
                // Lengths are at most 65535 (checked by the caller), so the cast is exact.
                stream.update(&(p.len() as u16).to_be_bytes());
            }
            inner = stream.finish_state();
        }
        self.outer_hash(&mut inner)
    }

    /// The outer hash over the inner digest `inner` (one block, built directly from the
    /// state words), which it wipes.
    fn outer_hash(&self, inner: &mut [u32; 8]) -> KdfOutput {
        let mut block = digest_block(inner);
        inner.as_mut_slice().zeroize();
        let mut state = self.outer;
        compress256(&mut state, core::slice::from_ref(&block));
        // The block held the inner digest; the rest of it is the constant padding.
        block[..32].zeroize();
        output(&mut state)
    }
}

/// The longest S whose inner hash is one compression after the key block: the block also
/// holds the 0x80 octet and the 8-octet bit length (FIPS 180-4 §5.1.1).
const MAX_ONE_BLOCK_S: usize = BLOCK - 9;

/// The outer hash's only block: 32 octets of inner digest (filled in per derivation), then
/// the FIPS 180-4 §5.1.1 padding of a 96-octet message (the key block and the digest).
const OUTER_BLOCK: [u8; BLOCK] = {
    let mut block = [0u8; BLOCK];
    block[32] = 0x80;
    let bits = ((BLOCK + 32) * 8) as u64;
    let len = bits.to_be_bytes();
    let mut i = 0;
    while i < 8 {
        block[BLOCK - 8 + i] = len[i];
        i += 1;
    }
    block
};

/// Writes S = FC || P0 || L0 || … (TS 33.220 B.2.1.1; `s_len` octets, every Li in range)
/// at the start of `out` (zeroed, whole blocks, at least `s_len + 9` octets), then the
/// FIPS 180-4 §5.1.1 padding of a message made of one key block and S: 0x80, zeros, and
/// the bit length in the last 8 octets.
///
/// S holds only the parameters, which are public inputs in every derivation this crate
/// makes (identities, labels, RAND, SQN ⊕ AK), so the blocks of a derivation that holds S
/// are not wiped.
///
/// S is written piece by piece, with narrow stores, and the compression reads its block
/// with 16-octet loads, which the CPU cannot forward from several smaller stores: each
/// such load waits until the stores have retired and reached the cache. In a derivation
/// that starts with S (a precomputed key) that wait is on the critical path; [`KdfInput`]
/// lays S out once, ahead of the derivation, and [`kdf`] before its key block. Callers
/// write S in place, in the block that is compressed: a copy of the block would add a
/// second such wait.
fn lay_out_s(out: &mut [u8], fc: Fc, params: &[&[u8]], s_len: usize) {
    // Both FC octets at once; for a one-octet FC the second is overwritten by what follows
    // (or by the 0x80 below when S is the FC alone).
    let (fc_octets, mut at) = fc.padded();
    out[..2].copy_from_slice(&fc_octets);
    for p in params {
        out[at..at + p.len()].copy_from_slice(p);
        at += p.len();
        // Lengths are at most 65535 (checked by the caller), so the cast is exact.
        out[at..at + 2].copy_from_slice(&(p.len() as u16).to_be_bytes());
        at += 2;
    }
    out[s_len] = 0x80;
    let end = out.len();
    out[end - 8..].copy_from_slice(&(((BLOCK + s_len) * 8) as u64).to_be_bytes());
}

/// Blocks a [`KdfInput`] holds.
const INPUT_BLOCKS: usize = 5;

/// A KDF input string S = FC || P0 || L0 || … || Pn || Ln, laid out once with its SHA-256
/// padding, for derivations under many keys.
///
/// The EMKS answers each key fetch of an EMSE session with
/// `e2m_key = KDF(e2m_int_key, FC, EMSE_Id)`: the key changes with the UE, S does not
/// change for the session. Laying S out once, when the session is registered, takes its
/// assembly out of every derivation; with a [`KdfKey`] kept beside each stored
/// `e2m_int_key`, a derivation is then two SHA-256 compressions and little else
/// ([`KdfKey::derive_input`]). [`KdfKey::derive_inputs`] and [`KdfInput::derive_for_keys`]
/// run several derivations with their compressions interleaved, which the CPU overlaps.
///
/// S holds up to [`KdfInput::MAX_LEN`] octets: an FC, a 253-octet FQDN and a label fit.
/// Parameters are public in every 3GPP derivation; the copy is wiped on drop all the same,
/// and `Debug` shows only the length.
///
/// ```
/// use e2m_kdf::{Fc, KdfInput, KdfKey, kdf};
/// let emse_id = b"iot-platform.example.com";
/// let input = KdfInput::new(Fc::E2M_KEY_PROVISIONAL, &[emse_id])?;
/// let key = KdfKey::new(&[7; 32]);
/// let psk = key.derive_input(&input);
/// assert!(psk == kdf(&[7; 32], Fc::E2M_KEY_PROVISIONAL, &[emse_id])?);
/// # Ok::<(), e2m_kdf::KdfError>(())
/// ```
#[derive(Clone)]
pub struct KdfInput {
    blocks: [[u8; BLOCK]; INPUT_BLOCKS],
    /// Blocks in use (1 ..= `INPUT_BLOCKS`).
    used: usize,
    /// Length of S in octets.
    len: usize,
}

impl KdfInput {
    /// The longest S a `KdfInput` holds, in octets (five blocks, less the padding).
    pub const MAX_LEN: usize = INPUT_BLOCKS * BLOCK - 9;

    /// Lays out S = FC || P0 || L0 || … || Pn || Ln (TS 33.220 B.2.1.1); an empty
    /// parameter contributes `L = 0x0000` and keeps its place.
    ///
    /// # Errors
    /// [`KdfError::ParameterTooLong`] if a parameter exceeds 65535 octets,
    /// [`KdfError::InputTooLong`] if S exceeds [`KdfInput::MAX_LEN`] octets (use
    /// [`KdfKey::derive`] for longer ones).
    pub fn new(fc: Fc, params: &[&[u8]]) -> Result<Self, KdfError> {
        let len = s_len(fc, params)?;
        if len > Self::MAX_LEN {
            return Err(KdfError::InputTooLong {
                len,
                max: Self::MAX_LEN,
            });
        }
        let used = (len + 9).div_ceil(BLOCK);
        let mut blocks = [[0u8; BLOCK]; INPUT_BLOCKS];
        lay_out_s(
            &mut blocks.as_flattened_mut()[..used * BLOCK],
            fc,
            params,
            len,
        );
        Ok(KdfInput { blocks, used, len })
    }

    /// Length of S in octets.
    pub fn s_len(&self) -> usize {
        self.len
    }

    /// S and its padding, as whole blocks.
    fn blocks(&self) -> &[[u8; BLOCK]] {
        &self.blocks[..self.used]
    }

    /// This input under each of `keys` (many keys, one S: the EMKS answering the fetches
    /// of one EMSE session), with the compressions of the `N` derivations interleaved.
    ///
    /// `out[i]` is `keys[i].derive_input(self)`. Two or four at a time is where the
    /// gain is (see the crate's Performance section).
    ///
    /// ```
    /// use e2m_kdf::{Fc, KdfInput, KdfKey};
    /// let input = KdfInput::new(Fc::E2M_KEY_PROVISIONAL, &[b"iot-platform.example.com"])?;
    /// let (a, b) = (KdfKey::new(&[1; 32]), KdfKey::new(&[2; 32]));
    /// let [for_a, for_b] = input.derive_for_keys([&a, &b]);
    /// assert!(for_a == a.derive_input(&input) && for_b == b.derive_input(&input));
    /// # Ok::<(), e2m_kdf::KdfError>(())
    /// ```
    pub fn derive_for_keys<const N: usize>(&self, keys: [&KdfKey; N]) -> [KdfOutput; N] {
        hmac_interleaved(keys, [self; N])
    }
}

impl Drop for KdfInput {
    fn drop(&mut self) {
        // Off the derivation path (an input lives as long as its session), so the copy
        // is wiped even though 3GPP parameters are public.
        self.blocks.as_flattened_mut().zeroize();
    }
}

impl core::fmt::Debug for KdfInput {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("KdfInput")
            .field("s_len", &self.len)
            .finish()
    }
}

/// HMAC-SHA-256 of `inputs[i]` under `keys[i]` for every i, each compression step done for
/// all `N` before the next: the derivations are independent, so the CPU overlaps their
/// compressions, which a single derivation (inner hash, then outer) cannot.
fn hmac_interleaved<const N: usize>(keys: [&KdfKey; N], inputs: [&KdfInput; N]) -> [KdfOutput; N] {
    let mut states: [[u32; 8]; N] = core::array::from_fn(|i| keys[i].inner);
    for (state, input) in states.iter_mut().zip(inputs) {
        compress256(state, input.blocks());
    }
    let mut blocks: [[u8; BLOCK]; N] = core::array::from_fn(|i| digest_block(&states[i]));
    for (state, key) in states.iter_mut().zip(keys) {
        *state = key.outer;
    }
    for (state, block) in states.iter_mut().zip(&blocks) {
        compress256(state, core::slice::from_ref(block));
    }
    // The blocks held the inner digests; the rest of each is the constant padding.
    for block in &mut blocks {
        block[..32].zeroize();
    }
    let out = core::array::from_fn(|i| KdfOutput::from_array(state_bytes(&states[i])));
    states.as_flattened_mut().zeroize();
    out
}

/// Length of S = FC || P0 || L0 || … || Pn || Ln.
///
/// # Errors
/// [`KdfError::ParameterTooLong`] for the first parameter over 65535 octets.
fn s_len(fc: Fc, params: &[&[u8]]) -> Result<usize, KdfError> {
    let mut len = fc.as_bytes().len();
    for (index, p) in params.iter().enumerate() {
        if p.len() > usize::from(u16::MAX) {
            return Err(KdfError::ParameterTooLong {
                index,
                len: p.len(),
            });
        }
        len = len.saturating_add(p.len() + 2);
    }
    Ok(len)
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
    let s_len = s_len(fc, params)?;
    Ok(kdf_sized(key, fc, params, s_len))
}

/// [`kdf`] for parameters whose lengths the caller has checked (or that are fixed by their
/// types) to be at most 65535 octets.
pub(crate) fn kdf_checked(key: &[u8], fc: Fc, params: &[&[u8]]) -> KdfOutput {
    let s_len = params.iter().fold(fc.as_bytes().len(), |len, p| {
        len.saturating_add(p.len() + 2)
    });
    kdf_sized(key, fc, params, s_len)
}

/// The one-shot KDF, once S is known to be `s_len` octets with every Li in range.
fn kdf_sized(key: &[u8], fc: Fc, params: &[&[u8]], s_len: usize) -> KdfOutput {
    if key.len() > BLOCK || s_len > MAX_ONE_BLOCK_S {
        return KdfKey::new(key).derive_sized(fc, params, s_len);
    }
    // The common case (a key of at most one block, S of at most 55 octets): no key state
    // is kept, so each hash is one call over its two blocks and the chaining state between
    // them stays in registers. S is laid out first: its narrow stores then retire while
    // the key block is built, instead of stalling the compression that reads them.
    let mut blocks = [[0u8; BLOCK]; 2];
    lay_out_s(&mut blocks[1], fc, params, s_len);
    blocks[0] = key_block(key);
    let mut inner = IV;
    compress256(&mut inner, &blocks);
    for b in &mut blocks[0] {
        *b ^= IPAD ^ OPAD;
    }
    blocks[1] = digest_block(&inner);
    inner.as_mut_slice().zeroize();
    let mut outer = IV;
    compress256(&mut outer, &blocks);
    // The key block and the inner digest are secret; the rest of the second block is
    // the constant padding.
    blocks[0].as_mut_slice().zeroize();
    blocks[1][..32].zeroize();
    output(&mut outer)
}

/// The outer hash's block for the inner digest `inner` (as state words).
#[inline(always)]
fn digest_block(inner: &[u32; 8]) -> [u8; BLOCK] {
    let mut block = OUTER_BLOCK;
    for (chunk, word) in block[..32].chunks_exact_mut(4).zip(inner) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    block
}

/// The KDF output from the final outer state, which it wipes.
fn output(outer: &mut [u32; 8]) -> KdfOutput {
    let out = KdfOutput::from_array(state_bytes(outer));
    outer.as_mut_slice().zeroize();
    out
}
