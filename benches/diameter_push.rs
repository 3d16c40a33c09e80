//! Acknowledged durable pushes per second: the HSS's push over Diameter against the same
//! push over HTTPS, with the same store and the same number of HSS connections, in one run
//! (issue 17, "Performance": Diameter carries no per-request HTTP head or XML, so it should
//! be at least as fast).
//!
//! ```text
//! cargo bench --bench diameter_push                    # 4 HSS connections, 5 s per round, 2 rounds
//! E2M_BENCH_SECS=10 E2M_BENCH_CONNECTIONS=8 E2M_BENCH_ROUNDS=3 cargo bench --bench diameter_push
//! ```
//!
//! Both EMKSs are an `e2m_emks::Emks` core over the embedded durable store
//! (`e2m-keystore-redb`, keys sealed under a generated KEK, a fresh data directory each,
//! every push a new UE so that every push is a durable commit: group-committed, acknowledged
//! only once on disk), with mutual TLS on loopback and the same certificates:
//!
//! | row | transport | connections | pushes in flight |
//! |---|---|---|---|
//! | `https` | `e2m_https::emks::start_emks`, `EmksClient::push_intermediate_key` (HTTP/1.1 keep-alive, XML, 204) | N, one client each | N (one per connection: HTTP/1.1 has no pipelining here) |
//! | `diameter 1/conn` | `e2m_diameter_push::net` (E2M-Key-Push, 2001) | N HSS identities, one connection each | N (one per connection: the same load as HTTPS) |
//! | `diameter 8/conn` | the same | N | 8 N (Diameter multiplexes requests on a connection) |
//!
//! The rows alternate round by round, so that a change in the load of a shared machine
//! hits all alike; each row's best round is reported: pushes acknowledged per second, p50
//! and p99 latency, and this process's CPU time per push (clients, TLS, EMKS, store; from
//! `/proc/self/stat`), which moves less with other processes' load than wall-clock figures.
//! Take figures on a quiet machine.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    reason = "benchmark harness"
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use e2m_diameter_push::net::{
    DiameterTls, EmksDiameter, EmksDiameterConfig, HssDiameter, HssDiameterConfig, HssPeer,
    start_emks_diameter,
};
use e2m_emks::{Emks, EmksConfig};
use e2m_https::client::EmksClient;
use e2m_https::emks::{EmksServer, EmksServerOptions, start_emks};
use e2m_https::pki::{Credentials, GeneratedPki, PkiDir, PkiSpec};
use e2m_https::ratelimit::RateLimit;
use e2m_https::server::Limits;
use e2m_keystore::RetentionPolicy;
use e2m_keystore_redb::e2m_seal::{KekVersion, write_new_kek_file};
use e2m_keystore_redb::{
    Keyring, RedbIdentityMap, RedbIntKeyStore, RedbSessionStore, RedbStore, RedbStoreConfig,
    RedbSubscriptionStore,
};
use e2m_msg::{E2mIntKey, Imsi, IntermediateKeyPush, KeyId, KeyIdSource, Timestamp};

type Core = Emks<RedbIntKeyStore, RedbIdentityMap, RedbSessionStore, RedbSubscriptionStore>;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// This process's user + system CPU time from `/proc/self/stat` (Linux; USER_HZ = 100).
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// A fresh redb store in `dir` with its own KEK file.
fn core(dir: &Path) -> Arc<Core> {
    std::fs::create_dir_all(dir).unwrap();
    let kek = dir.join("kek-1");
    write_new_kek_file(&kek, KekVersion::new(1).unwrap()).unwrap();
    let keyring = Keyring::from_kek_files([kek]).unwrap();
    let config = RedbStoreConfig {
        retention: RetentionPolicy::new(4, Duration::from_secs(3600)).unwrap(),
        ..RedbStoreConfig::default()
    };
    let store = RedbStore::open(dir.join("store"), keyring, config).unwrap();
    Arc::new(Emks::new(
        EmksConfig::default(),
        store.int_keys(),
        store.identities(),
        store.sessions(),
        store.subscriptions(),
    ))
}

