//! Time to import a 1,000,000-row provisioning file (`emse_id,app_identity,imsi`) with
//! `IdentityMap::provision_all` into PostgreSQL (a throwaway cluster, fsync and
//! synchronous_commit on), beside the in-memory map in the same run; then the same file
//! again (idempotent: nothing changes). A timed benchmark binary rather than criterion:
//! one import takes seconds, and a few repetitions say enough.
//!
//! `cargo bench -p e2m-keystore-pg --bench import [-- ROWS]`; quote `uptime` beside it.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a benchmark fails loudly on a broken fixture"
)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Instant;

use e2m_keystore::import::parse_identity_csv;
use e2m_keystore::{IdentityMap, MemoryIdentityMap};
use e2m_keystore_pg::{PgBackend, PgConfig};

fn csv(rows: usize) -> Vec<u8> {
    let mut out = b"emse_id,app_identity,imsi\n".to_vec();
    for n in 0..rows {
        // 10 EMSEs, each naming its UEs by its own identities.
        let line = format!(
            "emse-{}.example.com,ue-{n}@iot.example.com,00101{n:010}\n",
            n % 10
        );
        out.extend_from_slice(line.as_bytes());
    }
    out
}

fn uptime() -> String {
    std::process::Command::new("uptime")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn main() {
    let rows: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let Some(cluster) = support::Cluster::start() else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!("load before: {}", uptime());
    let file = csv(rows);
    let t = Instant::now();
    let parsed = parse_identity_csv(&file).expect("valid file");
    println!(
        "parse {rows} rows ({} MB): {:.2} s",
        file.len() / 1_000_000,
        t.elapsed().as_secs_f64()
    );

    let memory = MemoryIdentityMap::new();
    let t = Instant::now();
    let summary = runtime
        .block_on(memory.provision_all(parsed.clone()))
        .unwrap();
    println!(
        "memory provision_all: {:.2} s ({summary:?})",
        t.elapsed().as_secs_f64()
    );

    let config = PgConfig::from_conninfo(&cluster.conninfo()).unwrap();
    let backend = runtime
        .block_on(PgBackend::connect(&config, support::keyring(1, 0x42)))
        .unwrap();
    let map = backend.identities();
    let t = Instant::now();
    let summary = runtime.block_on(map.provision_all(parsed.clone())).unwrap();
    let first = t.elapsed().as_secs_f64();
    assert_eq!(summary.added, rows);
    println!(
        "postgres provision_all, empty map: {first:.2} s ({summary:?}, {:.0} rows/s)",
        rows as f64 / first
    );
    let t = Instant::now();
    let summary = runtime.block_on(map.provision_all(parsed)).unwrap();
    let again = t.elapsed().as_secs_f64();
    assert!(summary.changed_nothing());
    println!("postgres provision_all, same file again: {again:.2} s ({summary:?})");
    println!("load after: {}", uptime());
}
