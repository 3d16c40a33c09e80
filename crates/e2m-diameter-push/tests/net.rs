//! The EMKS's Diameter listener and the HSS's client, in one process over loopback: pushes
//! over TCP and TLS reach the core and are acknowledged with the key's expiry; the TLS
//! certificate binds the Origin-Host and an EMSE's certificate cannot push; a peer that is
//! not a configured HSS is refused by the core (5003); a retransmission is answered from the
//! duplicate cache and not stored twice; the store's backpressure (3004) is retried by the
//! HSS until every push is acknowledged, each stored once.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use e2m_diameter::{MessageView, ResultCode};
use e2m_diameter_push::net::{
    DiameterTls, EmksDiameterConfig, EmksDiameterOptions, HssDiameter, HssDiameterConfig, HssPeer,
    PushError, start_emks_diameter,
};
use e2m_diameter_push::{PushProfile, PushStatus, Refusal, Routing};
use e2m_emks::{Emks, EmksConfig};
use e2m_https::metrics::EmksObserver;
use e2m_https::pki::{GeneratedPki, PkiDir, PkiSpec};
use e2m_keystore::{
    HeldKey, IntKeyStore, KeyInfo, MemoryIdentityMap, MemoryIntKeyStore, MemorySessionStore,
    MemorySubscriptionStore, PushOutcome, RetentionPolicy, StoreError,
};
use e2m_msg::{E2mIntKey, Imsi, IntermediateKeyPush, KeyId, KeyIdSource, Timestamp};

const EMKS_HOST: &str = "emks.e2m.test";
const HSS_HOST: &str = "hss.e2m.test";
const REALM: &str = "e2m.test";

fn push(n: u64) -> IntermediateKeyPush {
    IntermediateKeyPush {
        imsi: Imsi::new(&format!("00101{n:010}")).unwrap(),
        key_id: KeyIdSource::RandLsb32(KeyId::from_u32(n as u32 + 1)),
        int_key: E2mIntKey::from_array([n as u8; 32]),
        created: Timestamp::now_from_system_clock(),
    }
}

/// An in-memory key store whose pushes take `delay` and are counted.
struct SlowStore {
    inner: MemoryIntKeyStore,
    delay: Duration,
    pushes: Arc<AtomicUsize>,
}

impl IntKeyStore for SlowStore {
    fn retention(&self) -> RetentionPolicy {
        self.inner.retention()
    }
    async fn push(
        &self,
        imsi: &Imsi,
        key_id: KeyId,
        key: &E2mIntKey,
        created: Timestamp,
        now: Timestamp,
    ) -> Result<PushOutcome, StoreError> {
        tokio::time::sleep(self.delay).await;
        self.pushes.fetch_add(1, Ordering::SeqCst);
        self.inner.push(imsi, key_id, key, created, now).await
    }
    async fn get(
        &self,
        imsi: &Imsi,
        key_id: KeyId,
        now: Timestamp,
    ) -> Result<Option<HeldKey>, StoreError> {
        self.inner.get(imsi, key_id, now).await
    }
    async fn latest(&self, imsi: &Imsi, now: Timestamp) -> Result<Option<HeldKey>, StoreError> {
        self.inner.latest(imsi, now).await
    }
    async fn held(&self, imsi: &Imsi, now: Timestamp) -> Result<Vec<KeyInfo>, StoreError> {
        self.inner.held(imsi, now).await
    }
    async fn remove_ue(&self, imsi: &Imsi) -> Result<usize, StoreError> {
        self.inner.remove_ue(imsi).await
    }
    async fn sweep(&self, now: Timestamp) -> Result<Vec<(Imsi, KeyInfo)>, StoreError> {
        self.inner.sweep(now).await
    }
}

type Core = Emks<SlowStore, MemoryIdentityMap, MemorySessionStore, MemorySubscriptionStore>;

