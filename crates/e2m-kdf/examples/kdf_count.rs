//! Instruction-count harness for the KDF paths, for `valgrind --tool=callgrind` (repeatable
//! on a busy machine, unlike wall-clock time). Each path runs `N` times behind a
//! non-inlined function, so callgrind's inclusive count of that function divided by its
//! call count is the cost of one derivation:
//!
//! ```text
//! cargo build --release -p e2m-kdf --example kdf_count
//! valgrind --tool=callgrind --callgrind-out-file=kdf.cg target/release/examples/kdf_count
//! callgrind_annotate --inclusive=yes kdf.cg | grep kdf_count::
//! ```
#![allow(missing_docs, reason = "a measurement harness")]
#![allow(clippy::unwrap_used, reason = "a measurement harness")]

use std::hint::black_box;

use e2m_kdf::{Fc, KdfInput, KdfKey, KdfOutput, kdf};
use sha2::block_api::compress256;

const N: usize = 10_000;
const KEY: [u8; 32] = [0x5a; 32];
const EMSE_ID: &[u8] = b"iot-platform-eu-west-1.example.com:1"; // 36 octets: S = 39

#[inline(never)]
fn floor_x2(blocks: &[[u8; 64]]) -> [u32; 8] {
    let mut state = [0x6a09_e667u32; 8];
    compress256(&mut state, &blocks[..2]);
    state
}

#[inline(never)]
fn floor_x4(blocks: &[[u8; 64]]) -> [u32; 8] {
    let mut state = [0x6a09_e667u32; 8];
    compress256(&mut state, &blocks[..4]);
    state
}

/// The same compressions as a derivation makes: separate one-block calls.
#[inline(never)]
fn floor_x1_calls(blocks: &[[u8; 64]], calls: usize) -> [u32; 8] {
    let mut state = [0x6a09_e667u32; 8];
    for block in &blocks[..calls] {
        compress256(&mut state, core::slice::from_ref(block));
    }
    state
}

#[inline(never)]
fn one_shot(key: &[u8], emse_id: &[u8]) -> KdfOutput {
    kdf(key, Fc::E2M_KEY_PROVISIONAL, &[emse_id]).unwrap()
}

#[inline(never)]
fn precomputed(key: &KdfKey, emse_id: &[u8]) -> KdfOutput {
    key.derive(Fc::E2M_KEY_PROVISIONAL, &[emse_id]).unwrap()
}

#[inline(never)]
fn precomputed_input(key: &KdfKey, input: &KdfInput) -> KdfOutput {
    key.derive_input(input)
}

#[inline(never)]
fn inputs_x2(key: &KdfKey, inputs: [&KdfInput; 2]) -> [KdfOutput; 2] {
    key.derive_inputs(inputs)
}

fn main() {
    let blocks = [[0x36u8; 64]; 4];
    for _ in 0..N {
        black_box(floor_x2(black_box(&blocks)));
        black_box(floor_x4(black_box(&blocks)));
        black_box(floor_x1_calls(black_box(&blocks), black_box(2)));
        black_box(floor_x1_calls(black_box(&blocks), black_box(4)));
        black_box(one_shot(black_box(&KEY), black_box(EMSE_ID)));
    }
    let key = KdfKey::new(&KEY);
    let input = KdfInput::new(Fc::E2M_KEY_PROVISIONAL, &[EMSE_ID]).unwrap();
    for _ in 0..N {
        black_box(precomputed(black_box(&key), black_box(EMSE_ID)));
        black_box(precomputed_input(black_box(&key), black_box(&input)));
        black_box(inputs_x2(black_box(&key), black_box([&input, &input])));
    }
}
