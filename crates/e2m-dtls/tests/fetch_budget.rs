//! Junk identities from a host that does return cookies (issue 16 item 3): before, 200
//! handshakes naming 200 made-up identities cost the EMKS 200 key fetches. Now each
//! source address has a fetch budget, and "no key" answers are remembered briefly.
//!
//! Everything real on loopback: an EMKS over HTTPS with mutual TLS (in process, in-memory
//! stores, a PKI generated for the run), the EMSE's `EmksKeySource` registered with it, the
//! DTLS server, and UEs running whole DTLS handshakes. The junk comes from 127.0.0.2 (all of
//! 127/8 is local on Linux), the legitimate UEs from 127.0.0.1 and from 127.0.0.2 too.

#![cfg(feature = "emks")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking, with a message"
)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{identity, start_with};
use e2m_dtls::client::{DtlsClient, UeDtlsConfig};
use e2m_dtls::e2m_oscore::e2m::FetchBudgetConfig;
use e2m_dtls::emks_source::{EmksKeySource, NegativeCache};
use e2m_dtls::server::{ServerConfig, ServerEvent};
use e2m_dtls::{AlertDescription, DtlsError, DtlsLimits};
use e2m_https::client::{Backoff, EmksClient, EmseSession};
use e2m_https::e2m_emks::{Emks, EmksConfig};
use e2m_https::e2m_keystore::IdentityMap;
use e2m_https::e2m_msg::{IntermediateKeyPush, KeyIdSource, Timestamp};
use e2m_https::emks::{EmksServer, EmksServerOptions, start_emks};
use e2m_https::pki::{GeneratedPki, PkiDir, PkiSpec};
use e2m_kdf::{E2mIntKey, E2mKey, E2mProfile};
use e2m_keyid::{AppIdentity, EmseId, Imsi, KeyId, PskIdentity, e2m_key};

const EMSE: &str = "emse-a";
const JUNK: usize = 200;
/// The budget of the test's server: 4 fetches at once, 6 per minute that find no key.
const BUDGET: FetchBudgetConfig = FetchBudgetConfig {
    burst: 4,
    per_minute: 6,
    max_sources: 1024,
};

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

type EmksServerOf = EmksServer<
    e2m_https::e2m_keystore::MemoryIntKeyStore,
    e2m_https::e2m_keystore::MemoryIdentityMap,
    e2m_https::e2m_keystore::MemorySessionStore,
    e2m_https::e2m_keystore::MemorySubscriptionStore,
>;

/// An in-process EMKS, its PKI directory, and an HSS client of it.
struct Emks1 {
    server: Option<EmksServerOf>,
    pki: PkiDir,
    hss: EmksClient,
}

impl Emks1 {
    async fn start() -> Emks1 {
        let spec = PkiSpec::new(vec![EmseId::new(EMSE).unwrap()]).unwrap();
        let pki = GeneratedPki::generate(&spec)
            .unwrap()
            .write_to_temp_dir("dtls-budget")
            .unwrap();
        let core = Arc::new(Emks::in_memory(EmksConfig::default()));
        let server = start_emks(
            core,
            &pki,
            EmksServerOptions {
                notifications: false,
                ..EmksServerOptions::default()
            },
        )
        .await
        .unwrap();
        let ca = pki.ca_certificates().unwrap();
        let hss = EmksClient::new(&server.base_url(), &pki.hss().unwrap(), &ca).unwrap();
        Emks1 {
            server: Some(server),
            pki,
            hss,
        }
    }

    /// Provisions `app` for the EMSE as IMSI `imsi`.
    async fn provision(&self, app: &str, imsi: &str) {
        self.server()
            .core()
            .identities()
            .provision(
                &EmseId::new(EMSE).unwrap(),
                &AppIdentity::new(app).unwrap(),
                &Imsi::new(imsi).unwrap(),
            )
            .await
            .unwrap();
    }

