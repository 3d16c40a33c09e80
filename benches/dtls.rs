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
//! sleeps. `E2M_BENCH_DTLS_ONLY=emse` (or `openssl`, or `floor`) runs only that row, for
//! `strace -f` or `valgrind --tool=callgrind --separate-threads=yes` (that run prints the
//! client's thread id and the server's process id).
//!
//! What bounds the ratio on a given machine (issue 20, goal 3). Two more lines read it in
//! the same run. First, each side's CPU split between user space and the kernel (`/proc`
//! `stat` ticks), and an estimate of the ratio were the user space of both the EMSE server
//! and the UE free: the median handshake of each row less the user time our code spends in
//! it, waits unchanged. Second, the floor: a row with the same datagrams, the same round
//! trips and a new client socket per handshake, with no DTLS and no runtime (two threads on
//! blocking sockets); no server completes this bench's handshake faster, so the floor's
//! rate over `openssl s_server`'s bounds what any server could reach, and the time above
//! the floor compares the two rows' DTLS work. On a virtual machine whose loopback
//! datagram costs the sender a cross-CPU wake-up and the receiver a halt and resume, the
//! kernel's share is the larger part of both sides, and no change to the user-space code of
//! the EMSE or the UE moves the ratio past the estimate; only the runtimes' own system calls
//! lie between it and the floor.

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
/// the CPU; status: voluntary switches are sleeps, each followed by a wake-up; stat: the
/// time in user space and in the kernel, in ticks of 10 ms, so read over many handshakes).
#[derive(Clone, Copy, Debug, Default)]
struct Usage {
    cpu: Duration,
    sleeps: u64,
    preempted: u64,
    /// Ticks (USER_HZ, 100 on Linux) in user space and in the kernel.
    user_ticks: u64,
    kernel_ticks: u64,
}

impl Usage {
    fn since(self, before: Usage) -> Usage {
        Usage {
            cpu: self.cpu.saturating_sub(before.cpu),
            sleeps: self.sleeps.saturating_sub(before.sleeps),
            preempted: self.preempted.saturating_sub(before.preempted),
            user_ticks: self.user_ticks.saturating_sub(before.user_ticks),
            kernel_ticks: self.kernel_ticks.saturating_sub(before.kernel_ticks),
        }
    }

    fn add(&mut self, other: Usage) {
        self.cpu += other.cpu;
        self.sleeps += other.sleeps;
        self.preempted += other.preempted;
        self.user_ticks += other.user_ticks;
        self.kernel_ticks += other.kernel_ticks;
    }

    /// The share of the CPU time spent in the kernel (system calls, the loopback's
    /// delivery and wake-ups), from the ticks; `None` under a second of ticks, too few for
    /// a share (a tick is 10 ms).
    fn kernel_share(&self) -> Option<f64> {
        let ticks = self.user_ticks + self.kernel_ticks;
        (ticks >= 100).then(|| self.kernel_ticks as f64 / ticks as f64)
    }

