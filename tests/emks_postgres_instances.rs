//! Several `emks` processes on one PostgreSQL database (issue 8, "Multi-instance" and
//! "Crash … with two instances on PostgreSQL"), run as an operator runs them: a throwaway
//! cluster on loopback from `.ci/postgres start`, two `emks --store postgres` processes on
//! it, and the HSS and EMSE clients of e2m-https talking to one or the other.
//!
//! - An EMSE registers through instance A and fetches through instance B with that session;
//!   it deregisters through B and the session is gone through A.
//! - A push acknowledged (204) by one instance is fetchable through the other at once
//!   (each instance's read-through cache sends a miss to the database).
//! - The caches' staleness bound (`--cache-ttl`, here [`CACHE_TTL`]): a key retired through
//!   A (evicted by N newer pushes) is not served by B once the bound has passed since the
//!   push that retired it, nor by A at all; a session ended through B is not accepted by A
//!   past the bound.
//! - `kill -9` of the instance that acknowledged pushes: the other serves every one of them
//!   with exactly the key pushed, and a push in flight at the kill is absent or exact, never
//!   torn; rounds alternate which instance is killed, at random points.
//! - A push through A notifies a subscriber registered through B once (issue 8,
//!   Multi-instance), at the EMSE notification endpoint of e2m-https run by this test:
//!   every delivery is counted there, including repeats it drops by notification id, and
//!   the database's outbox is empty before a quiet period that would show a repeat.
//! - A push acknowledged by A, `kill -9`ed at once, is notified by B from the outbox:
//!   exactly once when the endpoint accepted nothing while A lived; at least once, every
//!   copy with the same notification id, when a delivery may have been in flight at the kill.
//! - A bad connection string, an unreachable database and a wrong KEK stop the start with
//!   one line on stderr and exit status 2; so do flags that do not fit the store (no
//!   connection string, `--data-dir` with PostgreSQL, `--database-url` with another store).
//!
//! Without PostgreSQL's server binaries the tests that need a server print `SKIPPED` and pass (as the
//! e2m-keystore-pg tests do); `bash .ci/postgres install` installs them and `.ci/run` does
//! so before the tests. Loopback only; every wait is bounded. The random kill points come
//! from a seed printed at the start (`E2M_CRASH_SEED` replays one).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests"
)]

mod support;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2m_https::client::EmksClient;
use e2m_https::delivery::DeliveryOptions;
use e2m_https::notify::{NotificationServer, start_notification_endpoint};
use e2m_https::pki::PkiDir;
use e2m_https::server::Limits;
use e2m_kdf::{E2mIntKey, E2mProfile};
use e2m_keyid::{AppIdentity, E2mKeyDeriver, EmseId, Imsi, KeyId};
use e2m_keystore::conformance::test_key_bytes;
use e2m_keystore::{NotificationOutbox, RetentionPolicy};
use e2m_keystore_pg::{PgBackend, PgConfig};
use e2m_msg::rest::NOTIFICATIONS_PATH;
use e2m_msg::{
    CallbackUri, EventSet, EventType, IntermediateKeyPush, KeyIdSource, KeyRequest, Notification,
    NotificationId, ProblemCause, SessionId, Subscription, SubscriptionId, Timestamp, UeRef,
};
use e2m_seal::Keyring;
use support::{example_binary, kill, run_bounded, temp_dir};

/// UEs in the identity map (each push below uses a UE of its own).
const UES: u64 = 5_000;
/// UEs of the "fetchable through the other instance at once" checks.
const AT_ONCE: u64 = 40;
/// Kill rounds (they alternate the instance killed).
const KILL_ROUNDS: usize = 4;
/// Concurrent HSS connections pushing during a kill round.
const PUSHERS: usize = 8;
/// Each instance's `--cache-ttl`: the staleness bound the tests check.
const CACHE_TTL: Duration = Duration::from_millis(1000);
/// Intermediate keys kept per UE (the example's default, `--keys-per-ue 4`).
const KEYS_PER_UE: u32 = 4;

fn emse_id() -> EmseId {
    EmseId::new("emse-a").unwrap()
}

fn app(ue: u64) -> AppIdentity {
    AppIdentity::new(&format!("ue-{ue}@multi.example")).unwrap()
}

fn imsi(ue: u64) -> Imsi {
    Imsi::new(&format!("00101{ue:010}")).unwrap()
}

fn key_id(ue: u64) -> KeyId {
    KeyId::from_u32(ue as u32 + 1)
}

