//! OSCORE protect+verify per message against a DTLS 1.2 record's encrypt+decrypt with the
//! same AEAD primitive (AES-128-CCM with an 8-octet tag, RustCrypto `ccm` + `aes`), measured
//! in the same run. The goal of issue 11 is OSCORE ≤ 1.5 × the DTLS record.
//!
//! ```text
//! cargo bench --bench oscore -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! Groups `request` (CON GET /sensors/temperature, 4-octet token) and `response` (ACK 2.05,
//! Content-Format text/plain, a 64-octet reading), each with the rows:
//! * `oscore`: CoAP message in → `protect_*` → wire octets → decode → `verify_*` → CoAP
//!   message out (the e2m profile's contexts: 4-octet kid; requests without the ID Context,
//!   the steady state after the first exchange).
//! * `oscore_datagram`: the fastest public path a transport has, and the figure the issue
//!   is about: `protect_*_datagram` into a reused buffer, then `verify_*_in_place` on those
//!   octets: the datagram is parsed, verified and decrypted where it lies, and the inner
//!   message is read as far as a handler needs (code, options validated in one walk,
//!   payload) into a borrowed `DecryptedView`. No outer `Message` is built, nothing is
//!   allocated.
//! * `oscore_datagram_owned`: the same with `verify_*_datagram`, which returns an owned
//!   `Message` (its option storage is the decryption buffer).
//! * `dtls_record`: CoAP message in → encode → DTLS 1.2 record (13-octet header, 8-octet
//!   explicit nonce, AAD = seq_num ‖ type ‖ version ‖ length, 13 octets; RFC 5246 §6.2.3.3,
//!   RFC 6655 §3) → decrypt → decode → CoAP message out. The same work around the AEAD:
//!   the baseline of the ratio.
//! * `dtls_record_bytes`: the record alone over the already-encoded CoAP octets (the
//!   narrowest baseline: no CoAP codec on the DTLS side).
//!
//! After the groups it prints, from this run's medians, each OSCORE row over `dtls_record`
//! (the issue's figure) and over `dtls_record_bytes`, for requests and responses; then the
//! same ratios measured interleaved (batches of each row in turn, the fastest batch of each
//! kept), which a loaded machine disturbs much less.
//!
//! **Instruction counts** (independent of the machine's load): with
//! `OSCORE_BENCH_ICOUNT=N` the binary runs each row N times in a function of its own
//! (`icount_<group>_<row>`) instead of criterion, for callgrind:
//!
//! ```text
//! cargo bench --bench oscore --no-run   # prints the binary's path
//! OSCORE_BENCH_ICOUNT=2000 valgrind --tool=callgrind --callgrind-out-file=cg.out <binary>
//! callgrind_annotate --inclusive=yes cg.out | grep icount_   # divide by N
//! ```
#![allow(missing_docs, reason = "criterion macros generate undocumented items")]
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "benchmark set-up")]

use std::hint::black_box;
use std::path::{Path, PathBuf};

use aes::Aes128;
use ccm::Ccm;
use ccm::aead::{AeadInOut, KeyInit};
use ccm::consts::{U8, U12};

use criterion::Criterion;
use e2m_coap::{Code, Message, MessageType, OptionNumber, Token};
use e2m_kdf::E2mKey;
use e2m_keyid::{AppIdentity, KeyId};
use e2m_oscore::e2m::E2mOscoreProfile;
use e2m_oscore::{DecryptedView, RequestId, SecurityContext, SenderSequence, VerifiedRequest};

/// TLS_PSK_WITH_AES_128_CCM_8's record protection (RFC 6655): AES-128-CCM, 8-octet tag,
/// 12-octet nonce = 4-octet implicit salt ‖ 8-octet explicit nonce.
type DtlsCcm8 = Ccm<Aes128, U8, U12>;

struct DtlsRecordKeys {
    cipher: DtlsCcm8,
    salt: [u8; 4],
}

const HEADER_LEN: usize = 13;
const EXPLICIT_NONCE_LEN: usize = 8;
const TAG_LEN: usize = 8;