    /// CPU time in user space, in microseconds per handshake: the CPU time split by the
    /// ticks' shares.
    fn user_us_per(&self, handshakes: usize) -> Option<f64> {
        let user = 1.0 - self.kernel_share()?;
        Some(self.cpu.as_secs_f64() * 1e6 * user / handshakes.max(1) as f64)
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
        // stat: after the command name in parentheses, fields 3 onwards; utime and stime
        // are fields 14 and 15.
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
        let mut times = stat
            .rfind(')')
            .map(|end| stat[end + 1..].split_whitespace().skip(11))
            .into_iter()
            .flatten()
            .map(|t| t.parse::<u64>().unwrap_or(0));
        Usage {
            cpu: Duration::from_nanos(on_cpu),
            sleeps: field("voluntary_ctxt_switches:"),
            preempted: field("nonvoluntary_ctxt_switches:"),
            user_ticks: times.next().unwrap_or(0),
            kernel_ticks: times.next().unwrap_or(0),
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

/// The octets of one handshake's datagrams as this bench's client and the EMSE send them
/// (read with `strace -f` on a run of `E2M_BENCH_DTLS_ONLY=emse`): the client's ClientHello,
/// ClientHello with cookie, ClientKeyExchange + ChangeCipherSpec + Finished, close_notify;
/// the server's HelloVerifyRequest, ServerHello + ServerHelloDone, ChangeCipherSpec +
/// Finished, close_notify. Distinct sizes, so the floor's server knows which flight it got.
const CLIENT_FLIGHTS: [usize; 4] = [114, 146, 133, 31];
const SERVER_FLIGHTS: [usize; 4] = [60, 108, 67, 31];

/// The name of the floor's server thread.
const FLOOR_SERVER: &str = "floor-server";

/// The machine's floor under any DTLS handshake in this bench: the same datagrams, the same
/// round trips and a new client socket per handshake (bound, connected, closed), with no
/// DTLS and no runtime on either side: a thread on a blocking socket answers each client
/// flight with the server flight of its size, and the client (this bench's thread, as in
/// the other rows) waits on a blocking socket. Neither side computes anything, so a
/// handshake here costs only what the machine charges for moving the datagrams and for
/// waking the thread that waits for each. No server, however cheap, completes this
/// bench's handshake faster (the client's DTLS work comes on top), so the floor's rate over
/// `openssl s_server`'s is the highest ratio any server could reach on this machine, with a
/// client that cost nothing.
struct UdpFloor {
    addr: SocketAddr,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl UdpFloor {
    fn start() -> Result<UdpFloor, String> {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let addr = socket.local_addr().map_err(|e| e.to_string())?;
        let thread = std::thread::Builder::new()
            .name(FLOOR_SERVER.into())
            .spawn(move || {
                let mut buf = [0u8; MAX_FLIGHT];
                let answers = [0u8; MAX_FLIGHT];
                while let Ok((len, from)) = socket.recv_from(&mut buf) {
                    // Anything but a client flight (the drop's one octet) stops it.
                    let Some(flight) = CLIENT_FLIGHTS.iter().position(|&size| size == len) else {
                        break;
                    };
                    // A full send buffer would drop the answer, as UDP may; the client's
                    // read then times out and the row fails rather than report a figure.
                    let _ = socket.send_to(&answers[..SERVER_FLIGHTS[flight]], from);
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(UdpFloor {
            addr,
            thread: Some(thread),
        })
    }

    fn sides(&self) -> Sides {
        Sides {
            server_pid: std::process::id(),
            server_threads: FLOOR_SERVER,
        }
    }

    /// One handshake's datagrams from a new socket, as the UE sends them: it closes after
    /// its close_notify without waiting for the server's (RFC 5246 §7.2.1 allows it).
    fn exchange(&self) -> std::io::Result<()> {
        let flights = [0u8; MAX_FLIGHT];
        let mut buf = [0u8; MAX_FLIGHT];
        let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
        socket.set_read_timeout(Some(Duration::from_secs(5)))?;
        socket.connect(self.addr)?;
        for (i, &size) in CLIENT_FLIGHTS.iter().enumerate() {
            socket.send(&flights[..size])?;
            if i + 1 < CLIENT_FLIGHTS.len() {
                socket.recv(&mut buf)?;
            }
        }
        Ok(())
    }

    /// `n` exchanges one after another, measured as [`sequential`] measures a server. It
    /// blocks the calling thread (the client's, in every layout of this bench), which is
    /// what a client on blocking sockets does.
    fn sequential(&self, n: usize) -> Result<Row, String> {
        let failed = |e: std::io::Error| format!("UDP floor: {e}");
        for _ in 0..n.min(20) {
            self.exchange().map_err(failed)?;
        }
        let mut latencies = Vec::with_capacity(n);
        let sides = self.sides();
        let (server_before, client_before) = sides.read();
        let start = Instant::now();
        for _ in 0..n {
            let began = Instant::now();
            self.exchange().map_err(failed)?;
            latencies.push(began.elapsed());
        }
        let elapsed = start.elapsed();
        let (server_after, client_after) = sides.read();
        Ok(Row {
            name: String::new(),
            handshakes: n,
            elapsed,
            latencies,
            server: server_after.since(server_before),
            client: client_after.since(client_before),
        })
    }
}

impl Drop for UdpFloor {
    fn drop(&mut self) {
        // One octet, not a client flight: the server thread ends.
        let _ = std::net::UdpSocket::bind("127.0.0.1:0").and_then(|s| s.send_to(&[0], self.addr));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The largest flight of [`CLIENT_FLIGHTS`] and [`SERVER_FLIGHTS`].
const MAX_FLIGHT: usize = 256;

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
    let floor = UdpFloor::start()?;
    if let Some(which) = only {
        let (addr, sides) = match which {
            "emse" => (server_addr, server.sides()),
            "openssl" => (openssl_addr, openssl_server.sides()),
            "floor" => {
                let mut row = floor.sequential(n)?;
                row.name = "UDP floor, sequential".into();
                print_header();
                row.print();
                return Ok(());
            }
            other => {
                return Err(format!(
                    "E2M_BENCH_DTLS_ONLY={other}: emse, openssl or floor"
                ));
            }
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
    let mut bare = Row::empty("UDP floor: same datagrams, no DTLS");
    let mut ratios = Vec::with_capacity(rounds);
    let mut bounds = Vec::with_capacity(rounds);
    let per_round = (n / rounds).max(1);
    for _ in 0..rounds {
        let ours = sequential("", server_addr, &config, per_round, server.sides()).await?;
        let theirs =
            sequential("", openssl_addr, &config, per_round, openssl_server.sides()).await?;
        let nothing = floor.sequential(per_round)?;
        ratios.push(ours.rate() / theirs.rate());
        bounds.push(nothing.rate() / theirs.rate());
        emse.absorb(ours);
        openssl.absorb(theirs);
        bare.absorb(nothing);
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
    bare.print();
    together.print();
    let median = median_of(&mut ratios);
    println!(
        "EMSE / openssl handshakes per second (sequential, cookie exchange on both): \
         {whole_ratio:.2}x over all rounds; median of {rounds} rounds {median:.2}x \
         (rounds: {}); p50 latency ratio {latency_ratio:.2}x",
        listed(&ratios)
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
    // What our code can move: the time in user space. The rest of each side's CPU is the
    // kernel's (system calls, the loopback's delivery of each datagram, the wake-up of the
    // thread waiting for it), which any server on these sockets pays per datagram.
    // The median handshake: a datagram lost on loopback (rare, but a full receive buffer
    // drops one) costs a retransmission timer of a second, which would dominate a mean.
    let per_handshake_us = |row: &Row| row.median_latency().as_secs_f64() * 1e6;
    print_kernel_shares(&emse, &openssl, per_handshake_us);
    // What the machine charges for the datagrams and wake-ups alone bounds the ratio: a
    // server that cost nothing would still take the floor's time per handshake.
    let floor_us = per_handshake_us(&bare);
    println!(
        "the floor (same datagrams and sockets, no DTLS, blocking threads): {floor_us:.1} us per \
         handshake (median); floor / openssl, the most any server could reach here: median of {rounds} \
         rounds {:.2}x (rounds: {}); median time above the floor (DTLS work of server \
         and client, and the runtime's): openssl {:.1} us / EMSE {:.1} us = {:.2}x",
        median_of(&mut bounds),
        listed(&bounds),
        per_handshake_us(&openssl) - floor_us,
        per_handshake_us(&emse) - floor_us,
        (per_handshake_us(&openssl) - floor_us) / (per_handshake_us(&emse) - floor_us),
    );
    println!(
        "spoofed first ClientHellos answered statelessly (HelloVerifyRequest, no peer state): \
         {answered} of {spoofed}, {:.0}/s, {:.1} us each (sender included)",
        answered as f64 / took.as_secs_f64(),
        took.as_secs_f64() * 1e6 / answered.max(1) as f64
    );
    Ok(())
}

/// Each side's kernel share, and the ratio estimated for an EMSE and a UE whose user space
/// cost nothing (the median handshake of each row less the user time of our code in it).
fn print_kernel_shares(emse: &Row, openssl: &Row, per_handshake_us: impl Fn(&Row) -> f64) {
    let shares = (|| {
        let emse_server = emse.server.user_us_per(emse.handshakes)?;
        let emse_ue = emse.client.user_us_per(emse.handshakes)?;
        let openssl_server = openssl.server.user_us_per(openssl.handshakes)?;
        let openssl_ue = openssl.client.user_us_per(openssl.handshakes)?;
        let percent = |usage: &Usage| usage.kernel_share().map_or(0.0, |k| 100.0 * k);
        let emse_without_user = per_handshake_us(emse) - emse_server - emse_ue;
        let openssl_without_ue = per_handshake_us(openssl) - openssl_ue;
        Some(format!(
            "kernel share of CPU (/proc stat ticks): EMSE server {:.0}% ({emse_server:.1} us \
             per handshake in user space), UE client {:.0}% ({emse_ue:.1} us), openssl \
             s_server {:.0}% ({openssl_server:.1} us); estimate, were the EMSE's and the UE's \
             user space free (waits unchanged): EMSE {emse_without_user:.1} us, openssl \
             {openssl_without_ue:.1} us per handshake, {:.2}x",
            percent(&emse.server),
            percent(&emse.client),
            percent(&openssl.server),
            openssl_without_ue / emse_without_user,
        ))
    })();
    println!(
        "{}",
        shares.unwrap_or_else(
            || "kernel share of CPU: too few ticks in this run (a tick is \
            10 ms; E2M_BENCH_HANDSHAKES=10000 gives seconds)"
                .into()
        )
    );
}

/// The median of `values` (sorted in place).
fn median_of(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// `values` with two decimals, space-separated.
fn listed(values: &[f64]) -> String {
    values
        .iter()
        .map(|r| format!("{r:.2}"))
        .collect::<Vec<_>>()
        .join(" ")
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
