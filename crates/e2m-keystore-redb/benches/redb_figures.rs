//! Timed runs of the redb store, each beside the in-memory store where there is one:
//! importing provisioning rows, filling UEs with N = 4 keys, bytes on disk per UE, and a
//! restart to the first served fetch. Too long for criterion's repetitions; each figure is
//! one timed run, printed with what it measured.
//!
//! `cargo bench -p e2m-keystore-redb --bench redb_figures` (1,000,000 UEs; set
//! `E2M_BENCH_UES` for another count). Quote `uptime` beside the figures.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a bench fails loudly"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use e2m_keystore::import::parse_identity_csv;
use e2m_keystore::{
    E2mIntKey, IdentityMap, Imsi, IntKeyStore, KeyId, MemoryIdentityMap, MemoryIntKeyStore,
    RetentionPolicy, Timestamp, block_on,
};
use e2m_keystore_redb::e2m_seal::{Kek, KekVersion, format_kek_file};
use e2m_keystore_redb::{DATABASE_FILE, Keyring, RedbStore, RedbStoreConfig};

const T0: u64 = 1_800_000_000;
const N: u32 = 4;

fn keyring() -> Keyring {
    let version = KekVersion::new(1).unwrap();
    Keyring::new([Kek::parse(format_kek_file(version, &[0x42; 32]).as_bytes()).unwrap()]).unwrap()
}

fn imsi(n: u64) -> Imsi {
    Imsi::new(&format!("00101{n:010}")).unwrap()
}

fn csv(rows: u64) -> Vec<u8> {
    let mut out = String::from("emse_id,app_identity,imsi\n");
    for i in 0..rows {
        out.push_str(&format!(
            "emse-{}.example.com,ue-{i}@iot.example.com,00101{i:010}\n",
            i % 10
        ));
    }
    out.into_bytes()
}

fn per_sec(n: u64, secs: f64) -> String {
    format!("{:.0}/s", n as f64 / secs)
}

fn import(ues: u64) {
    let file = csv(ues);
    let t = Instant::now();
    let rows = parse_identity_csv(&file).unwrap();
    let parse = t.elapsed().as_secs_f64();
    println!(
        "import: parse {ues} rows ({} MB): {parse:.2} s ({})",
        file.len() >> 20,
        per_sec(ues, parse)
    );

    let memory = MemoryIdentityMap::new();
    let t = Instant::now();
    let summary = block_on(memory.provision_all(rows)).unwrap();
    let mem = t.elapsed().as_secs_f64();
    assert_eq!(summary.added as u64, ues);
    println!(
        "import: memory provision_all: {mem:.2} s ({})",
        per_sec(ues, mem)
    );

    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path(), keyring(), RedbStoreConfig::default()).unwrap();
    let rows = parse_identity_csv(&file).unwrap();
    let t = Instant::now();
    let summary = block_on(store.identities().provision_all(rows)).unwrap();
    let redb = t.elapsed().as_secs_f64();
    assert_eq!(summary.added as u64, ues);
    println!(
        "import: redb provision_all (one durable transaction): {redb:.2} s ({}), {:.1}x memory",
        per_sec(ues, redb),
        redb / mem
    );
    let rows = parse_identity_csv(&file).unwrap();
    let t = Instant::now();
    let again = block_on(store.identities().provision_all(rows)).unwrap();
    assert!(again.changed_nothing());
    println!(
        "import: redb re-import of the same file (changes nothing): {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let size = std::fs::metadata(dir.path().join(DATABASE_FILE))
        .unwrap()
        .len();
    println!(
        "import: file size {} MB, {:.0} octets per mapping",
        size >> 20,
        size as f64 / ues as f64
    );
}

