//! The whole of Solution #10 in one process, on 127.0.0.1, for real: MILENAGE AKA, the
//! EMKS over HTTPS with mutual TLS on its embedded durable store (redb in a temporary data
//! directory, intermediate keys sealed under a KEK generated for the run) and, beside it,
//! its Diameter interface (the HSS pushes one UE's key over Diameter/TLS: the interface the
//! seed expects between HSS and EMKS), two EMSEs, UEs
//! over DTLS 1.2 with TLS_PSK_WITH_AES_128_CCM_8 (seed clause 6.x.2.3, prerequisites a–c and
//! steps 1–8) and one over OSCORE (RFC 8613, e2m profile) on the same keys, then the seed's
//! edge cases, and a restart of the EMKS mid-run on the same data directory, after which a
//! UE still connects on its key without re-authenticating. Then the same design in 5G,
//! AKMA (TS 33.535): after 5G AKA the AUSF registers K_AKMA and the A-KID with the AAnF
//! (HTTP/2 with mutual TLS), the UE derives K_AF and opens DTLS-PSK with an AF in the Ua*
//! profile of TS 24.109 K.3.2, and the AF fetches K_AF from the AAnF; an AF asking with
//! another AF's afId is refused, and a removed context is notified to the AF and fails
//! the UE's next handshake (`support/akma_demo.rs`). Every expected outcome is checked;
//! the process exits non-zero if any does not happen.
//!
//! ```text
//! cargo run --example e2m_demo
//! ```
//!
//! Output: short narrated lines in the seed's terms. No key bytes are ever printed: where
//! two keys must (or must not) agree, the demo says whether they do. Set `RUST_LOG` (e.g.
//! `RUST_LOG=info`) to also see the EMKS's audit records.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use e2m_aka::{Aka, AuthVector, Milenage, Opc, Sqn, SubscriberKey};
use e2m_coap::{Code, Message, MessageType, Token};
use e2m_diameter_push::net::{
    DiameterTls, EmksDiameter, EmksDiameterConfig, EmksDiameterOptions, HssDiameter,
    HssDiameterConfig, HssPeer, start_emks_diameter,
};
use e2m_dtls::client::{DtlsClient, UeDtlsConfig};
use e2m_dtls::derived_record::{FileDerivedRecord, FileDerivedRecordConfig};
use e2m_dtls::emks_source::EmksKeySource;
use e2m_dtls::oscore_client::{Direction, OscoreClient, OscoreClientError};
use e2m_dtls::oscore_server::{self, OscoreServer, OscoreServerConfig, OscoreServerHandle};
use e2m_dtls::server::{DtlsServer, ServerConfig, ServerEvent, ServerHandle, default_handler};
use e2m_dtls::{DtlsLimits, PskResolver, ResolveError};
use e2m_emks::{Emks, EmksConfig};
use e2m_https::client::{Backoff, ClientError, EmksClient, EmseSession};
use e2m_https::emks::{EmksServer, EmksServerOptions, start_emks};
use e2m_https::notify::{ReceivedNotification, endpoint_limits, start_notification_endpoint};
use e2m_https::pki::{DEFAULT_EMKS_HOST, DEFAULT_HSS_HOST, GeneratedPki, PkiDir, PkiSpec};
use e2m_kdf::{E2mIntKey, E2mKey, E2mProfile, ck_ik_prime, e2m_int_key};
use e2m_keyid::{AppIdentity, EmseId, Imsi, KeyId, PskIdentity, e2m_key};
use e2m_keystore::{IdentityMap, RetentionPolicy};
use e2m_keystore_redb::e2m_seal::{KekVersion, write_new_kek_file};
use e2m_keystore_redb::{
    Keyring, RedbIdentityMap, RedbIntKeyStore, RedbSessionStore, RedbStore, RedbStoreConfig,
    RedbStoreError, RedbSubscriptionStore,
};
use e2m_msg::{
    EventSet, EventType, IntermediateKeyPush, KeyIdSource, KeyRequest, KeyResponse, ProblemCause,
    SessionId, Subscription, Timestamp, UeRef,
};
use e2m_oscore::SenderSequence;
use e2m_oscore::e2m::E2mOscoreProfile;
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};

#[path = "support/akma_af.rs"]
#[allow(dead_code, reason = "shared with the af example; the demo uses a part")]
mod akma_af;
#[path = "support/akma_demo.rs"]
mod akma_demo;
#[path = "support/cli.rs"]
#[allow(dead_code, reason = "shared by all examples; each uses a part")]
mod cli;

/// The whole of Solution #10 in one process on 127.0.0.1: MILENAGE AKA, the EMKS over HTTPS
/// with mutual TLS on its durable store (redb in a temporary directory, keys sealed under a
/// generated KEK), two EMSEs and UEs over DTLS 1.2 PSK and OSCORE, then the seed's edge
/// cases and a restart of the EMKS mid-run; then a 5G UE reaching an AF through AKMA (the
/// AAnF over HTTP/2). Exits non-zero if any expected outcome does not happen. Takes no
/// arguments; set RUST_LOG (e.g. RUST_LOG=info) to also see the EMKS's audit records.
#[derive(clap::Parser, Debug)]
#[command(name = "e2m_demo", version)]
struct Args {}