/// The key pushed for `ue`: distinct per UE, so a served key from another row shows.
fn int_key(ue: u64) -> E2mIntKey {
    E2mIntKey::from_array(test_key_bytes(ue, key_id(ue).as_u32()))
}

fn now() -> Timestamp {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    Timestamp::from_unix_secs(secs)
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

/// A throwaway cluster started by `.ci/postgres start` (the script the README's
/// two-instance command uses), stopped and removed by `.ci/postgres stop` when dropped.
struct Postgres {
    dir: PathBuf,
    conninfo: String,
}

impl Postgres {
    /// Starts one, or returns `None` after printing `SKIPPED` if the binaries are missing.
    fn start() -> Option<Postgres> {
        if !postgres_installed() {
            eprintln!(
                "SKIPPED: PostgreSQL server binaries not found (no /usr/lib/postgresql/*/bin/initdb, \
                 no $E2M_PG_BIN); run `bash .ci/postgres install`"
            );
            return None;
        }
        let dir = temp_dir("pg-instances");
        let out = run_bounded(
            Command::new("bash").arg(script()).arg("start").arg(&dir),
            Duration::from_secs(120),
        );
        assert!(
            out.status.success(),
            ".ci/postgres start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let conninfo = String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .expect("connection string line")
            .to_owned();
        Some(Postgres { dir, conninfo })
    }
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

/// Certificates, a KEK file and the identity map's CSV in `dir`.
fn prepare(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let emks = example_binary("emks");
    let out = Command::new(&emks)
        .args(["gen-pki", "--dir"])
        .arg(dir.join("pki"))
        .args(["--emse", "emse-a"])
        .output()
        .unwrap();
    assert!(out.status.success(), "gen-pki: {out:?}");
    for name in ["kek-1", "kek-other"] {
        let out = Command::new(&emks)
            .args(["gen-kek", "--out"])
            .arg(dir.join(name))
            .output()
            .unwrap();
        assert!(out.status.success(), "gen-kek: {out:?}");
    }
    let mut csv = String::from("emse_id,app_identity,imsi\n");
    for ue in 0..UES {
        csv.push_str(&format!("emse-a,{},{}\n", app(ue), imsi(ue)));
    }
    std::fs::write(dir.join("identities.csv"), csv).unwrap();
}

/// One `emks --store postgres` process (a child of this test, killed by its own handle
/// when dropped).
struct Instance {
    name: &'static str,
    child: Child,
    base: String,
}

impl Drop for Instance {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

impl Instance {
    fn start(name: &'static str, dir: &Path, conninfo: &str) -> Instance {
        Instance::start_allowing(name, dir, conninfo, &[])
    }

    /// An instance that accepts callbacks to `callbacks` (`--callback-allow`): the test's
    /// notification endpoints listen on ephemeral ports, and certificate-named hosts take
    /// callbacks on port 443 only.
    fn start_allowing(
        name: &'static str,
        dir: &Path,
        conninfo: &str,
        callbacks: &[std::net::SocketAddr],
    ) -> Instance {
        let mut command = Command::new(example_binary("emks"));
        for callback in callbacks {
            command.arg("--callback-allow").arg(callback.to_string());
        }
        let mut child = command
            .args(["--listen", "127.0.0.1:0", "--store", "postgres", "--certs"])
            .arg(dir.join("pki"))
            .arg("--kek-file")
            .arg(dir.join("kek-1"))
            // Both instances import the same file at start-up: the second finds every row
            // already there (the import is idempotent and atomic per file).
            .arg("--provision-file")
            .arg(dir.join("identities.csv"))
            .args(["--pool-size", "8"])
            .arg("--cache-ttl")
            .arg(CACHE_TTL.as_millis().to_string())
            .arg("--keys-per-ue")
            .arg(KEYS_PER_UE.to_string())
            // The per-peer limiter must not answer the test's requests with 429.
            .args(["--rate", "1000000", "--burst", "1000000"])
            // The connection string through the environment, as an operator keeps a
            // password out of the process list.
            .env("E2M_DATABASE_URL", conninfo)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line
            .trim()
            .strip_prefix("EMKS listening on ")
            .unwrap_or_else(|| panic!("emks {name} did not start: first line {line:?}"))
            .to_owned();
        Instance { name, child, base }
    }

    fn hss(&self, pki: &PkiDir) -> EmksClient {
        EmksClient::for_hss(&self.base, pki).unwrap()
    }

    fn emse(&self, pki: &PkiDir) -> EmksClient {
        EmksClient::for_emse(&self.base, pki, &emse_id()).unwrap()
    }

    /// `kill -9`: no shutdown code runs.
    fn kill_9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

fn push_of(ue: u64) -> IntermediateKeyPush {
    IntermediateKeyPush {
        imsi: imsi(ue),
        key_id: KeyIdSource::RandLsb32(key_id(ue)),
        int_key: int_key(ue),
        created: now(),
    }
}

/// Checks that `ue`'s key is served through `emse` exactly (`must`), or is absent or exact
/// (`!must`: a push in flight at a kill may or may not have committed).
async fn check_key(emse: &EmksClient, via: &str, session: &SessionId, ue: u64, must: bool) {
    let request = KeyRequest {
        session_id: session.copy_secret(),
        ue: UeRef::AppIdentity(app(ue)),
        key_id: key_id(ue),
    };
    match emse.fetch_key(&request).await {
        Ok(key) => {
            let expected = E2mKeyDeriver::new(&int_key(ue), E2mProfile::PROVISIONAL)
                .unwrap()
                .derive(&emse_id())
                .unwrap();
            assert!(
                key.key == expected,
                "UE {ue} through {via}: served key differs (torn or mixed up)"
            );
            assert_eq!(key.key_id, key_id(ue), "UE {ue} through {via}: key id");
        }
        Err(e) if !must => {
            // Not stored, which is fine for a push in flight, but never a server fault.
            assert_eq!(
                e.problem_cause(),
                Some(ProblemCause::KeyNotAvailable),
                "UE {ue} through {via}: {e}"
            );
        }
        Err(e) => panic!("UE {ue}: acknowledged push not served through {via}: {e}"),
    }
}

/// Pushes UEs taken from `next` until a push fails (the instance was killed); returns the
/// UE in flight when it failed.
async fn push_until_killed(
    hss: EmksClient,
    next: Arc<AtomicU64>,
    acked: Arc<Mutex<Vec<u64>>>,
) -> u64 {
    loop {
        let ue = next.fetch_add(1, Ordering::Relaxed);
        assert!(ue < UES, "ran out of UEs: raise UES");
        match hss.push_intermediate_key(&push_of(ue)).await {
            Ok(()) => acked.lock().unwrap().push(ue),
            Err(_) => return ue,
        }
    }
}

#[test]
fn two_instances_share_sessions_and_keys_and_survive_kill_9_of_either() {
    let Some(pg) = Postgres::start() else { return };
    let dir = temp_dir("pg-instances-files");
    prepare(&dir);
    let pki = PkiDir::open(&dir.join("pki")).unwrap();
    let seed = std::env::var("E2M_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| now().as_unix_secs() | 1);
    println!("E2M_CRASH_SEED={seed}");
    let mut rng: u64 = seed;
    let mut next_delay = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        Duration::from_millis(100 + rng % 400)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    let mut a = Instance::start("A", &dir, &pg.conninfo);
    let mut b = Instance::start("B", &dir, &pg.conninfo);

    // Registered through A; every fetch below through the other instance uses it.
    let session = runtime.block_on(async { a.emse(&pki).register(None).await.unwrap() });
    let session = session.session_id;

    // A push acknowledged by one instance is served by the other at once, both ways.
    runtime.block_on(async {
        let (a_hss, b_hss) = (a.hss(&pki), b.hss(&pki));
        let (a_emse, b_emse) = (a.emse(&pki), b.emse(&pki));
        for ue in 0..AT_ONCE {
            let (hss, emse, via) = if ue % 2 == 0 {
                (&a_hss, &b_emse, b.name)
            } else {
                (&b_hss, &a_emse, a.name)
            };
            hss.push_intermediate_key(&push_of(ue)).await.unwrap();
            check_key(emse, via, &session, ue, true).await;
        }
    });

    // kill -9 of the instance that acknowledged: the other serves every acknowledged push.
    let next = Arc::new(AtomicU64::new(AT_ONCE));
    let mut total_acked = 0;
    for round in 0..KILL_ROUNDS {
        let (pushing, serving) = if round % 2 == 0 {
            (&mut a, &b)
        } else {
            (&mut b, &a)
        };
        let acked = Arc::new(Mutex::new(Vec::new()));
        let pushers: Vec<_> = (0..PUSHERS)
            .map(|_| {
                runtime.spawn(push_until_killed(
                    pushing.hss(&pki),
                    next.clone(),
                    acked.clone(),
                ))
            })
            .collect();
        std::thread::sleep(next_delay());
        let name = pushing.name;
        pushing.kill_9();
        let in_flight: Vec<u64> = runtime.block_on(async {
            let mut in_flight = Vec::new();
            for pusher in pushers {
                in_flight.push(pusher.await.unwrap());
            }
            in_flight
        });
        let acked = acked.lock().unwrap().clone();
        let emse = serving.emse(&pki);
        runtime.block_on(async {
            for &ue in &acked {
                check_key(&emse, serving.name, &session, ue, true).await;
            }
            for &ue in &in_flight {
                check_key(&emse, serving.name, &session, ue, false).await;
            }
        });
        println!(
            "round {round}: {} pushes acknowledged by {name} before its kill -9, all served by {}",
            acked.len(),
            serving.name
        );
        total_acked += acked.len();
        // The killed instance comes back on the same database for the next round.
        *pushing = Instance::start(name, &dir, &pg.conninfo);
    }
    assert!(
        total_acked >= KILL_ROUNDS * PUSHERS,
        "only {total_acked} pushes were acknowledged in {KILL_ROUNDS} rounds: the test checked little"
    );

    // The session, registered through A before every kill, ends through B; A, which may
    // have it cached, knows it no more once the staleness bound has passed (404, as for a
    // made-up session id).
    runtime.block_on(async {
        b.emse(&pki)
            .deregister(session.copy_secret())
            .await
            .unwrap();
        tokio::time::sleep(CACHE_TTL).await;
        let request = KeyRequest {
            session_id: session.copy_secret(),
            ue: UeRef::AppIdentity(app(0)),
            key_id: key_id(0),
        };
        let after = a.emse(&pki).fetch_key(&request).await;
        assert!(
            matches!(&after, Err(e) if e.problem_cause() == Some(ProblemCause::UnknownSession)),
            "fetch through A after deregistration through B: {:?}",
            after.map(|_| "a key")
        );
    });

    drop((a, b));
    let _ = std::fs::remove_dir_all(&dir);
}

/// UEs of the notification checks, each with a subscription of its own, each pushed once.
const NOTIFIED_UES: std::ops::Range<u64> = 200..208;
/// The bound on a notification that should be delivered at once (each instance's
/// deliverer is woken by the push's `NOTIFY`): generous, for a loaded 2-core machine. It
/// is a bound on the wait, not a figure the test asserts.
const DELIVERED_WITHIN: Duration = Duration::from_secs(60);

/// How the `emks` example delivers (it runs with the defaults of e2m-https).
fn delivery() -> DeliveryOptions {
    DeliveryOptions::default()
}

/// How long the endpoint keeps listening for a repeat once the outbox is empty.
///
/// A delivery starts only when an instance claims the entry, and each instance claims
/// when woken (by its own push, or by `LISTEN` for another's) and otherwise at least every
/// `poll` (1 s); an attempt that failed is due again after `first_retry` (1 s). So a
/// second delivery of an entry by the other instance (a claim that was not exclusive),
/// or by the same instance, starts within `poll + first_retry` of the first; twice that
/// covers two rounds of both instances, and 1 s more the HTTPS round trip on a loaded
/// machine. A repeat after the lease (30 s: a 204 whose settling was lost) needs an
/// outbox entry, and the tests wait for the outbox to be empty before this period, so
/// none can come later.
fn quiet_period() -> Duration {
    let d = delivery();
    (d.poll + d.first_retry) * 2 + Duration::from_secs(1)
}

/// The EMSE's notification endpoint of e2m-https (the one the demo's EMSEs run): mutual
/// TLS with EMSE `emse-a`'s certificate, which names 127.0.0.1; it admits only EMKS
/// certificates. Its port is ephemeral, not 443: the instances get `--callback-allow` for
/// it ([`Instance::start_allowing`]).
fn notification_endpoint(pki: &PkiDir, listener: tokio::net::TcpListener) -> NotificationServer {
    start_notification_endpoint(
        listener,
        &pki.emse_callback(&emse_id()).unwrap(),
        &pki.ca_certificates().unwrap(),
        Limits::default(),
    )
    .unwrap()
}

/// Subscribes through `emse` to the new keys of each of `ues` (one subscription each),
/// notified at `callback`; returns which UE each subscription is for.
async fn subscribe_each(
    emse: &EmksClient,
    ues: impl IntoIterator<Item = u64>,
    callback: &CallbackUri,
) -> HashMap<SubscriptionId, u64> {
    let mut subscriptions = HashMap::new();
    for ue in ues {
        let result = emse
            .subscribe(&Subscription {
                events: EventSet::single(EventType::KeyAvailable),
                ue: Some(UeRef::AppIdentity(app(ue))),
                callback: callback.clone(),
            })
            .await
            .unwrap();
        subscriptions.insert(result.subscription_id, ue);
    }
    subscriptions
}

/// Up to `n` notifications handed on by `endpoint` within `within`.
async fn receive(
    endpoint: &mut NotificationServer,
    n: usize,
    within: Duration,
) -> Vec<Notification> {
    let deadline = tokio::time::Instant::now() + within;
    let mut got = Vec::new();
    while got.len() < n {
        match tokio::time::timeout_at(deadline, endpoint.notifications.recv()).await {
            Ok(Some(received)) => got.push(received.notification),
            _ => break,
        }
    }
    got
}

/// Waits (at most `within`) until the database's outbox is empty: every notification
/// settled, none in flight, waiting for a retry or left for an instance to deliver again
/// (read through a connection of the test's own).
async fn wait_for_empty_outbox(conninfo: &str, dir: &Path, within: Duration) {
    let config = PgConfig::from_conninfo(conninfo)
        .unwrap()
        .with_pool_size(1)
        .unwrap();
    let keyring = Keyring::from_kek_files([dir.join("kek-1")]).unwrap();
    let backend = PgBackend::connect(&config, keyring).await.unwrap();
    let outbox = backend.int_keys(RetentionPolicy::DEFAULT);
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let entries = outbox.pending().await.unwrap();
        if entries == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{entries} notifications still in the outbox after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    backend.close();
}

/// Checks that `got` holds one notification of a new key for each of `subscriptions`'
/// UEs (the key pushed for it, named as the EMSE knows the UE), each with a stable id of
/// its own.
fn assert_one_each(got: &[Notification], subscriptions: &HashMap<SubscriptionId, u64>) {
    let mut seen = HashMap::new();
    for n in got {
        let ue = *subscriptions
            .get(&n.subscription_id)
            .unwrap_or_else(|| panic!("a notification for an unknown subscription: {n:?}"));
        assert_eq!(n.event, EventType::KeyAvailable, "UE {ue}");
        assert_eq!(n.ue, UeRef::AppIdentity(app(ue)), "UE {ue}");
        assert_eq!(n.key_id, key_id(ue), "UE {ue}");
        let id = n.id.unwrap_or_else(|| panic!("UE {ue}: no notificationId"));
        if let Some(first) = seen.insert(n.subscription_id, id) {
            panic!("UE {ue} notified twice: ids {first} and {id}");
        }
    }
    assert_eq!(
        seen.len(),
        subscriptions.len(),
        "not every subscriber was notified: {got:?}"
    );
    let ids: HashSet<NotificationId> = seen.values().copied().collect();
    assert_eq!(
        ids.len(),
        seen.len(),
        "two notifications share an id: {got:?}"
    );
}

/// Issue 8, Multi-instance: "a push through A notifies a subscriber registered through B,
/// once". The EMSE registers and subscribes (one subscription per UE) through B; the HSS
/// pushes a key for each UE through A. Both instances' deliverers are woken by the push and
/// claim from the shared outbox at once, so a claim that were not exclusive would show as
/// a repeat at the endpoint; the endpoint counts every delivery, including the repeats it
/// drops by id.
#[test]
fn a_push_through_a_notifies_a_subscriber_registered_through_b_once() {
    let Some(pg) = Postgres::start() else { return };
    let dir = temp_dir("pg-instances-notify");
    prepare(&dir);
    let pki = PkiDir::open(&dir.join("pki")).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let callbacks = [listener.local_addr().unwrap()];
    let a = Instance::start_allowing("A", &dir, &pg.conninfo, &callbacks);
    let b = Instance::start_allowing("B", &dir, &pg.conninfo, &callbacks);
    runtime.block_on(async {
        let mut endpoint = notification_endpoint(&pki, listener);
        let emse_via_b = b.emse(&pki);
        emse_via_b.register(None).await.unwrap();
        let subscriptions = subscribe_each(&emse_via_b, NOTIFIED_UES, &endpoint.callback).await;

        let hss_via_a = a.hss(&pki);
        for ue in NOTIFIED_UES {
            hss_via_a.push_intermediate_key(&push_of(ue)).await.unwrap();
        }
        let expected = subscriptions.len();
        let mut got = receive(&mut endpoint, expected, DELIVERED_WITHIN).await;
        assert_eq!(got.len(), expected, "notified: {got:?}");
        wait_for_empty_outbox(&pg.conninfo, &dir, DELIVERED_WITHIN).await;
        got.extend(receive(&mut endpoint, 1, quiet_period()).await);
        assert_one_each(&got, &subscriptions);
        let repeats = endpoint.duplicates_dropped.load(Ordering::Relaxed);
        assert_eq!(repeats, 0, "{repeats} notifications were delivered again");
        println!(
            "{expected} pushes through A: each subscriber registered through B notified once \
             (nothing more in the {} ms after the outbox emptied)",
            quiet_period().as_millis()
        );
    });
    drop((a, b));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The same after a crash: A acknowledges a push and is `kill -9`ed at once; B delivers
/// the notification from the outbox.
///
/// 1. While A lives, the endpoint's port is bound but not listening: every connection to
///    it is refused, so whatever A did before the kill (claimed the entry, tried and
///    failed, set a retry) delivered nothing. The endpoint listens once A is dead, so the
///    one notification it gets is B's, after B claims the entry: at once, at its retry
///    time, or after A's lease if A died holding it. Nothing was in flight to a live
///    endpoint at the kill, so it is delivered exactly once.
/// 2. With the endpoint up, A takes another push and is killed at once: a delivery may be
///    in flight (even done, with A killed before it settled it), and B delivers again
///    after the lease. That is at-least-once, and all copies carry the same stable id: the
///    endpoint hands the notification on once and drops the repeats by that id; a copy
///    with another id would be handed on a second time.
#[test]
fn a_push_acknowledged_by_an_instance_killed_at_once_is_notified_by_the_other() {
    let Some(pg) = Postgres::start() else { return };
    let dir = temp_dir("pg-instances-notify-kill");
    prepare(&dir);
    let pki = PkiDir::open(&dir.join("pki")).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let socket = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        socket
    });
    let callbacks = [socket.local_addr().unwrap()];
    let mut a = Instance::start_allowing("A", &dir, &pg.conninfo, &callbacks);
    let b = Instance::start_allowing("B", &dir, &pg.conninfo, &callbacks);
    // A claimed entry comes back after the lease; then B claims it within a poll.
    let after_a_crash = delivery().lease + DELIVERED_WITHIN;
    runtime.block_on(async {
        let callback = CallbackUri::new(&format!(
            "https://{}{NOTIFICATIONS_PATH}",
            socket.local_addr().unwrap()
        ))
        .unwrap();
        let emse_via_b = b.emse(&pki);
        emse_via_b.register(None).await.unwrap();
        let (first, second) = (300, 301);
        let subscriptions = subscribe_each(&emse_via_b, [first, second], &callback).await;
        let only = |ue: u64| -> HashMap<SubscriptionId, u64> {
            subscriptions
                .iter()
                .filter(|(_, u)| **u == ue)
                .map(|(s, u)| (*s, *u))
                .collect()
        };

        // 1. Nothing can be delivered until A is dead.
        a.hss(&pki)
            .push_intermediate_key(&push_of(first))
            .await
            .unwrap();
        a.kill_9();
        let killed = std::time::Instant::now();
        let mut endpoint = notification_endpoint(&pki, socket.listen(64).unwrap());
        assert!(
            endpoint.callback == callback,
            "the endpoint's callback differs"
        );
        let mut got = receive(&mut endpoint, 1, after_a_crash).await;
        assert_eq!(got.len(), 1, "B did not deliver A's notification");
        println!(
            "push acknowledged by A, A killed: notified by B {} ms after the kill",
            killed.elapsed().as_millis()
        );
        wait_for_empty_outbox(&pg.conninfo, &dir, after_a_crash).await;
        got.extend(receive(&mut endpoint, 1, quiet_period()).await);
        assert_one_each(&got, &only(first));
        let repeats = endpoint.duplicates_dropped.load(Ordering::Relaxed);
        assert_eq!(repeats, 0, "delivered {repeats} more times");

        // 2. The endpoint is up; A comes back, takes a push and is killed at once.
        a = Instance::start_allowing("A", &dir, &pg.conninfo, &callbacks);
        a.hss(&pki)
            .push_intermediate_key(&push_of(second))
            .await
            .unwrap();
        a.kill_9();
        let killed = std::time::Instant::now();
        let mut got = receive(&mut endpoint, 1, after_a_crash).await;
        assert_eq!(got.len(), 1, "A's notification not delivered");
        let delivered_after = killed.elapsed();
        wait_for_empty_outbox(&pg.conninfo, &dir, after_a_crash).await;
        got.extend(receive(&mut endpoint, 1, quiet_period()).await);
        assert_one_each(&got, &only(second));
        let repeats = endpoint.duplicates_dropped.load(Ordering::Relaxed);
        println!(
            "push acknowledged by A, A killed with the endpoint up: handed on once ({} ms after \
             the kill), {repeats} repeats with the same id dropped by the endpoint",
            delivered_after.as_millis()
        );
    });
    drop((a, b));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Fetches key `id` of `ue` through `emse`: `true` if served (with exactly the octets
/// pushed), `false` if not available; panics on a wrong key or any other error.
async fn fetch_id(emse: &EmksClient, via: &str, session: &SessionId, ue: u64, id: u32) -> bool {
    let request = KeyRequest {
        session_id: session.copy_secret(),
        ue: UeRef::AppIdentity(app(ue)),
        key_id: KeyId::from_u32(id),
    };
    match emse.fetch_key(&request).await {
        Ok(key) => {
            let pushed = E2mIntKey::from_array(test_key_bytes(ue, id));
            let expected = E2mKeyDeriver::new(&pushed, E2mProfile::PROVISIONAL)
                .unwrap()
                .derive(&emse_id())
                .unwrap();
            assert!(
                key.key == expected,
                "UE {ue} key {id:x} through {via}: wrong key"
            );
            true
        }
        Err(e) if e.problem_cause() == Some(ProblemCause::KeyNotAvailable) => false,
        Err(e) => panic!("UE {ue} key {id:x} through {via}: {e}"),
    }
}

fn push_id(ue: u64, id: u32) -> IntermediateKeyPush {
    IntermediateKeyPush {
        imsi: imsi(ue),
        key_id: KeyIdSource::RandLsb32(KeyId::from_u32(id)),
        int_key: E2mIntKey::from_array(test_key_bytes(ue, id)),
        created: now(),
    }
}

#[test]
fn a_key_retired_through_a_is_not_served_by_b_past_the_cache_bound() {
    let Some(pg) = Postgres::start() else { return };
    let dir = temp_dir("pg-instances-cache");
    prepare(&dir);
    let pki = PkiDir::open(&dir.join("pki")).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let a = Instance::start("A", &dir, &pg.conninfo);
    let b = Instance::start("B", &dir, &pg.conninfo);
    runtime.block_on(async {
        let (a_hss, a_emse, b_emse) = (a.hss(&pki), a.emse(&pki), b.emse(&pki));
        let session = a_emse.register(None).await.unwrap().session_id;
        let mut served_stale_within_the_bound = 0;
        for ue in 100..110u64 {
            let first = 0x1000;
            a_hss.push_intermediate_key(&push_id(ue, first)).await.unwrap();
            // Read through B right after the push through A: fetchable at once. A cold read
            // resolves the identity and reads the key in one joined statement
            // (`IdentityMap::resolve_key`) and caches the mapping only; the next read goes
            // through B's key cache and caches the key there.
            assert!(
                fetch_id(&b_emse, "B", &session, ue, first).await,
                "UE {ue}: push through A not fetchable through B at once"
            );
            let read = std::time::Instant::now();
            assert!(
                fetch_id(&b_emse, "B", &session, ue, first).await,
                "UE {ue}: push through A not fetchable through B a second time"
            );
            // B's read began between `read` and `read_done`.
            let read_done = std::time::Instant::now();
            // N newer pushes through A retire it in the database; each of them is
            // fetchable through B at once.
            for id in first + 1..=first + KEYS_PER_UE {
                a_hss.push_intermediate_key(&push_id(ue, id)).await.unwrap();
                assert!(
                    fetch_id(&b_emse, "B", &session, ue, id).await,
                    "UE {ue}: key {id:x} pushed through A not fetchable through B at once"
                );
            }
            // A retired it itself: never served by A again.
            assert!(
                !fetch_id(&a_emse, "A", &session, ue, first).await,
                "UE {ue}: the key retired through A is still served by A"
            );
            // B may serve it from its cache within the bound, measured from its read ...
            let served = fetch_id(&b_emse, "B", &session, ue, first).await;
            if read.elapsed() < CACHE_TTL {
                // B's read began after `read`, and this answer came before `read` + TTL:
                // B's cache must still have held it (this shows the cache is in use).
                assert!(served, "UE {ue}: B read the retired key again within its cache TTL");
                served_stale_within_the_bound += 1;
            }
            // ... and never once the bound has passed since that read (which is before the
            // pushes that retired it).
            tokio::time::sleep(CACHE_TTL.saturating_sub(read_done.elapsed())).await;
            assert!(
                !fetch_id(&b_emse, "B", &session, ue, first).await,
                "UE {ue}: B serves the key retired through A {} ms after reading it (bound {} ms)",
                read_done.elapsed().as_millis(),
                CACHE_TTL.as_millis()
            );
        }
        println!(
            "10 UEs: a retired key served by B within its {} ms cache TTL {served_stale_within_the_bound} times, \
             never after it",
            CACHE_TTL.as_millis()
        );
    });
    drop((a, b));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_connection_string_an_unreachable_database_or_a_wrong_kek_exit_2_with_one_line() {
    let Some(pg) = Postgres::start() else { return };
    let dir = temp_dir("pg-refusals-files");
    prepare(&dir);
    // A first start records KEK version 1's check record in the database.
    drop(Instance::start("A", &dir, &pg.conninfo));

    let refused = |conninfo: &str, kek: &str| -> String {
        let mut command = Command::new(example_binary("emks"));
        command
            .args(["--listen", "127.0.0.1:0", "--store", "postgres", "--certs"])
            .arg(dir.join("pki"))
            .arg("--kek-file")
            .arg(dir.join(kek))
            .args(["--database-url", conninfo])
            .env("RUST_LOG", "warn");
        let out = run_bounded(&mut command, Duration::from_secs(60));
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(2), "{conninfo} / {kek}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "not one line: {stderr}");
        assert!(stderr.starts_with("emks: "), "{stderr}");
        assert!(out.stdout.is_empty(), "served something: {out:?}");
        stderr
    };
    let stderr = refused("no such=setting", "kek-1");
    assert!(
        stderr.contains("invalid PostgreSQL connection string"),
        "{stderr}"
    );
    // A port nothing listens on (the cluster's port + 1 is not guaranteed free, so bind
    // one and close it).
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let stderr = refused(
        &format!("host=127.0.0.1 port={closed} user=e2m dbname=postgres"),
        "kek-1",
    );
    assert!(stderr.contains("no database connection"), "{stderr}");
    let stderr = refused(&pg.conninfo, "kek-other");
    assert!(
        stderr.contains("KEK file of version 1 does not match"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn postgres_flags_that_do_not_fit_together_exit_2_with_one_line() {
    let dir = temp_dir("pg-flags");
    prepare(&dir);
    let pki = dir.join("pki");
    let kek = dir.join("kek-1");
    let cases: [(&[&str], &str); 5] = [
        (
            &["--store", "postgres"],
            "needs --database-url or $E2M_DATABASE_URL",
        ),
        (
            &["--database-url", "host=127.0.0.1"],
            "--database-url is for --store postgres",
        ),
        (
            &[
                "--store",
                "postgres",
                "--database-url",
                "host=127.0.0.1",
                "--data-dir",
                "/nonexistent",
            ],
            "--data-dir is for --store redb",
        ),
        (
            &[
                "--store",
                "postgres",
                "--database-url",
                "host=127.0.0.1",
                "--pool-size",
                "0",
            ],
            "want 1 to 1000",
        ),
        (
            &["--store", "memory", "--database-url", "host=127.0.0.1"],
            "--database-url is for --store postgres",
        ),
    ];
    for (flags, expected) in cases {
        let mut command = Command::new(example_binary("emks"));
        command
            .args(["--listen", "127.0.0.1:0", "--certs"])
            .arg(&pki)
            .arg("--kek-file")
            .arg(&kek)
            .args(flags)
            .env_remove("E2M_DATABASE_URL");
        let out = run_bounded(&mut command, Duration::from_secs(30));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {stderr}");
        assert_eq!(
            stderr.lines().count(),
            1,
            "{flags:?}: not one line: {stderr}"
        );
        assert!(stderr.contains(expected), "{flags:?}: {stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
