//! Starting the Python EMKS (`tests/pyemks/pyemks.py`) as a child process.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a helper module of test binaries"
)]

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use e2m_check::UePlan;

use super::common::{TestPki, emse, temp_dir};

pub fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/pyemks/pyemks.py")
}

/// The Python EMKS as a child process, killed (by its own handle) when dropped.
pub struct PyEmks {
    child: Child,
    pub url: String,
    csv: PathBuf,
}

impl Drop for PyEmks {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.csv);
    }
}

/// Starts `pyemks.py` with `pki`'s certificates, the checker's standard plan provisioned
/// for emse-a and emse-b, emse-a allowed IMSIs, and `faults` planted.
pub fn start(pki: &TestPki, faults: &[&str]) -> PyEmks {
    let plan = UePlan::standard().unwrap();
    let csv = temp_dir("pyemks-provision");
    std::fs::write(
        &csv,
        plan.provisioning_csv(&[emse("emse-a"), emse("emse-b")]),
    )
    .unwrap();
    let mut command = Command::new("python3");
    command
        .arg(script())
        .arg("--certs")
        .arg(pki.dir.path())
        .args(["--listen", "127.0.0.1:0", "--allow-imsi", "emse-a"])
        .arg("--provision-file")
        .arg(&csv);
    for fault in faults {
        command.args(["--fault", fault]);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("python3 is needed for this test: {e}"));
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let Some(url) = line.trim().strip_prefix("EMKS listening on ") else {
        let mut stderr = String::new();
        let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
        let _ = child.kill();
        panic!("pyemks.py did not start: {line:?} {stderr}");
    };
    PyEmks {
        url: url.to_owned(),
        child,
        csv,
    }
}
