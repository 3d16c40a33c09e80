//! No K_AKMA and no K_AF in any audit record, problem, notification or `Debug` output.
//!
//! Every test world (see `common`) searches its own output when it is dropped, so every
//! test in `decisions.rs` is also a leak test; this one drives every entry point through
//! its granted and refused paths and checks that the search really ran.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use common::*;
use e2m_aanf::e2m_akma::{AkmaKeyInfo, JsonBody, Operation};
use e2m_aanf::e2m_kdf::Kakma;
use e2m_aanf::{Caller, Peer};

#[test]
fn no_key_in_any_audit_record_problem_or_notification() {
    let w = World::new();
    for n in 0..6 {
        let ue = if n % 2 == 0 { supi(n) } else { gpsi(n) };
        w.register(ue, 10 + n, at(0)).unwrap();
        // Re-registration (replaced), and a refused one (another UE's A-KID).
        w.register(ue, 20 + n, at(1)).unwrap();
        w.register(supi(100 + n), 20 + n, at(1)).unwrap_err();
    }
    // A peer that is no AUSF registering: refused after reading a key.
    w.register_as(&w.a.clone(), supi(50), 50, at(1))
        .unwrap_err();
    let uri = |af: &str| format!("https://{af}/akma/notify");
    for n in 0..6 {
        for (caller, af) in [(&w.a, A), (&w.b, B), (&w.nef, X), (&w.nef, A)] {
            let request = World::with_notify(World::request(af, 20 + n), &uri(af));
            let request = if caller == &w.nef {
                World::with_notify(World::request(af, 20 + n), &uri(NEF))
            } else {
                request
            };
            let _ = w.retrieve(caller, &request, at(2));
            let _ = w.nef_retrieve(caller, &request, at(2));
            let mut anon = World::request(af, 20 + n);
            anon.anon_ind = true;
            let _ = w.retrieve(caller, &anon, at(2));
            // Old (replaced) and unknown A-KIDs.
            let _ = w.retrieve(caller, &World::request(af, 10 + n), at(2));
            let _ = w.retrieve(caller, &World::request(af, 99), at(2));
        }
        // Refused: another AF's afId, an outside AF directly, a stranger.
        let _ = w.retrieve(&w.b, &World::request(A, 20 + n), at(2));
        let _ = w.retrieve(&w.x, &World::request(X, 20 + n), at(2));
        let stranger = Caller::mutual_tls(Peer::new([host("af-z.example.com")]));
        let _ = w.retrieve(
            &stranger,
            &World::request("af-z.example.com", 20 + n),
            at(2),
        );
    }
    for n in (0..6).step_by(2) {
        w.record(w.remove(&w.ausf, n, at(3))).unwrap();
        w.record(w.remove(&w.a, n, at(3))).unwrap_err();
    }
    assert!(
        !w.sent(at(3)).is_empty(),
        "no notification went out: nothing searched"
    );
    let err = e2m_aanf::e2m_akma::AkmaKeyInfo::from_json(
        br#"{"supi":"imsi-001010000000001","aKId":"a@b.org","kAkma":"zz"}"#,
    )
    .unwrap_err();
    w.record(
        w.aanf
            .undecodable(&w.ausf, Operation::RegisterAnchorKey, &err, at(4)),
    )
    .unwrap_err();
    w.record_effects(&block_on(w.aanf.expire(at(MAX_AGE + 10))));

    let hits = w.leaks();
    assert!(hits.is_empty(), "{hits:#?}");
    let (secrets, texts) = w.captured();
    assert!(secrets > 60, "{secrets} secrets");
    assert!(texts > 400, "{texts} texts");
}

#[test]
fn tokens_change_nothing_about_what_is_printed() {
    let w = World::with(config().require_tokens());
    let ausf = Caller::with_token(
        Peer::new([host(AUSF)]),
        scopes("naanf-akma naanf-akma:anchorkey"),
    );
    w.register_as(&ausf, supi(1), 10, at(0)).unwrap();
    let a = Caller::with_token(
        Peer::new([host(A)]),
        scopes("naanf-akma naanf-akma:applicationkeyget naanf-akma:applicationkeyget:supi-access"),
    );
    w.retrieve(&a, &World::request(A, 10), at(1))
        .unwrap()
        .unwrap();
    w.retrieve(&w.a, &World::request(A, 10), at(1)).unwrap_err();
    let (secrets, _) = w.captured();
    assert_eq!(secrets, 2);
}

#[test]
fn the_search_finds_a_planted_leak() {
    // The detector itself: a K_AF and a K_AKMA planted in output lines must be found.
    let w = World::new();
    w.register(supi(1), 10, at(0)).unwrap();
    let data = w
        .retrieve(&w.a, &World::request(A, 10), at(1))
        .unwrap()
        .unwrap();
    let kaf = base16ct::upper::encode_string(data.kaf.expose_secret());
    let info = AkmaKeyInfo {
        ue: supi(1),
        a_kid: a_kid(10),
        k_akma: Kakma::from_array(key_bytes(10)),
        supp_feat: None,
    };
    let json = String::from_utf8(info.to_json().to_vec()).unwrap();
    w.ledger.borrow_mut().texts.push(format!("oops kaf={kaf}"));
    w.ledger.borrow_mut().texts.push(json);
    let hits = w.leaks();
    // K_AF: upper-case hex and its prefix; K_AKMA: lower-case hex and its prefix.
    assert_eq!(hits.len(), 4, "{hits:#?}");
    w.ledger.borrow_mut().texts.truncate(0);
}