fn core(delay: Duration) -> (Arc<Core>, Arc<AtomicUsize>) {
    let pushes = Arc::new(AtomicUsize::new(0));
    let store = SlowStore {
        inner: MemoryIntKeyStore::new(RetentionPolicy::new(4, Duration::from_secs(3600)).unwrap()),
        delay,
        pushes: pushes.clone(),
    };
    let core = Emks::new(
        EmksConfig::default(),
        store,
        MemoryIdentityMap::new(),
        MemorySessionStore::new(Default::default()),
        MemorySubscriptionStore::new(Default::default()),
    );
    (Arc::new(core), pushes)
}

/// Counts what the listener reports.
#[derive(Debug, Default)]
struct Counts {
    answers: std::sync::Mutex<Vec<u32>>,
    refusals: AtomicUsize,
}

impl EmksObserver for Counts {
    fn diameter_push(&self, result_code: u32, _elapsed: Duration) {
        self.answers.lock().unwrap().push(result_code);
    }
    fn refused(&self, _cause: e2m_msg::ProblemCause) {
        self.refusals.fetch_add(1, Ordering::SeqCst);
    }
}

fn emks_config(hss: &[&str], relays: &[&str]) -> EmksDiameterConfig {
    let mut c = EmksDiameterConfig::new("127.0.0.1:0".parse().unwrap(), EMKS_HOST, REALM);
    c.hss = hss.iter().map(|h| (*h).to_owned()).collect();
    c.relays = relays.iter().map(|h| (*h).to_owned()).collect();
    c.watchdog_interval = Duration::from_secs(6);
    c
}

fn hss_config(host: &str, addr: SocketAddr, tls: bool) -> HssDiameterConfig {
    let mut c = HssDiameterConfig::new(
        host,
        REALM,
        REALM,
        vec![HssPeer {
            host: EMKS_HOST.into(),
            addr,
            tls,
        }],
    );
    c.watchdog_interval = Duration::from_secs(6);
    c.retry.first_backoff = Duration::from_millis(20);
    c.retry.deadline = Duration::from_secs(20);
    c
}

fn pki(tag: &str, nodes: &[&str]) -> PkiDir {
    let mut spec = PkiSpec::new(vec![e2m_msg::EmseId::new("emse-a").unwrap()]).unwrap();
    spec.diameter_nodes = nodes.iter().map(|n| (*n).to_owned()).collect();
    GeneratedPki::generate(&spec)
        .unwrap()
        .write_to_temp_dir(tag)
        .unwrap()
}

