//! The `derive` example against published vectors, run as an operator runs it:
//! `derive milenage` against the TS 35.208 §4.3 conformance data (test sets 1 and 3–6) in
//! `crates/e2m-aka/tests/data/milenage_ts35208.txt` (its sources are cited in that file), and
//! `derive ck-ik-prime` against RFC 5448 Appendix C case 1.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests"
)]

mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use support::{example_binary, run_bounded};

/// The TS 35.208 sets, as `name → hex` per set, read from e2m-aka's data file.
fn ts_35_208_sets() -> Vec<BTreeMap<String, String>> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crates/e2m-aka/tests/data/milenage_ts35208.txt"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let mut sets: Vec<BTreeMap<String, String>> = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, value) = line.split_once(" = ").unwrap();
        if name == "set" {
            sets.push(BTreeMap::new());
        }
        sets.last_mut()
            .unwrap()
            .insert(name.to_owned(), value.to_owned());
    }
    sets
}

/// Runs `derive` and returns its `name = hex` lines.
fn derive(args: &[&str]) -> BTreeMap<String, String> {
    let out = run_bounded(
        Command::new(example_binary("derive")).args(args),
        Duration::from_secs(20),
    );
    assert!(out.status.success(), "derive {args:?}: {out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let (name, value) = line.split_once(" = ").unwrap();
            (name.to_owned(), value.to_owned())
        })
        .collect()
}

fn xor_hex(a: &str, b: &str) -> String {
    let a = hex::decode(a).unwrap();
    let b = hex::decode(b).unwrap();
    hex::encode(a.iter().zip(&b).map(|(x, y)| x ^ y).collect::<Vec<u8>>())
}

#[test]
fn derive_milenage_matches_ts_35_208() {
    let sets = ts_35_208_sets();
    assert_eq!(sets.len(), 5, "sets 1 and 3-6");
    for set in &sets {
        let n = &set["set"];
        let v = |name: &str| set[name].as_str();
        // From K and OP: OPc is computed and printed, then every function.
        let out = derive(&[
            "milenage",
            "--k",
            v("k"),
            "--op",
            v("op"),
            "--rand",
            v("rand"),
            "--sqn",
            v("sqn"),
            "--amf",
            v("amf"),
        ]);
        // The data file's column → the example's output name (TS 35.206 §4.1 functions).
        for (column, output) in [
            ("opc", "opc"),
            ("f1", "mac_a"),
            ("f1star", "mac_s"),
            ("f2", "res"),
            ("f3", "ck"),
            ("f4", "ik"),
            ("f5", "ak"),
            ("f5star", "ak_star"),
        ] {
            assert_eq!(
                out.get(output).map(String::as_str),
                Some(v(column)),
                "set {n}: {column}"
            );
        }
        // AUTN = SQN ⊕ AK ‖ AMF ‖ MAC-A (TS 33.102 §6.3.2), composed here from the data.
        let autn = format!("{}{}{}", xor_hex(v("sqn"), v("f5")), v("amf"), v("f1"));
        assert_eq!(out["autn"], autn, "set {n}: AUTN");
        assert_eq!(out.len(), 9, "set {n}: {out:?}");

        // From OPc and RAND alone (upper-case hex accepted): f2–f5 and f5*, no OPc line.
        let upper_k = v("k").to_uppercase();
        let out = derive(&[
            "milenage",
            "--k",
            &upper_k,
            "--opc",
            v("opc"),
            "--rand",
            v("rand"),
        ]);
        let names: Vec<&str> = out.keys().map(String::as_str).collect();
        assert_eq!(names, ["ak", "ak_star", "ck", "ik", "res"], "set {n}");
        assert_eq!(out["res"], v("f2"), "set {n}: f2");
        assert_eq!(out["ak_star"], v("f5star"), "set {n}: f5*");
    }
}

#[test]
fn derive_ck_ik_prime_matches_rfc_5448_case_1() {
    // RFC 5448 Appendix C, test case 1 (the line CI also checks).
    let out = derive(&[
        "ck-ik-prime",
        "--ck",
        "5349fbe098649f948f5d2e973a81c00f",
        "--ik",
        "9744871ad32bf9bbd1dd5ce54e3e2e5a",
        "--network-name",
        "WLAN",
        "--sqn-xor-ak",
        "bb52e91c747a",
    ]);
    assert_eq!(out["ck_prime"], "0093962d0dd84aa5684b045c9edffa04");
    assert_eq!(out["ik_prime"], "ccfc230ca74fcc96c0a5d61164f5a76c");
}

#[test]
fn derive_kdf_keeps_the_command_line_order_of_parameters() {
    // P0 = 0x01, P1 = "ab", P2 = 0x02 in one order and another: the KDF's S differs, so must
    // the output; and the first equals the KDF computed here with HMAC-SHA-256 directly
    // (TS 33.220 B.2: S = FC ‖ P0 ‖ L0 ‖ P1 ‖ L1 ‖ …).
    use hmac::{Hmac, KeyInit, Mac};
    let first = derive(&[
        "kdf", "--key", "00", "--fc", "20", "--p", "01", "--p-text", "ab", "--p", "02",
    ]);
    let second = derive(&[
        "kdf", "--key", "00", "--fc", "20", "--p", "02", "--p", "01", "--p-text", "ab",
    ]);
    assert_ne!(first["derived"], second["derived"]);
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&[0x00]).unwrap();
    mac.update(&[
        0x20, 0x01, 0x00, 0x01, b'a', b'b', 0x00, 0x02, 0x02, 0x00, 0x01,
    ]);
    assert_eq!(first["derived"], hex::encode(mac.finalize().into_bytes()));
}