impl DtlsRecordKeys {
    fn new() -> Self {
        DtlsRecordKeys {
            cipher: DtlsCcm8::new(&[0x42; 16].into()),
            salt: [1, 2, 3, 4],
        }
    }

    /// The 13-octet AAD: seq_num (epoch ‖ sequence, 8) ‖ type ‖ version ‖ length.
    fn aad(epoch_seq: u64, len: usize) -> [u8; 13] {
        let mut aad = [0u8; 13];
        aad[..8].copy_from_slice(&epoch_seq.to_be_bytes());
        aad[8] = 23; // application_data
        aad[9..11].copy_from_slice(&[0xfe, 0xfd]); // DTLS 1.2
        aad[11..13].copy_from_slice(&(len as u16).to_be_bytes());
        aad
    }

    fn encrypt(&self, epoch_seq: u64, plaintext: &[u8]) -> Vec<u8> {
        let mut record =
            Vec::with_capacity(HEADER_LEN + EXPLICIT_NONCE_LEN + plaintext.len() + TAG_LEN);
        let body_len = EXPLICIT_NONCE_LEN + plaintext.len() + TAG_LEN;
        record.push(23);
        record.extend_from_slice(&[0xfe, 0xfd]);
        record.extend_from_slice(&epoch_seq.to_be_bytes()); // epoch(2) ‖ sequence_number(6)
        record.extend_from_slice(&(body_len as u16).to_be_bytes());
        let explicit = epoch_seq.to_be_bytes();
        record.extend_from_slice(&explicit);
        let start = record.len();
        record.extend_from_slice(plaintext);
        let mut nonce = [0u8; 12];
        nonce[..4].copy_from_slice(&self.salt);
        nonce[4..].copy_from_slice(&explicit);
        let aad = Self::aad(epoch_seq, plaintext.len());
        let tag = self
            .cipher
            .encrypt_inout_detached((&nonce).into(), &aad, record[start..].as_mut().into())
            .unwrap();
        record.extend_from_slice(&tag);
        record
    }

    fn decrypt(&self, record: &[u8]) -> Vec<u8> {
        let epoch_seq = u64::from_be_bytes(record[3..11].try_into().unwrap());
        let body = &record[HEADER_LEN..];
        let (explicit, rest) = body.split_at(EXPLICIT_NONCE_LEN);
        let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
        let mut nonce = [0u8; 12];
        nonce[..4].copy_from_slice(&self.salt);
        nonce[4..].copy_from_slice(explicit);
        let aad = Self::aad(epoch_seq, ciphertext.len());
        let mut plaintext = ciphertext.to_vec();
        self.cipher
            .decrypt_inout_detached(
                (&nonce).into(),
                &aad,
                plaintext.as_mut_slice().into(),
                tag.try_into().unwrap(),
            )
            .unwrap();
        plaintext
    }
}

fn request() -> Message {
    let mut m = Message::new(
        MessageType::Confirmable,
        Code::GET,
        0x1a2b,
        Token::new(&[1, 2, 3, 4]).unwrap(),
    );
    m.set_uri_path("sensors/temperature").unwrap();
    m
}

fn response(request: &Message) -> Message {
    let mut m = request.piggybacked_response(Code::CONTENT, vec![b'7'; 64]);
    m.options.push(OptionNumber::CONTENT_FORMAT, &[]).unwrap();
    m
}

fn contexts() -> (SecurityContext, SecurityContext) {
    let profile = E2mOscoreProfile::PROVISIONAL;
    let key = E2mKey::from_array([0x5c; 32]);
    let identity = AppIdentity::new("sensor-17@iot.example.com").unwrap();
    let key_id = KeyId::from_u32(0xae47_bf35);
    (
        profile
            .ue_context(&key, &identity, key_id, SenderSequence::volatile())
            .unwrap(),
        profile
            .emse_context(&key, &identity, key_id, SenderSequence::volatile())
            .unwrap(),
    )
}

/// The state every row works on.
struct Rig {
    request: Message,
    response: Message,
    ue: SecurityContext,
    emse: SecurityContext,
    request_id: RequestId,
    emse_request: RequestId,
    dtls: DtlsRecordKeys,
    /// DTLS sequence number (epoch 1); each record takes the next one.
    seq: u64,
    datagram: Vec<u8>,
}

