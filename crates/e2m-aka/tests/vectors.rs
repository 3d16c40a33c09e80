//! MILENAGE (TS 35.206) and the AKA helper against the TS 35.208 §4.3 conformance data in
//! `tests/data/milenage_ts35208.txt` (test sets 1 and 3–6; sources cited in that file).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking, with a message"
)]

use std::collections::BTreeMap;

use e2m_aka::{Aka, AkaError, Milenage, Opc, Sqn, SubscriberKey};

struct TestSet {
    number: u32,
    fields: BTreeMap<String, Vec<u8>>,
}

impl TestSet {
    fn get<const N: usize>(&self, name: &str) -> [u8; N] {
        let value = self
            .fields
            .get(name)
            .unwrap_or_else(|| panic!("set {}: no field {name}", self.number));
        value
            .as_slice()
            .try_into()
            .unwrap_or_else(|_| panic!("set {}: {name} is not {N} octets", self.number))
    }
}

fn load() -> Vec<TestSet> {
    let text = include_str!("data/milenage_ts35208.txt");
    let mut sets: Vec<TestSet> = Vec::new();
    for (line_no, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, value) = line
            .split_once(" = ")
            .unwrap_or_else(|| panic!("line {}: not `name = value`", line_no + 1));
        if name == "set" {
            sets.push(TestSet {
                number: value.parse().expect("set number"),
                fields: BTreeMap::new(),
            });
            continue;
        }
        let set = sets.last_mut().expect("a field before the first set");
        let bytes = hex::decode(value).unwrap_or_else(|_| panic!("line {}: bad hex", line_no + 1));
        assert!(set.fields.insert(name.to_owned(), bytes).is_none());
    }
    sets
}

#[test]
fn the_data_file_holds_sets_1_and_3_to_6() {
    let numbers: Vec<u32> = load().iter().map(|s| s.number).collect();
    assert_eq!(numbers, [1, 3, 4, 5, 6]);
}

#[test]
fn milenage_matches_ts_35_208() {
    for set in load() {
        let n = set.number;
        let k = SubscriberKey::from_array(set.get("k"));
        let op: [u8; 16] = set.get("op");
        let opc = Milenage::opc_from_op(&k, &op);
        assert_eq!(opc.expose_secret(), &set.get::<16>("opc"), "set {n}: OPc");

        let m = Milenage::new(&k, &opc);
        let rand: [u8; 16] = set.get("rand");
        let sqn: [u8; 6] = set.get("sqn");
        let amf: [u8; 2] = set.get("amf");
        assert_eq!(m.f1(&rand, &sqn, &amf), set.get::<8>("f1"), "set {n}: f1");
        assert_eq!(
            m.f1_star(&rand, &sqn, &amf),
            set.get::<8>("f1star"),
            "set {n}: f1*"
        );
        let out = m.f2345(&rand);
        assert_eq!(out.res.expose(), &set.get::<8>("f2"), "set {n}: f2");
        assert_eq!(out.ck.expose_secret(), &set.get::<16>("f3"), "set {n}: f3");
        assert_eq!(out.ik.expose_secret(), &set.get::<16>("f4"), "set {n}: f4");
        assert_eq!(out.ak, set.get::<6>("f5"), "set {n}: f5");
        assert_eq!(m.f5_star(&rand), set.get::<6>("f5star"), "set {n}: f5*");
    }
}

