//! Key fetch over HTTPS with mutual TLS and keep-alive on loopback, the EMKS on the shared
//! PostgreSQL store against the same EMKS on the in-memory store, in one run (issue 8,
//! "Benchmarks": goal PostgreSQL ≥ 0.5× the memory backend's fetches/s, p99 ≤ 5 ms).
//!
//! ```text
//! cargo bench --bench emks_https_stores        # 16 keep-alive clients, 5 s per round, 2 rounds
//! E2M_BENCH_SECS=10 E2M_BENCH_ROUNDS=3 cargo bench --bench emks_https_stores
//! E2M_BENCH_CACHE_TTL_MS=250 cargo bench --bench emks_https_stores   # another cache TTL
//! ```
//!
//! The PostgreSQL EMKS is built as `emks --store postgres` builds it: the store behind the
//! read-through caches of `e2m_keystore::cache` (`--cache-ttl`, default 1000 ms, capacity
//! 100,000 entries each; the TTL used is printed). A third target, the same store with the
//! caches off (`--cache-ttl 0`), shows what they save in the same run; a fourth caches the
//! session only, which is what a deployment whose UEs each fetch about once per AKA run
//! meets (identity and key always cold, one joined statement per fetch). With the caches on,
//! each UE's identity mapping and key and the one session are read from the database once
//! per TTL, every other fetch is served from memory.
//!
//! Both EMKSs are `e2m_https::emks::start_emks` over an `e2m_emks::Emks` core, with the same
//! limits, the same 1,000 provisioned UEs each holding one pushed key, and one EMSE
//! session; they differ only in their stores: `Emks::in_memory` against
//! `e2m_keystore_pg::PgBackend` (pool of 16, keys sealed under a generated KEK) on a
//! throwaway PostgreSQL cluster that `.ci/postgres start` starts on loopback (and `stop`
//! removes). An uncached PostgreSQL fetch is two statements (the session; then the identity
//! map and the key in one joined statement, `IdentityMap::resolve_key`; each a pool
//! checkout and a loopback round trip to the database) plus opening the sealed key.
//!
//! Each client task issues GET after GET on one shared keep-alive pool (reqwest, HTTP/1.1,
//! the EMSE's certificate), cycling through the UEs, and decodes every key response. The
//! targets alternate (memory, PostgreSQL, memory, …) so that a change in the load of this
//! shared machine hits both alike; each target's best round is reported. Two CPU columns
//! explain the wall-clock figures on a machine shared with other work: this process's
//! (clients, TLS, the EMKS) and the PostgreSQL server's processes' (read from `/proc`),
//! each per fetch. Without PostgreSQL's server binaries the benchmark prints `SKIPPED` and
//! exits.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    reason = "benchmark harness"
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2m_emks::{Emks, EmksConfig};
use e2m_https::client::EmksClient;
use e2m_https::emks::{EmksServerOptions, start_emks};
use e2m_https::pki::{GeneratedPki, PkiDir, PkiSpec, Role};
use e2m_https::ratelimit::RateLimit;
use e2m_https::server::Limits;
use e2m_https::tls::{ExpectedServer, client_config};
use e2m_kdf::E2mIntKey;
use e2m_keyid::{AppIdentity, EmseId, Imsi, KeyId};
use e2m_keystore::{
    CacheConfig, CachedIdentities, CachedIntKeys, CachedSessions, IdentityMap, IntKeyStore,
    MonotonicClock, NotificationOutbox, RetentionPolicy, SessionPolicy, SessionStore,
    SubscriptionPolicy, SubscriptionStore,
};
use e2m_keystore_pg::{PgBackend, PgConfig};
use e2m_msg::{
    IntermediateKeyPush, KeyIdSource, KeyRequest, KeyResponse, Timestamp, UeRef, XmlMessage,
};
use e2m_seal::{Kek, KekVersion, Keyring, generate_kek_file};

/// UEs provisioned and holding a key, on each store.
const UES: u32 = 1_000;

