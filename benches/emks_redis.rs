//! Server CPU per answered request: the EMKS serving a key fetch (mutual TLS, session check,
//! identity resolution, key selection, KDF, XML, audit) against Redis serving a GET of a
//! stored 32-octet value over TLS with client certificates — what an operator would run
//! instead of an EMKS (issue 20 goal 1: the EMKS at or below 1.0× Redis).
//!
//! ```text
//! cargo bench --bench emks_redis                        # 5 s per row, 16 connections
//! E2M_BENCH_SECS=10 cargo bench --bench emks_redis
//! ```
//!
//! The Redis row needs Debian's Redis 7.0 (built with TLS) and its tools:
//! `apt-get install redis-server redis-tools`. Without `redis-server`, `redis-cli` and
//! `redis-benchmark` on the `PATH`, that row is skipped with a line saying so.
//!
//! Both rows, in the same run and under the same conditions:
//! - TLS 1.3 with `TLS_AES_128_GCM_SHA256` (the profile's first suite; Redis is started with
//!   `--tls-protocols TLSv1.3 --tls-ciphersuites TLS_AES_128_GCM_SHA256`, and the EMKS row
//!   checks what its connections negotiated), X25519, the same generated certificates
//!   (the EMKS's as the server's, the EMSE's as the client's, one CA), client certificates
//!   required (`--tls-auth-clients yes`);
//! - 16 client connections (`E2M_BENCH_CONNECTIONS`), kept alive, one request in flight on
//!   each (no pipelining), over loopback;
//! - a client of the same weight: Redis is driven by `redis-benchmark -t get -c 16 -d 32`
//!   (one event loop in C, a prebuilt command); the EMKS by a client in this process of
//!   the same shape (one thread, one task per connection over tokio-rustls, a prebuilt
//!   request, the response head parsed with httparse), on its own runtime;
//! - the server's CPU only: user + system time from `/proc` (`/proc/<pid>/stat` of
//!   `redis-server`, all its threads; `/proc/self/task/<tid>/stat` of the EMKS runtime's
//!   threads, named `e2m-srv`, blocking pool included), over the measured requests, after
//!   a warm-up on the same connections;
//! - one server thread each: Redis serves from one event loop, and the EMKS runs on a
//!   one-worker runtime (`E2M_BENCH_SERVER_WORKERS`, default 1). On a two-core machine
//!   the Redis row busies two threads (server and `redis-benchmark`); two EMKS workers
//!   beside the client thread would be three, and the server's CPU would then include
//!   the cost of that oversubscription (context switches, wake-ups and work stealing
//!   between its workers), not of a fetch. `E2M_BENCH_SERVER_WORKERS=2` measures that
//!   shape (the examples' default on two cores) for comparison;
//! - `E2M_BENCH_ROUNDS` rounds (default 3), each running both rows back to back; the
//!   ratio reported is the median of the rounds' ratios, which a slow spell of a shared
//!   machine moves far less than any one row.
//!
//! Other processes on a shared machine move the wall clock, and the CPU figures somewhat
//! (caches, batching); what moves neither is the instruction count and the system calls
//! per request. `E2M_BENCH_COUNT=N` sends exactly N measured requests per row (after
//! `N / 10` of warm-up), `E2M_BENCH_ROWS=emks|redis` runs one row, and
//! `E2M_BENCH_STRACE=1` counts the system calls of the server threads (`strace -c`) over
//! the measured requests and prints them per request (the CPU figures are then not
//! comparable: tracing slows the server down).
//!
//! Instruction counts per request, the difference of two runs with different counts
//! (set-up cancels out). For Redis, `E2M_BENCH_REDIS_WRAP` prefixes the `redis-server`
//! command; for the EMKS, callgrind writes one file per thread and the server's are those
//! that ran its connection code:
//!
//! ```text
//! B=$(ls target/release/deps/emks_redis-* | grep -v '\.d$')
//! for n in 2000 22000; do
//!   E2M_BENCH_ROWS=redis E2M_BENCH_COUNT=$n \
//!     E2M_BENCH_REDIS_WRAP="valgrind --tool=callgrind --callgrind-out-file=/tmp/cg-redis.$n" $B
//!   E2M_BENCH_ROWS=emks E2M_BENCH_COUNT=$n valgrind --tool=callgrind --separate-threads=yes \
//!     --callgrind-out-file=/tmp/cg-emks.$n $B
//! done
//! # Redis: (total of cg-redis.22000 - total of cg-redis.2000) / 20000;
//! # EMKS: the same over the sum of the files cg-emks.$n-* that name e2m_https::server.
//! ```

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "benchmark harness"
)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use e2m_emks::{Emks, EmksConfig};
use e2m_https::emks::{EmksServerOptions, start_emks};
use e2m_https::pki::{GeneratedPki, PkiDir, PkiSpec, Role};
use e2m_https::ratelimit::RateLimit;
use e2m_https::server::Limits;
use e2m_https::tls::{ExpectedServer, client_config};
use e2m_kdf::E2mIntKey;
use e2m_keyid::{AppIdentity, EmseId, Imsi, KeyId};
use e2m_keystore::IdentityMap;
use e2m_msg::XmlMessage;
use e2m_msg::{IntermediateKeyPush, KeyIdSource, KeyRequest, KeyResponse, Timestamp, UeRef};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// The name of the EMKS runtime's threads (at most 15 characters: the kernel's `comm`).
const SERVER_THREAD: &str = "e2m-srv";

