//! The AKMA identifiers and typed derivations: against the independent Python reference
//! (tests/data/akma.txt, written by e2m-kdf's vectors/generate.py from TS 35.208 sets 1, 3
//! and 4), and property tests of every text form (parse(format(x)) == x; whatever parses is
//! written back unchanged; arbitrary text is a typed error, never a panic).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use e2m_keyid::akma::{
    AKid, AfId, AkmaAnchor, AkmaIdError, Fqdn, Gpsi, Plmn, Realm, RoutingIndicator,
    ServingNetworkName, Supi, UaProtocolId, a_tid, kaf, kakma,
};
use e2m_keyid::e2m_kdf::{ATid, Kaf, Kakma, Kausf};
use proptest::prelude::*;

const AKMA: &str = include_str!("data/akma.txt");

fn cases() -> Vec<(String, Vec<(String, String)>)> {
    AKMA.split("\n[")
        .skip(1)
        .map(|case| {
            let (name, body) = case.split_once("]\n").unwrap();
            let fields = body
                .lines()
                .filter_map(|l| l.split_once(" = "))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            (name.to_owned(), fields)
        })
        .collect()
}

fn get<'a>(fields: &'a [(String, String)], key: &str) -> &'a str {
    &fields.iter().find(|(k, _)| k == key).expect(key).1
}

#[test]
fn typed_chain_matches_reference() {
    let all = cases();
    assert_eq!(all.len(), 3);
    for (name, f) in &all {
        let supi = Supi::parse(get(f, "supi")).unwrap();
        assert_eq!(
            supi.kdf_param(),
            get(f, "supi_kdf_param").as_bytes(),
            "{name}"
        );
        assert_eq!(supi.to_string(), get(f, "supi"));
        let kausf = Kausf::from_hex(get(f, "kausf")).unwrap();
        let k_akma = kakma(&kausf, &supi).unwrap();
        assert!(
            k_akma == Kakma::from_hex(get(f, "kakma")).unwrap(),
            "{name}"
        );
        let tid = a_tid(&kausf, &supi).unwrap();
        assert_eq!(hex::encode(tid.0), get(f, "a_tid"), "{name}");

        let rid = RoutingIndicator::parse(get(f, "routing_indicator")).unwrap();
        let home = Realm::parse(get(f, "home_realm")).unwrap();
        let a_kid = AKid::new(&rid, &tid, &home).unwrap();
        assert_eq!(a_kid.as_str(), get(f, "a_kid"), "{name}");
        assert_eq!(AKid::parse(get(f, "a_kid")).unwrap(), a_kid);
        assert_eq!(a_kid.a_tid(), Some(tid));
        assert_eq!(a_kid.routing_indicator(), Some(rid));

        let anchor = AkmaAnchor::derive(&kausf, &supi, &rid, &home).unwrap();
        assert!(anchor.kakma == k_akma);
        assert_eq!(anchor.a_kid, a_kid);

        for i in 0..3 {
            let af = AfId::parse(get(f, &format!("af_id_{i}"))).unwrap();
            assert_eq!(af.to_string(), get(f, &format!("af_id_{i}")));
            assert_eq!(
                hex::encode(&*af.kdf_param()),
                get(f, &format!("af_id_{i}_octets"))
            );
            let want = Kaf::from_hex(get(f, &format!("kaf_{i}"))).unwrap();
            assert!(kaf(&k_akma, &af).unwrap() == want, "{name} K_AF {i}");
        }
    }
}

#[test]
fn plmn_gives_the_reference_names() {
    let all = cases();
    let (_, first) = &all[0];
    let plmn = Plmn::new("208", "93").unwrap();
    assert_eq!(
        plmn.serving_network_name().as_str(),
        get(first, "serving_network_name")
    );
    assert_eq!(
        plmn.home_network_domain().as_str(),
        get(first, "home_realm")
    );
    assert_eq!(
        Plmn::new("001", "01")
            .unwrap()
            .home_network_domain()
            .as_str(),
        get(&all[1].1, "home_realm")
    );
}

fn label() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?"
}

fn domain() -> impl Strategy<Value = String> {
    prop::collection::vec(label(), 2..5).prop_map(|l| l.join("."))
}

fn nai() -> impl Strategy<Value = String> {
    (
        prop::collection::vec("[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,8}", 1..4),
        domain(),
    )
        .prop_map(|(user, realm)| format!("{}@{realm}", user.join(".")))
}

