//! The demo's 5G part: the same key server idea as AKMA (TS 33.535). After a 5G AKA run
//! (MILENAGE, TS 33.501 §6.1.3.2) the AUSF derives K_AKMA and the A-KID and registers them
//! with the AAnF (Naanf_AKMA over HTTP/2 with mutual TLS, `e2m-sbi`, on a redb store with
//! K_AKMA sealed under a KEK); the UE derives the same keys and K_AF for the AF, and opens
//! DTLS 1.2 PSK with the AF in the Ua* profile of TS 24.109 K.3.2 (`psk_identity`
//! "3GPP-AKMA" + A-KID); the AF fetches K_AF from the AAnF inside the handshake. Then the
//! edge cases: an AF asking with another AF's afId is refused, and once the AUSF removes
//! the UE's context the AF is notified and the UE's next handshake fails.
//!
//! Included by `e2m_demo.rs` (its `Checks`, `step` and `DemoData`); kept apart from the
//! e2m flow so that each part reads (and changes) on its own.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use e2m_aka::{Aka, AuthVector, Milenage, Opc, Sqn, SubscriberKey};
use e2m_dtls::akma::{
    AKMA_PSK_IDENTITY_HINT, AKMA_UA_PROTOCOL, AkmaIdentityForm, akma_psk_identity,
};
use e2m_dtls::akma_source::AkmaKeySource;
use e2m_dtls::client::{DtlsClient, UeDtlsConfig};
use e2m_dtls::server::{DtlsServer, ServerConfig, ServerEvent, ServerHandle, default_handler};
use e2m_dtls::{DtlsLimits, NoPsk, PeerIdentity, ResolveError};
use e2m_keystore_redb::{Keyring, RedbStore, RedbStoreConfig};
use e2m_sbi::aanf::{AanfServer, AanfServerOptions, start_aanf};
use e2m_sbi::client::{AfClient, AusfClient, ClientTransport, Notifier, SbiClient};
use e2m_sbi::e2m_aanf::e2m_kdf::Kaf;
use e2m_sbi::e2m_aanf::e2m_keyid::akma::{
    AKid, AfId, AkmaAnchor, Fqdn, Plmn, RoutingIndicator, Supi, UeId, kaf,
};
use e2m_sbi::e2m_aanf::{Aanf, AanfConfig, AfPolicy};
use e2m_sbi::e2m_akma::{AkmaAfKeyRequest, AkmaKeyInfo, NotifUri};
use e2m_sbi::e2m_https::delivery::DeliveryOptions;
use e2m_sbi::e2m_keystore::AkmaPolicy;
use e2m_sbi::notify::{NotificationEndpoint, Received, serve_notifications};
use e2m_sbi::pki::{AkmaPki, AkmaPkiDir, AkmaPkiSpec};
use e2m_sbi::server::{Limits, Transport};
use e2m_sbi::tls::server_config;
use tokio::sync::mpsc;

use super::akma_af::AanfKeys;
use super::{Checks, DemoData, FAILING_HANDSHAKE, HANDSHAKE, coap_get, step};

/// The AUSF's name in its certificate.
const AUSF: &str = "ausf.operator.example";
/// The AF: EMSE A's platform, in the AF role.
const AF_A: &str = "iot-platform-a.example.com";
/// Another AF of the operator.
const AF_B: &str = "grid-platform-b.example.org";
/// The AAnF's name in its certificate (`AkmaPkiSpec`'s default).
const AANF_HOST: &str = "aanf.e2m.test";
const NOTIFY_PATH: &str = "/akma/notify";

/// The 5G subscriber: sensor-17's IMSI as a SUPI, K and OP of TS 35.208 set 1.
const SUPI: &str = "imsi-001010123456789";
const K: &str = "465b5ce8b199b49faa5f0a2ee238a6bc";
const OP: [u8; 16] = [
    0xcd, 0xc2, 0x02, 0xd5, 0x12, 0x3e, 0x20, 0xf6, 0x2b, 0x6d, 0x67, 0x6a, 0xc7, 0x2c, 0xb3, 0x18,
];

fn fqdn(name: &str) -> Result<Fqdn, String> {
    Fqdn::parse(name).map_err(|e| format!("{name}: {e}"))
}

fn af_id(name: &str) -> Result<AfId, String> {
    Ok(AfId::new(fqdn(name)?, AKMA_UA_PROTOCOL))
}

/// The AAnF, its PKI, and a client of it for any role.
struct Anchor {
    server: AanfServer,
    pki: AkmaPkiDir,
}

