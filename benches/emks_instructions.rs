//! Instructions per EMKS decision, counted by callgrind: repeatable on a loaded, shared
//! machine where timings are not (issue 8). The store holds few UEs (instruction counts do
//! not depend on table size; memory latency, which does, is the `emks` bench's to show).
//!
//! ```text
//! cargo bench --bench emks_instructions --no-run
//! valgrind --tool=callgrind --toggle-collect='*measured_fetches*' <bench binary>
//! ```
//! and divide the reported `Collected` instructions by the fetches it prints.
//! `E2M_BENCH_UES=250000 E2M_BENCH_KEYS=4` fills a store larger than the caches, with four
//! keys per UE and fetches of a random one of them: with `--cache-sim=yes` callgrind then
//! counts the cache misses per fetch at scale (issue 20; defaults: 1,024 UEs, one key). With
//! `--toggle-collect='*measured_key_gets*'` and `'*measured_boxed_key_gets*'` it counts a key
//! store lookup awaited inline (as the generic core does) and through a boxed `dyn Future`
//! (what holding the stores as `Arc<dyn …>` would cost), the same number of times;
//! `'*measured_pushes*'` counts HSS push decisions.
#![allow(missing_docs, reason = "a benchmark binary")]
#![allow(clippy::unwrap_used, reason = "benchmark set-up")]

use std::hint::black_box;

use e2m_emks::{Emks, EmksConfig, Peer, Timestamp};
use e2m_kdf::E2mIntKey;
use e2m_keyid::{AppIdentity, EmseId, Imsi, KeyId};
use e2m_keystore::{IdentityMap, IntKeyStore, block_on};
use e2m_msg::{IntermediateKeyPush, KeyIdSource, KeyRequest, Registration, UeRef};

const FETCHES: usize = 10_000;