const EMSE_A: &str = "iot-platform-a.example.com";
const EMSE_B: &str = "grid-platform-b.example.org";
/// An EMSE whose certificate names it, but which claims to be EMSE A when registering.
const EMSE_ROGUE: &str = "rogue-c.example.net";
/// Keys the EMKS keeps per UE in this demo (the default is 4; 2 makes eviction visible
/// after two re-authentications).
const KEYS_PER_UE: usize = 2;
/// The serving node's access network identity for CK'/IK' (TS 33.402 A.2 construction;
/// the BEST study leaves the input open).
const SERVING_NETWORK: &str = "UTRAN";
/// The Diameter realm of the EMKS and the HSS (the generated PKI's identities).
const DIAMETER_REALM: &str = "e2m.test";
/// How long a handshake that is expected to succeed may take (debug builds of the DTLS
/// crypto are slow; the EMSE also fetches the key from the EMKS inside the handshake).
const HANDSHAKE: Duration = Duration::from_secs(15);
/// How long a handshake that is expected to fail may take: the EMSE answers a key it does
/// not have with a fatal alert (`decrypt_error`, as for a wrong PSK), so the UE fails at once;
/// the bound only matters if that alert is lost.
const FAILING_HANDSHAKE: Duration = Duration::from_secs(3);

/// Records every expected outcome; the exit status is their conjunction.
#[derive(Default)]
struct Checks {
    passed: usize,
    failed: Vec<String>,
}

impl Checks {
    fn check(&mut self, ok: bool, what: &str) {
        if ok {
            self.passed += 1;
            println!("    ok: {what}");
        } else {
            self.failed.push(what.to_owned());
            println!("    FAILED: {what}");
        }
    }
}

fn step(text: &str) {
    println!("\n== {text}");
}

/// A subscriber: the HSS/AuC's record and the UE's USIM + ME, which share K and OPc.
struct Subscriber {
    imsi: Imsi,
    app: AppIdentity,
    /// The AuC side (HSS).
    auc: Aka,
    /// The USIM side (UE).
    usim: Aka,
    next_sqn: u64,
    last_accepted: Option<Sqn>,
}

impl Subscriber {
    /// K and OP from a TS 35.208 test set; OPc computed from them (TS 35.206 §4.1).
    fn new(imsi: &str, app: &str, k_hex: &str, op: [u8; 16]) -> Result<Self, String> {
        let k = SubscriberKey::from_hex(k_hex).map_err(|e| e.to_string())?;
        let opc: Opc = Milenage::opc_from_op(&k, &op);
        // AMF with the separation bit set (TS 33.401 §6.1.1).
        let amf = [0x80, 0x00];
        Ok(Subscriber {
            imsi: Imsi::new(imsi).map_err(|e| e.to_string())?,
            app: AppIdentity::new(app).map_err(|e| e.to_string())?,
            auc: Aka::new(&k, &opc, amf),
            usim: Aka::new(&k, &opc, amf),
            next_sqn: 1,
            last_accepted: None,
        })
    }
}

/// What one AKA run leaves at each end.
struct AkaRun {
    key_id: KeyId,
    /// The HSS's e2m_int_key (pushed to the EMKS).
    hss_int_key: E2mIntKey,
    /// The UE's own e2m_int_key (derived in the ME from the USIM's CK, IK).
    ue_int_key: E2mIntKey,
}

/// Prerequisite a: the HSS answers an Authentication Information Request, hands the serving
/// node CK'/IK' (never CK/IK), derives e2m_int_key and its key id, and pushes them to the
/// EMKS; the UE answers the challenge and derives the same e2m_int_key.
/// How the HSS pushes: over HTTPS (mutual TLS, XML), or over Diameter (TLS, the e2m push
/// application of `e2m-diameter-push`) into the same EMKS core.
enum Hss<'a> {
    Https(&'a EmksClient),
    Diameter(&'a HssDiameter),
}

impl Hss<'_> {
    /// Pushes; on success, how it went (for the narration).
    async fn push(&self, push: &IntermediateKeyPush) -> Result<&'static str, String> {
        match self {
            Hss::Https(client) => client
                .push_intermediate_key(push)
                .await
                .map(|()| "over HTTPS with mutual TLS (204)")
                .map_err(|e| e.to_string()),
            Hss::Diameter(client) => client
                .push(push)
                .await
                .map(|_| "over Diameter (TLS, E2M-Key-Push-Request → DIAMETER_SUCCESS 2001)")
                .map_err(|e| e.to_string()),
        }
    }
}