impl Anchor {
    /// An HTTP/2 client of the AAnF with `credentials`' certificate.
    fn client(
        &self,
        credentials: e2m_sbi::e2m_https::pki::Credentials,
    ) -> Result<SbiClient, String> {
        let ca = self.pki.ca().map_err(|e| e.to_string())?;
        let transport = ClientTransport::tls(&credentials, &ca).map_err(|e| e.to_string())?;
        let url = format!("https://{AANF_HOST}:{}", self.server.local_addr().port());
        Ok(SbiClient::new(&url, &transport)
            .map_err(|e| e.to_string())?
            .resolve(self.server.local_addr()))
    }

    fn ausf(&self) -> Result<AusfClient, String> {
        let own = self.pki.ausf(AUSF).map_err(|e| e.to_string())?;
        Ok(AusfClient::new(self.client(own)?))
    }

    fn af(&self, name: &str) -> Result<AfClient, String> {
        let own = self.pki.af(name).map_err(|e| e.to_string())?;
        Ok(AfClient::new(self.client(own)?))
    }
}

/// The AAnF on a redb store of its own (K_AKMA sealed under the demo's KEK): the AUSF
/// may register and remove, AF A may learn the SUPI, AF B may not.
async fn start_anchor(data: &DemoData) -> Result<Anchor, String> {
    let spec = AkmaPkiSpec::new(&[AUSF], &[], &[AF_A, AF_B]);
    let pki = AkmaPki::generate(&spec, &data.dir.join("akma-pki")).map_err(|e| e.to_string())?;
    let keyring = Keyring::from_kek_files([data.kek_file()]).map_err(|e| e.to_string())?;
    let store = RedbStore::open(
        data.dir.join("aanf-store"),
        keyring,
        RedbStoreConfig::default(),
    )
    .map_err(|e| format!("AAnF store: {e}"))?;
    let config = AanfConfig::new(Duration::from_secs(3600))
        .map_err(|e| e.to_string())?
        .allow_ausf(AUSF.parse().map_err(|e| format!("{e}"))?)
        .allow_af(fqdn(AF_A)?, AfPolicy::INSIDE.with_supi())
        .allow_af(fqdn(AF_B)?, AfPolicy::INSIDE);
    let core = Arc::new(Aanf::new(config, store.akma(AkmaPolicy::DEFAULT)));
    let ca = pki.ca().map_err(|e| e.to_string())?;
    let tls =
        server_config(&pki.aanf().map_err(|e| e.to_string())?, &ca).map_err(|e| e.to_string())?;
    let notifier = Notifier::new(
        ClientTransport::tls(&pki.aanf_client().map_err(|e| e.to_string())?, &ca)
            .map_err(|e| e.to_string())?,
    )
    .resolve(AF_A, IpAddr::V4(Ipv4Addr::LOCALHOST))
    .timeout(Duration::from_secs(2));
    let mut options = AanfServerOptions::new(Transport::Tls(tls), notifier);
    options.delivery = DeliveryOptions {
        first_retry: Duration::from_millis(200),
        ..DeliveryOptions::default()
    };
    let server = start_aanf(core, options).await.map_err(|e| e.to_string())?;
    Ok(Anchor { server, pki })
}

/// The AF: its notification endpoint, its key source (K_AF from the AAnF, cached) and its
/// DTLS server in the Ua* profile.
struct Af {
    keys: Arc<AkmaKeySource<AanfKeys>>,
    notifications: mpsc::Receiver<Received>,
    notify_server: e2m_sbi::server::ServerHandle,
    dtls: ServerHandle,
    events: mpsc::Receiver<ServerEvent>,
}

impl Af {
    /// The first DTLS server event `want` picks within a few seconds.
    async fn wait_event(&mut self, want: impl Fn(&ServerEvent) -> bool) -> Option<ServerEvent> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(event)) if want(&event) => return Some(event),
                Ok(Some(_)) => continue,
                _ => return None,
            }
        }
    }
}

