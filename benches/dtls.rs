//! DTLS 1.2 PSK handshakes per second (TLS_PSK_WITH_AES_128_CCM_8) of the EMSE's server
//! (`e2m_dtls::server`, on dimpl) against a stock `openssl s_server` with the same suite and
//! PSK, measured in the same run with the same client (`e2m_dtls::client`, the UE) on
//! 127.0.0.1. Prints a table.
//!
//! ```text
//! cargo bench --bench dtls                 # 300 handshakes per row, in 5 rounds
//! E2M_BENCH_HANDSHAKES=1000 E2M_BENCH_ROUNDS=10 cargo bench --bench dtls
//! ```
//!
//! Each handshake is a full one: ClientHello, HelloVerifyRequest, ClientHello with cookie,
//! ServerHello(Done), ClientKeyExchange + CCS + Finished, CCS + Finished, then the client's
//! close_notify. The cookie exchange is on for both servers: the EMSE's dispatcher answers
//! statelessly and starts a peer only for a returned cookie (RFC 6347 §4.2.1), and
//! `openssl s_server` sets `SSL_OP_COOKIE_EXCHANGE` for DTLS (its first answer is a
//! HelloVerifyRequest, as `s_client -msg` shows). `openssl s_server` serves one connection
//! at a time, so the comparison row is sequential; the EMSE is also measured with 8 UEs at
//! once, and the cost of a spoofed first ClientHello is measured (answered statelessly).
//! The two sequential rows alternate in rounds; the ratio line is the issue 9 figure
//! (goal: at least 2x): over all rounds, the median of the per-round ratios (robust to
//! load from other processes), and the ratio of median latencies. Run under `cargo test`
//! (`--test` in the arguments) it does a 3-handshake smoke run.
//!
//! Where the time goes (issue 20). The EMSE server runs on a runtime of its own, two
//! worker threads named `emse-server`; the client (the main thread) waits in that
//! runtime's `block_on`, so its socket's events reach it through those workers, as in this
//! bench before issue 20. `E2M_BENCH_CLIENT=own` gives the client a single-threaded runtime
//! of its own instead (the UE as a separate party, as `openssl s_server` is a separate
//! process): then the server's columns are the server's alone. `E2M_BENCH_SERVER_THREADS=1`
//! runs the EMSE on one thread (with `E2M_BENCH_CLIENT=own`). The table adds, per
//! handshake and read from `/proc` per thread: the server's CPU time, its sleeps (voluntary
//! context switches, each a wake-up later) and preemptions, and the client's CPU time and
//! sleeps. The last lines compare the servers' CPU per handshake, which unlike the rates
//! does not depend on how long the machine takes to wake a sleeping thread, and their
//! sleeps. `E2M_BENCH_DTLS_ONLY=emse` (or `openssl`) runs only that server's sequential
//! row, for `strace -f` or `valgrind --tool=callgrind --separate-threads=yes` (that run
//! prints the client's thread id and the server's process id).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2m_dtls::DtlsLimits;
use e2m_dtls::StaticPsk;
use e2m_dtls::client::{DtlsClient, UeDtlsConfig};
use e2m_dtls::server::{DtlsServer, ServerConfig, ServerHandle, default_handler};
use e2m_kdf::E2mKey;
use e2m_keyid::{AppIdentity, KeyId, PskIdentity};

const PSK_HEX: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0";

/// CPU time and context switches of some threads, from `/proc` (schedstat: nanoseconds on
/// the CPU; status: voluntary switches are sleeps, each followed by a wake-up).
#[derive(Clone, Copy, Debug, Default)]
struct Usage {
    cpu: Duration,
    sleeps: u64,
    preempted: u64,
}

impl Usage {
    fn since(self, before: Usage) -> Usage {
        Usage {
            cpu: self.cpu.saturating_sub(before.cpu),
            sleeps: self.sleeps.saturating_sub(before.sleeps),
            preempted: self.preempted.saturating_sub(before.preempted),
        }
    }