/// A new UE's push each time.
fn push(n: u64) -> IntermediateKeyPush {
    let mut key = [0x5a; 32];
    key[..8].copy_from_slice(&n.to_be_bytes());
    IntermediateKeyPush {
        imsi: Imsi::new(&format!("001{n:012}")).unwrap(),
        key_id: KeyIdSource::RandLsb32(KeyId::from_u32(n as u32 | 1)),
        int_key: E2mIntKey::from_array(key),
        created: Timestamp::now_from_system_clock(),
    }
}

struct Round {
    pushes: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    cpu: Option<Duration>,
}

impl Round {
    fn per_second(&self) -> f64 {
        self.pushes as f64 / self.elapsed.as_secs_f64()
    }
    fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.latencies.len() - 1) as f64 * p).round() as usize;
        self.latencies[i]
    }
}

/// Runs `tasks` closures pushing for `window`; each returns its latencies.
async fn measure<F, Fut>(window: Duration, tasks: usize, make: F) -> Round
where
    F: Fn(usize, Instant) -> Fut,
    Fut: std::future::Future<Output = Vec<Duration>> + Send + 'static,
{
    let cpu_before = process_cpu();
    let started = Instant::now();
    let stop = started + window;
    let handles: Vec<_> = (0..tasks).map(|i| tokio::spawn(make(i, stop))).collect();
    let mut latencies = Vec::new();
    for h in handles {
        latencies.extend(h.await.unwrap());
    }
    let elapsed = started.elapsed();
    let cpu = process_cpu()
        .zip(cpu_before)
        .map(|(after, before)| after.saturating_sub(before));
    latencies.sort();
    Round {
        pushes: latencies.len(),
        elapsed,
        latencies,
        cpu,
    }
}

struct Https {
    server: EmksServer<RedbIntKeyStore, RedbIdentityMap, RedbSessionStore, RedbSubscriptionStore>,
    clients: Vec<Arc<EmksClient>>,
}

async fn https(dir: &Path, pki: &PkiDir, connections: usize) -> Https {
    let options = EmksServerOptions {
        limits: Limits {
            rate: RateLimit {
                per_second: 1e9,
                burst: 1_000_000_000,
            },
            ..Limits::default()
        },
        notifications: false,
        ..EmksServerOptions::default()
    };
    let server = start_emks(core(dir), pki, options).await.unwrap();
    let clients = (0..connections)
        .map(|_| Arc::new(EmksClient::for_hss(&server.base_url(), pki).unwrap()))
        .collect();
    Https { server, clients }
}

struct Diameter {
    server: EmksDiameter,
    clients: Vec<Arc<HssDiameter>>,
}

fn hss_host(i: usize) -> String {
    format!("hss{i}.e2m.test")
}

fn credentials(pki: &PkiDir, stem: &str) -> Credentials {
    use rustls::pki_types::pem::PemObject;
    let chain =
        rustls::pki_types::CertificateDer::pem_file_iter(pki.path().join(format!("{stem}.pem")))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
    let key =
        rustls::pki_types::PrivateKeyDer::from_pem_file(pki.path().join(format!("{stem}.key")))
            .unwrap();
    Credentials::new(chain, key)
}

async fn diameter(dir: &Path, pki: &PkiDir, connections: usize) -> Diameter {
    let ca = pki.ca_certificates().unwrap();
    let tls = DiameterTls {
        credentials: pki.emks().unwrap(),
        ca: ca.clone(),
    };
    let mut config =
        EmksDiameterConfig::new("127.0.0.1:0".parse().unwrap(), "emks.e2m.test", "e2m.test");
    config.hss = (0..connections).map(hss_host).collect();
    config.max_in_flight = 4096;
    let server = start_emks_diameter(core(dir), config, Some(&tls), Default::default())
        .await
        .unwrap();
    let mut clients = Vec::new();
    for i in 0..connections {
        let host = hss_host(i);
        let peer = HssPeer {
            host: "emks.e2m.test".into(),
            addr: server.local_addr(),
            tls: true,
        };
        let config = HssDiameterConfig::new(host.as_str(), "e2m.test", "e2m.test", vec![peer]);
        let tls = DiameterTls {
            credentials: credentials(pki, &host),
            ca: ca.clone(),
        };
        let client = HssDiameter::start(config, Some(&tls)).await.unwrap();
        assert!(client.wait_ready(Duration::from_secs(10)).await);
        clients.push(Arc::new(client));
    }
    Diameter { server, clients }
}

