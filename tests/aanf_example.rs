//! The `emks` example serving the AAnF beside the e2m API (`--aanf-listen`), driven as an
//! operator runs it, with the AUSF and AF clients of e2m-sbi and an AF's notification
//! endpoint run by this test:
//!
//! - **at least once across an AF outage and a `kill -9`** (redb): a removal's
//!   notification to an AF that is down is retried; the AAnF is killed with `kill -9` and
//!   restarted on its data directory; the AF comes up; the notification arrives (after
//!   the dead process's lease, `--aanf-lease`), every copy with the A-KID;
//! - **two AAnF instances on one PostgreSQL** (`.ci/postgres start`): a context
//!   registered through one is served through the other with the same K_AF; a removal
//!   through one while the AF is down, then `kill -9` of that one: the other delivers the
//!   notification when the AF comes up.
//!
//! Without PostgreSQL's server binaries the PostgreSQL test prints `SKIPPED` and passes
//! (as the other PostgreSQL tests do). Loopback only; every wait is bounded.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests"
)]

mod support;

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use e2m_sbi::client::{AfClient, AusfClient, ClientTransport, SbiClient};
use e2m_sbi::e2m_aanf::e2m_kdf::Kausf;
use e2m_sbi::e2m_aanf::e2m_keyid::akma::{
    AfId, AkmaAnchor, Plmn, RoutingIndicator, Supi, UeId, kaf,
};
use e2m_sbi::e2m_akma::{AkmaAfKeyRequest, AkmaKeyInfo, NotifUri};
use e2m_sbi::notify::{NotificationEndpoint, Received, serve_notifications};
use e2m_sbi::pki::AkmaPkiDir;
use e2m_sbi::server::{Limits, ServerHandle, Transport};
use e2m_sbi::tls::server_config;
use support::{example_binary, kill, run_bounded, temp_dir};
use tokio::sync::mpsc;

const AF: &str = "af.example.com";
const AUSF: &str = "ausf.test";
const LEASE_SECS: u64 = 2;

/// The e2m PKI, the AKMA PKI and a KEK file in `dir`.
fn prepare(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let emks = example_binary("emks");
    for args in [
        vec!["gen-pki", "--dir", dir.join("pki").to_str().unwrap()],
        vec![
            "gen-akma-pki",
            "--dir",
            dir.join("akma").to_str().unwrap(),
            "--ausf",
            AUSF,
            "--af",
            AF,
        ],
        vec!["gen-kek", "--out", dir.join("kek-1").to_str().unwrap()],
    ] {
        let out = run_bounded(Command::new(&emks).args(&args), Duration::from_secs(60));
        assert!(out.status.success(), "{args:?}: {out:?}");
    }
}

/// One `emks` process with the AAnF (killed by its own handle when dropped).
struct Aanf {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Aanf {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

impl Aanf {
    fn start(dir: &Path, store: &[&str], conninfo: Option<&str>) -> Aanf {
        // Every line the process logs (audit records at info) is kept for the leak check.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("emks.log"))
            .unwrap();
        let mut command = Command::new(example_binary("emks"));
        command
            .args(["--listen", "127.0.0.1:0", "--certs"])
            .arg(dir.join("pki"))
            .args(store)
            .args(["--aanf-listen", "127.0.0.1:0", "--aanf-certs"])
            .arg(dir.join("akma"))
            .args(["--aanf-ausf", AUSF, "--aanf-af", &format!("{AF}+supi")])
            .args(["--aanf-resolve", &format!("{AF}=127.0.0.1")])
            .args([
                "--aanf-first-retry",
                "200",
                "--aanf-lease",
                &LEASE_SECS.to_string(),
            ])
            .env("RUST_LOG", "info,tokio_postgres=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        if let Some(conninfo) = conninfo {
            command.env("E2M_DATABASE_URL", conninfo);
        }
        let mut child = command.spawn().unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut aanf = None;
        for _ in 0..2 {
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            if let Some(url) = line.trim().strip_prefix("AAnF listening on https://") {
                aanf = Some(url.parse::<SocketAddr>().unwrap());
            }
        }
        let addr = aanf.expect("AAnF listening line");
        Aanf { child, addr }
    }