/// The `emks` example's `--cache-ttl` default, in milliseconds.
const EXAMPLE_CACHE_TTL_MS: u64 = 1000;
/// The `emks` example's cache capacity (its `CACHE_CAPACITY`).
const EXAMPLE_CACHE_CAPACITY: usize = 100_000;

/// The monotonic clock the caches read, as in the `emks` example.
struct InstantClock(Instant);

impl MonotonicClock for InstantClock {
    fn now(&self) -> Duration {
        self.0.elapsed()
    }
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// This process's user + system CPU time from `/proc/self/stat` (Linux; USER_HZ = 100).
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime: fields 14 and 15 of the line, 12 and 13 after the command name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// The CPU time of the PostgreSQL server whose data directory is `data`: its postmaster
/// (from `postmaster.pid`) and every process it started (backends, WAL writer, …), read
/// from `/proc` (Linux; USER_HZ = 100).
fn postgres_cpu(data: &Path) -> Option<Duration> {
    let pid_file = std::fs::read_to_string(data.join("postmaster.pid")).ok()?;
    let postmaster = pid_file.lines().next()?.trim().to_owned();
    let mut ticks = 0;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str() else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        // After the name: state, ppid, … utime (12th), stime (13th).
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if pid == postmaster || fields.get(1) == Some(&postmaster.as_str()) {
            ticks += fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        }
    }
    Some(Duration::from_millis(ticks * 10))
}

/// One measured round against one EMKS.
struct Run {
    latencies: Vec<Duration>,
    elapsed: Duration,
    /// CPU time of this process (client, TLS, EMKS) during the measurement.
    cpu: Option<Duration>,
    /// CPU time of the PostgreSQL server during the measurement.
    server_cpu: Option<Duration>,
}

impl Run {
    fn per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted[index.min(sorted.len() - 1)]
    }

    fn micros_per_fetch(&self, cpu: Option<Duration>) -> Option<f64> {
        let cpu = cpu?;
        (!self.latencies.is_empty()).then(|| cpu.as_secs_f64() * 1e6 / self.latencies.len() as f64)
    }
}

/// The request targets (one per UE) on one EMKS, with its base URL.
struct Target {
    base: String,
    paths: Arc<Vec<String>>,
}

