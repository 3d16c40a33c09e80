//! OSCORE interop with an implementation no one here wrote: aiocoap (PyPI `aiocoap[oscore]`,
//! installed by `.ci/test`), keyed from what `derive oscore-context` prints, on loopback,
//! each process bounded in time.
//!
//! - aiocoap's client (`python3 -m aiocoap.cli.client`) against our EMSE (the `emse`
//!   example, static-key mode, `--oscore-listen`): its request names the application
//!   identity and key id; the EMSE derives the context, challenges with Echo (RFC 8613
//!   Appendix B.1.2), aiocoap answers, and gets the verified greeting; and again with the
//!   EMSE's derived-context record (`--oscore-record`), where the first request of the
//!   never-derived context is answered at once;
//! - our UE (the `ue` example, `--protocol oscore`) against aiocoap's file server
//!   (`python3 -m aiocoap.cli.fileserver --credentials`), which serves a file under OSCORE.
//!
//! aiocoap reads an OSCORE context from a directory's `settings.json` (its
//! `FilesystemSecurityContext`: `sender-id_hex`, `recipient-id_hex`, `secret_hex`,
//! `salt_hex`, `id-context_hex`) and a credentials map that points a URI pattern (client) or
//! a `:name` (server) at that directory.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests"
)]

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use support::{example_binary, kill, run_bounded, temp_dir};

const E2M_KEY: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0";
const IDENTITY: &str = "sensor-17@iot.example.com";
const KEY_ID: &str = "ae47bf35";
/// Python's start-up and aiocoap's imports take seconds on a loaded machine.
const LIMIT: Duration = Duration::from_secs(90);