fn temp(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    std::env::temp_dir().join(format!("e2m-bench-{tag}-{}-{nanos}", std::process::id()))
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs it as a smoke test.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let window = Duration::from_secs(env_or("E2M_BENCH_SECS", if smoke { 1 } else { 5 }));
    let connections = env_or("E2M_BENCH_CONNECTIONS", 4) as usize;
    let rounds = env_or("E2M_BENCH_ROUNDS", if smoke { 1 } else { 2 });
    let pipelined = 8;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut spec = PkiSpec::new(Vec::new()).unwrap();
    spec.diameter_nodes = (0..connections).map(hss_host).collect();
    let pki = GeneratedPki::generate(&spec)
        .unwrap()
        .write_to_temp_dir("bench-diameter")
        .unwrap();
    let dirs = [temp("https"), temp("diameter")];
    let (h, d) = runtime.block_on(async {
        (
            https(&dirs[0], &pki, connections).await,
            diameter(&dirs[1], &pki, connections).await,
        )
    });
    let counter = Arc::new(AtomicU64::new(1));
    let mut best: [Option<Round>; 3] = [None, None, None];
    for _ in 0..rounds {
        for (row, slot) in best.iter_mut().enumerate() {
            let counter = counter.clone();
            let round = runtime.block_on(async {
                match row {
                    0 => {
                        let clients = h.clients.clone();
                        measure(window, connections, move |i, stop| {
                            let client = clients[i].clone();
                            let counter = counter.clone();
                            async move {
                                let mut lat = Vec::new();
                                while Instant::now() < stop {
                                    let p = push(counter.fetch_add(1, Ordering::Relaxed));
                                    let t = Instant::now();
                                    client.push_intermediate_key(&p).await.unwrap();
                                    lat.push(t.elapsed());
                                }
                                lat
                            }
                        })
                        .await
                    }
                    _ => {
                        let per_conn = if row == 1 { 1 } else { pipelined };
                        let clients = d.clients.clone();
                        measure(window, connections * per_conn, move |i, stop| {
                            let client = clients[i % clients.len()].clone();
                            let counter = counter.clone();
                            async move {
                                let mut lat = Vec::new();
                                while Instant::now() < stop {
                                    let p = push(counter.fetch_add(1, Ordering::Relaxed));
                                    let t = Instant::now();
                                    client.push(&p).await.unwrap();
                                    lat.push(t.elapsed());
                                }
                                lat
                            }
                        })
                        .await
                    }
                }
            });
            if slot
                .as_ref()
                .is_none_or(|b| round.per_second() > b.per_second())
            {
                *slot = Some(round);
            }
        }
    }
    println!(
        "\nacknowledged durable pushes (redb, mutual TLS, {connections} HSS connections, best of {rounds} x {window:?}):"
    );
    println!(
        "  {:<18} {:>10} {:>10} {:>10} {:>14}",
        "row", "pushes/s", "p50", "p99", "CPU µs/push"
    );
    let names = [
        "https".to_owned(),
        "diameter 1/conn".to_owned(),
        format!("diameter {pipelined}/conn"),
    ];
    for (name, round) in names.iter().zip(&best) {
        let r = round.as_ref().unwrap();
        let cpu = r.cpu.map_or("-".to_owned(), |c| {
            format!("{:.1}", c.as_micros() as f64 / r.pushes.max(1) as f64)
        });
        println!(
            "  {name:<18} {:>10.0} {:>10.2?} {:>10.2?} {cpu:>14}",
            r.per_second(),
            r.percentile(0.5),
            r.percentile(0.99)
        );
    }
    let base = best[0].as_ref().unwrap().per_second();
    println!(
        "  ratio diameter/https: {:.2} (same load), {:.2} (pipelined)",
        best[1].as_ref().unwrap().per_second() / base,
        best[2].as_ref().unwrap().per_second() / base
    );
    runtime.block_on(async {
        for c in &d.clients {
            c.shutdown(Duration::from_secs(1)).await;
        }
        d.server.shutdown(Duration::from_secs(1)).await;
        h.server.shutdown().await;
    });
    for dir in dirs {
        let _ = std::fs::remove_dir_all(dir);
    }
    let _ = pki.remove();
}
