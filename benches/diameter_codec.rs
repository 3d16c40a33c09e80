//! The push over Diameter against the XML push, message codec only (issue 17,
//! "Performance": "report the codec's encode + decode time per push beside the XML push
//! message's"), in one run.
//!
//! The same push — SPEC.md's example (IMSI 001010123456789, RAND-LSB32 key id, a 32-octet
//! key, created 2026-11-27T09:30:00.017Z) — as:
//! * **Diameter**: `PushProfile::encode_request` (E2M-Key-Push-Request, 272 octets), then
//!   what the EMKS does with a received one: `MessageView::parse`, the dictionary check of
//!   the whole message (`check_request`) and `PushProfile::decode_request` into the core's
//!   `IntermediateKeyPush`; and the answer (2001 with E2M-Key-Expiry-Time) written and read
//!   back by the HSS;
//! * **XML**: `IntermediateKeyPush::encode` and the strict `IntermediateKeyPush::decode` of
//!   e2m-msg (`crates/e2m-msg/golden/intermediate_key_push_fraction.xml`, the same values);
//!   the HTTPS answer is an empty 204.
//!
//! `cargo bench --bench diameter_codec`; the ratios are printed at the end (best of 15
//! interleaved rounds, as in `benches/msg.rs`). Per-call times move with the load of a
//! shared machine; run it on a quiet one for figures.
#![allow(missing_docs, reason = "criterion macros generate undocumented items")]
#![allow(clippy::unwrap_used, reason = "benchmark set-up")]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use e2m_diameter::{Limits, MessageView, Time, check_request};
use e2m_diameter_push::{PushAnswer, PushProfile, Routing};
use e2m_msg::{IntermediateKeyPush, XmlMessage};

const PUSH_XML: &str = include_str!("../crates/e2m-msg/golden/intermediate_key_push_fraction.xml");

fn window(f: &mut dyn FnMut()) -> Duration {
    let start = Instant::now();
    let mut n = 0u32;
    while start.elapsed() < Duration::from_millis(50) {
        for _ in 0..50 {
            f();
        }
        n += 50;
    }
    start.elapsed() / n
}

fn best_of(fs: &mut [&mut dyn FnMut()]) -> Vec<Duration> {
    for f in fs.iter_mut() {
        for _ in 0..1000 {
            f();
        }
    }
    let mut best = vec![Duration::MAX; fs.len()];
    for _ in 0..15 {
        for (f, b) in fs.iter_mut().zip(best.iter_mut()) {
            *b = (*b).min(window(*f));
        }
    }
    best
}

const ROUTING: Routing<'static> = Routing {
    session_id: "hss1.hss.example;1795771800;1;e2m",
    origin_host: "hss1.hss.example",
    origin_realm: "hss.example",
    destination_realm: "emks.example",
    destination_host: None,
};

fn benches(c: &mut Criterion) {
    let p = PushProfile::PROVISIONAL;
    let dict = p.dictionary().unwrap();
    let def = dict.command(p.application_id(), p.command()).cloned();
    let limits = Limits::default();
    let push = IntermediateKeyPush::decode(PUSH_XML.as_bytes()).unwrap();
    let request = p.encode_request(&ROUTING, &push, 2).unwrap();
    assert_eq!(request.len(), 272, "SPEC.md's example 1");
    let expiry = Time::from_unix(1_795_858_200).unwrap();

    let diameter_encode = || p.encode_request(&ROUTING, black_box(&push), 2).unwrap();
    let diameter_decode = |octets: &[u8]| {
        let view = MessageView::parse(octets).unwrap();
        check_request(&dict, def.as_ref(), &view, &limits).unwrap();
        p.decode_request(&view).unwrap().push
    };
    let xml_encode = || black_box(&push).encode();
    let xml_decode = |text: &str| IntermediateKeyPush::decode(text.as_bytes()).unwrap();
    // Both read back the same push.
    let back = diameter_decode(&request);
    assert_eq!(back.imsi, push.imsi);
    assert_eq!(back.created, push.created);
    assert!(back.int_key == push.int_key);
    let answer_roundtrip = |request: &[u8]| {
        let view = MessageView::parse(request).unwrap();
        let decoded = p.decode_request(&view).unwrap();
        let answer = PushAnswer::for_outcome(Ok(()), expiry, &decoded);
        let octets = p
            .encode_answer(&view, "emks1.emks.example", "emks.example", &answer)
            .unwrap();
        p.decode_answer(&MessageView::parse(&octets).unwrap())
            .unwrap()
            .status()
    };

    let mut group = c.benchmark_group("push/encode");
    group.bench_function("diameter", |b| b.iter(diameter_encode));
    group.bench_function("xml", |b| b.iter(xml_encode));
    group.finish();
    let xml = push.encode();
    let mut group = c.benchmark_group("push/decode");
    group.bench_function("diameter (parse, dictionary check, decode)", |b| {
        b.iter(|| diameter_decode(black_box(&request)))
    });
    group.bench_function("xml (strict)", |b| b.iter(|| xml_decode(black_box(&xml))));
    group.finish();
    let mut group = c.benchmark_group("push/encode+decode");
    group.bench_function("diameter", |b| {
        b.iter(|| diameter_decode(&diameter_encode()))
    });
    group.bench_function("xml", |b| b.iter(|| xml_decode(&xml_encode())));
    group.finish();
    let mut group = c.benchmark_group("push/answer");
    group.bench_function(
        "diameter 2001 (decode request, write answer, read answer)",
        |b| b.iter(|| answer_roundtrip(black_box(&request))),
    );
    group.finish();

    let t = best_of(&mut [
        &mut || drop(black_box(diameter_encode())),
        &mut || drop(black_box(xml_encode())),
        &mut || drop(black_box(diameter_decode(black_box(&request)))),
        &mut || drop(black_box(xml_decode(black_box(&xml)))),
        &mut || drop(black_box(diameter_decode(&diameter_encode()))),
        &mut || drop(black_box(xml_decode(&xml_encode()))),
    ]);
    println!(
        "\npush codec (best of 15 interleaved 50 ms rounds; Diameter {} octets, XML {} octets):",
        request.len(),
        xml.len()
    );
    for (name, d, x) in [
        ("encode", t[0], t[1]),
        ("decode", t[2], t[3]),
        ("encode + decode", t[4], t[5]),
    ] {
        println!(
            "  {name:<16} Diameter {d:>9.2?}  XML {x:>9.2?}  (Diameter / XML = {:.2})",
            d.as_secs_f64() / x.as_secs_f64()
        );
    }
}

criterion_group!(diameter_codec, benches);
criterion_main!(diameter_codec);