impl Rig {
    fn new() -> Rig {
        let request = request();
        let response = response(&request);
        let (mut ue, mut emse) = contexts();
        let (protected, request_id) = ue.protect_request(&request, false).unwrap();
        let VerifiedRequest::Fresh {
            request: emse_request,
            ..
        } = emse.verify_request(&protected).unwrap()
        else {
            unreachable!()
        };
        Rig {
            request,
            response,
            ue,
            emse,
            request_id,
            emse_request,
            dtls: DtlsRecordKeys::new(),
            seq: 1 << 48,
            datagram: Vec::with_capacity(256),
        }
    }

    fn request_oscore(&mut self) -> Message {
        let (protected, _) = self
            .ue
            .protect_request(black_box(&self.request), false)
            .unwrap();
        let wire = protected.encode();
        let received = Message::decode(black_box(&wire)).unwrap();
        match self.emse.verify_request(&received).unwrap() {
            VerifiedRequest::Fresh { message, .. } => message,
            VerifiedRequest::EchoRequired { .. } => unreachable!(),
        }
    }

    fn request_oscore_datagram(&mut self) -> DecryptedView<'_> {
        self.datagram.clear();
        self.ue
            .protect_request_datagram(black_box(&self.request), false, &mut self.datagram)
            .unwrap();
        match self
            .emse
            .verify_request_in_place(black_box(&mut self.datagram))
            .unwrap()
        {
            VerifiedRequest::Fresh { message, .. } => message,
            VerifiedRequest::EchoRequired { .. } => unreachable!(),
        }
    }

    fn request_oscore_datagram_owned(&mut self) -> Message {
        self.datagram.clear();
        self.ue
            .protect_request_datagram(black_box(&self.request), false, &mut self.datagram)
            .unwrap();
        match self
            .emse
            .verify_request_datagram(black_box(&self.datagram))
            .unwrap()
        {
            VerifiedRequest::Fresh { message, .. } => message,
            VerifiedRequest::EchoRequired { .. } => unreachable!(),
        }
    }

    fn response_oscore(&mut self) -> Message {
        let protected = self
            .emse
            .protect_response(black_box(&self.response), &self.emse_request, false)
            .unwrap();
        let wire = protected.encode();
        let received = Message::decode(black_box(&wire)).unwrap();
        self.ue
            .verify_response(&received, &self.request_id)
            .unwrap()
    }

    fn response_oscore_datagram(&mut self) -> DecryptedView<'_> {
        self.datagram.clear();
        self.emse
            .protect_response_datagram(
                black_box(&self.response),
                &self.emse_request,
                false,
                &mut self.datagram,
            )
            .unwrap();
        self.ue
            .verify_response_in_place(black_box(&mut self.datagram), &self.request_id)
            .unwrap()
    }

    fn response_oscore_datagram_owned(&mut self) -> Message {
        self.datagram.clear();
        self.emse
            .protect_response_datagram(
                black_box(&self.response),
                &self.emse_request,
                false,
                &mut self.datagram,
            )
            .unwrap();
        self.ue
            .verify_response_datagram(black_box(&self.datagram), &self.request_id)
            .unwrap()
    }

    /// CoAP message in → encode → record → decrypt → decode → CoAP message out.
    fn dtls_record(&mut self, response: bool) -> Message {
        self.seq += 1;
        let message = if response {
            &self.response
        } else {
            &self.request
        };
        let record = self.dtls.encrypt(self.seq, &black_box(message).encode());
        let plaintext = self.dtls.decrypt(black_box(&record));
        Message::decode(&plaintext).unwrap()
    }

    /// The record alone over already-encoded CoAP octets.
    fn dtls_record_bytes(&mut self, octets: &[u8]) -> Vec<u8> {
        self.seq += 1;
        let record = self.dtls.encrypt(self.seq, black_box(octets));
        self.dtls.decrypt(black_box(&record))
    }
}