/// Pushes N keys for each of `ues` UEs from 256 concurrent tasks; returns the wall time.
fn fill<S: IntKeyStore + 'static>(store: Arc<S>, ues: u64) -> f64 {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let next = Arc::new(AtomicU64::new(0));
    let total = ues * u64::from(N);
    let t = Instant::now();
    runtime.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..256 {
            let (store, next) = (store.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= total {
                        break;
                    }
                    // Key id k of every UE before key k + 1 of any.
                    let (ue, id) = (n % ues, (n / ues) as u32 + 1);
                    let created = Timestamp::from_unix_secs(T0 + u64::from(id));
                    let key = E2mIntKey::from_array([n as u8; 32]);
                    let out = store
                        .push(&imsi(ue), KeyId::from_u32(id), &key, created, created)
                        .await;
                    assert!(out.unwrap().is_held());
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    t.elapsed().as_secs_f64()
}

fn keys_and_restart(ues: u64) {
    let total = ues * u64::from(N);
    let memory = fill(
        Arc::new(MemoryIntKeyStore::new(RetentionPolicy::DEFAULT)),
        ues,
    );
    println!(
        "fill: memory, {total} pushes from 256 tasks: {memory:.1} s ({})",
        per_sec(total, memory)
    );
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path(), keyring(), config_from_env()).unwrap();
    let redb = fill(Arc::new(store.int_keys()), ues);
    println!(
        "fill: redb durable, {total} pushes from 256 tasks: {redb:.1} s ({}), {:.1}x memory",
        per_sec(total, redb),
        redb / memory
    );
    drop(store);
    let size = std::fs::metadata(dir.path().join(DATABASE_FILE))
        .unwrap()
        .len();
    println!(
        "disk: {ues} UEs at N = {N}: file {} MB, {:.0} octets per UE (85 per sealed key record + B-tree and sweep index)",
        size >> 20,
        size as f64 / ues as f64
    );
    let now = Timestamp::from_unix_secs(T0 + u64::from(N) + 1);
    for verify_at_open in [true, false] {
        let t = Instant::now();
        let config = RedbStoreConfig {
            verify_at_open,
            ..RedbStoreConfig::default()
        };
        let store = RedbStore::open(dir.path(), keyring(), config).unwrap();
        let opened = t.elapsed().as_secs_f64();
        let key = block_on(
            store
                .int_keys()
                .get(&imsi(ues / 2), KeyId::from_u32(N), now),
        )
        .unwrap();
        assert!(key.is_some());
        println!(
            "restart: verify_at_open = {verify_at_open}: open {opened:.2} s, first served fetch at {:.2} s",
            t.elapsed().as_secs_f64()
        );
    }
    restart_after_kill(dir.path(), ues);
}

/// After a `kill -9`: a child process opens the store in `dir`, pushes 1,000 more keys
/// (acknowledged, so the file was written since its last clean close), and is killed with
/// SIGKILL; then the store is opened again (redb repairs the unclean file first) and the
/// first fetch timed.
fn restart_after_kill(dir: &std::path::Path, ues: u64) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .env(CHILD_DIR, dir)
        .env("E2M_BENCH_UES", ues.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "pushed", "child: {line:?}");
    child.kill().unwrap();
    child.wait().unwrap();
    // Only the first open after the kill meets the unclean file (it repairs it), so only
    // one open is timed here, with the default settings.
    let now = Timestamp::from_unix_secs(T0 + u64::from(N) + 2);
    let t = Instant::now();
    let store = RedbStore::open(dir, keyring(), config_from_env()).unwrap();
    let opened = t.elapsed().as_secs_f64();
    // One of the keys the killed process had acknowledged.
    let key = block_on(store.int_keys().get(&imsi(7), KeyId::from_u32(N + 1), now)).unwrap();
    assert!(
        key.is_some(),
        "a key acknowledged before the kill is missing"
    );
    println!(
        "restart after kill -9 (repair, then verify_at_open): open {opened:.2} s, first served fetch at {:.2} s",
        t.elapsed().as_secs_f64()
    );
}

/// The child of [`restart_after_kill`]: push, say so, wait to be killed.
fn child(dir: &str, ues: u64) {
    let store = RedbStore::open(dir, keyring(), config_from_env()).unwrap();
    let keys = store.int_keys();
    let created = Timestamp::from_unix_secs(T0 + u64::from(N) + 1);
    for ue in 0..1000.min(ues) {
        let key = E2mIntKey::from_array([0x5a; 32]);
        let out = block_on(keys.push(&imsi(ue), KeyId::from_u32(N + 1), &key, created, created));
        assert!(out.unwrap().is_held());
    }
    println!("pushed");
    loop {
        std::thread::sleep(std::time::Duration::from_secs(60));
    }
}

const CHILD_DIR: &str = "E2M_BENCH_CHILD_DIR";

/// The store's settings; `E2M_BENCH_QUICK_REPAIR=0` commits without redb's quick repair
/// (the child inherits the variable).
fn config_from_env() -> RedbStoreConfig {
    let quick_repair = std::env::var("E2M_BENCH_QUICK_REPAIR").map_or(true, |v| v != "0");
    eprintln!("(quick_repair = {quick_repair})");
    RedbStoreConfig {
        quick_repair,
        ..RedbStoreConfig::default()
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken from the command line.
    let ues = std::env::var("E2M_BENCH_UES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000u64);
    if let Ok(dir) = std::env::var(CHILD_DIR) {
        child(&dir, ues);
    }
    let only = std::env::var("E2M_BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "import" {
        import(ues);
    }
    if only.is_empty() || only == "keys" {
        keys_and_restart(ues);
    }
}
