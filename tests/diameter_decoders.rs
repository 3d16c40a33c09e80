//! Independent decoders read what we put on the wire (issue 17): Wireshark's dissector
//! (`tshark`, Debian, with the push dictionary `crates/e2m-diameter-push/dictionary/
//! wireshark-e2m.xml` through `tests/diameter/tshark_e2m.sh`) and `pycrate_diameter` (PyPI,
//! vendor-aware through `tests/diameter/e2m_pycrate.py`) decode
//!
//! - the golden push messages (`crates/e2m-diameter-push/golden/*.hex`, whose octets this
//!   crate writes exactly) with the field values each file lists, and
//! - a capture of **every message kind our HSS and EMKS send** in a live run through a
//!   recording forwarder: CER, CEA, DWR, DWA (both ways), the push request (RAND_LSB32 with
//!   milliseconds, SHORT_HASH), its retransmission with the T flag, and the answers 2001,
//!   2001 from the duplicate cache, 3004 (E bit), 5003, 5004 and 5005 with their
//!   Failed-AVP, DPR and DPA
//!
//! without an error or a malformed field, and with the values we meant.
//!
//! Without tshark or pycrate the tests say so and pass, except under `CI`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests"
)]

#[path = "support/diameter.rs"]
mod diameter;
mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use diameter::{Recorder, counting_core_with_delay, kit, tools};
use e2m_diameter::{AvpCode, MessageBuilder, MessageView};
use e2m_diameter_push::net::{
    EmksDiameterConfig, HssDiameter, HssDiameterConfig, HssPeer, start_emks_diameter,
};
use e2m_diameter_push::{PushProfile, Routing};
use e2m_msg::{E2mIntKey, Imsi, IntermediateKeyPush, KeyId, KeyIdSource, Timestamp};
use serde_json::Value;

const KEY: [u8; 32] = [
    0x9b, 0x3e, 0x5a, 0x7c, 0x1d, 0x2f, 0x48, 0x60, 0xa1, 0xb2, 0xc3, 0xd4, 0xe5, 0xf6, 0x07, 0x18,
    0x29, 0x3a, 0x4b, 0x5c, 0x6d, 0x7e, 0x8f, 0x90, 0x10, 0x21, 0x32, 0x43, 0x54, 0x65, 0x76, 0xf8,
];
/// 2026-11-27T09:30:00.017Z.
const CREATED_MS: u64 = 1_795_771_800_017;

/// One message and what an independent decoder must read in it: (tshark field, value).
struct Expect {
    label: String,
    octets: Vec<u8>,
    fields: Vec<(String, String)>,
}

