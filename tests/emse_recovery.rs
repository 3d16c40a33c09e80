//! The `emse` example recovers from the EMKS's absence (issue 9 item 11): started while the
//! EMKS is down, it keeps trying and registers once the `emks` example comes up; on
//! SIGTERM it deregisters before it exits. (A session the EMKS forgot, and the 65th
//! registration from one certificate, are tested on the library in
//! `crates/e2m-https/tests/emks_https.rs`, module `recovery`.) Loopback only; every wait is
//! bounded.

#![cfg(unix)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests"
)]

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use support::{example_binary, kill, temp_dir};

/// A child whose stdout lines arrive on a channel; killed when dropped.
struct Running {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn start(command: &mut Command) -> Running {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (send, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits up to `limit` for a line containing `text`.
    fn wait_for(&mut self, text: &str, limit: Duration) -> Option<String> {
        let deadline = Instant::now() + limit;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(text) {
                        return Some(line);
                    }
                }
                Err(_) => break,
            }
        }
        None
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

#[test]
fn the_emse_registers_once_the_emks_comes_up_and_deregisters_on_sigterm() {
    let dir = temp_dir("emse-recovery-pki");
    let out = Command::new(example_binary("emks"))
        .args(["gen-pki", "--dir"])
        .arg(&dir)
        .args(["--emse", "emse-a"])
        .output()
        .unwrap();
    assert!(out.status.success(), "gen-pki failed: {out:?}");
    // A port nothing listens on yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("https://127.0.0.1:{port}");

    let mut emse = Running::start(
        Command::new(example_binary("emse"))
            .args(["--listen", "127.0.0.1:0", "--emks", &url, "--certs"])
            .arg(&dir)
            .args(["--emse-id", "emse-a"])
            .env("RUST_LOG", "warn"),
    );
    // The EMKS is down: the EMSE keeps trying (it used to exit after 36 ms).
    assert!(
        emse.wait_for("registered with the EMKS as", Duration::from_millis(1500))
            .is_none()
    );
    assert!(
        emse.child.try_wait().unwrap().is_none(),
        "the EMSE exited while the EMKS was down: {:?}",
        emse.seen
    );

    let mut emks = Running::start(
        Command::new(example_binary("emks"))
            .args([
                "--store",
                "memory",
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .arg("--certs")
            .arg(&dir)
            .env("RUST_LOG", "warn"),
    );
    assert!(
        emks.wait_for("EMKS listening on", Duration::from_secs(20))
            .is_some(),
        "the EMKS did not start: {:?}",
        emks.seen
    );
    assert!(
        emse.wait_for(
            "registered with the EMKS as emse-a",
            Duration::from_secs(15)
        )
        .is_some(),
        "not registered after the EMKS came up: {:?}",
        emse.seen
    );

    // SIGTERM: the EMSE deregisters, then exits cleanly.
    let term = Command::new("kill")
        .args(["-TERM", &emse.child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    assert!(
        emse.wait_for("deregistered from the EMKS (204)", Duration::from_secs(10))
            .is_some(),
        "no deregistration on SIGTERM: {:?}",
        emse.seen
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = emse.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the EMSE did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    drop(emks);
    let _ = std::fs::remove_dir_all(&dir);
}
