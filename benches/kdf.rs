//! The TS 33.220 KDF against its baselines, all measured in the same run (issue #2).
//!
//! S is about 40 octets (FC, a 36-octet EMSE_Id, its length), the key 32 octets: the shape
//! of an `e2m_key` derivation. Baselines:
//! * `floor/compress256 x4` and `x2`: the bare SHA-256 compression function, the least
//!   work an HMAC can do for one-shot (4 blocks) and precomputed-key (2 blocks) use, and
//!   `x1 twice`: two separate one-block calls, as HMAC's two chains need; `x1, then x1
//!   over its digest`: the same two calls with the outer one hashing the inner digest, as
//!   in one derivation (the dependency the other floors do not have);
//! * `hmac crate/naive`: S concatenated into a Vec, then `Hmac<Sha256>` keyed per call;
//! * `hmac crate/precomputed key`: a keyed `Hmac<Sha256>` cloned per call;
//! * `ring`: `ring::hmac::sign` with a prepared key, and keyed per call.
//!
//! Ours: `one-shot` (`kdf`), `precomputed key` (`KdfKey::derive`, S laid out per call),
//! `precomputed key + input` (`KdfKey::derive_input`, S laid out once in a `KdfInput`), and
//! the interleaved batches `inputs xN` (one key, N EMSE_Ids) and `keys xN` (N keys, one
//! EMSE_Id). A batch row's time is per derivation (the batch time divided by N), so that
//! every row compares with the same floor.
//!
//! `cargo bench --bench kdf -- --warm-up-time 1 --measurement-time 3`; the ratios to report
//! are ours / floor and ours / baselines, all from the one run.
#![allow(missing_docs, reason = "criterion macros generate undocumented items")]
#![allow(clippy::unwrap_used, reason = "benchmark set-up")]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use e2m_kdf::{Fc, KdfInput, KdfKey, KdfOutput, kdf};
use hmac::{Hmac, KeyInit, Mac};
use sha2::block_api::compress256;

const KEY: [u8; 32] = [0x5a; 32];
const EMSE_ID: &[u8] = b"iot-platform-eu-west-1.example.com:1"; // 36 octets
/// More EMSE_Ids of the same length, for the batches.
const EMSE_IDS: [&[u8]; 4] = [
    EMSE_ID,
    b"iot-platform-eu-west-2.example.com:1",
    b"iot-platform-us-east-1.example.com:1",
    b"iot-platform-ap-south-1.example.com:",
];

/// Time per derivation of a batch of `N`: runs `batch` about `iters / N` times.
fn per_derivation<const N: usize>(
    iters: u64,
    mut batch: impl FnMut() -> [KdfOutput; N],
) -> Duration {
    let start = Instant::now();
    for _ in 0..iters.div_ceil(N as u64) {
        black_box(batch());
    }
    start.elapsed()
}

fn naive_hmac(key: &[u8], fc: u8, p0: &[u8]) -> [u8; 32] {
    let mut s = Vec::with_capacity(1 + p0.len() + 2);
    s.push(fc);
    s.extend_from_slice(p0);
    s.extend_from_slice(&(p0.len() as u16).to_be_bytes());
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(&s);
    mac.finalize().into_bytes().into()
}