#[test]
fn auc_vectors_and_ue_answers_match_ts_35_208() {
    for set in load() {
        let n = set.number;
        let k = SubscriberKey::from_array(set.get("k"));
        let opc = Opc::from_array(set.get("opc"));
        let amf: [u8; 2] = set.get("amf");
        let sqn_bytes: [u8; 6] = set.get("sqn");
        let rand: [u8; 16] = set.get("rand");
        let auc = Aka::new(&k, &opc, amf);
        let av = auc.make_vector(&rand, Sqn::from_bytes(sqn_bytes));

        // AUTN = SQN xor AK || AMF || MAC-A (TS 33.102 §6.3.2), from the set's f5 and f1.
        let ak: [u8; 6] = set.get("f5");
        let mut autn = [0u8; 16];
        for i in 0..6 {
            autn[i] = sqn_bytes[i] ^ ak[i];
        }
        autn[6..8].copy_from_slice(&amf);
        autn[8..].copy_from_slice(&set.get::<8>("f1"));
        assert_eq!(av.autn, autn, "set {n}: AUTN");
        assert_eq!(av.xres.expose(), &set.get::<8>("f2"), "set {n}: XRES");
        assert_eq!(av.ck.expose_secret(), &set.get::<16>("f3"), "set {n}: CK");
        assert_eq!(av.ik.expose_secret(), &set.get::<16>("f4"), "set {n}: IK");
        assert_eq!(av.sqn_xor_ak(), autn[..6], "set {n}: SQN xor AK");

        // The UE side accepts it and derives the same RES, CK, IK.
        let usim = Aka::new(&k, &opc, [0, 0]);
        let answer = usim
            .respond(&av.rand, &av.autn, None)
            .unwrap_or_else(|e| panic!("set {n}: {e}"));
        assert!(answer.res == av.xres, "set {n}: RES");
        assert!(answer.ck == av.ck && answer.ik == av.ik, "set {n}: CK/IK");
        assert_eq!(answer.sqn.to_bytes(), sqn_bytes, "set {n}: SQN");

        // Every flipped bit of AUTN's SQN-xor-AK, AMF or MAC is a MAC failure.
        for byte in 0..16 {
            let mut bad = av.autn;
            bad[byte] ^= 0x01;
            assert_eq!(
                usim.respond(&av.rand, &bad, None).err(),
                Some(AkaError::MacFailure),
                "set {n}: octet {byte}"
            );
        }
        // A replayed SQN is a synchronisation failure, after the MAC check passed.
        assert_eq!(
            usim.respond(&av.rand, &av.autn, Some(answer.sqn)).err(),
            Some(AkaError::SyncFailure),
            "set {n}: replay"
        );
        // A different subscriber key fails the MAC.
        let mut other_k = set.get::<16>("k");
        other_k[0] ^= 1;
        let other = Aka::new(&SubscriberKey::from_array(other_k), &opc, amf);
        assert_eq!(
            other.respond(&av.rand, &av.autn, None).err(),
            Some(AkaError::MacFailure),
            "set {n}: wrong K"
        );
    }
}

/// 5G AKA end to end on TS 35.208 sets 1, 3 and 4: the AuC's vector and the USIM's answer
/// give the K_AUSF and (X)RES* that the independent Python reference computed from the
/// published CK, IK, AK and RES (tests/data/5g_aka.txt, written by e2m-kdf's
/// vectors/generate.py).
#[test]
fn five_g_aka_kausf_and_res_star_match_reference() {
    let text = include_str!("data/5g_aka.txt");
    let mut count = 0;
    for case in text.split("\n[").skip(1) {
        let field = |name: &str| -> Vec<u8> {
            let line = case
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name} = ")))
                .unwrap_or_else(|| panic!("no {name}"));
            hex::decode(line).unwrap_or_else(|_| panic!("{name} is not hex"))
        };
        let snn = case
            .lines()
            .find_map(|l| l.strip_prefix("serving_network_name = "))
            .expect("serving network name");
        let k = SubscriberKey::from_array(field("k").try_into().unwrap());
        let opc = Opc::from_array(field("opc").try_into().unwrap());
        let amf: [u8; 2] = field("amf").try_into().unwrap();
        let rand: [u8; 16] = field("rand").try_into().unwrap();
        let sqn = Sqn::from_bytes(field("sqn").try_into().unwrap());
        let auc = Aka::new(&k, &opc, amf);
        let av = auc.make_vector(&rand, sqn);
        assert_eq!(av.sqn_xor_ak().to_vec(), field("sqn_xor_ak"));
        let kausf = av.kausf(snn).unwrap();
        assert_eq!(kausf.expose_secret().to_vec(), field("kausf"));
        assert_eq!(
            av.xres_star(snn).unwrap().expose_secret().to_vec(),
            field("xres_star")
        );
        // The UE, from RAND and AUTN alone, reaches the same K_AUSF and RES*.
        let ue = Aka::new(&k, &opc, amf)
            .respond(&av.rand, &av.autn, None)
            .unwrap();
        assert!(ue.kausf(snn).unwrap() == kausf);
        assert!(ue.res_star(snn, &av.rand).unwrap() == av.xres_star(snn).unwrap());
        count += 1;
    }
    assert_eq!(count, 3);
}