    /// The HSS pushes `int_key` with `key_id` for `imsi`.
    async fn push(&self, imsi: &str, key_id: u32, int_key: [u8; 32]) {
        self.hss
            .push_intermediate_key(&IntermediateKeyPush {
                imsi: Imsi::new(imsi).unwrap(),
                key_id: KeyIdSource::RandLsb32(KeyId::from_u32(key_id)),
                int_key: E2mIntKey::from_array(int_key),
                created: Timestamp::from_unix_secs(unix_now()),
            })
            .await
            .unwrap();
    }

    /// Stops the EMKS (its PKI directory goes when `self` drops).
    async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
    }

    fn server(&self) -> &EmksServerOf {
        self.server.as_ref().expect("running")
    }

    /// The EMSE's key source, registered with this EMKS.
    async fn key_source(&self) -> Arc<EmksKeySource> {
        let client = EmksClient::for_emse(
            &self.server().base_url(),
            &self.pki,
            &EmseId::new(EMSE).unwrap(),
        )
        .unwrap();
        let session = EmseSession::establish(client, None, Backoff::DEFAULT)
            .await
            .unwrap();
        Arc::new(EmksKeySource::new(session, 64))
    }
}

impl Drop for Emks1 {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.pki.path());
    }
}

/// The UE's PSK for an intermediate key: e2m_key for the EMSE (seed step 5).
fn ue_psk(int_key: [u8; 32]) -> E2mKey {
    e2m_key(
        &E2mIntKey::from_array(int_key),
        &EmseId::new(EMSE).unwrap(),
        &E2mProfile::PROVISIONAL,
    )
    .unwrap()
}

fn ue_limits() -> DtlsLimits {
    DtlsLimits {
        handshake_timeout: Duration::from_secs(20),
        ..DtlsLimits::default()
    }
}

async fn handshake(
    from: &str,
    server: SocketAddr,
    id: &PskIdentity,
    psk: &E2mKey,
) -> Result<DtlsClient, DtlsError> {
    let config = UeDtlsConfig::new(id, psk, ue_limits()).unwrap();
    DtlsClient::connect_from(format!("{from}:0").parse().unwrap(), server, &config).await
}

