//! e2m-diameter's codec on arbitrary octets, hickory-style: whatever decodes re-encodes to
//! octets that decode to the same message and re-encode to themselves; the lazy views, the
//! typed readers, the dictionary checks and the error answers never panic, and every error
//! answer the checks produce is itself a well-formed message. Seed corpus: the golden
//! messages and the hostile classes (`fuzz/corpus/diameter_codec/`).
#![no_main]

use std::sync::OnceLock;

use e2m_diameter::{
    DataType, Dictionary, Limits, Message, MessageView, Value, check_answer, check_request, error_answer,
};
use libfuzzer_sys::fuzz_target;

fn dictionary() -> &'static Dictionary {
    static DICT: OnceLock<Dictionary> = OnceLock::new();
    DICT.get_or_init(Dictionary::base)
}

fn round_trip(data: &[u8]) {
    let dict = dictionary();
    let grouped = |k| dict.is_grouped(k);
    let Ok(first) = Message::decode(data, &grouped, 16) else { return };
    let encoded = first.encode().expect("a decoded message re-encodes");
    let second = Message::decode(&encoded, &grouped, 16).expect("the re-encoding decodes");
    assert_eq!(first.avps, second.avps);
    let (mut a, mut b) = (first.header, second.header);
    (a.length, b.length) = (0, 0);
    assert_eq!(a, b);
    assert_eq!(second.encode().expect("re-encodes"), encoded, "the encoding is canonical");
}

fn views(data: &[u8]) {
    let dict = dictionary();
    let Ok(view) = MessageView::parse(data) else { return };
    let mut stack = vec![view.avps()];
    let mut budget = 10_000;
    while let Some(mut iter) = stack.pop() {
        while let Some(avp) = iter.next() {
            budget -= 1;
            if budget == 0 {
                return;
            }
            let Ok(avp) = avp else { break };
            for t in [
                DataType::OctetString, DataType::Integer32, DataType::Integer64, DataType::Unsigned32,
                DataType::Unsigned64, DataType::Float32, DataType::Float64, DataType::Address, DataType::Time,
                DataType::Utf8String, DataType::DiameterIdentity, DataType::DiameterUri, DataType::Enumerated,
            ] {
                let _ = Value::read(&avp, t);
            }
            if let Ok(uri) = avp.uri() {
                let text = uri.to_string();
                assert_eq!(e2m_diameter::DiameterUri::parse(&text), Ok(uri), "URI round trip");
            }
            if stack.len() < 32 {
                stack.push(avp.grouped());
            }
        }
    }
    let command = dict.command(view.application(), view.command());
    let limits = Limits::default();
    if view.is_request() {
        if let Err(err) = check_request(dict, command, &view, &limits) {
            let answer = error_answer(view.header(), Some(&view), "fuzz.example", "example", &err)
                .expect("an error answer encodes");
            let a = MessageView::parse(&answer).expect("the error answer parses");
            a.check_framing().expect("the error answer frames");
        }
    } else {
        let _ = check_answer(dict, command, &view, &limits);
    }
}

fuzz_target!(|data: &[u8]| {
    round_trip(data);
    views(data);
});
