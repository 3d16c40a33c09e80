//! The PostgreSQL AKMA context store, against a real PostgreSQL started for each test: the
//! conformance suite of e2m-keystore, registrations of one UE from several threads and two
//! instances at once, K_AKMA sealed at rest (a swapped or moved record does not open, no key
//! in a dump), and two AAnF instances (the e2m-aanf core over two backends) on one database
//! serving each other's registrations, removals and notifications.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test fails loudly"
)]

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use e2m_aanf::e2m_akma::{AkmaAfKeyRequest, AkmaKeyInfo, CtxRemove, NotifUri};
use e2m_aanf::{Aanf, AanfConfig, AfPolicy, Caller, Peer};
use e2m_keystore::akma::{AkmaContexts, AkmaOutbox, AkmaPolicy};
use e2m_keystore::conformance::{self, WaitOn};
use e2m_keystore::e2m_kdf::Kakma;
use e2m_keystore::e2m_keyid::akma::{AKid, AfId, Fqdn, UeId};
use e2m_keystore::{Claim, InstanceId, StoreError, Timestamp};
use e2m_keystore_pg::{BackendError, PgAkmaContexts, PgBackend, PgConfig};
use tokio::runtime::Handle;

fn backend_on(conninfo: &str, schema: &str) -> PgBackend {
    let config = PgConfig::from_conninfo(conninfo)
        .and_then(|c| c.with_schema(schema))
        .and_then(|c| c.with_pool_size(4))
        .expect("config");
    tokio::task::block_in_place(|| {
        Handle::current().block_on(PgBackend::connect(&config, support::keyring(1, 0x42)))
    })
    .expect("connect")
}