fn from_env(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

fn imsi(n: u32) -> Imsi {
    Imsi::new(&format!("00101{n:010}")).unwrap()
}

fn app(n: u32) -> AppIdentity {
    AppIdentity::new(&format!("sensor-{n}@iot.example.com")).unwrap()
}

/// HSS push decisions (each UE receives keys 2, 3, …, so most pushes evict the oldest).
#[inline(never)]
fn measured_pushes(
    emks: &Emks,
    hss: &Peer,
    pushes: Vec<IntermediateKeyPush>,
    now: Timestamp,
) -> usize {
    let mut stored = 0;
    for push in pushes {
        let out = block_on(emks.push_intermediate_key(hss, black_box(&push), now));
        stored += usize::from(black_box(out).result.is_ok());
    }
    stored
}

/// Key store lookups awaited as the generic core awaits them (the future inline).
#[inline(never)]
fn measured_key_gets(emks: &Emks, imsis: &[Imsi], now: Timestamp) -> usize {
    let mut found = 0;
    for imsi in imsis {
        let got = block_on(emks.keys().get(black_box(imsi), KeyId::from_u32(1), now));
        found += usize::from(matches!(black_box(got), Ok(Some(_))));
    }
    found
}

/// The same lookups through a boxed `dyn Future`, as a store held as `Arc<dyn …>` would
/// need (an async method behind `dyn` cannot return an unnamed future).
#[inline(never)]
fn measured_boxed_key_gets(emks: &Emks, imsis: &[Imsi], now: Timestamp) -> usize {
    type Held = Result<Option<e2m_keystore::HeldKey>, e2m_keystore::StoreError>;
    let mut found = 0;
    for imsi in imsis {
        let boxed: core::pin::Pin<Box<dyn Future<Output = Held> + Send + '_>> =
            Box::pin(emks.keys().get(black_box(imsi), KeyId::from_u32(1), now));
        let got = block_on(black_box(boxed));
        found += usize::from(matches!(black_box(got), Ok(Some(_))));
    }
    found
}

#[inline(never)]
fn measured_fetches(emks: &Emks, emse: &Peer, requests: &[KeyRequest], now: Timestamp) -> usize {
    let mut granted = 0;
    for r in requests {
        let out = block_on(emks.fetch_key(emse, black_box(r), now));
        granted += usize::from(black_box(out).result.is_ok());
    }
    granted
}

fn main() {
    let now = Timestamp::from_unix_secs(1_800_000_000);
    let emse_id = EmseId::new("iot-platform.example.com").unwrap();
    let emse = Peer::emse(emse_id.clone());
    let hss = Peer::hss("hss-1");
    let emks = Emks::in_memory(EmksConfig::default());
    let (ues, keys) = (
        from_env("E2M_BENCH_UES", 1024),
        from_env("E2M_BENCH_KEYS", 1),
    );
    for n in 0..ues {
        block_on(emks.identities().provision(&emse_id, &app(n), &imsi(n))).unwrap();
    }
    for id in 1..=keys {
        for n in 0..ues {
            let push = IntermediateKeyPush {
                imsi: imsi(n),
                key_id: KeyIdSource::RandLsb32(KeyId::from_u32(id)),
                int_key: E2mIntKey::from_array([n as u8; 32]),
                created: now,
            };
            assert!(
                block_on(emks.push_intermediate_key(&hss, &push, now))
                    .result
                    .is_ok()
            );
        }
    }
    let registration = Registration {
        emse_id: emse_id.clone(),
        callback: None,
    };
    let session_id = block_on(emks.register(&emse, &registration, now))
        .result
        .unwrap()
        .session_id;
    // Spread over the whole population; the key id cycles through the ids held.
    let requests: Vec<KeyRequest> = (0..FETCHES as u32)
        .map(|i| KeyRequest {
            session_id: session_id.copy_secret(),
            ue: UeRef::AppIdentity(app(i.wrapping_mul(2_654_435_761) % ues)),
            key_id: KeyId::from_u32(1 + i % keys),
        })
        .collect();
    sizes(&emks, &emse, &requests[0], now);
    let granted = measured_fetches(&emks, &emse, &requests, now);
    assert_eq!(granted, FETCHES);
    let imsis: Vec<Imsi> = (0..FETCHES as u32)
        .map(|i| imsi(i.wrapping_mul(2_654_435_761) % ues))
        .collect();
    assert_eq!(measured_key_gets(&emks, &imsis, now), FETCHES);
    assert_eq!(measured_boxed_key_gets(&emks, &imsis, now), FETCHES);
    let pushes: Vec<IntermediateKeyPush> = (0..FETCHES as u32)
        .map(|i| IntermediateKeyPush {
            imsi: imsi(i % ues),
            key_id: KeyIdSource::RandLsb32(KeyId::from_u32(keys + 1 + i / ues)),
            int_key: E2mIntKey::from_array([i as u8; 32]),
            created: now,
        })
        .collect();
    assert_eq!(measured_pushes(&emks, &hss, pushes, now), FETCHES);
    println!("fetches: {FETCHES}");
}

/// Prints the sizes that the decision's future moves around (a fetch future is moved into
/// `block_on`, its output out of it).
fn sizes(emks: &Emks, emse: &Peer, r: &KeyRequest, now: Timestamp) {
    let f = emks.fetch_key(emse, r, now);
    println!(
        "sizes: fetch future {}, Outcome<KeyResponse> {}, AuditRecord {}, KeyResponse {}, UeRef {}, Peer {}, SessionInfo {}",
        core::mem::size_of_val(&f),
        core::mem::size_of::<e2m_emks::Outcome<e2m_msg::KeyResponse>>(),
        core::mem::size_of::<e2m_emks::AuditRecord>(),
        core::mem::size_of::<e2m_msg::KeyResponse>(),
        core::mem::size_of::<UeRef>(),
        core::mem::size_of::<Peer>(),
        core::mem::size_of::<e2m_keystore::SessionInfo>(),
    );
}
