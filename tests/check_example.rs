//! The `check` example (issue 19) as a vendor runs it, against our own examples as
//! processes: `check init` writes the deployment, `check provisioning` the identities the
//! operator imports with `emks --provision-file`, and `check emks` / `check emse` pass every
//! check against the `emks` example on its three stores (memory, redb, PostgreSQL) and the
//! `emse` example (DTLS and OSCORE). A run with a failing check exits 1 and names it in the
//! JUnit and JSON reports; bad arguments exit 2 with one line.
//!
//! PostgreSQL: a throwaway cluster from `.ci/postgres start`; without the server binaries
//! that test prints `SKIPPED` and passes (as the other PostgreSQL tests do). Loopback only;
//! every process is a child of the test, killed by its own handle.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests"
)]

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::{example_binary, kill, run_bounded, temp_dir};

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        kill(&mut self.0);
    }
}

/// `check init` into a new directory (removed when dropped).
struct Deployment {
    dir: PathBuf,
    /// The port of the checker's callback endpoint, which the EMKS is told to allow
    /// (`--callback-allow 127.0.0.1:PORT`; by default it calls back on port 443 only).
    callback_port: u16,
}

impl Deployment {
    fn new() -> Deployment {
        let dir = temp_dir("check-example");
        let out = run_bounded(
            Command::new(example_binary("check"))
                .args(["init", "--dir"])
                .arg(&dir),
            Duration::from_secs(30),
        );
        assert!(out.status.success(), "check init: {out:?}");
        // The provisioning subcommand prints the same file init wrote.
        let printed = run_bounded(
            Command::new(example_binary("check")).arg("provisioning"),
            Duration::from_secs(30),
        );
        assert_eq!(
            String::from_utf8_lossy(&printed.stdout),
            std::fs::read_to_string(dir.join("provision.csv")).unwrap()
        );
        // A free port now (a race with another process taking it is harmless here: the
        // checker's bind would fail loudly).
        let callback_port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Deployment { dir, callback_port }
    }

    fn pki(&self) -> PathBuf {
        self.dir.join("pki")
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The `emks` example on `store` with the deployment's certificates and identities.
fn start_emks(d: &Deployment, store_args: &[&str], env: &[(&str, &str)]) -> (Proc, String) {
    let mut command = Command::new(example_binary("emks"));
    command
        .args(["--listen", "127.0.0.1:0", "--certs"])
        .arg(d.pki())
        .arg("--provision-file")
        .arg(d.dir.join("provision.csv"))
        .args(["--allow-imsi", "emse-a"])
        .arg("--callback-allow")
        .arg(format!("127.0.0.1:{}", d.callback_port))
        .args(store_args)
        .env("RUST_LOG", "warn");
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("EMKS listening on ")
        .unwrap_or_else(|| panic!("emks did not start: {line:?}"))
        .to_owned();
    (Proc(child), url)
}

/// Runs `check` with `args`; returns its exit code and the JSON report.
fn check(d: &Deployment, args: &[&str]) -> (Option<i32>, serde_json::Value, String) {
    let json = d.dir.join(format!("report-{}.json", std::process::id()));
    let junit = d.dir.join(format!("report-{}.xml", std::process::id()));
    let out = run_bounded(
        Command::new(example_binary("check"))
            .args(args)
            .arg("--certs")
            .arg(d.pki())
            .args(["--xmllint", "required", "--json"])
            .arg(&json)
            .arg("--junit")
            .arg(&junit),
        Duration::from_secs(240),
    );
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{table}");
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&json).unwrap_or_default(),
    )
    .unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}); stderr {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let xml = std::fs::read_to_string(&junit).unwrap();
    (out.status.code(), report, format!("{table}\n{xml}"))
}

/// Every check passed; the only skip allowed is the key-retired-on-expiry check (the
/// `emks` example sweeps every 30 s: waiting for it would add half a minute per store).
fn assert_all_passed(code: Option<i32>, report: &serde_json::Value, text: &str) {
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(report["summary"]["fail"], 0, "{text}");
    let skipped: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["verdict"] == "skip")
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(
        skipped.is_empty() || skipped == ["notify.key-retired-on-expiry"],
        "{text}"
    );
    assert!(report["summary"]["pass"].as_u64().unwrap() > 10, "{text}");
}

fn check_emks(d: &Deployment, url: &str) {
    let listen = format!("127.0.0.1:{}", d.callback_port);
    let (code, report, text) = check(
        d,
        &[
            "emks",
            "--url",
            url,
            "--imsi-emse",
            "emse-a",
            "--callback-listen",
            &listen,
        ],
    );
    assert_all_passed(code, &report, &text);
}

#[test]
fn the_emks_example_on_memory_passes_every_check() {
    let d = Deployment::new();
    let (_emks, url) = start_emks(&d, &["--store", "memory"], &[]);
    check_emks(&d, &url);
}

#[test]
fn the_emks_example_on_redb_passes_every_check() {
    let d = Deployment::new();
    let kek = d.dir.join("kek-1");
    let out = run_bounded(
        Command::new(example_binary("emks"))
            .args(["gen-kek", "--out"])
            .arg(&kek),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "gen-kek: {out:?}");
    let data = d.dir.join("data");
    let (_emks, url) = start_emks(
        &d,
        &[
            "--data-dir",
            data.to_str().unwrap(),
            "--kek-file",
            kek.to_str().unwrap(),
        ],
        &[],
    );
    check_emks(&d, &url);
}

