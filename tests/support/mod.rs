//! Helpers shared by the tests that drive the examples as processes.

#![allow(dead_code, reason = "each test file uses a part of the helpers")]

use std::path::PathBuf;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

/// The example binary, which `cargo test` builds with every other target (building it from
/// here would need cargo's build lock, which the running `cargo test` holds).
pub(crate) fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/examples/<name>
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let path = profile_dir.join("examples").join(name);
    assert!(
        path.exists(),
        "example binary {} missing: run `cargo test` (all targets) or `cargo build --example {name}` first",
        path.display()
    );
    path
}

/// A fresh directory name under the system's temporary directory.
pub(crate) fn temp_dir(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    std::env::temp_dir().join(format!("e2m-{tag}-{}-{nanos}", std::process::id()))
}

/// Runs `command` to completion, killing it after `limit` (a test must never hang on an
/// example that unexpectedly started serving).
pub(crate) fn run_bounded(command: &mut Command, limit: Duration) -> Output {
    use std::process::Stdio;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn example");
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("collect output");
        }
        if Instant::now() >= deadline {
            kill(&mut child);
            let out = child.wait_with_output().expect("collect output");
            panic!(
                "{command:?} still running after {limit:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Kills a child of this test by its own handle.
pub(crate) fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}
