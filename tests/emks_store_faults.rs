//! The `emks` example on a bad day (issue 16 items 6 and 7), as an operator meets it:
//!
//! - a full disk under push load (redb on a small tmpfs): pushes are refused and `/readyz`
//!   answers 503 while the disk is full; once there is room again, pushes are acknowledged
//!   again and `/readyz` answers 200, without a restart; nothing acknowledged is lost;
//! - a PostgreSQL outage: `/readyz` answers 503 while the database is down and 200 once it
//!   is back, and pushes are acknowledged again;
//! - an online backup (SIGUSR1, `--backup-dir`) taken under push load, then a damaged
//!   store file (the EMKS refuses to start), `emks restore`: every key acknowledged before
//!   the backup is served.
//!
//! Loopback only; every wait is bounded. The full-disk test mounts a tmpfs (root) and the
//! outage test starts a PostgreSQL cluster; each is skipped with a message where it cannot.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests"
)]

#[path = "../crates/e2m-keystore-pg/tests/support/mod.rs"]
mod pg;
mod support;
#[path = "../crates/e2m-keystore-redb/tests/common/tmpfs.rs"]
mod tmpfs;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2m_https::client::EmksClient;
use e2m_https::pki::PkiDir;
use e2m_kdf::{E2mIntKey, E2mProfile};
use e2m_keyid::{E2mKeyDeriver, EmseId, Imsi, KeyId};
use e2m_keystore::conformance::test_key_bytes;
use e2m_msg::{IntermediateKeyPush, KeyIdSource, KeyRequest, SessionId, Timestamp, UeRef};
use support::{example_binary, kill, run_bounded, temp_dir};

fn imsi(ue: u64) -> Imsi {
    Imsi::new(&format!("00101{ue:010}")).unwrap()
}

fn key_id(ue: u64) -> KeyId {
    KeyId::from_u32(u32::try_from(ue % 0xffff_fff0).unwrap() + 1)
}

/// The key pushed for `ue`: distinct per UE, so a key served from another row shows.
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

/// Certificates (an EMSE `emse-a`) and a KEK file in `dir`.
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
    let out = Command::new(&emks)
        .args(["gen-kek", "--out"])
        .arg(dir.join("kek-1"))
        .output()
        .unwrap();
    assert!(out.status.success(), "gen-kek: {out:?}");
}

/// A running `emks` (a child of this test, killed by its own handle when dropped).
struct Emks {
    child: Child,
    base: String,
    ops: SocketAddr,
}

