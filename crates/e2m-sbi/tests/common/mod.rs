//! What the e2m-sbi tests share: an AKMA PKI in a temporary directory, an AAnF over the
//! in-memory store serving TLS or h2c on loopback, AKMA material of test UEs, clients, and
//! an AF's notification endpoint.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    dead_code,
    unreachable_pub,
    reason = "test support; each test file uses a part"
)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use e2m_sbi::aanf::{AanfObserver, AanfServer, AanfServerOptions, start_aanf};
use e2m_sbi::client::{AfClient, AusfClient, ClientTransport, Notifier, SbiClient};
use e2m_sbi::e2m_aanf::e2m_kdf::Kausf;
use e2m_sbi::e2m_aanf::e2m_keyid::akma::{
    AKid, AfId, AkmaAnchor, Fqdn, Gpsi, Plmn, RoutingIndicator, Supi, UeId,
};
use e2m_sbi::e2m_aanf::{Aanf, AanfConfig, AfPolicy, Host};
use e2m_sbi::e2m_akma::{AkmaAfKeyRequest, AkmaKeyInfo, NotifUri};
use e2m_sbi::e2m_https::delivery::DeliveryOptions;
use e2m_sbi::e2m_keystore::{AkmaPolicy, MemoryAkmaContexts};
use e2m_sbi::notify::{NotificationEndpoint, Received, serve_notifications};
use e2m_sbi::pki::{AkmaPki, AkmaPkiDir, AkmaPkiSpec};
use e2m_sbi::server::{H2cPeers, Limits, ServerHandle, Transport};
use e2m_sbi::tls::server_config;
use e2m_sbi::token::TokenPolicy;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

pub const AANF_HOST: &str = "aanf.e2m.test";
pub const AUSF: &str = "ausf.test";
pub const NEF: &str = "nef.test";
pub const AF: &str = "af.example.com";
pub const AF2: &str = "af2.example.com";
pub const FARAWAY: &str = "faraway.example.org";
pub const NOTIFY_PATH: &str = "/akma/notify";

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("e2m-sbi-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The PKI of every test role.
pub fn pki(dir: &TempDir) -> AkmaPkiDir {
    let spec = AkmaPkiSpec::new(&[AUSF], &[NEF], &[AF, AF2, FARAWAY]);
    AkmaPki::generate(&spec, &dir.0.join("pki")).unwrap()
}

/// The AAnF's configuration of the tests: the AUSF and NEF above; AF inside the domain
/// and allowed the SUPI, AF2 inside without it, FARAWAY through the NEF with the GPSI.
pub fn config(tokens: bool) -> AanfConfig {
    let mut config = AanfConfig::new(Duration::from_secs(3600))
        .unwrap()
        .allow_ausf(AUSF.parse().unwrap())
        .allow_nef(NEF.parse().unwrap())
        .allow_af(fqdn(AF), AfPolicy::INSIDE.with_supi().with_gpsi())
        .allow_af(fqdn(AF2), AfPolicy::INSIDE)
        .allow_af(fqdn(FARAWAY), AfPolicy::VIA_NEF.with_gpsi());
    if tokens {
        config = config.require_tokens();
    }
    config
}

pub fn fqdn(name: &str) -> Fqdn {
    Fqdn::parse(name).unwrap()
}

/// Delivery options that retry fast (tests wait in seconds, not minutes).
pub fn fast_delivery() -> DeliveryOptions {
    DeliveryOptions {
        lease: Duration::from_secs(5),
        poll: Duration::from_millis(100),
        first_retry: Duration::from_millis(200),
        max_retry: Duration::from_millis(800),
        ..DeliveryOptions::default()
    }
}

pub struct Aanfs {
    pub server: AanfServer,
    pub core: Arc<Aanf<MemoryAkmaContexts>>,
    pub ca: Vec<e2m_sbi::rustls::pki_types::CertificateDer<'static>>,
    pub pki: AkmaPkiDir,
}

/// How a test AAnF is set up.
pub struct Setup {
    pub tls: bool,
    pub tokens: Option<TokenPolicy>,
    pub policy: AkmaPolicy,
    pub limits: Limits,
    pub nef_api: bool,
    pub observer: Option<Arc<dyn AanfObserver>>,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            tls: true,
            tokens: None,
            policy: AkmaPolicy::DEFAULT,
            limits: Limits::default(),
            nef_api: true,
            observer: None,
        }
    }
}

/// The names the h2c tests give 127.0.0.1: every role, as one peer (the h2c identity is
/// the operator's address plan).
pub fn h2c_peers() -> H2cPeers {
    H2cPeers::new().name(
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        [AUSF, AF, NEF].map(|n| n.parse::<Host>().unwrap()),
    )
}

pub async fn start(pki: &AkmaPkiDir, setup: Setup) -> Aanfs {
    let ca = pki.ca().unwrap();
    let core = Arc::new(Aanf::new(
        config(setup.tokens.is_some()),
        MemoryAkmaContexts::new(setup.policy),
    ));
    let transport = if setup.tls {
        Transport::Tls(server_config(&pki.aanf().unwrap(), &ca).unwrap())
    } else {
        Transport::H2c(h2c_peers())
    };
    let notifier = Notifier::new(ClientTransport::tls(&pki.aanf_client().unwrap(), &ca).unwrap())
        .allow_h2c()
        .resolve(AF, IpAddr::V4(Ipv4Addr::LOCALHOST))
        .resolve(FARAWAY, IpAddr::V4(Ipv4Addr::LOCALHOST))
        .timeout(Duration::from_secs(2));
    let mut options = AanfServerOptions::new(transport, notifier);
    options.tokens = setup.tokens;
    options.limits = setup.limits;
    options.nef_api = setup.nef_api;
    options.observer = setup.observer;
    options.delivery = fast_delivery();
    let server = start_aanf(core.clone(), options).await.unwrap();
    Aanfs {
        server,
        core,
        ca,
        pki: pki.clone(),
    }
}