async fn run_aka(
    sub: &mut Subscriber,
    hss: &Hss<'_>,
    profile: &E2mProfile<'static>,
    checks: &mut Checks,
) -> Result<AkaRun, String> {
    let sqn = Sqn::new(sub.next_sqn).map_err(|e| e.to_string())?;
    sub.next_sqn += 1;
    let vector: AuthVector = sub.auc.make_vector_random(sqn).map_err(|e| e.to_string())?;
    let key_id = KeyId::from_rand_lsb32(&vector.rand);
    println!(
        "HSS: authentication vector for IMSI {} (SQN {}), key id = RAND-LSB32 = {key_id}",
        sub.imsi,
        sqn.value()
    );

    let (ck_prime, ik_prime) = ck_ik_prime(
        &vector.ck,
        &vector.ik,
        SERVING_NETWORK,
        &vector.sqn_xor_ak(),
    )
    .map_err(|e| e.to_string())?;
    checks.check(
        ck_prime.expose_secret() != vector.ck.expose_secret()
            && ik_prime.expose_secret() != vector.ik.expose_secret(),
        "the serving node receives CK'/IK', which differ from CK/IK, so it cannot compute e2m keys",
    );

    let response = sub
        .usim
        .respond(&vector.rand, &vector.autn, sub.last_accepted)
        .map_err(|e| format!("USIM refused the challenge: {e}"))?;
    sub.last_accepted = Some(response.sqn);
    checks.check(
        response.res == vector.xres,
        "UE: AUTN verified, RES = XRES (network access authentication succeeds)",
    );

    let hss_int_key = e2m_int_key(&vector.ck, &vector.ik, profile).map_err(|e| e.to_string())?;
    let ue_int_key = e2m_int_key(&response.ck, &response.ik, profile).map_err(|e| e.to_string())?;
    checks.check(
        hss_int_key == ue_int_key,
        "HSS and UE (in the ME) derive the same e2m_int_key = KDF(CK||IK, \"e2m_CIoT\")",
    );

    let push = IntermediateKeyPush {
        imsi: sub.imsi.clone(),
        key_id: KeyIdSource::RandLsb32(key_id),
        int_key: hss_int_key.copy_secret(),
        // To the millisecond, as the HSS example stamps it (retention order, issue 9 item 15).
        created: Timestamp::now_from_system_clock(),
    };
    let pushed = hss.push(&push).await;
    let how = pushed.as_ref().map_or("(failed)", |how| how);
    checks.check(
        pushed.is_ok(),
        &format!("HSS pushes e2m_int_key and key id {key_id} to the EMKS {how}"),
    );
    Ok(AkaRun {
        key_id,
        hss_int_key,
        ue_int_key,
    })
}

/// An EMSE: its EMKS client and resolver, its notification endpoint, its DTLS server and,
/// beside it on the same resolver and cache, its OSCORE endpoint.
struct Emse {
    id: EmseId,
    keys: Arc<EmksKeySource>,
    notifications: mpsc::Receiver<ReceivedNotification>,
    dtls: ServerHandle,
    oscore: OscoreServerHandle,
    events: mpsc::Receiver<ServerEvent>,
    notify_server: e2m_https::server::ServerHandle,
}

impl Emse {
    fn addr(&self) -> SocketAddr {
        self.dtls.local_addr()
    }

    /// Waits for `count` notifications and applies them to the key cache.
    async fn take_notifications(&mut self, count: usize) -> Vec<(EventType, KeyId, usize)> {
        let mut seen = Vec::new();
        while seen.len() < count {
            match tokio::time::timeout(Duration::from_secs(5), self.notifications.recv()).await {
                Ok(Some(received)) => {
                    let n = &received.notification;
                    let mut dropped = self.keys.on_notification(n);
                    if let UeRef::AppIdentity(identity) = &n.ue {
                        // The OSCORE contexts of the UE go too: its next request resolves
                        // the key again.
                        dropped += self.oscore.forget_ue(identity);
                    }
                    println!(
                        "{}: notification from {}: {} for {} key id {} (cached keys dropped: {dropped})",
                        self.id,
                        received.from,
                        n.event,
                        ue_name(&n.ue),
                        n.key_id
                    );
                    seen.push((n.event, n.key_id, dropped));
                }
                _ => break,
            }
        }
        seen
    }