fn benches(c: &mut Criterion) {
    let fc = Fc::E2M_KEY_PROVISIONAL;
    let len = (EMSE_ID.len() as u16).to_be_bytes();
    let mut group = c.benchmark_group("kdf");

    let blocks = [[0x36u8; 64]; 4];
    group.bench_function("floor/compress256 x4", |b| {
        b.iter(|| {
            let mut state = [0x6a09_e667u32; 8];
            compress256(&mut state, black_box(&blocks));
            state
        })
    });
    group.bench_function("floor/compress256 x2", |b| {
        b.iter(|| {
            let mut state = [0x6a09_e667u32; 8];
            compress256(&mut state, black_box(&blocks[..2]));
            state
        })
    });

    // HMAC's inner and outer hashes are two chains, so a derivation from a precomputed key
    // makes two one-block calls; this is that floor, with the per-call set-up included.
    group.bench_function("floor/compress256 x1 twice", |b| {
        b.iter(|| {
            let mut inner = [0x6a09_e667u32; 8];
            let mut outer = [0xbb67_ae85u32; 8];
            compress256(&mut inner, black_box(&blocks[..1]));
            compress256(&mut outer, black_box(&blocks[1..2]));
            (inner, outer)
        })
    });

    // A single derivation's own floor: the outer compression hashes the inner one's digest,
    // which `compress256` hands back as words and takes as octets, through memory. Nothing
    // else (no S to lay out, no wipes): the least one derivation can cost on this API.
    group.bench_function("floor/compress256 x1, then x1 over its digest", |b| {
        b.iter(|| {
            let mut inner = [0x6a09_e667u32; 8];
            compress256(&mut inner, black_box(&blocks[..1]));
            let mut block = blocks[1];
            for (chunk, word) in block[..32].chunks_exact_mut(4).zip(&inner) {
                chunk.copy_from_slice(&word.to_be_bytes());
            }
            let mut outer = [0xbb67_ae85u32; 8];
            compress256(&mut outer, core::slice::from_ref(&block));
            outer
        })
    });

    group.bench_function("e2m-kdf/one-shot", |b| {
        b.iter(|| kdf(black_box(&KEY), fc, &[black_box(EMSE_ID)]).unwrap())
    });
    let prepared = KdfKey::new(&KEY);
    group.bench_function("e2m-kdf/precomputed key", |b| {
        b.iter(|| prepared.derive(fc, &[black_box(EMSE_ID)]).unwrap())
    });

    let input = KdfInput::new(fc, &[EMSE_ID]).unwrap();
    group.bench_function("e2m-kdf/precomputed key + input", |b| {
        b.iter(|| prepared.derive_input(black_box(&input)))
    });
    let inputs = EMSE_IDS.map(|id| KdfInput::new(fc, &[id]).unwrap());
    let [i0, i1, i2, i3] = &inputs;
    group.bench_function("e2m-kdf/inputs x2 (per derivation)", |b| {
        b.iter_custom(|iters| per_derivation(iters, || prepared.derive_inputs(black_box([i0, i1]))))
    });
    group.bench_function("e2m-kdf/inputs x4 (per derivation)", |b| {
        b.iter_custom(|iters| {
            per_derivation(iters, || {
                prepared.derive_inputs(black_box([i0, i1, i2, i3]))
            })
        })
    });
    let keys: [KdfKey; 4] = core::array::from_fn(|i| KdfKey::new(&[i as u8; 32]));
    let [k0, k1, k2, k3] = &keys;
    group.bench_function("e2m-kdf/keys x2 (per derivation)", |b| {
        b.iter_custom(|iters| per_derivation(iters, || input.derive_for_keys(black_box([k0, k1]))))
    });
    group.bench_function("e2m-kdf/keys x4 (per derivation)", |b| {
        b.iter_custom(|iters| {
            per_derivation(iters, || input.derive_for_keys(black_box([k0, k1, k2, k3])))
        })
    });

    group.bench_function("hmac crate/naive", |b| {
        b.iter(|| naive_hmac(black_box(&KEY), 0xE1, black_box(EMSE_ID)))
    });
    let keyed = Hmac::<sha2::Sha256>::new_from_slice(&KEY).unwrap();
    group.bench_function("hmac crate/precomputed key", |b| {
        b.iter(|| {
            let mut mac = keyed.clone();
            mac.update(&[0xE1]);
            mac.update(black_box(EMSE_ID));
            mac.update(&len);
            let out: [u8; 32] = mac.finalize().into_bytes().into();
            out
        })
    });

    let ring_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &KEY);
    group.bench_function("ring/precomputed key", |b| {
        b.iter(|| {
            let mut ctx = ring::hmac::Context::with_key(&ring_key);
            ctx.update(&[0xE1]);
            ctx.update(black_box(EMSE_ID));
            ctx.update(&len);
            ctx.sign()
        })
    });
    group.bench_function("ring/one-shot", |b| {
        b.iter(|| {
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, black_box(&KEY));
            let mut ctx = ring::hmac::Context::with_key(&key);
            ctx.update(&[0xE1]);
            ctx.update(black_box(EMSE_ID));
            ctx.update(&len);
            ctx.sign()
        })
    });
    group.finish();
}

criterion_group!(kdf_benches, benches);
criterion_main!(kdf_benches);
