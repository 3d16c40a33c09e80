//! Every example against hostile command lines (issue 9 item 10, issue 10): non-UTF-8 and
//! non-ASCII arguments, `+a` where hex is expected, 64 KiB values, unknown flags, missing
//! values and missing arguments. Each must end with exit status 2 (never a panic's 101),
//! exactly one line on stderr that names the example and stays short (it may repeat only a
//! prefix of what was typed), and nothing on stdout. `--help` works everywhere and shows
//! defaults. The examples are run as processes, as an operator runs them.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests"
)]

mod support;

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::process::Command;
use std::time::Duration;

use support::{example_binary, run_bounded};

/// The longest error line accepted (the examples clip user text to a short prefix).
const MAX_LINE: usize = 300;

const K: &str = "465b5ce8b199b49faa5f0a2ee238a6bc";
const OPC: &str = "cd63cb71954a9f4e48a5994e37a02baf";
const RAND: &str = "23553cbe9637a89d218ae64dae47bf35";
const KEY32: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

fn os(text: &str) -> OsString {
    OsString::from(text)
}

fn not_utf8() -> OsString {
    OsString::from_vec(vec![b'a', 0xff, 0xfe, b'b'])
}

fn big(c: char) -> String {
    std::iter::repeat_n(c, 64 * 1024).collect()
}

/// "+a" repeated to `digits` characters: `u8::from_str_radix("+a", 16)` is 10, so a lax
/// parser reads it as hex.
fn plus_a(digits: usize) -> String {
    "+a".repeat(digits / 2)
}

/// 16 two-octet characters: 32 octets, the length of 16 octets of hex, but not ASCII
/// (slicing it at octet 2·i is not on a character boundary).
fn non_ascii_32() -> String {
    "é".repeat(16)
}

fn args(parts: &[&str]) -> Vec<OsString> {
    parts.iter().map(|p| os(p)).collect()
}

fn with(base: &[&str], extra: Vec<OsString>) -> Vec<OsString> {
    let mut all = args(base);
    all.extend(extra);
    all
}

/// Runs `example` with `argv` and checks the usage-error contract.
fn expect_usage_error(example: &str, argv: &[OsString], what: &str) {
    let out = run_bounded(
        Command::new(example_binary(example)).args(argv),
        Duration::from_secs(20),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{example} ({what}): exit status {:?}, stderr {:?}",
        out.status,
        support_clip(&stderr)
    );
    assert!(
        out.stdout.is_empty(),
        "{example} ({what}): printed on stdout: {:?}",
        support_clip(&String::from_utf8_lossy(&out.stdout))
    );
    assert!(
        stderr.ends_with('\n') && stderr.matches('\n').count() == 1,
        "{example} ({what}): not exactly one line on stderr: {:?}",
        support_clip(&stderr)
    );
    assert!(
        stderr.len() <= MAX_LINE,
        "{example} ({what}): {}-octet message: {:?}",
        stderr.len(),
        support_clip(&stderr)
    );
    assert!(
        stderr.starts_with(example),
        "{example} ({what}): message does not name the example: {stderr:?}"
    );
}

fn support_clip(text: &str) -> String {
    text.chars().take(400).collect()
}