fn expect(label: &str, octets: &[u8], fields: &[(&str, &str)]) -> Expect {
    Expect {
        label: label.to_owned(),
        octets: octets.to_vec(),
        fields: fields
            .iter()
            .map(|(f, v)| ((*f).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

fn golden() -> Vec<Expect> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/e2m-diameter-push/golden");
    let mut out = Vec::new();
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for path in names {
        let text = std::fs::read_to_string(&path).unwrap();
        let mut fields = Vec::new();
        let mut hex_text = String::new();
        for line in text.lines() {
            if let Some(c) = line.strip_prefix('#') {
                if let Some((f, v)) = c
                    .trim()
                    .strip_prefix("tshark ")
                    .and_then(|e| e.split_once(" = "))
                {
                    fields.push((f.trim().to_owned(), v.trim().to_owned()));
                }
            } else {
                hex_text.extend(line.chars().filter(char::is_ascii_hexdigit));
            }
        }
        assert!(!fields.is_empty(), "{}: no field to check", path.display());
        out.push(Expect {
            label: path.file_name().unwrap().to_string_lossy().into_owned(),
            octets: hex::decode(hex_text).unwrap(),
            fields,
        });
    }
    assert_eq!(out.len(), 7);
    out
}

/// Writes the messages as TCP packets towards port 3868 (text2pcap).
fn pcap(dir: &Path, messages: &[Expect]) -> PathBuf {
    let mut dump = String::new();
    for m in messages {
        for (i, chunk) in m.octets.chunks(16).enumerate() {
            dump.push_str(&format!("{:06x}", i * 16));
            for b in chunk {
                dump.push_str(&format!(" {b:02x}"));
            }
            dump.push('\n');
        }
    }
    let txt = dir.join("capture.txt");
    let out = dir.join("capture.pcap");
    std::fs::write(&txt, dump).unwrap();
    let run = Command::new("text2pcap")
        .args(["-q", "-T", "40000,3868"])
        .arg(&txt)
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "text2pcap: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    out
}

/// tshark (with our dictionary) reads every message without malformation or an error, and
/// each listed field with the value meant.
fn check_with_tshark(tag: &str, messages: &[Expect]) {
    let dir = support::temp_dir(tag);
    std::fs::create_dir_all(&dir).unwrap();
    let file = pcap(&dir, messages);
    let mut fields: Vec<String> = vec!["_ws.malformed".into(), "_ws.expert.severity".into()];
    for m in messages {
        for (f, _) in &m.fields {
            if !fields.contains(f) {
                fields.push(f.clone());
            }
        }
    }
    let mut command = Command::new(kit().join("tshark_e2m.sh"));
    command.args([
        "-T",
        "fields",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=|",
        "-E",
        "separator=/t",
    ]);
    for f in &fields {
        command.args(["-e", f]);
    }
    let out = command
        .stdin(std::fs::File::open(&file).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.len(),
        messages.len(),
        "one packet per message: {text}"
    );
    for (m, line) in messages.iter().zip(lines) {
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(cols.len(), fields.len(), "{}: {line:?}", m.label);
        assert_eq!(cols[0], "", "{}: tshark calls it malformed", m.label);
        for severity in cols[1].split('|').filter(|s| !s.is_empty()) {
            assert!(
                severity.parse::<u32>().unwrap() < 0x0080_0000,
                "{}: tshark reports an error ({severity})",
                m.label
            );
        }
        for (f, want) in &m.fields {
            let i = fields.iter().position(|x| x == f).unwrap();
            assert_eq!(
                cols[i], want,
                "{}: tshark reads {f} as {:?}",
                m.label, cols[i]
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// pycrate decodes every message without an error and re-reads the header; returns the
/// decoded messages as JSON.
fn check_with_pycrate(messages: &[Expect]) -> Vec<Value> {
    let mut child = Command::new("python3")
        .arg(kit().join("e2m_pycrate.py"))
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input: String = messages
        .iter()
        .map(|m| format!("{}\n", hex::encode(&m.octets)))
        .collect();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "pycrate: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let decoded: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(decoded.len(), messages.len());
    for (m, d) in messages.iter().zip(&decoded) {
        let v = MessageView::parse(&m.octets).unwrap();
        assert_eq!(d["command"], v.command().0, "{}", m.label);
        assert_eq!(d["length"], m.octets.len(), "{}", m.label);
        assert_eq!(
            d["end_to_end"],
            format!("{:08x}", v.header().end_to_end),
            "{}",
            m.label
        );
    }
    decoded
}

/// The value pycrate read for the first AVP named `name` (top level or one level down).
fn pycrate_value<'a>(d: &'a Value, name: &str) -> Option<&'a Value> {
    let avps = d["avps"].as_array()?;
    for a in avps {
        if a["name"] == name {
            return a.get("value").or_else(|| a.get("time_unix"));
        }
        if let Some(children) = a["avps"].as_array() {
            for c in children {
                if c["name"] == name {
                    return c.get("value").or_else(|| c.get("time_unix"));
                }
            }
        }
    }
    None
}

#[test]
fn the_golden_push_messages_decode_in_tshark_and_pycrate() {
    if !tools(&["pycrate_diameter"], &["tshark", "text2pcap", "setpriv"]) {
        return;
    }
    let messages = golden();
    check_with_tshark("diameter-golden", &messages);
    let decoded = check_with_pycrate(&messages);
    for (m, d) in messages.iter().zip(&decoded) {
        if m.label.starts_with("request_") {
            assert_eq!(pycrate_value(d, "User-Name").unwrap(), "001010123456789");
            assert_eq!(
                pycrate_value(d, "E2M-Int-Key").unwrap(),
                hex::encode(KEY).as_str()
            );
            assert_eq!(
                pycrate_value(d, "E2M-Creation-Time").unwrap(),
                1_795_771_800
            );
        }
    }
}

fn push(i: u64, key_id: KeyIdSource) -> IntermediateKeyPush {
    IntermediateKeyPush {
        imsi: Imsi::new(&format!("00101{i:010}")).unwrap(),
        key_id,
        int_key: E2mIntKey::from_array(KEY),
        created: Timestamp::from_unix_millis(CREATED_MS),
    }
}

/// A push request with the AVP `drop` left out, or a key of `key_len` octets (all 07).
fn bad_request(drop: Option<u32>, key_len: usize, end_to_end: u32) -> Vec<u8> {
    let p = PushProfile::PROVISIONAL;
    let routing = Routing {
        session_id: "hss.e2m.test;9;bad;e2m",
        origin_host: "hss.e2m.test",
        origin_realm: "e2m.test",
        destination_realm: "e2m.test",
        destination_host: None,
    };
    let good = p
        .encode_request(
            &routing,
            &push(9, KeyIdSource::RandLsb32(KeyId::from_u32(9))),
            end_to_end,
        )
        .unwrap();
    let view = MessageView::parse(&good).unwrap();
    let mut b = MessageBuilder::new(*view.header());
    for avp in view.avps() {
        let avp = avp.unwrap();
        if Some(avp.code().0) == drop {
            continue;
        }
        if avp.code() == p.avps().int_key && key_len != KEY.len() {
            b.octets(avp.header(), &vec![7; key_len]);
        } else {
            b.copy(&avp);
        }
    }
    b.finish().unwrap()
}

#[test]
fn every_message_kind_our_peers_send_decodes_in_tshark_and_pycrate() {
    if !tools(&["pycrate_diameter"], &["tshark", "text2pcap", "setpriv"]) {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let p = PushProfile::PROVISIONAL;
    let messages = runtime.block_on(async {
        // Store pushes take 300 ms and the EMKS takes one at once: a second concurrent push
        // is answered DIAMETER_TOO_BUSY.
        let (core, _, _) = counting_core_with_delay(Duration::from_millis(300));
        let mut config =
            EmksDiameterConfig::new("127.0.0.1:0".parse().unwrap(), "emks.e2m.test", "e2m.test");
        config.hss = vec!["hss.e2m.test".into()];
        config.relays = vec!["hss2.e2m.test".into()];
        config.watchdog_interval = Duration::from_secs(30);
        config.max_in_flight = 1;
        let emks = start_emks_diameter(core, config, None, Default::default())
            .await
            .unwrap();
        let recorder = Recorder::start(emks.local_addr()).await;
        let client = |host: &str| {
            let mut c = HssDiameterConfig::new(
                host,
                "e2m.test",
                "e2m.test",
                vec![HssPeer {
                    host: "emks.e2m.test".into(),
                    addr: recorder.addr,
                    tls: false,
                }],
            );
            c.watchdog_interval = Duration::from_secs(6);
            c.retry.deadline = Duration::from_secs(2);
            c
        };
        let hss = Arc::new(
            HssDiameter::start(client("hss.e2m.test"), None)
                .await
                .unwrap(),
        );
        assert!(hss.wait_ready(Duration::from_secs(10)).await);
        // RAND_LSB32 with milliseconds, then SHORT_HASH.
        hss.push(&push(
            1,
            KeyIdSource::RandLsb32(KeyId::from_u32(0xae47_bf35)),
        ))
        .await
        .unwrap();
        hss.push(&push(2, KeyIdSource::ShortHash)).await.unwrap();
        // A retransmission (T flag): answered from the duplicate cache.
        let routing = Routing {
            session_id: "hss.e2m.test;9;again;e2m",
            origin_host: "hss.e2m.test",
            origin_realm: "e2m.test",
            destination_realm: "e2m.test",
            destination_host: None,
        };
        let octets = p
            .encode_request(
                &routing,
                &push(3, KeyIdSource::RandLsb32(KeyId::from_u32(3))),
                0x0e2e_0003,
            )
            .unwrap();
        hss.endpoint().request(octets.clone()).await.unwrap();
        let mut again = octets;
        again[4] |= 0x10;
        hss.endpoint().request(again).await.unwrap();
        // Backpressure: two at once, the second answered 3004.
        let (a, b) = tokio::join!(
            hss.endpoint().request(bad_request(None, 32, 0x0e2e_0004)),
            async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                hss.endpoint()
                    .request(bad_request(None, 32, 0x0e2e_0005))
                    .await
            }
        );
        let codes = [a.unwrap(), b.unwrap()]
            .iter()
            .map(|m| MessageView::parse(m).unwrap().result_code().unwrap().0)
            .collect::<Vec<_>>();
        assert_eq!(codes, [2001, 3004]);
        // A key of 31 octets (5004) and no User-Name (5005).
        hss.endpoint()
            .request(bad_request(None, 31, 0x0e2e_0006))
            .await
            .unwrap();
        hss.endpoint()
            .request(bad_request(Some(AvpCode::USER_NAME.0), 32, 0x0e2e_0007))
            .await
            .unwrap();
        // A sender that is not an HSS: 5003.
        let other = HssDiameter::start(client("hss2.e2m.test"), None)
            .await
            .unwrap();
        assert!(other.wait_ready(Duration::from_secs(10)).await);
        assert!(other.push(&push(4, KeyIdSource::ShortHash)).await.is_err());
        other.shutdown(Duration::from_secs(2)).await;
        // Idle for the watchdogs: the HSS (Tw 6 s ± 2 s) sends DWR to the EMKS (Tw 30 s);
        // a second pair the other way round has the EMKS send DWR. Then DPR/DPA.
        let (core2, _, _) = counting_core_with_delay(Duration::ZERO);
        let mut config2 =
            EmksDiameterConfig::new("127.0.0.1:0".parse().unwrap(), "emks2.e2m.test", "e2m.test");
        config2.hss = vec!["hss3.e2m.test".into()];
        config2.watchdog_interval = Duration::from_secs(6);
        let emks2 = start_emks_diameter(core2, config2, None, Default::default())
            .await
            .unwrap();
        let recorder2 = Recorder::start(emks2.local_addr()).await;
        let mut c = HssDiameterConfig::new(
            "hss3.e2m.test",
            "e2m.test",
            "e2m.test",
            vec![HssPeer {
                host: "emks2.e2m.test".into(),
                addr: recorder2.addr,
                tls: false,
            }],
        );
        c.watchdog_interval = Duration::from_secs(30);
        let hss3 = HssDiameter::start(c, None).await.unwrap();
        assert!(hss3.wait_ready(Duration::from_secs(10)).await);
        tokio::time::sleep(Duration::from_secs(9)).await;
        hss.shutdown(Duration::from_secs(3)).await;
        hss3.shutdown(Duration::from_secs(3)).await;
        emks.shutdown(Duration::from_secs(2)).await;
        emks2.shutdown(Duration::from_secs(2)).await;
        let mut messages = recorder.messages.lock().unwrap().clone();
        messages.extend(recorder2.messages.lock().unwrap().iter().cloned());
        messages
    });

    // Name each message and say what the decoders must read in it.
    let mut expects = Vec::new();
    let mut kinds = std::collections::BTreeSet::new();
    for (to_emks, octets) in &messages {
        let v = MessageView::parse(octets).unwrap();
        let who = if *to_emks { "hss" } else { "emks" };
        // The identities this test gave its peers, by direction.
        let ours: &[&str] = if *to_emks {
            &["hss.e2m.test", "hss2.e2m.test", "hss3.e2m.test"]
        } else {
            &["emks.e2m.test", "emks2.e2m.test"]
        };
        let origin = v
            .origin_host()
            .filter(|o| ours.contains(o))
            .expect("one of ours");
        let flags = format!("0x{:02x}", octets[4]);
        let mut fields: Vec<(&str, String)> = vec![
            ("diameter.cmd.code", v.command().0.to_string()),
            ("diameter.flags", flags.clone()),
            ("diameter.Origin-Host", origin.to_owned()),
        ];
        let kind = match (v.command().0, v.is_request()) {
            (257, true) => "CER".to_owned(),
            (257, false) => "CEA".to_owned(),
            (280, r) => format!("{} {who}", if r { "DWR" } else { "DWA" }),
            (282, true) => "DPR".to_owned(),
            (282, false) => "DPA".to_owned(),
            (16_777_214, true) => {
                let info = p.decode_request(&v);
                match info {
                    Ok(r) => {
                        fields.push(("diameter.User-Name", r.push.imsi.as_str().to_owned()));
                        fields.push(("diameter.E2M-Int-Key", hex::encode(KEY)));
                        fields.push(("diameter.Session-Id", r.session_id.to_owned()));
                        match r.push.key_id {
                            KeyIdSource::RandLsb32(id) => {
                                fields.push(("diameter.E2M-Key-Id-Scheme", "0".into()));
                                fields.push(("diameter.E2M-Key-Id", id.as_u32().to_string()));
                            }
                            _ => fields.push(("diameter.E2M-Key-Id-Scheme", "1".into())),
                        }
                        fields.push(("diameter.E2M-Creation-Time-Fraction", "17".into()));
                        format!("push request{}", if r.retransmitted { " T" } else { "" })
                    }
                    Err(_) => "push request (made bad by the test)".to_owned(),
                }
            }
            (16_777_214, false) => {
                let rc = v.result_code().unwrap().0;
                fields.push(("diameter.Result-Code", rc.to_string()));
                match rc {
                    5004 => fields.push(("diameter.E2M-Int-Key", "07".repeat(31))),
                    5005 => fields.push(("diameter.User-Name", String::new())),
                    _ => {}
                }
                format!("push answer {rc}")
            }
            other => panic!("unexpected message {other:?}"),
        };
        // DWR/DWA carry Origin-Host too; nothing else to add for the base messages.
        kinds.insert(kind.clone());
        let fields: Vec<(&str, &str)> = fields.iter().map(|(f, v)| (*f, v.as_str())).collect();
        expects.push(expect(&kind, octets, &fields));
    }
    for kind in [
        "CER",
        "CEA",
        "DWR hss",
        "DWA hss",
        "DWR emks",
        "DWA emks",
        "DPR",
        "DPA",
        "push request",
        "push request T",
        "push answer 2001",
        "push answer 3004",
        "push answer 5003",
        "push answer 5004",
        "push answer 5005",
    ] {
        assert!(kinds.contains(kind), "no {kind} on the wire: {kinds:?}");
    }
    check_with_tshark("diameter-capture", &expects);
    let decoded = check_with_pycrate(&expects);
    for (e, d) in expects.iter().zip(&decoded) {
        for (field, want) in &e.fields {
            let name = field.strip_prefix("diameter.").unwrap();
            let Some(got) = pycrate_value(d, name) else {
                // Names pycrate's IETF table spells otherwise (none expected) would land here.
                assert!(
                    want.is_empty() || name == "cmd.code" || name == "flags",
                    "{}: pycrate has no {name}",
                    e.label
                );
                continue;
            };
            let got = match got {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            assert_eq!(&got, want, "{}: pycrate reads {name}", e.label);
        }
    }
}