    fn add(&mut self, other: Usage) {
        self.cpu += other.cpu;
        self.sleeps += other.sleeps;
        self.preempted += other.preempted;
    }

    /// The threads of process `pid` whose name starts with `prefix` (all: "").
    fn of_threads(pid: u32, prefix: &str) -> Usage {
        let mut total = Usage::default();
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return total;
        };
        for task in tasks.flatten() {
            let dir = task.path();
            let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
            if comm.trim_end().starts_with(prefix) {
                total.add(Usage::of_task(&dir));
            }
        }
        total
    }

    /// One thread, by its `/proc/<pid>/task/<tid>` directory.
    fn of_task(dir: &std::path::Path) -> Usage {
        let on_cpu = std::fs::read_to_string(dir.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0);
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        Usage {
            cpu: Duration::from_nanos(on_cpu),
            sleeps: field("voluntary_ctxt_switches:"),
            preempted: field("nonvoluntary_ctxt_switches:"),
        }
    }
}

/// Whose threads make up "the server" and "the client" of a row.
#[derive(Clone, Copy)]
struct Sides {
    server_pid: u32,
    server_threads: &'static str,
}

impl Sides {
    /// (server, client): the client is the main thread, whose id is the process id.
    fn read(self) -> (Usage, Usage) {
        let me = std::process::id();
        let client = Usage::of_task(std::path::Path::new(&format!("/proc/{me}/task/{me}")));
        (
            Usage::of_threads(self.server_pid, self.server_threads),
            client,
        )
    }
}

/// The name of the EMSE server's runtime threads.
const SERVER_THREADS: &str = "emse-server";

struct Row {
    name: String,
    handshakes: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    server: Usage,
    client: Usage,
}

impl Row {
    fn empty(name: &str) -> Row {
        Row {
            name: name.into(),
            handshakes: 0,
            elapsed: Duration::ZERO,
            latencies: Vec::new(),
            server: Usage::default(),
            client: Usage::default(),
        }
    }

    fn rate(&self) -> f64 {
        self.handshakes as f64 / self.elapsed.as_secs_f64()
    }

    fn absorb(&mut self, round: Row) {
        self.handshakes += round.handshakes;
        self.elapsed += round.elapsed;
        self.latencies.extend(round.latencies);
        self.server.add(round.server);
        self.client.add(round.client);
    }

    /// Server CPU per handshake, in microseconds.
    fn server_cpu_us(&self) -> f64 {
        self.server.cpu.as_secs_f64() * 1e6 / self.handshakes.max(1) as f64
    }

    fn median_latency(&self) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        sorted.get(sorted.len() / 2).copied().unwrap_or_default()
    }

    fn print(&mut self) {
        self.latencies.sort();
        let pct = |p: f64| {
            let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
            self.latencies
                .get(i)
                .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        let per = |n: u64| n as f64 / self.handshakes.max(1) as f64;
        println!(
            "{:<44} {:>6} {:>12.0} {:>9.3} {:>9.3} {:>10.1} {:>7.1} {:>7.1} {:>10.1} {:>7.1}",
            self.name,
            self.handshakes,
            self.handshakes as f64 / self.elapsed.as_secs_f64(),
            pct(0.5),
            pct(0.99),
            self.server_cpu_us(),
            per(self.server.sleeps),
            per(self.server.preempted),
            self.client.cpu.as_secs_f64() * 1e6 / self.handshakes.max(1) as f64,
            per(self.client.sleeps),
        );
    }
}

async fn one(addr: SocketAddr, config: &UeDtlsConfig) -> Result<Duration, String> {
    let start = Instant::now();
    let ue = DtlsClient::connect(addr, config)
        .await
        .map_err(|e| e.to_string())?;
    let took = start.elapsed();
    ue.close().await.map_err(|e| e.to_string())?;
    Ok(took)
}

