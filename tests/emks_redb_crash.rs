//! Crash safety of the `emks` example on its durable store (issue 8, "Crash"): pushes go
//! through the running example while it is killed with SIGKILL at 20 random points; after
//! each restart on the same data directory every push it had answered 2xx is fetchable
//! with exactly the key pushed, a push in flight at the kill is either absent or exact
//! (never torn), and the EMSE's session and subscription survive every kill.
//!
//! Loopback only; every wait is bounded. The random kill points come from a seed printed
//! at the start (`E2M_CRASH_SEED` replays one).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests"
)]

#[path = "support/redb_crash.rs"]
mod redb_crash;
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2m_https::client::{ClientOptions, EmksClient, RetryPolicy};
use e2m_https::pki::PkiDir;
use e2m_keyid::EmseId;
use e2m_msg::{
    CallbackUri, EventSet, EventType, IntermediateKeyPush, KeyIdSource, Subscription, UeRef,
};
use redb_crash::{app, check_key, imsi, int_key, key_id, now, prepare};
use support::{example_binary, temp_dir};

/// The example on `dir`, HTTPS only.
fn start(dir: &Path) -> redb_crash::Server {
    redb_crash::start(dir, &[], 0)
}

const KILLS: usize = 20;
const UES: u64 = 2_000;

/// Pushes UEs `from..` one after another until a push fails (the server was killed);
/// returns the UEs acknowledged (204) and the one in flight when it failed.
async fn push_until_killed(hss: EmksClient, from: u64, acked: Arc<Mutex<Vec<u64>>>) -> u64 {
    for ue in from..UES {
        let push = IntermediateKeyPush {
            imsi: imsi(ue),
            key_id: KeyIdSource::RandLsb32(key_id(ue)),
            int_key: int_key(ue),
            created: now(),
        };
        match hss.push_intermediate_key(&push).await {
            Ok(()) => acked.lock().unwrap().push(ue),
            Err(_) => return ue,
        }
    }
    panic!("ran out of UEs: raise UES");
}