    fn sbi(
        &self,
        pki: &AkmaPkiDir,
        credentials: e2m_sbi::e2m_https::pki::Credentials,
    ) -> SbiClient {
        let transport = ClientTransport::tls(&credentials, &pki.ca().unwrap()).unwrap();
        SbiClient::new(
            &format!("https://aanf.e2m.test:{}", self.addr.port()),
            &transport,
        )
        .unwrap()
        .resolve(self.addr)
    }

    fn ausf(&self, pki: &AkmaPkiDir) -> AusfClient {
        AusfClient::new(self.sbi(pki, pki.ausf(AUSF).unwrap()))
    }

    fn af(&self, pki: &AkmaPkiDir) -> AfClient {
        AfClient::new(self.sbi(pki, pki.af(AF).unwrap()))
    }

    fn kill_9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

struct Ue {
    supi: Supi,
    kausf: [u8; 32],
}

impl Ue {
    fn anchor(&self) -> AkmaAnchor {
        let home = Plmn::new("208", "93").unwrap().home_network_domain();
        AkmaAnchor::derive(
            &Kausf::from_array(self.kausf),
            &self.supi,
            &RoutingIndicator::parse("0").unwrap(),
            &home,
        )
        .unwrap()
    }

    fn info(&self) -> AkmaKeyInfo {
        let a = self.anchor();
        AkmaKeyInfo {
            ue: UeId::Supi(self.supi),
            a_kid: a.a_kid,
            k_akma: a.kakma,
            supp_feat: None,
        }
    }
}

fn af_id() -> AfId {
    AfId::parse(&format!("{AF};ua=010001c0a8")).unwrap()
}

fn request(ue: &Ue, notif_uri: Option<&str>) -> AkmaAfKeyRequest {
    AkmaAfKeyRequest {
        af_id: af_id(),
        a_kid: ue.anchor().a_kid,
        notif_uri: notif_uri.map(|u| NotifUri::parse(u).unwrap()),
        anon_ind: false,
        supp_feat: None,
    }
}

/// A free loopback port for the AF's endpoint, which starts later.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn af_endpoint(pki: &AkmaPkiDir, port: u16) -> (ServerHandle, mpsc::Receiver<Received>) {
    let ca = pki.ca().unwrap();
    let transport = Transport::Tls(server_config(&pki.af_notify(AF).unwrap(), &ca).unwrap());
    let (endpoint, received) =
        NotificationEndpoint::channel("/akma/notify", vec!["aanf.e2m.test".parse().unwrap()]);
    let listener =
        tokio::net::TcpListener::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
            .await
            .unwrap();
    (
        serve_notifications(listener, transport, Limits::default(), endpoint).unwrap(),
        received,
    )
}

/// Waits for the first notification, then collects repeats for a short while.
async fn notifications(received: &mut mpsc::Receiver<Received>, within: Duration) -> Vec<Received> {
    let first = tokio::time::timeout(within, received.recv())
        .await
        .expect("a notification in time")
        .unwrap();
    let mut all = vec![first];
    while let Ok(Some(more)) =
        tokio::time::timeout(Duration::from_millis(500), received.recv()).await
    {
        all.push(more);
    }
    all
}

struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_survives_an_af_outage_and_kill_9() {
    let dir = temp_dir("aanf-crash");
    let _cleanup = RemoveDir(dir.clone());
    prepare(&dir);
    let pki = AkmaPkiDir::open(&dir.join("akma"));
    let data = dir.join("data");
    let kek = dir.join("kek-1");
    let store = [
        "--store",
        "redb",
        "--data-dir",
        data.to_str().unwrap(),
        "--kek-file",
        kek.to_str().unwrap(),
    ];
    let mut aanf = Aanf::start(&dir, &store, None);
    let ue = Ue {
        supi: Supi::parse("imsi-208930000000042").unwrap(),
        kausf: [42; 32],
    };
    aanf.ausf(&pki).register(&ue.info()).await.unwrap();
    let port = free_port();
    let uri = format!("https://{AF}:{port}/akma/notify");
    let data_before = aanf
        .af(&pki)
        .retrieve(&request(&ue, Some(&uri)))
        .await
        .unwrap()
        .unwrap();
    assert!(data_before.kaf == kaf(&ue.anchor().kakma, &af_id()).unwrap());
    // The AF is down: the removal's notification is recorded and fails for now.
    aanf.ausf(&pki).remove(ue.supi).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    aanf.kill_9();
    // Restarted on its data directory; the context stays removed.
    let aanf = Aanf::start(&dir, &store, None);
    assert!(
        aanf.af(&pki)
            .retrieve(&request(&ue, None))
            .await
            .unwrap()
            .is_none()
    );
    // The AF comes back: the notification arrives.
    let (endpoint, mut received) = af_endpoint(&pki, port).await;
    let got = notifications(&mut received, Duration::from_secs(LEASE_SECS + 20)).await;
    assert!(
        got.iter()
            .all(|r| r.notification.a_kid == ue.anchor().a_kid)
    );
    endpoint.shutdown().await;
    drop(aanf);
}

/// Whether PostgreSQL's server binaries are where `.ci/postgres` looks for them.
fn postgres_installed() -> bool {
    if let Some(dir) = std::env::var_os("E2M_PG_BIN") {
        return PathBuf::from(dir).join("initdb").exists();
    }
    std::fs::read_dir("/usr/lib/postgresql").is_ok_and(|versions| {
        versions
            .flatten()
            .any(|v| v.path().join("bin").join("initdb").exists())
    })
}

struct Postgres {
    dir: PathBuf,
    conninfo: String,
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(&self.dir)
            .output();
    }
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".ci")
        .join("postgres")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_aanf_instances_on_one_postgresql() {
    if !postgres_installed() {
        eprintln!("SKIPPED: PostgreSQL server binaries not found; run `bash .ci/postgres install`");
        return;
    }
    let dir = temp_dir("aanf-pg");
    let _cleanup = RemoveDir(dir.clone());
    prepare(&dir);
    let pg_dir = dir.join("postgres");
    let out = run_bounded(
        Command::new("bash").arg(script()).arg("start").arg(&pg_dir),
        Duration::from_secs(120),
    );
    assert!(
        out.status.success(),
        ".ci/postgres start: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pg = Postgres {
        dir: pg_dir,
        conninfo: String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap()
            .to_owned(),
    };
    let pki = AkmaPkiDir::open(&dir.join("akma"));
    let kek = dir.join("kek-1");
    let store = [
        "--store",
        "postgres",
        "--kek-file",
        kek.to_str().unwrap(),
        "--pool-size",
        "4",
    ];
    let mut a = Aanf::start(&dir, &store, Some(&pg.conninfo));
    let b = Aanf::start(&dir, &store, Some(&pg.conninfo));

    // Registered through A, served through B.
    let ue = Ue {
        supi: Supi::parse("imsi-208930000000077").unwrap(),
        kausf: [77; 32],
    };
    a.ausf(&pki).register(&ue.info()).await.unwrap();
    let port = free_port();
    let uri = format!("https://{AF}:{port}/akma/notify");
    let through_b = b
        .af(&pki)
        .retrieve(&request(&ue, Some(&uri)))
        .await
        .unwrap()
        .unwrap();
    let through_a = a
        .af(&pki)
        .retrieve(&request(&ue, None))
        .await
        .unwrap()
        .unwrap();
    assert!(through_b.kaf == kaf(&ue.anchor().kakma, &af_id()).unwrap());
    assert!(through_a.kaf == through_b.kaf);

    // Removed through A while the AF is down; A dies; B delivers when the AF is back.
    a.ausf(&pki).remove(ue.supi).await.unwrap();
    assert!(
        b.af(&pki)
            .retrieve(&request(&ue, None))
            .await
            .unwrap()
            .is_none()
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    a.kill_9();
    let (endpoint, mut received) = af_endpoint(&pki, port).await;
    let got = notifications(&mut received, Duration::from_secs(LEASE_SECS + 20)).await;
    assert!(
        got.iter()
            .all(|r| r.notification.a_kid == ue.anchor().a_kid)
    );
    endpoint.shutdown().await;
    drop(b);
    drop(pg);
}
