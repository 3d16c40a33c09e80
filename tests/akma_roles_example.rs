//! The 5G roles as separate processes, as an operator runs them: `emks --aanf-listen` (the
//! AAnF), `ausf register`, `af` and `ue --akma` reach a CoAP answer over DTLS 1.2 PSK in the
//! Ua* profile (TS 24.109 K.3.2), with K_AF fetched by the AF from the AAnF over HTTP/2;
//! `ausf remove` makes the AAnF notify the `af`, which drops K_AF, and the UE's next
//! handshake fails. Over h2 with mutual TLS and over h2c.
//!
//! Against values none of these programs computed: the AUSF is given AKMA set 1 of
//! `crates/e2m-keyid/tests/data/akma.txt` (e2m-kdf's independent Python reference, from TS
//! 35.208 set 1), and its AUTN and A-KID must be the published MAC-A (TS 35.208 set 1 f1)
//! composed per TS 33.102 §6.3.2 and the file's A-KID. The UE derives on its own from what
//! the AUSF printed, and the AAnF's K_AF only meets the UE's in the handshake.
//!
//! Also: `ausf` and `af` refuse bad input with one line and exit status 2, and `--help`
//! works. Loopback only; every wait is bounded; every process is killed by its own handle.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests"
)]

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::{example_binary, kill, run_bounded, temp_dir};

const AF: &str = "af.example.com";
const AUSF: &str = "ausf.test";

/// `name → value` of one `[section]` (or `set = N` block) of a `name = value` data file.
fn section(path: &str, header: &str) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap();
    let body = text.split(header).nth(1).expect(header);
    body.lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with('[') && !l.starts_with("set = "))
        .filter_map(|l| l.split_once(" = "))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// AKMA set 1 and the AUTN TS 35.208 set 1 publishes the parts of (SQN ⊕ AK ‖ AMF ‖ f1).
fn set_1() -> (BTreeMap<String, String>, String) {
    let akma = section(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/crates/e2m-keyid/tests/data/akma.txt"
        ),
        "[akma set 1]",
    );
    let milenage = section(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/crates/e2m-aka/tests/data/milenage_ts35208.txt"
        ),
        "set = 1\n",
    );
    assert_eq!(akma["rand"], milenage["rand"], "the same TS 35.208 set");
    let autn = format!(
        "{}{}{}",
        akma["sqn_xor_ak"], milenage["amf"], milenage["f1"]
    );
    (akma, autn)
}

/// A running example whose stdout lines arrive on a channel; killed when dropped.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

impl Running {
    fn spawn(command: &mut Command) -> Running {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
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

    /// The first line from now on that contains every one of `needles`, within 30 s.
    fn wait_line(&mut self, needles: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if needles.iter().all(|n| line.contains(n)) {
                        return line;
                    }
                }
                Err(_) => break,
            }
        }
        panic!(
            "no line with {needles:?} within 30 s; lines so far:\n{}",
            self.seen.join("\n")
        );
    }
}

/// The word after `prefix` in `line`, up to white space, a comma or a parenthesis.
fn after<'a>(line: &'a str, prefix: &str) -> &'a str {
    let rest = &line[line
        .find(prefix)
        .unwrap_or_else(|| panic!("{prefix} in {line}"))
        + prefix.len()..];
    rest.split(|c: char| c.is_whitespace() || ",()".contains(c))
        .next()
        .unwrap()
}

/// The e2m PKI and the AKMA PKI in `dir`.
fn prepare(dir: &Path) {
    let emks = example_binary("emks");
    for args in [
        vec!["gen-pki", "--dir", dir.join("pki").to_str().unwrap()],
        vec![
            "gen-akma-pki",
            "--dir",
            dir.join("akma").to_str().unwrap(),
            "--ausf",
            AUSF,
            "--af",
            AF,
        ],
    ] {
        let out = run_bounded(Command::new(&emks).args(&args), Duration::from_secs(60));
        assert!(out.status.success(), "{args:?}: {out:?}");
    }
}

struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The flags that say where the AAnF is and, over TLS, which certificates to use.
fn sbi_flags(tls: bool, dir: &Path, aanf: &str, name: Option<&str>) -> Vec<String> {
    let port = aanf.rsplit(':').next().unwrap();
    let mut flags = if tls {
        vec![
            "--aanf".to_owned(),
            format!("https://aanf.e2m.test:{port}"),
            "--connect-to".into(),
            aanf.to_owned(),
            "--certs".into(),
            dir.join("akma").to_str().unwrap().to_owned(),
        ]
    } else {
        vec!["--aanf".to_owned(), format!("http://{aanf}")]
    };
    if let (true, Some(name)) = (tls, name) {
        flags.extend(["--name".to_owned(), name.to_owned()]);
    }
    flags
}

fn ue_args(v: &BTreeMap<String, String>, autn: &str, af: &str) -> Vec<String> {
    [
        "--akma",
        "--connect",
        af,
        "--k",
        &v["k"],
        "--opc",
        &v["opc"],
        "--rand",
        &v["rand"],
        "--autn",
        autn,
        "--supi",
        &v["supi"],
        "--serving-network-name",
        &v["serving_network_name"],
        "--routing-indicator",
        &v["routing_indicator"],
        "--home-network",
        &v["home_realm"],
        "--af-fqdn",
        AF,
        "--timeout",
        "20",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// The four processes, from the AUSF's registration to the UE's refused handshake; with
/// `via_nef`, the AF is one the AAnF serves only through the NEF's AKMA API.
fn four_processes(tls: bool, via_nef: bool) {
    let (v, published_autn) = set_1();
    let dir = temp_dir(if tls {
        "akma-roles-tls"
    } else {
        "akma-roles-h2c"
    });
    let _cleanup = RemoveDir(dir.clone());
    prepare(&dir);

    // The AAnF beside the EMKS.
    let mut emks = Command::new(example_binary("emks"));
    emks.args(["--store", "memory", "--listen", "127.0.0.1:0", "--certs"])
        .arg(dir.join("pki"))
        .args(["--aanf-listen", "127.0.0.1:0"])
        .args(["--aanf-ausf", AUSF, "--aanf-af"])
        .arg(if via_nef {
            format!("{AF}:nef")
        } else {
            AF.to_owned()
        })
        .args(["--aanf-resolve", &format!("{AF}=127.0.0.1")])
        .args(["--aanf-first-retry", "200"])
        .env("RUST_LOG", "warn");
    if via_nef {
        emks.arg("--nef-api");
    }
    if tls {
        emks.arg("--aanf-certs").arg(dir.join("akma"));
    } else {
        // h2c: the peers are named by address; one loopback address carries every role.
        emks.args(["--sbi-h2c", "--sbi-h2c-peer"])
            .arg(format!("127.0.0.1={AUSF},{AF}"));
    }
    let mut emks = Running::spawn(&mut emks);
    let line = emks.wait_line(&["AAnF listening on "]);
    let aanf = after(&line, "://").to_owned();

    // The AF, with its notification endpoint.
    let mut af = Command::new(example_binary("af"));
    af.args(["--listen", "127.0.0.1:0", "--af-fqdn", AF])
        .args(["--notify-listen", "127.0.0.1:0"])
        .args(sbi_flags(tls, &dir, &aanf, None));
    if via_nef {
        af.arg("--via-nef");
    }
    if !tls {
        // Over h2c the AAnF (127.0.0.1) is named by the address plan.
        af.args(["--notifier", "aanf.e2m.test"]);
    }
    let mut af = Running::spawn(&mut af);
    af.wait_line(&["AF: notification endpoint on", "notifUri"]);
    let route = if via_nef { "the NEF" } else { "the AAnF" };
    let line = af.wait_line(&["AF: DTLS 1.2 PSK server on", route]);
    let af_addr = after(&line, "server on ").to_owned();

    // The AUSF: 5G AKA on set 1, registration.
    let sqn = u64::from_str_radix(&v["sqn"], 16).unwrap().to_string();
    let mut ausf_args: Vec<String> = [
        "register",
        "--supi",
        &v["supi"],
        "--k",
        &v["k"],
        "--opc",
        &v["opc"],
        "--rand",
        &v["rand"],
        "--sqn",
        &sqn,
        "--amf",
        &v["amf"],
        "--serving-network-name",
        &v["serving_network_name"],
        "--routing-indicator",
        &v["routing_indicator"],
        "--home-network",
        &v["home_realm"],
    ]
    .map(str::to_owned)
    .to_vec();
    ausf_args.extend(sbi_flags(tls, &dir, &aanf, Some(AUSF)));
    let out = run_bounded(
        Command::new(example_binary("ausf")).args(&ausf_args),
        Duration::from_secs(60),
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "ausf register: {out:?}");
    let autn = after(&stdout, "AUTN=").to_owned();
    assert_eq!(after(&stdout, "RAND="), v["rand"]);
    assert_eq!(autn, published_autn, "AUTN of TS 35.208 set 1");
    assert_eq!(
        after(&stdout, "A-KID "),
        v["a_kid"],
        "A-KID of the reference"
    );
    assert!(stdout.contains("with the AAnF"), "{stdout}");
    for secret in ["ck", "ik", "res", "kausf", "xres_star", "kakma", "kaf_0"] {
        assert!(!stdout.contains(&v[secret]), "ausf printed {secret}");
    }

    // The UE, from what the AUSF printed: a CoAP answer from the AF.
    let ue = || {
        run_bounded(
            Command::new(example_binary("ue")).args(ue_args(&v, &autn, &af_addr)),
            Duration::from_secs(60),
        )
    };
    let out = ue();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "ue --akma: {out:?}");
    assert!(
        stdout.contains(&format!("CoAP 2.05 \"hello A-KID {}", v["a_kid"])),
        "{stdout}"
    );
    af.wait_line(&["asking the AAnF for K_AF", &v["a_kid"]]);
    af.wait_line(&["established on K_AF", &v["a_kid"]]);

    // Removal: the AAnF notifies the AF, which drops K_AF.
    let mut remove_args = vec!["remove".to_owned(), "--supi".into(), v["supi"].clone()];
    remove_args.extend(sbi_flags(tls, &dir, &aanf, Some(AUSF)));
    let out = run_bounded(
        Command::new(example_binary("ausf")).args(&remove_args),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "ausf remove: {out:?}");
    af.wait_line(&["service disablement for A-KID", &v["a_kid"], "K_AF dropped"]);

    // The UE's next handshake fails, and it is told to authenticate again.
    let out = ue();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stderr.contains("refused by the AF"), "{stderr}");
    assert!(stderr.contains("primary authentication again"), "{stderr}");
    af.wait_line(&["no K_AF for A-KID", &v["a_kid"]]);
    drop(af);
    drop(emks);
}