/// The rows of one group, by name.
const ROWS: [&str; 5] = [
    "oscore",
    "oscore_datagram",
    "oscore_datagram_owned",
    "dtls_record",
    "dtls_record_bytes",
];

/// The OSCORE rows, in the order the ratios are printed.
const OSCORE_ROWS: [&str; 3] = ["oscore", "oscore_datagram", "oscore_datagram_owned"];

fn run_row(rig: &mut Rig, group: &str, row: &str, octets: &[u8]) {
    match (group, row) {
        ("request", "oscore") => drop(black_box(rig.request_oscore())),
        ("request", "oscore_datagram") => {
            black_box(rig.request_oscore_datagram());
        }
        ("request", "oscore_datagram_owned") => {
            drop(black_box(rig.request_oscore_datagram_owned()))
        }
        ("response", "oscore") => drop(black_box(rig.response_oscore())),
        ("response", "oscore_datagram") => {
            black_box(rig.response_oscore_datagram());
        }
        ("response", "oscore_datagram_owned") => {
            drop(black_box(rig.response_oscore_datagram_owned()))
        }
        (g, "dtls_record") => drop(black_box(rig.dtls_record(g == "response"))),
        (_, "dtls_record_bytes") => drop(black_box(rig.dtls_record_bytes(octets))),
        _ => unreachable!("{group}/{row}"),
    }
}

fn benches(c: &mut Criterion) {
    let mut rig = Rig::new();
    // One group per message, so that OSCORE and its DTLS baseline run back to back: on a
    // shared machine the load drifts, and a ratio of rows measured minutes apart is noise.
    for group_name in ["request", "response"] {
        let octets = if group_name == "request" {
            rig.request.encode()
        } else {
            rig.response.encode()
        };
        let mut group = c.benchmark_group(group_name);
        for row in ROWS {
            group.bench_function(row, |b| {
                b.iter(|| run_row(&mut rig, group_name, row, &octets))
            });
        }
        group.finish();
    }
}

/// Criterion's median of one row, read back from its `estimates.json` if this run wrote it
/// (a filtered run leaves other rows' files from earlier runs).
fn median_ns(dir: &Path, group: &str, row: &str, since: std::time::SystemTime) -> Option<f64> {
    let path = dir.join(group).join(row).join("new").join("estimates.json");
    if std::fs::metadata(&path).ok()?.modified().ok()? < since {
        return None;
    }
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    json.get("median")?.get("point_estimate")?.as_f64()
}

/// The issue's figure: OSCORE protect+verify over a DTLS record's encrypt+decrypt, for
/// requests and responses, from the medians this run measured.
fn print_ratios(dir: &Path, since: std::time::SystemTime) {
    println!(
        "\nOSCORE protect+verify / DTLS record encrypt+decrypt (goal <= 1.5), medians of this run:"
    );
    for group in ["request", "response"] {
        let (Some(record), Some(bytes)) = (
            median_ns(dir, group, "dtls_record", since),
            median_ns(dir, group, "dtls_record_bytes", since),
        ) else {
            println!("  {group}: baseline rows not measured in this run");
            continue;
        };
        for row in OSCORE_ROWS {
            if let Some(ns) = median_ns(dir, group, row, since) {
                println!(
                    "  {group:8} {row:21} {ns:7.1} ns = {:.2} x dtls_record ({record:.1} ns), {:.2} x dtls_record_bytes ({bytes:.1} ns)",
                    ns / record,
                    ns / bytes
                );
            }
        }
    }
}