#[test]
fn acknowledged_pushes_sessions_and_subscriptions_survive_kill_9() {
    let dir: PathBuf = temp_dir("redb-crash");
    std::fs::create_dir_all(&dir).unwrap();
    prepare(&dir, UES);
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
        Duration::from_millis(10 + rng % 250)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pki = PkiDir::open(&dir.join("pki")).unwrap();
    let emse_id = EmseId::new("emse-a").unwrap();

    // The EMSE registers and subscribes once, before the first kill.
    let server = start(&dir);
    let (session, subscription) = runtime.block_on(async {
        let emse = EmksClient::for_emse(&server.base, &pki, &emse_id).unwrap();
        let registered = emse.register(None).await.unwrap();
        let subscription = Subscription {
            events: EventSet::single(EventType::KeyAvailable),
            ue: Some(UeRef::AppIdentity(app(0))),
            // Port 443 of a host the certificate names (the only port allowed by
            // default); nothing listens there, and the notification stays pending.
            callback: CallbackUri::new("https://127.0.0.1/e2m/v1/notifications").unwrap(),
        };
        let subscribed = emse.subscribe(&subscription).await.unwrap();
        (registered.session_id, subscribed.subscription_id)
    });
    drop(server);

    let acked = Arc::new(Mutex::new(Vec::<u64>::new()));
    let mut in_flight = Vec::new();
    let mut next_ue = 0;
    let mut checked = 0;
    for round in 0..=KILLS {
        let mut server = start(&dir);
        let emse = EmksClient::for_emse(&server.base, &pki, &emse_id).unwrap();
        // No retries: a push in flight at the kill fails at once instead of retrying
        // against the dead address (the next instance listens elsewhere).
        let hss = EmksClient::with_options(
            &server.base,
            &pki.hss().unwrap(),
            &pki.ca_certificates().unwrap(),
            &ClientOptions {
                retry: RetryPolicy::NEVER,
                ..ClientOptions::default()
            },
        )
        .unwrap();
        // Everything acknowledged before the last kill, and what was in flight then.
        let done: Vec<u64> = acked.lock().unwrap().clone();
        runtime.block_on(async {
            for &ue in &done[checked..] {
                check_key(&emse, &session, ue, true).await;
            }
            for &ue in &in_flight {
                check_key(&emse, &session, ue, false).await;
            }
        });
        checked = done.len();
        if round == KILLS {
            // The end: every acknowledged push once more, then the session and the
            // subscription, which must both still exist (404 if lost).
            runtime.block_on(async {
                for &ue in &done {
                    check_key(&emse, &session, ue, true).await;
                }
                emse.unsubscribe(&subscription).await.unwrap();
                emse.deregister(session).await.unwrap();
            });
            assert!(
                done.len() >= KILLS,
                "only {} pushes were acknowledged in {KILLS} rounds: the test checked little",
                done.len()
            );
            println!("{} pushes acknowledged across {KILLS} kills", done.len());
            break;
        }
        let pusher = runtime.spawn(push_until_killed(hss, next_ue, acked.clone()));
        std::thread::sleep(next_delay());
        // SIGKILL: no shutdown code runs.
        server.child.kill().unwrap();
        server.child.wait().unwrap();
        let stopped_at = runtime.block_on(pusher).unwrap();
        in_flight.push(stopped_at);
        next_ue = stopped_at + 1;
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs the example to completion (it must refuse to start) and returns its stderr.
fn refused_start(dir: &Path, extra: &[&std::ffi::OsStr]) -> String {
    let mut command = Command::new(example_binary("emks"));
    command
        .args(["--listen", "127.0.0.1:0", "--certs"])
        .arg(dir.join("pki"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(extra)
        .env("RUST_LOG", "warn");
    let out = support::run_bounded(&mut command, Duration::from_secs(30));
    assert!(!out.status.success(), "started: {out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_wrong_kek_or_a_bad_provisioning_file_stops_the_start_with_a_clear_message() {
    let dir: PathBuf = temp_dir("redb-refusals");
    std::fs::create_dir_all(&dir).unwrap();
    prepare(&dir, UES);
    // A first start creates the store under KEK version 1.
    drop(start(&dir));
    let emks = example_binary("emks");
    let other = dir.join("kek-other");
    let out = Command::new(&emks)
        .args(["gen-kek", "--out"])
        .arg(&other)
        .output()
        .unwrap();
    assert!(out.status.success(), "gen-kek: {out:?}");
    let stderr = refused_start(&dir, &["--kek-file".as_ref(), other.as_os_str()]);
    assert!(
        stderr.contains("KEK file of version 1 does not match"),
        "wrong KEK: {stderr}"
    );
    // Bad rows: every one named by its line, nothing imported, the start refused.
    let bad = dir.join("bad.csv");
    std::fs::write(
        &bad,
        "emse_id,app_identity,imsi\nemse-a,ok@x,001010000000001\nemse-a,bad id,001010000000002\nemse-a,x@y,12ab\n",
    )
    .unwrap();
    let kek = dir.join("kek-1");
    let stderr = refused_start(
        &dir,
        &[
            "--kek-file".as_ref(),
            kek.as_os_str(),
            "--provision-file".as_ref(),
            bad.as_os_str(),
        ],
    );
    assert!(
        stderr.contains("line 3") && stderr.contains("line 4") && stderr.contains("2 bad row"),
        "bad rows: {stderr}"
    );
    // A row conflicting with what is stored (same EMSE and identity, other IMSI).
    let conflict = dir.join("conflict.csv");
    std::fs::write(&conflict, format!("emse-a,{},001019999999999\n", app(5))).unwrap();
    let stderr = refused_start(
        &dir,
        &[
            "--kek-file".as_ref(),
            kek.as_os_str(),
            "--provision-file".as_ref(),
            conflict.as_os_str(),
        ],
    );
    assert!(stderr.contains("line 1"), "conflict: {stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
