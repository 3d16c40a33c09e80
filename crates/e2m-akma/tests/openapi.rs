//! Every body this crate writes validates against the 3GPP OpenAPI files (`openapi/`), as
//! checked by `openapi-core` (PyPI), a validator no one here wrote: requests against their
//! operation, answers against their status and media type, the notification against the
//! callback's schema. Broken bodies are sent too and must be refused, so that the check is
//! known to bite.
//!
//! Needs `python3` with `openapi-core==0.23.1` (`bash .ci/test` installs it); without it
//! the test fails and says so.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::io::Write;
use std::process::{Command, Stdio};

use e2m_akma::e2m_keyid::akma::{
    AKid, AfId, AkmaAnchor, Fqdn, Gpsi, Plmn, RoutingIndicator, Supi, UaProtocolId, kaf,
};
use e2m_akma::e2m_keyid::e2m_kdf::{Kaf, Kausf};
use e2m_akma::{
    AkmaAfKeyData, AkmaAfKeyRequest, AkmaKeyInfo, CtxRemove, DecodeError, JsonBody,
    NefAkmaAfKeyData, NotifUri, Operation, ServiceDisableNotif, SupportedFeatures, Timestamp, UeId,
};
use serde_json::{Value, json};

const NAANF: &str = "TS29535_Naanf_AKMA.yaml";
const NEF: &str = "TS29522_AKMA.yaml";

struct Case {
    name: String,
    expect_ok: bool,
    value: Value,
}