    /// The first event of the DTLS server about `identity` of the given kind, if any
    /// arrives within a few seconds (earlier events are skipped).
    async fn wait_event<F: Fn(&ServerEvent) -> bool>(&mut self, want: F) -> Option<ServerEvent> {
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

fn ue_name(ue: &UeRef) -> String {
    match ue {
        UeRef::AppIdentity(id) => id.to_string(),
        UeRef::Imsi(imsi) => format!("IMSI {imsi}"),
    }
}

/// Prerequisite c: the EMSE registers with the EMKS (POST → 201 + session), opens its
/// notification endpoint and subscribes to its UE's key events, and starts its DTLS server.
async fn start_emse(
    name: &str,
    ue: &AppIdentity,
    emks_url: &str,
    pki: &PkiDir,
    data: &DemoData,
    checks: &mut Checks,
) -> Result<Emse, String> {
    let id = EmseId::new(name).map_err(|e| e.to_string())?;
    // The notification endpoint serves with the EMSE's callback certificate (its client
    // certificate has no server use).
    let credentials = pki.emse_callback(&id).map_err(|e| e.to_string())?;
    let ca = pki.ca_certificates().map_err(|e| e.to_string())?;
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let endpoint = start_notification_endpoint(listener, &credentials, &ca, endpoint_limits())
        .map_err(|e| e.to_string())?;

    let client = EmksClient::for_emse(emks_url, pki, &id).map_err(|e| e.to_string())?;
    let registration = client.register(Some(endpoint.callback.clone())).await;
    checks.check(
        registration.is_ok(),
        &format!("{id} registers (POST, its EMSE_Id = its certificate's) → 201 Created + session"),
    );
    let registration = registration.map_err(|e| e.to_string())?;

    let subscription = Subscription {
        events: EventSet::single(EventType::KeyAvailable).with(EventType::KeyRetired),
        ue: Some(UeRef::AppIdentity(ue.clone())),
        callback: endpoint.callback.clone(),
    };
    let subscribed = client.subscribe(&subscription).await;
    checks.check(
        subscribed.is_ok(),
        &format!("{id} subscribes to new-key and retired-key notifications for {ue} → 201"),
    );

    // The session is kept by an EmseSession: a fetch answered unknown-session (an EMKS
    // that lost its state) registers again with the same callback and is repeated.
    let session = EmseSession::adopt(
        client,
        Some(endpoint.callback.clone()),
        registration.session_id,
        Backoff::DEFAULT,
    );
    let keys = Arc::new(EmksKeySource::new(session, 64));
    let mut dtls = DtlsServer::bind(
        "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?,
        keys.clone(),
        default_handler(),
        ServerConfig::default(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let events = dtls.take_events().ok_or("DTLS events already taken")?;
    println!(
        "{id}: DTLS 1.2 PSK server on {} (TLS_PSK_WITH_AES_128_CCM_8 only)",
        dtls.local_addr()
    );
    // The OSCORE contexts this EMSE has ever derived, kept durably: a context never derived
    // before answers its first request at once (no Echo round trip, RFC 8613 B.1.2 is for
    // contexts whose replay window was lost).
    let record_path = data.dir.join(format!("oscore-derived-{name}"));
    let now_unix_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let record =
        FileDerivedRecord::open(&record_path, FileDerivedRecordConfig::default(), now_unix_s)
            .map_err(|e| e.to_string())?;
    let oscore = OscoreServer::bind_with_record(
        "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?,
        keys.clone(),
        oscore_server::default_handler(),
        OscoreServerConfig::default(),
        record,
    )
    .await
    .map_err(|e| e.to_string())?;
    println!(
        "{id}: OSCORE endpoint on {} (CoAP over OSCORE, e2m profile; same key source and cache; derived contexts recorded in {})",
        oscore.local_addr(),
        record_path.display()
    );
    Ok(Emse {
        id,
        keys,
        notifications: endpoint.notifications,
        dtls,
        oscore,
        events,
        notify_server: endpoint.handle,
    })
}

/// Steps 1–4 and 8 at the UE: DTLS handshake with psk_identity = (identity, key id) and
/// PSK = e2m_key, then one CoAP GET. Returns the CoAP answer's payload.
async fn ue_session(
    emse: SocketAddr,
    app: &AppIdentity,
    key_id: KeyId,
    psk: &E2mKey,
    handshake_timeout: Duration,
) -> Result<String, String> {
    let identity = &PskIdentity::new(app.clone(), key_id);
    let limits = DtlsLimits {
        handshake_timeout,
        ..DtlsLimits::default()
    };
    let config = UeDtlsConfig::new(identity, psk, limits).map_err(|e| e.to_string())?;
    let mut ue = DtlsClient::connect(emse, &config)
        .await
        .map_err(|e| e.to_string())?;
    let request = coap_get("temperature")?;
    let answer = ue
        .request(&request, Duration::from_secs(10))
        .await
        .map_err(|e| e.to_string())?;
    let _ = ue.close().await;
    Ok(String::from_utf8_lossy(&answer.payload).into_owned())
}

/// A confirmable CoAP GET.
fn coap_get(path: &str) -> Result<Message, String> {
    let mut request = Message::new(
        MessageType::Confirmable,
        Code::GET,
        0x0e2e,
        Token::new(b"e2m").map_err(|e| e.to_string())?,
    );
    request.set_uri_path(path).map_err(|e| e.to_string())?;
    Ok(request)
}

/// The UE's OSCORE context for `e2m_key` of `key_id` (e2m profile) and a client to `emse`.
async fn oscore_ue(
    emse: SocketAddr,
    app: &AppIdentity,
    key_id: KeyId,
    e2m_key: &E2mKey,
) -> Result<OscoreClient, String> {
    let context = E2mOscoreProfile::PROVISIONAL
        .ue_context(e2m_key, app, key_id, SenderSequence::volatile())
        .map_err(|e| e.to_string())?;
    let mut ue = OscoreClient::connect(emse, context)
        .await
        .map_err(|e| e.to_string())?;
    ue.set_retransmit(Duration::from_secs(1));
    Ok(ue)
}

/// Round trips (datagrams sent) and octets both ways in `log` from entry `from` on.
fn wire_since(log: &[(Direction, usize)], from: usize) -> (usize, usize) {
    let tail = &log[from.min(log.len())..];
    let sent = tail.iter().filter(|(d, _)| *d == Direction::Sent).count();
    (sent, tail.iter().map(|(_, n)| n).sum())
}

/// A key fetch (seed step 5) sent directly, over `client`'s certificate, naming `session`.
async fn fetch_with(
    client: &EmksClient,
    session: &SessionId,
    ue: &AppIdentity,
    key_id: KeyId,
) -> Result<KeyResponse, ClientError> {
    let request = KeyRequest {
        session_id: session.copy_secret(),
        ue: UeRef::AppIdentity(ue.clone()),
        key_id,
    };
    client.fetch_key(&request).await
}

fn psk_identity(app: &AppIdentity, key_id: KeyId) -> PskIdentity {
    PskIdentity::new(app.clone(), key_id)
}

/// The EMKS of the demo: the HTTPS server over the redb store's four views.
type DemoEmks =
    EmksServer<RedbIntKeyStore, RedbIdentityMap, RedbSessionStore, RedbSubscriptionStore>;

/// The EMKS's data directory and its KEK file, made for this run like the certificates
/// and removed at the end (also when the demo stops early).
struct DemoData {
    dir: PathBuf,
}

impl DemoData {
    /// A new directory under the system's temporary directory, with a freshly generated
    /// KEK file (version 1, mode 0600) in it.
    fn create() -> Result<DemoData, String> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir =
            std::env::temp_dir().join(format!("e2m-demo-emks-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let data = DemoData { dir };
        let version = KekVersion::new(1).ok_or("KEK version 0")?;
        write_new_kek_file(&data.kek_file(), version).map_err(|e| e.to_string())?;
        Ok(data)
    }

    fn kek_file(&self) -> PathBuf {
        self.dir.join("kek-1")
    }

    fn store_dir(&self) -> PathBuf {
        self.dir.join("store")
    }
}

impl Drop for DemoData {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Opens the redb store in `data` (reading the KEK file, checking it against the stored
/// check record) and starts the EMKS over it on `listen`.
///
/// A store is closed when the last handle on it is dropped; right after a stop, a
/// connection task of the stopped server may still be finishing and hold one, so an open
/// refused with `AlreadyOpen` is tried again for up to 5 s.
async fn start_durable_emks(
    data: &DemoData,
    profile: E2mProfile<'static>,
    retention: RetentionPolicy,
    pki: &PkiDir,
    listen: SocketAddr,
    wake: Arc<Notify>,
) -> Result<DemoEmks, String> {
    let config = RedbStoreConfig {
        retention,
        ..RedbStoreConfig::default()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let store = loop {
        let keyring = Keyring::from_kek_files([data.kek_file()]).map_err(|e| e.to_string())?;
        match RedbStore::open(data.store_dir(), keyring, config) {
            Ok(store) => break store,
            Err(RedbStoreError::AlreadyOpen) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(format!("EMKS store: {e}")),
        }
    };
    // The demo's EMSE notification endpoints listen on ephemeral ports of 127.0.0.1, which
    // their certificates name: an operator's EMKS allows only port 443 of such hosts.
    let config = EmksConfig::new(profile)
        .map_err(|e| e.to_string())?
        .allow_certificate_callback_ports(1024..=65535);
    let core = Emks::new(
        config,
        store.int_keys(),
        store.identities(),
        store.sessions(),
        store.subscriptions(),
    );
    let options = EmksServerOptions {
        listen,
        // Woken by the Diameter interface's pushes too.
        outbox_wake: Some(wake),
        ..EmksServerOptions::default()
    };
    start_emks(Arc::new(core), pki, options)
        .await
        .map_err(|e| e.to_string())
}

/// The EMKS's Diameter interface over the running EMKS's core (TLS with the EMKS
/// certificate, which names its Diameter identity), and the HSS's Diameter client (TLS with
/// the HSS certificate, which names the HSS's).
async fn start_diameter(
    emks: &DemoEmks,
    pki: &PkiDir,
    wake: Arc<Notify>,
) -> Result<(EmksDiameter, HssDiameter), String> {
    let ca = pki.ca_certificates().map_err(|e| e.to_string())?;
    let emks_tls = DiameterTls {
        credentials: pki.emks().map_err(|e| e.to_string())?,
        ca: ca.clone(),
    };
    let mut config = EmksDiameterConfig::new(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        DEFAULT_EMKS_HOST,
        DIAMETER_REALM,
    );
    config.hss = vec![DEFAULT_HSS_HOST.to_owned()];
    let options = EmksDiameterOptions {
        observer: None,
        wake: Some(wake),
    };
    let diameter = start_emks_diameter(emks.core().clone(), config, Some(&emks_tls), options)
        .await
        .map_err(|e| e.to_string())?;
    let hss_tls = DiameterTls {
        credentials: pki.hss().map_err(|e| e.to_string())?,
        ca,
    };
    let peer = HssPeer {
        host: DEFAULT_EMKS_HOST.to_owned(),
        addr: diameter.local_addr(),
        tls: true,
    };
    let config =
        HssDiameterConfig::new(DEFAULT_HSS_HOST, DIAMETER_REALM, DIAMETER_REALM, vec![peer]);
    let hss = HssDiameter::start(config, Some(&hss_tls))
        .await
        .map_err(|e| e.to_string())?;
    if !hss.wait_ready(Duration::from_secs(10)).await {
        return Err("the HSS's Diameter connection to the EMKS did not open".into());
    }
    println!(
        "HSS: Diameter connection to {DEFAULT_EMKS_HOST} open (CER/CEA exchanged over TLS; each certificate names its Origin-Host)"
    );
    Ok((diameter, hss))
}

async fn run(checks: &mut Checks) -> Result<(), String> {
    let profile = E2mProfile::PROVISIONAL;

    step("Set-up: certificates (CA, EMKS, HSS, one per EMSE), EMKS, subscribers");
    let ids = [EMSE_A, EMSE_B, EMSE_ROGUE]
        .iter()
        .map(|n| EmseId::new(n).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let spec = PkiSpec::new(ids).map_err(|e| e.to_string())?;
    let pki = GeneratedPki::generate(&spec)
        .and_then(|g| g.write_to_temp_dir("demo"))
        .map_err(|e| e.to_string())?;
    println!(
        "PKI: CA and certificates generated in {}",
        pki.path().display()
    );

    let retention = RetentionPolicy::new(KEYS_PER_UE, Duration::from_secs(24 * 3600))
        .map_err(|e| e.to_string())?;
    let data = DemoData::create()?;
    println!(
        "KEK: generated in {} (version 1; seals every intermediate key at rest)",
        data.kek_file().display()
    );
    let listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let wake = Arc::new(Notify::new());
    let emks = start_durable_emks(&data, profile, retention, &pki, listen, wake.clone()).await?;
    let emks_url = emks.base_url();
    println!(
        "EMKS: listening on {emks_url} (HTTPS, client certificates required; keeps {KEYS_PER_UE} keys per UE); state in {} (redb, durable)",
        data.store_dir().display()
    );
    let (diameter, diameter_hss) = start_diameter(&emks, &pki, wake.clone()).await?;
    println!(
        "EMKS: also takes the HSS's pushes over Diameter on {} (TLS; Origin-Host {DEFAULT_EMKS_HOST}; the same core decides them)",
        diameter.local_addr()
    );

    // Set 1 and set 3 of TS 35.208 (K, OP).
    let mut sensor = Subscriber::new(
        "001010123456789",
        "sensor-17@iot.example.com",
        "465b5ce8b199b49faa5f0a2ee238a6bc",
        [
            0xcd, 0xc2, 0x02, 0xd5, 0x12, 0x3e, 0x20, 0xf6, 0x2b, 0x6d, 0x67, 0x6a, 0xc7, 0x2c,
            0xb3, 0x18,
        ],
    )?;
    let mut meter = Subscriber::new(
        "001010000000042",
        "meter-9@grid.example.org",
        "fec86ba6eb707ed08905757b1bb44b8f",
        [
            0xdb, 0xc5, 0x9a, 0xdc, 0xb6, 0xf9, 0xa0, 0xef, 0x73, 0x54, 0x77, 0xb7, 0xfa, 0xdf,
            0x83, 0x74,
        ],
    )?;
    // The identity map (seed "Considerations on the user identity", case 2): each
    // application identity is provisioned for one EMSE only.
    let emse_a = EmseId::new(EMSE_A).map_err(|e| e.to_string())?;
    let emse_b = EmseId::new(EMSE_B).map_err(|e| e.to_string())?;
    let identities = emks.core().identities();
    let provisioned = match identities
        .provision(&emse_a, &sensor.app, &sensor.imsi)
        .await
    {
        Ok(_) => identities
            .provision(&emse_b, &meter.app, &meter.imsi)
            .await
            .map(|_| ()),
        Err(e) => Err(e),
    };
    checks.check(
        provisioned.is_ok(),
        "operator provisions sensor-17 for EMSE A and meter-9 for EMSE B (identity → IMSI)",
    );
    let hss_client = EmksClient::for_hss(&emks_url, &pki).map_err(|e| e.to_string())?;
    let hss = Hss::Https(&hss_client);

    step("Prerequisite c: EMSEs register with the EMKS");
    let mut a = start_emse(EMSE_A, &sensor.app, &emks_url, &pki, &data, checks).await?;
    let mut b = start_emse(EMSE_B, &meter.app, &emks_url, &pki, &data, checks).await?;
    let rogue_id = EmseId::new(EMSE_ROGUE).map_err(|e| e.to_string())?;
    let rogue = EmksClient::for_emse(&emks_url, &pki, &rogue_id).map_err(|e| e.to_string())?;
    let refused = rogue.register_as(emse_a.clone(), None).await;
    checks.check(
        matches!(&refused, Err(e) if e.problem_cause() == Some(ProblemCause::EmseNotAuthorized)),
        "an EMSE whose certificate names rogue-c but which claims EMSE A's EMSE_Id is refused at registration",
    );

    step("Prerequisite a: AKA for sensor-17 and meter-9; the HSS pushes e2m_int_key");
    let run1 = run_aka(&mut sensor, &hss, &profile, checks).await?;
    println!("HSS: meter-9's key goes over Diameter (the interface an operator's HSS speaks)");
    let meter_run = run_aka(&mut meter, &Hss::Diameter(&diameter_hss), &profile, checks).await?;
    let seen = a.take_notifications(1).await;
    checks.check(
        seen.iter()
            .any(|(e, id, _)| *e == EventType::KeyAvailable && *id == run1.key_id),
        "the EMKS notifies EMSE A: a key is available for sensor-17",
    );
    let seen = b.take_notifications(1).await;
    checks.check(
        seen.iter()
            .any(|(e, id, _)| *e == EventType::KeyAvailable && *id == meter_run.key_id),
        "the EMKS notifies EMSE B: a key is available for meter-9",
    );

    step("Steps 1–8: sensor-17 opens a DTLS-PSK session with EMSE A");
    let psk1 = e2m_key(&run1.ue_int_key, &emse_id(EMSE_A)?, &profile).map_err(|e| e.to_string())?;
    println!(
        "UE: prerequisite b: e2m_key = KDF(e2m_int_key, \"{EMSE_A}\"); psk_identity \"{}\"",
        psk_identity(&sensor.app, run1.key_id)
    );
    let answer = ue_session(a.addr(), &sensor.app, run1.key_id, &psk1, HANDSHAKE).await;
    if let Ok(text) = &answer {
        println!("UE: CoAP 2.05 \"{text}\"");
    }
    checks.check(
        answer.is_ok(),
        "handshake completes: EMSE A read the psk_identity, fetched e2m_key from the EMKS (GET → 200) and used it as the PSK",
    );
    checks.check(a.keys.fetches() == 1, "EMSE A asked the EMKS exactly once");
    // The EMKS derived the key for the session's EMSE_Id: check it against the HSS's key.
    let emks_side =
        e2m_key(&run1.hss_int_key, &emse_id(EMSE_A)?, &profile).map_err(|e| e.to_string())?;
    checks.check(
        emks_side == psk1,
        "the EMKS's e2m_key for EMSE A equals the UE's",
    );

    step("Key refresh 1: the application reconnects on the same PSK");
    let again = ue_session(a.addr(), &sensor.app, run1.key_id, &psk1, HANDSHAKE).await;
    checks.check(
        again.is_ok() && a.keys.fetches() == 1,
        "a new DTLS session (fresh session keys from the same PSK) needs no new fetch: EMSE A's cache answers",
    );

    step("OSCORE: sensor-17 sends a protected CoAP GET to EMSE A's OSCORE endpoint (no handshake)");
    let mut osc = oscore_ue(a.oscore.local_addr(), &sensor.app, run1.key_id, &psk1).await?;
    println!(
        "UE: OSCORE context from the same e2m_key: ID Context = application identity, Sender ID = key id {}",
        run1.key_id
    );
    let first = osc.request(&coap_get("temperature")?, HANDSHAKE).await;
    if let Ok(answer) = &first {
        println!(
            "UE: verified OSCORE response: CoAP {} \"{}\"",
            answer.code,
            String::from_utf8_lossy(&answer.payload)
        );
    }
    let (first_trips, octets) = wire_since(osc.wire_log(), 0);
    println!(
        "UE: first exchange: {first_trips} round trip, {octets} octets of UDP payload (a context EMSE A never derived before: no Echo challenge)"
    );
    checks.check(
        first.as_ref().is_ok_and(|m| {
            m.code == Code::CONTENT
                && String::from_utf8_lossy(&m.payload).contains(sensor.app.as_str())
        }),
        "over OSCORE, EMSE A found the UE by (application identity, key id), derived the context and answered under it",
    );
    checks.check(
        first_trips == 1,
        "the first OSCORE exchange on a never-derived context costs one round trip (EMSE A recorded the derivation durably before answering)",
    );
    checks.check(
        a.keys.fetches() == 1,
        "the OSCORE endpoint got e2m_key from the same key source and cache as DTLS: no new EMKS fetch",
    );
    let mark = osc.wire_log().len();
    let second = osc.request(&coap_get("temperature")?, HANDSHAKE).await;
    let (trips, octets) = wire_since(osc.wire_log(), mark);
    println!("UE: next exchange: {trips} round trip, {octets} octets (no ID Context any more)");
    checks.check(
        second.is_ok() && trips == 1,
        "the next OSCORE request costs one round trip",
    );

    step("Key refresh 2 and race case b: re-authentication while the UE is still on the old key");
    let run2 = run_aka(&mut sensor, &hss, &profile, checks).await?;
    let seen = a.take_notifications(1).await;
    checks.check(
        seen.iter().any(|(e, id, dropped)| {
            *e == EventType::KeyAvailable && *id == run2.key_id && *dropped >= 1
        }),
        "the EMKS notifies EMSE A of the new key; EMSE A drops its cached key for sensor-17",
    );
    println!(
        "UE: has not seen the new challenge yet, connects with key id {}",
        run1.key_id
    );
    let old = ue_session(a.addr(), &sensor.app, run1.key_id, &psk1, HANDSHAKE).await;
    checks.check(
        old.is_ok() && a.keys.fetches() == 2,
        "the UE on the previous key id still connects: the EMKS retains that key (race cases a/b)",
    );
    let psk2 = e2m_key(&run2.ue_int_key, &emse_id(EMSE_A)?, &profile).map_err(|e| e.to_string())?;
    let new = ue_session(a.addr(), &sensor.app, run2.key_id, &psk2, HANDSHAKE).await;
    checks.check(
        new.is_ok(),
        "after its AKA run the UE connects with the new key id too",
    );
    checks.check(psk1 != psk2, "the new e2m_key differs from the old one");

    step(&format!(
        "Eviction: a third AKA run; the EMKS keeps {KEYS_PER_UE} keys per UE"
    ));
    let run3 = run_aka(&mut sensor, &hss, &profile, checks).await?;
    let seen = a.take_notifications(2).await;
    checks.check(
        seen.iter()
            .any(|(e, id, _)| *e == EventType::KeyAvailable && *id == run3.key_id),
        "EMSE A is told of the newest key",
    );
    checks.check(
        seen.iter()
            .any(|(e, id, _)| *e == EventType::KeyRetired && *id == run1.key_id),
        &format!(
            "EMSE A is told that key id {} is retired (evicted, zeroized)",
            run1.key_id
        ),
    );
    println!(
        "UE: (whose later AKA runs failed) still tries key id {}",
        run1.key_id
    );
    let evicted = ue_session(a.addr(), &sensor.app, run1.key_id, &psk1, FAILING_HANDSHAKE).await;
    let event = a
        .wait_event(|e| matches!(e, ServerEvent::KeyUnavailable { identity, .. } if identity.e2m().is_some_and(|i| i.key_id == run1.key_id)))
        .await;
    checks.check(
        evicted.is_err()
            && matches!(
                event,
                Some(ServerEvent::KeyUnavailable {
                    error: ResolveError::KeyNotHeld,
                    ..
                })
            ),
        "the handshake fails: the EMKS no longer holds that key id and answers \"re-authenticate\"",
    );

    println!(
        "UE: tries the evicted key id {} over OSCORE as well",
        run1.key_id
    );
    let mut stale = oscore_ue(a.oscore.local_addr(), &sensor.app, run1.key_id, &psk1).await?;
    let told = stale.request(&coap_get("temperature")?, HANDSHAKE).await;
    if matches!(told, Err(OscoreClientError::Reauthenticate)) {
        println!(
            "UE: EMSE A answered 4.01 \"Security context not found\" to a request with the ID Context: re-authenticate"
        );
    }
    checks.check(
        matches!(told, Err(OscoreClientError::Reauthenticate)),
        "over OSCORE, the EMSE answers a request under the evicted key id so that the UE knows to re-authenticate",
    );

    step("Restart: the EMKS is stopped and started again on the same data directory");
    let addr = emks.local_addr();
    diameter_hss.shutdown(Duration::from_secs(2)).await;
    diameter.shutdown(Duration::from_secs(2)).await;
    println!("HSS: leaves the EMKS's Diameter interface (DPR/DPA)");
    emks.shutdown().await;
    println!(
        "EMKS: stopped; its keys, identity map, sessions and subscriptions are in {}",
        data.store_dir().display()
    );
    let restarted = start_durable_emks(&data, profile, retention, &pki, addr, wake).await;
    checks.check(
        restarted.is_ok(),
        "the EMKS starts again on the same data directory and address (its KEK file opens the stored check record)",
    );
    let emks = restarted?;
    println!("EMKS: listening again on {}", emks.base_url());
    let fetches_before = a.keys.fetches();
    println!(
        "UE: no new AKA run; sensor-17 connects with key id {} (pushed before the restart, never fetched by EMSE A)",
        run3.key_id
    );
    let psk3 = e2m_key(&run3.ue_int_key, &emse_id(EMSE_A)?, &profile).map_err(|e| e.to_string())?;
    let after_restart = ue_session(a.addr(), &sensor.app, run3.key_id, &psk3, HANDSHAKE).await;
    checks.check(
        after_restart.is_ok() && a.keys.fetches() == fetches_before + 1,
        "sensor-17 connects on its key without re-authenticating: EMSE A fetched it from the restarted EMKS on the session it registered before the restart (it did not register again)",
    );
    // Notifications to a session registered before the restart need the durable
    // notification outbox (the transport learns a session's EMSE from the store there,
    // not from memory); the check that EMSE A is still notified after the restart is
    // added here with it.

    step("Key separation between EMSEs");
    let meter_psk =
        e2m_key(&meter_run.ue_int_key, &emse_id(EMSE_B)?, &profile).map_err(|e| e.to_string())?;
    let meter_ok = ue_session(
        b.addr(),
        &meter.app,
        meter_run.key_id,
        &meter_psk,
        HANDSHAKE,
    )
    .await;
    checks.check(
        meter_ok.is_ok(),
        "meter-9 connects to EMSE B with its own key",
    );
    let psk3_a =
        e2m_key(&run3.ue_int_key, &emse_id(EMSE_A)?, &profile).map_err(|e| e.to_string())?;
    let psk3_b =
        e2m_key(&run3.ue_int_key, &emse_id(EMSE_B)?, &profile).map_err(|e| e.to_string())?;
    checks.check(
        psk3_a != psk3_b,
        "from one e2m_int_key, EMSE B's e2m_key differs from EMSE A's (EMSE_Id is a KDF input)",
    );
    let stolen = b
        .keys
        .resolve(&psk_identity(&sensor.app, run3.key_id))
        .await;
    checks.check(
        matches!(stolen, Err(ResolveError::UnknownIdentity)),
        "EMSE B asking the EMKS for sensor-17 (provisioned for EMSE A only) is refused, as for an unknown UE",
    );
    let direct = fetch_with(
        b.keys.client(),
        &a.keys.session_id().await,
        &sensor.app,
        run3.key_id,
    )
    .await;
    checks.check(
        matches!(&direct, Err(e) if e.problem_cause() == Some(ProblemCause::UnknownSession)),
        "EMSE B presenting EMSE A's session id over its own certificate is refused as an unknown session (404, as a made-up id): a session is bound to the certificate that registered it",
    );
    let cross = ue_session(
        b.addr(),
        &sensor.app,
        run3.key_id,
        &psk3_b,
        FAILING_HANDSHAKE,
    )
    .await;
    checks.check(
        cross.is_err(),
        "sensor-17 cannot open a session with EMSE B",
    );

    step("Deregistration: EMSEs leave (DELETE → 204)");
    for emse in [&a, &b] {
        let left = emse
            .keys
            .client()
            .deregister(emse.keys.session_id().await)
            .await;
        checks.check(left.is_ok(), &format!("{} deregisters", emse.id));
    }
    let after = fetch_with(
        a.keys.client(),
        &a.keys.session_id().await,
        &sensor.app,
        run3.key_id,
    )
    .await;
    checks.check(
        matches!(&after, Err(e) if e.problem_cause() == Some(ProblemCause::UnknownSession)),
        "a fetch on the deregistered session is refused",
    );

    for emse in [a, b] {
        emse.dtls.shutdown();
        emse.oscore.shutdown();
        emse.notify_server.shutdown().await;
    }
    emks.shutdown().await;
    let _ = pki.remove();
    Ok(())
}

fn main() -> ExitCode {
    let (_, _): (Args, _) = cli::parse_or_exit("e2m_demo");
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .try_init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("e2m_demo: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut checks = Checks::default();
    let mut outcome = runtime.block_on(run(&mut checks));
    if outcome.is_ok() {
        // The 5G part: AKMA (examples/support/akma_demo.rs).
        outcome = runtime.block_on(akma_demo::run(&mut checks));
    }
    println!();
    if let Err(e) = &outcome {
        println!("e2m_demo stopped: {e}");
    }
    println!(
        "{} expected outcomes happened, {} did not",
        checks.passed,
        checks.failed.len()
    );
    for f in &checks.failed {
        println!("  not as expected: {f}");
    }
    if outcome.is_ok() && checks.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The demo's EMSE_Id constants as the typed identifier `e2m_key` takes.
fn emse_id(text: &str) -> Result<EmseId, String> {
    EmseId::new(text).map_err(|e| format!("EMSE_Id {text:?}: {e}"))
}
