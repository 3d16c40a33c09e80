//! The e2m push application's decoding (crate e2m-diameter-push) on arbitrary octets, as an
//! EMKS meets them: the dictionary check of the whole message, then `decode_request`. A
//! push that decodes re-encodes (`encode_request`) to a message that decodes to the same
//! push and passes the dictionary check; a refusal carries a framed Failed-AVP and its
//! answer (`encode_answer`) is a well-formed message the HSS side reads back with the same
//! Result-Code; `decode_answer` never panics on anything. Seed corpus: the golden push
//! messages and hostile variants (`fuzz/corpus/diameter_push/`).
#![no_main]

use std::sync::OnceLock;

use e2m_diameter::{AvpIter, Dictionary, Limits, MessageView, Time, check_request};
use e2m_diameter_push::{PushAnswer, PushProfile, Routing};
use libfuzzer_sys::fuzz_target;

const P: PushProfile = PushProfile::PROVISIONAL;

fn dictionary() -> &'static Dictionary {
    static DICT: OnceLock<Dictionary> = OnceLock::new();
    DICT.get_or_init(|| P.dictionary().expect("the push dictionary"))
}

fn answer_and_read_back(view: &MessageView<'_>, answer: &PushAnswer) {
    let octets = P
        .encode_answer(view, "emks.e2m.test", "e2m.test", answer)
        .expect("an answer encodes");
    let back = MessageView::parse(&octets).expect("the answer parses");
    back.check_framing().expect("the answer frames");
    let info = P.decode_answer(&back).expect("our answer reads back");
    let code = info
        .result_code
        .map(|r| r.0)
        .or(info.experimental.map(|e| e.code));
    assert_eq!(code, Some(answer.code()));
}

fuzz_target!(|data: &[u8]| {
    let Ok(view) = MessageView::parse(data) else { return };
    // Whatever it is, reading it as an answer never panics.
    if let Ok(info) = P.decode_answer(&view) {
        let _ = info.status();
    }
    let dict = dictionary();
    let command = dict.command(P.application_id(), P.command());
    let checked = check_request(dict, command, &view, &Limits::default());
    let decoded = P.decode_request(&view);
    match decoded {
        Ok(request) => {
            if checked.is_err() {
                return;
            }
            let routing = Routing {
                session_id: request.session_id,
                origin_host: request.origin_host,
                origin_realm: request.origin_realm,
                destination_realm: request.destination_realm,
                destination_host: request.destination_host,
            };
            let again = P
                .encode_request(&routing, &request.push, view.header().end_to_end)
                .expect("a decoded push re-encodes");
            let view2 = MessageView::parse(&again).expect("the re-encoding parses");
            check_request(dict, command, &view2, &Limits::default())
                .expect("the re-encoding passes the dictionary check");
            let second = P.decode_request(&view2).expect("the re-encoding decodes");
            assert_eq!(second.push.imsi, request.push.imsi);
            assert_eq!(second.push.key_id, request.push.key_id);
            assert!(second.push.int_key == request.push.int_key);
            assert_eq!(second.push.created, request.push.created);
            assert_eq!(second.session_id, request.session_id);
            let expiry = Time::from_unix(Time::MAX_UNIX).expect("in range");
            let answer = PushAnswer::for_outcome(Err(e2m_msg::ProblemCause::Malformed), expiry, &request);
            answer_and_read_back(&view, &answer);
            answer_and_read_back(&view, &PushAnswer::for_outcome(Ok(()), expiry, &request));
        }
        Err(error) => {
            for avp in AvpIter::new(&error.failed_avps) {
                avp.expect("a Failed-AVP frames");
            }
            // An EMKS answers a refused push of this application with this application's
            // answer (another command or application is the node's business: 3001/3007).
            if view.is_request()
                && view.command() == P.command()
                && view.application() == P.application_id()
            {
                answer_and_read_back(&view, &PushAnswer::Refused(error));
            }
        }
    }
});