fn tls_of(pki: &PkiDir, stem: &str) -> DiameterTls {
    use rustls::pki_types::pem::PemObject;
    let chain =
        rustls::pki_types::CertificateDer::pem_file_iter(pki.path().join(format!("{stem}.pem")))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
    let key =
        rustls::pki_types::PrivateKeyDer::from_pem_file(pki.path().join(format!("{stem}.key")))
            .unwrap();
    DiameterTls {
        credentials: e2m_https::pki::Credentials::new(chain, key),
        ca: pki.ca_certificates().unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_over_tcp_reach_the_core_and_are_acknowledged_with_the_expiry() {
    let (core, pushes) = core(Duration::ZERO);
    let counts = Arc::new(Counts::default());
    let observer: Arc<dyn EmksObserver> = counts.clone();
    let options = EmksDiameterOptions {
        observer: Some(observer),
        ..Default::default()
    };
    let emks = start_emks_diameter(core.clone(), emks_config(&[HSS_HOST], &[]), None, options)
        .await
        .unwrap();
    let hss = HssDiameter::start(hss_config(HSS_HOST, emks.local_addr(), false), None)
        .await
        .unwrap();
    assert!(hss.wait_ready(Duration::from_secs(10)).await);
    for n in 0..20 {
        let p = push(n);
        let ack = hss.push(&p).await.unwrap();
        assert_eq!(ack.attempts, 1);
        // created (now) + one hour, whole seconds.
        let expiry = ack.expiry.unwrap().unix();
        let want = (p.created.as_unix_millis() / 1000 + 3600) as i64;
        assert!((want - 1..=want).contains(&expiry), "{expiry} vs {want}");
        let held = core
            .keys()
            .get(
                &p.imsi,
                KeyId::from_u32(n as u32 + 1),
                Timestamp::now_from_system_clock(),
            )
            .await
            .unwrap()
            .expect("the pushed key is held");
        assert!(held.key == p.int_key, "the key as pushed");
    }
    assert_eq!(pushes.load(Ordering::SeqCst), 20);
    assert_eq!(*counts.answers.lock().unwrap(), vec![2001; 20]);
    assert_eq!(counts.refusals.load(Ordering::SeqCst), 0);
    hss.shutdown(Duration::from_secs(2)).await;
    emks.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retransmission_gets_the_first_answer_and_is_not_stored_twice() {
    let (core, pushes) = core(Duration::ZERO);
    let emks = start_emks_diameter(
        core,
        emks_config(&[HSS_HOST], &[]),
        None,
        Default::default(),
    )
    .await
    .unwrap();
    let hss = HssDiameter::start(hss_config(HSS_HOST, emks.local_addr(), false), None)
        .await
        .unwrap();
    assert!(hss.wait_ready(Duration::from_secs(10)).await);
    let p = PushProfile::PROVISIONAL;
    let routing = Routing {
        session_id: "hss.e2m.test;1;retransmitted",
        origin_host: HSS_HOST,
        origin_realm: REALM,
        destination_realm: REALM,
        destination_host: None,
    };
    let octets = p.encode_request(&routing, &push(1), 0x1234_5678).unwrap();
    let mut answers = Vec::new();
    for t_flag in [false, true, true] {
        let mut sent = octets.clone();
        if t_flag {
            sent[4] |= 0x10;
        }
        let answer = hss.endpoint().request(sent).await.unwrap();
        answers.push(answer.to_vec());
    }
    for a in &answers {
        let view = MessageView::parse(a).unwrap();
        assert_eq!(view.header().end_to_end, 0x1234_5678);
        let info = p.decode_answer(&view).unwrap();
        assert!(matches!(info.status(), PushStatus::Acknowledged { .. }));
    }
    // The same answer, octet for octet after the Hop-by-Hop id.
    assert_eq!(answers[0][16..], answers[1][16..]);
    assert_eq!(answers[0][16..], answers[2][16..]);
    assert_eq!(pushes.load(Ordering::SeqCst), 1, "the core decided once");
    hss.shutdown(Duration::from_secs(2)).await;
    emks.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backpressure_is_too_busy_and_the_hss_retries_until_every_push_is_held_once() {
    // Each store push takes 30 ms and the EMKS takes 2 at once: most of 40 concurrent
    // pushes are answered DIAMETER_TOO_BUSY at first.
    let (core, pushes) = core(Duration::from_millis(30));
    let counts = Arc::new(Counts::default());
    let observer: Arc<dyn EmksObserver> = counts.clone();
    let mut config = emks_config(&[HSS_HOST], &[]);
    config.max_in_flight = 2;
    let options = EmksDiameterOptions {
        observer: Some(observer),
        ..Default::default()
    };
    let emks = start_emks_diameter(core.clone(), config, None, options)
        .await
        .unwrap();
    let hss = Arc::new(
        HssDiameter::start(hss_config(HSS_HOST, emks.local_addr(), false), None)
            .await
            .unwrap(),
    );
    assert!(hss.wait_ready(Duration::from_secs(10)).await);
    let mut tasks = Vec::new();
    for n in 0..40 {
        let hss = hss.clone();
        tasks.push(tokio::spawn(async move { hss.push(&push(n)).await }));
    }
    let mut retried = 0;
    for t in tasks {
        let ack = t.await.unwrap().unwrap();
        retried += usize::from(ack.attempts > 1);
    }
    let answers = counts.answers.lock().unwrap().clone();
    let busy = answers.iter().filter(|c| **c == 3004).count();
    assert!(
        busy > 0 && retried > 0,
        "backpressure was exercised: {busy} busy"
    );
    assert_eq!(answers.iter().filter(|c| **c == 2001).count(), 40);
    assert_eq!(
        pushes.load(Ordering::SeqCst),
        40,
        "each push reached the store once"
    );
    assert_eq!(counts.refusals.load(Ordering::SeqCst), busy);
    hss.shutdown(Duration::from_secs(2)).await;
    emks.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_that_is_not_a_configured_hss_is_refused_by_the_core() {
    // "hss2" may connect (as a trusted agent) but is not an HSS itself.
    let (core, pushes) = core(Duration::ZERO);
    let emks = start_emks_diameter(
        core,
        emks_config(&[HSS_HOST], &["hss2.e2m.test"]),
        None,
        Default::default(),
    )
    .await
    .unwrap();
    let hss = HssDiameter::start(hss_config("hss2.e2m.test", emks.local_addr(), false), None)
        .await
        .unwrap();
    assert!(hss.wait_ready(Duration::from_secs(10)).await);
    assert_eq!(
        hss.push(&push(1)).await.unwrap_err(),
        PushError::Refused(Refusal::Result(ResultCode::AUTHORIZATION_REJECTED))
    );
    assert_eq!(pushes.load(Ordering::SeqCst), 0);
    hss.shutdown(Duration::from_secs(2)).await;
    emks.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_the_certificates_name_the_diameter_identities() {
    let pki = pki("diameter-net-tls", &[]);
    let (core, pushes) = core(Duration::ZERO);
    let emks_tls = tls_of(&pki, "emks");
    let emks = start_emks_diameter(
        core,
        emks_config(&[HSS_HOST], &[]),
        Some(&emks_tls),
        Default::default(),
    )
    .await
    .unwrap();
    let addr = emks.local_addr();
    // The HSS's certificate names hss.e2m.test: pushes go through.
    let hss = HssDiameter::start(hss_config(HSS_HOST, addr, true), Some(&tls_of(&pki, "hss")))
        .await
        .unwrap();
    assert!(hss.wait_ready(Duration::from_secs(10)).await);
    hss.push(&push(1)).await.unwrap();
    hss.shutdown(Duration::from_secs(2)).await;
    assert_eq!(pushes.load(Ordering::SeqCst), 1);

    // An EMSE's certificate (names localhost) cannot push, whatever Origin-Host it claims:
    // the EMKS refuses it in the handshake.
    let emse_stem = "emse-emse-a";
    let mut config = hss_config(HSS_HOST, addr, true);
    config.retry.deadline = Duration::from_secs(1);
    let emse = HssDiameter::start(config, Some(&tls_of(&pki, emse_stem)))
        .await
        .unwrap();
    assert!(!emse.wait_ready(Duration::from_secs(2)).await);
    emse.shutdown(Duration::from_secs(1)).await;

    // The HSS's certificate with another Origin-Host (a configured HSS, too): 3010.
    let other = "hss3.e2m.test";
    let emks2 = start_emks_diameter(
        self::core(Duration::ZERO).0,
        emks_config(&[HSS_HOST, other], &[]),
        Some(&emks_tls),
        Default::default(),
    )
    .await
    .unwrap();
    let mut config = hss_config(other, emks2.local_addr(), true);
    config.retry.deadline = Duration::from_secs(1);
    let impostor = HssDiameter::start(config, Some(&tls_of(&pki, "hss")))
        .await
        .unwrap();
    assert!(!impostor.wait_ready(Duration::from_secs(2)).await);
    impostor.shutdown(Duration::from_secs(1)).await;
    emks2.shutdown(Duration::from_secs(1)).await;
    emks.shutdown(Duration::from_secs(2)).await;
    pki.remove().unwrap();
}

/// A TCP forwarder between the HSS and the EMKS that the test can cut (every connection
/// dropped, new ones refused) and restore: a network fault, not a peer. It counts the
/// requests with the T flag it forwards towards the EMKS.
struct Cable {
    addr: SocketAddr,
    cut: Arc<std::sync::atomic::AtomicBool>,
    generation: Arc<AtomicUsize>,
    retransmitted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Cable {
    async fn new(upstream: SocketAddr) -> Cable {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let generation = Arc::new(AtomicUsize::new(0));
        let retransmitted = Arc::new(AtomicUsize::new(0));
        let (c, g, r) = (cut.clone(), generation.clone(), retransmitted.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((down, _)) = listener.accept().await else {
                    return;
                };
                if c.load(Ordering::SeqCst) {
                    continue; // dropped: refused while cut
                }
                let Ok(up) = tokio::net::TcpStream::connect(upstream).await else {
                    continue;
                };
                let born = g.load(Ordering::SeqCst);
                let (mut dr, mut dw) = down.into_split();
                let (mut ur, mut uw) = up.into_split();
                let (g1, g2, r1) = (g.clone(), g.clone(), r.clone());
                // HSS -> EMKS, framing messages to count T flags.
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    let mut pending: Vec<u8> = Vec::new();
                    loop {
                        let n = tokio::select! {
                            n = dr.read(&mut buf) => n.unwrap_or(0),
                            () = tokio::time::sleep(Duration::from_millis(20)) => {
                                if g1.load(Ordering::SeqCst) != born { 0 } else { continue }
                            }
                        };
                        if n == 0 || g1.load(Ordering::SeqCst) != born {
                            return;
                        }
                        pending.extend_from_slice(&buf[..n]);
                        while pending.len() >= 20 {
                            let len = u32::from_be_bytes([0, pending[1], pending[2], pending[3]])
                                as usize;
                            if pending.len() < len || len < 20 {
                                break;
                            }
                            if pending[4] & 0x90 == 0x90 {
                                r1.fetch_add(1, Ordering::SeqCst);
                            }
                            pending.drain(..len);
                        }
                        if uw.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    loop {
                        let n = tokio::select! {
                            n = ur.read(&mut buf) => n.unwrap_or(0),
                            () = tokio::time::sleep(Duration::from_millis(20)) => {
                                if g2.load(Ordering::SeqCst) != born { 0 } else { continue }
                            }
                        };
                        if n == 0 || g2.load(Ordering::SeqCst) != born {
                            return;
                        }
                        if dw.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Cable {
            addr,
            cut,
            generation,
            retransmitted,
            task,
        }
    }

    /// Drops every connection (both directions stop at once, what is in flight is lost)
    /// and refuses new ones.
    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Cable {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_is_restored_and_pending_pushes_are_resent_once() {
    // Store pushes take 20 ms, so that pushes are in flight (sent, not answered) when the
    // connection drops.
    let (core, pushes) = core(Duration::from_millis(20));
    let emks = start_emks_diameter(
        core.clone(),
        emks_config(&[HSS_HOST], &[]),
        None,
        Default::default(),
    )
    .await
    .unwrap();
    let cable = Cable::new(emks.local_addr()).await;
    let mut config = hss_config(HSS_HOST, cable.addr, false);
    config.retry.deadline = Duration::from_secs(60);
    let hss = Arc::new(HssDiameter::start(config, None).await.unwrap());
    assert!(hss.wait_ready(Duration::from_secs(10)).await);
    const PUSHES: u64 = 60;
    let mut tasks = Vec::new();
    for n in 0..PUSHES {
        let hss = hss.clone();
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(n * 10)).await;
            (n, hss.push(&push(n)).await)
        }));
    }
    tokio::time::sleep(Duration::from_millis(250)).await;
    cable.cut();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cable.restore();
    let mut acked = 0;
    for t in tasks {
        let (n, result) = t.await.unwrap();
        result.unwrap_or_else(|e| panic!("push {n}: {e}"));
        acked += 1;
        let p = push(n);
        let held = core
            .keys()
            .get(
                &p.imsi,
                KeyId::from_u32(n as u32 + 1),
                Timestamp::now_from_system_clock(),
            )
            .await
            .unwrap();
        assert!(
            held.is_some_and(|h| h.key == p.int_key),
            "push {n} acknowledged, not held"
        );
    }
    assert_eq!(acked, PUSHES);
    assert!(
        cable.retransmitted.load(Ordering::SeqCst) > 0,
        "the pushes pending at the cut were resent with the T flag"
    );
    // Each push reached the store once: a resent one that the EMKS had already taken was
    // answered from its duplicate cache (or found pending there), not decided again.
    assert_eq!(pushes.load(Ordering::SeqCst), PUSHES as usize);
    hss.shutdown(Duration::from_secs(2)).await;
    emks.shutdown(Duration::from_secs(2)).await;
}