/// The TLS 1.3 suite both rows use.
const SUITE: &str = "TLS_AES_128_GCM_SHA256";

/// The size of the value Redis serves (the size of an e2m key).
const VALUE_LEN: usize = 32;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// User + system CPU of a `stat` line (fields 14 and 15; USER_HZ = 100).
fn stat_cpu(stat: &str) -> Option<Duration> {
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((user + system) * 10))
}

/// The command name of a `stat` line.
fn stat_name(stat: &str) -> Option<&str> {
    Some(&stat[stat.find('(')? + 1..stat.rfind(')')?])
}

/// The threads of this process named [`SERVER_THREAD`]: their ids and CPU time.
fn server_threads() -> (Vec<u32>, Duration) {
    let mut ids = Vec::new();
    let mut cpu = Duration::ZERO;
    for task in std::fs::read_dir("/proc/self/task").into_iter().flatten() {
        let Ok(task) = task else { continue };
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        if stat_name(&stat) != Some(SERVER_THREAD) {
            continue;
        }
        if let Some(id) = task.file_name().to_str().and_then(|s| s.parse().ok()) {
            ids.push(id);
        }
        cpu += stat_cpu(&stat).unwrap_or_default();
    }
    (ids, cpu)
}

/// The CPU time of process `pid`, all its threads.
fn process_cpu(pid: u32) -> Duration {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat_cpu(&stat))
        .unwrap_or_default()
}

/// How many requests a phase sends.
#[derive(Clone, Copy)]
enum Phase {
    /// This many on each connection.
    Count(u64),
    /// Until then.
    Until(Instant),
}

/// One measured row.
struct Row {
    name: String,
    requests: u64,
    elapsed: Duration,
    cpu: Duration,
    syscalls: Option<Syscalls>,
}

impl Row {
    fn micros_per_request(&self) -> f64 {
        if self.requests == 0 {
            return f64::NAN;
        }
        self.cpu.as_secs_f64() * 1e6 / self.requests as f64
    }
}

/// `strace -c` attached to some threads, from [`Syscalls::attach`] until
/// [`Syscalls::finish`].
struct Strace {
    child: Child,
    output: PathBuf,
}

/// System calls counted by strace over some requests: (name, calls), most first.
struct Syscalls {
    calls: Vec<(String, u64)>,
    total: u64,
}

impl Strace {
    /// Attaches to `ids` (`-f`: with all their threads, for a process).
    fn attach(ids: &[u32], follow: bool, output: PathBuf) -> Option<Strace> {
        let mut command = Command::new("strace");
        command.arg("-c").arg("-o").arg(&output);
        if follow {
            command.arg("-f");
        }
        for id in ids {
            command.arg("-p").arg(id.to_string());
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| println!("strace not started ({e}); apt-get install strace"))
            .ok()?;
        // Time to attach.
        std::thread::sleep(Duration::from_millis(500));
        Some(Strace { child, output })
    }

    /// Detaches (SIGINT: strace then writes its summary) and reads the counts.
    fn finish(mut self) -> Option<Syscalls> {
        let _ = Command::new("kill")
            .arg("-INT")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        let text = std::fs::read_to_string(&self.output).ok()?;
        let _ = std::fs::remove_file(&self.output);
        // `% time seconds usecs/call calls [errors] syscall`, then a total line.
        let mut calls = Vec::new();
        let mut total = 0;
        for line in text.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 5 || fields[0].parse::<f64>().is_err() {
                continue;
            }
            let Ok(n) = fields[3].parse::<u64>() else {
                continue;
            };
            let name = fields[fields.len() - 1];
            if name == "total" {
                total = n;
            } else {
                calls.push((name.to_owned(), n));
            }
        }
        calls.sort_by_key(|call| std::cmp::Reverse(call.1));
        Some(Syscalls { calls, total })
    }
}

