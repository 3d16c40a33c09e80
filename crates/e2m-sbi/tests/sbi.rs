//! The AAnF on the SBI with real peers on loopback: our AUSF/AF/NEF clients, an AF's
//! notification endpoint, curl and nghttp (Debian `curl`, `nghttp2-client`) over h2 with
//! mutual TLS and over h2c with prior knowledge, and access tokens signed by OpenSSL.
//!
//! Needs `curl`, `nghttp` and `openssl` (`bash .ci/test` installs them); a test whose tool
//! is missing fails and says which.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

mod common;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use common::*;
use e2m_sbi::e2m_aanf::e2m_kdf::Kausf;
use e2m_sbi::e2m_aanf::e2m_keyid::akma::{AkmaAnchor, Plmn, RoutingIndicator, UeId, kaf};
use e2m_sbi::e2m_akma::{AkmaKeyInfo, JsonBody, Operation, cause};
use e2m_sbi::e2m_keystore::AkmaPolicy;
use e2m_sbi::server::Limits;
use e2m_sbi::token::TokenPolicy;

fn tool(program: &str, args: &[&str]) -> (std::process::ExitStatus, String, String) {
    run(program, args).unwrap_or_else(|| {
        panic!("{program} is not installed: run `bash .ci/test`, or apt-get install curl nghttp2-client openssl")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_retrieve_remove_and_notify_over_tls() {
    let dir = TempDir::new("flow");
    let pki = pki(&dir);
    let aanf = start(&pki, Setup::default()).await;
    let (endpoint, mut received, notif_uri) =
        af_endpoint(&pki, AF, "127.0.0.1:0".parse().unwrap()).await;
    let u = ue(1);

    let stored = aanf.ausf().register(&u.info()).await.unwrap();
    assert_eq!(stored.a_kid, u.a_kid());
    assert_eq!(stored.ue, UeId::Supi(u.supi));

    let data = aanf
        .af(AF)
        .retrieve(&request(AF, u.a_kid(), Some(notif_uri)))
        .await
        .unwrap()
        .expect("200 with K_AF");
    // The UE's K_AF for this AF_ID, derived on the UE's side from its own K_AUSF.
    assert!(data.kaf == kaf(&u.again().kakma, &af_id(AF)).unwrap());
    assert_eq!(data.supi, Some(u.supi), "AF allowed the SUPI");

    aanf.ausf().remove(u.supi).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), received.recv())
        .await
        .expect("notification within 10 s")
        .unwrap();
    assert_eq!(got.notification.a_kid, u.a_kid());
    assert!(
        got.from.peer.has_fqdn(&fqdn(AANF_HOST)),
        "from the AAnF's client certificate"
    );
    // No context any more: 204.
    let after = aanf.af(AF).retrieve(&request(AF, u.a_kid(), None)).await;
    assert!(after.unwrap().is_none());
    // A second removal is 204 as well.
    aanf.ausf().remove(u.supi).await.unwrap();
    endpoint.shutdown().await;
    aanf.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reregistration_replaces_and_unknown_a_kid_is_204() {
    let dir = TempDir::new("replace");
    let pki = pki(&dir);
    for tls in [true, false] {
        let aanf = start(
            &pki,
            Setup {
                tls,
                ..Setup::default()
            },
        )
        .await;
        let u = ue(2);
        aanf.ausf().register(&u.info()).await.unwrap();
        // A new primary authentication: a new K_AUSF, so a new K_AKMA and A-KID.
        let home = Plmn::new("208", "93").unwrap().home_network_domain();
        let fresh = || {
            AkmaAnchor::derive(
                &Kausf::from_array([0x5a; 32]),
                &u.supi,
                &RoutingIndicator::parse("0").unwrap(),
                &home,
            )
            .unwrap()
        };
        let next = fresh();
        let info = AkmaKeyInfo {
            ue: UeId::Supi(u.supi),
            a_kid: next.a_kid,
            k_akma: next.kakma,
            supp_feat: None,
        };
        aanf.ausf().register(&info).await.unwrap();
        let af = aanf.af(AF);
        assert!(
            af.retrieve(&request(AF, u.a_kid(), None))
                .await
                .unwrap()
                .is_none(),
            "the replaced A-KID finds nothing (tls={tls})"
        );
        let data = af
            .retrieve(&request(AF, fresh().a_kid, None))
            .await
            .unwrap()
            .unwrap();
        assert!(data.kaf == kaf(&fresh().kakma, &af_id(AF)).unwrap());
        // Never registered: the same 204.
        assert!(
            af.retrieve(&request(AF, ue(3).a_kid(), None))
                .await
                .unwrap()
                .is_none()
        );
        aanf.server.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_af_asking_with_another_afs_af_id_is_refused() {
    let dir = TempDir::new("afid");
    let pki = pki(&dir);
    let aanf = start(&pki, Setup::default()).await;
    let u = ue(4);
    aanf.ausf().register(&u.info()).await.unwrap();
    // af.example.com's certificate, af2.example.com's afId.
    let err = aanf
        .af(AF)
        .retrieve(&request(AF2, u.a_kid(), None))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(403), "{err}");
    // The same for the NEF API, and for an AF the configuration does not know.
    let err = aanf
        .af(AF)
        .retrieve_via_nef(&request(AF2, u.a_kid(), None))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(403));
    // An AF may not register (only a configured AUSF).
    let err = aanf
        .af(AF)
        .sbi()
        .post(Operation::RegisterAnchorKey.path(), &u.info().to_json())
        .await
        .unwrap();
    assert_eq!(err.status.as_u16(), 403);
    // And an AF outside the domain may not use Naanf_AKMA directly.
    let err = aanf
        .af(FARAWAY)
        .retrieve(&request(FARAWAY, u.a_kid(), None))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(403));
    aanf.server.shutdown().await;
}

/// One answer as an `AanfObserver` sees it: operation, status, cause.
type Answer = (Option<Operation>, u16, Option<&'static str>);

/// What an `AanfObserver` saw.
#[derive(Default)]
struct Seen(std::sync::Mutex<Vec<Answer>>);

impl e2m_sbi::aanf::AanfObserver for Seen {
    fn answered(&self, operation: Option<Operation>, status: u16, cause: Option<&'static str>) {
        self.0.lock().unwrap().push((operation, status, cause));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_observer_sees_each_answer_with_its_operation_status_and_cause() {
    let dir = TempDir::new("observer");
    let pki = pki(&dir);
    let seen = std::sync::Arc::new(Seen::default());
    let aanf = start(
        &pki,
        Setup {
            observer: Some(seen.clone()),
            ..Setup::default()
        },
    )
    .await;
    let u = ue(9);
    aanf.ausf().register(&u.info()).await.unwrap();
    let found = aanf.af(AF).retrieve(&request(AF, u.a_kid(), None)).await;
    assert!(found.unwrap().is_some());
    let none = aanf
        .af(AF)
        .retrieve(&request(AF, ue(10).a_kid(), None))
        .await;
    assert!(none.unwrap().is_none());
    let refused = aanf.af(AF).retrieve(&request(AF2, u.a_kid(), None)).await;
    assert_eq!(refused.unwrap_err().status(), Some(403));
    let garbled = aanf
        .af(AF)
        .sbi()
        .post(Operation::RetrieveApplicationKey.path(), b"{\"afId\":1}")
        .await
        .unwrap();
    assert_eq!(garbled.status.as_u16(), 400);
    let lost = aanf
        .af(AF)
        .sbi()
        .post("/naanf-akma/v1/nothing", b"{}")
        .await;
    assert_eq!(lost.unwrap().status.as_u16(), 404);
    aanf.ausf().remove(u.supi).await.unwrap();
    let seen = seen.0.lock().unwrap().clone();
    let retrieve = Some(Operation::RetrieveApplicationKey);
    assert_eq!(seen.len(), 7, "{seen:?}");
    assert_eq!(seen[0], (Some(Operation::RegisterAnchorKey), 200, None));
    assert_eq!(seen[1], (retrieve, 200, None));
    assert_eq!(seen[2], (retrieve, 204, None));
    assert_eq!(seen[3], (retrieve, 403, None));
    assert_eq!((seen[4].0, seen[4].1), (retrieve, 400));
    assert!(seen[4].2.is_some(), "a decode refusal carries its cause");
    assert_eq!(
        seen[5],
        (None, 404, Some(cause::RESOURCE_URI_STRUCTURE_NOT_FOUND))
    );
    assert_eq!(seen[6], (Some(Operation::RemoveContext), 204, None));
    aanf.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nef_never_returns_a_supi() {
    let dir = TempDir::new("nef");
    let pki = pki(&dir);
    let aanf = start(&pki, Setup::default()).await;
    let by_supi = ue(5);
    aanf.ausf().register(&by_supi.info()).await.unwrap();
    let by_gpsi = ue(6);
    aanf.ausf()
        .register(&by_gpsi.info_by_gpsi("msisdn-33612345678"))
        .await
        .unwrap();
    // The AF outside the domain on the NEF API: K_AF, the GPSI where registered by GPSI,
    // never a SUPI; checked on the wire, not only through the type.
    let faraway = aanf.af(FARAWAY);
    for (u, want_gpsi) in [(&by_supi, false), (&by_gpsi, true)] {
        let body = request(FARAWAY, u.a_kid(), None).to_json();
        let reply = faraway
            .sbi()
            .post(Operation::NefRetrieve.path(), &body)
            .await
            .unwrap();
        assert_eq!(reply.status.as_u16(), 200);
        let json: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        assert!(json.get("supi").is_none(), "{json}");
        assert_eq!(json.get("gpsi").is_some(), want_gpsi, "{json}");
        assert_eq!(
            json["kaf"],
            hex(kaf(&u.again().kakma, &af_id(FARAWAY))
                .unwrap()
                .expose_secret())
        );
    }
    // An AF inside the domain that may have the SUPI, through the NEF API: no SUPI.
    let reply = aanf
        .af(AF)
        .sbi()
        .post(
            Operation::NefRetrieve.path(),
            &request(AF, by_supi.a_kid(), None).to_json(),
        )
        .await
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert!(
        json.get("supi").is_none() && json.get("kaf").is_some(),
        "{json}"
    );
    // A configured NEF consuming Naanf_AKMA for that AF: no SUPI either.
    let data = aanf
        .nef()
        .retrieve(&request(AF, by_supi.a_kid(), None))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(data.supi, None);
    // The same AF directly: the SUPI (its policy allows it), so the checks above bite.
    let direct = aanf
        .af(AF)
        .retrieve(&request(AF, by_supi.a_kid(), None))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(direct.supi, Some(by_supi.supi));
    aanf.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contexts_expire_and_kaf_never_outlives_kakma() {
    let dir = TempDir::new("expiry");
    let pki = pki(&dir);
    let policy = AkmaPolicy::new(Duration::from_secs(2), 8).unwrap();
    let aanf = start(
        &pki,
        Setup {
            policy,
            ..Setup::default()
        },
    )
    .await;
    let u = ue(7);
    let before = e2m_sbi::e2m_aanf::Timestamp::now_from_system_clock();
    aanf.ausf().register(&u.info()).await.unwrap();
    let data = aanf
        .af(AF)
        .retrieve(&request(AF, u.a_kid(), None))
        .await
        .unwrap()
        .unwrap();
    // K_AF's lifetime is an hour; K_AKMA's two seconds: K_AF expires with K_AKMA.
    let limit = before.saturating_add(Duration::from_secs(3));
    assert!(data.expiry <= limit, "{} > {}", data.expiry, limit);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert!(
        aanf.af(AF)
            .retrieve(&request(AF, u.a_kid(), None))
            .await
            .unwrap()
            .is_none()
    );
    aanf.server.shutdown().await;
}

/// An NRF key pair made by OpenSSL, and JWS tokens signed by OpenSSL (`openssl dgst`),
/// so that the token check is tested against a signer no one here wrote.
struct OpensslNrf {
    key: std::path::PathBuf,
    public: Vec<u8>,
    alg: &'static str,
    dir: std::path::PathBuf,
}

impl OpensslNrf {
    fn new(dir: &TempDir, alg: &'static str) -> OpensslNrf {
        let key = dir.0.join(format!("nrf-{alg}.key"));
        let public = dir.0.join(format!("nrf-{alg}.pub"));
        let (k, p) = (key.to_str().unwrap(), public.to_str().unwrap());
        let generated = match alg {
            "ES256" => tool(
                "openssl",
                &[
                    "genpkey",
                    "-algorithm",
                    "EC",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-out",
                    k,
                ],
            ),
            _ => tool(
                "openssl",
                &[
                    "genpkey",
                    "-algorithm",
                    "RSA",
                    "-pkeyopt",
                    "rsa_keygen_bits:2048",
                    "-out",
                    k,
                ],
            ),
        };
        assert!(generated.0.success(), "{}", generated.2);
        let out = tool("openssl", &["pkey", "-in", k, "-pubout", "-out", p]);
        assert!(out.0.success(), "{}", out.2);
        OpensslNrf {
            public: std::fs::read(&public).unwrap(),
            key,
            alg,
            dir: dir.0.clone(),
        }
    }

    fn token(&self, claims: &serde_json::Value) -> String {
        let header = serde_json::json!({"alg": self.alg, "typ": "JWT"});
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let file = self.dir.join("jws-input");
        std::fs::write(&file, &input).unwrap();
        let sig_file = self.dir.join("jws-sig");
        let out = tool(
            "openssl",
            &[
                "dgst",
                "-sha256",
                "-sign",
                self.key.to_str().unwrap(),
                "-out",
                sig_file.to_str().unwrap(),
                file.to_str().unwrap(),
            ],
        );
        assert!(out.0.success(), "{}", out.2);
        let der = std::fs::read(&sig_file).unwrap();
        let signature = if self.alg == "ES256" {
            ecdsa_der_to_raw(&der)
        } else {
            der
        };
        format!("{input}.{}", B64.encode(signature))
    }
}

/// An ECDSA-Sig-Value (DER SEQUENCE of two INTEGERs) as the 64 octets r ‖ s of JWS
/// (RFC 7518 §3.4).
fn ecdsa_der_to_raw(der: &[u8]) -> Vec<u8> {
    assert_eq!(der[0], 0x30);
    let mut at = 2;
    let mut out = Vec::new();
    for _ in 0..2 {
        assert_eq!(der[at], 0x02);
        let len = der[at + 1] as usize;
        let int = &der[at + 2..at + 2 + len];
        let int = &int[int.len().saturating_sub(32)..];
        out.extend(std::iter::repeat_n(0, 32 - int.len()));
        out.extend_from_slice(int);
        at += 2 + len;
    }
    out
}

const NRF_ID: &str = "9c1e54b2-1f6e-4bb1-8a4e-3f2c9d0a7e11";

fn claims(sub: &str, scope: &str) -> serde_json::Value {
    let exp = e2m_sbi::e2m_aanf::Timestamp::now_from_system_clock().as_unix_secs() + 300;
    serde_json::json!({"iss": NRF_ID, "sub": sub, "aud": "AANF", "exp": exp, "scope": scope})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_tokens_signed_by_the_nrf_authorise() {
    let dir = TempDir::new("tokens");
    let pki = pki(&dir);
    for alg in ["ES256", "RS256"] {
        let nrf = OpensslNrf::new(&dir, alg);
        let policy = TokenPolicy::from_pem(&nrf.public, NRF_ID, &["AANF"]).unwrap();
        let aanf = start(
            &pki,
            Setup {
                tokens: Some(policy),
                ..Setup::default()
            },
        )
        .await;
        let instance = |stem: &str| {
            let (cert, key) = pki.paths(stem);
            let creds = e2m_sbi::tls::load_credentials(&cert, &key).unwrap();
            e2m_sbi::tls::cert_names(&creds.chain[0])
                .nf_instance
                .unwrap()
                .to_string()
        };
        let ausf_id = instance("ausf-ausf.test");
        let af_id_ = instance("af-af.example.com");
        let u = ue(8);

        // No token: 401 with WWW-Authenticate.
        let reply = aanf
            .ausf()
            .sbi()
            .post(Operation::RegisterAnchorKey.path(), &u.info().to_json())
            .await
            .unwrap();
        assert_eq!(reply.status.as_u16(), 401, "{alg}");
        // A token with the operation's scope.
        let token = nrf.token(&claims(&ausf_id, "naanf-akma naanf-akma:anchorkey"));
        let ausf = e2m_sbi::client::AusfClient::new(
            aanf.ausf().sbi().clone().bearer_token(&token).unwrap(),
        );
        ausf.register(&u.info()).await.unwrap();
        // The AUSF's token in the AF's hands: bound to the AUSF's NF instance ID.
        let stolen = aanf.af(AF).sbi().clone().bearer_token(&token).unwrap();
        let reply = stolen
            .post(
                Operation::RetrieveApplicationKey.path(),
                &request(AF, u.a_kid(), None).to_json(),
            )
            .await
            .unwrap();
        assert_eq!(
            reply.status.as_u16(),
            401,
            "{alg}: token of another NF instance"
        );
        // The AF's own token without the retrieval scope: 403 ACCESS_TOKEN_DENIED.
        let af = |scope: &str| {
            let token = nrf.token(&claims(&af_id_, scope));
            e2m_sbi::client::AfClient::new(aanf.af(AF).sbi().clone().bearer_token(&token).unwrap())
        };
        let err = af("naanf-akma naanf-akma:anchorkey")
            .retrieve(&request(AF, u.a_kid(), None))
            .await
            .unwrap_err();
        assert_eq!(
            (err.status(), err.cause()),
            (Some(403), Some(cause::ACCESS_TOKEN_DENIED)),
            "{alg}"
        );
        // With it: K_AF, without the SUPI; with supi-access too: the SUPI.
        let data = af("naanf-akma naanf-akma:applicationkeyget")
            .retrieve(&request(AF, u.a_kid(), None))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(data.supi, None);
        let data =
            af("naanf-akma naanf-akma:applicationkeyget naanf-akma:applicationkeyget:supi-access")
                .retrieve(&request(AF, u.a_kid(), None))
                .await
                .unwrap()
                .unwrap();
        assert_eq!(data.supi, Some(u.supi));
        // A forged token (signed by another key): 401.
        let other = OpensslNrf::new(&dir, alg);
        let forged = other.token(&claims(&af_id_, "naanf-akma naanf-akma:applicationkeyget"));
        let client = e2m_sbi::client::AfClient::new(
            aanf.af(AF).sbi().clone().bearer_token(&forged).unwrap(),
        );
        let err = client
            .retrieve(&request(AF, u.a_kid(), None))
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(401), "{alg}");
        aanf.server.shutdown().await;
    }
}

fn curl_tls(
    pki: &e2m_sbi::pki::AkmaPkiDir,
    stem: &str,
    port: u16,
    extra: &[&str],
    path: &str,
    body: &str,
) -> (std::process::ExitStatus, String, String) {
    let (cert, key) = pki.paths(stem);
    let ca = pki.ca_path();
    let resolve = format!("{AANF_HOST}:{port}:127.0.0.1");
    let url = format!("https://{AANF_HOST}:{port}{path}");
    let mut args = vec![
        "-sS",
        "-D",
        "-",
        "--cacert",
        ca.to_str().unwrap(),
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--resolve",
        &resolve,
        "--data-binary",
        body,
    ];
    args.extend_from_slice(extra);
    args.push(&url);
    tool("curl", &args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_and_nghttp_fetch_a_key_over_h2_and_h2c() {
    let dir = TempDir::new("stock");
    let pki = pki(&dir);
    let u = ue(9);
    let body = String::from_utf8(request(AF, u.a_kid(), None).to_json().to_vec()).unwrap();
    let expected = hex(kaf(&u.again().kakma, &af_id(AF)).unwrap().expose_secret());
    let path = Operation::RetrieveApplicationKey.path();

    // h2 with mutual TLS.
    let aanf = start(&pki, Setup::default()).await;
    aanf.ausf().register(&u.info()).await.unwrap();
    let port = aanf.server.local_addr().port();
    let json_type = ["-H", "content-type: application/json"];
    let (status, out, err) = curl_tls(
        &pki,
        "af-af.example.com",
        port,
        &[&["--http2"][..], &json_type].concat(),
        path,
        &body,
    );
    assert!(status.success(), "{err}");
    assert!(out.starts_with("HTTP/2 200"), "{out}");
    assert!(out.contains("cache-control: no-store"), "{out}");
    assert!(out.contains(&format!("\"kaf\":\"{expected}\"")), "{out}");
    // Without a client certificate the handshake fails.
    let ca = pki.ca_path();
    let resolve = format!("{AANF_HOST}:{port}:127.0.0.1");
    let url = format!("https://{AANF_HOST}:{port}{path}");
    let (status, _, _) = tool(
        "curl",
        &[
            "-sS",
            "--http2",
            "--cacert",
            ca.to_str().unwrap(),
            "--resolve",
            &resolve,
            "-H",
            "content-type: application/json",
            "--data-binary",
            &body,
            &url,
        ],
    );
    assert!(!status.success());
    // HTTP/1.1: one 505 problem document.
    let (status, out, err) = curl_tls(
        &pki,
        "af-af.example.com",
        port,
        &[&["--http1.1"][..], &json_type].concat(),
        path,
        &body,
    );
    assert!(status.success(), "{err}");
    assert!(out.starts_with("HTTP/1.1 505"), "{out}");
    assert!(
        out.contains("application/problem+json") && out.contains("\"status\":505"),
        "{out}"
    );
    // nghttp, mutual TLS (it checks no server certificate; the AAnF checks its).
    let (cert, key) = pki.paths("af-af.example.com");
    let body_file = dir.0.join("body.json");
    std::fs::write(&body_file, &body).unwrap();
    let (status, out, err) = tool(
        "nghttp",
        &[
            "-v",
            &format!("--cert={}", cert.display()),
            &format!("--key={}", key.display()),
            &format!("--data={}", body_file.display()),
            "-H",
            "content-type: application/json",
            &format!("https://127.0.0.1:{port}{path}"),
        ],
    );
    assert!(status.success(), "{err}{out}");
    assert!(
        out.contains(":status: 200") && out.contains("cache-control: no-store"),
        "{out}"
    );
    assert!(out.contains(&format!("\"kaf\":\"{expected}\"")), "{out}");
    aanf.server.shutdown().await;

    // h2c with prior knowledge.
    let aanf = start(
        &pki,
        Setup {
            tls: false,
            ..Setup::default()
        },
    )
    .await;
    aanf.ausf().register(&u.info()).await.unwrap();
    let url = format!("http://127.0.0.1:{}{path}", aanf.server.local_addr().port());
    let (status, out, err) = tool(
        "curl",
        &[
            "-sS",
            "-D",
            "-",
            "--http2-prior-knowledge",
            "-H",
            "content-type: application/json",
            "--data-binary",
            &body,
            &url,
        ],
    );
    assert!(status.success(), "{err}");
    assert!(
        out.starts_with("HTTP/2 200") && out.contains(&format!("\"kaf\":\"{expected}\"")),
        "{out}"
    );
    let (status, out, err) = tool(
        "nghttp",
        &[
            "-v",
            &format!("--data={}", body_file.display()),
            "-H",
            "content-type: application/json",
            &url,
        ],
    );
    assert!(status.success(), "{err}{out}");
    assert!(
        out.contains(":status: 200") && out.contains(&format!("\"kaf\":\"{expected}\"")),
        "{out}"
    );
    // HTTP/1.1 in clear: 505.
    let (status, out, err) = tool(
        "curl",
        &[
            "-sS",
            "-D",
            "-",
            "--http1.1",
            "-H",
            "content-type: application/json",
            "--data-binary",
            &body,
            &url,
        ],
    );
    assert!(status.success(), "{err}");
    assert!(
        out.starts_with("HTTP/1.1 505") && out.contains("application/problem+json"),
        "{out}"
    );
    aanf.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_is_a_problem_document() {
    let dir = TempDir::new("refusals");
    let pki = pki(&dir);
    let limits = Limits {
        rate: e2m_sbi::e2m_https::ratelimit::RateLimit {
            per_second: 0.1,
            burst: 6,
        },
        ..Limits::default()
    };
    let aanf = start(
        &pki,
        Setup {
            limits,
            ..Setup::default()
        },
    )
    .await;
    let port = aanf.server.local_addr().port();
    let u = ue(10);
    let body = String::from_utf8(request(AF, u.a_kid(), None).to_json().to_vec()).unwrap();
    let path = Operation::RetrieveApplicationKey.path();
    let af = "af-af.example.com";
    let check = |(status, out, err): (std::process::ExitStatus, String, String),
                 code: &str,
                 cause: Option<&str>| {
        assert!(status.success(), "{err}");
        assert!(out.starts_with(&format!("HTTP/2 {code}")), "{out}");
        assert!(
            out.contains("content-type: application/problem+json"),
            "{out}"
        );
        assert!(out.contains(&format!("\"status\":{code}")), "{out}");
        if let Some(cause) = cause {
            assert!(out.contains(&format!("\"cause\":\"{cause}\"")), "{out}");
        }
        out
    };
    let h2 = ["--http2", "-H", "content-type: application/json"];
    // 1: unknown path: 404 RESOURCE_URI_STRUCTURE_NOT_FOUND.
    check(
        curl_tls(&pki, af, port, &h2, "/naanf-akma/v1/nothing", &body),
        "404",
        Some(cause::RESOURCE_URI_STRUCTURE_NOT_FOUND),
    );
    // 2: another method: 405.
    check(
        curl_tls(
            &pki,
            af,
            port,
            &[&h2[..], &["-X", "PUT"]].concat(),
            path,
            &body,
        ),
        "405",
        None,
    );
    // 3: another media type: 415.
    check(
        curl_tls(
            &pki,
            af,
            port,
            &["--http2", "-H", "content-type: text/plain"],
            path,
            &body,
        ),
        "415",
        None,
    );
    // 4: a body that does not decode: 400 with the attribute.
    let out = check(
        curl_tls(
            &pki,
            af,
            port,
            &h2,
            path,
            r#"{"afId":"af.example.com;ua=010001c0a8"}"#,
        ),
        "400",
        Some(cause::MANDATORY_IE_MISSING),
    );
    assert!(out.contains("/aKId"), "{out}");
    // 5: a body over the limit: 413.
    let big = format!("{{\"x\":\"{}\"}}", "a".repeat(9000));
    check(curl_tls(&pki, af, port, &h2, path, &big), "413", None);
    // 6: a header list over the limit: 431.
    let huge = format!("x-pad: {}", "b".repeat(17 * 1024));
    check(
        curl_tls(
            &pki,
            af,
            port,
            &[&h2[..], &["-H", &huge]].concat(),
            path,
            &body,
        ),
        "431",
        None,
    );
    // 7: the budget (6 at once, then one per 10 s) spent: 429 NF_CONGESTION_RISK with
    // Retry-After.
    let mut refused = None;
    for _ in 0..10 {
        let reply = curl_tls(&pki, af, port, &h2, path, &body);
        if reply.1.starts_with("HTTP/2 429") {
            refused = Some(reply);
            break;
        }
    }
    let out = check(
        refused.expect("a 429 within 10 requests"),
        "429",
        Some(cause::NF_CONGESTION_RISK),
    );
    assert!(out.contains("retry-after:"), "{out}");
    aanf.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_closed_before_any_tls_or_http2_work() {
    use tokio::io::AsyncReadExt;
    let dir = TempDir::new("silent");
    let pki = pki(&dir);
    for tls in [true, false] {
        let limits = Limits {
            client_hello_timeout: Duration::from_millis(300),
            ..Limits::default()
        };
        let aanf = start(
            &pki,
            Setup {
                tls,
                limits,
                ..Setup::default()
            },
        )
        .await;
        let mut silent = tokio::net::TcpStream::connect(aanf.server.local_addr())
            .await
            .unwrap();
        let started = std::time::Instant::now();
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf))
            .await
            .expect("closed by the server");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "tls={tls}: {:?}",
            started.elapsed()
        );
        // Others are still served.
        aanf.ausf().register(&ue(11).info()).await.unwrap();
        aanf.server.shutdown().await;
    }
}

/// The client's connection handling: the server ends idle connections (`GOAWAY`, then the
/// close) while the client sleeps just under, at and past the idle timeout; every request
/// is answered, on the old connection or on a new one, and none is lost in the race
/// between the client's request and the server's `GOAWAY`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_reconnects_when_the_server_ends_idle_connections() {
    let dir = TempDir::new("reconnect");
    let pki = pki(&dir);
    let idle = Duration::from_millis(300);
    let aanf = start(
        &pki,
        Setup {
            limits: Limits {
                idle_timeout: idle,
                ..Limits::default()
            },
            ..Setup::default()
        },
    )
    .await;
    let u = ue(7);
    aanf.ausf().register(&u.info()).await.unwrap();
    let af = e2m_sbi::client::AfClient::new(
        aanf.sbi(Some(&format!("af-{AF}")))
            .connections(1)
            .timeout(Duration::from_secs(5)),
    );
    for (round, sleep_ms) in [0u64, 250, 290, 300, 310, 350, 450, 600, 295, 305, 320, 280]
        .into_iter()
        .enumerate()
    {
        tokio::time::sleep(Duration::from_millis(sleep_ms)).await;
        let data = af
            .retrieve(&request(AF, u.a_kid(), None))
            .await
            .unwrap_or_else(|e| panic!("round {round} after {sleep_ms} ms idle: {e}"))
            .expect("200 with K_AF");
        assert!(data.kaf == kaf(&u.again().kakma, &af_id(AF)).unwrap());
    }
    aanf.server.shutdown().await;
    // With the server gone, a request fails with an error in time (no hang, no panic).
    let gone = tokio::time::timeout(
        Duration::from_secs(10),
        af.retrieve(&request(AF, u.a_kid(), None)),
    )
    .await
    .expect("an answer or an error within the client's timeout");
    assert!(gone.is_err(), "no server, no key: {gone:?}");
}