/// `derive oscore-context` against the e2m OSCORE profile vector of
/// `crates/e2m-oscore/tests/data/e2m_profile.txt` (computed by that crate's independent
/// Python reference, `vectors/generate.py`).
#[test]
fn oscore_context_matches_the_independent_e2m_profile_vector() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crates/e2m-oscore/tests/data/e2m_profile.txt"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let section = text
        .split("\n[")
        .find(|s| s.starts_with("e2m profile context]"))
        .unwrap();
    let vector: BTreeMap<&str, &str> = section
        .lines()
        .filter_map(|line| line.split_once(" = "))
        .collect();
    let out = derive(&[
        "oscore-context",
        "--e2m-key",
        vector["e2m_key"],
        "--app-identity",
        vector["identity"],
        "--key-id",
        vector["key_id"],
    ]);
    for name in [
        "master_secret",
        "id_context",
        "ue_sender_key",
        "emse_sender_key",
        "common_iv",
    ] {
        assert_eq!(out[name], vector[name], "{name}");
    }
    assert_eq!(out["ue_sender_id"], vector["key_id"]);
    assert_eq!(out["emse_sender_id"], "");
    assert_eq!(out["master_salt"], "");
}

/// The AKMA sets of `crates/e2m-keyid/tests/data/akma.txt` (written by e2m-kdf's
/// independent Python reference from TS 35.208 sets 1, 3 and 4), as `name → value`.
fn akma_sets() -> Vec<BTreeMap<String, String>> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crates/e2m-keyid/tests/data/akma.txt"
    );
    let text = std::fs::read_to_string(path).unwrap();
    text.split("\n[")
        .skip(1)
        .map(|section| {
            section
                .lines()
                .filter_map(|line| line.split_once(" = "))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        })
        .collect()
}

/// `derive kausf`, `res-star`, `kakma`, `a-tid`, `a-kid` and `kaf` reproduce every step of
/// the AKMA chain of each set; the SUPI is given in its TS 29.571 form (the KDF takes it
/// without the prefix) and, for an IMSI, as bare digits.
#[test]
fn derive_akma_chain_matches_the_independent_reference() {
    let sets = akma_sets();
    assert_eq!(sets.len(), 3);
    for set in &sets {
        let v = |name: &str| set[name].as_str();
        let name = v("supi");
        let kausf = derive(&[
            "kausf",
            "--ck",
            v("ck"),
            "--ik",
            v("ik"),
            "--serving-network-name",
            v("serving_network_name"),
            "--sqn-xor-ak",
            v("sqn_xor_ak"),
        ]);
        assert_eq!(kausf["kausf"], v("kausf"), "{name}");
        let res_star = derive(&[
            "res-star",
            "--ck",
            v("ck"),
            "--ik",
            v("ik"),
            "--serving-network-name",
            v("serving_network_name"),
            "--rand",
            v("rand"),
            "--res",
            v("res"),
        ]);
        assert_eq!(res_star["res_star"], v("xres_star"), "{name}");
        let mut supis = vec![v("supi")];
        if v("supi").starts_with("imsi-") {
            supis.push(v("supi_kdf_param"));
        }
        for supi in supis {
            let kakma = derive(&["kakma", "--kausf", v("kausf"), "--supi", supi]);
            assert_eq!(kakma["kakma"], v("kakma"), "{supi}");
            let a_tid = derive(&["a-tid", "--kausf", v("kausf"), "--supi", supi]);
            assert_eq!(a_tid["a_tid"], v("a_tid"), "{supi}");
        }
        let home = ["--routing-indicator", v("routing_indicator")];
        let realm = ["--home-network", v("home_realm")];
        for from in [
            vec!["--kausf", v("kausf"), "--supi", v("supi")],
            vec!["--a-tid", v("a_tid")],
        ] {
            let mut args = vec!["a-kid"];
            args.extend(&from);
            args.extend(home);
            args.extend(realm);
            let a_kid = derive(&args);
            assert_eq!(a_kid["a_kid"], v("a_kid"), "{name}");
            // TS 24.109 K.3.2 e): the prefix "3GPP-AKMA" and the A-KID.
            assert_eq!(
                a_kid["psk_identity"],
                format!("3GPP-AKMA{}", v("a_kid")),
                "{name}"
            );
        }
        for i in 0..3 {
            let af_id = v(&format!("af_id_{i}"));
            let (fqdn, ua) = af_id.split_once(";ua=").unwrap();
            let want = v(&format!("kaf_{i}"));
            let by_parts = derive(&[
                "kaf",
                "--kakma",
                v("kakma"),
                "--af-fqdn",
                fqdn,
                "--ua-protocol",
                ua,
            ]);
            assert_eq!(by_parts["kaf"], want, "{name} K_AF {i}");
            assert_eq!(by_parts["af_id"], af_id);
            assert_eq!(by_parts["af_id_octets"], v(&format!("af_id_{i}_octets")));
            let by_octets = derive(&[
                "kaf",
                "--kakma",
                v("kakma"),
                "--af-id",
                v(&format!("af_id_{i}_octets")),
            ]);
            assert_eq!(by_octets["kaf"], want, "{name} K_AF {i}");
            if ua == "010001c0a8" {
                // The default Ua* id is the e2m DTLS suite's (TS 33.220 H.3).
                let default = derive(&["kaf", "--kakma", v("kakma"), "--af-fqdn", fqdn]);
                assert_eq!(default["kaf"], want, "{name}");
            }
        }
    }
}