fn require_aiocoap() {
    let ok = Command::new("python3")
        .args(["-c", "import aiocoap.oscore, cbor2, cryptography"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "aiocoap with its OSCORE extras is missing: run `bash .ci/test` (it installs \
         `aiocoap[oscore]` with pip) or `python3 -m pip install 'aiocoap[oscore]'`"
    );
}

/// `derive oscore-context` for the test's inputs, as `name → hex`.
fn derived_context() -> BTreeMap<String, String> {
    let out = run_bounded(
        Command::new(example_binary("derive")).args([
            "oscore-context",
            "--e2m-key",
            E2M_KEY,
            "--app-identity",
            IDENTITY,
            "--key-id",
            KEY_ID,
        ]),
        Duration::from_secs(20),
    );
    assert!(out.status.success(), "derive: {out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(" = "))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// An aiocoap security-context directory: `settings.json` from the derived values, as the
/// UE (`as_ue`) or as the EMSE.
fn write_aiocoap_context(dir: &Path, context: &BTreeMap<String, String>, as_ue: bool) {
    std::fs::create_dir_all(dir).unwrap();
    let (sender, recipient) = if as_ue {
        (&context["ue_sender_id"], &context["emse_sender_id"])
    } else {
        (&context["emse_sender_id"], &context["ue_sender_id"])
    };
    let settings = format!(
        concat!(
            "{{\"sender-id_hex\": \"{}\", \"recipient-id_hex\": \"{}\", ",
            "\"secret_hex\": \"{}\", \"salt_hex\": \"{}\", \"id-context_hex\": \"{}\", ",
            "\"algorithm\": \"AES-CCM-16-64-128\"}}"
        ),
        sender, recipient, context["master_secret"], context["master_salt"], context["id_context"]
    );
    std::fs::write(dir.join("settings.json"), settings).unwrap();
}

/// A free UDP port on loopback (bound and released; the race is harmless in a test).
fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn aiocoap_client_gets_a_verified_answer_from_our_emse() {
    let narration = aiocoap_client_against_our_emse("oscore-aiocoap-client", false);
    assert!(
        narration
            .iter()
            .any(|l| l.contains("Echo challenge (RFC 8613 B.1.2)")),
        "{narration:?}"
    );
}

/// With the EMSE's derived-context record, aiocoap's first request to a context the EMSE
/// never derived is answered at once: no Echo challenge, one round trip on first contact.
#[test]
fn aiocoap_client_first_contact_takes_one_round_trip_with_a_derived_context_record() {
    let narration = aiocoap_client_against_our_emse("oscore-aiocoap-record", true);
    assert!(
        narration.iter().any(|l| l.contains("never derived before")),
        "{narration:?}"
    );
    assert!(
        !narration.iter().any(|l| l.contains("Echo challenge")),
        "{narration:?}"
    );
}

/// Runs aiocoap's client once against the `emse` example (with a fresh derived-context
/// record file when `with_record`); checks the verified greeting; returns the narration.
fn aiocoap_client_against_our_emse(name: &str, with_record: bool) -> Vec<String> {
    require_aiocoap();
    let context = derived_context();
    let dir = temp_dir(name);
    write_aiocoap_context(&dir.join("ctx"), &context, true);
    let record = dir.join("derived.log");
    let mut args = vec![
        "--listen",
        "127.0.0.1:0",
        "--oscore-listen",
        "127.0.0.1:0",
        "--psk-hex",
        E2M_KEY,
        "--run-for",
        "120",
    ];
    if with_record {
        args.extend(["--oscore-record", record.to_str().unwrap()]);
    }
    let mut emse = Command::new(example_binary("emse"))
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start emse");
    let (lines_tx, lines) = mpsc::channel::<String>();
    let stdout = emse.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut narration = Vec::new();
    let oscore_addr = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .expect("the EMSE announces its OSCORE endpoint");
        narration.push(line.clone());
        if let Some(rest) = line.strip_prefix("EMSE: OSCORE endpoint on ") {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    let credentials = dir.join("client.json");
    std::fs::write(
        &credentials,
        format!(
            "{{\"coap://{oscore_addr}/*\": {{\"oscore\": {{\"basedir\": \"{}/\"}}}}}}",
            dir.join("ctx").display()
        ),
    )
    .unwrap();

    let out = run_bounded(
        Command::new("python3").args([
            "-m",
            "aiocoap.cli.client",
            "--credentials",
            credentials.to_str().unwrap(),
            &format!("coap://{oscore_addr}/temperature"),
        ]),
        LIMIT,
    );
    kill(&mut emse);
    narration.extend(lines.try_iter());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success()
            && stdout.contains(&format!(
                "hello {IDENTITY} (key id {KEY_ID}), you asked for /temperature"
            )),
        "aiocoap-client: {out:?}\nEMSE:\n{}",
        narration.join("\n")
    );
    assert!(
        narration
            .iter()
            .any(|l| l.contains(&format!("verified OSCORE request from {IDENTITY}"))),
        "{narration:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    narration
}

#[test]
fn our_ue_gets_a_verified_answer_from_aiocoap_server() {
    require_aiocoap();
    let context = derived_context();
    let dir = temp_dir("oscore-aiocoap-server");
    write_aiocoap_context(&dir.join("ctx"), &context, false);
    let files = dir.join("files");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("reading"), "21.5 C from aiocoap").unwrap();
    let credentials = dir.join("server.json");
    std::fs::write(
        &credentials,
        format!(
            "{{\":ue\": {{\"oscore\": {{\"basedir\": \"{}/\"}}}}}}",
            dir.join("ctx").display()
        ),
    )
    .unwrap();
    let port = free_udp_port();
    let mut server = Command::new("python3")
        .args([
            "-m",
            "aiocoap.cli.fileserver",
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--credentials",
            credentials.to_str().unwrap(),
            files.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("server.log")).unwrap())
        .spawn()
        .expect("start aiocoap fileserver");

    // The UE retransmits (2 s, 4 s, …) until the server has started.
    let out = run_bounded(
        Command::new(example_binary("ue")).args([
            "--protocol",
            "oscore",
            "--connect",
            &format!("127.0.0.1:{port}"),
            "--identity",
            IDENTITY,
            "--key-id",
            KEY_ID,
            "--psk-hex",
            E2M_KEY,
            "--path",
            "reading",
            "--timeout",
            "60",
        ]),
        LIMIT,
    );
    kill(&mut server);
    let server_log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success()
            && stdout.contains("verified OSCORE response: CoAP 2.05 \"21.5 C from aiocoap\""),
        "ue: {out:?}\naiocoap server:\n{server_log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