impl Drop for Emks {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

impl Emks {
    /// Starts the example with its operations endpoint, EMSE `emse-a` allowed to name UEs
    /// by IMSI and no rate limit in the way, plus `store` (the store's flags).
    fn start(dir: &Path, store: &[&std::ffi::OsStr], env: &[(&str, &str)]) -> Emks {
        let mut command = Command::new(example_binary("emks"));
        command
            .args(["--listen", "127.0.0.1:0", "--certs"])
            .arg(dir.join("pki"))
            .arg("--kek-file")
            .arg(dir.join("kek-1"))
            .args(store)
            .args(["--allow-imsi", "emse-a", "--metrics-listen", "127.0.0.1:0"])
            .args(["--rate", "1000000", "--burst", "1000000"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let base = line
            .trim()
            .strip_prefix("EMKS listening on ")
            .unwrap_or_else(|| panic!("emks did not start: first line {line:?}"))
            .to_owned();
        line.clear();
        stdout.read_line(&mut line).unwrap();
        let ops = line
            .trim()
            .strip_prefix("metrics listening on http://")
            .unwrap_or_else(|| panic!("unexpected second line {line:?}"))
            .parse()
            .unwrap();
        Emks { child, base, ops }
    }

    /// `GET path` on the operations endpoint: (status, body).
    fn get(&self, path: &str) -> (u16, String) {
        let mut tcp = TcpStream::connect_timeout(&self.ops, Duration::from_secs(5)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            tcp,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.ops
        )
        .unwrap();
        let mut response = String::new();
        tcp.read_to_string(&mut response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        (status, body.to_owned())
    }

    /// Polls `/readyz` until it answers `status`.
    fn wait_ready(&self, status: u16, within: Duration, what: &str) {
        let deadline = Instant::now() + within;
        loop {
            let (got, body) = self.get("/readyz");
            if got == status {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: /readyz still {got} {body:?} after {within:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The `e2m_emks_store_writable` sample.
    fn store_writable(&self) -> Option<f64> {
        let (_, text) = self.get("/metrics");
        text.lines()
            .find_map(|line| line.strip_prefix("e2m_emks_store_writable ")?.parse().ok())
    }
}

/// What the pushers saw.
#[derive(Default)]
struct Tally {
    acked: Mutex<Vec<u64>>,
    count: AtomicU64,
    failed: AtomicU64,
}

/// Eight HSS connections, each pushing one key to each of a stream of new UEs (so the
/// store keeps growing) until `stop`.
fn start_pushers(
    runtime: &tokio::runtime::Runtime,
    hss: &EmksClient,
    stop: &Arc<AtomicBool>,
    tally: &Arc<Tally>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..8u64)
        .map(|p| {
            let (hss, stop, tally) = (hss.clone(), stop.clone(), tally.clone());
            runtime.spawn(async move {
                let mut ue = p;
                while !stop.load(Ordering::Relaxed) {
                    let push = IntermediateKeyPush {
                        imsi: imsi(ue),
                        key_id: KeyIdSource::RandLsb32(key_id(ue)),
                        int_key: int_key(ue),
                        created: now(),
                    };
                    match hss.push_intermediate_key(&push).await {
                        Ok(()) => {
                            tally.acked.lock().unwrap().push(ue);
                            tally.count.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {
                            tally.failed.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                    ue += 8;
                }
            })
        })
        .collect()
}

fn wait_for(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Fetches the key of every UE in `ues` through EMSE `emse-a` (by IMSI) and checks it is
/// exactly the one pushed.
fn check_served(runtime: &tokio::runtime::Runtime, emks: &Emks, pki: &PkiDir, ues: &[u64]) {
    let emse_id = EmseId::new("emse-a").unwrap();
    let emse = EmksClient::for_emse(&emks.base, pki, &emse_id).unwrap();
    runtime.block_on(async {
        let session = emse.register(None).await.unwrap().session_id;
        for &ue in ues {
            let request = KeyRequest {
                session_id: SessionId::from_array(*session.expose_secret()),
                ue: UeRef::Imsi(imsi(ue)),
                key_id: key_id(ue),
            };
            let served = emse
                .fetch_key(&request)
                .await
                .unwrap_or_else(|e| panic!("UE {ue}: acknowledged key not served: {e}"));
            let expected = E2mKeyDeriver::new(&int_key(ue), E2mProfile::PROVISIONAL)
                .unwrap()
                .derive(&emse_id)
                .unwrap();
            assert!(served.key == expected, "UE {ue}: another key served");
        }
    });
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_full_disk_makes_the_emks_unready_and_it_takes_pushes_again_without_a_restart() {
    let Some(disk) = tmpfs::Tmpfs::mount("emks-full", 16) else {
        return;
    };
    let dir = temp_dir("emks-full-disk");
    prepare(&dir);
    let data = disk.path().join("data");
    let emks = Emks::start(&dir, &["--data-dir".as_ref(), data.as_os_str()], &[]);
    let pki = PkiDir::open(&dir.join("pki")).unwrap();
    assert_eq!(emks.get("/readyz").0, 200);
    assert_eq!(emks.store_writable(), Some(1.0));

    let runtime = runtime();
    let hss = EmksClient::for_hss(&emks.base, &pki).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let pushers = start_pushers(&runtime, &hss, &stop, &tally);
    wait_for("300 acknowledged pushes", Duration::from_secs(60), || {
        tally.count.load(Ordering::Relaxed) >= 300
    });

    disk.fill("filler");
    wait_for(
        "a push refused on the full disk",
        Duration::from_secs(30),
        || tally.failed.load(Ordering::Relaxed) > 0,
    );
    // Not ready while the disk is full (the store is tested each second).
    emks.wait_ready(503, Duration::from_secs(10), "disk full");
    let body = emks.get("/readyz").1;
    assert!(body.starts_with("not ready"), "{body}");
    let acked_while_full = tally.count.load(Ordering::Relaxed);

    disk.free("filler");
    emks.wait_ready(200, Duration::from_secs(20), "disk freed");
    wait_for(
        "pushes acknowledged again after the disk was freed",
        Duration::from_secs(30),
        || tally.count.load(Ordering::Relaxed) >= acked_while_full + 200,
    );
    assert_eq!(emks.store_writable(), Some(1.0));
    stop.store(true, Ordering::Relaxed);
    for p in pushers {
        runtime.block_on(p).unwrap();
    }
    let acked = tally.acked.lock().unwrap().clone();
    println!(
        "{} pushes acknowledged, {} refused while the disk was full",
        acked.len(),
        tally.failed.load(Ordering::Relaxed)
    );
    // The same process serves every acknowledged key: nothing was lost, no restart.
    check_served(&runtime, &emks, &pki, &acked);
    drop(emks);
    drop(disk);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_postgresql_outage_makes_the_emks_unready_until_the_database_is_back() {
    let Some(cluster) = pg::Cluster::start() else {
        return;
    };
    let dir = temp_dir("emks-pg-outage");
    prepare(&dir);
    let conninfo = cluster.conninfo();
    let emks = Emks::start(
        &dir,
        &["--store".as_ref(), "postgres".as_ref()],
        &[("E2M_DATABASE_URL", conninfo.as_str())],
    );
    let pki = PkiDir::open(&dir.join("pki")).unwrap();
    let hss = EmksClient::for_hss(&emks.base, &pki).unwrap();
    let runtime = runtime();
    let push = |ue: u64| {
        runtime.block_on(hss.push_intermediate_key(&IntermediateKeyPush {
            imsi: imsi(ue),
            key_id: KeyIdSource::RandLsb32(key_id(ue)),
            int_key: int_key(ue),
            created: now(),
        }))
    };
    emks.wait_ready(200, Duration::from_secs(10), "database up");
    push(1).unwrap();

    cluster.stop_immediate();
    emks.wait_ready(503, Duration::from_secs(15), "database down");
    assert_eq!(emks.store_writable(), Some(0.0));
    assert!(
        push(2).is_err(),
        "a push acknowledged with the database down"
    );

    cluster.pg_ctl_start();
    emks.wait_ready(200, Duration::from_secs(30), "database back");
    push(3).unwrap();
    check_served(&runtime, &emks, &pki, &[1, 3]);
    drop(emks);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The backups in `dir` (complete ones: a backup is renamed into place when done).
fn backups(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "redb"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn an_online_backup_under_load_restores_every_key_acknowledged_before_it() {
    let dir = temp_dir("emks-backup");
    prepare(&dir);
    let data = dir.join("data");
    let backup_dir = dir.join("backups");
    let store_flags = [
        "--data-dir".as_ref(),
        data.as_os_str(),
        "--backup-dir".as_ref(),
        backup_dir.as_os_str(),
    ];
    let mut emks = Emks::start(&dir, &store_flags, &[]);
    let pki = PkiDir::open(&dir.join("pki")).unwrap();
    let runtime = runtime();
    let hss = EmksClient::for_hss(&emks.base, &pki).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let pushers = start_pushers(&runtime, &hss, &stop, &tally);
    wait_for("500 acknowledged pushes", Duration::from_secs(60), || {
        tally.count.load(Ordering::Relaxed) >= 500
    });

    // Everything acknowledged before the signal is in the backup it starts.
    let before = tally.acked.lock().unwrap().clone();
    let pid = emks.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-USR1", &pid])
            .status()
            .unwrap()
            .success()
    );
    wait_for("the backup file", Duration::from_secs(60), || {
        !backups(&backup_dir).is_empty()
    });
    let backup = backups(&backup_dir).remove(0);
    let name = backup.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("e2m-emks-") && name.ends_with("Z.redb"),
        "backup name {name}"
    );
    // Pushes go on during and after the backup; then the process dies.
    let after = tally.count.load(Ordering::Relaxed);
    wait_for("pushes after the backup", Duration::from_secs(60), || {
        tally.count.load(Ordering::Relaxed) >= after + 300
    });
    emks.child.kill().unwrap();
    emks.child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    for p in pushers {
        runtime.block_on(p).unwrap();
    }
    drop(emks);

    // One flipped bit per page: the EMKS refuses to start on the file.
    let file = data.join("e2m-emks.redb");
    let mut bytes = std::fs::read(&file).unwrap();
    for page in (4096..bytes.len()).step_by(4096) {
        bytes[page + 1000] ^= 0x10;
    }
    std::fs::write(&file, &bytes).unwrap();
    let mut refused = Command::new(example_binary("emks"));
    refused
        .args(["--listen", "127.0.0.1:0", "--certs"])
        .arg(dir.join("pki"))
        .arg("--kek-file")
        .arg(dir.join("kek-1"))
        .args(store_flags);
    let out = run_bounded(&mut refused, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("damaged") || stderr.contains("integrity"),
        "{stderr}"
    );

    // The restore: verified, installed, the damaged file kept.
    let out = run_bounded(
        Command::new(example_binary("emks"))
            .args(["restore", "--backup"])
            .arg(&backup)
            .arg("--data-dir")
            .arg(&data)
            .arg("--kek-file")
            .arg(dir.join("kek-1")),
        Duration::from_secs(60),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "restore: {out:?}");
    assert!(stdout.starts_with("restored "), "{stdout}");
    let kept = std::fs::read_dir(&data)
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().contains(".replaced-"));
    assert!(kept, "the damaged file was not kept");

    let emks = Emks::start(&dir, &store_flags, &[]);
    check_served(&runtime, &emks, &pki, &before);
    println!(
        "{} keys acknowledged before the backup served after the restore",
        before.len()
    );
    drop(emks);
    let _ = std::fs::remove_dir_all(&dir);
}