async fn sequential(
    name: &str,
    addr: SocketAddr,
    config: &UeDtlsConfig,
    n: usize,
    sides: Sides,
) -> Result<Row, String> {
    for _ in 0..n.min(20) {
        one(addr, config).await?;
    }
    let mut latencies = Vec::with_capacity(n);
    let (server_before, client_before) = sides.read();
    let start = Instant::now();
    for _ in 0..n {
        latencies.push(one(addr, config).await?);
    }
    let elapsed = start.elapsed();
    let (server_after, client_after) = sides.read();
    Ok(Row {
        name: name.into(),
        handshakes: n,
        elapsed,
        latencies,
        server: server_after.since(server_before),
        client: client_after.since(client_before),
    })
}

async fn concurrent(
    name: &str,
    addr: SocketAddr,
    config: Arc<UeDtlsConfig>,
    n: usize,
    parallel: usize,
) -> Result<Row, String> {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..parallel {
        let config = Arc::clone(&config);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            for _ in 0..n / parallel {
                lat.push(one(addr, &config).await?);
            }
            Ok::<_, String>(lat)
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.map_err(|e| e.to_string())??);
    }
    Ok(Row {
        name: name.into(),
        handshakes: latencies.len(),
        elapsed: start.elapsed(),
        latencies,
        ..Row::empty("")
    })
}

/// The UE's first ClientHello, caught by a socket that plays the server.
async fn first_client_hello(config: &UeDtlsConfig) -> Result<Vec<u8>, String> {
    let catcher = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = catcher.local_addr().map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 2048];
    tokio::select! {
        ended = DtlsClient::connect(addr, config) => {
            Err(format!("the UE sent no ClientHello: {:?}", ended.map(|_| ())))
        }
        caught = catcher.recv_from(&mut buf) => {
            let (n, _) = caught.map_err(|e| e.to_string())?;
            buf.truncate(n);
            Ok(buf)
        }
    }
}

/// What a spoofed first ClientHello costs the EMSE: about `n` of them from one socket, in
/// bursts of 32, each answered by the dispatcher with a stateless HelloVerifyRequest (no
/// task, no state, no key fetch). Returns (sent, answered, elapsed).
async fn stateless_answers(
    addr: SocketAddr,
    hello: &[u8],
    n: usize,
) -> Result<(usize, usize, Duration), String> {
    const BURST: usize = 32;
    let bursts = n.div_ceil(BURST);
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 2048];
    let mut answered = 0;
    let start = Instant::now();
    for _ in 0..bursts {
        for _ in 0..BURST {
            socket
                .send_to(hello, addr)
                .await
                .map_err(|e| e.to_string())?;
        }
        for _ in 0..BURST {
            match tokio::time::timeout(Duration::from_millis(200), socket.recv(&mut buf)).await {
                Ok(Ok(_)) => answered += 1,
                _ => break,
            }
        }
    }
    Ok((bursts * BURST, answered, start.elapsed()))
}

/// `openssl s_server`, killed on drop.
struct OpenSsl(Child);

impl OpenSsl {
    fn sides(&self) -> Sides {
        Sides {
            server_pid: self.0.id(),
            server_threads: "",
        }
    }
}