/// A backend on a schema of its own (a fresh, empty store).
fn fresh(conninfo: &str) -> PgBackend {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    backend_on(
        conninfo,
        &format!("akma_{}", NEXT.fetch_add(1, Ordering::Relaxed)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_akma_store_passes_the_akma_conformance_suite() {
    let Some(cluster) = support::Cluster::start() else {
        return;
    };
    let conninfo = cluster.conninfo();
    let report = conformance::akma(&|policy| fresh(&conninfo).akma(policy)).await;
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.results.len(), conformance::AKMA_CHECKS.len());
}

/// Waits on the test's tokio runtime from a plain thread.
struct OnRuntime(Handle);

impl WaitOn for OnRuntime {
    fn wait<F: std::future::Future>(&self, f: F) -> F::Output {
        self.0.block_on(f)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_of_one_ue_from_threads_and_instances_leave_one_context() {
    let Some(cluster) = support::Cluster::start() else {
        return;
    };
    let conninfo = cluster.conninfo();
    let store = fresh(&conninfo).akma(AkmaPolicy::DEFAULT);
    let wait = OnRuntime(Handle::current());
    let report = tokio::task::spawn_blocking(move || {
        conformance::concurrent_akma_registrations(&store, &wait, 6, 20)
    })
    .await
    .expect("the registering threads");
    assert!(report.is_ok(), "{report}");

    // Two instances (two pools) on one schema, registering one UE at once, many rounds.
    let a = backend_on(&conninfo, "akma_two").akma(AkmaPolicy::DEFAULT);
    let b = backend_on(&conninfo, "akma_two").akma(AkmaPolicy::DEFAULT);
    let supi = UeId::parse("imsi-001010000000042").unwrap();
    for round in 0..30u8 {
        let (ka, kb) = (a_kid(2 * round), a_kid(2 * round + 1));
        let (key_a, key_b) = (
            Kakma::from_array(key(2 * round)),
            Kakma::from_array(key(2 * round + 1)),
        );
        let now = at(u64::from(round));
        let (ra, rb) = tokio::join!(
            a.register(&supi, &ka, &key_a, now),
            b.register(&supi, &kb, &key_b, now),
        );
        ra.unwrap();
        rb.unwrap();
        let held = a.context_of(&supi, now).await.unwrap().unwrap();
        let found_a = b.retrieve(&ka, None, now).await.unwrap();
        let found_b = a.retrieve(&kb, None, now).await.unwrap();
        assert!(
            found_a.is_some() != found_b.is_some(),
            "round {round}: both or neither A-KID finds a context"
        );
        let winner = found_a.or(found_b).unwrap();
        assert_eq!(winner.a_kid, held.a_kid, "round {round}");
        assert_eq!(a.stored().await.unwrap(), 1);
    }
}

fn at(s: u64) -> Timestamp {
    Timestamp::from_unix_secs(1_800_000_000 + s)
}

fn a_kid(n: u8) -> AKid {
    AKid::parse(&format!(
        "rid0.atid{n:064x}@5gc.mnc001.mcc001.3gppnetwork.org"
    ))
    .unwrap()
}

fn key(n: u8) -> [u8; 32] {
    core::array::from_fn(|i| n.wrapping_mul(37) ^ (i as u8).wrapping_mul(101) ^ 0xc3)
}

fn is_open_error<T: core::fmt::Debug>(result: Result<T, StoreError>) -> bool {
    match result {
        Err(StoreError::Backend(e)) => {
            matches!(
                e.downcast_ref::<BackendError>(),
                Some(BackendError::Open(_))
            )
        }
        other => panic!("expected a sealed record that does not open, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k_akma_is_sealed_and_a_swapped_or_moved_record_does_not_open() {
    let Some(cluster) = support::Cluster::start() else {
        return;
    };
    let conninfo = cluster.conninfo();
    let store: PgAkmaContexts = backend_on(&conninfo, "akma_sealed").akma(AkmaPolicy::DEFAULT);
    let (a, b) = ("imsi-001010000000001", "msisdn-33612345678");
    let (ue_a, ue_b) = (UeId::parse(a).unwrap(), UeId::parse(b).unwrap());
    store
        .register(&ue_a, &a_kid(1), &Kakma::from_array(key(1)), at(0))
        .await
        .unwrap();
    store
        .register(&ue_b, &a_kid(2), &Kakma::from_array(key(2)), at(0))
        .await
        .unwrap();
    // No K_AKMA in a dump, in any spelling PostgreSQL writes bytea in.
    let dump = cluster.pg_dump();
    for n in [1, 2] {
        let hex = hex::encode(key(n));
        assert!(
            !String::from_utf8_lossy(&dump).contains(&hex),
            "K_AKMA {n} in the dump"
        );
        assert!(!dump.windows(32).any(|w| w == key(n)));
    }
    let swap = "UPDATE akma_sealed.akma_contexts t SET sealed = o.sealed \
                FROM akma_sealed.akma_contexts o WHERE t.ue <> o.ue";
    cluster.psql(swap);
    assert!(is_open_error(store.retrieve(&a_kid(1), None, at(1)).await));
    assert!(is_open_error(store.retrieve(&a_kid(2), None, at(1)).await));
    assert!(is_open_error(store.context_of(&ue_a, at(1)).await));
    // Swapped back, both open: the edit, not the store, broke them.
    cluster.psql(swap);
    let c = store
        .retrieve(&a_kid(1), None, at(1))
        .await
        .unwrap()
        .unwrap();
    assert!(c.k_akma == Kakma::from_array(key(1)));
    // A's row moved to another UE (with its A-KID): refused.
    cluster.psql(
        "UPDATE akma_sealed.akma_contexts SET ue = 'imsi-001010000000009' \
         WHERE ue = 'imsi-001010000000001'",
    );
    assert!(is_open_error(store.retrieve(&a_kid(1), None, at(1)).await));
    // An edited expiry: refused too.
    cluster.psql("UPDATE akma_sealed.akma_contexts SET expires = expires + 1000 WHERE ue = 'msisdn-33612345678'");
    assert!(is_open_error(store.retrieve(&a_kid(2), None, at(1)).await));
}

fn caller(name: &str) -> Caller {
    Caller::mutual_tls(Peer::new([name.parse().unwrap()]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_aanf_instances_on_one_database_serve_each_others_contexts() {
    let Some(cluster) = support::Cluster::start() else {
        return;
    };
    let conninfo = cluster.conninfo();
    let config = || {
        AanfConfig::new(Duration::from_secs(600))
            .unwrap()
            .allow_ausf("ausf.operator.example".parse().unwrap())
            .allow_af(
                Fqdn::parse("af.example.com").unwrap(),
                AfPolicy::INSIDE.with_supi(),
            )
    };
    let one = Aanf::new(
        config(),
        backend_on(&conninfo, "akma_shared").akma(AkmaPolicy::DEFAULT),
    );
    let two = Aanf::new(
        config(),
        backend_on(&conninfo, "akma_shared").akma(AkmaPolicy::DEFAULT),
    );
    let (ausf, af) = (caller("ausf.operator.example"), caller("af.example.com"));
    let supi = UeId::parse("imsi-208930000000001").unwrap();
    let UeId::Supi(s) = supi else { unreachable!() };
    let register = |n: u8| AkmaKeyInfo {
        ue: supi,
        a_kid: a_kid(n),
        k_akma: Kakma::from_array(key(n)),
        supp_feat: None,
    };
    let request = |n: u8, notify: bool| AkmaAfKeyRequest {
        af_id: AfId::parse("af.example.com;ua=010001c0a8").unwrap(),
        a_kid: a_kid(n),
        notif_uri: notify.then(|| NotifUri::parse("https://af.example.com/akma").unwrap()),
        anon_ind: false,
        supp_feat: None,
    };

    // Registered through one, served by two.
    one.register_anchor_key(&ausf, &register(1), at(0))
        .await
        .result
        .unwrap();
    let got = two
        .retrieve_application_key(&af, &request(1, true), at(1))
        .await;
    let data = got
        .result
        .unwrap()
        .expect("instance two serves instance one's context");
    let expected =
        e2m_keystore::e2m_keyid::akma::kaf(&Kakma::from_array(key(1)), &request(1, false).af_id)
            .unwrap();
    assert!(data.kaf == expected);
    assert_eq!(data.supi, Some(s));

    // Replaced through two: one answers 204 for the old A-KID, the new one's K_AF for the new.
    two.register_anchor_key(&ausf, &register(2), at(2))
        .await
        .result
        .unwrap();
    assert!(
        one.retrieve_application_key(&af, &request(1, false), at(3))
            .await
            .result
            .unwrap()
            .is_none()
    );
    assert!(
        one.retrieve_application_key(&af, &request(2, false), at(3))
            .await
            .result
            .unwrap()
            .is_some()
    );

    // Removed through one: the notification the AF asked for through two is recorded in the
    // removal's transaction and claimable by either instance.
    let removed = one
        .remove_context(&ausf, &CtxRemove { supi: s }, at(4))
        .await;
    removed.result.unwrap();
    assert_eq!(removed.effects.audit.notifications, 1);
    assert!(
        two.retrieve_application_key(&af, &request(2, false), at(5))
            .await
            .result
            .unwrap()
            .is_none()
    );
    let claim = Claim {
        instance: InstanceId::from_u64(2),
        now: at(5),
        lease: Duration::from_secs(30),
        max: 10,
        per_emse: 10,
        skip: &[],
    };
    let pending = two.contexts().claim_due(&claim).await.unwrap();
    assert_eq!(pending.len(), 1);
    let notification = two.outbound(&pending[0]).unwrap();
    assert_eq!(
        notification.body.a_kid,
        a_kid(1),
        "the A-KID the AF asked with"
    );
    // Claimed by two: not by one within the lease; settled by two, gone for both.
    let claim_one = Claim {
        instance: InstanceId::from_u64(1),
        ..claim.clone()
    };
    assert!(
        one.contexts()
            .claim_due(&claim_one)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(two.contexts().delivered(pending[0].id).await.unwrap());
    assert_eq!(one.contexts().pending().await.unwrap(), 0);
}
