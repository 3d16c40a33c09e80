//! Schemathesis (PyPI, pinned in `.ci/test`), a schema-driven fuzzer no one here wrote,
//! against the running AAnF of the `emks` example, from the 3GPP OpenAPI files
//! (`crates/e2m-akma/openapi/`): zero server errors, and every answer of a status, media
//! type and schema the files define.
//!
//! Schemathesis speaks HTTP/1.1 and the AAnF HTTP/2 only, so nghttpx (Debian
//! `nghttp2-proxy`), a stock HTTP/1.1-to-HTTP/2 gateway, sits between them; the AAnF serves
//! h2c (`--sbi-h2c`), with the gateway's address named as the AUSF and an AF, so every
//! operation is reached. Schemathesis's probes with methods outside HTTP's registry
//! (`QUERY`) are answered 501 by nghttpx itself before they reach the AAnF; the run lists
//! only registered methods (`schemathesis.toml` below).
//!
//! The checks: `not_a_server_error`, `status_code_conformance`, `content_type_conformance`,
//! `response_headers_conformance`, `response_schema_conformance`. Not
//! `positive_data_acceptance`: the AAnF refuses, by design, much that the files' schemas
//! let through (an A-KID that is no NAI, an AF_ID without its Ua* protocol, a SUPI in the
//! schema's catch-all form; see e2m-akma's README). The files' `ProblemDetails` reaches
//! TS 29.510 and TS 29.520 definitions that are not vendored, so schemathesis skips the
//! schema of the problem documents (it says so); `crates/e2m-sbi/tests/openapi_wire.rs`
//! validates those with openapi-core, which resolves references lazily.
//!
//! Needs `schemathesis==4.32.5` and `nghttpx` (`bash .ci/test` installs both); without
//! them the test fails and says so.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests"
)]

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{example_binary, kill, run_bounded, temp_dir};

const SCHEMATHESIS: &str = "4.32.5";

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        kill(&mut self.0);
    }
}

struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn openapi(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("crates/e2m-akma/openapi")
        .join(file)
}

#[test]
fn schemathesis_finds_no_server_error_and_no_schema_violation() {
    let version = Command::new("schemathesis").arg("--version").output();
    let version = match version {
        Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
        Err(_) => panic!(
            "schemathesis is not installed: run `bash .ci/test` (pip install schemathesis=={SCHEMATHESIS})"
        ),
    };
    assert!(
        version.contains(SCHEMATHESIS),
        "schemathesis {SCHEMATHESIS} wanted, found {version}"
    );
    assert!(
        Command::new("nghttpx").arg("--version").output().is_ok(),
        "nghttpx is not installed: run `bash .ci/test` (apt-get install nghttp2-proxy)"
    );
    let dir = temp_dir("aanf-schemathesis");
    let _cleanup = RemoveDir(dir.clone());
    std::fs::create_dir_all(&dir).unwrap();
    let emks = example_binary("emks");
    let out = run_bounded(
        Command::new(&emks)
            .args(["gen-pki", "--dir"])
            .arg(dir.join("pki")),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{out:?}");

    let mut child = Command::new(&emks)
        .args(["--store", "memory", "--listen", "127.0.0.1:0", "--certs"])
        .arg(dir.join("pki"))
        .args(["--aanf-listen", "127.0.0.1:0", "--sbi-h2c"])
        .args(["--sbi-h2c-peer", "127.0.0.1=ausf.test,af.example.com"])
        .args([
            "--aanf-ausf",
            "ausf.test",
            "--aanf-af",
            "af.example.com+supi+gpsi",
            "--nef-api",
        ])
        .args(["--aanf-notify-host", "af.example.com"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap());
    let mut aanf: Option<SocketAddr> = None;
    for _ in 0..2 {
        let mut line = String::new();
        lines.read_line(&mut line).unwrap();
        if let Some(addr) = line.trim().strip_prefix("AAnF listening on http://") {
            aanf = Some(addr.parse().unwrap());
        }
    }
    let _emks = Killed(child);
    let aanf = aanf.expect("AAnF listening line");

    let front = free_port();
    let gateway = Command::new("nghttpx")
        .arg("--conf=/dev/null")
        .arg(format!("--frontend=127.0.0.1,{front};no-tls"))
        .arg(format!("--backend={},{};;proto=h2", aanf.ip(), aanf.port()))
        .args(["--workers=1", "--no-ocsp", "--no-via"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let _gateway = Killed(gateway);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", front)).is_err() {
        assert!(Instant::now() < deadline, "nghttpx did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }

    let config = dir.join("schemathesis.toml");
    std::fs::write(
        &config,
        "[phases.coverage]\nunexpected-methods = [\"GET\", \"PUT\", \"DELETE\", \"PATCH\", \"OPTIONS\"]\n",
    )
    .unwrap();
    for (spec, base) in [
        ("TS29535_Naanf_AKMA.yaml", "/naanf-akma/v1"),
        ("TS29522_AKMA.yaml", "/3gpp-akma/v1"),
    ] {
        let out = run_bounded(
            Command::new("schemathesis")
                .current_dir(&dir)
                .arg("--config-file")
                .arg(&config)
                .arg("run")
                .arg(openapi(spec))
                .args(["--url", &format!("http://127.0.0.1:{front}{base}")])
                .args([
                    "--checks",
                    "not_a_server_error,status_code_conformance,content_type_conformance,\
                     response_headers_conformance,response_schema_conformance",
                ])
                .args([
                    "--max-examples",
                    "60",
                    "--workers",
                    "1",
                    "--seed",
                    "20261207",
                ])
                .env("NO_COLOR", "1"),
            Duration::from_secs(480),
        );
        let report = String::from_utf8_lossy(&out.stdout);
        println!("{spec}:\n{report}");
        assert!(
            out.status.success(),
            "schemathesis failed on {spec}:\n{report}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!report.contains("Server error"), "{report}");
        assert!(report.contains(" passed"), "no test case ran: {report}");
    }
}
