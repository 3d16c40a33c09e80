//! Two nodes over loopback TCP and TLS through the driver: capabilities exchange, a request
//! and its answer, the TLS certificate bound to the Origin-Host, backpressure when the
//! application does not keep up, the message size limit, a lost connection survived (the
//! request resent with the T flag), and a clean shutdown with DPR/DPA.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use e2m_diameter::{
    AdvertisedApplication, Application, ApplicationId, ApplicationKind, AvpCode, AvpHeader,
    CommandCode, CommandDef, Dictionary, Grammar, MessageView, Node, NodeConfig, PeerConfig,
    PeerId, ProtocolError, ResultCode,
};
use e2m_diameter_net::{
    ClientTls, Endpoint, EndpointConfig, Incoming, PeerEvent, Remote, RequestError,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpListener;

const APP: ApplicationId = ApplicationId(16_777_999);
const CMD: CommandCode = CommandCode(16_777_214);

fn dictionary() -> Dictionary {
    let mut d = Dictionary::base();
    d.add_application(Application {
        id: APP,
        name: Cow::Borrowed("test"),
        kind: ApplicationKind::Auth,
        vendor_id: Some(32473),
        avps: Vec::new(),
        commands: vec![CommandDef {
            name: Cow::Borrowed("Test"),
            code: CMD,
            application: APP,
            proxiable: true,
            request: Grammar::open(Vec::new()),
            answer: Grammar::open(Vec::new()),
        }],
    })
    .unwrap();
    d
}

fn node(host: &str) -> Node {
    let mut c = NodeConfig::new(host, "e2m.test", vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]);
    c.applications = vec![AdvertisedApplication::vendor_auth(APP, 32473)];
    c.watchdog_interval = Duration::from_secs(6);
    c.request_timeout = Duration::from_secs(30);
    c.reopen_watchdogs = 1;
    c.seed = host.len() as u64;
    Node::new(c, dictionary()).unwrap()
}

fn request(text: &str) -> Vec<u8> {
    let mut b =
        e2m_diameter::MessageBuilder::request(CMD, APP, e2m_diameter::CommandFlags::PROXIABLE);
    b.utf8(AvpHeader::mandatory(AvpCode::SESSION_ID), text);
    b.identity(
        AvpHeader::mandatory(AvpCode::ORIGIN_HOST),
        "client.e2m.test",
    );
    b.identity(AvpHeader::mandatory(AvpCode::ORIGIN_REALM), "e2m.test");
    b.identity(AvpHeader::mandatory(AvpCode::DESTINATION_REALM), "e2m.test");
    b.finish().unwrap()
}

/// Answers every request with 2001, echoing its Session-Id; counts the T flags seen.
fn serve(endpoint: Endpoint, mut incoming: Incoming) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let mut retransmitted = 0;
        while let Some(r) = incoming.recv().await {
            retransmitted += usize::from(r.retransmitted);
            let view = MessageView::parse(&r.message).unwrap();
            let mut b = e2m_diameter::MessageBuilder::answer_to(&view);
            b.u32(AvpHeader::mandatory(AvpCode::RESULT_CODE), 2001);
            b.identity(
                AvpHeader::mandatory(AvpCode::ORIGIN_HOST),
                "server.e2m.test",
            );
            b.identity(AvpHeader::mandatory(AvpCode::ORIGIN_REALM), "e2m.test");
            endpoint.answer(r.id, b.finish().unwrap()).await.unwrap();
        }
        retransmitted
    })
}

struct Pair {
    client: Endpoint,
    server: Endpoint,
    server_incoming: Option<Incoming>,
    peer: PeerId,
    addr: SocketAddr,
}

async fn pair(
    server_tls: Option<Arc<rustls::ServerConfig>>,
    client_tls: Option<ClientTls>,
    config: EndpointConfig,
) -> Pair {
    let (server, server_incoming) = Endpoint::start(node("server.e2m.test"), config.clone());
    server
        .add_peer(
            PeerConfig {
                host: "client.e2m.test".into(),
                initiate: false,
            },
            None,
        )
        .await
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = server.listen(listener, server_tls).await.unwrap();
    let (client, _client_incoming) = Endpoint::start(node("client.e2m.test"), config);
    let peer = client
        .add_peer(
            PeerConfig {
                host: "server.e2m.test".into(),
                initiate: true,
            },
            Some(Remote {
                addr,
                tls: client_tls,
            }),
        )
        .await
        .unwrap();
    Pair {
        client,
        server,
        server_incoming: Some(server_incoming),
        peer,
        addr,
    }
}

#[tokio::test]
async fn a_request_and_its_answer_over_tcp() {
    let mut p = pair(None, None, EndpointConfig::default()).await;
    let server = serve(p.server.clone(), p.server_incoming.take().unwrap());
    assert!(p.client.wait_usable(p.peer, Duration::from_secs(10)).await);
    for i in 0..50 {
        let answer = p.client.request(request(&format!("s;{i}"))).await.unwrap();
        let view = MessageView::parse(&answer).unwrap();
        assert_eq!(view.result_code(), Some(ResultCode::SUCCESS));
        assert_eq!(view.session_id(), Some(format!("s;{i}").as_str()));
    }
    // A clean end: DPR/DPA, then the server's application sees its queue end.
    p.client.shutdown(Duration::from_secs(5)).await;
    p.server.shutdown(Duration::from_secs(5)).await;
    assert_eq!(server.await.unwrap(), 0);
}