async fn start_af(anchor: &Anchor) -> Result<Af, String> {
    let pki = &anchor.pki;
    let ca = pki.ca().map_err(|e| e.to_string())?;
    let own = pki.af_notify(AF_A).map_err(|e| e.to_string())?;
    let transport = Transport::Tls(server_config(&own, &ca).map_err(|e| e.to_string())?);
    let notifier = AANF_HOST.parse().map_err(|e| format!("{e}"))?;
    let (endpoint, notifications) = NotificationEndpoint::channel(NOTIFY_PATH, vec![notifier]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let notify_server = serve_notifications(listener, transport, Limits::default(), endpoint)
        .map_err(|e| e.to_string())?;
    let uri = format!("https://{AF_A}:{port}{NOTIFY_PATH}");
    let notif_uri = NotifUri::parse(&uri).map_err(|e| e.to_string())?;
    let fetcher = AanfKeys::new(anchor.af(AF_A)?, af_id(AF_A)?, Some(notif_uri));
    let keys = Arc::new(AkmaKeySource::new(fetcher, 64));
    let mut dtls = DtlsServer::bind_with_akma(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        NoPsk,
        Arc::clone(&keys),
        default_handler(),
        ServerConfig::default(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let events = dtls.take_events().ok_or("DTLS events already taken")?;
    println!(
        "AF {AF_A}: DTLS 1.2 PSK server on {} (Ua* profile of TS 24.109 K.3.2: psk_identity_hint \"3GPP-AKMA\"); notifUri {uri}",
        dtls.local_addr()
    );
    Ok(Af {
        keys,
        notifications,
        notify_server,
        dtls,
        events,
    })
}

/// 5G AKA (TS 33.501 §6.1.3.2) and AKMA's anchor (TS 33.535 §6.1): the AUSF registers
/// K_AKMA and the A-KID; the UE derives the same, and its K_AKMA and A-KID are returned.
async fn primary_authentication(
    anchor: &Anchor,
    supi: &Supi,
    checks: &mut Checks,
) -> Result<AkmaAnchor, String> {
    let plmn = Plmn::new("001", "01").map_err(|e| e.to_string())?;
    let snn = plmn.serving_network_name();
    let home = plmn.home_network_domain();
    let rid = RoutingIndicator::parse("0").map_err(|e| e.to_string())?;
    let k = SubscriberKey::from_hex(K).map_err(|e| e.to_string())?;
    let opc: Opc = Milenage::opc_from_op(&k, &OP);
    // AMF separation bit set (TS 33.501 §6.1.3.2 step 1).
    let arpf = Aka::new(&k, &opc, [0x80, 0x00]);
    let usim = Aka::new(&k, &opc, [0x80, 0x00]);
    let vector: AuthVector = arpf
        .make_vector_random(Sqn::new(1).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    println!("UDM/AUSF: 5G HE AV for {supi}: RAND, AUTN, XRES*, K_AUSF for \"{snn}\"");
    let answer = usim
        .respond(&vector.rand, &vector.autn, None)
        .map_err(|e| format!("USIM refused the challenge: {e}"))?;
    let res_star = answer
        .res_star(snn.as_str(), &vector.rand)
        .map_err(|e| e.to_string())?;
    let xres_star = vector.xres_star(snn.as_str()).map_err(|e| e.to_string())?;
    checks.check(
        res_star == xres_star,
        "UE: AUTN verified; its RES* equals XRES* (the AUSF confirms the 5G AKA run)",
    );
    let ausf_side = AkmaAnchor::derive(
        &vector.kausf(snn.as_str()).map_err(|e| e.to_string())?,
        supi,
        &rid,
        &home,
    )
    .map_err(|e| e.to_string())?;
    let ue_side = AkmaAnchor::derive(
        &answer.kausf(snn.as_str()).map_err(|e| e.to_string())?,
        supi,
        &rid,
        &home,
    )
    .map_err(|e| e.to_string())?;
    println!(
        "AUSF: A-KID {} (routing indicator, A-TID, home network)",
        ausf_side.a_kid
    );
    checks.check(
        ausf_side.kakma == ue_side.kakma && ausf_side.a_kid == ue_side.a_kid,
        "AUSF and UE derive the same K_AUSF, K_AKMA and A-KID (TS 33.501 A.2, TS 33.535 A.2, A.3)",
    );
    let info = AkmaKeyInfo {
        ue: UeId::Supi(*supi),
        a_kid: ausf_side.a_kid,
        k_akma: ausf_side.kakma,
        supp_feat: None,
    };
    let registered = anchor.ausf()?.register(&info).await;
    checks.check(
        registered.is_ok(),
        "the AUSF registers K_AKMA and the A-KID with the AAnF over HTTP/2 with mutual TLS (200)",
    );
    Ok(ue_side)
}

/// The UE's DTLS 1.2 PSK handshake with the AF (psk_identity "3GPP-AKMA" + A-KID, PSK =
/// K_AF) and one CoAP GET; the AF's `psk_identity_hint` and the answer's payload.
async fn ue_session(
    af: SocketAddr,
    a_kid: &AKid,
    psk: &Kaf,
    timeout: Duration,
) -> Result<(Option<Vec<u8>>, String), String> {
    let limits = DtlsLimits {
        handshake_timeout: timeout,
        ..DtlsLimits::default()
    };
    let config = UeDtlsConfig::akma(a_kid, psk, limits).map_err(|e| e.to_string())?;
    let mut ue = DtlsClient::connect(af, &config)
        .await
        .map_err(|e| e.to_string())?;
    let hint = ue.psk_identity_hint().map(<[u8]>::to_vec);
    let answer = ue
        .request(&coap_get("temperature")?, Duration::from_secs(10))
        .await
        .map_err(|e| e.to_string())?;
    let _ = ue.close().await;
    Ok((hint, String::from_utf8_lossy(&answer.payload).into_owned()))
}

/// The 5G part of the demo (module docs).
pub(crate) async fn run(checks: &mut Checks) -> Result<(), String> {
    step("5G: AKMA (TS 33.535): the AAnF, the AUSF and an AF on the same key-server design");
    let data = DemoData::create()?;
    let anchor = start_anchor(&data).await?;
    println!(
        "AAnF: Naanf_AKMA on {} (HTTP/2, client certificates required); contexts in {} (redb, K_AKMA sealed)",
        anchor.server.base_url(),
        data.dir.join("aanf-store").display()
    );
    let mut af = start_af(&anchor).await?;
    let supi = Supi::parse(SUPI).map_err(|e| e.to_string())?;

    step(
        "5G: primary authentication of sensor-17 (5G AKA); the AUSF registers K_AKMA and the A-KID",
    );
    let ue = primary_authentication(&anchor, &supi, checks).await?;
    let a_kid = ue.a_kid;

    step("5G: sensor-17 opens a DTLS-PSK session with the AF on K_AF (TS 24.109 K.3.2)");
    let psk = kaf(&ue.kakma, &af_id(AF_A)?).map_err(|e| e.to_string())?;
    println!(
        "UE: K_AF = KDF(K_AKMA, AF_ID \"{}\"); psk_identity \"{}\"",
        af_id(AF_A)?,
        akma_psk_identity(&a_kid, AkmaIdentityForm::Prefixed)
    );
    let session = ue_session(af.dtls.local_addr(), &a_kid, &psk, HANDSHAKE).await;
    if let Ok((_, text)) = &session {
        println!("UE: CoAP 2.05 \"{text}\"");
    }
    checks.check(
        session
            .as_ref()
            .is_ok_and(|(hint, _)| hint.as_deref() == Some(AKMA_PSK_IDENTITY_HINT)),
        "handshake completes: the AF sent the hint \"3GPP-AKMA\", read the A-KID from the psk_identity, fetched K_AF from the AAnF over HTTP/2 (200) and used it as the PSK",
    );
    checks.check(af.keys.fetches() == 1, "the AF asked the AAnF exactly once");

    step("5G: AF_ID binds K_AF to one AF");
    let other = anchor.af(AF_B)?;
    let stolen = other
        .retrieve(&AkmaAfKeyRequest {
            af_id: af_id(AF_A)?,
            a_kid,
            notif_uri: None,
            anon_ind: false,
            supp_feat: None,
        })
        .await;
    checks.check(
        matches!(&stolen, Err(e) if e.status() == Some(403)),
        "an AF whose certificate names grid-platform-b but which asks with the afId of iot-platform-a is refused (403)",
    );
    let own = other
        .retrieve(&AkmaAfKeyRequest {
            af_id: af_id(AF_B)?,
            a_kid,
            notif_uri: None,
            anon_ind: false,
            supp_feat: None,
        })
        .await;
    let theirs = kaf(&ue.kakma, &af_id(AF_B)?).map_err(|e| e.to_string())?;
    checks.check(
        matches!(&own, Ok(Some(data)) if data.kaf == theirs && data.kaf != psk && data.supi.is_none()),
        "asking with its own afId it gets its own K_AF (another key than the first AF's) and no SUPI (it is not allowed one)",
    );

    step(
        "5G: the AUSF removes sensor-17's AKMA context; the AF is told; the UE's next handshake fails",
    );
    let removed = anchor.ausf()?.remove(supi).await;
    checks.check(
        removed.is_ok(),
        "the AUSF removes the context at the AAnF (204)",
    );
    let notified = tokio::time::timeout(Duration::from_secs(10), af.notifications.recv()).await;
    let dropped = match &notified {
        Ok(Some(received)) => {
            let dropped = af.keys.forget(&received.notification.a_kid);
            println!(
                "AF: service disablement for A-KID {} from {} (K_AF dropped: {dropped})",
                received.notification.a_kid, received.from.peer
            );
            received.notification.a_kid == a_kid && dropped
        }
        _ => false,
    };
    checks.check(
        dropped,
        "the AAnF notifies the AF (service disablement, from its outbox, at least once); the AF drops its cached K_AF",
    );
    let after = ue_session(af.dtls.local_addr(), &a_kid, &psk, FAILING_HANDSHAKE).await;
    let event = af
        .wait_event(|e| matches!(e, ServerEvent::KeyUnavailable { identity: PeerIdentity::Akma(k), .. } if *k == a_kid))
        .await;
    checks.check(
        after.is_err()
            && matches!(
                event,
                Some(ServerEvent::KeyUnavailable {
                    error: ResolveError::UnknownIdentity,
                    ..
                })
            ),
        "the UE's next handshake fails: the AAnF answers 204 (no context), so the UE must run primary authentication again",
    );
    af.dtls.shutdown();
    af.notify_server.shutdown().await;
    anchor.server.shutdown().await;
    Ok(())
}