fn server_config() -> ServerConfig {
    ServerConfig {
        limits: ue_limits(),
        // Generous: a fetch from the debug-build EMKS on a loaded machine can take a second.
        resolve_timeout: Duration::from_secs(3),
        fetch_budget: BUDGET,
        ..ServerConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_identities_from_one_source_cost_at_most_its_budget() {
    let emks = Emks1::start().await;
    let (near_key, far_key) = ([0x11; 32], [0x22; 32]);
    emks.provision("near@iot.example.com", "001010000000001")
        .await;
    emks.provision("far@iot.example.com", "001010000000002")
        .await;
    emks.push("001010000000001", 1, near_key).await;
    emks.push("001010000000002", 2, far_key).await;
    let keys = emks.key_source().await;
    let (server, mut events) = start_with(Arc::clone(&keys), server_config()).await;
    let addr = server.local_addr();

    // A UE behind the junk source's address connects first: its key is now cached.
    let near = identity("near@iot.example.com", 1);
    handshake("127.0.0.2", addr, &near, &ue_psk(near_key))
        .await
        .expect("the UE on 127.0.0.2 connects before the junk")
        .close()
        .await
        .unwrap();
    assert_eq!(keys.fetches(), 1);

    // 200 whole handshakes from 127.0.0.2, each naming a made-up identity (100 at a time).
    let started = Instant::now();
    let mut outcomes = Vec::with_capacity(JUNK);
    for batch in 0..JUNK / 100 {
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..100 {
            let id = identity(&format!("junk-{batch}-{n}@iot.example.com"), 7);
            tasks.spawn(async move {
                handshake("127.0.0.2", addr, &id, &E2mKey::from_array([0x99; 32]))
                    .await
                    .map(|_| ())
            });
        }
        while let Some(done) = tasks.join_next().await {
            outcomes.push(done.unwrap());
        }
    }
    let junk_took = started.elapsed();
    let junk_fetches = keys.fetches() - 1;
    // The budget: the burst, and what refilled while the junk ran (6 per minute).
    let allowed = u64::from(BUDGET.burst)
        + (junk_took.as_secs_f64() * f64::from(BUDGET.per_minute) / 60.0).ceil() as u64;
    let internal_errors = outcomes
        .iter()
        .filter(|o| matches!(o, Err(DtlsError::Alert(AlertDescription::INTERNAL_ERROR))))
        .count();
    eprintln!(
        "{JUNK} junk handshakes from 127.0.0.2 in {junk_took:?}: {junk_fetches} EMKS fetches \
         (allowed {allowed}), {internal_errors} ended with internal_error (budget spent)"
    );
    assert!(
        outcomes.iter().all(Result::is_err),
        "a junk identity connected"
    );
    assert!(
        junk_fetches <= allowed,
        "{junk_fetches} fetches for {JUNK} junk identities from one source, budget {allowed}"
    );
    assert!(junk_fetches >= 1, "the budget lets some fetches through");
    assert!(
        internal_errors >= JUNK - allowed as usize,
        "the refused handshakes end with internal_error ({internal_errors})"
    );
    let mut refused = 0;
    while let Ok(event) = events.try_recv() {
        if matches!(event, ServerEvent::FetchRefused { peer, .. } if peer.ip().to_string() == "127.0.0.2")
        {
            refused += 1;
        }
    }
    assert!(
        refused >= JUNK - allowed as usize,
        "FetchRefused events: {refused}"
    );

    // A legitimate UE from another address still connects (and fetches: its key is new).
    let far = identity("far@iot.example.com", 2);
    handshake("127.0.0.1", addr, &far, &ue_psk(far_key))
        .await
        .expect("a UE on another address connects after the junk")
        .close()
        .await
        .unwrap();
    // And the UE behind the junk source's address too: its key is at hand, no token needed.
    handshake("127.0.0.2", addr, &near, &ue_psk(near_key))
        .await
        .expect("a UE with a cached key connects from the spent address")
        .close()
        .await
        .unwrap();
    assert_eq!(keys.fetches(), 1 + junk_fetches + 1);
    drop(server);
    emks.stop().await;
}

/// The EMKS has no key yet when the UE first tries (it raced its own key's push): the "no
/// key" answer is remembered for `NegativeCache::TTL` only, and then the pushed key is
/// found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_key_answers_expire_and_a_key_pushed_later_is_found() {
    let emks = Emks1::start().await;
    let int_key = [0x33; 32];
    emks.provision("late@iot.example.com", "001010000000003")
        .await;
    let keys = emks.key_source().await;
    let (server, _events) = start_with(Arc::clone(&keys), server_config()).await;
    let addr = server.local_addr();
    let late = identity("late@iot.example.com", 3);
    let psk = ue_psk(int_key);

    assert!(handshake("127.0.0.1", addr, &late, &psk).await.is_err());
    // The answer was remembered before this instant (the fetch precedes the Finished check).
    let first = Instant::now();
    assert_eq!(keys.fetches(), 1, "the EMKS was asked once");
    assert_eq!(keys.negative_cache().len(), 1, "and its answer remembered");

    // The key is pushed now, just after the EMSE asked.
    emks.push("001010000000003", 3, int_key).await;
    let second = handshake("127.0.0.1", addr, &late, &psk).await;
    if first.elapsed() < NegativeCache::TTL {
        // Still believed: no second fetch, the handshake fails as before.
        assert!(second.is_err());
        assert_eq!(keys.fetches(), 1, "answered from the negative cache");
    } else {
        eprintln!(
            "(the second handshake ended {:?} after the first, past the TTL on this loaded \
             machine: the cache's answer could not be observed)",
            first.elapsed()
        );
    }

    // Past the TTL the EMKS is asked again, and the key pushed later is found.
    let ttl_over = first + NegativeCache::TTL;
    tokio::time::sleep_until(tokio::time::Instant::from_std(ttl_over)).await;
    handshake("127.0.0.1", addr, &late, &psk)
        .await
        .expect("the key pushed later is found once the answer expired")
        .close()
        .await
        .unwrap();
    assert!(keys.fetches() >= 2);
    drop(server);
    emks.stop().await;
}
