//! Instructions per EMKS decision, counted by callgrind: repeatable on a loaded, shared
//! machine where timings are not (issue 8). The store holds few UEs (instruction counts do
//! not depend on table size; memory latency, which does, is the `emks` bench's to show).
//!
//! ```text
//! cargo bench --bench emks_instructions --no-run
//! valgrind --tool=callgrind --toggle-collect='*measured_fetches*' <bench binary>
//! ```
//! and divide the reported `Collected` instructions by the fetches it prints.
#![allow(missing_docs, reason = "a benchmark binary")]
#![allow(clippy::unwrap_used, reason = "benchmark set-up")]

use std::hint::black_box;

use e2m_emks::{Emks, EmksConfig, Peer, Timestamp};
use e2m_kdf::E2mIntKey;
use e2m_keyid::{AppIdentity, EmseId, Imsi, KeyId};
use e2m_keystore::{IdentityMap, block_on};
use e2m_msg::{IntermediateKeyPush, KeyIdSource, KeyRequest, Registration, UeRef};

const UES: u32 = 1024;
const FETCHES: usize = 10_000;

fn imsi(n: u32) -> Imsi {
    Imsi::new(&format!("00101{n:010}")).unwrap()
}

fn app(n: u32) -> AppIdentity {
    AppIdentity::new(&format!("sensor-{n}@iot.example.com")).unwrap()
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
    for n in 0..UES {
        block_on(emks.identities().provision(&emse_id, &app(n), &imsi(n))).unwrap();
        let push = IntermediateKeyPush {
            imsi: imsi(n),
            key_id: KeyIdSource::RandLsb32(KeyId::from_u32(1)),
            int_key: E2mIntKey::from_array([n as u8; 32]),
            created: now,
        };
        assert!(
            block_on(emks.push_intermediate_key(&hss, push, now))
                .result
                .is_ok()
        );
    }
    let registration = Registration {
        emse_id: emse_id.clone(),
        callback: None,
    };
    let session_id = block_on(emks.register(&emse, &registration, now))
        .result
        .unwrap()
        .session_id;
    let requests: Vec<KeyRequest> = (0..FETCHES)
        .map(|i| KeyRequest {
            session_id: session_id.copy_secret(),
            ue: UeRef::AppIdentity(app((i as u32 * 7919) % UES)),
            key_id: KeyId::from_u32(1),
        })
        .collect();
    let granted = measured_fetches(&emks, &emse, &requests, now);
    assert_eq!(granted, FETCHES);
    println!("fetches: {FETCHES}");
}
