//! OSCORE protect+verify per message against a DTLS 1.2 record's encrypt+decrypt with the
//! same AEAD primitive (AES-128-CCM with an 8-octet tag, RustCrypto `ccm` + `aes`), measured
//! in the same run. The goal of issue 11 is OSCORE ≤ 1.5 × the DTLS record.
//!
//! ```text
//! cargo bench --bench oscore
//! ```
//!
//! Groups `request` (CON GET /sensors/temperature, 4-octet token) and `response` (ACK 2.05,
//! Content-Format text/plain, a 64-octet reading), each with the rows:
//! * `oscore`: CoAP message in → `protect_*` → wire octets → decode → `verify_*` → CoAP
//!   message out (the e2m profile's contexts: 4-octet kid; requests without the ID Context,
//!   the steady state after the first exchange).
//! * `oscore_datagram`: the same through the datagram API (`protect_*_datagram` into a
//!   reused buffer, `verify_*_datagram` from the octets): no outer `Message` is built.
//! * `dtls_record`: CoAP message in → encode → DTLS 1.2 record (13-octet header, 8-octet
//!   explicit nonce, AAD = seq_num ‖ type ‖ version ‖ length, 13 octets; RFC 5246 §6.2.3.3,
//!   RFC 6655 §3) → decrypt → decode → CoAP message out. The same work around the AEAD.
//! * `dtls_record_bytes`: the record alone over the already-encoded CoAP octets (the
//!   narrowest baseline: no CoAP codec on the DTLS side).
#![allow(missing_docs, reason = "criterion macros generate undocumented items")]
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "benchmark set-up")]

use std::hint::black_box;

use aes::Aes128;
use ccm::Ccm;
use ccm::aead::{AeadInOut, KeyInit};
use ccm::consts::{U8, U12};
use criterion::{Criterion, criterion_group, criterion_main};
use e2m_coap::{Code, Message, MessageType, OptionNumber, Token};
use e2m_kdf::E2mKey;
use e2m_keyid::{AppIdentity, KeyId};
use e2m_oscore::e2m::E2mOscoreProfile;
use e2m_oscore::{SecurityContext, SenderSequence, VerifiedRequest};

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

fn benches(c: &mut Criterion) {
    let request = request();
    let response = response(&request);
    let (mut ue, mut emse) = contexts();
    let dtls = DtlsRecordKeys::new();
    let (protected, request_id) = ue.protect_request(&request, false).unwrap();
    let VerifiedRequest::Fresh {
        request: emse_request,
        ..
    } = emse.verify_request(&protected).unwrap()
    else {
        unreachable!()
    };
    let mut datagram = Vec::with_capacity(128);
    // DTLS sequence numbers (epoch 1); each record takes the next one.
    let mut seq = 1u64 << 48;

    // One group per message, so that OSCORE and its DTLS baseline run back to back: on a
    // shared machine the load drifts, and a ratio of rows measured minutes apart is noise.
    let mut group = c.benchmark_group("request");
    group.bench_function("oscore", |b| {
        b.iter(|| {
            let (protected, _) = ue.protect_request(black_box(&request), false).unwrap();
            let wire = protected.encode();
            let received = Message::decode(black_box(&wire)).unwrap();
            match emse.verify_request(&received).unwrap() {
                VerifiedRequest::Fresh { message, .. } => message,
                VerifiedRequest::EchoRequired { .. } => unreachable!(),
            }
        })
    });
    group.bench_function("oscore_datagram", |b| {
        b.iter(|| {
            datagram.clear();
            ue.protect_request_datagram(black_box(&request), false, &mut datagram)
                .unwrap();
            match emse.verify_request_datagram(black_box(&datagram)).unwrap() {
                VerifiedRequest::Fresh { message, .. } => message,
                VerifiedRequest::EchoRequired { .. } => unreachable!(),
            }
        })
    });
    dtls_rows(&mut group, &dtls, &request, &mut seq);
    group.finish();

    let mut group = c.benchmark_group("response");
    group.bench_function("oscore", |b| {
        b.iter(|| {
            let protected = emse
                .protect_response(black_box(&response), &emse_request, false)
                .unwrap();
            let wire = protected.encode();
            let received = Message::decode(black_box(&wire)).unwrap();
            ue.verify_response(&received, &request_id).unwrap()
        })
    });
    group.bench_function("oscore_datagram", |b| {
        b.iter(|| {
            datagram.clear();
            emse.protect_response_datagram(
                black_box(&response),
                &emse_request,
                false,
                &mut datagram,
            )
            .unwrap();
            ue.verify_response_datagram(black_box(&datagram), &request_id)
                .unwrap()
        })
    });
    dtls_rows(&mut group, &dtls, &response, &mut seq);
    group.finish();
}

fn dtls_rows(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    dtls: &DtlsRecordKeys,
    message: &Message,
    seq: &mut u64,
) {
    group.bench_function("dtls_record", |b| {
        b.iter(|| {
            *seq += 1;
            let record = dtls.encrypt(*seq, &black_box(message).encode());
            let plaintext = dtls.decrypt(black_box(&record));
            Message::decode(&plaintext).unwrap()
        })
    });
    let octets = message.encode();
    group.bench_function("dtls_record_bytes", |b| {
        b.iter(|| {
            *seq += 1;
            let record = dtls.encrypt(*seq, black_box(&octets));
            dtls.decrypt(black_box(&record))
        })
    });
}

criterion_group!(oscore, benches);
criterion_main!(oscore);
