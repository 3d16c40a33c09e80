//! Golden encodings of every base message kind the node sends (CER, CEA, DWR, DWA, DPR, DPA,
//! error answers with and without the E bit), kept in `golden/*.hex` with their source, and
//! read back by independent decoders: Wireshark's dissector (`tshark`, Debian package
//! `tshark`) checks each field value listed in the file, and `pycrate_diameter` (PyPI
//! `pycrate`) parses and re-encodes each message to the same octets.
//!
//! Regenerate the hex (comment lines are kept) with `E2M_DIAMETER_BLESS=1 cargo test -p
//! e2m-diameter --test golden`. Without `tshark` or `pycrate` the decoder tests say so and
//! pass, except under `CI` (set by `.ci/run`), where `.ci/test` installs them first.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

mod support;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use e2m_diameter::{
    AdvertisedApplication, ApplicationId, AvpCode, AvpHeader, CommandCode, DisconnectCause,
    MessageView, NodeConfig,
};
use support::{APP, World, request};

const KINDS: [&str; 8] = [
    "cer",
    "cea",
    "dwr",
    "dwa",
    "dpr",
    "dpa",
    "error_5001_failed_avp",
    "error_3007_e_bit",
];

fn node_config(host: &str, ip: IpAddr, seed: u64) -> NodeConfig {
    let mut c = NodeConfig::new(host, "example.org", vec![ip]);
    // 32473: the IANA enterprise number reserved for documentation (RFC 5612).
    c.vendor_id = 32473;
    c.product_name = "e2m-diameter".to_owned();
    c.firmware_revision = Some(1);
    c.origin_state_id = 1_700_000_000;
    c.supported_vendor_ids = vec![10415];
    c.applications = vec![
        AdvertisedApplication::vendor_auth(APP, 32473),
        AdvertisedApplication::acct(ApplicationId::BASE_ACCOUNTING),
    ];
    c.watchdog_interval = Duration::from_secs(30);
    c.accept_unknown_peers = true;
    c.seed = seed;
    c
}

/// Runs an HSS and an EMKS node and takes the first message of each kind off the wire.
fn capture() -> Vec<(&'static str, Vec<u8>)> {
    let mut w = World::new();
    let hss = w.add(node_config(
        "hss.example.org",
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        1,
    ));
    let emks = w.add(node_config(
        "emks.example.org",
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
        2,
    ));
    w.peer(emks, "hss.example.org", false);
    let peer = w.peer(hss, "emks.example.org", true);
    w.pump();
    w.advance(Duration::from_secs(33));
    let now = w.now;
    w.nodes[hss].disconnect(peer, DisconnectCause::DO_NOT_WANT_TO_TALK_TO_YOU, now);
    w.pump();
    let find = |command: CommandCode, request: bool| {
        w.wire
            .iter()
            .map(|(_, m)| m.clone())
            .find(|m| {
                let v = MessageView::parse(m).unwrap();
                v.command() == command && v.is_request() == request
            })
            .unwrap_or_else(|| panic!("no {command:?} request={request} on the wire"))
    };
    let mut out = vec![
        ("cer", find(CommandCode::CAPABILITIES_EXCHANGE, true)),
        ("cea", find(CommandCode::CAPABILITIES_EXCHANGE, false)),
        ("dwr", find(CommandCode::DEVICE_WATCHDOG, true)),
        ("dwa", find(CommandCode::DEVICE_WATCHDOG, false)),
        ("dpr", find(CommandCode::DISCONNECT_PEER, true)),
        ("dpa", find(CommandCode::DISCONNECT_PEER, false)),
    ];
    // Error answers from the EMKS to a hand-made peer.
    let (conn, _) = w.raw_open(emks, "mme.example.net", "example.net");
    let mut bad = request(
        "mme.example.net",
        "example.net",
        "example.org",
        None,
        "mme.example.net;1;1",
    );
    let mut extra = e2m_diameter::AvpBuf::new();
    extra.octets(
        AvpHeader::mandatory(AvpCode(4242)).with_vendor(32473),
        b"unknown",
    );
    bad.extend_from_slice(&extra.finish().unwrap());
    let len = bad.len() as u32;
    bad[1..4].copy_from_slice(&len.to_be_bytes()[1..]);
    bad[12..20].copy_from_slice(&[0, 0, 0, 0x2a, 0, 0, 0, 0x2b]);
    let (answers, _) = w.raw_exchange(emks, conn, &bad);
    out.push(("error_5001_failed_avp", answers[0].clone()));
    let mut other_app = request(
        "mme.example.net",
        "example.net",
        "example.org",
        None,
        "mme.example.net;1;2",
    );
    other_app[8..12].copy_from_slice(&16_777_251u32.to_be_bytes());
    other_app[12..20].copy_from_slice(&[0, 0, 0, 0x2c, 0, 0, 0, 0x2d]);
    let (answers, _) = w.raw_exchange(emks, conn, &other_app);
    out.push(("error_3007_e_bit", answers[0].clone()));
    assert_eq!(out.iter().map(|(k, _)| *k).collect::<Vec<_>>(), KINDS);
    out
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("golden")
}

