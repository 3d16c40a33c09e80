//! When the server process has no file descriptor left, the accept loop closes a few
//! connections waiting for their ClientHello (from the source holding the most) and takes
//! the new connection (issue 16 item 2): silent connections must not lock a legitimate
//! EMSE out by exhausting descriptors either, whatever `RLIMIT_NOFILE` the operator set.
//!
//! The EMKS runs in a child process (this test binary again, running only
//! `child_emks_with_64_descriptors`) whose soft `RLIMIT_NOFILE` is 64, so that the
//! attacker and the EMSE, here, are not bound by it. Unix only (`RLIMIT_NOFILE`).

#![cfg(unix)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests"
)]

mod server_support;

use std::io::{BufRead, BufReader, Read};
use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2m_emks::{Emks, EmksConfig};
use e2m_https::client::{ClientOptions, EmksClient};
use e2m_https::emks::{EmksServerOptions, start_emks};
use e2m_https::pki::PkiDir;
use server_support::TestPki;
use tokio::net::{TcpSocket, TcpStream};

/// Set (to the PKI directory) in the child's environment.
const CHILD: &str = "E2M_HTTPS_OUT_OF_DESCRIPTORS_CHILD";

/// The child's descriptor budget.
const CHILD_FDS: u64 = 64;

/// Not a test of its own: the EMKS of the test below, in its child process (without the
/// variable, it returns at once). It serves until its standard input closes.
#[test]
fn child_emks_with_64_descriptors() {
    let Ok(pki) = std::env::var(CHILD) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let pki = PkiDir::open(std::path::Path::new(&pki)).unwrap();
        let emks = start_emks(
            Arc::new(Emks::in_memory(EmksConfig::default())),
            &pki,
            EmksServerOptions {
                notifications: false,
                ..EmksServerOptions::default()
            },
        )
        .await
        .unwrap();
        use rustix::process::{Resource, getrlimit, setrlimit};
        let mut limit = getrlimit(Resource::Nofile);
        limit.current = Some(CHILD_FDS);
        setrlimit(Resource::Nofile, limit).unwrap();
        let open = std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count);
        println!(
            "listening on {} with {open} descriptors open",
            emks.local_addr()
        );
        // Until the parent closes our standard input (or dies).
        tokio::task::spawn_blocking(|| {
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
        })
        .await
        .unwrap();
        emks.shutdown().await;
    });
}

/// The child, killed (by its own handle) when dropped.
struct ChildEmks(Child);

impl Drop for ChildEmks {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emse_gets_in_when_the_server_has_no_descriptor_left() {
    let pki = TestPki::new();
    let mut child = ChildEmks(
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_emks_with_64_descriptors",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CHILD, pki.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let addr: SocketAddr = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stdout).lines();
        loop {
            let line = lines.next().expect("the child ended").unwrap();
            // (After libtest's "test child_emks_with_64_descriptors ... " on the same line.)
            if let Some(at) = line.find("listening on ") {
                let rest = &line[at + "listening on ".len()..];
                println!("child: {}", &line[at..]);
                return rest.split(' ').next().unwrap().parse().unwrap();
            }
        }
    })
    .await
    .unwrap();

    // 200 silent connections from 4 sources, three times what the child can hold: it
    // runs out of descriptors with most of them still in its accept queue.
    let mut silent = Vec::new();
    for i in 0..200u8 {
        let socket = TcpSocket::new_v4().unwrap();
        socket
            .bind(SocketAddr::new(IpAddr::from([127, 0, 0, 2 + i % 4]), 0))
            .unwrap();
        let tcp: TcpStream = socket.connect(addr).await.unwrap();
        silent.push(tcp);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    let ca = pki.ca();
    let credentials = pki.emse("emse-a");
    let options = ClientOptions {
        connect_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(2),
        ..ClientOptions::default()
    };
    let base = format!("https://{addr}");
    let mut times = Vec::new();
    for i in 0..10 {
        let client = EmksClient::with_options(&base, &credentials, &ca, &options).unwrap();
        let started = Instant::now();
        let registered = tokio::time::timeout(Duration::from_secs(1), client.register(None)).await;
        assert!(
            matches!(registered, Ok(Ok(_))),
            "registration {i} behind {} silent connections: {registered:?} after {:?}",
            silent.len(),
            started.elapsed()
        );
        times.push(started.elapsed());
    }
    println!("10 registrations with the EMKS out of descriptors: {times:?}");
    drop(silent);
}