impl Syscalls {
    fn per_request(&self, requests: u64) -> String {
        let per = |n: u64| n as f64 / requests.max(1) as f64;
        let mut text = format!("{:.2} per request:", per(self.total));
        for (name, n) in self.calls.iter().take(6) {
            text.push_str(&format!(" {name} {:.2}", per(*n)));
        }
        text
    }
}

fn main() {
    let secs = env_or("E2M_BENCH_SECS", 5);
    let connections = env_or("E2M_BENCH_CONNECTIONS", 16).max(1) as usize;
    let count = std::env::var("E2M_BENCH_COUNT")
        .ok()
        .and_then(|v| v.parse::<u64>().ok());
    let strace = std::env::var_os("E2M_BENCH_STRACE").is_some();
    let rows = std::env::var("E2M_BENCH_ROWS").ok();
    let run_row = |name: &str| rows.as_deref().is_none_or(|rows| rows.contains(name));

    let emse_id = EmseId::new("emse-a").unwrap();
    let dir = std::env::temp_dir().join(format!("e2m-bench-redis-{}", std::process::id()));
    let pki = GeneratedPki::generate(&PkiSpec::new(vec![emse_id.clone()]).unwrap())
        .unwrap()
        .write_to(&dir.join("pki"))
        .unwrap();
    let settings = Settings {
        secs,
        connections,
        count,
        strace,
    };

    let uptime = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "\nserver CPU per answered request: TLS 1.3 {SUITE}, client certificates, {connections} \
         keep-alive connections, one request in flight on each, loopback; {}\n(load average: {})",
        match count {
            Some(n) => format!("{n} measured requests per row"),
            None => format!("{secs} s per row"),
        },
        uptime
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let rounds = env_or("E2M_BENCH_ROUNDS", 3).max(1);
    let mut ratios = Vec::new();
    let mut results = Vec::new();
    for round in 1..=rounds {
        results.clear();
        if run_row("redis") {
            match redis_row(&pki, &dir, &emse_id, &settings) {
                Ok(row) => results.push(row),
                Err(why) => println!("Redis row skipped: {why}"),
            }
        }
        if run_row("emks") {
            results.push(emks_row(&pki, &emse_id, &settings));
        }
        if let [redis, emks] = &results[..] {
            let ratio = emks.micros_per_request() / redis.micros_per_request();
            ratios.push(ratio);
            println!(
                "  round {round}: Redis {:.2} µs, EMKS {:.2} µs per request, ratio {ratio:.2}",
                redis.micros_per_request(),
                emks.micros_per_request()
            );
        }
    }

    println!(
        "\n{:<58} {:>9} {:>9} {:>15}",
        "server (request), last round", "requests", "req/s", "server CPU µs"
    );
    for row in &results {
        println!(
            "{:<58} {:>9} {:>9.0} {:>15.2}",
            row.name,
            row.requests,
            row.requests as f64 / row.elapsed.as_secs_f64(),
            row.micros_per_request()
        );
    }
    for row in &results {
        if let Some(syscalls) = &row.syscalls {
            println!(
                "system calls, {}: {}",
                row.name,
                syscalls.per_request(row.requests)
            );
        }
    }
    if !ratios.is_empty() {
        ratios.sort_by(f64::total_cmp);
        let ratio = ratios[ratios.len() / 2];
        println!(
            "\nEMKS / Redis server CPU per request, median of {} rounds ({}) = {ratio:.2} \
             (goal ≤ 1.00: {}){}",
            ratios.len(),
            ratios
                .iter()
                .map(|r| format!("{r:.2}"))
                .collect::<Vec<_>>()
                .join(", "),
            if ratio <= 1.0 { "met" } else { "NOT met" },
            if strace {
                "; under strace, not comparable"
            } else {
                ""
            }
        );
    }
    println!();
    let _ = std::fs::remove_dir_all(&dir);
}

struct Settings {
    secs: u64,
    connections: usize,
    count: Option<u64>,
    strace: bool,
}

// ---------------------------------------------------------------------------------------
// Redis