#[test]
fn four_processes_over_h2_with_mutual_tls() {
    four_processes(true, false);
}

#[test]
fn four_processes_over_h2c() {
    four_processes(false, false);
}

/// An AF outside the operator's domain (`--aanf-af FQDN:nef`): Naanf_AKMA would refuse
/// it; the NEF's AKMA API serves it, and notifies it too.
#[test]
fn four_processes_with_the_af_through_the_nef() {
    four_processes(true, true);
}

/// Runs `example` with `argv`: exit status 2, one short line on stderr naming it, nothing
/// on stdout.
fn expect_usage_error(example: &str, argv: &[&str]) {
    let out = run_bounded(
        Command::new(example_binary(example)).args(argv),
        Duration::from_secs(20),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{example} {argv:?}: {stderr}");
    assert!(out.stdout.is_empty(), "{example} {argv:?}: {out:?}");
    assert_eq!(
        stderr.matches('\n').count(),
        1,
        "{example} {argv:?}: {stderr}"
    );
    assert!(
        stderr.starts_with(example) && stderr.len() < 300,
        "{stderr}"
    );
}

#[test]
fn ausf_and_af_refuse_bad_input_and_explain_themselves() {
    let k = "465b5ce8b199b49faa5f0a2ee238a6bc";
    let big = "a".repeat(64 * 1024);
    let register = |extra: &[&'static str]| -> Vec<&'static str> {
        let mut argv = vec![
            "register",
            "--aanf",
            "https://127.0.0.1:9",
            "--certs",
            "/nonexistent",
            "--name",
            "ausf.test",
            "--supi",
            "imsi-208930000000001",
            "--k",
            "465b5ce8b199b49faa5f0a2ee238a6bc",
            "--opc",
            "cd63cb71954a9f4e48a5994e37a02baf",
            "--serving-network-name",
            "5G:mnc093.mcc208.3gppnetwork.org",
            "--home-network",
            "5gc.mnc093.mcc208.3gppnetwork.org",
        ];
        argv.extend_from_slice(extra);
        argv
    };
    for argv in [
        vec![],
        register(&["--rand", "+a+a+a+a+a+a+a+a+a+a+a+a+a+a+a+a"]),
        register(&["--amf", "80"]),
        register(&["--sqn", "281474976710656"]),
        register(&["--routing-indicator", "12345"]),
        register(&["--bogus"]),
        vec![
            "register",
            "--aanf",
            "ftp://aanf",
            "--supi",
            "imsi-1",
            "--k",
            k,
        ],
        vec![
            "remove",
            "--aanf",
            "https://127.0.0.1:9",
            "--supi",
            "imsi-208930000000001",
        ],
        vec!["remove", "--aanf", "http://127.0.0.1:9", "--supi", "nobody"],
        vec![
            "remove",
            "--aanf",
            "http://127.0.0.1:9",
            "--certs",
            "/x",
            "--supi",
            "imsi-208930000000001",
        ],
    ] {
        expect_usage_error("ausf", &argv);
    }
    let mut long_supi = register(&[]);
    long_supi[8] = &big;
    expect_usage_error("ausf", &long_supi);
    for argv in [
        vec![],
        vec!["--aanf", "https://127.0.0.1:9", "--af-fqdn", AF],
        vec!["--aanf", "http://127.0.0.1:9", "--af-fqdn", "not a name"],
        vec![
            "--aanf",
            "http://127.0.0.1:9",
            "--af-fqdn",
            AF,
            "--max-peers",
            "0",
        ],
        vec![
            "--aanf",
            "http://127.0.0.1:9",
            "--af-fqdn",
            AF,
            "--notify-host",
            "x.example",
        ],
        vec!["--aanf", "http://127.0.0.1:9", "--af-fqdn", &big],
    ] {
        expect_usage_error("af", &argv);
    }
    for (example, argv, needles) in [
        ("ausf", &["--help"][..], &["register", "remove"][..]),
        (
            "ausf",
            &["register", "--help"],
            &[
                "[default: 8000]",
                "[default: 1]",
                "[default: 0]",
                "--serving-network-name",
            ],
        ),
        (
            "af",
            &["--help"],
            &[
                "[default: 127.0.0.1:5684]",
                "[default: aanf.e2m.test]",
                "--via-nef",
            ],
        ),
    ] {
        let out = run_bounded(
            Command::new(example_binary(example)).args(argv),
            Duration::from_secs(20),
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{example} {argv:?}: {out:?}");
        for needle in needles {
            assert!(
                stdout.contains(needle),
                "{example} {argv:?}: {needle:?}:\n{stdout}"
            );
        }
    }
}