fn postgres_installed() -> bool {
    if let Some(dir) = std::env::var_os("E2M_PG_BIN") {
        return PathBuf::from(dir).join("initdb").exists();
    }
    std::fs::read_dir("/usr/lib/postgresql").is_ok_and(|versions| {
        versions
            .flatten()
            .any(|v| v.path().join("bin").join("initdb").exists())
    })
}

/// A throwaway cluster from `.ci/postgres start`, stopped and removed when dropped.
struct Postgres {
    dir: PathBuf,
    conninfo: String,
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(postgres_script())
            .arg("stop")
            .arg(&self.dir)
            .output();
    }
}

fn postgres_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".ci")
        .join("postgres")
}

#[test]
fn the_emks_example_on_postgres_passes_every_check() {
    if !postgres_installed() {
        eprintln!(
            "SKIPPED: PostgreSQL server binaries not found (no /usr/lib/postgresql/*/bin/initdb, \
             no $E2M_PG_BIN); run `bash .ci/postgres install`"
        );
        return;
    }
    let pg_dir = temp_dir("check-pg");
    let out = run_bounded(
        Command::new("bash")
            .arg(postgres_script())
            .arg("start")
            .arg(&pg_dir),
        Duration::from_secs(120),
    );
    assert!(
        out.status.success(),
        ".ci/postgres start: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pg = Postgres {
        conninfo: String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap()
            .to_owned(),
        dir: pg_dir,
    };
    let d = Deployment::new();
    let kek = d.dir.join("kek-1");
    let out = run_bounded(
        Command::new(example_binary("emks"))
            .args(["gen-kek", "--out"])
            .arg(&kek),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "gen-kek: {out:?}");
    let (_emks, url) = start_emks(
        &d,
        &["--store", "postgres", "--kek-file", kek.to_str().unwrap()],
        &[("E2M_DATABASE_URL", &pg.conninfo)],
    );
    check_emks(&d, &url);
}

/// The `emse` example, registered as emse-a with the `emks` example, passes every EMSE
/// check over DTLS and OSCORE.
#[test]
fn the_emse_example_passes_every_check() {
    let d = Deployment::new();
    let (_emks, url) = start_emks(&d, &["--store", "memory"], &[]);
    let mut child = Command::new(example_binary("emse"))
        .args(["--emks", &url, "--certs"])
        .arg(d.pki())
        .args([
            "--emse-id",
            "emse-a",
            "--listen",
            "127.0.0.1:0",
            "--oscore-listen",
            "127.0.0.1:0",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let _emse = Proc(child);
    let (mut dtls, mut oscore) = (None, None);
    while dtls.is_none() || oscore.is_none() {
        let line = lines.next().expect("emse output").unwrap();
        let addr = |prefix: &str| {
            line.strip_prefix(prefix)
                .and_then(|rest| rest.split_whitespace().next())
                .map(str::to_owned)
        };
        dtls = dtls.or_else(|| addr("EMSE: DTLS 1.2 PSK server on "));
        oscore = oscore.or_else(|| addr("EMSE: OSCORE endpoint on "));
    }
    let (dtls, oscore) = (dtls.unwrap(), oscore.unwrap());
    std::thread::spawn(move || for _ in lines {});
    let (code, report, text) = check(
        &d,
        &[
            "emse",
            "--dtls",
            &dtls,
            "--oscore",
            &oscore,
            "--emse-id",
            "emse-a",
            "--emks",
            &url,
        ],
    );
    assert_all_passed(code, &report, &text);
}

/// A check that fails makes the run exit 1 and is named in both reports; `--only` runs
/// just the checks it names. (The EMKS keeps 4 keys per UE; told 3, the checker finds the
/// oldest of 4 pushes still served.)
#[test]
fn a_failing_check_exits_1_and_is_reported() {
    let d = Deployment::new();
    let (_emks, url) = start_emks(&d, &["--store", "memory"], &[]);
    let (code, report, text) = check(
        &d,
        &[
            "emks",
            "--url",
            &url,
            "--keys-per-ue",
            "3",
            "--only",
            "retention.*",
        ],
    );
    assert_eq!(code, Some(1), "{text}");
    let checks = report["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 3, "only retention.*: {text}");
    let failed: Vec<&str> = checks
        .iter()
        .filter(|c| c["verdict"] == "fail")
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["retention.most-recent-n"], "{text}");
    assert!(text.contains("<failure type=\"nonconformance\""), "{text}");
}

#[test]
fn bad_arguments_exit_2_with_one_line() {
    for (argv, what) in [
        (
            &[
                "emks",
                "--url",
                "https://127.0.0.1:9",
                "--certs",
                "/nonexistent",
            ][..],
            "missing certs",
        ),
        (
            &[
                "emks",
                "--url",
                "https://127.0.0.1:9",
                "--certs",
                "/tmp",
                "--only",
                "no-such.*",
            ],
            "a glob matching nothing",
        ),
        (&["emks", "--certs", "/tmp"], "no --url"),
        (
            &["emse", "--dtls", "localhost", "--certs", "/tmp"],
            "an address without a port",
        ),
        (&["provisioning", "--imsi-base", "12"], "a short IMSI base"),
        (&["bogus"], "an unknown command"),
    ] {
        let out = run_bounded(
            Command::new(example_binary("check")).args(argv),
            Duration::from_secs(20),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{what}: {stderr}");
        assert!(stderr.starts_with("check: "), "{what}: {stderr}");
    }
    let help = run_bounded(
        Command::new(example_binary("check")).args(["emks", "--help"]),
        Duration::from_secs(20),
    );
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).contains("--only <GLOB>"));
}