/// A `redis-server` child, stopped (SIGTERM, so that a wrapping valgrind writes its
/// output) when dropped.
struct RedisServer {
    child: Child,
    port: u16,
    tls: Vec<String>,
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl RedisServer {
    fn cli(&self, args: &[&str]) -> Result<String, String> {
        let output = Command::new("redis-cli")
            .args(&self.tls)
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("redis-cli: {e}"))?;
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// Runs `redis-benchmark` with these arguments; returns its wall-clock time.
    fn benchmark(&self, args: &[String]) -> Result<Duration, String> {
        let started = Instant::now();
        let status = Command::new("redis-benchmark")
            .args(&self.tls)
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .map_err(|e| format!("redis-benchmark: {e}"))?;
        if !status.success() {
            return Err(format!("redis-benchmark failed: {status}"));
        }
        Ok(started.elapsed())
    }
}

fn found(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

fn start_redis(pki: &PkiDir, work: &Path, emse_id: &EmseId) -> Result<RedisServer, String> {
    for program in ["redis-server", "redis-cli", "redis-benchmark"] {
        if !found(program) {
            return Err(format!(
                "{program} not found (Debian: apt-get install redis-server redis-tools)"
            ));
        }
    }
    let path = |p: PathBuf| p.to_str().unwrap().to_owned();
    let (server_cert, server_key) = pki.paths_for(&e2m_https::pki::PeerIdentity::Emks(
        e2m_https::pki::NodeName::new("emks").unwrap(),
    ));
    let (client_cert, client_key) =
        pki.paths_for(&e2m_https::pki::PeerIdentity::Emse(emse_id.clone()));
    let ca = path(pki.ca_path());
    let port = free_port();
    std::fs::create_dir_all(work).map_err(|e| e.to_string())?;
    let wrap: Vec<String> = std::env::var("E2M_BENCH_REDIS_WRAP")
        .map(|w| w.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    let (program, prefix) = match wrap.split_first() {
        Some((program, prefix)) => (program.clone(), prefix.to_vec()),
        None => ("redis-server".to_owned(), Vec::new()),
    };
    let mut command = Command::new(program);
    command.args(prefix);
    if !wrap.is_empty() {
        command.arg("redis-server");
    }
    let child = command
        .args(["--port", "0", "--bind", "127.0.0.1"])
        .args(["--tls-port", &port.to_string()])
        .args(["--tls-cert-file", &path(server_cert)])
        .args(["--tls-key-file", &path(server_key)])
        .args(["--tls-ca-cert-file", &ca])
        .args(["--tls-auth-clients", "yes"])
        .args(["--tls-protocols", "TLSv1.3"])
        .args(["--tls-ciphersuites", SUITE])
        .args(["--save", "", "--appendonly", "no"])
        .args(["--dir", work.to_str().unwrap()])
        .args(["--logfile", work.join("redis.log").to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("redis-server: {e}"))?;
    let mut server = RedisServer {
        child,
        port,
        tls: vec![
            "--tls".into(),
            "--cert".into(),
            path(client_cert),
            "--key".into(),
            path(client_key),
            "--cacert".into(),
            ca,
        ],
    };
    let wait = if wrap.is_empty() { 10 } else { 120 };
    let deadline = Instant::now() + Duration::from_secs(wait);
    loop {
        if let Ok(Some(status)) = server.child.try_wait() {
            let log = std::fs::read_to_string(work.join("redis.log")).unwrap_or_default();
            return Err(format!(
                "redis-server exited ({status}); is it built with TLS? {}",
                log.lines().last().unwrap_or("")
            ));
        }
        if server.cli(&["PING"]).is_ok_and(|pong| pong == "PONG") {
            break;
        }
        if Instant::now() > deadline {
            return Err("redis-server did not answer PING over TLS".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(server)
}

fn redis_row(
    pki: &PkiDir,
    dir: &Path,
    emse_id: &EmseId,
    settings: &Settings,
) -> Result<Row, String> {
    let server = start_redis(pki, &dir.join("redis"), emse_id)?;
    let pid = server.child.id();
    let c = settings.connections.to_string();
    let d = VALUE_LEN.to_string();
    let run = |test: &str, n: u64| {
        server.benchmark(&[
            "--tls-ciphersuites".into(),
            SUITE.into(),
            "-t".into(),
            test.into(),
            "-c".into(),
            c.clone(),
            "-d".into(),
            d.clone(),
            "-n".into(),
            n.to_string(),
        ])
    };
    // The value that GET reads: `redis-benchmark -t set -d 32` stores it under the key
    // `-t get` asks for.
    run("set", 1000)?;
    let stored = server.cli(&["STRLEN", "key:__rand_int__"])?;
    if stored != VALUE_LEN.to_string() {
        return Err(format!(
            "the stored value has {stored} octets, not {VALUE_LEN}"
        ));
    }
    // Warm-up, which also gives the rate to size a timed run.
    let warmup = settings.count.map_or(20_000, |n| (n / 10).max(1));
    let took = run("get", warmup)?;
    let measured = settings.count.unwrap_or_else(|| {
        let rate = warmup as f64 / took.as_secs_f64();
        (rate * settings.secs as f64) as u64
    });
    let strace = settings
        .strace
        .then(|| Strace::attach(&[pid], true, dir.join("strace-redis")))
        .flatten();
    let before = process_cpu(pid);
    let elapsed = run("get", measured)?;
    let cpu = process_cpu(pid).saturating_sub(before);
    let syscalls = strace.and_then(Strace::finish);
    drop(server);
    Ok(Row {
        name: format!(
            "Redis {}: GET of a {VALUE_LEN}-octet value",
            redis_version()
        ),
        requests: measured,
        elapsed,
        cpu,
        syscalls,
    })
}

fn redis_version() -> String {
    Command::new("redis-server")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            text.split_whitespace()
                .find_map(|w| w.strip_prefix("v=").map(str::to_owned))
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// EMKS

fn emks_row(pki: &PkiDir, emse_id: &EmseId, settings: &Settings) -> Row {
    let workers = env_or("E2M_BENCH_SERVER_WORKERS", 1).max(1) as usize;
    let server_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name(SERVER_THREAD)
        .enable_all()
        .build()
        .unwrap();
    let client_runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let emks = {
        let pki = PkiDir::open(pki.path()).unwrap();
        let emse_id = emse_id.clone();
        server_runtime
            .block_on(server_runtime.spawn(async move {
                let app = AppIdentity::new("sensor-17@iot.example.com").unwrap();
                let imsi = Imsi::new("001010123456789").unwrap();
                let core = Arc::new(Emks::in_memory(EmksConfig::default()));
                core.identities()
                    .provision(&emse_id, &app, &imsi)
                    .await
                    .unwrap();
                start_emks(
                    core,
                    &pki,
                    EmksServerOptions {
                        limits: Limits {
                            // The budget never runs out (it is still taken per request).
                            rate: RateLimit {
                                per_second: 1e9,
                                burst: u32::MAX,
                            },
                            ..Limits::default()
                        },
                        notifications: false,
                        ..EmksServerOptions::default()
                    },
                )
                .await
                .unwrap()
            }))
            .unwrap()
    };
    let ca = pki.ca_certificates().unwrap();
    let (target, tls) = client_runtime.block_on(async {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let key_id = KeyId::from_u32(0xae47_bf35);
        e2m_https::client::EmksClient::new(&emks.base_url(), &pki.hss().unwrap(), &ca)
            .unwrap()
            .push_intermediate_key(&IntermediateKeyPush {
                imsi: Imsi::new("001010123456789").unwrap(),
                key_id: KeyIdSource::RandLsb32(key_id),
                int_key: E2mIntKey::from_array([0x42; 32]),
                created: Timestamp::from_unix_secs(now),
            })
            .await
            .unwrap();
        let emse =
            e2m_https::client::EmksClient::new(&emks.base_url(), &pki.emse(emse_id).unwrap(), &ca)
                .unwrap();
        let session = emse.register(None).await.unwrap();
        let target = KeyRequest {
            session_id: session.session_id,
            ue: UeRef::AppIdentity(AppIdentity::new("sensor-17@iot.example.com").unwrap()),
            key_id,
        }
        .to_target()
        .as_str()
        .to_owned();
        let tls = client_config(
            &pki.emse(emse_id).unwrap(),
            &ca,
            ExpectedServer::AnyOfRole(Role::Emks),
        )
        .unwrap();
        (target, tls)
    });
    let addr = emks.local_addr();
    let request: Arc<[u8]> = format!(
        "GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\r\n",
        addr.port()
    )
    .into_bytes()
    .into();
    let connector = TlsConnector::from(Arc::new(tls));
    let completed = Arc::new(AtomicU64::new(0));

    let row = client_runtime.block_on(async {
        let mut connections = Vec::new();
        for _ in 0..settings.connections {
            let tcp = TcpStream::connect(addr).await.unwrap();
            tcp.set_nodelay(true).unwrap();
            let name = ServerName::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST).into());
            let tls = connector.connect(name, tcp).await.unwrap();
            let suite = tls.get_ref().1.negotiated_cipher_suite().unwrap().suite();
            assert_eq!(suite, rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
            assert_eq!(
                tls.get_ref().1.protocol_version(),
                Some(rustls::ProtocolVersion::TLSv1_3)
            );
            connections.push(Connection::new(tls));
        }
        // One answer decoded whole, to know that the row measures a served key.
        connections[0].fetch(&request).await;
        KeyResponse::decode(connections[0].body()).expect("not a key response");

        let (warmup, measure) = match settings.count {
            Some(n) => {
                let per = |n: u64| (n / settings.connections as u64).max(1);
                (Phase::Count(per(n / 10)), Phase::Count(per(n)))
            }
            None => (
                Phase::Until(Instant::now() + Duration::from_secs(1)),
                Phase::Until(Instant::now() + Duration::from_secs(1 + settings.secs)),
            ),
        };
        let connections = drive(connections, &request, warmup, &completed).await;
        let (threads, before) = server_threads();
        let strace = settings
            .strace
            .then(|| {
                Strace::attach(
                    &threads,
                    false,
                    std::env::temp_dir()
                        .join(format!("e2m-bench-strace-emks-{}", std::process::id())),
                )
            })
            .flatten();
        let done_before = completed.load(Ordering::Relaxed);
        let started = Instant::now();
        let measure = match measure {
            // After strace's attach time.
            Phase::Until(_) => Phase::Until(Instant::now() + Duration::from_secs(settings.secs)),
            count => count,
        };
        let connections = drive(connections, &request, measure, &completed).await;
        let elapsed = started.elapsed();
        let requests = completed.load(Ordering::Relaxed) - done_before;
        let cpu = server_threads().1.saturating_sub(before);
        let syscalls = strace.and_then(Strace::finish);
        drop(connections);
        Row {
            name: format!(
                "EMKS: key fetch ({workers} server worker{})",
                if workers == 1 { "" } else { "s" }
            ),
            requests,
            elapsed,
            cpu,
            syscalls,
        }
    });
    server_runtime.block_on(emks.shutdown());
    server_runtime.shutdown_background();
    row
}

/// One client connection: a TLS stream and the octets received and not yet used.
struct Connection {
    tls: TlsStream<TcpStream>,
    input: Vec<u8>,
    /// Where the last response's body is in `input`, until the next fetch.
    body: std::ops::Range<usize>,
}

impl Connection {
    fn new(tls: TlsStream<TcpStream>) -> Self {
        Connection {
            tls,
            input: Vec::with_capacity(4096),
            body: 0..0,
        }
    }

    fn body(&self) -> &[u8] {
        &self.input[self.body.clone()]
    }

    /// Sends the request and reads its response, which must be 200 with a body.
    async fn fetch(&mut self, request: &[u8]) {
        self.input.drain(..self.body.end);
        self.body = 0..0;
        self.tls.write_all(request).await.unwrap();
        self.tls.flush().await.unwrap();
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut response = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(head) = response.parse(&self.input).unwrap() {
                assert_eq!(response.code, Some(200), "unexpected status");
                let length: usize = response
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
                    .expect("content-length");
                while self.input.len() < head + length {
                    self.read().await;
                }
                self.body = head..head + length;
                return;
            }
            self.read().await;
        }
    }

    async fn read(&mut self) {
        let mut buf = [0u8; 4096];
        let n = self.tls.read(&mut buf).await.unwrap();
        assert!(n > 0, "the server closed the connection");
        self.input.extend_from_slice(&buf[..n]);
    }
}

/// Every connection fetching back to back until `phase` ends; counts answers.
async fn drive(
    connections: Vec<Connection>,
    request: &Arc<[u8]>,
    phase: Phase,
    completed: &Arc<AtomicU64>,
) -> Vec<Connection> {
    let mut tasks = Vec::new();
    for mut connection in connections {
        let request = request.clone();
        let completed = completed.clone();
        tasks.push(tokio::spawn(async move {
            let mut sent = 0;
            loop {
                match phase {
                    Phase::Count(n) if sent >= n => break,
                    Phase::Until(t) if Instant::now() >= t => break,
                    _ => {}
                }
                connection.fetch(&request).await;
                sent += 1;
                completed.fetch_add(1, Ordering::Relaxed);
            }
            connection
        }));
    }
    let mut connections = Vec::new();
    for task in tasks {
        connections.push(task.await.unwrap());
    }
    connections
}
