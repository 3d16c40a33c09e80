//! Crash safety of the `emks` example's Diameter interface on its durable store (issue 17,
//! "Fault tests"): one HSS client (`e2m_diameter_push::net::HssDiameter`, over TLS with
//! the generated certificates) pushes UE after UE over Diameter while the example is
//! killed with SIGKILL at random points and started again on the same data directory and
//! Diameter port. After each restart every push the HSS saw answered 2001 is served (over
//! HTTPS, to an EMSE) with exactly the key pushed. The push in flight at a kill is not
//! lost either: the HSS's node resends it (T flag, same End-to-End id) once it has
//! reconnected, and the restarted EMKS, whose duplicate cache died with it, decides it
//! again — an idempotent decision (already held, or stored now).
//!
//! Loopback only; every wait is bounded. The random kill points come from a seed printed
//! at the start (`E2M_CRASH_SEED` replays one).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests"
)]

#[path = "support/diameter.rs"]
mod diameter;
#[path = "support/redb_crash.rs"]
mod redb_crash;
mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2m_diameter_push::net::{DiameterTls, HssDiameter, HssDiameterConfig, HssPeer};
use e2m_https::client::EmksClient;
use e2m_https::pki::PkiDir;
use e2m_keyid::EmseId;
use e2m_msg::{IntermediateKeyPush, KeyIdSource};
use redb_crash::{Server, check_key, imsi, int_key, key_id, now, prepare};
use support::temp_dir;

const KILLS: usize = 8;
const UES: u64 = 5_000;

fn start(dir: &Path, port: u16) -> Server {
    let listen = format!("127.0.0.1:{port}");
    let server = redb_crash::start(
        dir,
        &["--diameter-listen", &listen, "--diameter-watchdog", "6"],
        1,
    );
    assert!(
        server.lines[0].starts_with("Diameter listening on") && server.lines[0].ends_with("(tls)"),
        "{:?}",
        server.lines
    );
    server
}

/// Pushes UE after UE until told to stop; each one acknowledged (2001) is recorded.
async fn push_forever(
    hss: Arc<HssDiameter>,
    acked: Arc<Mutex<Vec<u64>>>,
    stop: Arc<AtomicBool>,
) -> u64 {
    for ue in 0..UES {
        if stop.load(Ordering::SeqCst) {
            return ue;
        }
        let push = IntermediateKeyPush {
            imsi: imsi(ue),
            key_id: KeyIdSource::RandLsb32(key_id(ue)),
            int_key: int_key(ue),
            created: now(),
        };
        let ack = hss
            .push(&push)
            .await
            .unwrap_or_else(|e| panic!("UE {ue}: {e}"));
        assert!(ack.expiry.is_some());
        acked.lock().unwrap().push(ue);
    }
    panic!("ran out of UEs: raise UES");
}

#[test]
fn acknowledged_diameter_pushes_survive_kill_9() {
    let dir: PathBuf = temp_dir("diameter-redb-crash");
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
        Duration::from_millis(50 + rng % 700)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pki = PkiDir::open(&dir.join("pki")).unwrap();
    let emse_id = EmseId::new("emse-a").unwrap();
    let port = diameter::free_port();

    let server = start(&dir, port);
    let session = runtime.block_on(async {
        let emse = EmksClient::for_emse(&server.base, &pki, &emse_id).unwrap();
        emse.register(None).await.unwrap().session_id
    });
    let hss = runtime.block_on(async {
        let mut config = HssDiameterConfig::new(
            "hss.e2m.test",
            "e2m.test",
            "e2m.test",
            vec![HssPeer {
                host: "emks.e2m.test".into(),
                addr: diameter::local(port),
                tls: true,
            }],
        );
        config.watchdog_interval = Duration::from_secs(6);
        config.reopen_watchdogs = 1;
        config.request_timeout = Duration::from_secs(30);
        config.retry.deadline = Duration::from_secs(120);
        let tls = DiameterTls {
            credentials: pki.hss().unwrap(),
            ca: pki.ca_certificates().unwrap(),
        };
        let hss = HssDiameter::start(config, Some(&tls)).await.unwrap();
        assert!(hss.wait_ready(Duration::from_secs(20)).await);
        Arc::new(hss)
    });
    let acked = Arc::new(Mutex::new(Vec::<u64>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let pusher = runtime.spawn(push_forever(hss.clone(), acked.clone(), stop.clone()));
    let mut server = Some(server);
    let mut checked = 0;
    for round in 0..=KILLS {
        let running = match server.take() {
            Some(s) => s,
            None => start(&dir, port),
        };
        // Everything acknowledged so far is served, exactly.
        let done: Vec<u64> = acked.lock().unwrap().clone();
        runtime.block_on(async {
            let emse = EmksClient::for_emse(&running.base, &pki, &emse_id).unwrap();
            for &ue in &done[checked..] {
                check_key(&emse, &session, ue, true).await;
            }
        });
        checked = done.len();
        if round == KILLS {
            stop.store(true, Ordering::SeqCst);
            let stopped_at = runtime.block_on(pusher).unwrap();
            let done: Vec<u64> = acked.lock().unwrap().clone();
            runtime.block_on(async {
                let emse = EmksClient::for_emse(&running.base, &pki, &emse_id).unwrap();
                for &ue in &done {
                    check_key(&emse, &session, ue, true).await;
                }
                emse.deregister(session).await.unwrap();
                hss.shutdown(Duration::from_secs(2)).await;
            });
            assert_eq!(
                done.len() as u64,
                stopped_at,
                "every push was acknowledged in the end"
            );
            assert!(
                done.len() >= 2 * KILLS,
                "only {} pushes were acknowledged across {KILLS} kills: the test checked little",
                done.len()
            );
            println!(
                "{} Diameter pushes acknowledged across {KILLS} kills",
                done.len()
            );
            break;
        }
        // The HSS is back (it reconnects on its watchdog timer after a kill), pushes for a
        // random while, then SIGKILL: no shutdown code runs.
        assert!(
            runtime.block_on(hss.wait_ready(Duration::from_secs(30))),
            "round {round}: the HSS did not reconnect"
        );
        let before = acked.lock().unwrap().len();
        std::thread::sleep(next_delay());
        let mut running = running;
        running.child.kill().unwrap();
        running.child.wait().unwrap();
        println!(
            "round {round}: killed after {} more acknowledged pushes",
            acked.lock().unwrap().len() - before
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