/// The same ratios measured interleaved: rounds of a batch of each row in turn, the fastest
/// batch of each row kept. On a shared machine the fastest batch is the one least disturbed
/// by other load, and interleaving exposes all rows to the same drift; criterion's medians
/// of rows measured seconds apart are not (see the load printed beside them).
fn print_interleaved_ratios(rig: &mut Rig) {
    const ROUNDS: usize = 300;
    const BATCH: u32 = 1000;
    println!(
        "\nthe same, interleaved ({ROUNDS} rounds of {BATCH} iterations per row, fastest batch):"
    );
    for group in ["request", "response"] {
        let octets = if group == "request" {
            rig.request.encode()
        } else {
            rig.response.encode()
        };
        let mut best = [f64::INFINITY; ROWS.len()];
        for _ in 0..ROUNDS {
            for (row, best) in ROWS.iter().zip(best.iter_mut()) {
                let start = std::time::Instant::now();
                for _ in 0..BATCH {
                    run_row(rig, group, row, &octets);
                }
                let ns = start.elapsed().as_nanos() as f64 / f64::from(BATCH);
                *best = best.min(ns);
            }
        }
        let [oscore, datagram, owned, record, bytes] = best;
        for (row, ns) in OSCORE_ROWS.into_iter().zip([oscore, datagram, owned]) {
            println!(
                "  {group:8} {row:21} {ns:7.1} ns = {:.2} x dtls_record ({record:.1} ns), {:.2} x dtls_record_bytes ({bytes:.1} ns)",
                ns / record,
                ns / bytes
            );
        }
    }
}

/// `OSCORE_BENCH_ICOUNT=N`: runs each row N times in a function of its own and exits, for
/// `valgrind --tool=callgrind` (instruction counts per row, independent of the machine's
/// load): see the module docs.
fn instruction_count_mode(iterations: u64) {
    let mut rig = Rig::new();
    let request = rig.request.encode();
    let response = rig.response.encode();
    icount_request_oscore(&mut rig, iterations, &request);
    icount_request_oscore_datagram(&mut rig, iterations, &request);
    icount_request_oscore_datagram_owned(&mut rig, iterations, &request);
    icount_request_dtls_record(&mut rig, iterations, &request);
    icount_request_dtls_record_bytes(&mut rig, iterations, &request);
    icount_response_oscore(&mut rig, iterations, &response);
    icount_response_oscore_datagram(&mut rig, iterations, &response);
    icount_response_oscore_datagram_owned(&mut rig, iterations, &response);
    icount_response_dtls_record(&mut rig, iterations, &response);
    icount_response_dtls_record_bytes(&mut rig, iterations, &response);
}

macro_rules! icount_fns {
    ($($name:ident: $group:literal $row:literal;)*) => {$(
        #[inline(never)]
        fn $name(rig: &mut Rig, iterations: u64, octets: &[u8]) {
            for _ in 0..iterations {
                run_row(rig, $group, $row, octets);
            }
        }
    )*};
}

icount_fns! {
    icount_request_oscore: "request" "oscore";
    icount_request_oscore_datagram: "request" "oscore_datagram";
    icount_request_oscore_datagram_owned: "request" "oscore_datagram_owned";
    icount_request_dtls_record: "request" "dtls_record";
    icount_request_dtls_record_bytes: "request" "dtls_record_bytes";
    icount_response_oscore: "response" "oscore";
    icount_response_oscore_datagram: "response" "oscore_datagram";
    icount_response_oscore_datagram_owned: "response" "oscore_datagram_owned";
    icount_response_dtls_record: "response" "dtls_record";
    icount_response_dtls_record_bytes: "response" "dtls_record_bytes";
}

fn main() {
    if let Some(n) = std::env::var("OSCORE_BENCH_ICOUNT")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        instruction_count_mode(n);
        return;
    }
    // Criterion's output directory: <target>/criterion, the exe being
    // <target>/<profile>/deps/oscore-<hash>.
    let dir = std::env::var_os("CRITERION_HOME")
        .map(PathBuf::from)
        .or_else(|| {
            let exe = std::env::current_exe().ok()?;
            Some(exe.parent()?.parent()?.parent()?.join("criterion"))
        })
        .unwrap_or_else(|| PathBuf::from("target/criterion"));
    let started = std::time::SystemTime::now();
    let mut criterion = Criterion::default()
        .output_directory(&dir)
        .configure_from_args();
    benches(&mut criterion);
    criterion.final_summary();
    print_ratios(&dir, started);
    // Only under `cargo bench` (criterion's own `--bench` flag), not `cargo test --benches`.
    if std::env::args().any(|a| a == "--bench") {
        print_interleaved_ratios(&mut Rig::new());
    }
}
