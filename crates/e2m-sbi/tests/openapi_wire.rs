//! Every request our clients send and every answer our AAnF returns, as they crossed the
//! wire, validates against the 3GPP OpenAPI files (`e2m-akma/openapi/`), checked by
//! `openapi-core` (PyPI, pinned in `.ci/test`; `e2m-akma/tests/openapi_check.py`): the
//! AUSF, AF and NEF clients talk h2c to recording proxies, which forward each request over
//! h2 with mutual TLS (each with its role's certificate) to the AAnF and keep both bodies;
//! the AAnF's service-disablement notification goes to a recording endpoint. Broken copies
//! of the recorded bodies must be refused, so that the check is known to bite.
//!
//! Needs `python3` with `openapi-core==0.23.1` (`bash .ci/test` installs it); without it
//! the test fails and says so.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use common::*;
use e2m_sbi::client::{AfClient, AusfClient, ClientTransport, SbiClient};
use e2m_sbi::e2m_akma::Operation;
use e2m_sbi::server::{Handler, HttpResponse, Limits, SbiRequest, Transport, serve};
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// One exchange as it crossed the wire.
#[derive(Clone, Debug)]
struct Exchange {
    path: String,
    request: Vec<u8>,
    status: u16,
    content_type: Option<String>,
    response: Vec<u8>,
}

/// Forwards every request to `upstream` (or answers 204 itself) and keeps both bodies.
struct Recorder {
    upstream: Option<SbiClient>,
    log: Arc<Mutex<Vec<Exchange>>>,
}

impl Handler for Recorder {
    async fn handle(&self, request: SbiRequest) -> HttpResponse {
        let path = request.uri.path().to_owned();
        let (status, content_type, body) = match &self.upstream {
            Some(upstream) => {
                let reply = upstream.post(&path, &request.body).await.unwrap();
                (
                    reply.status.as_u16(),
                    reply.content_type.clone(),
                    reply.body.to_vec(),
                )
            }
            None => (204, None, Vec::new()),
        };
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Exchange {
                path,
                request: request.body.to_vec(),
                status,
                content_type: content_type.clone(),
                response: body.clone(),
            });
        let mut response =
            hyper::Response::new(http_body_util::Full::new(hyper::body::Bytes::from(body)));
        *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
        if let Some(t) = content_type {
            response
                .headers_mut()
                .insert(hyper::header::CONTENT_TYPE, t.parse().unwrap());
        }
        response
    }
}

/// A recording proxy on h2c in front of `upstream`; its base URL.
async fn proxy(
    upstream: Option<SbiClient>,
    log: &Arc<Mutex<Vec<Exchange>>>,
    listen: &str,
) -> (e2m_sbi::server::ServerHandle, String) {
    let listener = TcpListener::bind(listen).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let recorder = Recorder {
        upstream,
        log: log.clone(),
    };
    let server = serve(
        listener,
        Transport::H2c(e2m_sbi::server::H2cPeers::new()),
        Limits::default(),
        Arc::new(recorder),
    )
    .unwrap();
    (server, format!("http://{addr}"))
}

fn value(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(bytes).unwrap()
    }
}