fn body(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

fn request(name: &str, spec: &str, op: Operation, req: Value) -> Case {
    Case {
        name: name.into(),
        expect_ok: true,
        value: json!({"name": name, "spec": spec, "method": "post", "path": op.path(),
                      "request": req, "status": null, "response": null}),
    }
}

fn response(
    name: &str,
    spec: &str,
    op: Operation,
    req: Value,
    status: u16,
    resp: Option<Value>,
    ctype: &str,
) -> Case {
    Case {
        name: name.into(),
        expect_ok: true,
        value: json!({"name": name, "spec": spec, "method": "post", "path": op.path(),
                      "request": req, "status": status, "response": resp,
                      "response_content_type": ctype}),
    }
}

fn callback(name: &str, spec: &str, op: Operation, notif: Value) -> Case {
    Case {
        name: name.into(),
        expect_ok: true,
        value: json!({"name": name, "spec": spec, "method": "post", "path": op.path(),
                      "request": notif, "status": null, "response": null, "callback": true}),
    }
}

fn broken(mut case: Case) -> Case {
    case.name = format!("broken {}", case.name);
    case.value["name"] = json!(case.name);
    case.expect_ok = false;
    case
}

fn bodies() -> Vec<Case> {
    let supi = Supi::parse("imsi-208930000000001").unwrap();
    let gpsi = Gpsi::parse("msisdn-33612345678").unwrap();
    let home = Plmn::new("208", "93").unwrap().home_network_domain();
    let anchor = AkmaAnchor::derive(
        &Kausf::from_array([7; 32]),
        &supi,
        &RoutingIndicator::parse("0").unwrap(),
        &home,
    )
    .unwrap();
    let af = AfId::new(
        Fqdn::parse("af.example.com").unwrap(),
        UaProtocolId::TLS12_PSK_WITH_AES_128_CCM_8,
    );
    let k_af = || kaf(&anchor.kakma, &af).unwrap();
    let expiry: Timestamp = "2026-06-01T12:00:00.25Z".parse().unwrap();
    let feat = SupportedFeatures::parse("1").unwrap();

    let mut out = Vec::new();
    // Naanf_AKMA register-anchorkey: request and 200 answer, with SUPI and with GPSI.
    for (label, ue) in [("supi", UeId::Supi(supi)), ("gpsi", UeId::Gpsi(gpsi))] {
        let info = AkmaKeyInfo {
            ue,
            a_kid: anchor.a_kid,
            k_akma: anchor.kakma.copy_secret(),
            supp_feat: Some(feat.clone()),
        };
        let b = body(&info.to_json());
        out.push(request(
            &format!("register {label}"),
            NAANF,
            Operation::RegisterAnchorKey,
            b.clone(),
        ));
        out.push(response(
            &format!("register 200 {label}"),
            NAANF,
            Operation::RegisterAnchorKey,
            b.clone(),
            200,
            Some(b),
            "application/json",
        ));
    }
    // retrieve-applicationkey: plain, with notifUri, anonymous; answers 200 (SUPI, GPSI,
    // anonymous) and 204.
    let plain = AkmaAfKeyRequest {
        af_id: af,
        a_kid: anchor.a_kid,
        notif_uri: None,
        anon_ind: false,
        supp_feat: None,
    };
    let full = AkmaAfKeyRequest {
        notif_uri: Some(NotifUri::parse("https://af.example.com/akma/notify").unwrap()),
        supp_feat: Some(feat.clone()),
        ..plain.clone()
    };
    let anon = AkmaAfKeyRequest {
        anon_ind: true,
        ..plain.clone()
    };
    for (label, req) in [("plain", &plain), ("notifUri", &full), ("anonymous", &anon)] {
        out.push(request(
            &format!("retrieve {label}"),
            NAANF,
            Operation::RetrieveApplicationKey,
            body(&req.to_json()),
        ));
        out.push(request(
            &format!("nef retrieve {label}"),
            NEF,
            Operation::NefRetrieve,
            body(&req.to_json()),
        ));
    }
    let req = body(&plain.to_json());
    let answers = [
        (
            "supi",
            AkmaAfKeyData {
                kaf: k_af(),
                expiry,
                supi: Some(supi),
                gpsi: None,
                supp_feat: None,
            },
        ),
        (
            "gpsi",
            AkmaAfKeyData {
                kaf: k_af(),
                expiry,
                supi: None,
                gpsi: Some(gpsi),
                supp_feat: Some(feat.clone()),
            },
        ),
        (
            "anonymous",
            AkmaAfKeyData {
                kaf: k_af(),
                expiry,
                supi: None,
                gpsi: None,
                supp_feat: None,
            },
        ),
    ];
    for (label, data) in answers {
        let b = body(&data.to_json());
        out.push(response(
            &format!("retrieve 200 {label}"),
            NAANF,
            Operation::RetrieveApplicationKey,
            req.clone(),
            200,
            Some(b),
            "application/json",
        ));
        let nef = NefAkmaAfKeyData::from(data);
        out.push(response(
            &format!("nef retrieve 200 {label}"),
            NEF,
            Operation::NefRetrieve,
            req.clone(),
            200,
            Some(body(&nef.to_json())),
            "application/json",
        ));
    }
    out.push(response(
        "retrieve 204",
        NAANF,
        Operation::RetrieveApplicationKey,
        req.clone(),
        204,
        None,
        "",
    ));
    out.push(response(
        "nef retrieve 204",
        NEF,
        Operation::NefRetrieve,
        req.clone(),
        204,
        None,
        "",
    ));
    // remove-context: request, 204.
    let remove = body(&CtxRemove { supi }.to_json());
    out.push(request(
        "remove",
        NAANF,
        Operation::RemoveContext,
        remove.clone(),
    ));
    out.push(response(
        "remove 204",
        NAANF,
        Operation::RemoveContext,
        remove,
        204,
        None,
        "",
    ));
    // The service-disablement callback, both APIs.
    let notif = body(
        &ServiceDisableNotif {
            a_kid: anchor.a_kid,
        }
        .to_json(),
    );
    out.push(callback(
        "disable notif",
        NAANF,
        Operation::RetrieveApplicationKey,
        notif.clone(),
    ));
    out.push(callback(
        "nef disable notif",
        NEF,
        Operation::NefRetrieve,
        notif,
    ));
    // Problem details for every decode error, as 400/413 answers of every operation.
    let errors = [
        DecodeError::TooLarge {
            len: 9000,
            max: 8192,
        },
        DecodeError::Malformed { line: 1, column: 2 },
        DecodeError::Missing { ie: "/aKId" },
        DecodeError::Incorrect {
            ie: "/afId",
            mandatory: true,
            reason: "x",
        },
        DecodeError::Incorrect {
            ie: "/notifUri",
            mandatory: false,
            reason: "x",
        },
    ];
    for op in Operation::ALL {
        let spec = if op == Operation::NefRetrieve {
            NEF
        } else {
            NAANF
        };
        for err in errors {
            let problem = body(&err.problem().to_json());
            let status = err.status();
            out.push(response(
                &format!("{op:?} {status} {err:?}"),
                spec,
                op,
                Value::Null,
                status,
                Some(problem),
                "application/problem+json",
            ));
        }
    }
    out
}

fn examples() -> Vec<Case> {
    let read = |name: &str| -> Value {
        body(
            &std::fs::read(format!(
                "{}/tests/examples/{name}",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap(),
        )
    };
    let req = read("retrieve-applicationkey.request.json");
    vec![
        request(
            "example register",
            NAANF,
            Operation::RegisterAnchorKey,
            read("register-anchorkey.request.json"),
        ),
        request(
            "example register gpsi",
            NAANF,
            Operation::RegisterAnchorKey,
            read("register-anchorkey-gpsi.request.json"),
        ),
        request(
            "example retrieve",
            NAANF,
            Operation::RetrieveApplicationKey,
            req.clone(),
        ),
        request(
            "example retrieve anonymous",
            NAANF,
            Operation::RetrieveApplicationKey,
            read("retrieve-applicationkey-anonymous.request.json"),
        ),
        response(
            "example retrieve 200",
            NAANF,
            Operation::RetrieveApplicationKey,
            req.clone(),
            200,
            Some(read("retrieve-applicationkey.response.json")),
            "application/json",
        ),
        response(
            "example retrieve 200 gpsi",
            NAANF,
            Operation::RetrieveApplicationKey,
            req.clone(),
            200,
            Some(read("retrieve-applicationkey-gpsi.response.json")),
            "application/json",
        ),
        request(
            "example remove",
            NAANF,
            Operation::RemoveContext,
            read("remove-context.request.json"),
        ),
        callback(
            "example notif",
            NAANF,
            Operation::RetrieveApplicationKey,
            read("service-disable.notification.json"),
        ),
        response(
            "example nef 200",
            NEF,
            Operation::NefRetrieve,
            req,
            200,
            Some(read("nef-retrieve.response.json")),
            "application/json",
        ),
    ]
}

/// Bodies the schemas refuse: if the validator passed these, it would prove nothing.
fn controls() -> Vec<Case> {
    let good = bodies();
    let find = |name: &str| -> Case {
        let c = good.iter().find(|c| c.name == name).unwrap();
        Case {
            name: c.name.clone(),
            expect_ok: true,
            value: c.value.clone(),
        }
    };
    let mut out = Vec::new();
    let mut c = find("register supi");
    c.value["request"].as_object_mut().unwrap().remove("kAkma");
    out.push(broken(c));
    let mut c = find("register supi");
    c.value["request"]["gpsi"] = json!("msisdn-33612345678"); // supi and gpsi: oneOf fails
    out.push(broken(c));
    let mut c = find("retrieve plain");
    c.value["request"]["anonInd"] = json!("yes");
    out.push(broken(c));
    let mut c = find("retrieve 200 supi");
    c.value["response"]["expiry"] = json!("tomorrow");
    out.push(broken(c));
    let mut c = find("retrieve 200 supi");
    c.value["response"].as_object_mut().unwrap().remove("kaf");
    out.push(broken(c));
    let mut c = find("disable notif");
    c.value["request"] = json!({});
    out.push(broken(c));
    let mut c = find("RemoveContext 400 Missing { ie: \"/aKId\" }");
    c.value["response"]["status"] = json!("400");
    out.push(broken(c));
    out
}

#[test]
fn bodies_validate_against_the_3gpp_openapi_files() {
    let cases: Vec<Case> = bodies()
        .into_iter()
        .chain(examples())
        .chain(controls())
        .collect();
    let input = Value::Array(cases.iter().map(|c| c.value.clone()).collect());
    let script = format!("{}/tests/openapi_check.py", env!("CARGO_MANIFEST_DIR"));
    let mut child = match Command::new("python3")
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => panic!(
            "this test needs python3 with openapi-core==0.23.1 (bash .ci/test installs it): {e}"
        ),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_ne!(
        out.status.code(),
        Some(3),
        "this test needs python3 with openapi-core==0.23.1 (bash .ci/test installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut wrong = Vec::new();
    for case in &cases {
        let ok = stdout.lines().any(|l| l == format!("ok {}", case.name));
        let failed = stdout
            .lines()
            .find(|l| l.starts_with(&format!("FAIL {}:", case.name)));
        match (case.expect_ok, ok, failed) {
            (true, true, None) | (false, false, Some(_)) => {}
            (true, _, Some(reason)) => wrong.push(format!("refused: {reason}")),
            (false, true, _) => wrong.push(format!("accepted a broken body: {}", case.name)),
            _ => wrong.push(format!("no verdict for {}", case.name)),
        }
    }
    assert!(
        wrong.is_empty(),
        "{}\n--- validator output ---\n{stdout}\n{}",
        wrong.join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(cases.len() >= 58, "{} cases", cases.len());
}

#[test]
fn kaf_of_the_examples_is_the_reference() {
    // The example answers carry K_AF of akma set 1 for af.example.com;ua=010001c0a8.
    let data = AkmaAfKeyData::from_json(
        &std::fs::read(format!(
            "{}/tests/examples/retrieve-applicationkey.response.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap(),
    )
    .unwrap();
    let a_kid = AKid::parse("rid0.atid2f3be0cbfe30b8ad73d8e335f76e5e40d0f960d1eb92fb3b51ce56ebcf5e2eec@5gc.mnc093.mcc208.3gppnetwork.org").unwrap();
    assert_eq!(a_kid.routing_indicator().unwrap().as_str(), "0");
    assert!(
        data.kaf
            == Kaf::from_hex("da565072dcd984d4595185ccf43d2583c1ee1e494f6ef3a7018f53369c01e427")
                .unwrap()
    );
}