impl Aanfs {
    /// `https://aanf.e2m.test:PORT` (resolved to the server), or `http://127.0.0.1:PORT`.
    pub fn sbi(&self, credentials_of: Option<&str>) -> SbiClient {
        let port = self.server.local_addr().port();
        match credentials_of {
            Some(stem) => {
                let (cert, key) = self.pki.paths(stem);
                let credentials = e2m_sbi::tls::load_credentials(&cert, &key).unwrap();
                let transport = ClientTransport::tls(&credentials, &self.ca).unwrap();
                SbiClient::new(&format!("https://{AANF_HOST}:{port}"), &transport)
                    .unwrap()
                    .resolve(self.server.local_addr())
            }
            None => {
                SbiClient::new(&format!("http://127.0.0.1:{port}"), &ClientTransport::H2c).unwrap()
            }
        }
    }

    pub fn ausf(&self) -> AusfClient {
        let tls = self.server.base_url().starts_with("https");
        AusfClient::new(self.sbi(tls.then_some("ausf-ausf.test")))
    }

    pub fn af(&self, fqdn: &str) -> AfClient {
        let tls = self.server.base_url().starts_with("https");
        let stem = format!("af-{fqdn}");
        AfClient::new(self.sbi(tls.then_some(stem.as_str())))
    }

    pub fn nef(&self) -> AfClient {
        let tls = self.server.base_url().starts_with("https");
        AfClient::new(self.sbi(tls.then_some("nef-nef.test")))
    }
}

/// The AKMA material of test UE `n` (K_AUSF = n repeated), registered by SUPI.
pub struct Ue {
    pub supi: Supi,
    pub anchor: AkmaAnchor,
    pub kausf: [u8; 32],
}

pub fn ue(n: u8) -> Ue {
    let supi = Supi::parse(&format!("imsi-20893000000{n:04}")).unwrap();
    let home = Plmn::new("208", "93").unwrap().home_network_domain();
    let kausf = [n; 32];
    let anchor = AkmaAnchor::derive(
        &Kausf::from_array(kausf),
        &supi,
        &RoutingIndicator::parse("0").unwrap(),
        &home,
    )
    .unwrap();
    Ue {
        supi,
        anchor,
        kausf,
    }
}

impl Ue {
    /// Another derivation of the same anchor (keys have no `Clone`).
    pub fn again(&self) -> AkmaAnchor {
        let home = Plmn::new("208", "93").unwrap().home_network_domain();
        AkmaAnchor::derive(
            &Kausf::from_array(self.kausf),
            &self.supi,
            &RoutingIndicator::parse("0").unwrap(),
            &home,
        )
        .unwrap()
    }

    pub fn info(&self) -> AkmaKeyInfo {
        let anchor = self.again();
        AkmaKeyInfo {
            ue: UeId::Supi(self.supi),
            a_kid: anchor.a_kid,
            k_akma: anchor.kakma,
            supp_feat: None,
        }
    }

    pub fn info_by_gpsi(&self, gpsi: &str) -> AkmaKeyInfo {
        let anchor = self.again();
        AkmaKeyInfo {
            ue: UeId::Gpsi(Gpsi::parse(gpsi).unwrap()),
            a_kid: anchor.a_kid,
            k_akma: anchor.kakma,
            supp_feat: None,
        }
    }

    pub fn a_kid(&self) -> AKid {
        self.anchor.a_kid
    }
}

/// `afId` of `fqdn` for TLS 1.2 PSK with AES-128-CCM-8 (TS 33.535 Annex A.4).
pub fn af_id(fqdn_text: &str) -> AfId {
    AfId::parse(&format!("{fqdn_text};ua=010001c0a8")).unwrap()
}

pub fn request(af: &str, a_kid: AKid, notif_uri: Option<String>) -> AkmaAfKeyRequest {
    AkmaAfKeyRequest {
        af_id: af_id(af),
        a_kid,
        notif_uri: notif_uri.map(|u| NotifUri::parse(&u).unwrap()),
        anon_ind: false,
        supp_feat: None,
    }
}

/// An AF's notification endpoint over TLS (its `-notify` certificate), accepting the
/// AAnF's client certificate only; its `notifUri` names the AF's FQDN.
pub async fn af_endpoint(
    pki: &AkmaPkiDir,
    fqdn: &str,
    listen: SocketAddr,
) -> (ServerHandle, mpsc::Receiver<Received>, String) {
    let ca = pki.ca().unwrap();
    let transport = Transport::Tls(server_config(&pki.af_notify(fqdn).unwrap(), &ca).unwrap());
    let (endpoint, received) =
        NotificationEndpoint::channel(NOTIFY_PATH, vec![AANF_HOST.parse().unwrap()]);
    let listener = TcpListener::bind(listen).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = serve_notifications(listener, transport, Limits::default(), endpoint).unwrap();
    (
        server,
        received,
        format!("https://{fqdn}:{port}{NOTIFY_PATH}"),
    )
}

/// Runs `program` with `args` and returns (status, stdout, stderr); `None` if the program
/// is not installed.
pub fn run(program: &str, args: &[&str]) -> Option<(std::process::ExitStatus, String, String)> {
    let output = std::process::Command::new(program).args(args).output();
    match output {
        Ok(output) => Some((
            output.status,
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => panic!("{program}: {e}"),
    }
}

/// Hex of a key, for comparing with a JSON body.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
