//! Decoding a push allocates nothing: the dictionary check of the whole message, then
//! `PushProfile::decode_request` into the core's push input (the key copied into its
//! zeroizing array, the IMSI into its inline text), leave the heap untouched — nothing per
//! AVP, nothing per message. Alone in its test binary, so that no other test allocates
//! meanwhile (the allocator is global).
#![allow(clippy::unwrap_used, reason = "tests")]

use std::alloc::System;
use std::hint::black_box;

use cap::Cap;
use e2m_diameter::{Limits, MessageView, check_request};
use e2m_diameter_push::{PushProfile, Routing};
use e2m_msg::{E2mIntKey, Imsi, IntermediateKeyPush, KeyId, KeyIdSource, Timestamp};

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

const ITERATIONS: usize = 2_000;

fn decoding_a_push_allocates_nothing() {
    let p = PushProfile::PROVISIONAL;
    let push = IntermediateKeyPush {
        imsi: Imsi::new("001010123456789").unwrap(),
        key_id: KeyIdSource::RandLsb32(KeyId::from_u32(0xae47_bf35)),
        int_key: E2mIntKey::from_array([7; 32]),
        created: Timestamp::from_unix_millis(1_795_771_800_017),
    };
    let routing = Routing {
        session_id: "hss.e2m.test;1;1",
        origin_host: "hss.e2m.test",
        origin_realm: "e2m.test",
        destination_realm: "e2m.test",
        destination_host: None,
    };
    let octets = p.encode_request(&routing, &push, 42).unwrap();
    let dict = p.dictionary().unwrap();
    let def = dict.command(p.application_id(), p.command());
    let limits = Limits::default();
    let before = ALLOCATOR.total_allocated();
    let mut sum = 0u64;
    for _ in 0..ITERATIONS {
        let view = MessageView::parse(black_box(&octets)).unwrap();
        check_request(&dict, def, &view, &limits).unwrap();
        let request = p.decode_request(&view).unwrap();
        sum += request.push.created.as_unix_millis() + request.session_id.len() as u64;
        sum += u64::from(request.push.int_key.expose_secret()[0]);
    }
    let allocated = ALLOCATOR.total_allocated() - before;
    assert!(black_box(sum) > 0);
    // The harness's own threads may allocate a little meanwhile; one allocation per
    // message (let alone per AVP, 11 here) would be kilobytes over the iterations.
    assert!(
        allocated < ITERATIONS,
        "decoding allocated {allocated} bytes over {ITERATIONS} pushes"
    );
}

/// This binary runs without the test harness (`harness = false` in the manifest): the
/// harness runs a test on a thread of its own beside its main thread, and the allocator
/// counts every thread's allocations, so a measurement could count octets this code never
/// asked for (a CI run once saw 900 octets on `verify_request_in_place`, which allocates
/// none; it passed in every other run). Here the measured code is the only thread.
fn main() {
    decoding_a_push_allocates_nothing();
    println!("test decoding_a_push_allocates_nothing ... ok");
}