#[test]
fn derive_refuses_hostile_arguments_with_one_short_line() {
    let ck_ik = [
        "--ik",
        OPC,
        "--sn-id",
        "00f110",
        "--sqn-xor-ak",
        "000000000000",
    ];
    let cases: Vec<(Vec<OsString>, &str)> = vec![
        (vec![], "no command"),
        (vec![not_utf8()], "non-UTF-8 command"),
        (
            with(&["kasme", "--ck"], vec![not_utf8()]),
            "non-UTF-8 value",
        ),
        (
            with(
                &[
                    "ck-ik-prime",
                    "--ck",
                    K,
                    "--ik",
                    OPC,
                    "--sqn-xor-ak",
                    "000000000000",
                    "--network-name",
                ],
                vec![not_utf8()],
            ),
            "non-UTF-8 text value",
        ),
        (
            with(&["kasme", "--ck", &non_ascii_32()], vec![]),
            "non-ASCII hex",
        ),
        (
            with(&["kasme", "--ck", &plus_a(32)], args(&ck_ik)),
            "+a as hex",
        ),
        (
            with(&["key-id", "--rand", &plus_a(32)], vec![]),
            "+a as RAND",
        ),
        (
            with(&["kdf", "--key", "+a", "--fc", "20"], vec![]),
            "+a as variable-length hex",
        ),
        (
            with(&["kdf", "--key", "00", "--fc", "+a"], vec![]),
            "+a as FC",
        ),
        (
            with(&["kasme", "--ck", &big('a')], args(&ck_ik)),
            "64 KiB hex value",
        ),
        (
            with(&["kasme", "--ck", &big('z')], args(&ck_ik)),
            "64 KiB non-hex value",
        ),
        (
            with(
                &["kdf", "--key", "00", "--fc", "20", "--p-text", &big('a')],
                vec![],
            ),
            "64 KiB KDF parameter (over 65535 octets)",
        ),
        (
            with(
                &["e2m-key", "--int-key", KEY32, "--emse-id", &big('e')],
                vec![],
            ),
            "64 KiB EMSE_Id",
        ),
        (
            with(&["parse-psk-identity", "--psk-identity", &big('p')], vec![]),
            "64 KiB psk_identity",
        ),
        (
            with(
                &[
                    "oscore-context",
                    "--e2m-key",
                    KEY32,
                    "--app-identity",
                    "a@b",
                    "--key-id",
                    "ae47bf3",
                ],
                vec![],
            ),
            "7-digit key id for the OSCORE context",
        ),
        (
            with(
                &[
                    "oscore-context",
                    "--e2m-key",
                    KEY32,
                    "--app-identity",
                    "a@b",
                    "--key-id",
                    "ae47bf35",
                    "--master-secret-fc",
                    "e0",
                ],
                vec![],
            ),
            "OSCORE master secret FC colliding with e2m_int_key's",
        ),
        (
            with(
                &["psk-identity", "--identity", "a@b", "--key-id", "+a0000bc"],
                vec![],
            ),
            "+a in a key id",
        ),
        (vec![os(&format!("--{}", big('f')))], "64 KiB unknown flag"),
        (with(&["kasme", "--bogus", "1"], vec![]), "unknown flag"),
        (with(&["no-such-command"], vec![]), "unknown command"),
        (with(&["kasme", "--ck"], vec![]), "missing value"),
        (with(&["kasme", "--ck", K], vec![]), "missing arguments"),
        (
            with(
                &[
                    "ks-naf", "--ks", KEY32, "--ck", K, "--ik", OPC, "--rand", RAND, "--impi", "i",
                    "--naf-id", "00",
                ],
                vec![],
            ),
            "conflicting arguments",
        ),
        (
            with(&["milenage", "--k", K, "--rand", RAND], vec![]),
            "milenage without OP/OPc",
        ),
        (
            with(
                &[
                    "milenage",
                    "--k",
                    K,
                    "--opc",
                    OPC,
                    "--rand",
                    RAND,
                    "--sqn",
                    "000000000001",
                ],
                vec![],
            ),
            "SQN without AMF",
        ),
    ];
    for (argv, what) in &cases {
        expect_usage_error("derive", argv, what);
    }
}

#[test]
fn hss_refuses_hostile_arguments_with_one_short_line() {
    // Everything an HSS run needs, pointing nowhere: the arguments must be refused before
    // any connection is tried.
    let base = [
        "--emks",
        "https://127.0.0.1:9",
        "--certs",
        "/nonexistent",
        "--imsi",
        "001010123456789",
        "--k",
        K,
        "--opc",
        OPC,
    ];
    let cases: Vec<(Vec<OsString>, &str)> = vec![
        (vec![], "no arguments"),
        (
            with(&base, args(&["--rand", &non_ascii_32()])),
            "non-ASCII RAND",
        ),
        (with(&base, args(&["--rand", &plus_a(32)])), "+a as RAND"),
        (with(&base, args(&["--rand", &big('a')])), "64 KiB RAND"),
        (
            with(&base, vec![os("--rand"), not_utf8()]),
            "non-UTF-8 RAND",
        ),
        (
            with(&base[..4], vec![os("--imsi"), not_utf8()]),
            "non-UTF-8 IMSI",
        ),
        (
            with(
                &base[..4],
                args(&["--imsi", &big('1'), "--k", K, "--opc", OPC]),
            ),
            "64 KiB IMSI",
        ),
        (
            with(&base, args(&["--sqn", "281474976710656"])),
            "SQN over 48 bits",
        ),
        (with(&base, args(&["--sqn", "-1"])), "negative SQN"),
        (
            with(&base, args(&["--key-id", &big('h')])),
            "64 KiB key id scheme",
        ),
        (with(&base, args(&["--ck", K])), "--ck with --k"),
        (with(&base, args(&["--bogus"])), "unknown flag"),
        (with(&base, args(&["--rand"])), "missing value"),
        (args(&["--help=x"]), "value for --help"),
    ];
    for (argv, what) in &cases {
        expect_usage_error("hss", argv, what);
    }
}