impl Drop for OpenSsl {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_openssl() -> Result<(OpenSsl, SocketAddr), String> {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let accept = format!("127.0.0.1:{port}");
    let mut child = Command::new("openssl")
        .args([
            "s_server",
            "-dtls1_2",
            "-accept",
            &accept,
            "-nocert",
            "-psk",
            PSK_HEX,
            "-cipher",
            "PSK-AES128-CCM8",
            "-quiet",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("openssl s_server: {e} (apt-get install -y openssl)"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let guard = OpenSsl(child);
    // -quiet prints nothing on start; give it a moment, then drain its output in the
    // background so that it never blocks on a full pipe.
    std::thread::spawn(move || for _ in BufReader::new(stdout).lines() {});
    std::thread::sleep(Duration::from_millis(300));
    Ok((guard, accept.parse().map_err(|e| format!("{e}"))?))
}

/// The EMSE server, on its own runtime: two workers named [`SERVER_THREADS`], or with
/// `E2M_BENCH_SERVER_THREADS=1` one thread of that name running a single-threaded runtime
/// (as `openssl s_server` is one thread).
struct Emse {
    handle: ServerHandle,
    _runtime: ServerRuntime,
}

enum ServerRuntime {
    Workers {
        _runtime: tokio::runtime::Runtime,
    },
    /// The thread, and the sender whose drop ends it.
    OneThread(
        Option<std::thread::JoinHandle<()>>,
        Option<std::sync::mpsc::Sender<()>>,
    ),
}

impl Drop for ServerRuntime {
    fn drop(&mut self) {
        if let ServerRuntime::OneThread(thread, stop) = self {
            drop(stop.take());
            if let Some(t) = thread.take() {
                let _ = t.join();
            }
        }
    }
}

async fn bind_emse() -> Result<ServerHandle, String> {
    let psk = E2mKey::from_hex(PSK_HEX).map_err(|e| e.to_string())?;
    DtlsServer::bind(
        "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?,
        StaticPsk(psk),
        default_handler(),
        ServerConfig::default(),
    )
    .await
    .map_err(|e| e.to_string())
}

fn start_emse(threads: usize) -> Result<Emse, String> {
    if threads > 1 {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name(SERVER_THREADS)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let handle = runtime.block_on(bind_emse())?;
        return Ok(Emse {
            handle,
            _runtime: ServerRuntime::Workers { _runtime: runtime },
        });
    }
    let (handle_tx, handle_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name(SERVER_THREADS.into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = handle_tx.send(Err(e.to_string()));
                    return;
                }
            };
            let handle = runtime.block_on(bind_emse());
            let _ = handle_tx.send(handle);
            // Serve until the bench drops the sender.
            runtime.block_on(async {
                let _ = tokio::task::spawn_blocking(move || stop_rx.recv()).await;
            });
        })
        .map_err(|e| e.to_string())?;
    let handle = handle_rx.recv().map_err(|e| e.to_string())??;
    Ok(Emse {
        handle,
        _runtime: ServerRuntime::OneThread(Some(thread), Some(stop_tx)),
    })
}

impl Emse {
    fn sides(&self) -> Sides {
        Sides {
            server_pid: std::process::id(),
            server_threads: SERVER_THREADS,
        }
    }
}

async fn run(n: usize, rounds: usize, server: &Emse, only: Option<&str>) -> Result<(), String> {
    let psk = E2mKey::from_hex(PSK_HEX).map_err(|e| e.to_string())?;
    let identity = PskIdentity::new(
        AppIdentity::new("sensor-17@iot.example.com").map_err(|e| e.to_string())?,
        KeyId::from_u32(0xae47bf35),
    );
    let config = Arc::new(
        UeDtlsConfig::new(&identity, &psk, DtlsLimits::default()).map_err(|e| e.to_string())?,
    );
    let server_addr = server.handle.local_addr();
    let (openssl_server, openssl_addr) = start_openssl()?;
    if let Some(which) = only {
        let (addr, sides) = match which {
            "emse" => (server_addr, server.sides()),
            "openssl" => (openssl_addr, openssl_server.sides()),
            other => return Err(format!("E2M_BENCH_DTLS_ONLY={other}: emse or openssl")),
        };
        println!(
            "only the {which} row: client thread {}, server pid {} (threads {:?})",
            std::process::id(),
            sides.server_pid,
            sides.server_threads
        );
        let mut row = sequential(&format!("{which}, sequential"), addr, &config, n, sides).await?;
        print_header();
        row.print();
        return Ok(());
    }
    print_header();
    // The two sequential rows alternate in rounds, so that a burst of load from other
    // processes on a shared machine falls on both rather than on one.
    let mut emse = Row::empty("EMSE server (dimpl), sequential");
    let mut openssl = Row::empty("openssl s_server, sequential");
    let mut ratios = Vec::with_capacity(rounds);
    let per_round = (n / rounds).max(1);
    for _ in 0..rounds {
        let ours = sequential("", server_addr, &config, per_round, server.sides()).await?;
        let theirs =
            sequential("", openssl_addr, &config, per_round, openssl_server.sides()).await?;
        ratios.push(ours.rate() / theirs.rate());
        emse.absorb(ours);
        openssl.absorb(theirs);
    }
    let latency_ratio =
        openssl.median_latency().as_secs_f64() / emse.median_latency().as_secs_f64();
    let mut together = concurrent(
        "EMSE server (dimpl), 8 UEs at once",
        server_addr,
        Arc::clone(&config),
        n,
        8,
    )
    .await?;
    let whole_ratio = emse.rate() / openssl.rate();
    let hello = first_client_hello(&config).await?;
    let (spoofed, answered, took) = stateless_answers(server_addr, &hello, n * 10).await?;
    emse.print();
    openssl.print();
    together.print();
    ratios.sort_by(f64::total_cmp);
    let median = ratios.get(ratios.len() / 2).copied().unwrap_or(f64::NAN);
    println!(
        "EMSE / openssl handshakes per second (sequential, cookie exchange on both): \
         {whole_ratio:.2}x over all rounds; median of {rounds} rounds {median:.2}x \
         (rounds: {}); p50 latency ratio {latency_ratio:.2}x",
        ratios
            .iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "server CPU per handshake (sequential rows; independent of wake-up delays): \
         openssl {:.1} us / EMSE {:.1} us = {:.2}x; server sleeps per handshake: openssl {:.1}, \
         EMSE {:.1}",
        openssl.server_cpu_us(),
        emse.server_cpu_us(),
        openssl.server_cpu_us() / emse.server_cpu_us(),
        openssl.server.sleeps as f64 / openssl.handshakes.max(1) as f64,
        emse.server.sleeps as f64 / emse.handshakes.max(1) as f64,
    );
    println!(
        "spoofed first ClientHellos answered statelessly (HelloVerifyRequest, no peer state): \
         {answered} of {spoofed}, {:.0}/s, {:.1} us each (sender included)",
        answered as f64 / took.as_secs_f64(),
        took.as_secs_f64() * 1e6 / answered.max(1) as f64
    );
    Ok(())
}

fn print_header() {
    println!(
        "{:<44} {:>6} {:>12} {:>9} {:>9} {:>10} {:>7} {:>7} {:>10} {:>7}",
        "DTLS 1.2 PSK-AES128-CCM8, client = e2m UE",
        "n",
        "handshakes/s",
        "p50 ms",
        "p99 ms",
        "server us",
        "sleeps",
        "preempt",
        "client us",
        "sleeps"
    );
    println!("{:>111}", "(server and client columns: per handshake)");
}

fn main() {
    let smoke = std::env::args().any(|a| a == "--test");
    let from_env = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|&v| v > 0)
            .unwrap_or(default)
    };
    let (n, rounds) = if smoke {
        (3, 1)
    } else {
        (
            from_env("E2M_BENCH_HANDSHAKES", 300),
            from_env("E2M_BENCH_ROUNDS", 5),
        )
    };
    let only = std::env::var("E2M_BENCH_DTLS_ONLY").ok();
    // The client: this thread, its own single-threaded runtime (a UE is one thread).
    let server_threads = from_env("E2M_BENCH_SERVER_THREADS", 2);
    let shared = !std::env::var("E2M_BENCH_CLIENT").is_ok_and(|v| v == "own");
    let result = start_emse(server_threads).and_then(|emse| {
        if shared && let ServerRuntime::Workers { _runtime: runtime } = &emse._runtime {
            // The client in the server's runtime (the default, and the layout of this
            // bench before issue 20): its socket's events reach it through the workers.
            return runtime.block_on(run(n, rounds, &emse, only.as_deref()));
        }
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?
            .block_on(run(n, rounds, &emse, only.as_deref()))
    });
    if let Err(message) = result {
        eprintln!("dtls bench: {message}");
        std::process::exit(1);
    }
}