struct Pki {
    ca: CertificateDer<'static>,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Pki {
    fn new() -> Pki {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca = params.self_signed(&key).unwrap();
        Pki {
            ca: ca.der().clone(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    fn issue(&self, name: &str) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (
            vec![cert.der().clone()],
            PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
        )
    }

    fn roots(&self) -> Arc<rustls::RootCertStore> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.clone()).unwrap();
        Arc::new(roots)
    }

    fn server(&self, name: &str) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            self.roots(),
            provider.clone(),
        )
        .build()
        .unwrap();
        let (chain, key) = self.issue(name);
        Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_client_cert_verifier(verifier)
                .with_single_cert(chain, key)
                .unwrap(),
        )
    }

    fn client(&self, name: &str, server: &str) -> ClientTls {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let (chain, key) = self.issue(name);
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(self.roots())
            .with_client_auth_cert(chain, key)
            .unwrap();
        ClientTls {
            config: Arc::new(config),
            server_name: ServerName::try_from(server.to_owned()).unwrap(),
        }
    }
}

#[tokio::test]
async fn over_tls_the_certificate_must_name_the_origin_host() {
    let pki = Pki::new();
    // Certificates that name the nodes' identities: the exchange succeeds.
    let mut p = pair(
        Some(pki.server("server.e2m.test")),
        Some(pki.client("client.e2m.test", "server.e2m.test")),
        EndpointConfig::default(),
    )
    .await;
    let _server = serve(p.server.clone(), p.server_incoming.take().unwrap());
    assert!(p.client.wait_usable(p.peer, Duration::from_secs(10)).await);
    let answer = p.client.request(request("tls;1")).await.unwrap();
    assert_eq!(
        MessageView::parse(&answer).unwrap().result_code(),
        Some(ResultCode::SUCCESS)
    );
    p.client.shutdown(Duration::from_secs(2)).await;
    p.server.shutdown(Duration::from_secs(2)).await;

    // A client certificate for another name: the server refuses the CER (3010).
    let mut p = pair(
        Some(pki.server("server.e2m.test")),
        Some(pki.client("impostor.e2m.test", "server.e2m.test")),
        EndpointConfig::default(),
    )
    .await;
    let mut events = p.client.peer_events();
    let _server = serve(p.server.clone(), p.server_incoming.take().unwrap());
    let failed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(PeerEvent::CapabilitiesExchangeFailed { result_code, .. }) =
                events.recv().await
            {
                return result_code;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(failed, Some(ResultCode::UNKNOWN_PEER));
    assert!(
        !p.client
            .wait_usable(p.peer, Duration::from_millis(300))
            .await
    );
    p.client.shutdown(Duration::from_secs(1)).await;
    p.server.shutdown(Duration::from_secs(1)).await;

    // A server certificate for another name: the client's TLS refuses it (no connection).
    let p = pair(
        Some(pki.server("other.e2m.test")),
        Some(pki.client("client.e2m.test", "server.e2m.test")),
        EndpointConfig::default(),
    )
    .await;
    assert!(!p.client.wait_usable(p.peer, Duration::from_secs(2)).await);
    p.client.shutdown(Duration::from_secs(1)).await;
    p.server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn an_application_that_does_not_keep_up_gets_too_busy_answers() {
    let mut config = EndpointConfig::default();
    config.incoming_queue = 2;
    let p = pair(None, None, config).await;
    // The server's application never reads its queue.
    let _unread = p.server_incoming;
    assert!(p.client.wait_usable(p.peer, Duration::from_secs(10)).await);
    let mut busy = 0;
    let mut waiting = Vec::new();
    for i in 0..6 {
        let client = p.client.clone();
        waiting.push(tokio::spawn(async move {
            client.request(request(&format!("busy;{i}"))).await
        }));
    }
    for w in waiting {
        // A timeout: queued for the application, which never answers.
        if let Ok(answer) = tokio::time::timeout(Duration::from_secs(2), w).await {
            let answer = answer.unwrap().unwrap();
            let view = MessageView::parse(&answer).unwrap();
            assert_eq!(view.result_code(), Some(ResultCode::TOO_BUSY));
            assert!(view.flags().is_error());
            busy += 1;
        }
    }
    assert_eq!(busy, 4, "two queued, the rest refused at once");
    p.client.shutdown(Duration::from_secs(1)).await;
    p.server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_message_over_the_size_limit_closes_the_connection() {
    let p = pair(None, None, EndpointConfig::default()).await;
    assert!(p.client.wait_usable(p.peer, Duration::from_secs(10)).await);
    // A raw client speaking after the CER: a header announcing 16 MiB.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut raw = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    let mut header = [0u8; 20];
    header[0] = 1;
    header[1..4].copy_from_slice(&[0xff, 0xff, 0xfc]);
    raw.write_all(&header).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), raw.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without an answer");
    p.client.shutdown(Duration::from_secs(1)).await;
    p.server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn requests_of_the_stopped_endpoint_fail() {
    let p = pair(None, None, EndpointConfig::default()).await;
    p.client.shutdown(Duration::from_millis(100)).await;
    assert_eq!(
        p.client.request(request("late")).await.unwrap_err(),
        RequestError::Stopped
    );
    p.server.shutdown(Duration::from_millis(100)).await;
    let _ = ProtocolError::new(ResultCode::TOO_BUSY, "unused");
}