#[test]
fn ue_refuses_hostile_arguments_with_one_short_line() {
    let base = [
        "--connect",
        "127.0.0.1:9",
        "--identity",
        "sensor-17@iot.example.com",
    ];
    let aka = ["--k", K, "--opc", OPC, "--emse-id", "emse-a"];
    let cases: Vec<(Vec<OsString>, &str)> = vec![
        (vec![], "no arguments"),
        (
            with(&base, with(&aka, args(&["--rand", &plus_a(32)]))),
            "+a as RAND",
        ),
        (
            with(&base, with(&aka, args(&["--rand", &non_ascii_32()]))),
            "non-ASCII RAND",
        ),
        (
            with(
                &base,
                with(&aka, args(&["--rand", RAND, "--autn", &plus_a(32)])),
            ),
            "+a as AUTN",
        ),
        (with(&base, args(&["--psk-hex", &big('a')])), "64 KiB PSK"),
        (with(&base, args(&["--psk-hex", &plus_a(64)])), "+a as PSK"),
        (
            with(&base, args(&["--psk-hex", KEY32, "--key-id", "+a0000bc"])),
            "+a as key id",
        ),
        (
            with(&["--connect", &big('c'), "--psk-identity", "x"], vec![]),
            "64 KiB address",
        ),
        (
            with(
                &["--connect", "127.0.0.1:9", "--psk-identity"],
                vec![not_utf8()],
            ),
            "non-UTF-8 psk_identity",
        ),
        (
            with(
                &[
                    "--connect",
                    "127.0.0.1:9",
                    "--psk-hex",
                    KEY32,
                    "--psk-identity",
                    &big('p'),
                ],
                vec![],
            ),
            "64 KiB psk_identity",
        ),
        (
            with(
                &base,
                args(&[
                    "--psk-hex",
                    KEY32,
                    "--key-id",
                    "00000001",
                    "--timeout",
                    "-1",
                ]),
            ),
            "negative timeout",
        ),
        (with(&base, args(&["--bogus"])), "unknown flag"),
        (with(&base, args(&["--psk-hex"])), "missing value"),
        (
            with(
                &base,
                args(&[
                    "--psk-hex",
                    KEY32,
                    "--key-id",
                    "ae47bf35",
                    "--protocol",
                    "tls",
                ]),
            ),
            "unknown protocol",
        ),
        (
            with(
                &base,
                args(&[
                    "--psk-hex",
                    KEY32,
                    "--key-id",
                    "ae47bf35",
                    "--protocol",
                    &big('o'),
                ]),
            ),
            "64 KiB protocol",
        ),
    ];
    for (argv, what) in &cases {
        expect_usage_error("ue", argv, what);
    }
}

