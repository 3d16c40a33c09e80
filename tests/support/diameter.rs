//! Helpers of the Diameter interop and fault tests (issue 17): the real peers of
//! `tests/diameter/` (python-diameter, freeDiameter, tshark, pycrate) started on loopback,
//! an in-process EMKS with a counting store, and the tool checks (skip locally with a
//! message, fail under CI).

#![allow(dead_code, reason = "each test file uses a part of the helpers")]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2m_emks::{Emks, EmksConfig};
use e2m_keystore::{
    HeldKey, IntKeyStore, KeyInfo, MemoryIdentityMap, MemoryIntKeyStore, MemorySessionStore,
    MemorySubscriptionStore, PushOutcome, RetentionPolicy, StoreError,
};
use e2m_msg::{E2mIntKey, Imsi, KeyId, Timestamp};

/// The interop kit's directory.
pub(crate) fn kit() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("diameter")
}

/// Whether the tests must find their tools (`CI` set and not `false`/`0`: `.ci/test`
/// installs them); otherwise a missing tool skips the test with a message.
pub(crate) fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Checks the tools a test needs: `python3 -c import …`, programs on the PATH. Returns
/// false (the test then returns early) after printing what is missing, or panics under CI.
pub(crate) fn tools(python_modules: &[&str], programs: &[&str]) -> bool {
    let mut missing = Vec::new();
    for module in python_modules {
        let ok = Command::new("python3")
            .args(["-c", &format!("import {module}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            missing.push(format!("python module {module}"));
        }
    }
    for program in programs {
        let ok = Command::new("sh")
            .args(["-c", &format!("command -v {program}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            missing.push((*program).to_owned());
        }
    }
    if missing.is_empty() {
        return true;
    }
    let what = missing.join(", ");
    assert!(
        !under_ci(),
        "missing under CI: {what} (.ci/test installs python-diameter, pycrate, freediameterd, freediameter-extensions, tshark)"
    );
    eprintln!(
        "SKIPPED: {what} not installed; `bash .ci/test` installs them (PyPI python-diameter==0.9.0 pycrate==0.8.1; Debian freediameterd freediameter-extensions tshark)"
    );
    false
}

/// A free TCP port on 127.0.0.1 for a server the test starts next, below Linux's ephemeral
/// range (32768–60999): a port taken from that range could be given meanwhile to an
/// outgoing connection of another test running at the same time.
pub(crate) fn free_port() -> u16 {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let base = 20_000 + (std::process::id() as usize * 613) % 10_000;
    for _ in 0..10_000 {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let port = u16::try_from(20_000 + (base + n * 7) % 12_000).expect("a port");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 20000-31999");
}

/// A child process of the test that is killed (by its own handle) when dropped, and whose
/// stdout JSON lines are collected.
pub(crate) struct Peer {
    pub(crate) child: Child,
    pub(crate) lines: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Peer {
    pub(crate) fn spawn(command: &mut Command) -> Peer {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the peer");
        let stdout = child.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().expect("lines").push(line);
            }
        });
        Peer {
            child,
            lines,
            reader: Some(reader),
        }
    }

    /// Waits until a line contains `needle`, at most `limit`.
    pub(crate) fn wait_for(&self, needle: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self
                .lines
                .lock()
                .expect("lines")
                .iter()
                .any(|l| l.contains(needle))
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Waits for the process to end by itself, at most `limit`; its exit status.
    pub(crate) fn wait(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                if let Some(reader) = self.reader.take() {
                    let _ = reader.join();
                }
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// SIGTERM to this child (by its process id), so that it leaves cleanly.
    pub(crate) fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }

    /// The JSON lines whose `event` is `event`.
    pub(crate) fn events(&self, event: &str) -> Vec<String> {
        let tag = format!("\"event\": \"{event}\"");
        self.lines
            .lock()
            .expect("lines")
            .iter()
            .filter(|l| l.contains(&tag))
            .cloned()
            .collect()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// A field of a flat JSON line as text (strings without quotes), for the kit's outputs.
pub(crate) fn field(line: &str, name: &str) -> Option<String> {
    let key = format!("\"{name}\": ");
    let start = line.find(&key)? + key.len();
    let rest = &line[start..];
    if let Some(text) = rest.strip_prefix('"') {
        return text.find('"').map(|end| text[..end].to_owned());
    }
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    Some(rest[..end].trim().to_owned())
}

/// A memory key store that counts, per (IMSI, key id), the pushes it stored; each push
/// takes `delay` (a store commit's time).
#[derive(Debug)]
pub(crate) struct CountingStore {
    pub(crate) inner: MemoryIntKeyStore,
    pub(crate) delay: Duration,
    pub(crate) calls: Arc<AtomicUsize>,
    pub(crate) stored: Arc<Mutex<HashMap<(String, u32), usize>>>,
}

impl IntKeyStore for CountingStore {
    fn retention(&self) -> RetentionPolicy {
        self.inner.retention()
    }
    async fn push(
        &self,
        imsi: &Imsi,
        key_id: KeyId,
        key: &E2mIntKey,
        created: Timestamp,
        now: Timestamp,
    ) -> Result<PushOutcome, StoreError> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        self.calls.fetch_add(1, Ordering::SeqCst);
        let outcome = self.inner.push(imsi, key_id, key, created, now).await?;
        if matches!(outcome, PushOutcome::Stored { .. } | PushOutcome::Replaced) {
            *self
                .stored
                .lock()
                .expect("stored")
                .entry((imsi.as_str().to_owned(), key_id.as_u32()))
                .or_default() += 1;
        }
        Ok(outcome)
    }
    async fn get(
        &self,
        imsi: &Imsi,
        key_id: KeyId,
        now: Timestamp,
    ) -> Result<Option<HeldKey>, StoreError> {
        self.inner.get(imsi, key_id, now).await
    }
    async fn latest(&self, imsi: &Imsi, now: Timestamp) -> Result<Option<HeldKey>, StoreError> {
        self.inner.latest(imsi, now).await
    }
    async fn held(&self, imsi: &Imsi, now: Timestamp) -> Result<Vec<KeyInfo>, StoreError> {
        self.inner.held(imsi, now).await
    }
    async fn remove_ue(&self, imsi: &Imsi) -> Result<usize, StoreError> {
        self.inner.remove_ue(imsi).await
    }
    async fn sweep(&self, now: Timestamp) -> Result<Vec<(Imsi, KeyInfo)>, StoreError> {
        self.inner.sweep(now).await
    }
}

pub(crate) type CountingCore =
    Emks<CountingStore, MemoryIdentityMap, MemorySessionStore, MemorySubscriptionStore>;

/// What `counting_core` returns: the core, the store's push calls, and its stores per
/// (IMSI, key id).
pub(crate) type Counted = (
    Arc<CountingCore>,
    Arc<AtomicUsize>,
    Arc<Mutex<HashMap<(String, u32), usize>>>,
);

/// An in-memory EMKS core over a counting key store (keys kept 24 h, 4 per UE).
pub(crate) fn counting_core() -> Counted {
    counting_core_with_delay(Duration::ZERO)
}

/// As [`counting_core`], each store push taking `delay`.
pub(crate) fn counting_core_with_delay(delay: Duration) -> Counted {
    let calls = Arc::new(AtomicUsize::new(0));
    let stored = Arc::new(Mutex::new(HashMap::new()));
    let store = CountingStore {
        inner: MemoryIntKeyStore::new(
            RetentionPolicy::new(4, Duration::from_secs(86_400)).expect("policy"),
        ),
        delay,
        calls: calls.clone(),
        stored: stored.clone(),
    };
    let core = Emks::new(
        EmksConfig::default(),
        store,
        MemoryIdentityMap::new(),
        MemorySessionStore::new(Default::default()),
        MemorySubscriptionStore::new(Default::default()),
    );
    (Arc::new(core), calls, stored)
}

/// `fd_relay.py` (start/restart/stop) in a work directory; stopped when dropped.
pub(crate) struct Relay {
    pub(crate) workdir: PathBuf,
}

impl Relay {
    /// Starts freeDiameterd with `args` (after `start --workdir W`); returns once it
    /// listens and its ConnectPeers are open.
    pub(crate) fn start(workdir: &Path, args: &[String]) -> Relay {
        std::fs::create_dir_all(workdir).expect("workdir");
        let out = Command::new("python3")
            .arg(kit().join("fd_relay.py"))
            .args(["start", "--workdir"])
            .arg(workdir)
            .args(args)
            .output()
            .expect("fd_relay.py");
        assert!(
            out.status.success(),
            "freeDiameterd did not start: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Relay {
            workdir: workdir.to_owned(),
        }
    }

    /// Stops and starts it again with the same configuration (SIGTERM: it sends DPR with
    /// REBOOTING first); returns once it listens and its ConnectPeers are open.
    pub(crate) fn restart(&self) {
        let out = Command::new("python3")
            .arg(kit().join("fd_relay.py"))
            .args(["restart", "--workdir"])
            .arg(&self.workdir)
            .output()
            .expect("fd_relay.py");
        assert!(
            out.status.success(),
            "freeDiameterd did not restart: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Its log.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.workdir.join("freeDiameterd.log")).unwrap_or_default()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = Command::new("python3")
            .arg(kit().join("fd_relay.py"))
            .args(["stop", "--workdir"])
            .arg(&self.workdir)
            .output();
    }
}

/// 127.0.0.1 and a port.
pub(crate) fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Messages seen on the wire: (towards the upstream server?, octets), in the order read.
pub(crate) type Wire = Arc<Mutex<Vec<(bool, Vec<u8>)>>>;

/// A TCP forwarder that records every whole message in each direction: what our peers put
/// on the wire, for the independent decoders.
pub(crate) struct Recorder {
    pub(crate) addr: SocketAddr,
    /// (towards the upstream server?, message octets), in the order read.
    pub(crate) messages: Wire,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    pub(crate) async fn start(upstream: SocketAddr) -> Recorder {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let messages = Arc::new(Mutex::new(Vec::new()));
        let sink = messages.clone();
        let task = tokio::spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                let Ok(up) = tokio::net::TcpStream::connect(upstream).await else {
                    continue;
                };
                let (dr, dw) = down.into_split();
                let (ur, uw) = up.into_split();
                tokio::spawn(pump(dr, uw, true, sink.clone()));
                tokio::spawn(pump(ur, dw, false, sink.clone()));
            }
        });
        Recorder {
            addr,
            messages,
            task,
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    upstream: bool,
    sink: Wire,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 65536];
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let n = from.read(&mut buf).await.unwrap_or(0);
        if n == 0 {
            let _ = to.shutdown().await;
            return;
        }
        pending.extend_from_slice(&buf[..n]);
        while pending.len() >= 4 {
            let len = u32::from_be_bytes([0, pending[1], pending[2], pending[3]]) as usize;
            if len < 20 || pending.len() < len {
                break;
            }
            let message: Vec<u8> = pending.drain(..len).collect();
            sink.lock().expect("messages").push((upstream, message));
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