/// `concurrency` tasks, each fetching back to back on the shared keep-alive pool (task `t`
/// takes UEs t, t + concurrency, …), for `warmup` then `measure`.
async fn load(
    client: &reqwest::Client,
    target: &Target,
    postgres_data: &Path,
    concurrency: usize,
    warmup: Duration,
    measure: Duration,
) -> Run {
    let start = Instant::now();
    let measure_from = start + warmup;
    let stop_at = measure_from + measure;
    let data = postgres_data.to_owned();
    let cpu_probe = tokio::spawn(async move {
        tokio::time::sleep_until(measure_from.into()).await;
        let before = (process_cpu(), postgres_cpu(&data));
        tokio::time::sleep_until(stop_at.into()).await;
        let after = (process_cpu(), postgres_cpu(&data));
        let since = |a: Option<Duration>, b: Option<Duration>| Some(a?.saturating_sub(b?));
        (since(after.0, before.0), since(after.1, before.1))
    });
    let mut tasks = Vec::new();
    for task in 0..concurrency {
        let client = client.clone();
        let base = target.base.clone();
        let paths = target.paths.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut ue = task;
            loop {
                let t0 = Instant::now();
                if t0 >= stop_at {
                    break;
                }
                let url = format!("{base}{}", paths[ue % paths.len()]);
                ue += concurrency;
                let response = client.get(&url).send().await.expect("request failed");
                assert_eq!(response.status(), 200, "unexpected status");
                let body = response.bytes().await.expect("body");
                drop(KeyResponse::decode(&body).expect("not a key response"));
                if t0 >= measure_from {
                    latencies.push(t0.elapsed());
                }
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let (cpu, server_cpu) = cpu_probe.await.unwrap_or((None, None));
    Run {
        latencies,
        elapsed: measure,
        cpu,
        server_cpu,
    }
}

/// A throwaway cluster from `.ci/postgres start`, removed by `.ci/postgres stop` on drop.
struct Postgres {
    dir: PathBuf,
    conninfo: String,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".ci")
        .join("postgres")
}

impl Postgres {
    fn start() -> Option<Postgres> {
        let dir = std::env::temp_dir().join(format!("e2m-bench-pg-{}", std::process::id()));
        let out = Command::new("bash")
            .arg(script())
            .arg("start")
            .arg(&dir)
            .output()
            .unwrap();
        if !out.status.success() {
            println!(
                "SKIPPED: no PostgreSQL cluster ({}); run `bash .ci/postgres install`",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
        let conninfo = String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap()
            .to_owned();
        Some(Postgres { dir, conninfo })
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(&self.dir)
            .output();
    }
}

fn main() {
    let secs = env_or("E2M_BENCH_SECS", 5);
    let concurrency = env_or("E2M_BENCH_CONCURRENCY", 16) as usize;
    let rounds = env_or("E2M_BENCH_ROUNDS", 2).max(1) as usize;
    let Some(pg) = Postgres::start() else { return };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bench(&pg, Duration::from_secs(secs), concurrency, rounds));
}

fn app(ue: u32) -> AppIdentity {
    AppIdentity::new(&format!("ue-{ue}@bench.example")).unwrap()
}

fn imsi(ue: u32) -> Imsi {
    Imsi::new(&format!("00101{ue:010}")).unwrap()
}

/// Starts an EMKS over `core`, provisions and pushes every UE's key through it (over
/// HTTPS, as an HSS), registers the EMSE and returns the fetch targets.
async fn start_target<K, M, S, B>(
    core: Emks<K, M, S, B>,
    pki: &PkiDir,
    limits: &Limits,
    emse_id: &EmseId,
) -> (e2m_https::emks::EmksServer<K, M, S, B>, Target)
where
    K: IntKeyStore + NotificationOutbox + 'static,
    M: IdentityMap + 'static,
    S: SessionStore + 'static,
    B: SubscriptionStore + 'static,
{
    let emks = start_emks(
        Arc::new(core),
        pki,
        EmksServerOptions {
            limits: limits.clone(),
            notifications: false,
            ..EmksServerOptions::default()
        },
    )
    .await
    .unwrap();
    let hss = EmksClient::for_hss(&emks.base_url(), pki).unwrap();
    let created = Timestamp::now_from_system_clock();
    for ue in 0..UES {
        emks.core()
            .identities()
            .provision(emse_id, &app(ue), &imsi(ue))
            .await
            .unwrap();
    }
    // 16 HSS connections pushing at once (the server bounds its connections).
    let pushers: Vec<_> = (0..16)
        .map(|first| {
            let hss = hss.clone();
            tokio::spawn(async move {
                for ue in (first..UES).step_by(16) {
                    let mut key = [0u8; 32];
                    key[..4].copy_from_slice(&ue.to_be_bytes());
                    hss.push_intermediate_key(&IntermediateKeyPush {
                        imsi: imsi(ue),
                        key_id: KeyIdSource::RandLsb32(KeyId::from_u32(ue + 1)),
                        int_key: E2mIntKey::from_array(key),
                        created,
                    })
                    .await
                    .unwrap();
                }
            })
        })
        .collect();
    for pusher in pushers {
        pusher.await.unwrap();
    }
    let emse = EmksClient::for_emse(&emks.base_url(), pki, emse_id).unwrap();
    let session = emse.register(None).await.unwrap().session_id;
    let paths = (0..UES)
        .map(|ue| {
            KeyRequest {
                session_id: session.copy_secret(),
                ue: UeRef::AppIdentity(app(ue)),
                key_id: KeyId::from_u32(ue + 1),
            }
            .to_target()
            .as_str()
            .to_owned()
        })
        .collect();
    let target = Target {
        base: emks.base_url(),
        paths: Arc::new(paths),
    };
    (emks, target)
}

async fn bench(pg: &Postgres, measure: Duration, concurrency: usize, rounds: usize) {
    let warmup = Duration::from_secs(1);
    let emse_id = EmseId::new("emse-a").unwrap();
    let dir = std::env::temp_dir().join(format!("e2m-bench-stores-pki-{}", std::process::id()));
    let pki = GeneratedPki::generate(&PkiSpec::new(vec![emse_id.clone()]).unwrap())
        .unwrap()
        .write_to(&dir)
        .unwrap();
    let ca = pki.ca_certificates().unwrap();
    // The rate limit is the transport's; lift it so that it caps neither target.
    let limits = Limits {
        rate: RateLimit {
            per_second: 1e9,
            burst: u32::MAX,
        },
        ..Limits::default()
    };

    let memory = Emks::in_memory(EmksConfig::default());
    let (memory_emks, memory_target) = start_target(memory, &pki, &limits, &emse_id).await;

    let version = KekVersion::new(1).unwrap();
    let kek = Kek::parse(generate_kek_file(version).unwrap().as_bytes()).unwrap();
    let pool = PgConfig::DEFAULT_POOL_SIZE;
    let backend = PgBackend::connect(
        &PgConfig::from_conninfo(&pg.conninfo)
            .unwrap()
            .with_pool_size(pool)
            .unwrap(),
        Keyring::new([kek]).unwrap(),
    )
    .await
    .unwrap();
    // As `emks --store postgres --cache-ttl MILLIS` builds it.
    let ttl_ms = env_or("E2M_BENCH_CACHE_TTL_MS", EXAMPLE_CACHE_TTL_MS);
    let cache = CacheConfig::new(Duration::from_millis(ttl_ms), EXAMPLE_CACHE_CAPACITY).unwrap();
    let clock = Arc::new(InstantClock(Instant::now()));
    let cached = Emks::new(
        EmksConfig::default(),
        CachedIntKeys::new(
            backend.int_keys(RetentionPolicy::DEFAULT),
            cache,
            clock.clone(),
        ),
        CachedIdentities::new(backend.identities(), cache, clock.clone()),
        CachedSessions::new(backend.sessions(SessionPolicy::DEFAULT), cache, clock),
        backend.subscriptions(SubscriptionPolicy::DEFAULT),
    );
    let (cached_emks, cached_target) = start_target(cached, &pki, &limits, &emse_id).await;
    // The same store with the caches off (`--cache-ttl 0`): every fetch reads the database.
    let uncached = Emks::new(
        EmksConfig::default(),
        backend.int_keys(RetentionPolicy::DEFAULT),
        backend.identities(),
        backend.sessions(SessionPolicy::DEFAULT),
        backend.subscriptions(SubscriptionPolicy::DEFAULT),
    );
    let (uncached_emks, uncached_target) = start_target(uncached, &pki, &limits, &emse_id).await;
    // Every UE cold, the session warm: what a deployment meets when each UE's key is
    // fetched about once per AKA run (the identity and key caches never hit), while the
    // EMSE's one session is read on every fetch (its cache always hits). One joined
    // statement per fetch.
    let cold_ues = Emks::new(
        EmksConfig::default(),
        backend.int_keys(RetentionPolicy::DEFAULT),
        backend.identities(),
        CachedSessions::new(
            backend.sessions(SessionPolicy::DEFAULT),
            cache,
            Arc::new(InstantClock(Instant::now())),
        ),
        backend.subscriptions(SubscriptionPolicy::DEFAULT),
    );
    let (cold_emks, cold_target) = start_target(cold_ues, &pki, &limits, &emse_id).await;

    let client = {
        let tls = client_config(
            &pki.emse(&emse_id).unwrap(),
            &ca,
            ExpectedServer::AnyOfRole(Role::Emks),
        )
        .unwrap();
        reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .no_proxy()
            .http1_only()
            .pool_max_idle_per_host(concurrency)
            .build()
            .unwrap()
    };

    println!(
        "\nHTTPS key fetch (mutual TLS, HTTP/1.1 keep-alive, loopback): {concurrency} concurrent clients, \
         {UES} UEs, {} s per round, {rounds} rounds; PostgreSQL pool {pool}; \
         PostgreSQL EMKS as `emks --store postgres --cache-ttl {ttl_ms}` (cache TTL {ttl_ms} ms, \
         capacity {EXAMPLE_CACHE_CAPACITY}), beside it the same with `--cache-ttl 0`, and with \
         only the session cached (every UE cold)\n",
        measure.as_secs()
    );
    let targets = [
        ("memory", &memory_target),
        ("PostgreSQL", &cached_target),
        ("PostgreSQL, no cache", &uncached_target),
        ("PostgreSQL, cold UEs", &cold_target),
    ];
    let mut best: Vec<Option<Run>> = targets.iter().map(|_| None).collect();
    for round in 1..=rounds {
        let data = pg.dir.join("data");
        let mut line = format!("  round {round}:");
        // Alternating in one round, so that a change of the machine's load hits all alike.
        for (i, (name, target)) in targets.iter().enumerate() {
            let run = load(&client, target, &data, concurrency, warmup, measure).await;
            line.push_str(&format!(
                " {name} {:.0}/s (p99 {} µs);",
                run.per_second(),
                run.percentile(0.99).as_micros()
            ));
            if best[i]
                .as_ref()
                .is_none_or(|x| run.per_second() > x.per_second())
            {
                best[i] = Some(run);
            }
        }
        println!("{line}");
    }
    let best: Vec<Run> = best.into_iter().map(Option::unwrap).collect();
    println!(
        "\n{:<22} {:>9} {:>10} {:>8} {:>8} {:>16} {:>16}",
        "store (best round)",
        "fetches",
        "fetches/s",
        "p50 µs",
        "p99 µs",
        "CPU µs/fetch",
        "server CPU µs/f"
    );
    for ((name, _), run) in targets.iter().zip(&best) {
        println!(
            "{:<22} {:>9} {:>10.0} {:>8} {:>8} {:>16.1} {:>16.1}",
            name,
            run.latencies.len(),
            run.per_second(),
            run.percentile(0.50).as_micros(),
            run.percentile(0.99).as_micros(),
            run.micros_per_fetch(run.cpu).unwrap_or(f64::NAN),
            run.micros_per_fetch(run.server_cpu).unwrap_or(f64::NAN)
        );
    }
    println!(
        "(CPU: this process, i.e. clients, TLS and the EMKS; server CPU: the PostgreSQL server's processes)"
    );
    let (memory, postgres, uncached, cold) = (&best[0], &best[1], &best[2], &best[3]);
    let ratio = postgres.per_second() / memory.per_second();
    let p99 = postgres.percentile(0.99);
    println!(
        "\nPostgreSQL (cache TTL {ttl_ms} ms) / memory fetches/s = {ratio:.2} (goal ≥ 0.50: {})",
        if ratio >= 0.5 { "met" } else { "NOT met" }
    );
    println!(
        "PostgreSQL (cache TTL {ttl_ms} ms) p99 = {:.2} ms (goal ≤ 5 ms: {})",
        p99.as_secs_f64() * 1e3,
        if p99 <= Duration::from_millis(5) {
            "met"
        } else {
            "NOT met"
        }
    );
    println!(
        "without the cache: {:.2} × memory, p99 {:.2} ms\n",
        uncached.per_second() / memory.per_second(),
        uncached.percentile(0.99).as_secs_f64() * 1e3
    );
    println!(
        "every UE cold, the session cached (one joined statement per fetch): {:.2} × memory, p99 {:.2} ms\n",
        cold.per_second() / memory.per_second(),
        cold.percentile(0.99).as_secs_f64() * 1e3
    );
    cold_emks.shutdown().await;
    cached_emks.shutdown().await;
    uncached_emks.shutdown().await;
    memory_emks.shutdown().await;
    backend.close();
    let _ = std::fs::remove_dir_all(&dir);
}