#[test]
fn emse_refuses_hostile_arguments_with_one_short_line() {
    let cases: Vec<(Vec<OsString>, &str)> = vec![
        (vec![], "no key source"),
        (args(&["--psk-hex", &plus_a(64)]), "+a as PSK"),
        (args(&["--psk-hex", &big('a')]), "64 KiB PSK"),
        (
            args(&["--psk-hex", KEY32, "--listen", &big('l')]),
            "64 KiB address",
        ),
        (
            args(&["--psk-hex", KEY32, "--max-peers", "many"]),
            "not a number",
        ),
        (
            args(&["--psk-hex", KEY32, "--max-peers", "0"]),
            "no peer at all",
        ),
        (
            args(&["--psk-hex", KEY32, "--run-for", "-5"]),
            "negative duration",
        ),
        (
            with(
                &[
                    "--emks",
                    "https://127.0.0.1:9",
                    "--certs",
                    "/nonexistent",
                    "--emse-id",
                ],
                vec![not_utf8()],
            ),
            "non-UTF-8 EMSE_Id",
        ),
        (
            args(&[
                "--emks",
                "https://127.0.0.1:9",
                "--certs",
                "/nonexistent",
                "--emse-id",
                &big('e'),
            ]),
            "64 KiB EMSE_Id",
        ),
        (
            args(&["--psk-hex", KEY32, "--emks", "https://127.0.0.1:9"]),
            "two key sources",
        ),
        (args(&["--psk-hex", KEY32, "--bogus"]), "unknown flag"),
        (args(&["--psk-hex"]), "missing value"),
        (
            args(&["--psk-hex", KEY32, "--oscore-listen", "localhost"]),
            "OSCORE address without a port",
        ),
        (
            args(&["--psk-hex", KEY32, "--oscore-listen", &big('l')]),
            "64 KiB OSCORE address",
        ),
    ];
    for (argv, what) in &cases {
        expect_usage_error("emse", argv, what);
    }
}

#[test]
fn emks_refuses_hostile_arguments_with_one_short_line() {
    let certs = ["--certs", "/nonexistent"];
    let cases: Vec<(Vec<OsString>, &str)> = vec![
        (vec![], "no --certs"),
        (
            with(&certs, args(&["--listen", &big('l')])),
            "64 KiB address",
        ),
        (
            with(&certs, args(&["--provision", "emse-a,sensor"])),
            "provision with two parts",
        ),
        (
            with(&certs, args(&["--provision", &big(',')])),
            "64 KiB provision",
        ),
        (
            with(&certs, args(&["--provision", "emse-a,a@b,+12345678"])),
            "bad IMSI",
        ),
        (
            with(&certs, vec![os("--allow-imsi"), not_utf8()]),
            "non-UTF-8 EMSE_Id",
        ),
        (with(&certs, args(&["--rate", "0"])), "zero rate"),
        (with(&certs, args(&["--rate", "NaN"])), "NaN rate"),
        (with(&certs, args(&["--burst", "0"])), "zero burst"),
        (
            with(&certs, args(&["--keys-per-ue", "0"])),
            "no keys per UE",
        ),
        (
            with(&certs, args(&["--metrics-listen", "anywhere"])),
            "bad metrics address",
        ),
        (
            with(&certs, args(&["--log-format", &big('j')])),
            "64 KiB log format",
        ),
        (args(&["gen-pki"]), "gen-pki without --dir"),
        (
            with(
                &["gen-pki", "--dir", "/nonexistent", "--emse"],
                vec![not_utf8()],
            ),
            "non-UTF-8 EMSE_Id",
        ),
        (
            args(&[
                "gen-pki",
                "--dir",
                "/nonexistent",
                "--listen",
                "127.0.0.1:1",
            ]),
            "serve flag with gen-pki",
        ),
        (with(&certs, args(&["--bogus"])), "unknown flag"),
        (with(&certs, args(&["--listen"])), "missing value"),
        (with(&certs, args(&["--store", "nosuch"])), "unknown store"),
        (
            with(&certs, args(&["--kek-file", "/nonexistent"])),
            "redb store without --data-dir",
        ),
        (
            with(&certs, args(&["--data-dir", "/nonexistent"])),
            "redb store without --kek-file",
        ),
        (
            with(&certs, args(&["--store", "memory", "--data-dir", "/tmp/x"])),
            "memory store with --data-dir",
        ),
        (
            with(&certs, args(&["--store", "memory", "--kek-file", "/tmp/k"])),
            "memory store with --kek-file",
        ),
        (
            with(
                &certs,
                args(&["--store", "memory", "--backup-dir", "/tmp/b"]),
            ),
            "memory store with --backup-dir",
        ),
        (
            with(
                &certs,
                args(&[
                    "--store",
                    "postgres",
                    "--kek-file",
                    "/tmp/k",
                    "--backup-dir",
                    "/tmp/b",
                ]),
            ),
            "postgres store with --backup-dir",
        ),
        (
            with(&certs, args(&["--store", "memory"])),
            "a --certs directory that does not exist",
        ),
        (
            args(&["restore", "--backup", "/tmp/b", "--data-dir", "/tmp/d"]),
            "restore without --kek-file",
        ),
        (args(&["gen-kek"]), "gen-kek without --out"),
        (
            args(&["gen-kek", "--out", "/nonexistent/k", "--version", "0"]),
            "KEK version 0",
        ),
    ];
    for (argv, what) in &cases {
        expect_usage_error("emks", argv, what);
    }
}