fn spec_of(path: &str) -> &'static str {
    if path == Operation::NefRetrieve.path() {
        "TS29522_AKMA.yaml"
    } else {
        "TS29535_Naanf_AKMA.yaml"
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_crosses_the_wire_validates_against_the_openapi_files() {
    let dir = TempDir::new("openapi");
    let pki = pki(&dir);
    let aanf = start(&pki, Setup::default()).await;
    let log = Arc::new(Mutex::new(Vec::new()));
    let notifications = Arc::new(Mutex::new(Vec::new()));
    let mut proxies = Vec::new();
    let through = |stem: &str| {
        let upstream = aanf.sbi(Some(stem));
        let log = log.clone();
        async move { proxy(Some(upstream), &log, "127.0.0.1:0").await }
    };
    let (p, ausf_url) = through("ausf-ausf.test").await;
    proxies.push(p);
    let (p, af_url) = through("af-af.example.com").await;
    proxies.push(p);
    let (p, far_url) = through("af-faraway.example.org").await;
    proxies.push(p);
    let (p, nef_url) = through("nef-nef.test").await;
    proxies.push(p);
    // The AF's notification endpoint (h2c; the AAnF's notifier resolves the AF's name).
    let (p, notify_url) = proxy(None, &notifications, "127.0.0.1:0").await;
    proxies.push(p);
    let notify_port = notify_url.rsplit(':').next().unwrap().to_owned();
    let notif_uri = format!("http://{AF}:{notify_port}{NOTIFY_PATH}");

    let h2c = |url: &str| SbiClient::new(url, &ClientTransport::H2c).unwrap();
    let ausf = AusfClient::new(h2c(&ausf_url));
    let af = AfClient::new(h2c(&af_url));
    let faraway = AfClient::new(h2c(&far_url));
    let nef = AfClient::new(h2c(&nef_url));

    let (u1, u2, u3) = (ue(21), ue(22), ue(23));
    ausf.register(&u1.info()).await.unwrap();
    ausf.register(&u2.info_by_gpsi("msisdn-33612345678"))
        .await
        .unwrap();
    // An A-KID another UE holds: 400.
    let mut taken = u3.info();
    taken.a_kid = u1.a_kid();
    assert!(ausf.register(&taken).await.is_err());
    af.retrieve(&request(AF, u1.a_kid(), Some(notif_uri.clone())))
        .await
        .unwrap()
        .unwrap();
    af.retrieve(&request(AF, u2.a_kid(), None))
        .await
        .unwrap()
        .unwrap();
    let mut anonymous = request(AF, u1.a_kid(), None);
    anonymous.anon_ind = true;
    af.retrieve(&anonymous).await.unwrap().unwrap();
    assert!(
        af.retrieve(&request(AF, u3.a_kid(), None))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        af.retrieve(&request(AF2, u1.a_kid(), None)).await.is_err(),
        "403"
    );
    faraway
        .retrieve_via_nef(&request(FARAWAY, u2.a_kid(), None))
        .await
        .unwrap()
        .unwrap();
    nef.retrieve(&request(FARAWAY, u1.a_kid(), None))
        .await
        .unwrap()
        .unwrap();
    // A body our clients would never send, through the AF's proxy: 400.
    af.sbi()
        .post(
            Operation::RetrieveApplicationKey.path(),
            br#"{"aKId":"x@y.org"}"#,
        )
        .await
        .unwrap();
    ausf.remove(u1.supi).await.unwrap();
    for _ in 0..100 {
        if !notifications.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let exchanges = log.lock().unwrap().clone();
    let notified = notifications.lock().unwrap().clone();
    assert!(exchanges.len() >= 12, "{exchanges:?}");
    assert_eq!(notified.len(), 1, "one notification");
    let statuses: Vec<u16> = exchanges.iter().map(|e| e.status).collect();
    for want in [200, 204, 400, 403] {
        assert!(statuses.contains(&want), "a {want} among {statuses:?}");
    }

    let mut cases = Vec::new();
    for (i, e) in exchanges.iter().enumerate() {
        let spec = spec_of(&e.path);
        // What our clients sent, alone (the one hand-written body is not ours to check).
        if e.request != br#"{"aKId":"x@y.org"}"# {
            cases.push(
                json!({"name": format!("request {i} {}", e.path), "spec": spec, "method": "post",
                "path": e.path, "request": value(&e.request), "status": null, "response": null}),
            );
        }
        // What the AAnF answered.
        cases.push(
            json!({"name": format!("answer {i} {} {}", e.path, e.status), "spec": spec,
            "method": "post", "path": e.path, "request": value(&e.request), "status": e.status,
            "response": value(&e.response), "response_content_type": e.content_type}),
        );
    }
    for n in &notified {
        cases.push(
            json!({"name": "notification", "spec": "TS29535_Naanf_AKMA.yaml", "method": "post",
            "path": Operation::RetrieveApplicationKey.path(), "request": value(&n.request),
            "status": null, "response": null, "callback": true}),
        );
    }
    // Broken copies: each must be refused.
    let good = cases.len();
    let retrieve = exchanges
        .iter()
        .find(|e| e.status == 200 && e.path == Operation::RetrieveApplicationKey.path())
        .unwrap();
    let mut bad_answer = value(&retrieve.response);
    bad_answer["kaf"] = json!(42);
    cases.push(json!({"name": "broken answer", "spec": "TS29535_Naanf_AKMA.yaml", "method": "post",
        "path": retrieve.path, "request": value(&retrieve.request), "status": 200, "response": bad_answer,
        "response_content_type": "application/json"}));
    cases.push(
        json!({"name": "broken request", "spec": "TS29535_Naanf_AKMA.yaml", "method": "post",
        "path": retrieve.path, "request": json!({"afId": AF}), "status": null, "response": null}),
    );
    cases.push(
        json!({"name": "broken notification", "spec": "TS29535_Naanf_AKMA.yaml", "method": "post",
        "path": Operation::RetrieveApplicationKey.path(), "request": json!({"aKId": 7}),
        "status": null, "response": null, "callback": true}),
    );

    let script = openapi_check_script();
    let mut child = Command::new("python3")
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(Value::from(cases).to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_ne!(
        out.status.code(),
        Some(3),
        "openapi-core is missing: run `bash .ci/test` (pip install openapi-core==0.23.1): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), good + 3, "{stdout}");
    for line in &lines[..good] {
        assert!(line.starts_with("ok "), "{line}\n{stdout}");
    }
    for line in &lines[good..] {
        assert!(
            line.starts_with("FAIL "),
            "the validator must refuse: {line}"
        );
    }
    for p in proxies {
        p.shutdown().await;
    }
    aanf.server.shutdown().await;
}

/// e2m-akma's validator script (beside the OpenAPI files it vendors): in the workspace at
/// `crates/e2m-akma`, or, when the packages are tested unpacked (`.ci/package`), in the
/// sibling directory `e2m-akma-<version>`.
fn openapi_check_script() -> std::path::PathBuf {
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let parent = here.parent().expect("a parent directory");
    let mut candidates = vec![parent.join("e2m-akma")];
    if let Ok(entries) = std::fs::read_dir(parent) {
        candidates.extend(
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("e2m-akma-"))
                }),
        );
    }
    candidates
        .into_iter()
        .map(|dir| dir.join("tests/openapi_check.py"))
        .find(|script| script.exists())
        .expect("e2m-akma's tests/openapi_check.py beside this crate")
}