fn supi() -> impl Strategy<Value = Supi> {
    prop_oneof![
        "[0-9]{6,15}".prop_map(|d| format!("imsi-{d}")),
        nai().prop_map(|n| format!("nai-{n}")),
        nai().prop_map(|n| format!("gci-{n}")),
        nai().prop_map(|n| format!("gli-{n}")),
    ]
    .prop_map(|s| Supi::parse(&s).unwrap())
}

fn gpsi() -> impl Strategy<Value = Gpsi> {
    prop_oneof![
        "[0-9]{5,15}".prop_map(|d| format!("msisdn-{d}")),
        nai().prop_map(|n| format!("extid-{n}")),
    ]
    .prop_map(|s| Gpsi::parse(&s).unwrap())
}

fn a_kid() -> impl Strategy<Value = AKid> {
    prop_oneof![
        ("[0-9]{1,4}", any::<[u8; 32]>(), domain()).prop_map(|(rid, tid, realm)| {
            AKid::new(
                &RoutingIndicator::parse(&rid).unwrap(),
                &ATid(tid),
                &Realm::parse(&realm).unwrap(),
            )
            .unwrap()
        }),
        nai().prop_map(|n| AKid::parse(&n).unwrap()),
    ]
}

fn af_id() -> impl Strategy<Value = AfId> {
    (domain(), any::<[u8; 5]>())
        .prop_map(|(d, ua)| AfId::new(Fqdn::parse(&d).unwrap(), UaProtocolId(ua)))
}

/// Checks that `text` is either a typed error or written back unchanged.
fn canonical_or_error<T, E>(
    text: &str,
    parse: impl Fn(&str) -> Result<T, E>,
) -> Result<(), TestCaseError>
where
    T: ToString,
{
    if let Ok(value) = parse(text) {
        prop_assert_eq!(value.to_string(), text);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn supi_round_trips(s in supi()) {
        prop_assert_eq!(Supi::parse(&s.to_string()).unwrap(), s);
    }

    #[test]
    fn gpsi_round_trips(g in gpsi()) {
        prop_assert_eq!(Gpsi::parse(g.as_str()).unwrap(), g);
    }

    #[test]
    fn a_kid_round_trips(k in a_kid()) {
        prop_assert_eq!(AKid::parse(k.as_str()).unwrap(), k);
        prop_assert_eq!(format!("{}@{}", k.username(), k.realm()), k.as_str());
    }

    #[test]
    fn af_id_round_trips(a in af_id()) {
        prop_assert_eq!(AfId::parse(&a.to_string()).unwrap(), a);
        prop_assert_eq!(a.kdf_param().len(), a.fqdn().as_str().len() + 5);
    }

    #[test]
    fn plmn_names_parse_back(mcc in "[0-9]{3}", mnc in "[0-9]{2,3}") {
        let plmn = Plmn::new(&mcc, &mnc).unwrap();
        let snn = plmn.serving_network_name();
        prop_assert_eq!(ServingNetworkName::parse(snn.as_str()).unwrap(), snn);
        let home = plmn.home_network_domain();
        prop_assert_eq!(Realm::parse(home.as_str()).unwrap(), home);
        prop_assert_eq!(plmn.mnc(), mnc.as_str());
    }

    /// Arbitrary text: a typed error or the one spelling of a value.
    #[test]
    fn arbitrary_text_is_canonical_or_error(
        text in "\\PC{0,80}",
        prefix in prop::sample::select(vec!["", "imsi-", "nai-", "gci-", "msisdn-", "extid-", "rid0.atid", "5G:", "af.example.com;ua="]),
    ) {
        let text = format!("{prefix}{text}");
        canonical_or_error(&text, Supi::parse)?;
        canonical_or_error(&text, Gpsi::parse)?;
        canonical_or_error(&text, AKid::parse)?;
        canonical_or_error(&text, AfId::parse)?;
        canonical_or_error(&text, Realm::parse)?;
        canonical_or_error(&text, ServingNetworkName::parse)?;
        canonical_or_error(&text, RoutingIndicator::parse)?;
    }

    /// Over-long input is a length error, never a panic or truncation.
    #[test]
    fn long_input_is_refused(n in 254usize..600) {
        let text = format!("{}@x.org", "a".repeat(n));
        let refused = matches!(AKid::parse(&text), Err(AkmaIdError::TooLong { max: 253, .. }));
        prop_assert!(refused, "{} octets accepted", text.len());
    }
}