#[test]
fn e2m_demo_takes_no_arguments() {
    let cases: Vec<(Vec<OsString>, &str)> = vec![
        (args(&["--bogus"]), "unknown flag"),
        (vec![not_utf8()], "non-UTF-8 argument"),
        (args(&[&big('x')]), "64 KiB argument"),
    ];
    for (argv, what) in &cases {
        expect_usage_error("e2m_demo", argv, what);
    }
}

#[test]
fn help_works_everywhere_and_shows_defaults() {
    let expectations: [(&str, &[&str], &[&str]); 7] = [
        ("derive", &["--help"], &["milenage", "ck-ik-prime"]),
        (
            "derive",
            &["milenage", "--help"],
            &["--sqn", "--amf", "--op"],
        ),
        (
            "emks",
            &["--help"],
            &[
                "[default: 127.0.0.1:8443]",
                "--metrics-listen",
                "--log-format",
                "gen-pki",
                "gen-kek",
                "--data-dir",
                "[default: redb]",
                "--backup-dir",
                "restore",
            ],
        ),
        ("hss", &["--help"], &["[default: 1]", "[default: rand]"]),
        ("emse", &["--help"], &["[default: 127.0.0.1:5684]"]),
        ("ue", &["--help"], &["[default: hello]", "[default: 10]"]),
        ("e2m_demo", &["--help"], &["Usage: e2m_demo"]),
    ];
    for (example, argv, needles) in expectations {
        let out = run_bounded(
            Command::new(example_binary(example)).args(argv),
            Duration::from_secs(20),
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{example} {argv:?}: {out:?}");
        assert!(stdout.contains("Usage:"), "{example} {argv:?}: {stdout}");
        for needle in needles {
            assert!(
                stdout.contains(needle),
                "{example} {argv:?}: help lacks {needle:?}:\n{stdout}"
            );
        }
        assert!(
            !stdout.contains('\u{1b}'),
            "{example}: colour codes in help written to a pipe"
        );
    }
}

/// Control characters in what an error line echoes (a file name, a value) come out
/// escaped: a hostile name cannot move the cursor, recolour the terminal or forge a second
/// log line. Checked on a path the example reads (a missing --provision-file, which is bad
/// input: exit 2) and on a value clap refuses.
#[test]
fn echoed_paths_and_values_show_control_characters_escaped() {
    let pki = support::temp_dir("args-pki");
    let out = run_bounded(
        Command::new(example_binary("emks"))
            .args(["gen-pki", "--dir"])
            .arg(&pki)
            .args(["--emse", "emse-a"]),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "gen-pki: {out:?}");
    let hostile = "/nonexistent/\u{1b}[31mred\nemks: forged line\u{202e}";
    let cases: Vec<(Vec<OsString>, &str)> = vec![
        (
            with(
                &["--store", "memory", "--certs", pki.to_str().unwrap()],
                args(&["--provision-file", hostile]),
            ),
            "missing --provision-file",
        ),
        (
            args(&["--store", "memory", "--certs", hostile]),
            "missing --certs",
        ),
        (
            args(&["--certs", "/nonexistent", "--listen", "\u{1b}[2J\r1.2.3.4"]),
            "--listen value",
        ),
    ];
    for (argv, what) in &cases {
        expect_usage_error("emks", argv, what);
        let out = run_bounded(
            Command::new(example_binary("emks")).args(argv),
            Duration::from_secs(20),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        let line = stderr.trim_end_matches('\n');
        assert!(
            !line.chars().any(|c| c.is_control() || c == '\u{202e}'),
            "{what}: control characters in {line:?}"
        );
        assert!(
            line.contains("\\u{1b}"),
            "{what}: escape not shown: {line:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&pki);
}
