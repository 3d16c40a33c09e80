//! Sealing intermediate keys at rest (e2m-seal) per record, beside a bare `e2m_key`
//! derivation measured in the same run: the work a durable store adds to a push (seal)
//! and to a fetch (open), against the work the fetch does anyway (derive).
//!
//! `cargo bench --bench seal`; the ratios to report are seal / derive and open / derive.
//! Every record differs (IMSI, key id, times), as in a store, so no cache of one record
//! flatters the figures.
#![allow(missing_docs, reason = "criterion macros generate undocumented items")]
#![allow(clippy::unwrap_used, reason = "benchmark set-up")]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use e2m_kdf::{E2mIntKey, E2mProfile};
use e2m_keyid::{E2mKeyDeriver, EmseId};
use e2m_seal::{
    Imsi, IntKeyRecord, Kek, KekVersion, KeyId, Keyring, SealNonce, SealedKey, Timestamp,
};

const RECORDS: usize = 1024; // a power of two, for the index mask
const EMSE_ID: &str = "iot-platform-eu-west-1.example.com:1";

struct Row {
    imsi: Imsi,
    key_id: KeyId,
    created: Timestamp,
    expires: Timestamp,
}

impl Row {
    fn record(&self) -> IntKeyRecord<'_> {
        IntKeyRecord::new(&self.imsi, self.key_id, self.created, self.expires)
    }
}

fn benches(c: &mut Criterion) {
    let keyring = Keyring::new([
        Kek::from_array(KekVersion::new(1).unwrap(), [0x11; 32]),
        Kek::from_array(KekVersion::new(2).unwrap(), [0x22; 32]),
    ])
    .unwrap();
    let rows: Vec<Row> = (0..RECORDS as u64)
        .map(|n| Row {
            imsi: Imsi::new(&format!("00101{:010}", n * 7919)).unwrap(),
            key_id: KeyId::from_u32(n as u32 * 0x9e37_79b9),
            created: Timestamp::from_unix_secs(1_700_000_000 + n),
            expires: Timestamp::from_unix_secs(1_700_086_400 + n),
        })
        .collect();
    let emse = EmseId::new(EMSE_ID).unwrap();
    let keys: Vec<E2mIntKey> = (0..RECORDS)
        .map(|n| E2mIntKey::from_array([n as u8; 32]))
        .collect();
    let sealed: Vec<SealedKey> = rows
        .iter()
        .zip(&keys)
        .enumerate()
        .map(|(n, (row, key))| {
            let mut nonce = [0u8; 12];
            nonce[..8].copy_from_slice(&(n as u64).to_be_bytes());
            keyring
                .seal(&row.record(), key, SealNonce::from_array(nonce))
                .unwrap()
        })
        .collect();

    let mut g = c.benchmark_group("seal");
    let mut i = 0usize;
    g.bench_function(
        "baseline: e2m_key derivation (E2mKeyDeriver new + derive)",
        |b| {
            b.iter(|| {
                i = (i + 1) & (RECORDS - 1);
                let d = E2mKeyDeriver::new(black_box(&keys[i]), E2mProfile::PROVISIONAL).unwrap();
                d.derive(black_box(&emse)).unwrap()
            })
        },
    );
    let mut counter = 0u64;
    g.bench_function("seal (caller nonce)", |b| {
        b.iter(|| {
            i = (i + 1) & (RECORDS - 1);
            counter += 1;
            let mut nonce = [0u8; 12];
            nonce[..8].copy_from_slice(&counter.to_be_bytes());
            keyring
                .seal(
                    black_box(&rows[i].record()),
                    &keys[i],
                    SealNonce::from_array(nonce),
                )
                .unwrap()
        })
    });
    g.bench_function("seal (OS random nonce)", |b| {
        b.iter(|| {
            i = (i + 1) & (RECORDS - 1);
            keyring
                .seal(
                    black_box(&rows[i].record()),
                    &keys[i],
                    SealNonce::random().unwrap(),
                )
                .unwrap()
        })
    });
    g.bench_function("open", |b| {
        b.iter(|| {
            i = (i + 1) & (RECORDS - 1);
            keyring
                .open(black_box(&rows[i].record()), black_box(&sealed[i]))
                .unwrap()
        })
    });
    g.bench_function("open from stored bytes + derive (a durable fetch)", |b| {
        b.iter(|| {
            i = (i + 1) & (RECORDS - 1);
            let s = SealedKey::from_bytes(black_box(sealed[i].as_bytes())).unwrap();
            let key = keyring.open(&rows[i].record(), &s).unwrap();
            let d = E2mKeyDeriver::new(&key, E2mProfile::PROVISIONAL).unwrap();
            d.derive(&emse).unwrap()
        })
    });
    g.finish();
}

criterion_group!(seal, benches);
criterion_main!(seal);