/// A golden file: comment lines (`#`), of which `# tshark FIELD = VALUE` lines are
/// expectations, then the message in hex.
struct Golden {
    comments: Vec<String>,
    expect: Vec<(String, String)>,
    octets: Vec<u8>,
}

fn read_golden(kind: &str) -> Golden {
    let path = golden_dir().join(format!("{kind}.hex"));
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let mut g = Golden {
        comments: Vec::new(),
        expect: Vec::new(),
        octets: Vec::new(),
    };
    let mut hex = String::new();
    for line in text.lines() {
        if let Some(c) = line.strip_prefix('#') {
            g.comments.push(line.to_owned());
            if let Some((field, value)) = c
                .trim()
                .strip_prefix("tshark ")
                .and_then(|e| e.split_once(" = "))
            {
                g.expect
                    .push((field.trim().to_owned(), value.trim().to_owned()));
            }
        } else {
            hex.extend(line.chars().filter(|c| c.is_ascii_hexdigit()));
        }
    }
    g.octets = hex::decode(hex).unwrap_or_default();
    g
}

#[test]
fn golden_encodings_match_what_the_node_sends() {
    let bless = std::env::var_os("E2M_DIAMETER_BLESS").is_some();
    for (kind, octets) in capture() {
        let g = read_golden(kind);
        if bless {
            let mut text = g.comments.join("\n");
            if !text.is_empty() {
                text.push('\n');
            }
            for chunk in octets.chunks(16) {
                text.push_str(&hex::encode(chunk));
                text.push('\n');
            }
            std::fs::write(golden_dir().join(format!("{kind}.hex")), text).unwrap();
            continue;
        }
        assert_eq!(
            hex::encode(&g.octets),
            hex::encode(&octets),
            "{kind}: the node's encoding changed"
        );
        assert!(
            !g.expect.is_empty(),
            "{kind}: the golden file lists no field to check"
        );
        // Our own decoder reads the listed AVP values too.
        let v = MessageView::parse(&g.octets).unwrap();
        v.check_framing().unwrap();
    }
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn required_or_skip(what: &str) -> bool {
    if std::env::var_os("CI").is_some() {
        panic!("{what} is required under CI (.ci/test installs it)");
    }
    eprintln!(
        "SKIPPED: {what} is not installed (Debian `tshark`, PyPI `pycrate`); .ci/test installs them"
    );
    false
}

/// Writes the golden messages as one TCP stream on port 3868 with `text2pcap`.
fn pcap(dir: &Path, messages: &[Vec<u8>]) -> PathBuf {
    let mut dump = String::new();
    for m in messages {
        for (i, chunk) in m.chunks(16).enumerate() {
            dump.push_str(&format!("{:06x}", i * 16));
            for b in chunk {
                dump.push_str(&format!(" {b:02x}"));
            }
            dump.push('\n');
        }
    }
    let txt = dir.join("golden.txt");
    let out = dir.join("golden.pcap");
    std::fs::write(&txt, dump).unwrap();
    let run = Command::new("text2pcap")
        .args(["-q", "-T", "3868,3868"])
        .arg(&txt)
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "text2pcap failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    out
}

#[test]
fn tshark_reads_every_golden_message_with_the_values_meant() {
    if !(have("tshark") && Command::new("text2pcap").arg("-h").output().is_ok()) {
        required_or_skip("tshark");
        return;
    }
    let goldens: Vec<(&str, Golden)> = KINDS.iter().map(|k| (*k, read_golden(k))).collect();
    let dir = std::env::temp_dir().join(format!("e2m-diameter-golden-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = pcap(
        &dir,
        &goldens
            .iter()
            .map(|(_, g)| g.octets.clone())
            .collect::<Vec<_>>(),
    );
    // One tshark run, one line per message, the union of the fields every file lists.
    let mut fields: Vec<String> = vec!["_ws.malformed".into(), "_ws.expert.severity".into()];
    for (_, g) in &goldens {
        for (field, _) in &g.expect {
            if !fields.contains(field) {
                fields.push(field.clone());
            }
        }
    }
    let mut args: Vec<String> = vec![
        "-r".into(),
        file.display().to_string(),
        "-T".into(),
        "fields".into(),
    ];
    for opt in ["occurrence=a", "aggregator=|", "separator=/t"] {
        args.push("-E".into());
        args.push(opt.into());
    }
    for field in &fields {
        args.push("-e".into());
        args.push(field.clone());
    }
    let out = Command::new("tshark").args(&args).output().unwrap();
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.len(),
        goldens.len(),
        "one packet per golden message: {text}"
    );
    for ((kind, g), line) in goldens.iter().zip(lines) {
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(cols.len(), fields.len(), "{kind}: {line:?}");
        assert_eq!(cols[0], "", "{kind}: tshark calls the message malformed");
        // Expert info up to Warning is allowed (the test application and the deliberately
        // unknown AVP are not in Wireshark's dictionary); Error (0x00800000) is not.
        for severity in cols[1].split('|').filter(|s| !s.is_empty()) {
            assert!(
                severity.parse::<u32>().unwrap() < 0x0080_0000,
                "{kind}: tshark reports an error ({severity})"
            );
        }
        for (field, want) in &g.expect {
            let i = fields.iter().position(|f| f == field).unwrap();
            assert_eq!(
                cols[i], want,
                "{kind}: tshark reads {field} as {:?}, the golden file says {want:?}",
                cols[i]
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn pycrate_parses_and_reencodes_every_golden_message() {
    let probe = Command::new("python3")
        .args(["-c", "import pycrate_diameter.Diameter"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        required_or_skip("pycrate");
        return;
    }
    let script = r#"
import sys
from pycrate_diameter.Diameter import DiameterGeneric
for line in sys.stdin:
    kind, hexs = line.split()
    buf = bytes.fromhex(hexs)
    m = DiameterGeneric()
    m.from_bytes(buf)
    hdr = m['DiameterHdr']
    codes = [avp['AVPHdr']['Code'].get_val() for avp in m['AVPs']]
    assert m.to_bytes() == buf, kind + ': re-encoding differs'
    print(kind, hdr['Cmd'].get_val(), hdr['R'].get_val(), hdr['E'].get_val(), hdr['HHID'].get_val(), hdr['EEID'].get_val(), ','.join(map(str, codes)))
"#;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = String::new();
    let goldens: Vec<(&str, Golden)> = KINDS.iter().map(|k| (*k, read_golden(k))).collect();
    for (kind, g) in &goldens {
        input.push_str(&format!("{kind} {}\n", hex::encode(&g.octets)));
    }
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "pycrate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for ((kind, g), line) in goldens.iter().zip(text.lines()) {
        let v = MessageView::parse(&g.octets).unwrap();
        let codes: Vec<String> = v.avps().map(|a| a.unwrap().code().0.to_string()).collect();
        let want = format!(
            "{kind} {} {} {} {} {} {}",
            v.command().0,
            u8::from(v.is_request()),
            u8::from(v.flags().is_error()),
            v.header().hop_by_hop,
            v.header().end_to_end,
            codes.join(",")
        );
        assert_eq!(line, want, "pycrate reads {kind} differently");
    }
}
